//! Whether the upstream refused the session it was sent: Salesforce's `sf:INVALID_SESSION_ID`
//! SOAP fault (HTTP 500), or a REST 401 saying `INVALID_SESSION_ID` or `invalid_token`. Only such
//! answers are read (up to a bound) before being passed on; every other answer streams untouched.

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::{BoxError, full};
use crate::server::Answer;

/// Refusals are short; a longer answer of the same status is passed on unread.
const PEEK_LIMIT: usize = 64 * 1024;

/// Whether `response` refuses the session, and the response itself, intact, to pass on otherwise.
pub async fn refused(answer: Answer, soap: bool) -> (bool, Answer) {
    let status = answer.response.status();
    let candidate = if soap { status == StatusCode::INTERNAL_SERVER_ERROR } else { status == StatusCode::UNAUTHORIZED };
    if !candidate {
        return (false, answer);
    }
    let invalid_token = |v: &[u8]| v.windows(13).any(|w| w == b"invalid_token");
    let bearer_invalid = !soap
        && (answer.passed.get_all("www-authenticate").any(invalid_token)
            || answer.response.headers().get_all(header::WWW_AUTHENTICATE).iter().any(|v| invalid_token(v.as_bytes())));
    let Answer { response, passed, request_id, soap: version } = answer;
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
                    return (
                        false,
                        Answer { response: Response::from_parts(parts, joined), passed, request_id, soap: version },
                    );
                }
            }
            Some(Err(e)) => {
                // The answer broke off: pass on what came, then the same failure.
                let head = stream::once(async move { Ok::<_, BoxError>(Frame::data(seen.freeze())) });
                let fail = stream::once(async move { Err::<Frame<Bytes>, BoxError>(e) });
                let joined = StreamBody::new(futures_util::StreamExt::chain(head, fail)).boxed();
                return (
                    false,
                    Answer { response: Response::from_parts(parts, joined), passed, request_id, soap: version },
                );
            }
        }
    }
    let text = seen.freeze();
    let says = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    let refused = bearer_invalid || says(b"INVALID_SESSION_ID") || (!soap && says(b"invalid_token"));
    (refused, Answer { response: Response::from_parts(parts, full(text)), passed, request_id, soap: version })
}
