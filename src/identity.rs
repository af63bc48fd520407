//! Requester → subject: who the internal app says the user is, and which SaaS user (the JWT `sub`)
//! that becomes. An empty or unmapped requester never yields a subject (fail closed).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// Longest requester accepted; longer is refused as malformed rather than looked up.
pub const MAX_REQUESTER_LEN: usize = 256;

/// What to do with a requester that neither the table nor the template maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unmapped {
    Reject,
    AsIs,
}

/// The subject mapping of a config.
#[derive(Clone, Debug)]
pub struct SubjectMap {
    /// Lower-cased requester → subject. Keys come from the config only (look-ups never insert),
    /// so the fast foldhash serves: SipHash cost a few hundred instructions a request.
    table: HashMap<String, Arc<str>, foldhash::fast::RandomState>,
    template: Option<Template>,
    unmapped: Unmapped,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("requester is empty")]
    Empty,
    #[error("requester is longer than {MAX_REQUESTER_LEN} characters")]
    TooLong,
    #[error("requester contains whitespace or control characters")]
    BadCharacters,
    #[error("no subject mapping for requester '{0}'")]
    Unmapped(String),
}

impl SubjectMap {
    pub fn new(
        table: impl IntoIterator<Item = (String, String)>,
        template: Option<Template>,
        unmapped: Unmapped,
    ) -> Self {
        SubjectMap {
            table: table.into_iter().map(|(k, v)| (k.to_lowercase(), Arc::from(v))).collect(),
            template,
            unmapped,
        }
    }

    /// The subject for a requester: the table first (case-insensitive), then the template, then
    /// the requester itself if `unmapped = "as-is"`.
    /// Lent from the table when mapped there: the serving threads share the table, and a
    /// reference count taken per request moved its cache line between their cores.
    pub fn subject_for(&self, requester: &str) -> Result<Cow<'_, str>, MappingError> {
        let requester = requester.trim();
        if requester.is_empty() {
            return Err(MappingError::Empty);
        }
        // The usual requester is ASCII, one byte a character, whose white space and control
        // characters are exactly the bytes up to the space, and DEL: checked without decoding.
        let ascii = requester.is_ascii();
        let characters = if ascii { requester.len() } else { requester.chars().count() };
        if characters > MAX_REQUESTER_LEN {
            return Err(MappingError::TooLong);
        }
        let odd = if ascii {
            requester.bytes().any(|b| b <= b' ' || b == 0x7f)
        } else {
            requester.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        if odd {
            return Err(MappingError::BadCharacters);
        }
        if !self.table.is_empty() {
            let lower = if requester.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
                Cow::Owned(requester.to_lowercase())
            } else {
                Cow::Borrowed(requester)
            };
            if let Some(subject) = self.table.get(lower.as_ref()) {
                return Ok(Cow::Borrowed(subject));
            }
        }
        if let Some(subject) = self.template.as_ref().and_then(|t| t.apply(requester)) {
            return Ok(Cow::Owned(subject));
        }
        match self.unmapped {
            Unmapped::AsIs => Ok(Cow::Owned(requester.to_owned())),
            Unmapped::Reject => Err(MappingError::Unmapped(requester.to_owned())),
        }
    }
}

/// A subject template: `{requester}`, `{local}` and `{domain}` (the parts of an email address)
/// are replaced; `{local}` and `{domain}` make the template apply to email addresses only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    text: String,
    needs_email: bool,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').ok_or_else(|| format!("unclosed '{{' in template '{text}'"))?;
            let name = &rest[open + 1..open + close];
            if !matches!(name, "requester" | "local" | "domain") {
                return Err(format!(
                    "unknown placeholder '{{{name}}}' in template '{text}' (known: {{requester}}, {{local}}, {{domain}})"
                ));
            }
            rest = &rest[open + close + 1..];
        }
        if !text.contains('{') {
            return Err(format!(
                "template '{text}' has no placeholder, so it would map every requester to one subject"
            ));
        }
        Ok(Template { text: text.to_owned(), needs_email: text.contains("{local}") || text.contains("{domain}") })
    }

    fn apply(&self, requester: &str) -> Option<String> {
        let (local, domain) = match requester.split_once('@') {
            Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@') => (l, d),
            _ if self.needs_email => return None,
            _ => ("", ""),
        };
        Some(self.text.replace("{requester}", requester).replace("{local}", local).replace("{domain}", domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(unmapped: Unmapped, template: Option<&str>) -> SubjectMap {
        SubjectMap::new(
            [("Ops@corp.example.com".to_owned(), "integration@corp.example.com".to_owned())],
            template.map(|t| Template::parse(t).expect("template")),
            unmapped,
        )
    }

    #[test]
    fn table_then_template_then_policy() {
        let m = map(Unmapped::Reject, Some("{local}@corp.example.com.sandbox"));
        assert_eq!(m.subject_for("ops@CORP.example.com").as_deref(), Ok("integration@corp.example.com"));
        assert_eq!(m.subject_for("alice@corp.example.com").as_deref(), Ok("alice@corp.example.com.sandbox"));
        assert_eq!(m.subject_for("not-an-email"), Err(MappingError::Unmapped("not-an-email".into())));
        let as_is = map(Unmapped::AsIs, None);
        assert_eq!(as_is.subject_for("bob@x.example").as_deref(), Ok("bob@x.example"));
    }

    #[test]
    fn empty_and_odd_requesters_never_map() {
        let m = map(Unmapped::AsIs, Some("{requester}.sandbox"));
        assert_eq!(m.subject_for("  "), Err(MappingError::Empty));
        assert_eq!(m.subject_for("a b@x"), Err(MappingError::BadCharacters));
        assert_eq!(m.subject_for(&"a".repeat(300)), Err(MappingError::TooLong));
        // ASCII and not: the same rules, in characters.
        for odd in ["a\tb@x", "a\u{1}b@x", "a\u{7f}b@x", "ä\u{a0}b@x", "ä\u{85}b@x", "ä\u{2003}b@x"] {
            assert_eq!(m.subject_for(odd), Err(MappingError::BadCharacters), "{odd:?}");
        }
        assert_eq!(m.subject_for(&"a".repeat(256)).as_deref(), Ok(format!("{}.sandbox", "a".repeat(256)).as_str()));
        assert!(m.subject_for(&"é".repeat(256)).is_ok(), "256 characters, 512 bytes");
        assert_eq!(m.subject_for(&"é".repeat(257)), Err(MappingError::TooLong));
    }

    #[test]
    fn template_errors_are_named() {
        assert!(Template::parse("{user}@x").unwrap_err().contains("unknown placeholder"));
        assert!(Template::parse("fixed@x").unwrap_err().contains("no placeholder"));
        assert!(Template::parse("{local").unwrap_err().contains("unclosed"));
    }
}
