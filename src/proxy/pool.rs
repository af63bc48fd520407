//! Upstream connections: HTTP/1.1 over TCP or TLS, kept per origin between requests and driven
//! by the request that uses them. What is sent and how answers are shaped lives in `forward`.
//!
//! Why not hyper-util's pooled client: it runs every connection as a task of its own, so each
//! request crosses a channel to that task and back, and checks a connection out of a shared pool
//! through futures, a hash of the origin and an extension map per response. Here the request's
//! own task writes the request and reads the answer (hyper's connection state machine, polled in
//! place), and the answer's body keeps polling it until the last byte, then puts the connection
//! back. A pooled connection is not polled while idle: one the upstream closed meanwhile is found
//! closed when next used, before the request is written, and the request goes on a new one.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustc_hash::FxHashMap;
use tokio::net::TcpStream;
use tower_service::Service;

use super::BoxError;

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;
/// hyper's HTTP/1.1 state machine for one connection.
type Driver = Pin<Box<Connection<Io, Full<Bytes>>>>;

/// Idle connections kept per origin at most; more are closed when they come back.
const MAX_IDLE_PER_ORIGIN: usize = 512;
/// A connection idle longer than this is closed instead of used.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Where a connection goes: scheme (TLS or not) and authority; and which thread uses it. Each
/// serving thread runs a runtime of its own, and a connection is registered with the runtime
/// that opened it: used from another thread, every wake-up would cross threads.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    tls: bool,
    authority: Authority,
    thread: u32,
}

/// A number for the calling thread, for `Key::thread`.
fn thread_number() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    thread_local! {
        static NUMBER: u32 = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    NUMBER.with(|n| *n)
}

/// One HTTP/1.1 connection: the handle requests are sent through and the state machine that
/// does the I/O, polled by whoever holds the connection.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// The state machine; gone once the connection has ended. Dropping it is what fails a
    /// request still queued for it (with the request given back) and a body still expected
    /// from it: an ended state machine kept would leave both waiting forever.
    driver: Option<Driver>,
    idle_since: Instant,
}

impl Conn {
    /// Polls the state machine once; false once the connection has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(driver) = self.driver.as_mut()
            && driver.as_mut().poll(cx).is_ready()
        {
            self.driver = None;
        }
        self.driver.is_some()
    }
}

type Idle = Mutex<FxHashMap<Key, VecDeque<Conn>>>;

/// The upstream connections of one config generation.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    idle: Arc<Idle>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    pub fn new(connector: HttpsConnector<HttpConnector>) -> Pool {
        Pool { connector, idle: Arc::new(Mutex::new(FxHashMap::default())) }
    }

    /// Sends `request` (origin-form URI, `Host` set) to `scheme://authority` and waits for the
    /// answer's head; the body streams as the caller reads it. A request that a reused
    /// connection could not take (found closed before writing) goes again on a new one. An error
    /// says why no answer head came: connecting failed, or the connection failed before it.
    pub async fn send(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        let key = Key { tls: *scheme == Scheme::HTTPS, authority: authority.clone(), thread: thread_number() };
        loop {
            let (mut conn, reused) = match self.checkout(&key) {
                Some(conn) => (conn, true),
                None => (self.connect(scheme, authority).await?, false),
            };
            let mut answer = std::pin::pin!(conn.sender.try_send_request(request));
            let result = std::future::poll_fn(|cx| {
                // The state machine first (it writes the request and reads the answer), then
                // the answer it hands over; an ended connection fails the answer too.
                conn.drive(cx);
                answer.as_mut().poll(cx)
            })
            .await;
            match result {
                Ok(response) => {
                    let (parts, incoming) = response.into_parts();
                    let body = UpstreamBody { incoming, conn: Some(conn), done: false, idle: self.idle.clone(), key };
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut e) => match e.take_message() {
                    // Not written: the pooled connection had been closed by the upstream.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(Box::new(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection to `key` that is still open and not too old.
    fn checkout(&self, key: &Key) -> Option<Conn> {
        let mut idle = lock(&self.idle);
        let conns = idle.get_mut(key)?;
        while let Some(conn) = conns.pop_back() {
            if conn.driver.is_some() && !conn.sender.is_closed() && conn.idle_since.elapsed() < IDLE_TIMEOUT {
                return Some(conn);
            }
        }
        None
    }

    async fn connect(&self, scheme: &Scheme, authority: &Authority) -> Result<Conn, BoxError> {
        let uri = Uri::builder().scheme(scheme.clone()).authority(authority.clone()).path_and_query("/").build()?;
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        let io = connector.call(uri).await?;
        let (sender, driver) = hyper::client::conn::http1::Builder::new().handshake(io).await?;
        Ok(Conn { sender, driver: Some(Box::pin(driver)), idle_since: Instant::now() })
    }
}

fn lock(idle: &Idle) -> std::sync::MutexGuard<'_, FxHashMap<Key, VecDeque<Conn>>> {
    // Every critical section is one map or deque call: the map stays consistent after a panic.
    idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An upstream answer's body. Reading it drives the connection it arrives on; once read to the
/// end, the connection goes back to the pool (dropped unread, it is closed).
pub struct UpstreamBody {
    incoming: Incoming,
    conn: Option<Conn>,
    done: bool,
    idle: Arc<Idle>,
    key: Key,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(conn) = this.conn.as_mut() {
            conn.drive(cx);
        }
        let frame = std::task::ready!(Pin::new(&mut this.incoming).poll_frame(cx));
        if frame.is_none() {
            this.done = true;
        }
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        if !(self.done || self.incoming.is_end_stream()) {
            return;
        }
        // Let the state machine finish the message and wait for the next request; it is
        // polled with a real waker again by the request that takes it.
        if !conn.drive(&mut Context::from_waker(Waker::noop())) || conn.sender.is_closed() {
            return;
        }
        conn.idle_since = Instant::now();
        let mut idle = lock(&self.idle);
        let conns = idle.entry(self.key.clone()).or_default();
        while conns.front().is_some_and(|c| c.idle_since.elapsed() >= IDLE_TIMEOUT)
            || conns.len() >= MAX_IDLE_PER_ORIGIN
        {
            conns.pop_front();
        }
        conns.push_back(conn);
    }
}
