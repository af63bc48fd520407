//! `ProxyError`: every way a request can fail, with the context that names the cause.
//! `proxy::respond` is the only place that turns one into a response.

use crate::identity::MappingError;
use crate::soap::envelope::EnvelopeError;
use crate::token::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route for path '{0}'")]
    NoRoute(String),
    #[error("request body exceeds the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("request body could not be read: {0}")]
    BodyRead(String),
    #[error("{0}")]
    Envelope(#[from] EnvelopeError),
    #[error("no requester: {0}")]
    MissingRequester(String),
    #[error("{0}")]
    Mapping(#[from] MappingError),
    #[error("no token for subject '{subject}': {source}")]
    Token { subject: String, source: TokenError },
    #[error("provider '{0}' returned no instance_url, which this route's upstream needs")]
    NoInstanceUrl(String),
    #[error("upstream {0}")]
    Upstream(UpstreamError),
    #[error("{0}")]
    Denied(crate::policy::Denied),
    /// At the HTTP level, in the server: a request that is not well-formed HTTP/1.1 (refused
    /// before it reached a route), or an answer whose body failed before any of it went out.
    #[error("{detail}")]
    Http { status: http::StatusCode, code: &'static str, detail: String },
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("'{url}' unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("'{url}' did not answer within {}", humantime::format_duration(*.after))]
    Timeout { url: String, after: std::time::Duration },
    #[error("URL cannot be built from '{0}'")]
    BadUrl(String),
    #[error("instance_url '{0}' uses plain http to a non-loopback host; refusing to send a token there")]
    InsecureInstance(String),
}
