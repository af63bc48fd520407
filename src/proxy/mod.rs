//! The request path. `App::handle` runs the phases in order over one request:
//! `route → read_body → extract (SOAP pass or REST header) → map_subject → get_token → inject →
//! forward`, and `respond` turns any failure into a fault or problem. `handle` never fails.

pub mod error;
pub mod forward;
pub mod h1;
pub mod pool;
pub mod respond;
pub mod session;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tracing::Instrument;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderMap, HeaderName, HeaderValue, Request, header};
use http_body_util::{BodyExt, Full, Limited};

use crate::clock::Clock;
use crate::config::{Config, Protocol, Requester, Route, Upstream};
use crate::server::Answer;
use crate::sharded::Latency;
use crate::soap::SoapVersion;
use crate::soap::envelope::{self, Plan};
use crate::token::store::{Fetch, MemoryStore, TokenStore};
use crate::token::{KeyRef, Token, TokenKey};
use error::ProxyError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the proxy sends: a full buffer or the upstream's stream.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A running proxy: the config it serves now, swapped whole on reload, and what outlives a
/// reload (the token store, the clock).
#[derive(Debug)]
pub struct App {
    current: ArcSwap<Generation>,
    store: Arc<dyn TokenStore>,
    clock: Clock,
    /// Where the config was read from (reload reads it again).
    source: Option<PathBuf>,
    /// Reloads run one at a time.
    reloading: tokio::sync::Mutex<()>,
}

/// One config and what is built from it. A request runs on the generation it started on to the
/// end; a reload makes a new one.
#[derive(Debug)]
struct Generation {
    config: Arc<Config>,
    limits: crate::policy::Limits,
    store: Arc<dyn TokenStore>,
    upstream: pool::Pool,
    clock: Clock,
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub routes: usize,
    pub providers: usize,
    /// Providers whose identity is new: their subjects start without tokens.
    pub new_identities: Vec<String>,
    /// Settings that take effect only on restart, which differ in the new config.
    pub need_restart: Vec<&'static str>,
}

impl App {
    pub fn new(config: Config) -> Result<App, String> {
        App::with_clock(config, Clock::default())
    }

    /// An app whose token expiry is measured on `clock` (tests advance it).
    pub fn with_clock(config: Config, clock: Clock) -> Result<App, String> {
        let store: Arc<dyn TokenStore> =
            Arc::new(MemoryStore::new(config.max_tokens, config.token_idle, clock.clone()));
        let current = Generation::new(config, Arc::clone(&store), clock.clone())?;
        Ok(App { current: ArcSwap::from_pointee(current), store, clock, source: None, reloading: Default::default() })
    }

    /// Remembers the file the config came from, for `reload_source`.
    pub fn with_source(mut self, path: PathBuf) -> App {
        self.source = Some(path);
        self
    }

    /// Closes the upstream connections idle too long (`pool::Pool::reap`).
    pub fn reap_idle_upstreams(&self) -> usize {
        self.current.load().upstream.reap(Instant::now())
    }

    /// The config served now.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.current.load().config)
    }

    pub fn store(&self) -> &dyn TokenStore {
        &*self.store
    }

    /// What `/metrics` answers with now.
    pub fn metrics_text(&self) -> String {
        crate::metrics::METRICS.render(&self.config(), self.clock.now())
    }

    /// Serves `config` from now on. Requests already running finish on the config they started
    /// with; tokens stay for every provider whose identity did not change.
    pub fn reload(&self, config: Config) -> Result<Reloaded, String> {
        let old = self.current.load_full();
        let need_restart = restart_only_changes(&old.config, &config);
        let known: std::collections::HashSet<&str> = old.config.providers.iter().map(|p| &*p.identity).collect();
        let new_identities =
            config.providers.iter().filter(|p| !known.contains(&*p.identity)).map(|p| p.name.to_string()).collect();
        let reloaded =
            Reloaded { routes: config.routes.len(), providers: config.providers.len(), new_identities, need_restart };
        let next = Generation::new(config, Arc::clone(&self.store), self.clock.clone())?;
        self.current.store(Arc::new(next));
        Ok(reloaded)
    }

    /// Reads the config file again and serves it (off the request path: call it from a task).
    /// A config with errors is refused whole, the current one keeps serving, and the errors
    /// are returned.
    pub async fn reload_source(&self) -> Result<Reloaded, Vec<String>> {
        let Some(path) = self.source.clone() else {
            return Err(vec!["this proxy was not started from a config file".to_owned()]);
        };
        let _one_at_a_time = self.reloading.lock().await;
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|e| vec![format!("reading the config failed: {e}")])?;
        let config = loaded.map_err(|errors| errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        self.reload(config).map_err(|e| vec![e])
    }

    /// At shutdown: revokes the tokens still held, for providers that have a revocation
    /// endpoint, waiting at most 5 s.
    pub async fn revoke_held(&self) {
        let config = self.config();
        if config.providers.iter().all(|p| p.revoker.is_none()) {
            return;
        }
        let held = self.store.held();
        let count = held.len();
        let revoked =
            crate::token::revoke::revoke_all(&config.providers, held, std::time::Duration::from_secs(5)).await;
        tracing::info!(held = count, revoked, "Revoked held tokens at shutdown.");
    }

    /// Answers one request, on the config current when it arrives. Every failure becomes a
    /// response here; nothing is dropped silently.
    ///
    /// The future is moved into place whole for each request (the server keeps one per connection), so
    /// what it holds across its waits is kept small: the request is taken apart once and lent to
    /// the phases, and no layer holds a second copy of what it hands on.
    pub fn handle<B>(
        &self,
        request: Request<B>,
        peer: crate::server::Peer,
    ) -> impl Future<Output = Answer> + Send + use<B>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        let generation = self.local_generation();
        let request_id = RequestId::for_request(request.headers());
        // Every log line of the request, wherever in the pipeline, carries its id.
        let span = tracing::info_span!("request", request_id = %request_id);
        let (parts, body) = request.into_parts();
        generation.handle(parts, body, peer, request_id).instrument(span)
    }
}

impl App {
    /// The generation current now, through a reference of the calling thread's own: a request
    /// holds its generation to its end, and each one taking and dropping a reference to the
    /// shared `Arc` wrote its count, a cache line the serving threads then passed back and
    /// forth. The thread's reference is replaced at its first request after a reload (until
    /// then an idle thread keeps the old generation alive).
    #[allow(clippy::redundant_allocation, reason = "the outer Arc is the thread's own: its count is not shared")]
    fn local_generation(&self) -> Arc<Arc<Generation>> {
        thread_local! {
            #[allow(clippy::redundant_allocation, reason = "as above")]
            static LOCAL: std::cell::RefCell<Option<Arc<Arc<Generation>>>> = const { std::cell::RefCell::new(None) };
        }
        let current = self.current.load();
        LOCAL.with_borrow_mut(|local| match local {
            Some(held) if Arc::ptr_eq(&**held, &*current) => Arc::clone(held),
            _ => {
                let held = Arc::new(arc_swap::Guard::into_inner(current));
                *local = Some(Arc::clone(&held));
                held
            }
        })
    }
}

/// The settings a running proxy cannot change without a restart (listeners, TLS, the token
/// store's bounds), named where the new config differs.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("server.listen");
    }
    if old.unix_socket != new.unix_socket {
        changed.push("server.unix_socket");
    }
    if old.tls_files != new.tls_files {
        changed.push("server.tls_*");
    }
    if old.max_tokens != new.max_tokens || old.token_idle != new.token_idle {
        changed.push("server.max_tokens/token_idle");
    }
    if old.workers != new.workers {
        changed.push("server.workers");
    }
    if old.pin_workers != new.pin_workers {
        changed.push("server.pin_workers");
    }
    if old.keepalive_timeout != new.keepalive_timeout || old.client_timeout != new.client_timeout {
        changed.push("server.keepalive_timeout/client_timeout");
    }
    if old.log_format != new.log_format {
        changed.push("log.format");
    }
    if old.admin_listen != new.admin_listen {
        changed.push("admin.listen");
    }
    changed
}

/// What the phases learn about one request.
struct RequestCtx<'a> {
    route: &'a Route,
    request_id: RequestId,
    /// Set on SOAP routes: the version faults are written in.
    soap: Option<SoapVersion>,
    /// Lent from the config's table when mapped there (no reference count taken per request).
    subject: Option<std::borrow::Cow<'a, str>>,
    caller: Option<String>,
    /// The SOAP operation: its index in the WSDL's operations, and its name.
    operation: Option<(usize, Arc<str>)>,
}

impl Generation {
    fn new(config: Config, store: Arc<dyn TokenStore>, clock: Clock) -> Result<Generation, String> {
        let upstream = forward::client(config.upstream_connect_timeout, &config.extra_roots_der)?;
        let limits = crate::policy::Limits::new(&config.policy);
        Ok(Generation { config: Arc::new(config), limits, store, upstream, clock })
    }

    /// An `async` block rather than an `async fn`: an `async fn` keeps a second copy of its
    /// arguments beside the ones its body moves on, and this future is moved whole per request.
    #[allow(clippy::manual_async_fn, reason = "an async fn would hold its arguments twice")]
    #[allow(clippy::redundant_allocation, reason = "the outer Arc is the thread's own (`App::local_generation`)")]
    fn handle<B>(
        self: Arc<Arc<Self>>,
        mut parts: http::request::Parts,
        body: B,
        peer: crate::server::Peer,
        request_id: RequestId,
    ) -> impl Future<Output = Answer> + Send + use<B>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        async move {
            let started = Instant::now();
            let Some(route) = self.route_for(parts.uri.path()) else {
                let (method, path) = (&parts.method, parts.uri.path());
                let err = ProxyError::NoRoute(path.to_owned());
                tracing::info!(%method, %path, status = 404, "No route for request.");
                record(&EMPTY_LABEL, None, None, 404, started);
                return respond::error_response(&err, None, request_id.as_str());
            };
            let mut ctx = RequestCtx { route, request_id, soap: None, subject: None, caller: None, operation: None };
            if let Protocol::Soap { .. } = route.protocol {
                let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                ctx.soap = Some(SoapVersion::from_content_type(ct));
            }
            let result = self.run(&mut ctx, &mut parts, body, &peer).await;
            let answer: Answer = match result {
                Ok(mut answer) => {
                    answer.request_id = Some(ctx.request_id.header());
                    answer.soap = ctx.soap;
                    answer
                }
                Err(err) => {
                    let c = respond::classify(&err);
                    if c.status.is_server_error() {
                        tracing::warn!(route = %route.name, subject = ctx.subject.as_deref().unwrap_or("-"), code = c.code, error = %err, "Request failed.");
                    } else {
                        tracing::info!(route = %route.name, subject = ctx.subject.as_deref().unwrap_or("-"), code = c.code, error = %err, "Request refused.");
                    }
                    if let ProxyError::Envelope(e) = &err {
                        crate::metrics::METRICS
                            .rejections
                            .get_or_create(&crate::metrics::RuleLabels { code: e.code(), rule: e.rule() })
                            .inc();
                    }
                    respond::error_response(&err, ctx.soap, ctx.request_id.as_str())
                }
            };
            let response = &answer.response;
            record_answer(route, ctx.operation.as_ref(), response.status().as_u16(), started);
            let (method, path) = (&parts.method, parts.uri.path());
            tracing::info!(
                route = %route.name,
                %method,
                %path,
                subject = ctx.subject.as_deref().unwrap_or("-"),
                status = response.status().as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Request answered."
            );
            answer
        }
    }

    /// The route whose path prefix matches, longest first, at a `/` boundary.
    fn route_for(&self, path: &str) -> Option<&Route> {
        self.config
            .routes
            .iter()
            .filter(|r| {
                let prefix = r.path.as_str();
                path.starts_with(prefix)
                    && (prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
            })
            .max_by_key(|r| r.path.len())
    }

    async fn run<'g, B>(
        &'g self,
        ctx: &mut RequestCtx<'g>,
        parts: &mut http::request::Parts,
        body: B,
        from: &crate::server::Peer,
    ) -> Result<Answer, ProxyError>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        // Who is calling, before the body is read or any token work is done.
        let caller = if self.config.policy.enforced() {
            let route_name = ctx.route.name.clone();
            let peer = from.addr.map(|a| a.ip());
            let cert = from.cert.clone();
            let policy = &self.config.policy;
            let identified = match (&self.config.bearer, crate::bearer::bearer(&parts.headers)) {
                (Some(bearer), Ok(Some(token))) => match bearer.caller(policy, token, self.clock.now()).await {
                    Ok(caller) => policy.check_source(caller, peer),
                    Err(e) => Err(e),
                },
                (Some(_), Err(e)) => Err(e),
                (Some(_), Ok(None)) if policy.bearer_only() => Err(crate::policy::Denied::MissingBearer),
                _ => {
                    let user = from.user;
                    policy.authenticate(&parts.headers, peer, cert.as_deref(), user)
                }
            };
            let caller = identified.map_err(|denied| {
                tracing::info!(
                    target: "audit",
                    request_id = %ctx.request_id,
                    caller = "-",
                    route = %route_name,
                    decision = "deny",
                    rule = %denied,
                    "Authentication decision."
                );
                ProxyError::Denied(denied)
            })?;
            ctx.caller = Some(caller.name.clone());
            let limited = |what, retry_after| {
                ProxyError::Denied(crate::policy::Denied::Limited { caller: caller.name.clone(), what, retry_after })
            };
            self.limits.admit(caller, self.clock.now()).map_err(|wait| limited("request rate", wait))?;
            Some(caller)
        } else {
            None
        };
        // Held until the response headers are sent.
        let _open = match caller {
            Some(c) => self.limits.enter(c).map_err(ProxyError::Denied)?,
            None => None,
        };
        let body = read_body(body, self.config.max_body).await?;
        let route = ctx.route;
        let (requester_text, requester_header, inject) = match &route.protocol {
            Protocol::Soap { wsdl, requester, session, validation } => {
                let from_element = match requester {
                    Requester::Element(path) => Some(path.as_slice()),
                    Requester::Header(_) => None,
                };
                let body = match envelope::to_utf8(&body) {
                    Ok(None) => body,
                    Ok(Some(utf8)) => {
                        set_charset_utf8(&mut parts.headers);
                        Bytes::from(utf8)
                    }
                    Err(e) => return Err(ProxyError::Envelope(e)),
                };
                let action = soap_action(&parts.headers, ctx.soap.unwrap_or(SoapVersion::V11));
                let plan =
                    Plan { requester: from_element, session, mode: *validation, limits: &self.config.limits, action };
                let scan = envelope::scan(&body, &plan, wsdl).map_err(|e| {
                    ctx.soap = Some(envelope::sniff_version(&body).unwrap_or(ctx.soap.unwrap_or(SoapVersion::V11)));
                    ProxyError::Envelope(e)
                })?;
                ctx.soap = Some(scan.version);
                ctx.operation = Some((scan.operation, wsdl.operations[scan.operation].name.clone()));
                let slot = scan.slot.map_err(ProxyError::Envelope)?;
                let (requester_text, requester_header) = match requester {
                    Requester::Element(path) => {
                        let text = scan.requester.ok_or_else(|| {
                            ProxyError::MissingRequester(format!("the envelope has no {}", path.join("/")))
                        })?;
                        (std::borrow::Cow::Owned(text), None)
                    }
                    Requester::Header(name) => {
                        (std::borrow::Cow::Borrowed(header_text(&parts.headers, name)?), Some(name))
                    }
                };
                (requester_text, requester_header, Inject::Soap { body, slot, session })
            }
            Protocol::Rest { requester_header } => {
                let requester_text = std::borrow::Cow::Borrowed(header_text(&parts.headers, requester_header)?);
                (requester_text, Some(requester_header), Inject::Rest { body })
            }
        };
        // Not forwarded: the requester header, the caller's API key header.
        let strip = [requester_header, self.config.policy.api_key_header.as_ref()];
        let subject: &str = ctx.subject.insert(self.config.subjects.subject_for(&requester_text)?);
        if let Some(caller) = caller {
            let decision = caller.authorize(subject, &route.name, ctx.operation.as_ref().map(|(_, name)| &**name));
            tracing::info!(
                target: "audit",
                request_id = %ctx.request_id,
                caller = %caller.name,
                subject = %subject,
                route = %route.name,
                operation = ctx.operation.as_ref().map_or("-", |(_, name)| name),
                decision = if decision.is_ok() { "allow" } else { "deny" },
                rule = %decision.as_ref().err().map(ToString::to_string).unwrap_or_default(),
                "Authorization decision."
            );
            decision.map_err(ProxyError::Denied)?;
        }
        let provider = &route.provider;
        let key = KeyRef { provider: &provider.identity, subject, scope: provider.scope.as_deref() };
        // The clock read once for what follows (the token's freshness, the upstream connection's
        // idle time, the deadline for the answer): each reading costs ~20 ns (vDSO). Read again
        // only when the token had to be waited for.
        let mut now = Instant::now();
        let mut token = self.get_token(provider, key, &mut now).await?;
        let mut replayed = false;
        loop {
            let origin = self.origin(route, &token)?;
            let target = origin.target(&parts.uri).map_err(ProxyError::Upstream)?;
            let (authorization, body) = inject.with(&token);
            let set =
                [Some((X_REQUEST_ID, ctx.request_id.header())), authorization.map(|a| (header::AUTHORIZATION, a))];
            let request = forward::Forward {
                method: &parts.method,
                target,
                set: &set,
                incoming: &parts.headers,
                strip: &strip,
                body,
            };
            let answer = forward::send(&self.upstream, origin, &request, now, self.config.upstream_timeout)
                .await
                .map_err(ProxyError::Upstream)?;
            if replayed {
                // Never a second replay: the caller sees this answer as it came.
                return Ok(answer);
            }
            let (refused, answer) = session::refused(answer, ctx.soap.is_some()).await;
            if !refused {
                return Ok(answer);
            }
            tracing::info!(
                request_id = %ctx.request_id,
                route = %route.name,
                subject = %subject,
                "Upstream refused the session; renewing it and sending the request once more."
            );
            self.store.invalidate(&token_key(provider, subject), &token);
            crate::metrics::METRICS.cache(crate::metrics::CacheOutcome::Renegotiation);
            now = Instant::now();
            token = self.get_token(provider, key, &mut now).await?;
            replayed = true;
        }
    }

    /// The token for `key` (whose subject is `subject`): from the store, or one exchange shared
    /// by all who wait. `now`: the clock as the caller read it, read again here when the token
    /// was waited for (what follows counts from then: the upstream's deadline is not shortened
    /// by an exchange).
    async fn get_token(
        &self,
        provider: &Arc<crate::token::provider::Provider>,
        key: KeyRef<'_>,
        now: &mut Instant,
    ) -> Result<Arc<Token>, ProxyError> {
        if let Some(token) = self.store.fresh(key, *now) {
            return Ok(token);
        }
        let fetch_provider = Arc::clone(provider);
        let clock = self.clock.clone();
        let subject = key.subject;
        let key = token_key(provider, subject);
        let fetch_subject = Arc::clone(&key.subject);
        let fetch: Fetch = Box::new(move || async move { fetch_provider.fetch(&fetch_subject, &clock).await }.boxed());
        let token = self
            .store
            .get_or_fetch(&key, fetch)
            .await
            .map_err(|source| ProxyError::Token { subject: subject.to_string(), source });
        *now = Instant::now();
        token
    }

    /// Where this route's request goes with `token`.
    fn origin<'t>(&'t self, route: &'t Route, token: &'t Token) -> Result<&'t forward::Origin, ProxyError> {
        match &route.upstream {
            Upstream::Fixed(origin) => Ok(origin),
            Upstream::InstanceUrl => {
                let origin = token
                    .instance_url
                    .as_ref()
                    .ok_or_else(|| ProxyError::NoInstanceUrl(route.provider.name.to_string()))?;
                forward::check_instance(origin.url()).map_err(ProxyError::Upstream)?;
                Ok(origin)
            }
        }
    }
}

async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, ProxyError>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Into<BoxError>,
{
    // A body already at its end (a GET's, `Content-Length: 0`) is not collected: the collecting
    // (a list of frames, then their bytes joined) cost ~400 instructions of a REST GET for none.
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ProxyError::BodyTooLarge(limit)),
        Err(e) => Err(ProxyError::BodyRead(e.to_string())),
    }
}

fn header_text<'h>(headers: &'h HeaderMap, name: &http::HeaderName) -> Result<&'h str, ProxyError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or_else(|| ProxyError::MissingRequester(format!("header {name} is absent")))?;
    if values.next().is_some() {
        return Err(ProxyError::MissingRequester(format!("header {name} appears more than once")));
    }
    value.to_str().map_err(|_| ProxyError::MissingRequester(format!("header {name} is not visible ASCII")))
}

/// What a token is stored under for this provider and subject.
fn token_key(provider: &crate::token::provider::Provider, subject: &str) -> TokenKey {
    TokenKey { provider: provider.identity.clone(), subject: Arc::from(subject), scope: provider.scope.clone() }
}

/// How the token goes into the request, per protocol: what a replay needs to do it again. The
/// forwarded head is written from the caller's headers for each send (a replay writes it again).
enum Inject<'r> {
    Soap { body: Bytes, slot: envelope::Slot, session: &'r [String] },
    Rest { body: Bytes },
}

impl Inject<'_> {
    /// The `Authorization` header to send with `token` (REST), and the body's pieces (SOAP: the
    /// envelope around the token as its session; REST: the body as it came).
    fn with(&self, token: &Token) -> (Option<HeaderValue>, [Bytes; 3]) {
        match self {
            Inject::Soap { body, slot, session, .. } => {
                (None, envelope::rewrite(body, slot, session, token.access_token.expose()))
            }
            Inject::Rest { body, .. } => {
                (Some(token.access_token.authorization()), [body.clone(), Bytes::new(), Bytes::new()])
            }
        }
    }
}

/// The action a SOAP request of `version` (as its `Content-Type` said) names: SOAP 1.2's
/// `action` media-type parameter, or SOAP 1.1's `SOAPAction` header, unquoted.
fn soap_action(headers: &HeaderMap, version: SoapVersion) -> Option<&str> {
    static SOAP_ACTION: HeaderName = HeaderName::from_static("soapaction");
    if version == SoapVersion::V12 {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())?;
        return content_type.split(';').skip(1).find_map(|param| {
            let (k, v) = param.split_once('=')?;
            k.trim_ascii().eq_ignore_ascii_case("action").then(|| unquote(v))
        });
    }
    headers.get(&SOAP_ACTION).and_then(|v| v.to_str().ok()).map(unquote)
}

/// A header value (visible ASCII, `HeaderValue::to_str`) or parameter without the white space and
/// the double quotes around it. Byte by byte: `str::trim_matches` with a `char` cost ~350
/// instructions per request.
fn unquote(value: &str) -> &str {
    let value = value.trim_ascii();
    let start = value.bytes().position(|b| b != b'"').unwrap_or(value.len());
    let end = value.bytes().rposition(|b| b != b'"').map_or(start, |last| last + 1);
    value.get(start..end).unwrap_or_default()
}

/// After a UTF-16 body was transcoded, its `Content-Type` says UTF-8.
fn set_charset_utf8(headers: &mut HeaderMap) {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return };
    let params: Vec<String> = ct
        .split(';')
        .map(|p| {
            if p.trim().to_ascii_lowercase().starts_with("charset=") {
                " charset=utf-8".to_owned()
            } else {
                p.to_owned()
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&params.join(";")) {
        headers.insert(header::CONTENT_TYPE, v);
    }
}

/// The empty label: the route of requests no route matched, the operation of REST requests.
static EMPTY_LABEL: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));

/// Counts a request a route answered, and its latency: the usual answer (200) on the route's
/// own counter for its operation, any other through the label-set look-up.
fn record_answer(route: &Route, operation: Option<&(usize, Arc<str>)>, status: u16, started: Instant) {
    let ok = (status == 200).then(|| route.answered_ok.get(operation.map_or(0, |(index, _)| *index))).flatten();
    let Some(ok) = ok else {
        return record(&route.name, Some(&route.latency), operation.map(|(_, name)| name), status, started);
    };
    ok.get_or_init(|| {
        let labels = crate::metrics::RequestLabels {
            route: Arc::clone(&route.name),
            operation: operation.map_or_else(|| Arc::clone(&EMPTY_LABEL), |(_, name)| Arc::clone(name)),
            status,
        };
        crate::metrics::METRICS.requests.get_or_create(&labels).clone()
    })
    .inc();
    route.latency.observe(started.elapsed().as_secs_f64());
}

/// Counts an answered request and its latency (`latency`: the route's histogram, none when no
/// route matched).
fn record(route: &Arc<str>, latency: Option<&Latency>, operation: Option<&Arc<str>>, status: u16, started: Instant) {
    let labels = crate::metrics::RequestLabels {
        route: Arc::clone(route),
        operation: operation.map_or_else(|| Arc::clone(&EMPTY_LABEL), Arc::clone),
        status,
    };
    crate::metrics::METRICS.requests.get_or_create(&labels).inc();
    let seconds = started.elapsed().as_secs_f64();
    match latency {
        Some(histogram) => histogram.observe(seconds),
        None => crate::metrics::METRICS.route_latency(route).observe(seconds),
    }
}

pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request's id: the caller's `X-Request-Id` when it is short and printable, or a new one.
/// Kept as the header value it travels as (upstream, and back in the answer).
#[derive(Clone, Debug)]
pub struct RequestId(HeaderValue);

impl RequestId {
    pub fn for_request(headers: &HeaderMap) -> RequestId {
        headers
            .get(X_REQUEST_ID)
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic()))
            .map_or_else(RequestId::new, |v| RequestId(v.clone()))
    }

    /// A new id, 32 hex digits: a random number drawn once per serving thread, then the
    /// thread's own count. Unique without a system call per request (a random UUID per request
    /// cost a `getrandom`), and without a count shared by the threads (its cache line went back
    /// and forth between their cores on every request).
    fn new() -> RequestId {
        // Written into a block of this thread's that a few hundred ids share, each a slice of it:
        // an allocation per id (the header value's own copy) cost as much as making the id.
        struct Ids {
            prefix: [u8; 16],
            next: u64,
            block: bytes::BytesMut,
        }
        thread_local! {
            static IDS: std::cell::RefCell<Option<Ids>> = const { std::cell::RefCell::new(None) };
        }
        let id = IDS.with_borrow_mut(|ids| {
            let ids = ids.get_or_insert_with(|| Ids {
                prefix: hex16(uuid::Uuid::new_v4().as_u64_pair().0),
                next: 0,
                block: bytes::BytesMut::new(),
            });
            if ids.block.capacity() - ids.block.len() < 32 {
                ids.block = bytes::BytesMut::with_capacity(32 * 256);
            }
            ids.block.extend_from_slice(&ids.prefix);
            ids.block.extend_from_slice(&hex16(ids.next));
            ids.next += 1;
            ids.block.split_to(32).freeze()
        });
        // Hex digits are always a valid header value.
        RequestId(HeaderValue::from_maybe_shared(id).unwrap_or(HeaderValue::from_static("-")))
    }

    pub fn as_str(&self) -> &str {
        // Only visible ASCII gets in (checked above, or hex digits).
        self.0.to_str().unwrap_or("-")
    }

    fn header(&self) -> HeaderValue {
        self.0.clone()
    }
}

/// `n` as 16 lowercase hex digits, written digit by digit (`format!` cost ten times as much).
fn hex16(n: u64) -> [u8; 16] {
    let mut digits = [0u8; 16];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = b"0123456789abcdef"[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    digits
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request ids made on several threads at once are 32 hex digits and all different.
    #[test]
    fn request_ids_are_unique_across_threads() {
        let made: Vec<Vec<String>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..1000).map(|_| RequestId::new().as_str().to_owned()).collect::<Vec<_>>()))
                .collect();
            threads.into_iter().map(|t| t.join().expect("thread")).collect()
        });
        let all: std::collections::HashSet<&String> = made.iter().flatten().collect();
        assert_eq!(all.len(), 4000);
        assert!(all.iter().all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[test]
    fn the_soap_action_is_read_unquoted_from_where_the_version_puts_it() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (name, value) in pairs {
                h.append(*name, HeaderValue::from_static(value));
            }
            h
        };
        let v11 = |action: &'static str| {
            soap_action(&headers(&[("soapaction", action)]), SoapVersion::V11).map(str::to_owned)
        };
        assert_eq!(v11("\"urn:a\"").as_deref(), Some("urn:a"));
        assert_eq!(v11(" urn:a ").as_deref(), Some("urn:a"));
        assert_eq!(v11("\"\"").as_deref(), Some(""));
        assert_eq!(v11("\t\"\"urn:a\"\" ").as_deref(), Some("urn:a"));
        assert_eq!(v11("\"").as_deref(), Some(""));
        assert_eq!(soap_action(&HeaderMap::new(), SoapVersion::V11), None);
        let v12 = |ct: &'static str| {
            soap_action(&headers(&[("content-type", ct), ("soapaction", "\"urn:header\"")]), SoapVersion::V12)
                .map(str::to_owned)
        };
        assert_eq!(v12("application/soap+xml; charset=utf-8; action=\"urn:b\"").as_deref(), Some("urn:b"));
        assert_eq!(v12("application/soap+xml;ACTION = urn:b").as_deref(), Some("urn:b"));
        assert_eq!(v12("application/soap+xml; charset=utf-8").as_deref(), None, "SOAP 1.2 reads no SOAPAction header");
    }

    #[test]
    fn request_ids_are_32_hex_digits_one_prefix_then_a_counter() {
        let (a, b) = (RequestId::for_request(&HeaderMap::new()), RequestId::for_request(&HeaderMap::new()));
        for id in [&a, &b] {
            assert_eq!(id.as_str().len(), 32, "{id}");
            assert!(id.as_str().bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)), "{id}");
        }
        assert_eq!(a.as_str()[..16], b.as_str()[..16], "one prefix per process");
        let count = |id: &RequestId| u64::from_str_radix(&id.as_str()[16..], 16).expect("hex");
        assert!(count(&b) > count(&a), "{a} then {b}");
        // Ids share blocks of this thread's: across several blocks, each keeps its own digits.
        let many: Vec<RequestId> = (0..1000).map(|_| RequestId::for_request(&HeaderMap::new())).collect();
        for pair in many.windows(2) {
            assert_eq!(pair[0].as_str()[..16], a.as_str()[..16]);
            assert!(count(&pair[1]) > count(&pair[0]), "{} then {}", pair[0], pair[1]);
        }
        assert!(many.iter().all(|id| id.as_str().len() == 32 && id.as_str().bytes().all(|c| c.is_ascii_hexdigit())));
        // A caller's own id is kept when it is plain visible ASCII, replaced otherwise.
        let mut given = HeaderMap::new();
        given.insert(X_REQUEST_ID, HeaderValue::from_static("req-1"));
        assert_eq!(RequestId::for_request(&given).as_str(), "req-1");
        given.insert(X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_eq!(RequestId::for_request(&given).as_str().len(), 32);
    }
}
