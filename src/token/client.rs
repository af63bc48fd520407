//! The token endpoint: one POST of the JWT bearer grant, and what its answer means.
//!
//! Errors never carry the assertion or the token: OAuth error fields are kept, response bodies are not.

use std::time::Duration;

use serde::Deserialize;

use super::TokenError;
use crate::secret::Secret;

pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Longest `error_description` passed on to callers.
const MAX_DESCRIPTION: usize = 300;
/// Largest token endpoint answer read.
const MAX_RESPONSE: usize = 64 * 1024;

/// A successful token response (RFC 6749 section 5.1, with Salesforce's additions).
pub struct Granted {
    pub access_token: Secret,
    pub token_type: String,
    pub expires_in: Option<u64>,
    pub instance_url: Option<String>,
    pub scope: Option<String>,
    pub id: Option<String>,
}

// Deliberately no `Debug`: it holds the token before it is wrapped.
#[derive(Deserialize)]
struct RawGranted {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    instance_url: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Posts assertions to one token endpoint.
#[derive(Debug, Clone)]
pub struct TokenClient {
    http: reqwest::Client,
    token_url: url::Url,
}

impl TokenClient {
    /// The token endpoint.
    pub fn url(&self) -> &url::Url {
        &self.token_url
    }

    /// `extra_roots`: CA certificates trusted besides the system's.
    pub fn new(
        token_url: url::Url,
        timeout: Duration,
        extra_roots: &[reqwest::Certificate],
    ) -> Result<TokenClient, String> {
        let http = reqwest::Client::builder()
            .tls_certs_merge(extra_roots.iter().cloned())
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("oauth-egress/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(TokenClient { http, token_url })
    }

    pub fn token_url(&self) -> &url::Url {
        &self.token_url
    }

    /// Exchanges one assertion for an access token.
    pub async fn exchange(&self, assertion: &Secret, scope: Option<&str>) -> Result<Granted, TokenError> {
        let mut form = vec![("grant_type", JWT_BEARER_GRANT), ("assertion", assertion.expose())];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let response = self
            .http
            .post(self.token_url.clone())
            .header(http::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| TokenError::Unreachable(describe(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = read_limited(response).await?;
        if status.is_success() {
            return parse_granted(&body);
        }
        // Busy or failing, whatever the body says: worth another attempt.
        if status == 429 || status.is_server_error() {
            return Err(match retry_after {
                Some(seconds) => TokenError::RetryAfter { status: status.as_u16(), seconds },
                None => TokenError::Status(status.as_u16()),
            });
        }
        match serde_json::from_slice::<RawError>(&body) {
            Ok(err) if status.is_client_error() => Err(TokenError::Rejected {
                status: status.as_u16(),
                error: clean(&err.error, assertion),
                description: err.error_description.map(|d| clean(&d, assertion)),
            }),
            _ => Err(TokenError::Status(status.as_u16())),
        }
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, TokenError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| TokenError::Unreachable(describe(&e)))? {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(TokenError::BadResponse(format!("answer larger than {MAX_RESPONSE} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn parse_granted(body: &[u8]) -> Result<Granted, TokenError> {
    let raw: RawGranted = serde_json::from_slice(body)
        .map_err(|e| TokenError::BadResponse(format!("not a token response: {}", e.classify_name())))?;
    if raw.access_token.is_empty() {
        return Err(TokenError::BadResponse("empty access_token".into()));
    }
    let token_type = raw.token_type.unwrap_or_else(|| "Bearer".to_owned());
    // RFC 6749 says a number; some servers send a string.
    let expires_in = match raw.expires_in {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    Ok(Granted {
        access_token: Secret::new(raw.access_token),
        token_type,
        expires_in,
        instance_url: raw.instance_url,
        scope: raw.scope,
        id: raw.id,
    })
}

/// Keeps an IdP's error text short and printable, and never lets it echo the assertion.
fn clean(text: &str, assertion: &Secret) -> String {
    let text = text.replace(assertion.expose(), "<assertion>");
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(MAX_DESCRIPTION).collect();
    if text.chars().count() > MAX_DESCRIPTION {
        out.push('…');
    }
    out
}

fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(source) => format!("{what}: {source}"),
        None => what.to_owned(),
    }
}

trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "missing or mistyped fields",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salesforce_and_okta_answers_parse() {
        let sf = br#"{"access_token":"00D!AQ","instance_url":"https://x.my.salesforce.com","id":"https://login/id/00D/005","token_type":"Bearer","issued_at":"1","signature":"s"}"#;
        let Ok(g) = parse_granted(sf) else { panic!("not granted") };
        assert_eq!(g.expires_in, None);
        assert_eq!(g.instance_url.as_deref(), Some("https://x.my.salesforce.com"));
        let okta = br#"{"access_token":"eyJ","token_type":"Bearer","expires_in":"3600","scope":"api"}"#;
        assert_eq!(parse_granted(okta).map(|g| g.expires_in).unwrap_or(None), Some(3600));
        assert!(matches!(parse_granted(b"<html>"), Err(TokenError::BadResponse(_))));
    }

    #[test]
    fn error_text_never_echoes_the_assertion() {
        let a = Secret::new("eyJhbGciOiJSUzI1NiJ9.payload.sig");
        let cleaned = clean("bad assertion eyJhbGciOiJSUzI1NiJ9.payload.sig\n", &a);
        assert_eq!(cleaned, "bad assertion <assertion>");
    }
}
