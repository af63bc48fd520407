//! The admin listener, apart from the proxy's own: `GET /metrics` (Prometheus/OpenMetrics text),
//! `GET /healthz` (the process answers), `GET /readyz` (it serves requests: listeners up, not
//! shutting down), `POST /reload` (read the config file again, as SIGHUP does). It is not
//! authenticated: bind it to loopback or a management network.
//!
//! What the metrics count lives in `metrics`; reloading itself in `proxy::App::reload_source`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};

use crate::proxy::{App, ProxyBody, full};

/// Whether the proxy serves requests now (for `/readyz`).
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Answers one admin request.
pub async fn handle<B>(app: Arc<App>, ready: Arc<Readiness>, request: Request<B>) -> Response<ProxyBody> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let text = app.metrics_text();
            answer(StatusCode::OK, crate::metrics::CONTENT_TYPE, text)
        }
        (&Method::GET, "/healthz") => answer(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        (&Method::GET, "/readyz") if ready.get() => {
            answer(StatusCode::OK, "text/plain; charset=utf-8", "ready\n".into())
        }
        (&Method::GET, "/readyz") => {
            answer(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "not ready\n".into())
        }
        (&Method::POST, "/reload") => match app.reload_source().await {
            Ok(done) => {
                log_reloaded(&done);
                let body = serde_json::json!({
                    "reloaded": true,
                    "routes": done.routes,
                    "providers": done.providers,
                    "new_identities": done.new_identities,
                    "need_restart": done.need_restart,
                });
                answer(StatusCode::OK, "application/json", body.to_string())
            }
            Err(errors) => {
                log_refused(&errors);
                let body = serde_json::json!({
                    "type": "about:blank",
                    "title": "The new config was refused; the running one stays",
                    "status": 422,
                    "errors": errors,
                });
                answer(StatusCode::UNPROCESSABLE_ENTITY, "application/problem+json", body.to_string())
            }
        },
        (_, "/metrics" | "/healthz" | "/readyz" | "/reload") => {
            answer(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "method not allowed\n".into())
        }
        _ => answer(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the admin listener serves /metrics, /healthz, /readyz and POST /reload\n".into(),
        ),
    }
}

/// Logs a reload that took effect (SIGHUP and `POST /reload` alike).
pub fn log_reloaded(done: &crate::proxy::Reloaded) {
    tracing::info!(
        routes = done.routes,
        providers = done.providers,
        new_identities = ?done.new_identities,
        "Config reloaded; new requests use it, requests in flight finish on the old one."
    );
    if !done.need_restart.is_empty() {
        tracing::warn!(settings = ?done.need_restart, "These settings changed but take effect only after a restart.");
    }
}

/// Logs a refused reload with every error of the new config.
pub fn log_refused(errors: &[String]) {
    for e in errors {
        tracing::error!(error = %e, "Config reload refused.");
    }
    tracing::warn!(errors = errors.len(), "The new config has errors; the running config stays.");
}

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}
