//! A token endpoint on loopback that answers the JWT bearer grant the way Salesforce does: it
//! verifies the assertion's RS256 signature, `iss`, `aud`, `sub`, `exp` (at most 3 minutes ahead)
//! and refuses a `jti` it has seen; it answers `instance_url` and, unless told to, no `expires_in`.
//! Test knobs: refuse a subject (`invalid_grant`), fail with a status, hold answers until released.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::RsaPublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::json;
use tokio::sync::{oneshot, watch};

use super::{Sessions, respond};
use crate::proxy::ProxyBody;
use crate::token::assertion::{Claims, MAX_ASSERTION_LIFETIME};
use crate::token::client::JWT_BEARER_GRANT;

/// Seconds of clock skew tolerated on `exp` and `iat`.
const LEEWAY: u64 = 5;

pub struct IdpOptions {
    pub client_id: String,
    pub audience: String,
    pub public_key: RsaPublicKey,
    /// What `instance_url` says (the loopback upstream's address).
    pub instance_url: String,
    /// Answer with `expires_in` (Okta-like) instead of none (Salesforce-like).
    pub expires_in: Option<u64>,
    /// The client secret introspection requests must authenticate with (RFC 7662, at
    /// `/services/oauth2/introspect`); tokens then report `exp` = issue time + `session_seconds`.
    pub client_secret: Option<String>,
    pub session_seconds: u64,
    /// More public keys, by `kid` (a connected app holds the old and the new certificate while
    /// one is rotated); assertions naming another or no `kid` are checked with `public_key`.
    pub other_keys: Vec<(String, RsaPublicKey)>,
}

impl IdpOptions {
    /// An endpoint that answers like Salesforce: no `expires_in`, no introspection, one key.
    pub fn salesforce(client_id: &str, audience: &str, public_key: RsaPublicKey, instance_url: String) -> Self {
        IdpOptions {
            client_id: client_id.to_owned(),
            audience: audience.to_owned(),
            public_key,
            instance_url,
            expires_in: None,
            client_secret: None,
            session_seconds: 7200,
            other_keys: Vec::new(),
        }
    }
}

struct State {
    options: IdpOptions,
    key: DecodingKey,
    other_keys: Vec<(String, DecodingKey)>,
    sessions: Sessions,
    seen_jti: Mutex<HashSet<String>>,
    refused: Mutex<HashSet<String>>,
    assertions: Mutex<Vec<String>>,
    tokens: Mutex<Vec<String>>,
    /// The `kid` of every assertion received.
    kids: Mutex<Vec<Option<String>>>,
    fail_status: Mutex<Option<u16>>,
    /// Issue time (Unix seconds) of every token, for introspection.
    issued_at: Mutex<std::collections::HashMap<String, u64>>,
    fail_introspection: std::sync::atomic::AtomicBool,
    introspections: AtomicUsize,
    revocations: AtomicUsize,
    /// (times left, status, Retry-After) for `fail_times`.
    fail_next: Mutex<(usize, u16, Option<u64>)>,
    gate: watch::Sender<bool>,
    requests: AtomicUsize,
    issued: AtomicUsize,
}

/// A running loopback token endpoint. Dropping it stops it.
pub struct LoopbackIdp {
    pub addr: SocketAddr,
    state: Arc<State>,
    _stop: oneshot::Sender<()>,
}

impl LoopbackIdp {
    pub async fn start(options: IdpOptions, sessions: Sessions) -> std::io::Result<LoopbackIdp> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let n = options.public_key.n().to_bytes_be();
        let e = options.public_key.e().to_bytes_be();
        let other_keys = options
            .other_keys
            .iter()
            .map(|(kid, k)| {
                (kid.clone(), DecodingKey::from_rsa_raw_components(&k.n().to_bytes_be(), &k.e().to_bytes_be()))
            })
            .collect();
        let state = Arc::new(State {
            key: DecodingKey::from_rsa_raw_components(&n, &e),
            other_keys,
            options,
            sessions,
            seen_jti: Mutex::default(),
            refused: Mutex::default(),
            assertions: Mutex::default(),
            tokens: Mutex::default(),
            kids: Mutex::default(),
            fail_status: Mutex::default(),
            issued_at: Mutex::default(),
            fail_introspection: std::sync::atomic::AtomicBool::new(false),
            introspections: AtomicUsize::new(0),
            revocations: AtomicUsize::new(0),
            fail_next: Mutex::new((0, 0, None)),
            gate: watch::channel(true).0,
            requests: AtomicUsize::new(0),
            issued: AtomicUsize::new(0),
        });
        let handler_state = Arc::clone(&state);
        let handler = move |req, _| {
            let state = Arc::clone(&handler_state);
            async move { handle(&state, req).await }
        };
        let stop = crate::server::spawn(listener, None, handler);
        Ok(LoopbackIdp { addr, state, _stop: stop })
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/services/oauth2/token", self.addr)
    }

    /// Token requests received, granted or not.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Tokens issued.
    pub fn issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// Every assertion received, verified or not.
    pub fn assertions(&self) -> Vec<String> {
        lock(&self.state.assertions).clone()
    }

    /// The `kid` of every assertion received, in order.
    pub fn kids(&self) -> Vec<Option<String>> {
        lock(&self.state.kids).clone()
    }

    /// Records `token` as issued by this endpoint to `subject` now (an internal app's own token,
    /// for tests of callers that prove themselves with bearer tokens).
    pub fn grant(&self, token: &str, subject: &str) {
        self.state.sessions.insert(token.to_owned(), subject.to_owned());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        lock(&self.state.issued_at).insert(token.to_owned(), now);
    }

    /// Every access token issued, live or not.
    pub fn tokens(&self) -> Vec<String> {
        lock(&self.state.tokens).clone()
    }

    /// Answer `invalid_grant` ("user hasn't approved this consumer") for this subject.
    pub fn refuse(&self, subject: &str) {
        lock(&self.state.refused).insert(subject.to_owned());
    }

    /// Answer every request with this HTTP status (`None`: answer normally).
    pub fn fail_with(&self, status: Option<u16>) {
        *lock(&self.state.fail_status) = status;
    }

    /// Answer introspection requests with 503 (`false`: answer them).
    pub fn fail_introspection(&self, fail: bool) {
        self.state.fail_introspection.store(fail, Ordering::SeqCst);
    }

    /// Introspection requests answered.
    pub fn introspections(&self) -> usize {
        self.state.introspections.load(Ordering::SeqCst)
    }

    /// Tokens revoked through RFC 7009.
    pub fn revocations(&self) -> usize {
        self.state.revocations.load(Ordering::SeqCst)
    }

    pub fn revocation_url(&self) -> String {
        format!("http://{}/services/oauth2/revoke", self.addr)
    }

    pub fn introspection_url(&self) -> String {
        format!("http://{}/services/oauth2/introspect", self.addr)
    }

    /// Answer the next `times` requests with `status` (and `Retry-After`, if given), then normally.
    pub fn fail_times(&self, times: usize, status: u16, retry_after: Option<u64>) {
        *lock(&self.state.fail_next) = (times, status, retry_after);
    }

    /// Hold every answer until `release`.
    pub fn hold(&self) {
        self.state.gate.send_replace(false);
    }

    pub fn release(&self) {
        self.state.gate.send_replace(true);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<ProxyBody> {
    respond(status, "application/json", json!({ "error": error, "error_description": description }).to_string())
}

async fn handle(state: &State, req: Request<crate::server::RequestBody>) -> Response<ProxyBody> {
    if req.uri().path().ends_with("/introspect") {
        return introspect(state, req).await;
    }
    if req.uri().path().ends_with("/revoke") {
        // RFC 7009: the token ends; the answer is 200 whether it was known or not.
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if let Some((_, token)) = url::form_urlencoded::parse(&body).find(|(k, _)| k == "token") {
            if state.sessions.subject_of(&token).is_some() {
                state.revocations.fetch_add(1, Ordering::SeqCst);
            }
            state.sessions.revoke(&token);
        }
        return respond(StatusCode::OK, "application/json", "{}");
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    let mut gate = state.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    {
        let mut next = lock(&state.fail_next);
        if next.0 > 0 {
            next.0 -= 1;
            let status = StatusCode::from_u16(next.1).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut r = respond(status, "application/json", r#"{"error":"temporarily_unavailable"}"#);
            if let Some(seconds) = next.2 {
                r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
            }
            return r;
        }
    }
    if let Some(status) = *lock(&state.fail_status) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return respond(status, "text/html", "<html><body>maintenance</body></html>");
    }
    if req.method() != http::Method::POST {
        return oauth_error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "use POST");
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "unreadable body");
        }
    };
    let mut grant_type = None;
    let mut assertion = None;
    for (k, v) in url::form_urlencoded::parse(&body) {
        match &*k {
            "grant_type" => grant_type = Some(v.into_owned()),
            "assertion" => assertion = Some(v.into_owned()),
            _ => {}
        }
    }
    if grant_type.as_deref() != Some(JWT_BEARER_GRANT) {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant type not supported");
    }
    let Some(assertion) = assertion else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "assertion missing");
    };
    lock(&state.assertions).push(assertion.clone());
    let claims = match verify(state, &assertion) {
        Ok(c) => c,
        Err((error, description)) => {
            return oauth_error(StatusCode::BAD_REQUEST, error, &description);
        }
    };
    if lock(&state.refused).contains(&claims.sub) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "user hasn't approved this consumer");
    }
    let token = format!("00DLOOPBACK0000001!{}", uuid::Uuid::new_v4().simple());
    state.sessions.insert(token.clone(), claims.sub.clone());
    lock(&state.tokens).push(token.clone());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    lock(&state.issued_at).insert(token.clone(), now);
    state.issued.fetch_add(1, Ordering::SeqCst);
    let issued_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let mut answer = json!({
        "access_token": token,
        "scope": "api",
        "instance_url": state.options.instance_url,
        "id": format!("{}/id/00DLOOPBACK0000001/005LOOPBACK000001", state.options.audience),
        "token_type": "Bearer",
        "issued_at": issued_at.to_string(),
    });
    if let Some(expires_in) = state.options.expires_in {
        answer["expires_in"] = json!(expires_in);
    }
    respond(StatusCode::OK, "application/json", answer.to_string())
}

/// RFC 7662: `active` and `exp` for a token this endpoint issued, to a client that authenticates.
async fn introspect(state: &State, req: Request<crate::server::RequestBody>) -> Response<ProxyBody> {
    use base64::Engine as _;
    if state.fail_introspection.load(Ordering::SeqCst) {
        return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "introspection is down");
    }
    let Some(secret) = state.options.client_secret.as_deref() else {
        return oauth_error(StatusCode::NOT_FOUND, "invalid_request", "no introspection here");
    };
    let basic = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let expected = format!("{}:{secret}", state.options.client_id);
    let posted = form.get("client_id").zip(form.get("client_secret")).map(|(id, s)| format!("{id}:{s}"));
    if basic.as_deref() != Some(expected.as_str()) && posted.as_deref() != Some(expected.as_str()) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    }
    state.introspections.fetch_add(1, Ordering::SeqCst);
    let token = form.get("token").cloned().unwrap_or_default();
    let issued = lock(&state.issued_at).get(&token).copied();
    let answer = match (issued, state.sessions.subject_of(&token)) {
        (Some(at), Some(sub)) => json!({
            "active": true,
            "exp": at + state.options.session_seconds,
            "sub": sub,
            "client_id": state.options.client_id,
            "scope": "api",
            "token_type": "access_token",
        }),
        _ => json!({ "active": false }),
    };
    respond(StatusCode::OK, "application/json", answer.to_string())
}

/// Checks an assertion as Salesforce does; the error pair is what it would answer.
fn verify(state: &State, assertion: &str) -> Result<Claims, (&'static str, String)> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[&state.options.client_id]);
    validation.set_audience(&[&state.options.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY;
    let kid = jsonwebtoken::decode_header(assertion).ok().and_then(|h| h.kid);
    let key = kid
        .as_deref()
        .and_then(|kid| state.other_keys.iter().find(|(k, _)| k == kid))
        .map(|(_, key)| key)
        .unwrap_or(&state.key);
    lock(&state.kids).push(kid);
    let data = jsonwebtoken::decode::<Claims>(assertion, key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidIssuer => ("invalid_client_id", "client identifier invalid".to_owned()),
            ErrorKind::InvalidAudience => ("invalid_grant", "audience is invalid".to_owned()),
            ErrorKind::ExpiredSignature => ("invalid_grant", "expired authorization code".to_owned()),
            ErrorKind::InvalidSignature => ("invalid_grant", "invalid assertion: signature".to_owned()),
            _ => ("invalid_grant", format!("invalid assertion: {e}")),
        }
    })?;
    let claims = data.claims;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    if claims.exp > now + MAX_ASSERTION_LIFETIME.as_secs() + LEEWAY {
        return Err(("invalid_grant", "expiration is more than 3 minutes away".to_owned()));
    }
    if claims.iat > now + LEEWAY {
        return Err(("invalid_grant", "issued in the future".to_owned()));
    }
    if claims.sub.is_empty() {
        return Err(("invalid_grant", "subject missing".to_owned()));
    }
    if !lock(&state.seen_jti).insert(claims.jti.clone()) {
        return Err(("invalid_grant", "assertion replayed (jti already used)".to_owned()));
    }
    Ok(claims)
}
