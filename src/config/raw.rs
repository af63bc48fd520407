//! The config file as written: serde structs, every field documented with its default.
//! Unknown keys are refused, so a typo is an error rather than a silently ignored setting.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::identity::Unmapped;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub providers: Vec<Spanned<RawProvider>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub subjects: RawSubjects,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub callers: Vec<Spanned<RawCaller>>,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub log: RawLog,
}

/// The admin listener: `/metrics`, `/healthz`, `/readyz`, `POST /reload`. Keep it on loopback
/// or a management network: it is not authenticated.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Address to serve it on, e.g. `127.0.0.1:9090`. Default: none (no admin listener).
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
}

/// How the proxy logs (to standard error, which systemd sends to the journal).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `"human"` (default) or `"json"` (one object per line).
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// An internal app allowed to use the proxy, and what for. With no `[[callers]]` every request
/// is let in (as behind a trusted network); with any, every request must be one of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCaller {
    pub name: Spanned<String>,
    /// SHA-256 of its API key, hex (`printf %s "$KEY" | sha256sum`). The key itself is never stored.
    #[serde(default)]
    pub api_key_sha256: Option<Spanned<String>>,
    /// DNS names in the caller's client certificate (subject alternative names) that identify it,
    /// with `server.tls_client_ca`. Default: none.
    #[serde(default)]
    pub certificate_names: Vec<Spanned<String>>,
    /// Unix users (uids) and groups (gids) that identify it on `server.unix_socket`.
    #[serde(default)]
    pub unix_uids: Vec<u32>,
    #[serde(default)]
    pub unix_gids: Vec<u32>,
    /// OAuth client ids whose bearer tokens identify it (with `server.caller_introspection_url`).
    #[serde(default)]
    pub client_ids: Vec<String>,
    /// Scope its bearer tokens must carry. Default: none.
    #[serde(default)]
    pub required_scope: Option<String>,
    /// Source addresses or CIDR ranges it may call from. Default: any (then an API key is needed).
    #[serde(default)]
    pub sources: Vec<Spanned<String>>,
    /// Subjects it may act as: exact names or `*` patterns (`*@sales.example.com`). Required.
    pub subjects: Vec<String>,
    /// Routes it may use. Default: all.
    #[serde(default)]
    pub routes: Vec<Spanned<String>>,
    /// SOAP operations it may invoke. Default: all.
    #[serde(default)]
    pub operations: Vec<String>,
    /// Requests per second it may send on average. Default: no limit.
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Requests it may send at once above that rate. Default: one second's worth.
    #[serde(default)]
    pub burst: Option<f64>,
    /// Requests it may have open at once. Default: no limit.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

/// Bounds on each SOAP request, checked while it is read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Deepest element nesting. Default 64.
    pub max_depth: usize,
    /// Most elements in one request. Default 500 000.
    pub max_elements: usize,
    /// Most attributes on one element. Default 64.
    pub max_attributes: usize,
    /// Longest element or attribute name, in bytes. Default 256.
    pub max_name_length: usize,
    /// Longest text node, e.g. `"5 MiB"`. Default 5 MiB.
    #[serde(deserialize_with = "byte_size")]
    pub max_text_length: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        let d = crate::soap::envelope::Limits::default();
        RawLimits {
            max_depth: d.max_depth,
            max_elements: d.max_elements,
            max_attributes: d.max_attributes,
            max_name_length: d.max_name_length,
            max_text_length: d.max_text_length,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM files of CA certificates trusted for token endpoints and upstreams, on top of the
    /// system's (a private PKI, a TLS-inspecting gateway). Default: none.
    #[serde(default)]
    pub ca_files: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Address the proxy listens on. Default `127.0.0.1:8080`.
    pub listen: Spanned<String>,
    /// Largest request body accepted, e.g. `"10 MiB"`. Default 10 MiB; larger gets 413.
    #[serde(deserialize_with = "byte_size")]
    pub max_body: usize,
    /// Time to connect to an upstream. Default 5 s.
    #[serde(deserialize_with = "duration")]
    pub upstream_connect_timeout: Duration,
    /// Time from sending a request upstream to its response headers. Default 120 s.
    #[serde(deserialize_with = "duration")]
    pub upstream_timeout: Duration,
    /// Also listen on this Unix socket; callers there are identified by their uid/gid. Default: none.
    #[serde(default)]
    pub unix_socket: Option<String>,
    /// Serve TLS with this PEM certificate chain and key (readable by its owner only). Default: plain.
    #[serde(default)]
    pub tls_certificate: Option<Spanned<String>>,
    #[serde(default)]
    pub tls_private_key: Option<Spanned<String>>,
    /// PEM CA certificates whose client certificates identify callers (mutual TLS). Default: none.
    #[serde(default)]
    pub tls_client_ca: Option<Spanned<String>>,
    /// RFC 7662 endpoint that checks callers' own bearer tokens (`Authorization: Bearer`), with
    /// this client's credentials. Default: none (bearer tokens identify no caller).
    #[serde(default)]
    pub caller_introspection_url: Option<Spanned<String>>,
    #[serde(default)]
    pub caller_introspection_client_id: Option<String>,
    #[serde(default)]
    pub caller_introspection_secret_file: Option<Spanned<String>>,
    #[serde(default)]
    pub caller_introspection_auth: crate::token::introspect::ClientAuth,
    /// Header callers send their API key in. Default `X-API-Key`; removed before forwarding.
    pub api_key_header: String,
    /// Most tokens kept in memory; the least recently used goes first. Default 100 000.
    pub max_tokens: u64,
    /// A token not used for this long is dropped (its subject is idle). Default 1 h.
    #[serde(deserialize_with = "duration")]
    pub token_idle: Duration,
    /// On SIGTERM, how long requests in flight may take to finish. Default 30 s.
    #[serde(deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// How long a caller's connection may wait for its next request's first byte (a new
    /// connection's first too) before it is closed. Default 75 s (nginx's `keepalive_timeout`).
    #[serde(deserialize_with = "duration")]
    pub keepalive_timeout: Duration,
    /// How long a caller may go without sending more of a request it began (head or body) or
    /// taking more of its answer: past it, a head is refused with 408 and the connection closed.
    /// Default 60 s (nginx's `client_header_timeout`, `client_body_timeout`, `send_timeout`).
    #[serde(deserialize_with = "duration")]
    pub client_timeout: Duration,
    /// Threads serving requests. Default 0: one per CPU.
    pub workers: usize,
    /// Each serving thread kept on a CPU of its own (of those the process may use). Default
    /// false.
    pub pin_workers: bool,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: Spanned::new(0..0, "127.0.0.1:8080".to_owned()),
            max_body: 10 * 1024 * 1024,
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(120),
            unix_socket: None,
            tls_certificate: None,
            tls_private_key: None,
            tls_client_ca: None,
            caller_introspection_url: None,
            caller_introspection_client_id: None,
            caller_introspection_secret_file: None,
            caller_introspection_auth: Default::default(),
            api_key_header: "X-API-Key".to_owned(),
            max_tokens: 100_000,
            token_idle: Duration::from_secs(3600),
            drain_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(75),
            client_timeout: Duration::from_secs(60),
            workers: 0,
            pin_workers: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Name routes refer to.
    pub name: Spanned<String>,
    /// The OAuth 2.0 token endpoint. https, or http on a loopback address.
    pub token_url: Spanned<String>,
    /// The connected app's consumer key: the assertion's `iss`.
    pub client_id: String,
    /// The assertion's `aud` (Salesforce: `https://login.salesforce.com` or `https://test.salesforce.com`).
    pub audience: String,
    /// PEM private key file (PKCS#1 or PKCS#8), relative to the config file's folder.
    pub private_key: Spanned<String>,
    /// Key id put in the assertion header. Default: none.
    #[serde(default)]
    pub kid: Option<String>,
    /// The key that takes over at `active_from` (RFC 3339), for rotating the connected app's
    /// certificate with no gap: `{ private_key = "new.key", kid = "2026-11", active_from = "..." }`.
    #[serde(default)]
    pub next_key: Option<Spanned<RawNextKey>>,
    /// Assertion lifetime (`exp - iat`). Default 3 m, the most allowed.
    #[serde(default = "default_assertion_lifetime")]
    pub assertion_lifetime: Spanned<HumanDuration>,
    /// Scope requested with each exchange. Default: none.
    #[serde(default)]
    pub scope: Option<String>,
    /// Token lifetime assumed when the answer has no `expires_in`. Default 2 h (Salesforce's default session timeout).
    #[serde(default = "default_session_lifetime")]
    pub session_lifetime: Spanned<HumanDuration>,
    /// Renew this long before expiry. Default 5 m.
    #[serde(default = "default_renew_before")]
    pub renew_before: Spanned<HumanDuration>,
    /// Time allowed for one token exchange attempt. Default 10 s.
    #[serde(default = "default_token_timeout")]
    pub timeout: Spanned<HumanDuration>,
    /// Time allowed for an exchange, retries and their waits included. Default 10 s.
    #[serde(default = "default_retry_deadline")]
    pub retry_deadline: Spanned<HumanDuration>,
    /// Consecutive failed attempts that open the circuit breaker. Default 5.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long the breaker fails new exchanges fast before one probe. Default 30 s.
    #[serde(default = "default_breaker_cooldown")]
    pub breaker_cooldown: Spanned<HumanDuration>,
    /// RFC 7662 introspection endpoint, asked for the expiry when the token answer has no
    /// `expires_in`. Default: none (then `session_lifetime` applies).
    #[serde(default)]
    pub introspection_url: Option<Spanned<String>>,
    /// `"client_secret_basic"` (default) or `"client_secret_post"`.
    #[serde(default)]
    pub introspection_auth: crate::token::introspect::ClientAuth,
    /// RFC 7009 endpoint to revoke the tokens still held when the proxy shuts down. Default:
    /// none (tokens are left to expire).
    #[serde(default)]
    pub revocation_url: Option<Spanned<String>>,
    /// File holding the client secret for introspection (Salesforce: the consumer secret).
    #[serde(default)]
    pub client_secret_file: Option<Spanned<String>>,
    /// How long an `invalid_grant` for a subject is answered without asking again. Default 60 s.
    #[serde(default = "default_refused_ttl")]
    pub refused_ttl: Spanned<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNextKey {
    pub private_key: String,
    #[serde(default)]
    pub kid: Option<String>,
    pub active_from: String,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    Soap,
    Rest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Spanned<String>,
    /// Path prefix on the proxy; matched at a `/` boundary, longest first.
    pub path: Spanned<String>,
    pub kind: RouteKind,
    /// Name of a provider.
    pub provider: Spanned<String>,
    /// `"instance_url"` (the token answer says where) or a base URL.
    pub upstream: Spanned<String>,
    /// SOAP routes: the WSDL file, relative to the config file's folder.
    #[serde(default)]
    pub wsdl: Option<Spanned<String>>,
    /// Where the requester is read: `{ element = "Header/SessionHeader/sessionId" }` (SOAP default)
    /// or `{ header = "X-Requester" }` (REST default).
    #[serde(default)]
    pub requester: Option<Spanned<RawRequester>>,
    /// SOAP routes: the element the session token is written to. Default `Header/SessionHeader/sessionId`.
    #[serde(default)]
    pub session_element: Option<Spanned<String>>,
    /// SOAP routes: `"strict"` (default), `"lax"` (unknown elements and attributes passed over) or `"off"`.
    #[serde(default)]
    pub validation: Option<Spanned<crate::soap::validate::Mode>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequester {
    #[serde(default)]
    pub element: Option<String>,
    #[serde(default)]
    pub header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubjects {
    /// `"reject"` (default) or `"as-is"`.
    #[serde(default = "default_unmapped")]
    pub unmapped: Unmapped,
    /// e.g. `"{local}@corp.example.com.sandbox"`; placeholders `{requester}`, `{local}`, `{domain}`.
    #[serde(default)]
    pub template: Option<Spanned<String>>,
    /// Exact requester → subject table (case-insensitive on the requester).
    #[serde(default)]
    pub map: BTreeMap<String, String>,
}

impl Default for RawSubjects {
    fn default() -> Self {
        RawSubjects { unmapped: Unmapped::Reject, template: None, map: BTreeMap::new() }
    }
}

fn default_unmapped() -> Unmapped {
    Unmapped::Reject
}

/// A duration written as a human string: `"180s"`, `"3m"`, `"2h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map(HumanDuration).map_err(|e| {
            serde::de::Error::custom(format!("'{text}' is not a duration like \"90s\", \"3m\" or \"2h\": {e}"))
        })
    }
}

fn spanned_default(d: Duration) -> Spanned<HumanDuration> {
    Spanned::new(0..0, HumanDuration(d))
}
fn default_assertion_lifetime() -> Spanned<HumanDuration> {
    spanned_default(Duration::from_secs(180))
}
fn default_session_lifetime() -> Spanned<HumanDuration> {
    spanned_default(Duration::from_secs(2 * 3600))
}
fn default_renew_before() -> Spanned<HumanDuration> {
    spanned_default(Duration::from_secs(300))
}
fn default_token_timeout() -> Spanned<HumanDuration> {
    spanned_default(Duration::from_secs(10))
}

fn default_retry_deadline() -> Spanned<HumanDuration> {
    spanned_default(Duration::from_secs(10))
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> Spanned<HumanDuration> {
    spanned_default(Duration::from_secs(30))
}
fn default_refused_ttl() -> Spanned<HumanDuration> {
    spanned_default(Duration::from_secs(60))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    HumanDuration::deserialize(d).map(|h| h.0)
}

fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let text = String::deserialize(d)?;
    parse_byte_size(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("'{text}' is not a size like \"512 KiB\" or \"10 MiB\"")))
}

/// `"10 MiB"`, `"512KiB"`, `"1000 B"`, `"2 MB"`.
pub fn parse_byte_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "KiB" => 1024,
        "MB" => 1000 * 1000,
        "MiB" => 1024 * 1024,
        "GB" => 1000 * 1000 * 1000,
        "GiB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_byte_size("10 MiB"), Some(10 * 1024 * 1024));
        assert_eq!(parse_byte_size("512KiB"), Some(512 * 1024));
        assert_eq!(parse_byte_size("7"), Some(7));
        assert_eq!(parse_byte_size("ten"), None);
        assert_eq!(parse_byte_size("1 PB"), None);
    }
}
