//! RFC 7009 revocation of the tokens still held, at shutdown, when a provider asks for it: a
//! token that outlives the proxy is a credential nobody will use but someone could steal.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::provider::Provider;
use super::{Token, TokenKey};
use crate::secret::{AccessToken, Secret};

/// Where and how a provider's tokens are revoked.
#[derive(Debug)]
pub struct Revoker {
    pub http: reqwest::Client,
    pub url: url::Url,
    /// Client credentials, when the endpoint wants them (RFC 7009 confidential clients).
    pub client: Option<(String, Secret)>,
}

impl Revoker {
    async fn revoke(&self, token: &AccessToken) -> bool {
        let mut request = self.http.post(self.url.clone());
        if let Some((id, secret)) = &self.client {
            request = request.basic_auth(id, Some(secret.expose()));
        }
        let form = [("token", token.expose()), ("token_type_hint", "access_token")];
        matches!(request.form(&form).send().await, Ok(r) if r.status().is_success())
    }
}

/// Revokes every held token whose provider has a revocation endpoint, all at once, waiting at
/// most `limit`. Returns how many the endpoints confirmed.
pub async fn revoke_all(providers: &[Arc<Provider>], held: Vec<(TokenKey, Arc<Token>)>, limit: Duration) -> usize {
    let work = held.iter().filter_map(|(key, token)| {
        let provider = providers.iter().find(|p| p.identity == key.provider)?;
        let revoker = provider.revoker.as_ref()?;
        Some(async move { revoker.revoke(&token.access_token).await })
    });
    match tokio::time::timeout(limit, join_all(work)).await {
        Ok(done) => done.into_iter().filter(|ok| *ok).count(),
        Err(_) => {
            tracing::warn!(
                limit_secs = limit.as_secs(),
                "Token revocation did not finish in time; the rest expire on their own."
            );
            0
        }
    }
}
