//! A provider: one token endpoint and the connected app that signs for it. `fetch` turns a
//! subject into a `Token` with its renewal and expiry times.

use std::sync::Arc;
use std::time::Duration;

use super::assertion::Signer;
use super::client::TokenClient;
use super::{Token, TokenError};
use crate::clock::Clock;

#[derive(Debug)]
pub struct Provider {
    pub name: Arc<str>,
    pub signer: Signer,
    pub client: TokenClient,
    pub scope: Option<Arc<str>>,
    /// Assumed lifetime when the answer has no `expires_in` (Salesforce: the org's session timeout).
    pub session_lifetime: Duration,
    /// Renew this long before expiry.
    pub renew_before: Duration,
}

impl Provider {
    /// Signs a fresh assertion for `subject` and exchanges it.
    pub async fn fetch(&self, subject: &str, clock: &Clock) -> Result<Token, TokenError> {
        let assertion = self.signer.sign(subject)?;
        let granted = self.client.exchange(&assertion, self.scope.as_deref()).await?;
        let received = clock.now();
        let lifetime = granted.expires_in.map(Duration::from_secs).unwrap_or(self.session_lifetime);
        let instance_url = match granted.instance_url.as_deref() {
            None | Some("") => None,
            Some(u) => Some(
                url::Url::parse(u)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
                    .ok_or_else(|| TokenError::BadResponse("instance_url is not an http(s) URL".into()))?,
            ),
        };
        Ok(Token {
            access_token: granted.access_token,
            token_type: granted.token_type,
            instance_url,
            scope: granted.scope,
            id: granted.id,
            refresh_at: received + refresh_after(lifetime, self.renew_before),
            expires_at: received + lifetime,
        })
    }
}

/// When to start renewing: `renew_before` ahead of expiry, but never before half the lifetime has
/// passed, so a short-lived token is not renewed on every request.
pub fn refresh_after(lifetime: Duration, renew_before: Duration) -> Duration {
    lifetime.saturating_sub(renew_before).max(lifetime / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_point_is_clamped() {
        let m = |s| Duration::from_secs(s);
        assert_eq!(refresh_after(m(7200), m(300)), m(6900));
        assert_eq!(refresh_after(m(60), m(300)), m(30));
        assert_eq!(refresh_after(m(0), m(300)), m(0));
    }
}
