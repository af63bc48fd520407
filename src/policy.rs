//! Who is calling, and what that caller may do: the callers of the config, how a request proves
//! it is one of them (an API key, stored only as its SHA-256, and/or a source address range), and
//! the subjects, routes and SOAP operations each may use. Every decision is written to the
//! `audit` log target.

use std::net::IpAddr;

use ipnet::IpNet;

/// A caller as configured.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    /// SHA-256 of the caller's API key; `None`: identified by certificate or source address.
    pub key_sha256: Option<[u8; 32]>,
    /// DNS names in its client certificate that identify it (mutual TLS).
    pub certificate_names: Vec<String>,
    /// Unix users and groups that identify it on the Unix socket.
    pub unix_uids: Vec<u32>,
    pub unix_gids: Vec<u32>,
    /// OAuth client ids whose bearer tokens identify it (checked by introspection).
    pub client_ids: Vec<String>,
    /// Scope its bearer tokens must carry.
    pub required_scope: Option<String>,
    /// Source addresses it may call from; empty: any.
    pub sources: Vec<IpNet>,
    /// Subjects it may act as: exact names or patterns with `*` (`*@sales.example.com`).
    pub subjects: Vec<String>,
    /// Routes it may use; empty: all.
    pub routes: Vec<String>,
    /// SOAP operations it may invoke; empty: all.
    pub operations: Vec<String>,
    /// Requests per second it may send on average, and in a burst.
    pub rate: Option<(f64, f64)>,
    /// Requests it may have open at once.
    pub max_concurrent: Option<u32>,
}

/// Every caller, and the header API keys come in.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub callers: Vec<Caller>,
    pub api_key_header: Option<http::HeaderName>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("no credential: send an API key in {0}, or call from an address a caller is allowed")]
    Unauthenticated(String),
    #[error("the API key is not one of a configured caller")]
    UnknownKey,
    #[error("the client certificate names no configured caller")]
    UnknownCertificate,
    #[error("the Unix user or group calling is not a configured caller")]
    UnknownUser,
    #[error("the Authorization header is not 'Bearer <token>'")]
    MalformedBearer,
    #[error("no bearer token: send 'Authorization: Bearer <token>'")]
    MissingBearer,
    #[error("the bearer token is not active")]
    InactiveToken,
    #[error("OAuth client '{0}' is not a configured caller")]
    ClientNotAllowed(String),
    #[error("caller '{caller}' must present a token with scope '{scope}'")]
    MissingScope { caller: String, scope: String },
    #[error("the bearer token cannot be checked now: {0}")]
    CannotVerify(String),
    #[error("the API key header is malformed")]
    MalformedKey,
    #[error("caller '{caller}' may not call from {address}")]
    Source { caller: String, address: IpAddr },
    #[error("caller '{caller}' may not act as subject '{subject}' (allowed: {allowed})")]
    Subject { caller: String, subject: String, allowed: String },
    #[error("caller '{caller}' may not use route '{route}'")]
    Route { caller: String, route: String },
    #[error("caller '{caller}' may not invoke operation '{operation}' (allowed: {allowed})")]
    Operation { caller: String, operation: String, allowed: String },
    #[error("caller '{caller}' is over its {what}; retry after {retry_after} s")]
    Limited { caller: String, what: &'static str, retry_after: u64 },
}

impl Denied {
    /// 401 for a missing or unknown credential, 400 for a malformed one, 403 for the rest.
    pub fn status(&self) -> u16 {
        match self {
            Denied::Unauthenticated(_)
            | Denied::UnknownKey
            | Denied::UnknownCertificate
            | Denied::UnknownUser
            | Denied::InactiveToken => 401,
            Denied::MalformedKey | Denied::MalformedBearer | Denied::MissingBearer => 400,
            Denied::CannotVerify(_) => 503,
            Denied::Limited { .. } => 429,
            _ => 403,
        }
    }
}

/// SHA-256 of an API key, as the config stores it.
pub fn key_digest(key: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Policy {
    /// Whether callers must authenticate at all (a config without callers lets every request in).
    pub fn enforced(&self) -> bool {
        !self.callers.is_empty()
    }

    /// Whether bearer tokens are the only way any caller can prove itself (then a request
    /// without one is malformed, 400, as gateways enforcing OAuth answer).
    pub fn bearer_only(&self) -> bool {
        self.callers.iter().all(|c| {
            !c.client_ids.is_empty()
                && c.key_sha256.is_none()
                && c.certificate_names.is_empty()
                && c.unix_uids.is_empty()
                && c.unix_gids.is_empty()
        })
    }

    /// Checks a caller found by other means (a bearer token) against its source ranges.
    pub fn check_source<'c>(&self, caller: &'c Caller, peer: Option<IpAddr>) -> Result<&'c Caller, Denied> {
        match peer {
            Some(address) if !caller.sources.is_empty() && !caller.sources.iter().any(|n| n.contains(&address)) => {
                Err(Denied::Source { caller: caller.name.clone(), address })
            }
            _ => Ok(caller),
        }
    }

    /// The caller a request is: by its API key, else its client certificate, else its address.
    pub fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: Option<IpAddr>,
        cert: Option<&rustls_pki_types::CertificateDer<'_>>,
        user: Option<crate::server::PeerUser>,
    ) -> Result<&Caller, Denied> {
        let presented = match &self.api_key_header {
            Some(name) => match headers.get(name) {
                Some(value) => Some(value.to_str().map_err(|_| Denied::MalformedKey)?.trim().to_owned()),
                None => None,
            },
            None => None,
        };
        let caller = match presented {
            Some(key) if key.is_empty() => return Err(Denied::MalformedKey),
            Some(key) => {
                let digest = key_digest(key.as_bytes());
                self.callers
                    .iter()
                    .find(|c| {
                        c.key_sha256
                            .is_some_and(|k| aws_lc_rs::constant_time::verify_slices_are_equal(&k, &digest).is_ok())
                    })
                    .ok_or(Denied::UnknownKey)?
            }
            None if user.is_some() => {
                let user = user.ok_or(Denied::UnknownUser)?;
                self.callers
                    .iter()
                    .find(|c| c.unix_uids.contains(&user.uid) || c.unix_gids.contains(&user.gid))
                    .ok_or(Denied::UnknownUser)?
            }
            None if cert.is_some() => {
                let cert = cert.and_then(|c| webpki::EndEntityCert::try_from(c).ok()).ok_or(Denied::UnknownKey)?;
                self.callers
                    .iter()
                    .find(|c| {
                        c.certificate_names.iter().any(|name| {
                            rustls_pki_types::ServerName::try_from(name.as_str())
                                .is_ok_and(|n| cert.verify_is_valid_for_subject_name(&n).is_ok())
                        })
                    })
                    .ok_or(Denied::UnknownCertificate)?
            }
            None => {
                let address = peer.ok_or_else(|| Denied::Unauthenticated(self.header_name()))?;
                self.callers
                    .iter()
                    .find(|c| {
                        c.key_sha256.is_none()
                            && c.certificate_names.is_empty()
                            && c.client_ids.is_empty()
                            && c.sources.iter().any(|net| net.contains(&address))
                    })
                    .ok_or_else(|| Denied::Unauthenticated(self.header_name()))?
            }
        };
        if let Some(address) = peer
            && !caller.sources.is_empty()
            && !caller.sources.iter().any(|net| net.contains(&address))
        {
            return Err(Denied::Source { caller: caller.name.clone(), address });
        }
        Ok(caller)
    }

    fn header_name(&self) -> String {
        self.api_key_header.as_ref().map(|h| h.to_string()).unwrap_or_else(|| "the API key header".into())
    }
}

impl Caller {
    /// May this caller act as `subject` on `route`, invoking `operation` (SOAP)?
    pub fn authorize(&self, subject: &str, route: &str, operation: Option<&str>) -> Result<(), Denied> {
        if !self.routes.is_empty() && !self.routes.iter().any(|r| r == route) {
            return Err(Denied::Route { caller: self.name.clone(), route: route.to_owned() });
        }
        if !self.subjects.iter().any(|p| glob(p, subject)) {
            return Err(Denied::Subject {
                caller: self.name.clone(),
                subject: subject.to_owned(),
                allowed: self.subjects.join(", "),
            });
        }
        if let Some(op) = operation
            && !self.operations.is_empty()
            && !self.operations.iter().any(|o| o == op)
        {
            return Err(Denied::Operation {
                caller: self.name.clone(),
                operation: op.to_owned(),
                allowed: self.operations.join(", "),
            });
        }
        Ok(())
    }
}

/// Per-caller request rate (a token bucket on the store's clock) and open requests.
#[derive(Debug, Default)]
pub struct Limits {
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
    open: std::collections::HashMap<String, std::sync::Arc<tokio::sync::Semaphore>>,
}

impl Limits {
    pub fn new(policy: &Policy) -> Limits {
        let open = policy
            .callers
            .iter()
            .filter_map(|c| {
                let n = c.max_concurrent? as usize;
                Some((c.name.clone(), std::sync::Arc::new(tokio::sync::Semaphore::new(n))))
            })
            .collect();
        Limits { buckets: Default::default(), open }
    }

    /// Takes one request from `caller`'s bucket; `Err(seconds)` until one is free.
    pub fn admit(&self, caller: &Caller, now: std::time::Instant) -> Result<(), u64> {
        let Some((rate, burst)) = caller.rate else { return Ok(()) };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(caller.name.clone()).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }

    /// A place among `caller`'s open requests, held until dropped (`None`: it has no limit).
    pub fn enter(&self, caller: &Caller) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Denied> {
        match self.open.get(&caller.name) {
            None => Ok(None),
            Some(sem) => sem.clone().try_acquire_owned().map(Some).map_err(|_| Denied::Limited {
                caller: caller.name.clone(),
                what: "limit of open requests",
                retry_after: 1,
            }),
        }
    }
}

/// `*` matches any run of characters (case-insensitively, as subjects are user names); the rest
/// must match exactly.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.to_lowercase(), text.to_lowercase());
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*@sales.example.com", "Ann@Sales.example.com"));
        assert!(!glob("*@sales.example.com", "ann@sales.example.com.evil"));
        assert!(glob("ops@corp.example.com", "ops@corp.example.com"));
        assert!(!glob("ops@corp.example.com", "ops@corp.example.co"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
        assert!(glob("*", "anyone"));
    }
}
