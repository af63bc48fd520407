//! Forwarding to the SaaS: the upstream URI, the headers that may cross, and the response streamed
//! back unchanged. Connections (TCP or TLS through hyper-rustls's connector) are kept by `pool`;
//! HTTP/1.1 on them is `h1`.
//!
//! Not reqwest: per request, reqwest parses the URL again (IDNA included), clones its connector
//! and wraps the call in redirect and timeout layers, which together cost as much as the rest of
//! a cached REST call (profiled under wrk, BENCHMARKS.md). The token endpoint keeps reqwest: it is
//! called once per token, not per request.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls_pki_types::CertificateDer;
use url::Url;

use super::error::UpstreamError;
use super::h1;
use super::pool::{Outgoing, Pool, TimedOut};
use crate::config::is_loopback;
use crate::server::Answer;

/// `extra_roots`: CA certificates trusted besides the system's (verified as the system verifies
/// them: rustls-platform-verifier, as the token client does).
pub fn client(connect_timeout: Duration, extra_roots: &[CertificateDer<'static>]) -> Result<Pool, String> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots.iter().cloned(), provider.clone())
            .map_err(|e| format!("TLS roots: {e}"))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Pool::new(https))
}

/// A base URL requests are forwarded to, taken apart once into what each request's URI and
/// `Host` are made of: forwarding does no URL parsing or formatting per request.
#[derive(Clone, Debug)]
pub struct Origin {
    url: Url,
    scheme: Scheme,
    authority: Authority,
    /// The base's own path without its trailing `/`; most often empty.
    path: Box<str>,
    host: HeaderValue,
}

impl Origin {
    pub fn new(url: Url) -> Result<Origin, UpstreamError> {
        let bad = || UpstreamError::BadUrl(url.to_string());
        if url.cannot_be_a_base() || url.host().is_none() {
            return Err(bad());
        }
        let scheme = Scheme::try_from(url.scheme()).map_err(|_| bad())?;
        // Host and port as written, without user information; the url crate drops default ports,
        // as `Host` should.
        let host_port = &url[url::Position::BeforeHost..url::Position::AfterPort];
        let authority =
            Authority::from_maybe_shared(Bytes::copy_from_slice(host_port.as_bytes())).map_err(|_| bad())?;
        let host = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(host_port.as_bytes())).map_err(|_| bad())?;
        let path = url.path().strip_suffix('/').unwrap_or(url.path()).into();
        Ok(Origin { url, scheme, authority, path, host })
    }

    /// The same origin in allocations of its own (`clone` shares the authority's and host's bytes).
    pub fn copy(&self) -> Origin {
        Origin::new(self.url.clone()).unwrap_or_else(|_| self.clone())
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The request target upstream (origin-form): the base's path, then the request's path and
    /// query.
    pub fn target(&self, incoming: &Uri) -> Result<PathAndQuery, UpstreamError> {
        let request = incoming.path_and_query().filter(|pq| pq.path().starts_with('/'));
        match request {
            Some(pq) if self.path.is_empty() => Ok(pq.clone()),
            Some(pq) => PathAndQuery::try_from(format!("{}{}", self.path, pq.as_str())),
            None => PathAndQuery::try_from(format!("{}/", self.path)),
        }
        .map_err(|_| UpstreamError::BadUrl(self.url.to_string()))
    }
}

impl PartialEq for Origin {
    fn eq(&self, other: &Origin) -> bool {
        self.url == other.url
    }
}

impl Eq for Origin {}

/// The token endpoint chose this instance; still, no token goes over plain http off the machine.
pub fn check_instance(url: &Url) -> Result<(), UpstreamError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        _ => Err(UpstreamError::InsecureInstance(url.to_string())),
    }
}

/// The caller's headers that go upstream: all but hop-by-hop ones, `Host` and `Content-Length`
/// (the proxy writes both), any credential the caller sent, `X-Request-Id` (the proxy sends the
/// request's own), and `strip` (the requester header, the caller's API key header). Read where
/// they are, not copied into a map of their own.
pub fn crossing<'h>(
    incoming: &'h HeaderMap,
    strip: &'h [Option<&'h HeaderName>],
) -> impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)> + 'h {
    let pairs = move || incoming.iter().map(|(name, value)| (name.as_str(), value.as_bytes()));
    let (_, named) = h1::connection_says(pairs());
    incoming.iter().filter(move |&(name, _)| {
        h1::crosses(pairs(), named, name.as_str())
            && name != header::HOST
            && name != header::CONTENT_LENGTH
            && name != header::AUTHORIZATION
            && name != header::COOKIE
            && name != super::X_REQUEST_ID
            && !strip.contains(&Some(name))
    })
}

/// A request as it goes upstream.
pub struct Forward<'a> {
    pub method: &'a Method,
    pub target: PathAndQuery,
    /// The headers the proxy sets, besides `Host`.
    pub set: &'a [Option<(HeaderName, HeaderValue)>],
    /// The caller's headers, and those of them that must not go on besides the ones `crossing`
    /// always leaves out.
    pub incoming: &'a HeaderMap,
    pub strip: &'a [Option<&'a HeaderName>],
    /// The body, in pieces written one after the other (see `envelope::rewrite`).
    pub body: [Bytes; 3],
}

/// Sends the request to `origin` and streams the answer back: `Host`, then the headers the proxy
/// sets, then the caller's headers that cross (`crossing`). Waits at most `timeout` from `now`
/// (the clock as the caller just read it) for the answer's head.
pub async fn send(
    pool: &Pool,
    origin: &Origin,
    request: &Forward<'_>,
    now: Instant,
    timeout: Duration,
) -> Result<Answer, UpstreamError> {
    // Lent, not moved in: an `async fn` keeps its arguments twice (see `App::handle`).
    let Forward { method, target, set, incoming, strip, body } = request;
    let shown = || format!("{}://{}{}", origin.scheme, origin.authority, target.path());
    let set = set.iter().flatten().map(|(name, value)| (name, value));
    let headers = std::iter::once((&header::HOST, &origin.host)).chain(set).chain(crossing(incoming, strip));
    let head = h1::encode_head(method, target, headers, body.iter().map(Bytes::len).sum());
    let request = Outgoing { method, head: &head, body };
    let upstream = match pool.send(&origin.scheme, &origin.authority, request, now, timeout).await {
        Err(e) if e.is::<TimedOut>() => {
            return Err(UpstreamError::Timeout { url: shown(), after: timeout });
        }
        Err(e) => {
            // The innermost error says why (refused, TLS, closed); the outer ones only wrap it.
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&*e);
            while let Some(s) = source {
                reason = s.to_string();
                source = s.source();
            }
            return Err(UpstreamError::Unreachable { url: shown(), reason });
        }
        Ok(r) => r,
    };
    // The upstream's headers come without those of its connection to us (`h1` leaves them out),
    // passed on as they were read.
    let (response, passed) = upstream;
    Ok(Answer { response: response.map(BodyExt::boxed), passed, request_id: None, soap: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(base: &str, incoming: &str) -> String {
        let origin = Origin::new(Url::parse(base).expect("url")).expect("origin");
        let target = origin.target(&incoming.parse::<Uri>().expect("uri")).expect("target");
        format!("{}://{}{target}", origin.scheme, origin.authority)
    }

    #[test]
    fn url_keeps_path_and_query() {
        assert_eq!(
            forwarded("https://na1.example.com", "/services/data/v58.0/query?q=SELECT+Id"),
            "https://na1.example.com/services/data/v58.0/query?q=SELECT+Id"
        );
        assert_eq!(forwarded("https://h.example.com/base/", "/x"), "https://h.example.com/base/x");
        assert_eq!(
            forwarded("http://127.0.0.1:8080/api?ignored#frag", "/v1/x?a=1"),
            "http://127.0.0.1:8080/api/v1/x?a=1"
        );
        // An absolute-form request line: only its path and query go on.
        assert_eq!(forwarded("https://na1.example.com", "http://elsewhere.example/p?q"), "https://na1.example.com/p?q");
        assert_eq!(forwarded("https://na1.example.com/base", "*"), "https://na1.example.com/base/");
    }

    #[test]
    fn host_is_the_authority_without_user_or_default_port() {
        let host = |base: &str| Origin::new(Url::parse(base).expect("url")).expect("origin").host;
        assert_eq!(host("https://user:pw@na1.example.com:443/x"), "na1.example.com");
        assert_eq!(host("http://127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(host("https://[::1]:8443/"), "[::1]:8443");
    }

    #[test]
    fn hop_by_hop_and_credentials_do_not_cross() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "close, x-secret-hop".parse().expect("v"));
        h.insert("x-secret-hop", "1".parse().expect("v"));
        h.insert(header::AUTHORIZATION, "Bearer caller".parse().expect("v"));
        h.insert("x-requester", "a@b".parse().expect("v"));
        h.insert("soapaction", "\"\"".parse().expect("v"));
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().expect("v"));
        let requester = HeaderName::from_static("x-requester");
        h.insert("x-request-id", "caller-chosen".parse().expect("v"));
        h.insert(header::HOST, "proxy.internal".parse().expect("v"));
        let strip = [Some(&requester), None];
        let out: Vec<&str> = crossing(&h, &strip).map(|(name, _)| name.as_str()).collect();
        assert_eq!(out, ["soapaction"]);
    }

    #[test]
    fn a_request_with_connection_keep_alive_keeps_its_other_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        assert_eq!(crossing(&h, &[]).map(|(name, _)| name.as_str()).collect::<Vec<_>>(), ["x-keep"]);
    }

    #[test]
    fn plain_http_instances_only_on_loopback() {
        assert!(check_instance(&Url::parse("http://127.0.0.1:9/").expect("url")).is_ok());
        assert!(check_instance(&Url::parse("http://na1.example.com/").expect("url")).is_err());
    }
}
