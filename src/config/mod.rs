//! Configuration in three steps, each testable on its own: parse the TOML into `raw` structs,
//! `validate` them (pure: names, references, limits, URLs), then `build` (read keys, compile WSDLs,
//! make HTTP clients). Every error names the file and line it comes from; all are reported at once.

pub mod raw;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use url::Url;

use crate::identity::{SubjectMap, Template};
use crate::soap::envelope::{ElementPath, Limits};
use crate::soap::validate::Mode;
use crate::soap::wsdl::Wsdl;
use crate::token::assertion::{MAX_ASSERTION_LIFETIME, Signer, SigningKey};
use crate::token::client::TokenClient;
use crate::token::provider::Provider;
use raw::{RawConfig, RawRoute, RouteKind};

pub const DEFAULT_SESSION_ELEMENT: &str = "Header/SessionHeader/sessionId";
pub const DEFAULT_REQUESTER_HEADER: &str = "X-Requester";

/// One problem in a config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no place in the file (the file itself is missing).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
        }
    }
}

/// All the problems found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A loaded, checked and built configuration: everything a running proxy needs.
#[derive(Debug)]
pub struct Config {
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub max_body: usize,
    pub upstream_connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub max_tokens: u64,
    pub token_idle: Duration,
    pub providers: Vec<Arc<Provider>>,
    pub routes: Vec<Route>,
    pub subjects: SubjectMap,
    /// CA certificates trusted besides the system's, for token endpoints and upstreams.
    pub extra_roots: Vec<reqwest::Certificate>,
    /// The same certificates as DER, for the upstream client.
    pub extra_roots_der: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub limits: Limits,
    pub policy: crate::policy::Policy,
    /// TLS for the proxy's own listener, with client certificates when a client CA is set.
    pub tls: Option<ListenerTls>,
    /// Checks callers' bearer tokens, when configured.
    pub bearer: Option<crate::bearer::BearerCallers>,
    /// A Unix socket to listen on as well (callers by uid/gid).
    pub unix_socket: Option<PathBuf>,
    /// The files the listener's TLS was built from (a reload that changes them needs a restart).
    pub tls_files: Vec<PathBuf>,
    /// Where `/metrics`, `/healthz`, `/readyz` and `POST /reload` are served.
    pub admin_listen: Option<SocketAddr>,
    /// How long requests in flight may take to finish on shutdown.
    pub drain: Duration,
    /// How long a caller's connection waits for a request's first byte.
    pub keepalive_timeout: Duration,
    /// How long a caller may stall within a request or while taking its answer.
    pub client_timeout: Duration,
    /// Threads serving requests (0: one per CPU).
    pub workers: usize,
    /// Each serving thread kept on a CPU of its own.
    pub pin_workers: bool,
    pub log_format: raw::LogFormat,
}

/// The listener's TLS setup (no `Debug` of its own: it holds the private key).
#[derive(Clone)]
pub struct ListenerTls(pub tokio_rustls::TlsAcceptor);

impl fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ListenerTls(...)")
    }
}

#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    /// This route's series of the process's request latency histogram (it outlives reloads).
    pub latency: crate::sharded::Latency,
    /// This route's series of the request counter for status 200, per operation (an index into
    /// the WSDL's operations; a REST route has one, the empty operation), each fetched the
    /// first time it counts: counting the usual answer is then one atomic add, not a label-set
    /// look-up.
    pub answered_ok: Box<[std::sync::OnceLock<crate::sharded::Counter>]>,
    /// Path prefix, matched at a `/` boundary.
    pub path: String,
    pub provider: Arc<Provider>,
    pub upstream: Upstream,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// Where the token answer's `instance_url` points.
    InstanceUrl,
    /// A fixed base URL; the request's path and query are appended.
    Fixed(crate::proxy::forward::Origin),
}

#[derive(Debug)]
pub enum Protocol {
    Soap { wsdl: Arc<Wsdl>, requester: Requester, session: ElementPath, validation: Mode },
    Rest { requester_header: HeaderName },
}

/// Where a SOAP route reads the requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    Element(ElementPath),
    Header(HeaderName),
}

impl Config {
    /// Reads, validates and builds the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }])
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let config = Config::from_toml(&text, path, &base);
        // The WSDLs' element trees are freed by now: give their pages back.
        crate::memory::release_free_pages();
        config
    }

    /// Builds a config from TOML text; `file` names it in errors, relative paths start at `base`.
    pub fn from_toml(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigErrors> {
        let mut errors = Errors { file, text, list: Vec::new() };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let message = e.message().to_owned();
                errors.at(e.span().unwrap_or(0..0), message);
                return Err(errors.finish());
            }
        };
        let checked = validate(&raw, &mut errors);
        if !errors.list.is_empty() {
            return Err(errors.finish());
        }
        let config = build(raw, checked, base, &mut errors);
        match config {
            Some(config) if errors.list.is_empty() => Ok(config),
            _ => Err(errors.finish()),
        }
    }
}

struct Errors<'a> {
    file: &'a Path,
    text: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = if span.start == 0 && span.end == 0 { (0, 0) } else { line_col(self.text, span.start) };
        self.list.push(ConfigError { file: self.file.to_owned(), line, column, message: message.into() });
    }

    fn finish(self) -> ConfigErrors {
        ConfigErrors(self.list)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map(|nl| before.len() - nl).unwrap_or(before.len() + 1);
    (line, column)
}

/// What validation settles, so `build` does not parse again.
struct Checked {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    token_urls: Vec<Option<Url>>,
    upstreams: Vec<Option<Upstream>>,
    template: Option<Template>,
}

/// The pure checks: no file or network is touched.
fn validate(raw: &RawConfig, errors: &mut Errors<'_>) -> Checked {
    let listen = match raw.server.listen.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errors.at(
                raw.server.listen.span(),
                format!("listen '{}' is not an address like 127.0.0.1:8080", raw.server.listen.get_ref()),
            );
            None
        }
    };
    for (name, limit) in
        [("keepalive_timeout", raw.server.keepalive_timeout), ("client_timeout", raw.server.client_timeout)]
    {
        if limit.is_zero() {
            errors.at(0..0, format!("server.{name} must be more than 0s"));
        }
    }
    if raw.providers.is_empty() {
        errors.at(0..0, "no [[providers]]: at least one token endpoint is needed");
    }
    if raw.routes.is_empty() {
        errors.at(0..0, "no [[routes]]: at least one route is needed");
    }
    let mut names = HashSet::new();
    let mut token_urls = Vec::new();
    for p in &raw.providers {
        let p = p.get_ref();
        if !names.insert(p.name.get_ref().as_str()) {
            errors.at(p.name.span(), format!("provider '{}' is defined twice", p.name.get_ref()));
        }
        token_urls.push(check_url(errors, &p.token_url, "token_url"));
        let lifetime = p.assertion_lifetime.get_ref().0;
        if lifetime > MAX_ASSERTION_LIFETIME || lifetime < Duration::from_secs(10) {
            errors.at(
                p.assertion_lifetime.span(),
                format!("assertion_lifetime {} must be between 10s and 3m", humantime::format_duration(lifetime)),
            );
        }
        if p.session_lifetime.get_ref().0 < Duration::from_secs(60) {
            errors.at(p.session_lifetime.span(), "session_lifetime must be at least 1m");
        }
        if p.timeout.get_ref().0.is_zero() {
            errors.at(p.timeout.span(), "timeout must be more than 0s");
        }
        if p.client_id.trim().is_empty() {
            errors.at(p.name.span(), format!("provider '{}' has an empty client_id", p.name.get_ref()));
        }
    }
    let mut paths = HashSet::new();
    let mut route_names = HashSet::new();
    let mut upstreams = Vec::new();
    for spanned in &raw.routes {
        let r = spanned.get_ref();
        if !route_names.insert(r.name.get_ref().as_str()) {
            errors.at(r.name.span(), format!("route '{}' is defined twice", r.name.get_ref()));
        }
        let path = r.path.get_ref();
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            errors.at(r.path.span(), format!("path '{path}' must start with '/' and hold no query"));
        } else if !paths.insert(path.trim_end_matches('/').to_owned()) {
            errors.at(r.path.span(), format!("path '{path}' is used by another route"));
        }
        if !names.contains(r.provider.get_ref().as_str()) {
            errors.at(
                r.provider.span(),
                format!("route '{}' names provider '{}', which is not defined", r.name.get_ref(), r.provider.get_ref()),
            );
        }
        upstreams.push(if r.upstream.get_ref() == "instance_url" {
            Some(Upstream::InstanceUrl)
        } else {
            check_url(errors, &r.upstream, "upstream").and_then(|url| match crate::proxy::forward::Origin::new(url) {
                Ok(origin) => Some(Upstream::Fixed(origin)),
                Err(e) => {
                    errors.at(r.upstream.span(), format!("upstream: {e}"));
                    None
                }
            })
        });
        validate_route_protocol(r, errors);
    }
    validate_callers(raw, &route_names, errors);
    let template = raw.subjects.template.as_ref().and_then(|t| match Template::parse(t.get_ref()) {
        Ok(t) => Some(t),
        Err(e) => {
            errors.at(t.span(), e);
            None
        }
    });
    let admin_listen = raw.admin.listen.as_ref().and_then(|l| match l.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errors.at(l.span(), format!("admin listen '{}' is not an address like 127.0.0.1:9090", l.get_ref()));
            None
        }
    });
    Checked { listen, token_urls, upstreams, template, admin_listen }
}

fn validate_callers(raw: &RawConfig, route_names: &HashSet<&str>, errors: &mut Errors<'_>) {
    if HeaderName::from_bytes(raw.server.api_key_header.as_bytes()).is_err() {
        errors.at(0..0, format!("server.api_key_header '{}' is not an HTTP header name", raw.server.api_key_header));
    }
    let mut names = HashSet::new();
    for spanned in &raw.callers {
        let c = spanned.get_ref();
        let name = c.name.get_ref();
        if !names.insert(name.as_str()) {
            errors.at(c.name.span(), format!("caller '{name}' is defined twice"));
        }
        if let Some(k) = &c.api_key_sha256
            && parse_sha256(k.get_ref()).is_none()
        {
            errors.at(k.span(), "api_key_sha256 must be 64 hex digits (printf %s \"$KEY\" | sha256sum)");
        }
        for s in &c.sources {
            if parse_net(s.get_ref()).is_none() {
                errors.at(s.span(), format!("'{}' is not an address or CIDR range", s.get_ref()));
            }
        }
        if !c.client_ids.is_empty() && raw.server.caller_introspection_url.is_none() {
            errors.at(
                c.name.span(),
                format!("caller '{name}' has client_ids, but server.caller_introspection_url is not set"),
            );
        }
        if (!c.unix_uids.is_empty() || !c.unix_gids.is_empty()) && raw.server.unix_socket.is_none() {
            errors.at(
                c.name.span(),
                format!("caller '{name}' has unix_uids/unix_gids, but server.unix_socket is not set"),
            );
        }
        if c.api_key_sha256.is_none()
            && c.sources.is_empty()
            && c.certificate_names.is_empty()
            && c.client_ids.is_empty()
            && c.unix_uids.is_empty()
            && c.unix_gids.is_empty()
        {
            errors.at(
                c.name.span(),
                format!(
                    "caller '{name}' has no api_key_sha256, certificate_names, client_ids, unix_uids/unix_gids or sources: nothing identifies it"
                ),
            );
        }
        if !c.certificate_names.is_empty() && raw.server.tls_client_ca.is_none() {
            errors.at(
                c.name.span(),
                format!("caller '{name}' has certificate_names, but server.tls_client_ca is not set"),
            );
        }
        for n in &c.certificate_names {
            if rustls_pki_types::ServerName::try_from(n.get_ref().as_str()).is_err() {
                errors.at(n.span(), format!("'{}' is not a DNS name", n.get_ref()));
            }
        }
        if c.subjects.is_empty() {
            errors.at(c.name.span(), format!("caller '{name}' lists no subjects it may act as"));
        }
        for r in &c.routes {
            if !route_names.contains(r.get_ref().as_str()) {
                errors.at(r.span(), format!("caller '{name}' names route '{}', which is not defined", r.get_ref()));
            }
        }
    }
}

fn validate_route_protocol(r: &RawRoute, errors: &mut Errors<'_>) {
    let name = r.name.get_ref();
    match r.kind {
        RouteKind::Soap => {
            if r.wsdl.is_none() {
                errors.at(r.name.span(), format!("SOAP route '{name}' needs a wsdl file"));
            }
        }
        RouteKind::Rest => {
            if let Some(w) = &r.wsdl {
                errors.at(w.span(), format!("REST route '{name}' takes no wsdl"));
            }
            if let Some(s) = &r.session_element {
                errors.at(
                    s.span(),
                    format!("REST route '{name}' takes no session_element: the token goes in Authorization"),
                );
            }
            if let Some(v) = &r.validation {
                errors.at(v.span(), format!("REST route '{name}' takes no validation: only SOAP bodies are checked"));
            }
        }
    }
    if let Some(req) = &r.requester {
        let inner = req.get_ref();
        match (&inner.element, &inner.header, r.kind) {
            (Some(_), Some(_), _) | (None, None, _) => {
                errors.at(req.span(), "requester takes exactly one of element = \"...\" or header = \"...\"")
            }
            (Some(_), None, RouteKind::Rest) => {
                errors.at(req.span(), format!("REST route '{name}' reads the requester from a header, not an element"))
            }
            (Some(e), None, RouteKind::Soap) => {
                if element_path(e).is_none() {
                    errors.at(req.span(), format!("element '{e}' is not a path like Header/SessionHeader/sessionId"));
                }
            }
            (None, Some(h), _) => {
                if HeaderName::from_bytes(h.as_bytes()).is_err() {
                    errors.at(req.span(), format!("'{h}' is not an HTTP header name"));
                }
            }
        }
    }
    if let Some(s) = &r.session_element {
        match element_path(s.get_ref()) {
            Some(p)
                if p.first().map(String::as_str) == Some("Header") || p.first().map(String::as_str) == Some("Body") => {
            }
            _ => errors.at(s.span(), format!("session_element '{}' must be a path below Header or Body", s.get_ref())),
        }
    }
}

/// `"Header/SessionHeader/sessionId"` → its local names. `None` for an empty or odd path.
fn element_path(text: &str) -> Option<ElementPath> {
    let path: ElementPath = text.trim_matches('/').split('/').map(str::to_owned).collect();
    let ok = path.iter().all(|s| !s.is_empty() && !s.contains([':', ' ', '<', '>', '&', '"', '\'']));
    ok.then_some(path)
}

/// http(s) with a host; plain http only to loopback, since tokens and assertions are bearer credentials.
fn check_url(errors: &mut Errors<'_>, value: &toml::Spanned<String>, field: &str) -> Option<Url> {
    match Url::parse(value.get_ref()) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => Some(u),
        Ok(u) if u.scheme() == "http" && is_loopback(&u) => Some(u),
        Ok(u) if u.scheme() == "http" => {
            errors.at(value.span(), format!("{field} '{u}' uses plain http to a non-loopback host; credentials would cross the network unencrypted: use https"));
            None
        }
        _ => {
            errors.at(value.span(), format!("{field} '{}' is not an http(s) URL", value.get_ref()));
            None
        }
    }
}

pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The I/O step: keys, WSDLs, clients.
fn build(raw: RawConfig, checked: Checked, base: &Path, errors: &mut Errors<'_>) -> Option<Config> {
    let mut extra_roots = Vec::new();
    let mut extra_roots_der = Vec::new();
    for file in &raw.tls.ca_files {
        let path = base.join(file.get_ref());
        let loaded = std::fs::read(&path).map_err(|e| format!("cannot read: {e}")).and_then(|pem| {
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("not PEM certificates: {e}"))?;
            let der = <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("not PEM certificates: {e}"))?;
            if certs.is_empty() || der.is_empty() { Err("holds no certificate".to_owned()) } else { Ok((certs, der)) }
        });
        match loaded {
            Ok((certs, der)) => {
                extra_roots.extend(certs);
                extra_roots_der.extend(der);
            }
            Err(e) => errors.at(file.span(), format!("ca_files {}: {e}", path.display())),
        }
    }
    let mut providers = Vec::new();
    for (p, token_url) in raw.providers.iter().zip(checked.token_urls) {
        let p = p.get_ref();
        let key_path = secret_path(base, p.private_key.get_ref());
        let key = match read_secret_file(&key_path) {
            Ok(pem) => SigningKey::from_pem(&pem, p.kid.clone())
                .map_err(|e| format!("private_key {}: {e}", key_path.display())),
            Err(e) => Err(format!("private_key {}: {e}", key_path.display())),
        };
        let key = match key {
            Ok(k) => k,
            Err(message) => {
                errors.at(p.private_key.span(), message);
                continue;
            }
        };
        let token_url = token_url?;
        let client = match TokenClient::new(token_url, p.timeout.get_ref().0, &extra_roots) {
            Ok(c) => c,
            Err(e) => {
                errors.at(p.token_url.span(), format!("cannot make an HTTP client: {e}"));
                continue;
            }
        };
        let next = match &p.next_key {
            None => None,
            Some(field) => {
                let n = field.get_ref();
                let path = secret_path(base, &n.private_key);
                let key = read_secret_file(&path)
                    .and_then(|pem| SigningKey::from_pem(&pem, n.kid.clone()).map_err(|e| e.to_string()));
                let from = humantime::parse_rfc3339_weak(&n.active_from)
                    .map_err(|e| format!("active_from '{}' is not an RFC 3339 time: {e}", n.active_from));
                match (key, from) {
                    (Ok(key), Ok(from)) => Some((from, key)),
                    (Err(e), _) => {
                        errors.at(field.span(), format!("next_key {}: {e}", path.display()));
                        continue;
                    }
                    (_, Err(e)) => {
                        errors.at(field.span(), format!("next_key: {e}"));
                        continue;
                    }
                }
            }
        };
        let introspection = match introspector(p, base, &extra_roots, errors) {
            Ok(i) => i,
            Err(()) => continue,
        };
        let revoker = match &p.revocation_url {
            None => None,
            Some(field) => {
                let Some(url) = check_url(errors, field, "revocation_url") else { continue };
                let http = match reqwest::Client::builder()
                    .timeout(p.timeout.get_ref().0)
                    .redirect(reqwest::redirect::Policy::none())
                    .tls_certs_merge(extra_roots.iter().cloned())
                    .build()
                {
                    Ok(h) => h,
                    Err(e) => {
                        errors.at(field.span(), format!("cannot make an HTTP client: {e}"));
                        continue;
                    }
                };
                let client = introspection.as_ref().map(|i| (i.client_id.clone(), i.secret.clone()));
                Some(crate::token::revoke::Revoker { http, url, client })
            }
        };
        let identity = provider_identity(client.url().as_str(), &p.client_id, &p.audience, p.scope.as_deref(), &key);
        providers.push(Arc::new(Provider {
            name: p.name.get_ref().as_str().into(),
            identity,
            signer: Signer {
                issuer: p.client_id.clone(),
                audience: p.audience.clone(),
                lifetime: p.assertion_lifetime.get_ref().0,
                key,
                next,
            },
            client,
            scope: p.scope.as_deref().map(Into::into),
            session_lifetime: p.session_lifetime.get_ref().0,
            renew_before: p.renew_before.get_ref().0,
            policy: crate::token::resilience::Policy {
                deadline: p.retry_deadline.get_ref().0,
                breaker_failures: p.breaker_failures.max(1),
                breaker_cooldown: p.breaker_cooldown.get_ref().0,
                refused_ttl: p.refused_ttl.get_ref().0,
            },
            breaker: Default::default(),
            refusals: Default::default(),
            introspection,
            revoker,
            last_instance: std::sync::Mutex::new(None),
        }));
    }
    let mut wsdls: Vec<(PathBuf, Arc<Wsdl>)> = Vec::new();
    let mut routes = Vec::new();
    for (spanned, upstream) in raw.routes.iter().zip(checked.upstreams) {
        let r = spanned.get_ref();
        let provider = providers.iter().find(|p| &*p.name == r.provider.get_ref().as_str()).cloned();
        let protocol = match r.kind {
            RouteKind::Rest => {
                let header = r
                    .requester
                    .as_ref()
                    .and_then(|q| q.get_ref().header.clone())
                    .unwrap_or_else(|| DEFAULT_REQUESTER_HEADER.to_owned());
                HeaderName::from_bytes(header.as_bytes())
                    .ok()
                    .map(|requester_header| Protocol::Rest { requester_header })
            }
            RouteKind::Soap => {
                let wsdl_field = r.wsdl.as_ref()?;
                let path = base.join(wsdl_field.get_ref());
                let known = wsdls.iter().find(|(p, _)| *p == path).map(|(_, w)| Arc::clone(w));
                let wsdl = match known {
                    Some(w) => Some(w),
                    None => match Wsdl::load(&path) {
                        Ok(w) => {
                            let w = Arc::new(w);
                            wsdls.push((path, Arc::clone(&w)));
                            Some(w)
                        }
                        Err(e) => {
                            errors.at(wsdl_field.span(), format!("wsdl: {e}"));
                            None
                        }
                    },
                };
                let requester = match r.requester.as_ref().map(|q| q.get_ref()) {
                    Some(raw::RawRequester { header: Some(h), .. }) => {
                        HeaderName::from_bytes(h.as_bytes()).ok().map(Requester::Header)
                    }
                    Some(raw::RawRequester { element: Some(e), .. }) => element_path(e).map(Requester::Element),
                    _ => element_path(DEFAULT_SESSION_ELEMENT).map(Requester::Element),
                };
                let session = element_path(
                    r.session_element.as_ref().map(|s| s.get_ref().as_str()).unwrap_or(DEFAULT_SESSION_ELEMENT),
                );
                match (wsdl, requester, session) {
                    (Some(wsdl), Some(requester), Some(session)) => {
                        let validation = r.validation.as_ref().map(|v| *v.get_ref()).unwrap_or_default();
                        Some(Protocol::Soap { wsdl, requester, session, validation })
                    }
                    _ => None,
                }
            }
        };
        if let (Some(provider), Some(upstream), Some(protocol)) = (provider, upstream, protocol) {
            let name: Arc<str> = r.name.get_ref().as_str().into();
            let operations = match &protocol {
                Protocol::Soap { wsdl, .. } => wsdl.operations.len(),
                Protocol::Rest { .. } => 1,
            };
            routes.push(Route {
                latency: crate::metrics::METRICS.route_latency(&name),
                answered_ok: (0..operations).map(|_| std::sync::OnceLock::new()).collect(),
                name,
                path: r.path.get_ref().clone(),
                provider,
                upstream,
                protocol,
            });
        }
    }
    let subjects = SubjectMap::new(raw.subjects.map, checked.template, raw.subjects.unmapped);
    let bearer = caller_introspection(&raw.server, base, &extra_roots, errors);
    Some(Config {
        source: errors.file.to_owned(),
        listen: checked.listen?,
        max_body: raw.server.max_body,
        upstream_connect_timeout: raw.server.upstream_connect_timeout,
        upstream_timeout: raw.server.upstream_timeout,
        max_tokens: raw.server.max_tokens,
        token_idle: raw.server.token_idle,
        providers,
        routes,
        subjects,
        extra_roots,
        extra_roots_der,
        policy: build_policy(&raw.callers, &raw.server.api_key_header),
        tls: listener_tls(&raw.server, base, errors),
        bearer,
        unix_socket: raw.server.unix_socket.as_ref().map(|p| base.join(p)),
        tls_files: [&raw.server.tls_certificate, &raw.server.tls_private_key, &raw.server.tls_client_ca]
            .into_iter()
            .flatten()
            .map(|f| base.join(f.get_ref()))
            .collect(),
        admin_listen: checked.admin_listen,
        drain: raw.server.drain_timeout,
        keepalive_timeout: raw.server.keepalive_timeout,
        client_timeout: raw.server.client_timeout,
        workers: raw.server.workers,
        pin_workers: raw.server.pin_workers,
        log_format: raw.log.format,
        limits: Limits {
            max_depth: raw.limits.max_depth,
            max_elements: raw.limits.max_elements,
            max_attributes: raw.limits.max_attributes,
            max_name_length: raw.limits.max_name_length,
            max_text_length: raw.limits.max_text_length,
        },
    })
}

/// Where a secret file is: `$CREDENTIALS_DIRECTORY/NAME` (systemd `LoadCredential=`) for a path
/// written `credential:NAME`, otherwise relative to the config's folder.
fn secret_path(base: &Path, written: &str) -> PathBuf {
    match written.strip_prefix("credential:") {
        Some(name) => PathBuf::from(std::env::var_os("CREDENTIALS_DIRECTORY").unwrap_or_default()).join(name),
        None => base.join(written),
    }
}

/// Reads a key or secret, refusing a file that others than its owner may read.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "is readable by others than its owner (mode {mode:o}): chmod 600 it, or load it with systemd's LoadCredential="
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// The introspection client for callers' bearer tokens, when configured.
fn caller_introspection(
    server: &raw::RawServer,
    base: &Path,
    extra_roots: &[reqwest::Certificate],
    errors: &mut Errors<'_>,
) -> Option<crate::bearer::BearerCallers> {
    let url_field = server.caller_introspection_url.as_ref()?;
    let url = check_url(errors, url_field, "caller_introspection_url")?;
    let (Some(client_id), Some(secret_field)) =
        (&server.caller_introspection_client_id, &server.caller_introspection_secret_file)
    else {
        errors.at(
            url_field.span(),
            "caller_introspection_url needs caller_introspection_client_id and caller_introspection_secret_file",
        );
        return None;
    };
    let path = secret_path(base, secret_field.get_ref());
    let secret = match read_secret_file(&path) {
        Ok(text) => crate::secret::Secret::new(text.trim()),
        Err(e) => {
            errors.at(secret_field.span(), format!("{}: {e}", path.display()));
            return None;
        }
    };
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_merge(extra_roots.iter().cloned())
        .build()
        .map_err(|e| errors.at(url_field.span(), format!("cannot make an HTTP client: {e}")))
        .ok()?;
    Some(crate::bearer::BearerCallers::new(crate::token::introspect::Introspector {
        http,
        url,
        client_id: client_id.clone(),
        secret,
        auth: server.caller_introspection_auth,
    }))
}

/// The listener's TLS acceptor, when a certificate and key are configured.
fn listener_tls(server: &raw::RawServer, base: &Path, errors: &mut Errors<'_>) -> Option<ListenerTls> {
    let (cert, key) = match (&server.tls_certificate, &server.tls_private_key) {
        (None, None) => {
            if let Some(ca) = &server.tls_client_ca {
                errors.at(ca.span(), "tls_client_ca needs tls_certificate and tls_private_key");
            }
            return None;
        }
        (Some(cert), Some(key)) => (cert, key),
        (Some(f), None) | (None, Some(f)) => {
            errors.at(f.span(), "tls_certificate and tls_private_key go together");
            return None;
        }
    };
    let read = |field: &toml::Spanned<String>, secret: bool, errors: &mut Errors<'_>| {
        let path = base.join(field.get_ref());
        let text =
            if secret { read_secret_file(&path) } else { std::fs::read_to_string(&path).map_err(|e| e.to_string()) };
        text.map_err(|e| errors.at(field.span(), format!("{}: {e}", path.display()))).ok()
    };
    let cert_pem = read(cert, false, errors)?;
    let key_pem = read(key, true, errors)?;
    let ca_pem = match &server.tls_client_ca {
        Some(ca) => Some(read(ca, false, errors)?),
        None => None,
    };
    match crate::server::tls_acceptor_with_clients(
        cert_pem.as_bytes(),
        key_pem.as_bytes(),
        ca_pem.as_deref().map(str::as_bytes),
    ) {
        Ok(a) => Some(ListenerTls(a)),
        Err(e) => {
            errors.at(cert.span(), format!("TLS: {e}"));
            None
        }
    }
}

/// The callers, checked already by `validate`.
fn build_policy(callers: &[toml::Spanned<raw::RawCaller>], api_key_header: &str) -> crate::policy::Policy {
    let callers = callers
        .iter()
        .map(|c| {
            let c = c.get_ref();
            crate::policy::Caller {
                name: c.name.get_ref().clone(),
                key_sha256: c.api_key_sha256.as_ref().and_then(|k| parse_sha256(k.get_ref())),
                certificate_names: c.certificate_names.iter().map(|n| n.get_ref().clone()).collect(),
                client_ids: c.client_ids.clone(),
                unix_uids: c.unix_uids.clone(),
                unix_gids: c.unix_gids.clone(),
                required_scope: c.required_scope.clone(),
                sources: c.sources.iter().filter_map(|s| parse_net(s.get_ref())).collect(),
                subjects: c.subjects.clone(),
                routes: c.routes.iter().map(|r| r.get_ref().clone()).collect(),
                operations: c.operations.clone(),
                rate: c.requests_per_second.filter(|r| *r > 0.0).map(|r| (r, c.burst.unwrap_or(r).max(1.0))),
                max_concurrent: c.max_concurrent.filter(|n| *n > 0),
            }
        })
        .collect();
    crate::policy::Policy { callers, api_key_header: HeaderName::from_bytes(api_key_header.as_bytes()).ok() }
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// `10.0.0.0/8`, or one address (`192.0.2.7`, `::1`) as a range of one.
fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>().ok().or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// The provider's introspection client, if it has an introspection URL; its errors are reported.
fn introspector(
    p: &raw::RawProvider,
    base: &Path,
    extra_roots: &[reqwest::Certificate],
    errors: &mut Errors<'_>,
) -> Result<Option<crate::token::introspect::Introspector>, ()> {
    let Some(url_field) = &p.introspection_url else { return Ok(None) };
    let Some(url) = check_url(errors, url_field, "introspection_url") else { return Err(()) };
    let Some(secret_field) = &p.client_secret_file else {
        errors.at(url_field.span(), "introspection_url needs client_secret_file (the connected app's consumer secret)");
        return Err(());
    };
    let path = secret_path(base, secret_field.get_ref());
    let secret = match read_secret_file(&path) {
        Ok(text) if !text.trim().is_empty() => crate::secret::Secret::new(text.trim()),
        Ok(_) => {
            errors.at(secret_field.span(), format!("client_secret_file {} is empty", path.display()));
            return Err(());
        }
        Err(e) => {
            errors.at(secret_field.span(), format!("client_secret_file {}: {e}", path.display()));
            return Err(());
        }
    };
    let http = reqwest::Client::builder()
        .timeout(p.timeout.get_ref().0)
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_merge(extra_roots.iter().cloned())
        .build()
        .map_err(|e| errors.at(url_field.span(), format!("cannot make an HTTP client: {e}")))?;
    Ok(Some(crate::token::introspect::Introspector {
        http,
        url,
        client_id: p.client_id.clone(),
        secret,
        auth: p.introspection_auth,
    }))
}

/// A provider's identity: a digest of what decides whose tokens it gets (token endpoint, client
/// id, audience, scope, signing key).
fn provider_identity(
    token_url: &str,
    client_id: &str,
    audience: &str,
    scope: Option<&str>,
    key: &SigningKey,
) -> Arc<str> {
    use rsa::traits::PublicKeyParts;
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [token_url.as_bytes(), client_id.as_bytes(), audience.as_bytes(), scope.unwrap_or("").as_bytes()] {
        digest.update(&(part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    digest.update(&key.public_key().n().to_bytes_be());
    digest.update(&key.public_key().e().to_bytes_be());
    let hex: String = digest.finish().as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    hex.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_col("abc", 0), (1, 1));
    }

    #[test]
    fn every_validation_error_is_reported_with_its_line() {
        let text = r#"
[server]
listen = "nowhere"
keepalive_timeout = "0s"

[[providers]]
name = "sf"
token_url = "http://login.example.com/token"
client_id = "x"
audience = "https://login.salesforce.com"
private_key = "k.pem"
assertion_lifetime = "10m"

[[routes]]
name = "r"
path = "api"
kind = "soap"
provider = "other"
upstream = "instance_url"
"#;
        let errs = Config::from_toml(text, Path::new("t.toml"), Path::new(".")).unwrap_err();
        let shown = errs.to_string();
        assert!(shown.contains("t.toml:3:10: listen 'nowhere'"), "{shown}");
        assert!(shown.contains("server.keepalive_timeout must be more than 0s"), "{shown}");
        assert!(shown.contains("t.toml:8:13: token_url"), "{shown}");
        assert!(shown.contains("t.toml:12:22: assertion_lifetime"), "{shown}");
        assert!(shown.contains(":16:8: path 'api'"), "{shown}");
        assert!(shown.contains(":18:12: route 'r' names provider 'other'"), "{shown}");
        assert!(shown.contains("needs a wsdl"), "{shown}");
        assert_eq!(errs.0.len(), 7, "{shown}");
    }

    #[test]
    fn callers_are_checked() {
        let text = r#"
[[callers]]
name = "a"
api_key_sha256 = "abc"
sources = ["10.0.0.0/33"]
subjects = []
routes = ["nowhere"]

[[callers]]
name = "b"
subjects = ["*"]
"#;
        let errs = Config::from_toml(text, Path::new("t.toml"), Path::new(".")).unwrap_err().to_string();
        assert!(errs.contains("t.toml:4:18: api_key_sha256 must be 64 hex digits"), "{errs}");
        assert!(errs.contains("t.toml:5:12: '10.0.0.0/33' is not an address or CIDR range"), "{errs}");
        assert!(errs.contains("caller 'a' lists no subjects"), "{errs}");
        assert!(errs.contains("t.toml:7:11: caller 'a' names route 'nowhere'"), "{errs}");
        assert!(errs.contains("caller 'b' has no api_key_sha256, certificate_names, client_ids"), "{errs}");
    }

    #[test]
    fn syntax_and_unknown_keys_point_at_the_line() {
        let errs =
            Config::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", Path::new("t.toml"), Path::new("."))
                .unwrap_err();
        assert!(errs.to_string().starts_with("t.toml:3:1: unknown field `lisen`"), "{errs}");
        let errs = Config::from_toml(
            "[[providers]]\nname = \"a\"\nrenew_before = \"soon\"\n",
            Path::new("t.toml"),
            Path::new("."),
        )
        .unwrap_err();
        assert!(errs.to_string().contains("t.toml:3:16: 'soon' is not a duration"), "{errs}");
    }
}
