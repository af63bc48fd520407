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
