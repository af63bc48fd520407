//! Forwarding to the SaaS: the upstream URL, the headers that may cross, and the response streamed
//! back unchanged. One pooled HTTP client (rustls) serves every route.

use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{HeaderMap, HeaderName, Method, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
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

/// `extra_roots`: CA certificates trusted besides the system's.
pub fn client(connect_timeout: Duration, extra_roots: &[reqwest::Certificate]) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_certs_merge(extra_roots.iter().cloned())
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| e.to_string())
}

/// `base` with the request's path appended (after any path the base has) and its query.
pub fn upstream_url(base: &Url, path: &str, query: Option<&str>) -> Result<Url, UpstreamError> {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(query);
    if url.cannot_be_a_base() {
        return Err(UpstreamError::BadUrl(base.to_string()));
    }
    Ok(url)
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
pub fn request_headers(incoming: &HeaderMap, strip: &[&HeaderName]) -> HeaderMap {
    let named_in_connection = connection_tokens(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        if HOP_BY_HOP.contains(name)
            || named_in_connection.contains(name)
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::AUTHORIZATION
            || name == header::COOKIE
            || strip.contains(&name)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

fn connection_tokens(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// Sends the request and streams the answer back. Waits at most `timeout` for response headers.
pub async fn send(
    client: &reqwest::Client,
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<Response<ProxyBody>, UpstreamError> {
    let shown = format!("{}{}", url.origin().ascii_serialization(), url.path());
    let request = client.request(method, url).headers(headers).body(body);
    let upstream = match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => {
            return Err(UpstreamError::Timeout { url: shown, seconds: timeout.as_secs() });
        }
        Ok(Err(e)) => {
            let reason = match std::error::Error::source(&e) {
                Some(s) => format!("{s}"),
                None => e.to_string(),
            };
            return Err(UpstreamError::Unreachable { url: shown, reason });
        }
        Ok(Ok(r)) => r,
    };
    let mut response = Response::builder().status(upstream.status()).version(http::Version::HTTP_11);
    let named_in_connection = connection_tokens(upstream.headers());
    if let Some(headers) = response.headers_mut() {
        for (name, value) in upstream.headers() {
            if !HOP_BY_HOP.contains(name) && !named_in_connection.contains(name) {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    let stream = upstream.bytes_stream().map_ok(Frame::data).map_err(|e| -> super::BoxError { Box::new(e) });
    let body = StreamBody::new(stream).boxed();
    response.body(body).map_err(|e| UpstreamError::BadUrl(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_keeps_path_and_query() {
        let base = Url::parse("https://na1.example.com").expect("url");
        let u = upstream_url(&base, "/services/data/v58.0/query", Some("q=SELECT+Id")).expect("url");
        assert_eq!(u.as_str(), "https://na1.example.com/services/data/v58.0/query?q=SELECT+Id");
        let based = Url::parse("https://h.example.com/base/").expect("url");
        assert_eq!(upstream_url(&based, "/x", None).expect("url").as_str(), "https://h.example.com/base/x");
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
        let out = request_headers(&h, &[&HeaderName::from_static("x-requester")]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out.contains_key("soapaction"));
    }

    #[test]
    fn plain_http_instances_only_on_loopback() {
        assert!(check_instance(&Url::parse("http://127.0.0.1:9/").expect("url")).is_ok());
        assert!(check_instance(&Url::parse("http://na1.example.com/").expect("url")).is_err());
    }
}
