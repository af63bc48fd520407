//! A provider: one token endpoint and the connected app that signs for it. `fetch` turns a
//! subject into a `Token` with its renewal and expiry times.

use std::sync::Arc;
use std::time::Duration;

use std::time::Instant;

use super::assertion::Signer;
use super::client::TokenClient;
use super::resilience::{self, Admit, Breaker, Policy, Refusals};
use super::{Token, TokenError};
use crate::clock::Clock;
use crate::proxy::forward::Origin;
use crate::secret::AccessToken;

#[derive(Debug)]
pub struct Provider {
    pub name: Arc<str>,
    /// Who tokens are got as: a digest of the token endpoint, client id, audience, scope and
    /// signing key. Tokens are stored under it, so a reloaded config keeps the tokens of every
    /// provider whose identity did not change (and drops those whose identity did).
    pub identity: Arc<str>,
    pub signer: Signer,
    pub client: TokenClient,
    pub scope: Option<Arc<str>>,
    /// Assumed lifetime when the answer has no `expires_in` (Salesforce: the org's session timeout).
    pub session_lifetime: Duration,
    /// Renew this long before expiry.
    pub renew_before: Duration,
    pub policy: Policy,
    pub breaker: Breaker,
    pub refusals: Refusals,
    /// Asked for the expiry when the token answer has none.
    pub introspection: Option<super::introspect::Introspector>,
    /// Revokes held tokens at shutdown, when configured.
    pub revoker: Option<super::revoke::Revoker>,
    /// The instance the last token named: the users of one org share it, so their tokens share
    /// one parsed copy (a parsed instance per cached subject would cost a fifth of its memory).
    pub last_instance: std::sync::Mutex<Option<Arc<Origin>>>,
}

impl Provider {
    /// A token for `subject`: retried with backoff inside the policy's deadline, refused fast
    /// while the breaker is open, and answered from memory for a subject recently refused.
    pub async fn fetch(&self, subject: &str, clock: &Clock) -> Result<Token, TokenError> {
        if let Some(refused) = self.refusals.get(subject, clock.now()) {
            return Err(refused);
        }
        let deadline = Instant::now() + self.policy.deadline;
        let mut attempt = 0u32;
        loop {
            if let Admit::Refuse(wait) = self.breaker.admit(clock.now()) {
                return Err(TokenError::Unavailable {
                    reason: "the token endpoint failed repeatedly; new exchanges pause".into(),
                    retry_after: wait.as_secs().max(1),
                });
            }
            let error = match self.exchange(subject, clock).await {
                Ok(token) => {
                    self.breaker.success();
                    return Ok(token);
                }
                Err(e) => e,
            };
            let Some(asked) = resilience::retryable(&error) else {
                if let TokenError::Rejected { error: code, .. } = &error {
                    // The endpoint works; it refuses this subject.
                    self.breaker.success();
                    if code == "invalid_grant" {
                        self.refusals.remember(subject, error.clone(), clock.now() + self.policy.refused_ttl);
                    }
                }
                return Err(error);
            };
            self.breaker.failure(clock.now(), &self.policy);
            let wait = asked.unwrap_or_else(|| resilience::backoff(attempt));
            if Instant::now() + wait >= deadline {
                return Err(TokenError::Unavailable { reason: error.to_string(), retry_after: wait.as_secs().max(1) });
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One attempt: a fresh assertion (new `jti`), one exchange.
    async fn exchange(&self, subject: &str, clock: &Clock) -> Result<Token, TokenError> {
        let assertion = self.signer.sign(subject)?;
        let started = Instant::now();
        let granted = self.client.exchange(&assertion, self.scope.as_deref()).await;
        let metrics = &crate::metrics::METRICS;
        let provider = self.name.to_string();
        metrics
            .exchange_seconds
            .get_or_create(&crate::metrics::ProviderLabels { provider: provider.clone() })
            .observe(started.elapsed().as_secs_f64());
        let outcome = match &granted {
            Ok(_) => "ok",
            Err(TokenError::Rejected { .. }) => "refused",
            Err(TokenError::Unreachable(_) | TokenError::Status(_) | TokenError::RetryAfter { .. }) => "unavailable",
            Err(_) => "error",
        };
        metrics.exchanges.get_or_create(&crate::metrics::ExchangeLabels { provider, outcome }).inc();
        let granted = granted?;
        let lifetime = match (granted.expires_in, &self.introspection) {
            (Some(seconds), _) => Duration::from_secs(seconds),
            (None, Some(introspector)) => match introspector.remaining(&granted.access_token).await {
                Ok(remaining) => remaining,
                Err(e) => {
                    tracing::warn!(provider = %self.name, error = %e, "Introspection failed; assuming the configured session lifetime.");
                    self.session_lifetime
                }
            },
            (None, None) => self.session_lifetime,
        };
        let received = clock.now();
        let instance_url = match granted.instance_url.as_deref() {
            None | Some("") => None,
            Some(u) => Some(
                url::Url::parse(u)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
                    .and_then(|u| self.instance(u))
                    .ok_or_else(|| TokenError::BadResponse("instance_url is not an http(s) URL".into()))?,
            ),
        };
        Ok(Token {
            access_token: AccessToken::new(&granted.access_token)
                .ok_or_else(|| TokenError::BadResponse("access_token is not a valid header value".into()))?,
            token_type: granted.token_type,
            instance_url,
            scope: granted.scope,
            id: granted.id,
            refresh_at: received + refresh_after(lifetime, self.renew_before),
            expires_at: received + lifetime,
        })
    }
}

impl Provider {
    /// `url` parsed for forwarding, shared with earlier tokens that named the same instance.
    fn instance(&self, url: url::Url) -> Option<Arc<Origin>> {
        let mut last = self.last_instance.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match last.as_ref() {
            Some(origin) if *origin.url() == url => Some(Arc::clone(origin)),
            _ => {
                let origin = Arc::new(Origin::new(url).ok()?);
                *last = Some(Arc::clone(&origin));
                Some(origin)
            }
        }
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
