//! The one place errors become responses: a SOAP fault of the request's version on SOAP routes,
//! `application/problem+json` (RFC 9457) everywhere else. Also the status, blame and code of each error.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use super::error::{ProxyError, UpstreamError};
use crate::identity::MappingError;
use crate::server::Answer;
use crate::soap::SoapVersion;
use crate::soap::envelope::EnvelopeError;
use crate::soap::fault::{self, FaultSide};
use crate::token::TokenError;

/// How an error is answered: HTTP status (REST; SOAP uses SOAP's rules), who is to blame, a code.
pub struct Classified {
    pub status: StatusCode,
    pub side: FaultSide,
    pub code: &'static str,
}

pub fn classify(err: &ProxyError) -> Classified {
    use FaultSide::{Caller, Server};
    let (status, side, code) = match err {
        ProxyError::NoRoute(_) => (StatusCode::NOT_FOUND, Caller, "no_route"),
        ProxyError::Http { status, code, .. } => {
            (*status, if status.is_client_error() { Caller } else { Server }, *code)
        }
        ProxyError::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, Caller, "body_too_large"),
        ProxyError::BodyRead(_) => (StatusCode::BAD_REQUEST, Caller, "body_unreadable"),
        ProxyError::Envelope(e @ EnvelopeError::MustUnderstand(_)) => {
            (StatusCode::BAD_REQUEST, FaultSide::MustUnderstand, e.code())
        }
        ProxyError::Envelope(e) => (StatusCode::BAD_REQUEST, Caller, e.code()),
        ProxyError::MissingRequester(_) => (StatusCode::BAD_REQUEST, Caller, "missing_requester"),
        ProxyError::Mapping(MappingError::Unmapped(_)) => (StatusCode::FORBIDDEN, Caller, "unmapped_subject"),
        ProxyError::Mapping(_) => (StatusCode::BAD_REQUEST, Caller, "invalid_requester"),
        ProxyError::Token { source, .. } => match source {
            // The IdP refuses this user (not approved, unknown, inactive): the caller's problem.
            TokenError::Rejected { error, .. } if error == "invalid_grant" => {
                (StatusCode::FORBIDDEN, Caller, "subject_refused")
            }
            // Any other refusal means our client registration is wrong: the operator's problem.
            TokenError::Rejected { .. } => (StatusCode::BAD_GATEWAY, Server, "idp_refused_client"),
            TokenError::Unreachable(_) | TokenError::Unavailable { .. } | TokenError::RetryAfter { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, Server, "idp_unavailable")
            }
            TokenError::Status(s) if *s == 503 || *s == 429 => {
                (StatusCode::SERVICE_UNAVAILABLE, Server, "idp_unavailable")
            }
            TokenError::Status(_) => (StatusCode::BAD_GATEWAY, Server, "idp_error"),
            TokenError::BadResponse(_) => (StatusCode::BAD_GATEWAY, Server, "idp_bad_response"),
            TokenError::Signing(_) | TokenError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, Server, "internal"),
        },
        ProxyError::Denied(d) => match d.status() {
            429 => (StatusCode::TOO_MANY_REQUESTS, Caller, "rate_limited"),
            503 => (StatusCode::SERVICE_UNAVAILABLE, Server, "caller_unverifiable"),
            401 => (StatusCode::UNAUTHORIZED, Caller, "unauthenticated"),
            400 => (StatusCode::BAD_REQUEST, Caller, "malformed_credential"),
            _ => (StatusCode::FORBIDDEN, Caller, "forbidden"),
        },
        ProxyError::NoInstanceUrl(_) => (StatusCode::BAD_GATEWAY, Server, "no_instance_url"),
        ProxyError::Upstream(UpstreamError::Timeout { .. }) => {
            (StatusCode::GATEWAY_TIMEOUT, Server, "upstream_timeout")
        }
        ProxyError::Upstream(UpstreamError::Unreachable { .. }) => {
            (StatusCode::BAD_GATEWAY, Server, "upstream_unreachable")
        }
        ProxyError::Upstream(_) => (StatusCode::BAD_GATEWAY, Server, "upstream_invalid"),
    };
    Classified { status, side, code }
}

/// The answer for `err`. `soap`: the SOAP version to fault in, `None` for problem+json.
pub fn error_response(err: &ProxyError, soap: Option<SoapVersion>, request_id: &str) -> Answer {
    let c = classify(err);
    let message = err.to_string();
    let (status, content_type, body) = match soap {
        Some(version) => {
            // SOAP fixes the status by version and blame; 413 stays, as the body was never parsed,
            // and so does 429, which clients handle at the HTTP level.
            let status = if c.status == StatusCode::PAYLOAD_TOO_LARGE || c.status == StatusCode::TOO_MANY_REQUESTS {
                c.status
            } else {
                StatusCode::from_u16(fault::fault_status(version, c.side)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            };
            (status, fault::content_type(version), fault::fault_body(version, c.side, c.code, &message))
        }
        None => {
            let mut problem = json!({
                "type": format!("urn:oauth-egress:error:{}", c.code),
                "title": c.status.canonical_reason().unwrap_or("Error"),
                "status": c.status.as_u16(),
                "detail": message,
                "code": c.code,
                "request_id": request_id,
            });
            if let ProxyError::Token { source: TokenError::Rejected { error, description, .. }, .. } = err {
                problem["idp_error"] = json!(error);
                problem["idp_error_description"] = json!(description);
            }
            (c.status, "application/problem+json", problem.to_string())
        }
    };
    let mut response = Response::new(super::full(Bytes::from(body)));
    *response.status_mut() = status;
    if let Some(seconds) = retry_after(err) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Answer { response, passed: Default::default(), request_id: HeaderValue::from_str(request_id).ok(), soap }
}

/// When a caller may try again, for the answers that say so (`Retry-After`, in seconds).
fn retry_after(err: &ProxyError) -> Option<u64> {
    match err {
        ProxyError::Token { source: TokenError::Unavailable { retry_after, .. }, .. } => Some(*retry_after),
        ProxyError::Token { source: TokenError::RetryAfter { seconds, .. }, .. } => Some(*seconds),
        ProxyError::Token { source: TokenError::Unreachable(_), .. } => Some(5),
        ProxyError::Denied(crate::policy::Denied::Limited { retry_after, .. }) => Some(*retry_after),
        _ => None,
    }
}
