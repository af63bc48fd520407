//! Forwarding to the SaaS: the upstream URI, the headers that may cross, and the response streamed
//! back unchanged. One pooled HTTP/1.1 client (hyper with rustls) serves every route.
//!
//! hyper's own client rather than reqwest: per request, reqwest parses the URL again (IDNA
//! included), clones its connector and wraps the call in redirect and timeout layers, which
//! together cost as much as the rest of a cached REST call (profiled under wrk, BENCHMARKS.md).
//! The token endpoint keeps reqwest: it is called once per token, not per request.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Request, Response, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use url::Url;

use super::ProxyBody;
use super::error::UpstreamError;
use crate::config::is_loopback;

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), and so are
/// never forwarded; plus those named in `Connection`.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The pooled client every route forwards with.
pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// `extra_roots`: CA certificates trusted besides the system's (verified as the system verifies
/// them: rustls-platform-verifier, as the token client does).
pub fn client(connect_timeout: Duration, extra_roots: &[CertificateDer<'static>]) -> Result<UpstreamClient, String> {
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
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https))
}

/// `base` with the request's path appended (after any path the base has) and its query.
pub fn upstream_uri(base: &Url, path: &str, query: Option<&str>) -> Result<Uri, UpstreamError> {
    if base.cannot_be_a_base() {
        return Err(UpstreamError::BadUrl(base.to_string()));
    }
    // The base as written up to its path (scheme, authority, path; no query or fragment).
    let head = &base[..url::Position::AfterPath];
    let head = head.strip_suffix('/').unwrap_or(head);
    let mut uri = String::with_capacity(head.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    uri.push_str(head);
    uri.push_str(path);
    if let Some(q) = query {
        uri.push('?');
        uri.push_str(q);
    }
    Uri::try_from(uri).map_err(|_| UpstreamError::BadUrl(base.to_string()))
}

/// The token endpoint chose this instance; still, no token goes over plain http off the machine.
pub fn check_instance(url: &Url) -> Result<(), UpstreamError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        _ => Err(UpstreamError::InsecureInstance(url.to_string())),
    }
}

/// The request headers to send upstream: the caller's, less hop-by-hop ones, `Host` and
/// `Content-Length` (the client sets both), any credential the caller sent, and `strip` (the
/// requester header, the caller's API key header).
pub fn request_headers(incoming: &HeaderMap, strip: &[Option<&HeaderName>]) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        if HOP_BY_HOP.contains(name)
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::AUTHORIZATION
            || name == header::COOKIE
            || strip.contains(&Some(name))
            || named_in_connection(incoming, name)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Whether `Connection` names `name` (RFC 9110 section 7.6.1), compared without building names.
fn named_in_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
}

/// Sends the request and streams the answer back. Waits at most `timeout` for response headers.
pub async fn send(
    client: &UpstreamClient,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<Response<ProxyBody>, UpstreamError> {
    let shown = || {
        format!("{}://{}{}", uri.scheme_str().unwrap_or("http"), uri.authority().map_or("", |a| a.as_str()), uri.path())
    };
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri.clone();
    *request.headers_mut() = headers;
    let upstream = match tokio::time::timeout(timeout, client.request(request)).await {
        Err(_) => {
            return Err(UpstreamError::Timeout { url: shown(), seconds: timeout.as_secs() });
        }
        Ok(Err(e)) => {
            // The connector's error says why (refused, TLS, timeout); the client's own only "client error".
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason = s.to_string();
                source = s.source();
            }
            return Err(UpstreamError::Unreachable { url: shown(), reason });
        }
        Ok(Ok(r)) => r,
    };
    let (parts, incoming) = upstream.into_parts();
    let mut response = Response::builder().status(parts.status).version(http::Version::HTTP_11);
    if let Some(headers) = response.headers_mut() {
        // The upstream's headers, less those of its connection to us.
        let mut kept = parts.headers;
        let named: Vec<HeaderName> = kept
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named.iter().chain(&HOP_BY_HOP) {
            kept.remove(name);
        }
        *headers = kept;
    }
    let body = incoming.map_err(|e| -> super::BoxError { Box::new(e) }).boxed();
    response.body(body).map_err(|e| UpstreamError::BadUrl(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_keeps_path_and_query() {
        let base = Url::parse("https://na1.example.com").expect("url");
        let u = upstream_uri(&base, "/services/data/v58.0/query", Some("q=SELECT+Id")).expect("url");
        assert_eq!(u.to_string(), "https://na1.example.com/services/data/v58.0/query?q=SELECT+Id");
        let based = Url::parse("https://h.example.com/base/").expect("url");
        assert_eq!(upstream_uri(&based, "/x", None).expect("url").to_string(), "https://h.example.com/base/x");
        let port = Url::parse("http://127.0.0.1:8080/api?ignored#frag").expect("url");
        assert_eq!(
            upstream_uri(&port, "/v1/x", Some("a=1")).expect("url").to_string(),
            "http://127.0.0.1:8080/api/v1/x?a=1"
        );
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
        let out = request_headers(&h, &[Some(&requester), None]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out.contains_key("soapaction"));
    }

    #[test]
    fn plain_http_instances_only_on_loopback() {
        assert!(check_instance(&Url::parse("http://127.0.0.1:9/").expect("url")).is_ok());
        assert!(check_instance(&Url::parse("http://na1.example.com/").expect("url")).is_err());
    }
}
