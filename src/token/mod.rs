//! Access tokens: the RFC 7523 assertion, the token endpoint client, the per-provider exchange and
//! the store that keeps one token per `(provider, subject, scope)`.

pub mod assertion;
pub mod client;
pub mod introspect;
pub mod provider;
pub mod resilience;
pub mod revoke;
pub mod store;

use std::sync::Arc;
use std::time::Instant;

use crate::secret::AccessToken;

/// What a token is stored under. Built only from a mapped, non-empty subject.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// The provider's identity (`Provider::identity`), not its name.
    pub provider: Arc<str>,
    pub subject: Arc<str>,
    pub scope: Option<Arc<str>>,
}

/// A `TokenKey` lent: what a request looks its token up with. Hashes and compares as the key
/// does, without cloning its shared names: each `Arc` cloned and dropped per request wrote its
/// count, a cache line the serving threads then passed back and forth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyRef<'a> {
    pub provider: &'a str,
    pub subject: &'a str,
    pub scope: Option<&'a str>,
}

impl TokenKey {
    pub fn lent(&self) -> KeyRef<'_> {
        KeyRef { provider: &self.provider, subject: &self.subject, scope: self.scope.as_deref() }
    }
}

impl KeyRef<'_> {
    /// The key itself (on a miss: new shared names).
    pub fn to_key(self) -> TokenKey {
        TokenKey { provider: self.provider.into(), subject: self.subject.into(), scope: self.scope.map(Into::into) }
    }
}

impl hashbrown::Equivalent<TokenKey> for KeyRef<'_> {
    fn equivalent(&self, key: &TokenKey) -> bool {
        *self == key.lent()
    }
}

/// An access token and what the token endpoint said with it.
#[derive(Debug)]
pub struct Token {
    pub access_token: AccessToken,
    pub token_type: String,
    /// Salesforce: the org's instance, where API calls for this user go.
    pub instance_url: Option<Arc<crate::proxy::forward::Origin>>,
    pub scope: Option<String>,
    /// Salesforce: the identity URL of the user.
    pub id: Option<String>,
    /// When to renew: new requests still use this token, and one exchange starts in the background.
    pub refresh_at: Instant,
    /// When to stop using it: requests wait for a new one.
    pub expires_at: Instant,
}

impl Token {
    /// The same token for one serving thread to keep: its header value and instance in
    /// allocations of their own. Workers that shared one token took its reference counts (the
    /// token's, its header value's, its instance authority's) per request, each time moving
    /// their cache line from the other core.
    pub fn copy_for_thread(&self) -> Token {
        Token {
            access_token: self.access_token.copy(),
            token_type: self.token_type.clone(),
            instance_url: self.instance_url.as_ref().map(|origin| Arc::new(origin.copy())),
            scope: self.scope.clone(),
            id: self.id.clone(),
            refresh_at: self.refresh_at,
            expires_at: self.expires_at,
        }
    }

    /// Whether `other` is this token (or a copy of it).
    pub fn same(&self, other: &Token) -> bool {
        self.access_token.same(&other.access_token)
    }
}

/// Why no token could be had. Cloned to every request that waited on the same exchange.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token endpoint refused the assertion: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected { status: u16, error: String, description: Option<String> },
    #[error("token endpoint unreachable: {0}")]
    Unreachable(String),
    #[error("token endpoint answered HTTP {0}")]
    Status(u16),
    #[error("token endpoint answered HTTP {status} and asked to retry after {seconds} s")]
    RetryAfter { status: u16, seconds: u64 },
    #[error("token endpoint unavailable ({reason}); retry after {retry_after} s")]
    Unavailable { reason: String, retry_after: u64 },
    #[error("token endpoint answer not understood: {0}")]
    BadResponse(String),
    #[error("cannot sign the assertion: {0}")]
    Signing(String),
    #[error("token exchange did not complete: {0}")]
    Internal(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lent key finds what its owned key was stored under (same hash, equal), and only that:
    /// the per-thread front of the token store is looked up this way on every request.
    #[test]
    fn a_lent_key_finds_its_own_key_only() {
        let key = |provider: &str, subject: &str, scope: Option<&str>| TokenKey {
            provider: provider.into(),
            subject: subject.into(),
            scope: scope.map(Into::into),
        };
        let mut map: hashbrown::HashMap<TokenKey, u32, rustc_hash::FxBuildHasher> = Default::default();
        let keys = [
            key("p", "alice", None),
            key("p", "alice", Some("api")),
            key("p", "al", Some("iceapi")),
            key("q", "alice", None),
        ];
        for (n, k) in keys.iter().enumerate() {
            map.insert(k.clone(), n as u32);
        }
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(map.get(&k.lent()), Some(&(n as u32)), "{k:?}");
            assert_eq!(k.lent().to_key(), *k);
        }
        assert_eq!(map.get(&KeyRef { provider: "p", subject: "bob", scope: None }), None);
    }
}
