//! Upstream connections: HTTP/1.1 over TCP or TLS, kept per origin and serving thread between
//! requests. A request's own task writes it and reads the answer's head (`h1`); the answer's body
//! reads on from the same connection and, once read to its end, puts the connection back. A
//! pooled connection is not read while idle: one the upstream closed meanwhile is found closed
//! when taken (a read that would not wait finds its end), and a new one is used instead. One
//! idle past `IDLE_TIMEOUT` is closed, by `reap` (called every 15 s) if
//! not when it is next looked at. Each connection keeps one timer for the deadline of the answer
//! it waits for, moved on from request to request; the idle connections are kept in a shard per
//! serving thread (a thread of the work-stealing runtime finding none in its own looks in the
//! others').
//!
//! Why not hyper-util's pooled client (a task per connection, a channel hop per request, a shared
//! pool behind futures) or hyper's client connection (see `h1`): measured, each cost more than
//! the rest of a cached call.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::uri::{Authority, Scheme};
use http::{Method, Response, Uri};
use hyper::body::{Body, Frame, SizeHint};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustc_hash::FxBuildHasher;
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tower_service::Service;

use super::BoxError;
use super::h1::{self, Framing};
use crate::sharded::thread_number;

type Io = TokioIo<MaybeHttpsStream<TokioIo<TcpStream>>>;

/// Idle connections kept per origin at most; more are closed when they come back.
const MAX_IDLE_PER_ORIGIN: usize = 512;
/// A connection idle longer than this is closed instead of used, and closed by `reap` if
/// nobody comes for it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Where a connection goes: scheme (TLS or not) and authority; and which threads may use it
/// (`owner`). A connection is registered with the runtime that opened it: a thread that runs a
/// runtime of its own uses only the connections it opened (used from another thread, every
/// wake-up would cross threads); the threads of the work-stealing runtime use any of theirs.
/// Each connection holds its own (its authority copied when it was opened); a request looks
/// connections up by a lent `KeyRef`. The request's authority belongs to a config or a token
/// that every serving thread reads: cloned into a key per request, its reference count went
/// from core to core.
#[derive(Clone)]
struct Key {
    tls: bool,
    authority: Authority,
    thread: u32,
}

/// A `Key` lent for a look-up. `Key` compares and hashes as its `KeyRef`, so the two agree.
/// Authorities compared and hashed as the bytes they are (upstream bases are written lowercase
/// by the URL parser): `Authority`'s own case-folding comparison and byte-by-byte hash cost more
/// than the rest of a checkout.
#[derive(PartialEq, Eq, Hash)]
struct KeyRef<'a> {
    authority: &'a str,
    tls: bool,
    thread: u32,
}

impl Key {
    fn lent(&self) -> KeyRef<'_> {
        KeyRef { authority: self.authority.as_str(), tls: self.tls, thread: self.thread }
    }
}

impl hashbrown::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self == key.lent()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.lent() == other.lent()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.lent().hash(state);
    }
}

/// One HTTP/1.1 connection and what has been read from it and not yet used. Kept boxed: with a
/// TLS session inside it is over a kilobyte, and a connection changes hands several times per
/// request (pool, exchange, answer body, pool again), each a copy unless boxed.
struct Conn {
    io: Io,
    /// Where it goes and which thread it serves: its place in the pool.
    key: Key,
    buf: BytesMut,
    idle_since: Instant,
    /// The deadline for the answer to the request the connection carries: one timer for the
    /// connection's life, moved on for each request. A later deadline is an atomic update of
    /// the registered timer (tokio extends it in place), where a timer per request was
    /// registered in the runtime's wheel and taken out again under its lock (~0.4 k
    /// instructions per request). While the connection is idle the timer still holds the waker
    /// of the last request's task, until its deadline passes (a wake-up with nothing to do) or
    /// the next request sets it.
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Conn {
    /// Whether a pooled connection can take a request: open, nothing unasked-for waiting on it,
    /// not idle too long. Reads without waiting (the socket is not read otherwise while idle).
    fn usable(&mut self, now: Instant) -> bool {
        if self.idle_too_long(now) || !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut read = tokio::io::ReadBuf::new(&mut probe);
        // Pending: open and quiet. Read: closed (0 bytes), or bytes nobody asked for.
        matches!(Pin::new(&mut self.io).poll_read(&mut Context::from_waker(Waker::noop()), &mut read), Poll::Pending)
    }

    /// Idle for `IDLE_TIMEOUT` or longer as of `now`: to be closed, not used.
    fn idle_too_long(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.idle_since) >= IDLE_TIMEOUT
    }
}

type Idle = Mutex<hashbrown::HashMap<Key, VecDeque<Box<Conn>>, FxBuildHasher>>;

/// One shard of a pool's idle connections, on a cache line of its own.
#[repr(align(128))]
struct Shard(Idle);

/// Shards of a pool: a serving thread uses the one its number picks, so that workers share no
/// lock and no reference count on the request path (two workers on one shared pool took turns
/// at its lock and its `Arc`'s count twice per request, each turn moving the cache line between
/// cores). More threads than shards share them, correctly.
const SHARDS: usize = 16;

/// The upstream connections of one config generation.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    shards: Box<[Arc<Shard>]>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

/// What `send` sends: the request's head as written (`h1::encode_head`), its method (for
/// whether it may go again, and how its answer is framed), and its body.
pub struct Outgoing<'a> {
    pub method: &'a Method,
    pub head: &'a [u8],
    /// Its pieces, written in order.
    pub body: &'a [Bytes; 3],
}

impl Pool {
    pub fn new(connector: HttpsConnector<HttpConnector>) -> Pool {
        let shards = (0..SHARDS).map(|_| Arc::new(Shard(Mutex::new(hashbrown::HashMap::default())))).collect();
        Pool { connector, shards }
    }

    /// A thread's shard (`thread`: its `thread_number`).
    fn shard(&self, thread: u32) -> &Arc<Shard> {
        &self.shards[thread as usize % self.shards.len()]
    }

    /// Sends a request to `scheme://authority` and waits for the answer's head (its status in the
    /// response, its headers as read beside it); the body streams
    /// as the caller reads it. On a reused connection that fails before any answer (the upstream
    /// closed it just as it was taken), a request that may be repeated (RFC 9110 section 9.2.2)
    /// goes again on a new connection; any other is failed, not sent twice. An error says why no
    /// answer head came.
    ///
    /// `now`: the clock as the caller just read it, for the pooled connections' idle time (a
    /// connection's idle time counts from the request it last carried was sent, which errs
    /// toward closing it sooner). The answer's head must come by `now + timeout` (connecting
    /// included), or the error is `TimedOut`.
    pub async fn send(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        request: Outgoing<'_>,
        now: Instant,
        timeout: Duration,
    ) -> Result<(Response<UpstreamBody>, h1::Passed), BoxError> {
        let key = KeyRef { tls: *scheme == Scheme::HTTPS, authority: authority.as_str(), thread: owner() };
        let here = thread_number();
        let deadline = tokio::time::Instant::from_std(now) + timeout;
        loop {
            let (mut conn, reused) = match self.checkout(&key, here, now) {
                Some(conn) => (conn, true),
                // Boxed: connecting is the rare path, and its future (the connector's, TLS and a
                // timer) would otherwise be part of every request's (see `App::handle`).
                None => {
                    match Box::pin(tokio::time::timeout_at(deadline, self.connect(scheme, authority, deadline))).await {
                        Ok(conn) => (conn?, false),
                        Err(_) => return Err(TimedOut.into()),
                    }
                }
            };
            let answer = {
                let Conn { io, buf, deadline: timer, .. } = &mut *conn;
                timer.as_mut().reset(deadline);
                let exchange = async {
                    h1::write_request(io, request.head, request.body)
                        .await
                        .map_err(|e| h1::Failure { error: e.into(), no_answer: true })?;
                    h1::read_head(io, buf, request.method).await
                };
                let mut exchange = std::pin::pin!(exchange);
                // The exchange first, as `tokio::time::timeout` does: an answer already there wins.
                std::future::poll_fn(|cx| match exchange.as_mut().poll(cx) {
                    Poll::Ready(answer) => Poll::Ready(Some(answer)),
                    Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
                })
                .await
            };
            let Some(answer) = answer else { return Err(TimedOut.into()) };
            match answer {
                Ok(head) => {
                    let mut response = Response::new(UpstreamBody {
                        conn: Some(conn),
                        framing: head.framing,
                        reusable: head.reusable,
                        idle: Arc::clone(self.shard(here)),
                        sent: now,
                    });
                    *response.status_mut() = head.status;
                    return Ok((response, head.headers));
                }
                Err(failure) if reused && failure.no_answer && request.method.is_idempotent() => {}
                Err(failure) => return Err(failure.error),
            }
        }
    }

    /// Closes the connections that have been idle for `IDLE_TIMEOUT` as of `now` (called every
    /// so often): after a burst, those nobody takes again would otherwise stay open, or
    /// half-closed by the upstream, until the next request to their origin. Returns how many it
    /// closed.
    pub fn reap(&self, now: Instant) -> usize {
        let mut closing = Vec::new();
        for shard in &self.shards {
            lock(&shard.0).retain(|_, conns| {
                // Oldest first: connections come back at the end.
                while conns.front().is_some_and(|c| c.idle_too_long(now)) {
                    closing.extend(conns.pop_front());
                }
                !conns.is_empty()
            });
        }
        // Closed here, with the pool unlocked.
        closing.len()
    }

    /// The most recently used idle connection to `key` that is still open and not too old: from
    /// the calling thread's shard (`here`: its `thread_number`), or (a thread of the
    /// work-stealing runtime finding none there) from another's. Each candidate is checked (a
    /// read) with the pool unlocked.
    fn checkout(&self, key: &KeyRef<'_>, here: u32, now: Instant) -> Option<Box<Conn>> {
        let shards = if key.thread == SHARED { self.shards.len() as u32 } else { 1 };
        (0..shards).find_map(|i| {
            let shard = self.shard(here.wrapping_add(i));
            loop {
                let mut conn = lock(&shard.0).get_mut(key)?.pop_back()?;
                if conn.usable(now) {
                    return Some(conn);
                }
            }
        })
    }

    /// A new connection, its timer set to `deadline`.
    async fn connect(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        deadline: tokio::time::Instant,
    ) -> Result<Box<Conn>, BoxError> {
        let uri = Uri::builder().scheme(scheme.clone()).authority(authority.clone()).path_and_query("/").build()?;
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        let io = connector.call(uri).await?;
        // Its own copy of the authority (see `Key`).
        let own = Authority::from_maybe_shared(Bytes::copy_from_slice(authority.as_str().as_bytes()))?;
        Ok(Box::new(Conn {
            io: TokioIo::new(io),
            key: Key { tls: *scheme == Scheme::HTTPS, authority: own, thread: owner() },
            buf: BytesMut::with_capacity(8 * 1024),
            idle_since: Instant::now(),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }))
    }
}

/// No answer's head came from the upstream within the request's timeout.
#[derive(Debug)]
pub struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no answer within the upstream timeout")
    }
}

impl std::error::Error for TimedOut {}

/// The `Key::thread` of the connections the threads of the work-stealing runtime open and use.
const SHARED: u32 = u32::MAX;

thread_local! {
    static ON_SHARED_RUNTIME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Says that the calling thread is one of the work-stealing runtime's (called as each starts):
/// it opens connections every thread of that runtime may use, and uses theirs.
pub fn on_shared_runtime() {
    ON_SHARED_RUNTIME.with(|shared| shared.set(true));
}

/// The `Key::thread` of the connections the calling thread opens and may use.
fn owner() -> u32 {
    if ON_SHARED_RUNTIME.with(std::cell::Cell::get) { SHARED } else { thread_number() }
}

fn lock(idle: &Idle) -> std::sync::MutexGuard<'_, hashbrown::HashMap<Key, VecDeque<Box<Conn>>, FxBuildHasher>> {
    // Every critical section is one map or deque call: the map stays consistent after a panic.
    idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An upstream answer's body, read from its connection as the caller asks for it; once read to
/// the end, the connection goes back to the pool (dropped before, it is closed).
pub struct UpstreamBody {
    conn: Option<Box<Conn>>,
    framing: Framing,
    reusable: bool,
    idle: Arc<Shard>,
    /// When the request went out: the connection's idle time counts from here.
    sent: Instant,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
        match std::task::ready!(this.framing.poll_data(&mut conn.io, &mut conn.buf, cx)) {
            Ok(Some(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Ok(None) => {
                this.give_back();
                Poll::Ready(None)
            }
            Err(e) => {
                // The connection is in an unknown state: closed.
                this.conn = None;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.framing.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.framing.exact().map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

impl UpstreamBody {
    /// The body has been read to its end: its connection goes back to the pool if it can carry
    /// another request.
    fn give_back(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        if !self.reusable || !self.framing.is_done() || !conn.buf.is_empty() {
            return;
        }
        let now = self.sent;
        conn.idle_since = now;
        let mut idle = lock(&self.idle.0);
        // The key cloned only for the first connection of its origin.
        let conns = match idle.get_mut(&conn.key) {
            Some(conns) => conns,
            None => idle.entry(conn.key.clone()).or_default(),
        };
        while conns.front().is_some_and(|c| c.idle_too_long(now)) || conns.len() >= MAX_IDLE_PER_ORIGIN {
            conns.pop_front();
        }
        conns.push_back(conn);
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // An answer without a body (or whose end came with its last data) is done unread.
        if self.framing.is_done() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream taking one connection: answers its first `answers` requests (`GET`s), then
    /// reads the next and says nothing, holding the connection open.
    async fn upstream(answers: usize) -> Authority {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let authority = listener.local_addr().expect("addr").to_string().parse().expect("authority");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            // One connection only: a request on another would be refused, not timed out.
            drop(listener);
            let mut seen = Vec::new();
            for n in 0..=answers {
                while seen.windows(4).filter(|w| w == b"\r\n\r\n").count() <= n {
                    let mut chunk = [0u8; 1024];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => seen.extend_from_slice(&chunk[..k]),
                    }
                }
                if n < answers {
                    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.expect("answer");
                }
            }
            std::future::pending::<()>().await;
        });
        authority
    }

    /// A `GET /` through `pool` with `timeout`; its body read to the end (the connection back in
    /// the pool), or the error.
    async fn get(pool: &Pool, authority: &Authority, timeout: Duration) -> Result<Bytes, BoxError> {
        let body = [Bytes::new(), Bytes::new(), Bytes::new()];
        let request = Outgoing { method: &Method::GET, head: b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", body: &body };
        let (response, _) = pool.send(&Scheme::HTTP, authority, request, Instant::now(), timeout).await?;
        Ok(response.into_body().collect().await?.to_bytes())
    }

    /// The answer's deadline holds on a new connection, on a pooled one whose timer is moved on
    /// to a later deadline, and on one whose timer fired while it was idle.
    #[tokio::test]
    async fn no_answer_by_the_deadline_is_timed_out_on_new_and_pooled_connections() {
        let timed_out = |result: Result<Bytes, BoxError>, started: Instant, at: Duration| {
            let err = result.expect_err("no answer");
            assert!(err.is::<TimedOut>(), "{err}");
            assert!(started.elapsed() >= at, "timed out after {:?}, before {at:?}", started.elapsed());
        };
        let pool = super::super::forward::client(Duration::from_secs(5), &[]).expect("pool");
        let guard = |f| tokio::time::timeout(Duration::from_secs(10), f);

        // A new connection that never answers.
        let silent = upstream(0).await;
        let started = Instant::now();
        let result = guard(get(&pool, &silent, Duration::from_millis(200))).await.expect("the deadline fired");
        timed_out(result, started, Duration::from_millis(200));

        // A pooled connection, its timer moved on to a later deadline (in place).
        let two = upstream(1).await;
        assert_eq!(&get(&pool, &two, Duration::from_millis(300)).await.expect("answered")[..], b"ok");
        let started = Instant::now();
        let result = guard(get(&pool, &two, Duration::from_millis(500))).await.expect("the deadline fired");
        timed_out(result, started, Duration::from_millis(500));

        // A pooled connection whose timer fired while it was idle: set again.
        let late = upstream(1).await;
        assert_eq!(&get(&pool, &late, Duration::from_millis(50)).await.expect("answered")[..], b"ok");
        // What is tested: the first deadline passing while the connection is idle in the pool.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let started = Instant::now();
        let result = guard(get(&pool, &late, Duration::from_millis(200))).await.expect("the deadline fired");
        timed_out(result, started, Duration::from_millis(200));
    }

    #[tokio::test]
    async fn connections_idle_too_long_are_closed_by_reap() {
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let authority: Authority = upstream.local_addr().expect("addr").to_string().parse().expect("authority");
        let pool = super::super::forward::client(Duration::from_secs(5), &[]).expect("pool");
        let far = tokio::time::Instant::now() + Duration::from_secs(60);
        let conn = pool.connect(&Scheme::HTTP, &authority, far).await.expect("connect");
        let (mut far_end, _) = upstream.accept().await.expect("accept");
        // Back in the pool, as after an answer read to its end.
        let key = conn.key.clone();
        assert_eq!(key.authority, authority);
        lock(&pool.shard(key.thread).0).entry(key.clone()).or_default().push_back(conn);
        let now = Instant::now();
        assert_eq!(pool.reap(now), 0, "not idle long enough yet");
        assert!(lock(&pool.shard(key.thread).0).get(&key).is_some_and(|c| c.len() == 1));
        assert_eq!(pool.reap(now + IDLE_TIMEOUT), 1);
        assert!(lock(&pool.shard(key.thread).0).get(&key).is_none(), "emptied origins are forgotten");
        // The upstream sees it closed.
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), far_end.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0))), "{read:?}");
    }

    /// A connection one thread of the work-stealing runtime opened is taken by another thread of
    /// it (one reactor serves them all); a thread with a runtime of its own takes only its own.
    #[test]
    fn threads_of_the_stealing_runtime_share_their_connections() {
        let upstream = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let authority: Authority = upstream.local_addr().expect("addr").to_string().parse().expect("authority");
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        let pool = Arc::new(super::super::forward::client(Duration::from_secs(5), &[]).expect("pool"));
        let on_thread = |shared: bool, open: bool| {
            let (pool, authority, handle) = (Arc::clone(&pool), authority.clone(), runtime.handle().clone());
            std::thread::spawn(move || {
                if shared {
                    on_shared_runtime();
                }
                handle.block_on(async {
                    if open {
                        let far = tokio::time::Instant::now() + Duration::from_secs(60);
                        let conn = pool.connect(&Scheme::HTTP, &authority, far).await.expect("connect");
                        lock(&pool.shard(thread_number()).0).entry(conn.key.clone()).or_default().push_back(conn);
                        return true;
                    }
                    let key = KeyRef { authority: authority.as_str(), tls: false, thread: owner() };
                    let taken = pool.checkout(&key, thread_number(), Instant::now());
                    let found = taken.is_some();
                    if let Some(conn) = taken {
                        lock(&pool.shard(thread_number()).0).entry(conn.key.clone()).or_default().push_back(conn);
                    }
                    found
                })
            })
            .join()
            .expect("thread")
        };
        assert!(on_thread(true, true), "opened");
        assert!(!on_thread(false, false), "a thread with a runtime of its own does not take it");
        assert!(on_thread(true, false), "another thread of the stealing runtime takes it");
        assert!(on_thread(true, false), "and another, from the shard the last put it back in");
    }

    /// One reaper closes every thread's idle connections (the workers of a stealing runtime have
    /// no thread of their own to reap from).
    #[test]
    fn reap_closes_connections_another_thread_made() {
        let upstream = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let authority: Authority = upstream.local_addr().expect("addr").to_string().parse().expect("authority");
        let pool = Arc::new(super::super::forward::client(Duration::from_secs(5), &[]).expect("pool"));
        // Made and put back on a thread of its own, with a runtime of its own.
        let made = {
            let (pool, authority) = (Arc::clone(&pool), authority.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(async {
                    let far = tokio::time::Instant::now() + Duration::from_secs(60);
                    let conn = pool.connect(&Scheme::HTTP, &authority, far).await.expect("connect");
                    let key = conn.key.clone();
                    lock(&pool.shard(key.thread).0).entry(key.clone()).or_default().push_back(conn);
                    key.thread
                })
            })
            .join()
            .expect("thread")
        };
        assert_ne!(made, thread_number(), "made on another thread");
        let (mut far_end, _) = upstream.accept().expect("accept");
        assert_eq!(pool.reap(Instant::now() + IDLE_TIMEOUT), 1, "reaped from this thread");
        far_end.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut byte = [0u8; 1];
        assert!(matches!(std::io::Read::read(&mut far_end, &mut byte), Ok(0)), "the upstream sees it closed");
    }
}
