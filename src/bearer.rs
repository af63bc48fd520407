//! Callers that prove themselves with their own OAuth bearer token (the API-gateway enforcement
//! pattern): the token is checked by RFC 7662 introspection at a configured endpoint, and the
//! answer is kept for the token's lifetime (at most five minutes; a refusal for 30 s), so many
//! requests with one token cost one introspection. The token's `client_id` names the caller.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::policy::{Caller, Denied, Policy};
use crate::secret::Secret;
use crate::token::introspect::{Answer, Introspector};

/// Longest an active answer is trusted without asking again.
const MAX_CACHE: Duration = Duration::from_secs(300);
/// How long an inactive token is answered from memory.
const INACTIVE_CACHE: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct BearerCallers {
    pub introspector: Introspector,
    /// SHA-256 of the token → the answer and until when it holds.
    cache: moka::sync::Cache<[u8; 32], (Answer, Instant)>,
}

impl BearerCallers {
    pub fn new(introspector: Introspector) -> Self {
        BearerCallers { introspector, cache: moka::sync::Cache::new(100_000) }
    }

    /// The caller a bearer token belongs to: active, issued to a configured client, with the
    /// scope that caller requires.
    pub async fn caller<'p>(&self, policy: &'p Policy, token: &str, now: Instant) -> Result<&'p Caller, Denied> {
        let key = crate::policy::key_digest(token.as_bytes());
        let answer = match self.cache.get(&key) {
            Some((answer, until)) if now < until => answer,
            _ => {
                // Boxed: the exchange is the rare path, and its future would otherwise be part of
                // every request's (see `App::handle`).
                let answer = Box::pin(self.introspector.introspect(&Secret::new(token)))
                    .await
                    .map_err(|e| Denied::CannotVerify(e.to_string()))?;
                let until = if answer.active {
                    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                    let left = answer.exp.map(|exp| Duration::from_secs(exp.saturating_sub(unix))).unwrap_or(MAX_CACHE);
                    now + left.min(MAX_CACHE)
                } else {
                    now + INACTIVE_CACHE
                };
                self.cache.insert(key, (answer.clone(), until));
                answer
            }
        };
        if !answer.active {
            return Err(Denied::InactiveToken);
        }
        let client = answer.client_id.as_deref().unwrap_or_default();
        let caller = policy
            .callers
            .iter()
            .find(|c| c.client_ids.iter().any(|id| id == client))
            .ok_or_else(|| Denied::ClientNotAllowed(client.to_owned()))?;
        if let Some(required) = &caller.required_scope {
            let scopes = answer.scope.as_deref().unwrap_or_default();
            if !scopes.split_whitespace().any(|s| s == required) {
                return Err(Denied::MissingScope { caller: caller.name.clone(), scope: required.clone() });
            }
        }
        Ok(caller)
    }
}

/// The token of an `Authorization: Bearer` header; `Err` when the header is there but malformed.
pub fn bearer(headers: &http::HeaderMap) -> Result<Option<&str>, Denied> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else { return Ok(None) };
    let text = value.to_str().map_err(|_| Denied::MalformedBearer)?;
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(Denied::MalformedBearer),
    }
}
