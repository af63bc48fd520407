//! Local peers on 127.0.0.1 for `demo` and the tests: a token endpoint that really verifies
//! assertions (`idp`) and an upstream that really checks the credential it receives (`upstream`).
//! They share `Sessions`, the tokens the endpoint issued, so the upstream can tell a real session
//! from a forged or revoked one. Nothing here is used by the proxy itself.

pub mod idp;
pub mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{Response, StatusCode, header};

use crate::proxy::{ProxyBody, full};

/// Access tokens the loopback endpoint issued, and whom each is for.
#[derive(Clone, Debug, Default)]
pub struct Sessions(Arc<Mutex<HashMap<String, String>>>);

impl Sessions {
    fn map(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, token: String, subject: String) {
        self.map().insert(token, subject);
    }

    /// The subject of a live session.
    pub fn subject_of(&self, token: &str) -> Option<String> {
        self.map().get(token).cloned()
    }

    /// Ends a session, as an admin or a timeout would upstream.
    pub fn revoke(&self, token: &str) {
        self.map().remove(token);
    }

    /// Every token issued and still live.
    pub fn tokens(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}
