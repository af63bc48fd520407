//! Whether the upstream refused the session it was sent: Salesforce's `sf:INVALID_SESSION_ID`
//! SOAP fault (HTTP 500), or a REST 401 saying `INVALID_SESSION_ID` or `invalid_token`. Only such
//! answers are read (up to a bound) before being passed on; every other answer streams untouched.

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::{BoxError, ProxyBody, full};

/// Refusals are short; a longer answer of the same status is passed on unread.
const PEEK_LIMIT: usize = 64 * 1024;

/// Whether `response` refuses the session, and the response itself, intact, to pass on otherwise.
pub async fn refused(response: Response<ProxyBody>, soap: bool) -> (bool, Response<ProxyBody>) {
    let status = response.status();
    let candidate = if soap { status == StatusCode::INTERNAL_SERVER_ERROR } else { status == StatusCode::UNAUTHORIZED };
    if !candidate {
        return (false, response);
    }
    let bearer_invalid = !soap
        && response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("invalid_token"));
    let (parts, mut body) = response.into_parts();
    let mut seen = BytesMut::new();
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    seen.extend_from_slice(&data);
                }
                if seen.len() > PEEK_LIMIT {
                    // Too long to be a refusal: pass on what was read, then the rest.
                    let head = stream::once(async move { Ok::<_, BoxError>(Frame::data(seen.freeze())) });
                    let rest = futures_util::TryStreamExt::map_ok(body.into_data_stream(), Frame::data);
                    let joined = StreamBody::new(futures_util::StreamExt::chain(head, rest)).boxed();
                    return (false, Response::from_parts(parts, joined));
                }
            }
            Some(Err(e)) => {
                // The answer broke off: pass on what came, then the same failure.
                let head = stream::once(async move { Ok::<_, BoxError>(Frame::data(seen.freeze())) });
                let fail = stream::once(async move { Err::<Frame<Bytes>, BoxError>(e) });
                let joined = StreamBody::new(futures_util::StreamExt::chain(head, fail)).boxed();
                return (false, Response::from_parts(parts, joined));
            }
        }
    }
    let text = seen.freeze();
    let says = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    let refused = bearer_invalid || says(b"INVALID_SESSION_ID") || (!soap && says(b"invalid_token"));
    (refused, Response::from_parts(parts, full(text)))
}
