//! RFC 7662 token introspection, to learn when a token expires when the token endpoint does not
//! say (Salesforce answers without `expires_in`). The client authenticates with its secret,
//! `client_secret_basic` or `client_secret_post`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::TokenError;
use crate::secret::Secret;

/// How the client proves itself to the introspection endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug)]
pub struct Introspector {
    pub http: reqwest::Client,
    pub url: url::Url,
    pub client_id: String,
    pub secret: Secret,
    pub auth: ClientAuth,
}

/// What the endpoint says of a token (the fields oauth-egress uses).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub active: bool,
    #[serde(default)]
    pub exp: Option<u64>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

impl Introspector {
    /// How long `token` has left, by the endpoint's `exp`.
    pub async fn remaining(&self, token: &Secret) -> Result<Duration, TokenError> {
        let answer = self.introspect(token).await?;
        let exp = match (answer.active, answer.exp) {
            (true, Some(exp)) => exp,
            (true, None) => return Err(TokenError::BadResponse("introspection answer has no exp".into())),
            (false, _) => return Err(TokenError::BadResponse("introspection says the new token is inactive".into())),
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Ok(Duration::from_secs(exp.saturating_sub(now)))
    }

    /// The endpoint's answer for `token`.
    pub async fn introspect(&self, token: &Secret) -> Result<Answer, TokenError> {
        let mut form = vec![("token", token.expose()), ("token_type_hint", "access_token")];
        let mut request = self.http.post(self.url.clone()).header(http::header::ACCEPT, "application/json");
        match self.auth {
            ClientAuth::ClientSecretBasic => {
                request = request.basic_auth(&self.client_id, Some(self.secret.expose()));
            }
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", self.secret.expose()));
            }
        }
        let response = request.form(&form).send().await.map_err(|e| TokenError::Unreachable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(TokenError::Status(response.status().as_u16()));
        }
        response.json().await.map_err(|_| TokenError::BadResponse("introspection answer is not RFC 7662 JSON".into()))
    }
}
