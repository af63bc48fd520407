//! `Secret`: a string that never shows itself in `Debug`, `Display` or logs.
//!
//! Access tokens and signed assertions live in this type from the moment they are made or received;
//! reading the value takes an explicit `expose()`, so every place that needs it is easy to find.

use std::fmt;

/// A credential (access token, assertion). `Debug` prints only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Secret(value.into())
    }

    /// The credential itself. Call only where it is sent on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A shortened form safe to print: the first 6 characters and the length.
    pub fn redacted(&self) -> String {
        let head: String = self.0.chars().take(6).collect();
        format!("{head}…({} chars)", self.0.chars().count())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} chars redacted>)", self.0.len())
    }
}

/// An access token, held as the `Authorization` value that carries it (`Bearer <token>`, marked
/// sensitive): sending it costs a reference count, and the token is stored once. `Debug` prints
/// only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(http::HeaderValue);

const BEARER: &str = "Bearer ";

impl AccessToken {
    /// `None` when the token cannot travel in a header (control characters, non-ASCII).
    pub fn new(token: &Secret) -> Option<AccessToken> {
        let mut value = http::HeaderValue::try_from(format!("{BEARER}{}", token.expose())).ok()?;
        value.to_str().ok()?;
        value.set_sensitive(true);
        Some(AccessToken(value))
    }

    /// The token itself. Call only where it is sent on the wire.
    pub fn expose(&self) -> &str {
        self.0.to_str().ok().and_then(|v| v.get(BEARER.len()..)).unwrap_or_default()
    }

    /// `Bearer <token>`, for the `Authorization` header.
    pub fn authorization(&self) -> http::HeaderValue {
        self.0.clone()
    }

    /// The same token in bytes of its own (`HeaderValue::clone` shares them, and with them a
    /// reference count).
    pub fn copy(&self) -> AccessToken {
        let mut value = http::HeaderValue::from_bytes(self.0.as_bytes()).unwrap_or_else(|_| self.0.clone());
        value.set_sensitive(true);
        AccessToken(value)
    }

    /// Whether `other` is the same token.
    pub fn same(&self, other: &AccessToken) -> bool {
        self.0.as_bytes() == other.0.as_bytes()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken(<{} chars redacted>)", self.expose().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("00Dxx0000001gPL!AQ4AQFakeTokenValue");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("FakeTokenValue"), "{shown}");
        assert!(!s.redacted().contains("FakeTokenValue"));
        let a = AccessToken::new(&s).expect("header value");
        assert_eq!(a.expose(), s.expose());
        assert_eq!(a.authorization().to_str().ok(), Some("Bearer 00Dxx0000001gPL!AQ4AQFakeTokenValue"));
        let shown = format!("{a:?} {:?}", a.authorization());
        assert!(!shown.contains("FakeTokenValue"), "{shown}");
        assert!(AccessToken::new(&Secret::new("bad\ntoken")).is_none());
    }
}
