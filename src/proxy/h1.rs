//! The client side of HTTP/1.1 on one upstream connection: a request's head written with its
//! body, an answer's head read and parsed (`httparse`, as hyper does), and its body's framing
//! (RFC 9112 section 6) decoded as the body is read; and which headers belong to one connection
//! rather than to the message (RFC 9110 section 7.6.1), for requests and answers alike. Which
//! connection, and when it goes back to the pool, is `pool`'s business. The body framing, the
//! header map built over the bytes read and the vectored writes serve the server side too
//! (`server::conn`).
//!
//! Why not hyper's client connection: for one cached call it cost as much as everything else the
//! proxy does (a channel and a oneshot per request, a dispatcher task state machine, its own
//! buffers): about 14,000 instructions per request against about 5,000 here (callgrind).

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::BoxError;

/// Longest answer head read (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Most headers in an answer head.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line, and all of a chunked body's trailers together.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;
/// How much room a read asks for.
const READ_SIZE: usize = 16 * 1024;

/// Why an exchange failed, and whether the upstream can have seen the request act.
#[derive(Debug)]
pub struct Failure {
    pub error: BoxError,
    /// Nothing of an answer came before the connection failed or closed.
    pub no_answer: bool,
}

impl Failure {
    fn new(error: impl Into<BoxError>, no_answer: bool) -> Failure {
        Failure { error: error.into(), no_answer }
    }
}

/// A request's head: request line, `headers` (which carry `Host`, and no framing headers of
/// their own), and `Content-Length` when there is a body or the method expects one.
pub fn encode_head<'h>(
    method: &Method,
    target: &PathAndQuery,
    headers: impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
    body_len: usize,
) -> Vec<u8> {
    let mut head = Vec::with_capacity(512 + target.as_str().len());
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_str().as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if body_len > 0 || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        // Into the head itself, without a formatter (`write!` cost ten times as much).
        head.extend_from_slice(b"content-length: ");
        head.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Writes a request's head and its body's pieces (`write_parts`).
pub async fn write_request<W: AsyncWrite + Unpin>(io: &mut W, head: &[u8], body: &[Bytes; 3]) -> std::io::Result<()> {
    write_parts(io, [head, &body[0], &body[1], &body[2]]).await
}

/// Writes `parts` in order, in one system call where the connection takes them whole; after a
/// short write, the rest from where it stopped; then flushes.
pub async fn write_parts<W: AsyncWrite + Unpin, const N: usize>(
    io: &mut W,
    mut parts: [&[u8]; N],
) -> std::io::Result<()> {
    let mut first = 0;
    while let Some(part) = parts.get(first) {
        if part.is_empty() {
            first += 1;
            continue;
        }
        let slices = parts.map(IoSlice::new);
        let mut n = io.write_vectored(&slices[first..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        for part in &mut parts[first..] {
            let done = n.min(part.len());
            *part = &part[done..];
            n -= done;
        }
    }
    io.flush().await
}

/// An answer's head as read, and how its body is framed.
pub struct Head {
    pub status: StatusCode,
    pub headers: Passed,
    pub framing: Framing,
    /// The connection may carry another request once this body is read to its end.
    pub reusable: bool,
}

/// Reads an answer's head from `io` into `buf` (which may already hold some of it), skipping
/// interim (1xx) answers. `buf` keeps whatever follows the head.
pub async fn read_head<R: AsyncRead + Unpin>(io: &mut R, buf: &mut BytesMut, method: &Method) -> Result<Head, Failure> {
    let mut received = false;
    loop {
        if !buf.is_empty() {
            received = true;
            if let Some(head) = parse_head(buf, method).map_err(|e| Failure::new(e, false))? {
                return Ok(head);
            }
            if buf.len() >= MAX_HEAD {
                return Err(Failure::new(format!("the answer's head is longer than {MAX_HEAD} bytes"), false));
            }
        }
        let n = std::future::poll_fn(|cx| poll_fill(io, buf, cx)).await.map_err(|e| Failure::new(e, !received))?;
        if n == 0 {
            let why = if received {
                "the upstream closed the connection inside an answer's head"
            } else {
                "the upstream closed the connection without answering"
            };
            return Err(Failure::new(why, !received));
        }
    }
}

/// Reads more of the connection into `buf`: the number of bytes read, 0 at its end.
pub fn poll_fill<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_SIZE / 4 {
        buf.reserve(READ_SIZE);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// Parses a complete head at the start of `buf` and takes it off; `None` while incomplete. An
/// interim (1xx) answer is taken off and the next head parsed. The headers of the connection
/// (hop-by-hop ones and those `Connection` names) are read for framing and reuse, and left out
/// of `Head::headers`; the others' values share the bytes read (no copy), and what follows the
/// head stays in `buf` where it is.
fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, String> {
    loop {
        // (name start, name end, value start, value end) of each header that crosses, as offsets
        // into the head: its bytes are split off `buf` once the parse's borrow of them ends.
        let mut kept = Vec::new();
        let (len, status, framing, reusable) = {
            let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
            let mut answer = httparse::Response::new(&mut []);
            let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut answer,
                buf,
                &mut slots,
            ) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(format!("the upstream's answer is not HTTP/1.1: {e}")),
            };
            let code = answer.code.unwrap_or_default();
            let status = StatusCode::from_u16(code).map_err(|_| format!("the upstream answered with status {code}"))?;
            if status.is_informational() {
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err("the upstream switched protocols, which is not forwarded".to_owned());
                }
                buf.advance(len);
                continue;
            }
            let raw: &[httparse::Header<'_>] = answer.headers;
            let (framing, framed_to_close) = framing(raw, status, method)?;
            let pairs = || raw.iter().map(|h| (h.name, h.value));
            let (closes, named) = connection_says(pairs());
            let reusable = answer.version == Some(1) && !closes && !framed_to_close;
            kept.extend(raw.iter().filter(|h| crosses(pairs(), named, h.name)).map(|h| span(buf, h)));
            (len, status, framing, reusable)
        };
        let head = buf.split_to(len).freeze();
        let headers = Passed { head, spans: kept };
        return Ok(Some(Head { status, headers, framing, reusable }));
    }
}

/// Where a header's name and value lie in the head it was parsed from: (name start, name end,
/// value start, value end), as offsets.
pub type Span = (u32, u32, u32, u32);

/// The span of `header`, parsed from `head`.
pub fn span(head: &[u8], header: &httparse::Header<'_>) -> Span {
    let at = |part: &[u8]| (part.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize) as u32;
    let (name, value) = (at(header.name.as_bytes()), at(header.value));
    (name, name + header.name.len() as u32, value, value + header.value.len() as u32)
}

/// Header lines as read: names and values stay in the bytes they came in, and are written on as
/// they came (httparse checked them: a name is a token, a value holds no CR or LF). An
/// upstream's answer crosses this way: a map built per answer and taken apart again to write it
/// cost ~2,000 instructions of a cached REST call.
#[derive(Clone, Default)]
pub struct Passed {
    head: Bytes,
    /// On the heap: an answer is moved from layer to layer on its way out, and spans kept inline
    /// made each move a copy of ~300 bytes (callgrind: more than the allocation costs).
    spans: Vec<Span>,
}

impl Passed {
    /// Each header's name and value, in the order they came.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().filter_map(|&(name_start, name_end, value_start, value_end)| {
            let name = self.head.get(name_start as usize..name_end as usize)?;
            Some((name, self.head.get(value_start as usize..value_end as usize)?))
        })
    }

    /// The values of the headers named `name` (in any case).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        self.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, value)| value)
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// The names only: values can carry what logs must not.
impl std::fmt::Debug for Passed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter().map(|(name, _)| String::from_utf8_lossy(name))).finish()
    }
}

/// A header `header_map` could not take.
#[derive(Debug, thiserror::Error)]
pub enum BadHeader {
    #[error("an invalid header name")]
    Name,
    #[error("an invalid value for {0}")]
    Value(HeaderName),
}

/// The headers at `spans` of `head`, in order, as a map whose values share `head`'s bytes (no
/// copy). `room`: how many more it takes without regrowing. For requests (the server), whose
/// headers the proxy looks up by name; answers pass theirs on as read (`Passed`).
pub fn header_map(head: &Bytes, spans: &[Span], room: usize) -> Result<HeaderMap, BadHeader> {
    let mut headers = HeaderMap::with_capacity(spans.len() + room);
    for &(name_start, name_end, value_start, value_end) in spans {
        let (name, value) = (name_start as usize..name_end as usize, value_start as usize..value_end as usize);
        let name = HeaderName::from_bytes(head.get(name).unwrap_or_default()).map_err(|_| BadHeader::Name)?;
        // Within the head by httparse's making; checked all the same (`slice` would panic).
        let Some(value) = (value.end <= head.len()).then(|| head.slice(value)) else {
            return Err(BadHeader::Value(name));
        };
        match HeaderValue::from_maybe_shared(value) {
            Ok(value) => headers.append(name, value),
            Err(_) => return Err(BadHeader::Value(name)),
        };
    }
    Ok(headers)
}

/// Whether a header of this name describes one connection, not the message (RFC 9110 section
/// 7.6.1): such a header is never forwarded, in either direction.
pub fn is_hop_by_hop(name: &str) -> bool {
    let is = |hop: &str| name.eq_ignore_ascii_case(hop);
    match name.len() {
        2 => is("te"),
        7 => is("trailer") || is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        17 => is("transfer-encoding"),
        18 => is("proxy-authenticate"),
        19 => is("proxy-authorization"),
        _ => false,
    }
}

/// Whether the header `name` of a message with `headers` (name and value pairs) crosses to the
/// next hop: neither hop-by-hop nor named in `Connection`. `named`: what `connection_says` said.
pub fn crosses<'h>(headers: impl Iterator<Item = (&'h str, &'h [u8])>, named: bool, name: &str) -> bool {
    !(is_hop_by_hop(name) || named && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
}

/// What a message's `Connection` headers say: whether the connection closes after it, and
/// whether they name a header besides the hop-by-hop ones (`close` and `keep-alive`, the tokens
/// nearly every `Connection` holds, name nothing more): only then is each header looked for
/// among their tokens.
pub fn connection_says<'h>(headers: impl Iterator<Item = (&'h str, &'h [u8])>) -> (bool, bool) {
    let (mut closes, mut named) = (false, false);
    for token in connection_tokens(headers) {
        if token.eq_ignore_ascii_case(b"close") {
            closes = true;
        } else if std::str::from_utf8(token).map_or(true, |t| !is_hop_by_hop(t)) {
            named = true;
        }
    }
    (closes, named)
}

/// The tokens of a message's `Connection` headers.
fn connection_tokens<'h>(headers: impl Iterator<Item = (&'h str, &'h [u8])>) -> impl Iterator<Item = &'h [u8]> {
    headers
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The values of the headers named `name`.
pub fn values<'h>(headers: &'h [httparse::Header<'h>], name: &'static str) -> impl Iterator<Item = &'h [u8]> {
    headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

/// How the body of an answer is delimited (RFC 9112 section 6.3), and whether the connection
/// must close after it (it is delimited by the close, or its framing was ambiguous).
fn framing(headers: &[httparse::Header<'_>], status: StatusCode, method: &Method) -> Result<(Framing, bool), String> {
    if *method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Length(0), false));
    }
    let mut codings = values(headers, "transfer-encoding").peekable();
    if codings.peek().is_some() {
        let last = codings.flat_map(|v| v.split(|b| *b == b',')).last().unwrap_or_default();
        // With Content-Length too, the answer is read as chunked and the connection not reused.
        let ambiguous = values(headers, "content-length").next().is_some();
        return Ok(if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            (Framing::Chunked(Chunked::Size), ambiguous)
        } else {
            (Framing::Close, true)
        });
    }
    let length =
        content_length(values(headers, "content-length")).map_err(|e| format!("the upstream's answer has {e}"))?;
    Ok(match length {
        Some(n) => (Framing::Length(n), false),
        None => (Framing::Close, true),
    })
}

/// The length the `Content-Length` headers with these values state, `None` without one; an
/// error when a value is not a number or they differ.
pub fn content_length<'h>(values: impl Iterator<Item = &'h [u8]>) -> Result<Option<u64>, &'static str> {
    let mut length = None;
    for value in values {
        for part in value.split(|b| *b == b',') {
            let part = part.trim_ascii();
            let n = std::str::from_utf8(part)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or("an invalid Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length values");
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// How a message's body ends, and how far reading it has come (answers here, requests in the
/// server).
#[derive(Debug)]
pub enum Framing {
    /// This many bytes still to come.
    Length(u64),
    Chunked(Chunked),
    /// Until the upstream closes the connection.
    Close,
}

/// Where a chunked body's reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// A chunk-size line comes next.
    Size,
    /// This much of the chunk's data still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines (skipped), this many bytes of them so far, until an empty line.
    Trailers(usize),
    End,
}

impl Framing {
    /// The body's size when known now.
    pub fn exact(&self) -> Option<u64> {
        match self {
            Framing::Length(n) => Some(*n),
            Framing::Chunked(Chunked::End) => Some(0),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Framing::Length(0) | Framing::Chunked(Chunked::End))
    }

    /// The next piece of the body: data, or `None` at its end. Reads `io` into `buf` as needed.
    pub fn poll_data<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, BoxError>> {
        loop {
            match self.step(buf)? {
                Step::Data(data) => return Poll::Ready(Ok(Some(data))),
                Step::End => return Poll::Ready(Ok(None)),
                Step::More => {}
            }
            let n = ready!(poll_fill(io, buf, cx))?;
            if n == 0 {
                return Poll::Ready(match self {
                    Framing::Close => {
                        // Read to the close: this is its end.
                        *self = Framing::Length(0);
                        Ok(None)
                    }
                    _ => Err("the connection closed before the end of the body".into()),
                });
            }
        }
    }

    /// Takes what `buf` holds of the body as far as it goes.
    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, BoxError> {
        loop {
            match self {
                Framing::Length(0) => return Ok(Step::End),
                Framing::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    *left -= n as u64;
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                Framing::Close => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Framing::Chunked(state) => match *state {
                    Chunked::End => return Ok(Step::End),
                    Chunked::Size => {
                        let Some(line) = take_line(buf, MAX_CHUNK_LINE, "chunk size")? else { return Ok(Step::More) };
                        let size = chunk_size(&line)?;
                        *state = if size == 0 { Chunked::Trailers(0) } else { Chunked::Data(size) };
                    }
                    Chunked::Data(left) => {
                        if buf.is_empty() {
                            return Ok(Step::More);
                        }
                        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                        *state = if left == n as u64 { Chunked::DataEnd } else { Chunked::Data(left - n as u64) };
                        return Ok(Step::Data(buf.split_to(n).freeze()));
                    }
                    Chunked::DataEnd => {
                        if buf.len() < 2 {
                            return Ok(Step::More);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err("a chunk of the body does not end with CRLF".into());
                        }
                        buf.advance(2);
                        *state = Chunked::Size;
                    }
                    Chunked::Trailers(seen) => {
                        let room = MAX_TRAILERS.saturating_sub(seen);
                        let Some(line) = take_line(buf, room, "trailers")? else { return Ok(Step::More) };
                        *state = if line.is_empty() { Chunked::End } else { Chunked::Trailers(seen + line.len() + 2) };
                    }
                },
            }
        }
    }
}

/// Reads a whole answer from `wire` as if it had come on a connection that then closed: its
/// head, and its body decoded. For the fuzz target and tests; the proxy reads answers as they
/// arrive (`read_head`, `Framing::poll_data`).
pub fn decode_answer(wire: &[u8], method: &Method) -> Result<(Head, Vec<u8>), String> {
    let mut buf = BytesMut::from(wire);
    let mut head = parse_head(&mut buf, method)?.ok_or("the head is incomplete")?;
    let mut body = Vec::new();
    loop {
        match head.framing.step(&mut buf).map_err(|e| e.to_string())? {
            Step::Data(data) => body.extend_from_slice(&data),
            Step::End => return Ok((head, body)),
            Step::More if matches!(head.framing, Framing::Close) => return Ok((head, body)),
            Step::More => return Err("the connection closed before the end of the answer".to_owned()),
        }
    }
}

enum Step {
    Data(Bytes),
    End,
    More,
}

/// A CRLF-ended line at the start of `buf`, taken off without its CRLF; `None` until complete.
fn take_line(buf: &mut BytesMut, limit: usize, what: &str) -> Result<Option<BytesMut>, BoxError> {
    match memchr::memchr(b'\n', buf) {
        Some(at) if at > 0 && buf[at - 1] == b'\r' => {
            let mut line = buf.split_to(at + 1);
            line.truncate(at - 1);
            Ok(Some(line))
        }
        Some(_) => Err(format!("a line of the body's {what} does not end with CRLF").into()),
        None if buf.len() > limit => Err(format!("the body's {what} is longer than {limit} bytes").into()),
        None => Ok(None),
    }
}

/// A chunk-size line's size (hex digits, then optional extensions, which are ignored).
fn chunk_size(line: &[u8]) -> Result<u64, BoxError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = line[digits..].trim_ascii_start();
    if digits == 0 || digits > 15 || !(rest.is_empty() || rest[0] == b';') {
        return Err("the body has an invalid chunk size".into());
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| "invalid chunk size")?;
    Ok(u64::from_str_radix(text, 16)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` (an answer's body as framed) fed in pieces of `step` bytes.
    fn decode(mut framing: Framing, wire: &[u8], step: usize) -> Result<Vec<u8>, String> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pieces = wire.chunks(step.max(1));
        loop {
            match framing.step(&mut buf).map_err(|e| e.to_string())? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::End => return Ok(out),
                Step::More => match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => return Err("incomplete".to_owned()),
                },
            }
        }
    }

    #[test]
    fn the_head_states_the_body_length() {
        let target = PathAndQuery::from_static("/services/Soap/u/58.0");
        let host = (HeaderName::from_static("host"), HeaderValue::from_static("example.com"));
        for (method, len, expected) in [
            (Method::POST, 0, Some("0")),
            (Method::POST, 7, Some("7")),
            (Method::POST, 10, Some("10")),
            (Method::PUT, 5_229_233, Some("5229233")),
            (Method::GET, 0, None),
            (Method::GET, usize::MAX, Some(usize::MAX.to_string().as_str())),
        ] {
            let head = encode_head(&method, &target, std::iter::once((&host.0, &host.1)), len);
            let text = String::from_utf8(head).expect("ascii");
            let stated = text.lines().find_map(|l| l.strip_prefix("content-length: "));
            assert_eq!(stated, expected, "{method} {len}");
            assert!(
                text.ends_with("\r\n\r\n") && text.starts_with(&format!("{method} /services/Soap/u/58.0 HTTP/1.1\r\n"))
            );
        }
    }

    #[tokio::test]
    async fn request_pieces_are_written_whole_and_in_order_through_short_writes() {
        use tokio::io::AsyncReadExt;
        let body = [Bytes::from_static(b"<a>"), Bytes::new(), Bytes::from_static(b"token</a>")];
        for capacity in [1, 2, 5, 64] {
            // A pipe that takes at most `capacity` bytes at a time, read as it is written.
            let (mut near, mut far) = tokio::io::duplex(capacity);
            let reader = tokio::spawn(async move {
                let mut got = Vec::new();
                far.read_to_end(&mut got).await.map(|_| got)
            });
            write_request(&mut near, b"POST / HTTP/1.1\r\n\r\n", &body).await.expect("written");
            drop(near);
            let got = reader.await.expect("reader").expect("read");
            assert_eq!(got, b"POST / HTTP/1.1\r\n\r\n<a>token</a>", "capacity {capacity}");
        }
    }

    #[test]
    fn chunked_bodies_decode_in_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";
        for step in 1..wire.len() {
            let out = decode(Framing::Chunked(Chunked::Size), wire, step).expect("decodes");
            assert_eq!(out, b"helloabcdefghijklmnopqrstuvwxyz", "split every {step}");
        }
        for bad in [&b"g\r\nx\r\n0\r\n\r\n"[..], b"5\nhello\r\n0\r\n\r\n", b"2\r\nabX\r\n0\r\n\r\n", b"\r\n"] {
            assert!(decode(Framing::Chunked(Chunked::Size), bad, 3).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(decode(Framing::Chunked(Chunked::Size), b"fffffffffffffffff\r\n", 64).is_err(), "size overflow");
    }

    #[test]
    fn lengths_are_read_exactly_and_framing_follows_rfc_9112() {
        assert_eq!(decode(Framing::Length(5), b"hello", 2).expect("decodes"), b"hello");
        let of = |pairs: &[(&'static str, &'static str)], status: u16, method| {
            let head: Vec<httparse::Header<'_>> =
                pairs.iter().map(|(name, value)| httparse::Header { name, value: value.as_bytes() }).collect();
            framing(&head, StatusCode::from_u16(status).expect("status"), &method)
                .map(|(f, close)| (format!("{f:?}"), close))
        };
        assert_eq!(of(&[("content-length", "12")], 200, Method::GET), Ok(("Length(12)".into(), false)));
        assert_eq!(of(&[("content-length", "12, 12")], 200, Method::GET), Ok(("Length(12)".into(), false)));
        assert!(of(&[("content-length", "12"), ("content-length", "13")], 200, Method::GET).is_err());
        assert!(of(&[("content-length", "-1")], 200, Method::GET).is_err());
        assert!(of(&[("content-length", "+1")], 200, Method::GET).is_err());
        assert_eq!(
            of(&[("transfer-encoding", "gzip, Chunked")], 200, Method::GET),
            Ok(("Chunked(Size)".into(), false))
        );
        assert_eq!(
            of(&[("transfer-encoding", "chunked"), ("content-length", "3")], 200, Method::GET),
            Ok(("Chunked(Size)".into(), true))
        );
        assert_eq!(of(&[("transfer-encoding", "gzip")], 200, Method::GET), Ok(("Close".into(), true)));
        assert_eq!(of(&[], 200, Method::GET), Ok(("Close".into(), true)));
        assert_eq!(of(&[("content-length", "12")], 200, Method::HEAD), Ok(("Length(0)".into(), false)));
        assert_eq!(of(&[], 204, Method::GET), Ok(("Length(0)".into(), false)));
        assert_eq!(of(&[("content-length", "5")], 304, Method::GET), Ok(("Length(0)".into(), false)));
    }

    #[test]
    fn heads_parse_skip_interim_answers_and_keep_what_follows() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nokHTTP"[..],
        );
        let head = parse_head(&mut buf, &Method::POST).expect("parses").expect("complete");
        assert_eq!(head.status, StatusCode::CREATED);
        assert_eq!(head.headers.get_all("x-a").collect::<Vec<_>>(), [b"1", b"2"]);
        assert!(head.reusable);
        assert_eq!(&buf[..], b"okHTTP");
        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
        assert!(parse_head(&mut partial, &Method::GET).expect("so far fine").is_none());
        let mut closing = BytesMut::from(&b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"[..]);
        assert!(!parse_head(&mut closing, &Method::GET).expect("parses").expect("complete").reusable);
        let mut old = BytesMut::from(&b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"[..]);
        assert!(!parse_head(&mut old, &Method::GET).expect("parses").expect("complete").reusable);
        for bad in [
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            b"HTTP/1.1 101 Switching\r\n\r\n",
            b"SMTP ready\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(parse_head(&mut buf, &Method::GET).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn an_answer_loses_the_headers_of_its_connection_only() {
        let answer = |headers: &str| {
            let wire = format!("HTTP/1.1 200 OK\r\n{headers}content-length: 0\r\n\r\n");
            let head =
                parse_head(&mut BytesMut::from(wire.as_bytes()), &Method::GET).expect("parses").expect("complete");
            let mut names: Vec<String> =
                head.headers.iter().map(|(name, _)| String::from_utf8_lossy(name).to_lowercase()).collect();
            names.sort_unstable();
            (names.join(" "), head.reusable)
        };
        // The usual answer: `Connection: keep-alive` (and its `Keep-Alive`) name nothing more.
        let usual = answer("Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Type: text/xml\r\n");
        assert_eq!(usual, ("content-length content-type".to_owned(), true));
        // Headers `Connection` names go too, in any case and spacing; others stay.
        let named = answer(
            "connection: Close\r\nConnection:  X-Hop ,upgrade\r\nx-hop: 1\r\nUpgrade: h2c\r\nx-other: 2\r\n\
             Proxy-Authenticate: Basic\r\nTE: trailers\r\nTrailer: x\r\n",
        );
        assert_eq!(named, ("content-length x-other".to_owned(), false));
        assert_eq!(answer("x-only: 1\r\n").0, "content-length x-only");
        assert!(is_hop_by_hop("Proxy-Authorization") && is_hop_by_hop("transfer-encoding"));
        assert!(!is_hop_by_hop("x-connection") && !is_hop_by_hop("tee"));
    }

    #[test]
    fn whole_answers_decode_or_say_why_not() {
        let (head, body) =
            decode_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", &Method::GET)
                .expect("decodes");
        assert_eq!((head.status, body.as_slice()), (StatusCode::OK, &b"abc"[..]));
        let (_, body) = decode_answer(b"HTTP/1.1 200 OK\r\n\r\nto the close", &Method::GET).expect("decodes");
        assert_eq!(body, b"to the close");
        assert!(decode_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort", &Method::GET).is_err());
        assert!(decode_answer(b"HTTP/1.1 200 OK\r\n", &Method::GET).is_err());
    }

    #[test]
    fn request_heads_carry_a_length_when_there_is_a_body_or_one_is_expected() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static("example.com"));
        let target = PathAndQuery::from_static("/a?b=c");
        let get = encode_head(&Method::GET, &target, headers.iter(), 0);
        assert_eq!(get, b"GET /a?b=c HTTP/1.1\r\nhost: example.com\r\n\r\n");
        let post = encode_head(&Method::POST, &target, headers.iter(), 0);
        assert!(post.ends_with(b"content-length: 0\r\n\r\n"));
        let put = encode_head(&Method::PUT, &target, headers.iter(), 12);
        assert!(put.ends_with(b"content-length: 12\r\n\r\n"));
    }
}
