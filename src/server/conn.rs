//! HTTP/1.1 (RFC 9112) on one accepted connection: each request's head read and parsed
//! (`httparse`), handed to the handler with a body that reads on from the connection only when
//! the handler asks for it, and the answer written back; then the next request (one sent behind
//! it, pipelined, waits in the buffer meanwhile). A request that is not well-formed HTTP/1.1 is
//! answered with a problem (`application/problem+json`) naming what was wrong, and the connection
//! closed. A connection closed while the caller may still be sending (its head refused, or its
//! body not read to the end) is first shut for sending and read to its end (`end_connection`),
//! so that no reset overtakes the answer. Nothing is read from the caller while its request is in flight: a
//! caller that shuts its sending side once the request is out still gets the answer, and one that
//! goes away is noticed when its answer is written (as nginx's `proxy_ignore_client_abort on`; the
//! upstream call runs to its end, within its timeout). Accepting, TLS and the shutdown's
//! bookkeeping are `super`'s; the body framing, the header map over the bytes read and the
//! vectored writes are shared with the upstream client (`proxy::h1`).
//!
//! Why not hyper's server connection: between the socket and the handler it ran a dispatcher
//! with its own buffers and state, and encoded each answer through them. Of a cached REST call
//! (callgrind, BENCHMARKS.md) the server side took ~8,800 instructions with hyper, ~7,400 here
//! (21,170 → 20,320 in all; 18,300 once an upstream answer's headers were passed on as read,
//! which hyper's answer type could not carry), and it answers a request it cannot parse with a
//! problem, where hyper sent an empty 400.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::{Body, Frame, SizeHint};
use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::guard::{Guarded, Timeouts};
use super::{Answer, Peer, Watch};
use crate::proxy::error::ProxyError;
use crate::proxy::h1::{self, Chunked, Framing, Span};
use crate::proxy::{BoxError, ProxyBody, RequestId};

/// Longest request head read (request line and headers): longer is refused with 431.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers in a request head: more is refused with 431.
const MAX_HEADERS: usize = 128;
/// The interim answer to `Expect: 100-continue`, sent when the handler first reads the body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Closing while the caller may still be sending (`end_connection`): at most this long in all,
/// and at most this long without a byte from the caller (nginx's `lingering_time`,
/// `lingering_timeout`).
const LINGER_MAX: std::time::Duration = std::time::Duration::from_secs(30);
const LINGER_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection's byte stream, whatever carries it (TCP, TLS, a Unix socket).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// The connection, and what has been read from it past the messages taken off.
struct Wire {
    io: Guarded,
    buf: BytesMut,
}

/// Serves the requests of one connection to its end: the caller closes it, a request cannot be
/// read, shutdown begins (between requests; one in flight is answered first), or the caller
/// keeps the connection waiting past `timeouts` (see `guard`).
pub(super) async fn serve<H, Fut>(io: Box<dyn Stream>, peer: Peer, handler: H, watch: &mut Watch, timeouts: Timeouts)
where
    H: Fn(Request<RequestBody>, Peer) -> Fut,
    Fut: Future<Output: Into<Answer>>,
{
    let mut wire = Wire { io: Guarded::new(io, timeouts), buf: BytesMut::new() };
    // Each answer's head is written here: one buffer for the connection's life.
    let mut out = Vec::new();
    loop {
        let Parsed { request, body, keep_alive, expect_continue } = match next_request(&mut wire, watch).await {
            Ok(Some(parsed)) => parsed,
            Ok(None) => {
                let _ = wire.io.shutdown().await;
                return;
            }
            Err(Refusal { status, code, detail }) => {
                tracing::info!(peer = ?peer.addr, status = status.as_u16(), %detail, "Malformed request refused.");
                let id = RequestId::for_request(&http::HeaderMap::new());
                let refused = ProxyError::Http { status, code, detail };
                let answer = crate::proxy::respond::error_response(&refused, None, id.as_str());
                // The rest of what the caller sends is unknown: it may still be sending.
                if write_answer(&mut wire, &mut out, answer, Asked { head: false, old: false }).await.is_ok() {
                    end_connection(&mut wire, watch, true).await;
                }
                return;
            }
        };
        let asked = Asked { head: request.method() == Method::HEAD, old: request.version() == Version::HTTP_10 };
        let (body, lent) = match body {
            Start::None => (RequestBody(Kind::Empty), None),
            Start::Length(n) if wire.buf.len() as u64 >= n => {
                (RequestBody(Kind::Read(Some(wire.buf.split_to(n as usize).freeze()))), None)
            }
            start => {
                let framing = match start {
                    Start::Length(n) => Framing::Length(n),
                    _ => Framing::Chunked(Chunked::Size),
                };
                let back = Arc::new(Back::default());
                // The connection's stream, with its timer, goes to the body.
                let stand_in = Guarded::new(Box::new(Closed), timeouts);
                let (io, buf) = (std::mem::replace(&mut wire.io, stand_in), std::mem::take(&mut wire.buf));
                let lent = Lent {
                    wire: Some(Wire { io, buf }),
                    framing,
                    continue_at: expect_continue.then_some(0),
                    back: Arc::clone(&back),
                };
                (RequestBody(Kind::Wire(Box::new(lent))), Some(back))
            }
        };
        let answer = handler(request.map(|()| body), peer.clone()).await.into();
        // The body hands the connection back once read to its end or dropped (the handler is
        // done with it when its answer is ready).
        let whole = match lent {
            None => true,
            Some(back) => {
                let (returned, whole) = back.returned().await;
                wire = returned;
                whole
            }
        };
        let close = !keep_alive || !whole || watch.begun();
        // The id and version stay here for a 502 in its place, should the answer fail before
        // any of it goes out.
        let Answer { response, passed, request_id: id, soap } = answer;
        match write_response(&mut wire, &mut out, response, &passed, id.as_ref(), asked, close).await {
            Ok(true) => {}
            Ok(false) => {
                end_connection(&mut wire, watch, !whole).await;
                return;
            }
            Err(Unwritten { error, unsent: true }) => {
                tracing::warn!(error = %error, "An answer failed before any of it was sent; answering 502 instead.");
                let detail = format!("the upstream's answer broke off before it began: {error}");
                let failed = ProxyError::Http { status: StatusCode::BAD_GATEWAY, code: "upstream_invalid", detail };
                let id = id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-");
                let answer = crate::proxy::respond::error_response(&failed, soap, id);
                if write_answer(&mut wire, &mut out, answer, asked).await.is_ok() {
                    end_connection(&mut wire, watch, !whole).await;
                }
                return;
            }
            Err(Unwritten { error, .. }) => {
                tracing::debug!(error = %error, "Connection ended while answering.");
                return;
            }
        }
    }
}

/// Ends a connection once its last answer is written: the sending side is shut (the answer is
/// complete). When the caller may still be sending (`unread`: an answer went out before its
/// request was read to its end, a body too large or one the handler did not need, or a head was
/// refused), what it still sends is then read and dropped until it closes, pauses for
/// `LINGER_PAUSE`, or `LINGER_MAX` has passed, or shutdown begins (a stopping service does not
/// wait on what callers left over): nginx's lingering close. A socket closed with bytes unread
/// makes the kernel reset the connection (RFC 9112 section 9.6), and the reset can beat the
/// answer to a caller that writes its whole request before it reads (Python's `http.client`):
/// that caller saw a broken pipe instead of its 413 fault. The bytes are read into the
/// connection's own buffer, which has no other use by now.
async fn end_connection(wire: &mut Wire, watch: &mut Watch, unread: bool) {
    if wire.io.shutdown().await.is_err() || !unread {
        return;
    }
    let give_up = tokio::time::Instant::now() + LINGER_MAX;
    loop {
        wire.buf.clear();
        let pause = (tokio::time::Instant::now() + LINGER_PAUSE).min(give_up);
        let read = std::future::poll_fn(|cx| {
            if watch.poll_begun(cx).is_ready() {
                return Poll::Ready(Ok(0));
            }
            h1::poll_fill(&mut wire.io, &mut wire.buf, cx)
        });
        match tokio::time::timeout_at(pause, read).await {
            Ok(Ok(n)) if n > 0 => {}
            // Closed by the caller, failed, quiet too long, out of time, or shutdown began.
            _ => return,
        }
    }
}

/// Why a request cannot be served: answered with this status, then the connection closes.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

/// Reads until a request's head is complete. `None`: the caller closed the connection (or reset
/// it) between requests or inside a head, shutdown began with nothing of a request read, or no
/// request came within the keep-alive time: there is no one to answer. A head begun and not
/// finished within the client time is refused (408).
async fn next_request(wire: &mut Wire, watch: &mut Watch) -> Result<Option<Parsed>, Refusal> {
    std::future::poll_fn(|cx| {
        loop {
            if !wire.buf.is_empty() {
                match parse(&mut wire.buf) {
                    Ok(None) if wire.buf.len() >= MAX_HEAD => {
                        let detail = format!("the request's head is longer than {MAX_HEAD} bytes");
                        return Poll::Ready(Err(Refusal { status: TOO_LARGE, code: "head_too_large", detail }));
                    }
                    Ok(None) => {}
                    done => return Poll::Ready(done),
                }
            } else if watch.poll_begun(cx).is_ready() {
                return Poll::Ready(Ok(None));
            }
            // Waiting for a request's first byte: the keep-alive time applies.
            wire.io.between = wire.buf.is_empty();
            match ready!(h1::poll_fill(&mut wire.io, &mut wire.buf, cx)) {
                Ok(n) if n > 0 => wire.io.between = false,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut && !wire.buf.is_empty() => {
                    let detail = format!("the request's head did not come whole: {e}");
                    return Poll::Ready(Err(Refusal {
                        status: StatusCode::REQUEST_TIMEOUT,
                        code: "request_timeout",
                        detail,
                    }));
                }
                _ => return Poll::Ready(Ok(None)),
            }
        }
    })
    .await
}

const TOO_LARGE: StatusCode = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;

/// A request's head as parsed, and what the connection must know of it.
struct Parsed {
    request: Request<()>,
    body: Start,
    /// The connection may carry another request after this one.
    keep_alive: bool,
    /// The caller waits for `100 Continue` before it sends the body.
    expect_continue: bool,
}

/// How a request's body is framed.
enum Start {
    None,
    Length(u64),
    Chunked,
}

/// Header values of one name, as read.
type Values<'b> = SmallVec<[&'b [u8]; 2]>;

/// Parses a complete request head at the start of `buf` and takes it off; `None` while
/// incomplete. The header values share the bytes read (no copy); what follows the head (its
/// body, a pipelined request) stays in `buf`.
fn parse(buf: &mut BytesMut) -> Result<Option<Parsed>, Refusal> {
    let bad = |detail: String| Refusal { status: StatusCode::BAD_REQUEST, code: "malformed_request", detail };
    let mut spans: SmallVec<[Span; 16]> = SmallVec::new();
    let (len, method, target, version, body, keep_alive, expect_continue) = {
        let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        let len =
            match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut request, buf, &mut slots) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => {
                    let detail = format!("the request has more than {MAX_HEADERS} headers");
                    return Err(Refusal { status: TOO_LARGE, code: "head_too_large", detail });
                }
                Err(e) => return Err(bad(format!("the request is not HTTP/1.1: {e}"))),
            };
        let method = Method::from_bytes(request.method.unwrap_or_default().as_bytes())
            .map_err(|_| bad("the request's method is invalid".to_owned()))?;
        let path = request.path.unwrap_or_default().as_bytes();
        let start = (path.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        let target = start..start + path.len();
        let version = if request.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
        // What the connection needs of the headers, in one pass over them.
        let (mut lengths, mut codings, mut connection) = (Values::new(), Values::new(), Values::new());
        let mut expect_continue = false;
        let is = |name: &str, what: &str| name.eq_ignore_ascii_case(what);
        for h in request.headers.iter() {
            match h.name.len() {
                6 if is(h.name, "expect") => {
                    expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue")
                }
                10 if is(h.name, "connection") => connection.push(h.value),
                14 if is(h.name, "content-length") => lengths.push(h.value),
                17 if is(h.name, "transfer-encoding") => codings.push(h.value),
                _ => {}
            }
            spans.push(h1::span(buf, h));
        }
        let body = if codings.is_empty() {
            match h1::content_length(lengths.iter().copied()).map_err(|e| bad(format!("the request has {e}")))? {
                None | Some(0) => Start::None,
                Some(n) => Start::Length(n),
            }
        } else {
            // Both, or a coding besides a single `chunked`: refused rather than guessed at, as
            // two readings of one request's end are how requests are smuggled past a proxy.
            if version == Version::HTTP_10 {
                return Err(bad("an HTTP/1.0 request has Transfer-Encoding".to_owned()));
            }
            if !lengths.is_empty() {
                return Err(bad("the request has both Transfer-Encoding and Content-Length".to_owned()));
            }
            let tokens: SmallVec<[&[u8]; 2]> = codings
                .iter()
                .flat_map(|v| v.split(|b| *b == b','))
                .map(<[u8]>::trim_ascii)
                .filter(|t| !t.is_empty())
                .collect();
            if let Some(other) = tokens.iter().find(|t| !t.eq_ignore_ascii_case(b"chunked")) {
                let detail = format!("the transfer coding '{}' is not supported", String::from_utf8_lossy(other));
                return Err(Refusal { status: StatusCode::NOT_IMPLEMENTED, code: "unsupported_coding", detail });
            }
            if tokens.len() != 1 {
                return Err(bad("the request's Transfer-Encoding is not a single 'chunked'".to_owned()));
            }
            Start::Chunked
        };
        let says = |token: &[u8]| {
            connection.iter().flat_map(|v| v.split(|b| *b == b',')).any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        };
        let keep_alive = match version {
            Version::HTTP_10 => says(b"keep-alive") && !says(b"close"),
            _ => !says(b"close"),
        };
        (len, method, target, version, body, keep_alive, expect_continue && version == Version::HTTP_11)
    };
    let head = buf.split_to(len).freeze();
    // Room for one more without regrowing (the proxy's `X-Request-Id` on the way on).
    let headers = h1::header_map(&head, &spans, 1).map_err(|e| bad(format!("the request has {e}")))?;
    // Within the head by httparse's making; checked all the same (`slice` would panic).
    let target = if target.end <= head.len() { head.slice(target) } else { Bytes::new() };
    let uri = Uri::from_maybe_shared(target).map_err(|_| bad("the request target is not a valid URI".to_owned()))?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some(Parsed { request, body, keep_alive, expect_continue }))
}

/// Parses a request head from `wire` as a connection does: `None` while incomplete; else the
/// request, whether its body is chunked, and its stated length; or the status and reason it is
/// refused with. For the fuzz target and tests.
#[allow(clippy::type_complexity, reason = "a test seam, taken apart at once")]
pub fn read_request(wire: &[u8]) -> Result<Option<(Request<()>, bool, Option<u64>)>, (u16, String)> {
    let mut buf = BytesMut::from(wire);
    match parse(&mut buf) {
        Ok(None) if buf.len() >= MAX_HEAD => Err((TOO_LARGE.as_u16(), "too long".to_owned())),
        Ok(None) => Ok(None),
        Ok(Some(parsed)) => {
            let (chunked, length) = match parsed.body {
                Start::None => (false, None),
                Start::Length(n) => (false, Some(n)),
                Start::Chunked => (true, None),
            };
            Ok(Some((parsed.request, chunked, length)))
        }
        Err(refusal) => Err((refusal.status.as_u16(), refusal.detail)),
    }
}

/// What the request asked that shapes its answer on the wire.
#[derive(Clone, Copy)]
struct Asked {
    /// `HEAD`: the answer's head only.
    head: bool,
    /// HTTP/1.0: no chunked answers; kept alive only when it asked.
    old: bool,
}

/// How an answer's body is delimited on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 caller, a body of unknown length).
    Close,
}

/// Writes an answer the server made itself (a refusal, a 502), then the connection closes.
async fn write_answer(wire: &mut Wire, out: &mut Vec<u8>, answer: Answer, asked: Asked) -> Result<bool, Unwritten> {
    write_response(wire, out, answer.response, &answer.passed, answer.request_id.as_ref(), asked, true).await
}

/// Why an answer was not written whole.
struct Unwritten {
    error: BoxError,
    /// None of it went out: the caller can still be told.
    unsent: bool,
}

impl From<std::io::Error> for Unwritten {
    /// The connection failed: there is no one left to tell.
    fn from(e: std::io::Error) -> Unwritten {
        Unwritten { error: e.into(), unsent: false }
    }
}

/// Writes an answer: its head, then its body as it comes (the head goes with the body's first
/// piece when that is ready at once: one system call for a whole small answer). `Ok(true)`: the
/// connection may carry the next request. Hop-by-hop headers are the connection's to set, and
/// the body's length is the body's to say: those the handler set are not written.
async fn write_response(
    wire: &mut Wire,
    out: &mut Vec<u8>,
    response: Response<ProxyBody>,
    passed: &h1::Passed,
    request_id: Option<&HeaderValue>,
    asked: Asked,
    mut close: bool,
) -> Result<bool, Unwritten> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let bodiless = asked.head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match body.size_hint().exact() {
        _ if bodiless => Out::None,
        Some(n) => Out::Length(n),
        None if asked.old => Out::Close,
        None => Out::Chunked,
    };
    close |= framing == Out::Close;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let (mut dated, mut lengthed) = (false, false);
    // A HEAD or 304 answer's `Content-Length` is the one a GET would have had: kept.
    let length_kept = framing == Out::None && status != StatusCode::NO_CONTENT && !status.is_informational();
    let mut line = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    let replaced = |name: &[u8]| request_id.is_some() && name.len() == 12 && name.eq_ignore_ascii_case(b"x-request-id");
    // Passed lines come without those of their connection (`h1::parse_head`).
    let own = |name: &[u8]| parts.headers.keys().any(|k| k.as_str().as_bytes().eq_ignore_ascii_case(name));
    for (name, value) in passed.iter() {
        let is = |what: &str| name.eq_ignore_ascii_case(what.as_bytes());
        let length = name.len() == 14 && is("content-length");
        if length && !length_kept || own(name) || replaced(name) {
            continue;
        }
        dated |= name.len() == 4 && is("date");
        lengthed |= length;
        line(name, value);
    }
    for (name, value) in &parts.headers {
        let length = *name == header::CONTENT_LENGTH;
        if length && !length_kept || h1::is_hop_by_hop(name.as_str()) || replaced(name.as_str().as_bytes()) {
            continue;
        }
        dated |= *name == header::DATE;
        lengthed |= length;
        line(name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(id) = request_id {
        line(b"x-request-id", id.as_bytes());
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        date(|now| out.extend_from_slice(now));
        out.extend_from_slice(b"\r\n");
    }
    let stated = match framing {
        Out::Length(n) => Some(n),
        // HEAD: the length the body would have had, unless the handler said it.
        Out::None if asked.head && length_kept && !lengthed => body.size_hint().exact(),
        _ => None,
    };
    if let Some(n) = stated {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing == Out::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if asked.old {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");

    let mut head: &[u8] = out;
    if framing == Out::None {
        h1::write_parts(&mut wire.io, [head]).await?;
        return Ok(!close);
    }
    let mut left = match framing {
        Out::Length(n) => n,
        _ => u64::MAX,
    };
    // The body's first piece if it is ready now, else the head goes alone, at once.
    let mut first = Some(std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await);
    loop {
        let frame = match first.take() {
            Some(Poll::Ready(frame)) => frame,
            Some(Poll::Pending) => {
                h1::write_parts(&mut wire.io, [head]).await?;
                head = b"";
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
            None => std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await,
        };
        let unsent = !head.is_empty();
        let data = match frame {
            None => break,
            Some(Err(error)) => return Err(Unwritten { error, unsent }),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers are not forwarded.
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        if data.len() as u64 > left {
            return Err(Unwritten { error: "the answer's body is longer than its stated length".into(), unsent });
        }
        left -= data.len() as u64;
        if framing == Out::Chunked {
            let mut size = [0u8; 18];
            let line = chunk_line(data.len(), &mut size);
            h1::write_parts(&mut wire.io, [head, line, &data, b"\r\n"]).await?;
        } else {
            h1::write_parts(&mut wire.io, [head, &data]).await?;
        }
        head = b"";
    }
    match framing {
        Out::Length(_) if left != 0 => {
            // Once its head is out, the caller must see it cut short (the connection closes).
            let error = "the answer's body ended before its stated length".into();
            Err(Unwritten { error, unsent: !head.is_empty() })
        }
        Out::Chunked => {
            h1::write_parts(&mut wire.io, [head, b"0\r\n\r\n"]).await?;
            Ok(!close)
        }
        _ => {
            if !head.is_empty() {
                h1::write_parts(&mut wire.io, [head]).await?;
            }
            Ok(!close)
        }
    }
}

/// A chunk's size line (hex digits, CRLF), written into `buf`.
fn chunk_line(len: usize, buf: &mut [u8; 18]) -> &[u8] {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, digit) in buf[..digits].iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    buf[digits] = b'\r';
    buf[digits + 1] = b'\n';
    &buf[..digits + 2]
}

/// Calls `f` with the current time as an HTTP date (RFC 9110 section 5.6.7), formatted once a
/// second per thread.
fn date(f: impl FnOnce(&[u8])) {
    thread_local! {
        static NOW: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now();
    let second = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with_borrow_mut(|(at, text)| {
        if *at != second {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        f(text.as_bytes());
    });
}

/// A request's body, as the handler reads it.
pub struct RequestBody(Kind);

enum Kind {
    Empty,
    /// The whole body came with the head.
    Read(Option<Bytes>),
    /// Read on from the connection, which goes back to it at the body's end or drop.
    Wire(Box<Lent>),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Kind::Empty => Poll::Ready(None),
            Kind::Read(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Wire(lent) => lent.poll_data(cx).map(|read| read.transpose().map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Empty => true,
            Kind::Read(data) => data.is_none(),
            Kind::Wire(lent) => lent.wire.is_none() || lent.framing.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Empty | Kind::Read(None) => SizeHint::with_exact(0),
            Kind::Read(Some(data)) => SizeHint::with_exact(data.len() as u64),
            Kind::Wire(lent) => lent.framing.exact().map_or_else(SizeHint::default, SizeHint::with_exact),
        }
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestBody")
    }
}

/// The connection, lent to a request's body while the handler reads it.
struct Lent {
    wire: Option<Wire>,
    framing: Framing,
    /// How much of `100 Continue` is written, while it is owed.
    continue_at: Option<usize>,
    back: Arc<Back>,
}

impl Lent {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, BoxError>> {
        let Some(wire) = self.wire.as_mut() else { return Poll::Ready(Ok(None)) };
        let read = ready!(poll_body(wire, &mut self.framing, &mut self.continue_at, cx));
        match &read {
            Ok(Some(_)) if !self.framing.is_done() => {}
            Ok(_) => self.give_back(true),
            Err(_) => self.give_back(false),
        }
        Poll::Ready(read)
    }

    fn give_back(&mut self, whole: bool) {
        if let Some(wire) = self.wire.take() {
            self.back.give(wire, whole);
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let whole = self.framing.is_done();
        self.give_back(whole);
    }
}

fn poll_body(
    wire: &mut Wire,
    framing: &mut Framing,
    continue_at: &mut Option<usize>,
    cx: &mut Context<'_>,
) -> Poll<Result<Option<Bytes>, BoxError>> {
    while let Some(at) = *continue_at {
        if at == CONTINUE.len() {
            ready!(Pin::new(&mut wire.io).poll_flush(cx))?;
            *continue_at = None;
            break;
        }
        let n = ready!(Pin::new(&mut wire.io).poll_write(cx, &CONTINUE[at..]))?;
        if n == 0 {
            return Poll::Ready(Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()));
        }
        *continue_at = Some(at + n);
    }
    framing.poll_data(&mut wire.io, &mut wire.buf, cx)
}

/// Where a lent connection comes back to, and whether its body was read whole.
#[derive(Default)]
struct Back(Mutex<Returned>);

#[derive(Default)]
struct Returned {
    wire: Option<(Wire, bool)>,
    waker: Option<Waker>,
}

impl Back {
    fn slot(&self) -> std::sync::MutexGuard<'_, Returned> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn give(&self, wire: Wire, whole: bool) {
        let waker = {
            let mut slot = self.slot();
            slot.wire = Some((wire, whole));
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    async fn returned(&self) -> (Wire, bool) {
        std::future::poll_fn(|cx| {
            let mut slot = self.slot();
            match slot.wire.take() {
                Some(returned) => Poll::Ready(returned),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// What stands in for a connection lent to a body.
struct Closed;

impl AsyncRead for Closed {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Closed {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Err(std::io::ErrorKind::NotConnected.into()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server whose handler answers `/echo` with what it received, `/ignore` without reading
    /// the body, `/stream` with a body of unknown length in two pieces.
    async fn server() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        server_with(Timeouts { drain: Duration::from_secs(1), ..Timeouts::default() }).await
    }

    /// `server` waiting on its callers as long as `timeouts` say.
    async fn server_with(timeouts: Timeouts) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let at = listener.local_addr().expect("address");
        let handler = |req: Request<RequestBody>, _: Peer| async move {
            let (parts, body) = req.into_parts();
            let text = match parts.uri.path() {
                "/ignore" => "ignored".to_owned(),
                "/broken" | "/broken-soap" => {
                    let failing = [Err::<Frame<Bytes>, BoxError>("reset by the upstream".into())];
                    let body = http_body_util::StreamBody::new(futures_util::stream::iter(failing));
                    let mut answer: Answer = Response::new(BodyExt::boxed(body)).into();
                    answer.request_id = Some(http::HeaderValue::from_static("req-7"));
                    if parts.uri.path() == "/broken-soap" {
                        answer.soap = Some(crate::soap::SoapVersion::V11);
                    }
                    return answer;
                }
                "/short" => return Response::new(BodyExt::boxed(Short(Some(Bytes::new())))).into(),
                "/passed" => {
                    let wire = b"HTTP/1.1 200 OK\r\nX-Up: 1\r\nX-Request-Id: upstream\r\nContent-Length: 2\r\n\
                                 Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\nok";
                    let (head, body) = h1::decode_answer(wire, &Method::GET).expect("decodes");
                    let response = Response::new(crate::proxy::full(Bytes::from(body)));
                    let request_id = Some(http::HeaderValue::from_static("ours"));
                    return Answer { response, passed: head.headers, request_id, soap: None };
                }
                "/stream" => {
                    let pieces =
                        [Ok::<_, BoxError>(Frame::data(Bytes::from("hello"))), Ok(Frame::data(Bytes::from(" world")))];
                    let body = http_body_util::StreamBody::new(futures_util::stream::iter(pieces));
                    return Response::new(BodyExt::boxed(body)).into();
                }
                _ => match body.collect().await {
                    Ok(body) => {
                        let body = body.to_bytes();
                        format!("{} {} {} {}", parts.method, parts.uri, body.len(), String::from_utf8_lossy(&body))
                    }
                    Err(e) => format!("unreadable: {e}"),
                },
            };
            Response::new(crate::proxy::full(Bytes::from(text))).into()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        tokio::spawn(super::super::serve(listener, None, handler, shutdown, timeouts));
        (at, stop)
    }

    /// A body that says it is 5 bytes long and ends at once.
    struct Short(Option<Bytes>);

    impl Body for Short {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.get_mut().0.take().map(|d| Ok(Frame::data(d))))
        }
        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(5)
        }
    }

    /// Sends `wire` on a new connection and reads until the server closes it.
    async fn exchange(at: std::net::SocketAddr, wire: &[u8]) -> String {
        let mut conn = tokio::net::TcpStream::connect(at).await.expect("connected");
        conn.write_all(wire).await.expect("sent");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer))
            .await
            .expect("closed in time")
            .expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Reads from `conn` until `answer` holds `until`.
    async fn read_until(conn: &mut tokio::net::TcpStream, answer: &mut Vec<u8>, until: &str) {
        while !String::from_utf8_lossy(answer).contains(until) {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf))
                .await
                .expect("in time")
                .expect("read");
            assert!(n > 0, "closed before {until:?}: {}", String::from_utf8_lossy(answer));
            answer.extend_from_slice(&buf[..n]);
        }
    }

    /// Requests sent together are answered in order on the one connection, and a body in
    /// `Content-Length` or chunked (in pieces, with extensions and trailers) reaches the handler
    /// whole; the connection carries on after each, and closes after the one that asks.
    #[tokio::test]
    async fn pipelined_requests_and_both_body_framings_are_served_in_order() {
        let (at, _stop) = server().await;
        let wire = concat!(
            "GET /echo?a=1 HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n",
            "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let answers = exchange(at, wire.as_bytes()).await;
        let bodies: Vec<&str> =
            answers.split("HTTP/1.1 200 OK\r\n").skip(1).map(|a| a.split("\r\n\r\n").nth(1).unwrap_or("")).collect();
        assert_eq!(
            bodies,
            ["GET /echo?a=1 0 ", "POST /echo 5 hello", "POST /echo 7 abcdefg", "GET /echo 0 "],
            "{answers}"
        );
        assert_eq!(answers.matches("content-length: ").count(), 4, "{answers}");
        assert!(answers.matches("date: ").count() == 4 && answers.ends_with("GET /echo 0 "), "{answers}");
        assert_eq!(answers.matches("connection: close").count(), 1, "only the last closes: {answers}");

        // A body split across writes, the connection kept open between them.
        let mut conn = tokio::net::TcpStream::connect(at).await.expect("connected");
        conn.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
            .await
            .expect("sent");
        let mut answer = Vec::new();
        conn.write_all(b"lo\r\n0\r\n\r\n").await.expect("sent");
        read_until(&mut conn, &mut answer, "POST /echo 5 hello").await;
    }

    /// `Expect: 100-continue`: the interim answer comes when the handler reads the body, and
    /// the caller sends it only then. A handler that answers without reading it sends none,
    /// and the connection closes after its answer (the body's end was never found).
    #[tokio::test]
    async fn expect_continue_is_answered_when_the_body_is_read() {
        let (at, _stop) = server().await;
        let mut conn = tokio::net::TcpStream::connect(at).await.expect("connected");
        conn.write_all(b"PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
            .await
            .expect("sent");
        let mut answer = Vec::new();
        read_until(&mut conn, &mut answer, "HTTP/1.1 100 Continue\r\n\r\n").await;
        conn.write_all(b"data").await.expect("sent");
        read_until(&mut conn, &mut answer, "PUT /echo 4 data").await;

        let ignored =
            exchange(at, b"POST /ignore HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
                .await;
        assert!(!ignored.contains("100 Continue"), "{ignored}");
        assert!(ignored.starts_with("HTTP/1.1 200 OK\r\n") && ignored.contains("connection: close\r\n"), "{ignored}");
        assert!(ignored.ends_with("\r\n\r\nignored"), "{ignored}");
    }

    /// A caller that writes its whole request before reading (as Python's `http.client` does)
    /// gets an answer sent before its body was read, or its head's refusal: the connection is
    /// shut for sending, and what the caller still sends is read and dropped until it closes.
    /// Closed at once with bytes unread, the connection was reset, and the caller's write
    /// failed (broken pipe) instead.
    #[tokio::test]
    async fn an_answer_sent_before_the_body_is_read_reaches_a_caller_still_sending() {
        let (at, _stop) = server().await;
        let body = vec![b'x'; 32 * 1024 * 1024];
        let head = format!("POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
        let answer = sent_whole_then_read(at, &[head.as_bytes(), &body]).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.contains("connection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nignored"), "{answer}");

        // A head refused while the caller is still sending it.
        let head = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n", "y".repeat(32 * 1024 * 1024));
        let answer = sent_whole_then_read(at, &[head.as_bytes()]).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }

    /// Sends `parts` whole on a new connection, then reads until the server closes it; a failure
    /// to send or to read fails the test.
    async fn sent_whole_then_read(at: std::net::SocketAddr, parts: &[&[u8]]) -> String {
        let mut conn = tokio::net::TcpStream::connect(at).await.expect("connected");
        for part in parts {
            let sent = conn.write_all(part).await;
            assert!(sent.is_ok(), "the request could not be sent whole: {sent:?}");
        }
        let mut answer = Vec::new();
        let read = conn.read_to_end(&mut answer).await;
        assert!(read.is_ok(), "the answer could not be read: {read:?}");
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Shutdown ends a lingering close: a caller that keeps sending after its answer does not
    /// hold a stopping server for the rest of the linger (30 s), nor for the drain time.
    #[tokio::test]
    async fn shutdown_ends_a_lingering_close() {
        let (at, stop) = server_with(Timeouts { drain: Duration::from_secs(120), ..Timeouts::default() }).await;
        let mut conn = tokio::net::TcpStream::connect(at).await.expect("connected");
        conn.write_all(b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
            .await
            .expect("head sent");
        let mut answer = Vec::new();
        read_until(&mut conn, &mut answer, "ignored").await;
        conn.write_all(&[b'x'; 1024]).await.expect("taken while the server lingers");
        let _ = stop.send(());
        // Once the server closes the connection, a write is answered with a reset and the next
        // one fails; a server still lingering would take them for up to 30 s.
        let chunk = vec![b'x'; 64 * 1024];
        let closed =
            tokio::time::timeout(Duration::from_secs(20), async { while conn.write_all(&chunk).await.is_ok() {} })
                .await;
        assert!(closed.is_ok(), "the connection was still read 20 s after shutdown began");
    }

    /// An answer of unknown length goes chunked to an HTTP/1.1 caller, and until the close to
    /// an HTTP/1.0 one (which is kept alive only when it asks); HEAD gets the head alone.
    #[tokio::test]
    async fn answers_are_framed_for_the_caller() {
        let (at, _stop) = server().await;
        let chunked = exchange(at, b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(chunked.contains("transfer-encoding: chunked\r\n"), "{chunked}");
        assert!(chunked.ends_with("\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "{chunked}");

        let old = exchange(at, b"GET /stream HTTP/1.0\r\n\r\n").await;
        assert!(old.starts_with("HTTP/1.1 200 OK\r\n") && old.contains("connection: close\r\n"), "{old}");
        assert!(!old.contains("transfer-encoding") && old.ends_with("\r\n\r\nhello world"), "{old}");
        let kept =
            exchange(at, b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /echo HTTP/1.0\r\n\r\n").await;
        assert_eq!(kept.matches("GET /echo 0 ").count(), 2, "{kept}");
        assert!(kept.contains("connection: keep-alive\r\n"), "{kept}");

        let head = exchange(at, b"HEAD /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(
            head.contains("content-length: 13\r\n") && head.ends_with("\r\n\r\n"),
            "the length GET would have: {head}"
        );
    }

    /// Header lines passed through are written as they came, before the answer's own; one the
    /// answer's own headers also name is written from those alone, and the length is the body's.
    #[tokio::test]
    async fn passed_headers_go_out_as_read_unless_the_answer_names_them() {
        let (at, _stop) = server().await;
        let answer = exchange(at, b"GET /passed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        let head = answer.split("\r\n\r\n").next().unwrap_or_default();
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(
            lines,
            [
                "HTTP/1.1 200 OK",
                "X-Up: 1",
                "Date: Tue, 01 Dec 2026 00:00:00 GMT",
                "x-request-id: ours",
                "content-length: 2",
                "connection: close"
            ],
            "{answer}"
        );
        assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    }

    /// An answer whose body fails before any of it went out is replaced by a 502 naming why, a
    /// problem or (for a SOAP request) a fault, with the request's id; never a silent close.
    #[tokio::test]
    async fn an_answer_that_fails_before_it_begins_becomes_a_502() {
        let (at, _stop) = server().await;
        let problem = exchange(at, b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(problem.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{problem}");
        assert!(problem.contains("content-type: application/problem+json\r\n"), "{problem}");
        assert!(problem.contains("x-request-id: req-7\r\n") && problem.contains("connection: close\r\n"), "{problem}");
        assert!(problem.contains("broke off before it began: reset by the upstream"), "{problem}");
        let fault = exchange(at, b"POST /broken-soap HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await;
        assert!(fault.starts_with("HTTP/1.1 500 Internal Server Error\r\n"), "SOAP 1.1 faults are 500: {fault}");
        assert!(fault.contains("soapenv:Server") && fault.contains("upstream_invalid"), "{fault}");
        let short = exchange(at, b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            short.starts_with("HTTP/1.1 502 Bad Gateway\r\n") && short.contains("ended before its stated length"),
            "{short}"
        );
    }

    /// What is not well-formed HTTP/1.1 is answered with a problem naming what was wrong, and
    /// the connection closed: the handler never sees it.
    #[tokio::test]
    async fn malformed_requests_are_refused_with_a_problem() {
        let (at, _stop) = server().await;
        let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(70_000));
        let cases: [(&[u8], &str, &str); 7] = [
            (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", "400 Bad Request", "the request is not HTTP/1.1"),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                "400 Bad Request",
                "both Transfer-Encoding and Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                "501 Not Implemented",
                "the transfer coding 'gzip' is not supported",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello",
                "400 Bad Request",
                "conflicting Content-Length values",
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", "400 Bad Request", "an invalid Content-Length"),
            (
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "400 Bad Request",
                "an HTTP/1.0 request has Transfer-Encoding",
            ),
            (long.as_bytes(), "431 Request Header Fields Too Large", "the request's head is longer than 65536 bytes"),
        ];
        for (wire, status, detail) in cases {
            let answer = exchange(at, wire).await;
            assert!(answer.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{answer}");
            assert!(answer.contains("content-type: application/problem+json\r\n"), "{answer}");
            assert!(answer.contains("connection: close\r\n") && answer.contains(detail), "{detail}: {answer}");
            assert!(!answer.contains("GET /") && !answer.contains("POST /"), "the handler saw it: {answer}");
        }
        // A chunked body that breaks its framing fails the handler's read, not the server.
        let broken = exchange(at, b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").await;
        assert!(broken.contains("unreadable: the body has an invalid chunk size"), "{broken}");
        assert!(broken.contains("connection: close\r\n"), "{broken}");
    }

    /// A caller that keeps its connection waiting is let go: one that sends nothing, on a new
    /// connection or after an answer, is closed at the keep-alive time without a word; one that
    /// stops inside a request's head is refused with 408 at the client time; one that stops
    /// inside a body fails the handler's read, whose answer still goes out before the close.
    #[tokio::test]
    async fn callers_that_keep_a_connection_waiting_are_let_go() {
        let keepalive = Duration::from_millis(300);
        let client = Duration::from_millis(200);
        let (at, _stop) = server_with(Timeouts { keepalive, client, drain: Duration::from_secs(1) }).await;

        let started = std::time::Instant::now();
        assert_eq!(exchange(at, b"").await, "", "nothing sent: closed without a word");
        assert!(started.elapsed() >= keepalive, "closed after {:?}", started.elapsed());

        let started = std::time::Instant::now();
        let answer = exchange(at, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("GET /echo 0 "), "{answer}");
        assert!(!answer.contains("connection: close"), "kept alive: {answer}");
        assert!(started.elapsed() >= keepalive, "closed after {:?}", started.elapsed());

        let started = std::time::Instant::now();
        let answer = exchange(at, b"GET /echo HTTP/1.1\r\nHost: x\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
        assert!(answer.contains("content-type: application/problem+json\r\n"), "{answer}");
        assert!(
            answer.contains("request_timeout") && answer.contains("the request's head did not come whole"),
            "{answer}"
        );
        assert!(!answer.contains("GET /echo"), "the handler saw it: {answer}");
        assert!(started.elapsed() >= client, "refused after {:?}", started.elapsed());

        let answer = exchange(at, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc").await;
        assert!(answer.contains("unreadable: no progress from the caller in 0.2 s"), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
    }
}
