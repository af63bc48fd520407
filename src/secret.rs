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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("00Dxx0000001gPL!AQ4AQFakeTokenValue");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("FakeTokenValue"), "{shown}");
        assert!(!s.redacted().contains("FakeTokenValue"));
    }
}
