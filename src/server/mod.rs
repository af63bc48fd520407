//! Accepting connections: an HTTP/1.1 server over a bound listener (or over the connections
//! `dispatch` shares out among the proxy's workers), in plain TCP or TLS, that hands each request
//! to a handler and, when `shutdown` resolves, stops accepting and lets open requests finish. The
//! proxy and the loopback peers (demo, tests) all serve through here. HTTP/1.1 on each connection
//! is `conn`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_rustls::TlsAcceptor;

use crate::proxy::ProxyBody;

mod conn;
mod guard;

pub use conn::{RequestBody, read_request};
pub use guard::Timeouts;

/// What a handler answers: a response, and header lines passed on as they were read (an
/// upstream answer's, without those of its connection: `proxy::h1::Passed`). Those are written
/// first, except any the response's own headers also name, which are written from those alone.
#[derive(Debug)]
pub struct Answer {
    pub response: Response<ProxyBody>,
    pub passed: crate::proxy::h1::Passed,
    /// The request's id, written last as `X-Request-Id` in place of any other (not put in the
    /// response's headers: a forwarded answer's are empty, and a map's first entry allocates it).
    pub request_id: Option<http::HeaderValue>,
    /// The SOAP version the request spoke: should the answer's body fail before any of it is
    /// sent, the 502 that replaces it is a fault of this version (`None`: a problem).
    pub soap: Option<crate::soap::SoapVersion>,
}

impl From<Response<ProxyBody>> for Answer {
    fn from(response: Response<ProxyBody>) -> Answer {
        Answer { response, passed: Default::default(), request_id: None, soap: None }
    }
}

/// What is known of the peer a request came from, handed to the handler beside the request
/// (not in its extensions: a map allocated per request for what is fixed per connection).
#[derive(Clone, Debug, Default)]
pub struct Peer {
    /// The address of a TCP peer.
    pub addr: Option<std::net::SocketAddr>,
    /// The client certificate a TLS caller presented (verified against the configured CAs).
    pub cert: Option<std::sync::Arc<tokio_rustls::rustls::pki_types::CertificateDer<'static>>>,
    /// The process at the other end of a Unix socket.
    pub user: Option<PeerUser>,
}

/// The uid and gid of the process at the other end of a Unix socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerUser {
    pub uid: u32,
    pub gid: u32,
}

/// Longest a client may take to finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts until `shutdown` resolves, handing each connection to `on_connection` with its
/// `Watch`; returns what `drain` waits on. The caller closes its listener before draining, so that
/// a client connecting meanwhile is refused at once instead of waiting unseen in the backlog for
/// the whole drain.
async fn accept_loop<S, Fut, A, C>(
    mut accept: A,
    mut on_connection: C,
    shutdown: impl Future<Output = ()>,
) -> Arc<Closing>
where
    A: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<S>>,
    C: FnMut(S, Watch),
{
    let closing = Arc::new(Closing::default());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = accept() => match accepted {
                Ok(connection) => on_connection(connection, Closing::watch(&closing)),
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly rather than spin.
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }
    closing
}

/// Tells the open connections to finish their request in flight and close, then waits up to
/// `drain` for them.
async fn drain(closing: Arc<Closing>, drain: Duration) {
    closing.begin();
    if tokio::time::timeout(drain, closing.finished()).await.is_err() {
        tracing::warn!(drain_secs = drain.as_secs(), "Connections still open after the drain time; closing them.");
    }
}

/// A server's graceful shutdown: a flag every open connection checks when it is polled, the
/// wakers of those waiting on their caller (woken once when it is set), and a count of the open
/// connections for the drain. (hyper-util's `GracefulShutdown` did the same with a `watch`
/// channel whose change future each connection polled, under its lock, on every poll: ~330
/// instructions a request; here a poll costs one load and a waker comparison.)
#[derive(Default)]
struct Closing {
    begun: AtomicBool,
    open: AtomicUsize,
    /// The waker of each connection polled since it opened, by its number.
    wakers: Mutex<std::collections::HashMap<u64, Waker>>,
    next: AtomicU64,
    /// Notified when the last open connection ends.
    finished: tokio::sync::Notify,
}

impl Closing {
    /// One more open connection, watched until its `Watch` is dropped.
    fn watch(closing: &Arc<Closing>) -> Watch {
        closing.open.fetch_add(1, Ordering::AcqRel);
        let id = closing.next.fetch_add(1, Ordering::Relaxed);
        Watch { closing: Arc::clone(closing), id, waker: None }
    }

    /// Shutdown begins: every open connection is woken to finish.
    fn begin(&self) {
        self.begun.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut *self.wakers());
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    /// Resolves once no connection is open.
    async fn finished(&self) {
        loop {
            let notified = self.finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    fn wakers(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Waker>> {
        self.wakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One open connection's part in its server's `Closing`.
struct Watch {
    closing: Arc<Closing>,
    id: u64,
    /// The waker registered last (a connection's task keeps one waker: registered once).
    waker: Option<Waker>,
}

impl Watch {
    /// Ready once shutdown has begun; until then, the task is woken when it does.
    fn poll_begun(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.closing.begun.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            let waker = cx.waker().clone();
            self.closing.wakers().insert(self.id, waker.clone());
            self.waker = Some(waker);
            // Shutdown may have begun (and taken the wakers) just before this one was added.
            if self.closing.begun.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }

    /// Whether shutdown has begun.
    fn begun(&self) -> bool {
        self.closing.begun.load(Ordering::Acquire)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.waker.is_some() {
            self.closing.wakers().remove(&self.id);
        }
        if self.closing.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.closing.finished.notify_waiters();
        }
    }
}

/// Where a server's TCP connections come from.
pub enum Source {
    /// Accepted on this listener.
    Listener(TcpListener),
    /// Handed over by `dispatch` (a worker of the proxy).
    Handed(Handoff),
}

impl From<TcpListener> for Source {
    fn from(listener: TcpListener) -> Source {
        Source::Listener(listener)
    }
}

/// Serves the connections of `source` until `shutdown` resolves, then waits up to
/// `timeouts.drain` for open connections to finish. With `tls`, every connection is a TLS server
/// connection first. A caller is waited on as long as `timeouts` say.
pub async fn serve<H, Fut>(
    source: impl Into<Source>,
    tls: Option<TlsAcceptor>,
    handler: H,
    shutdown: impl Future<Output = ()>,
    timeouts: Timeouts,
) where
    H: Fn(Request<RequestBody>, Peer) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output: Into<Answer>> + Send + 'static,
{
    let on_connection = |open: Option<Arc<AtomicUsize>>| {
        let (tls, handler) = (&tls, &handler);
        move |(stream, peer): (tokio::net::TcpStream, std::net::SocketAddr), watch: Watch| {
            let open = open.as_ref().map(|count| OpenConnection(Arc::clone(count)));
            tokio::spawn(connection(stream, peer, tls.clone(), handler.clone(), watch, open, timeouts));
        }
    };
    let closing = match source.into() {
        Source::Listener(listener) => {
            let closing = accept_loop(|| listener.accept(), on_connection(None), shutdown).await;
            drop(listener);
            closing
        }
        Source::Handed(Handoff { connections, open }) => {
            let connections = std::sync::Mutex::new(connections);
            // The next connection handed over, registered with this thread's event loop; none
            // while the dispatcher is gone (it stops on the same shutdown).
            let next = || {
                std::future::poll_fn(|cx| {
                    let handed = match connections.lock() {
                        Ok(mut rx) => rx.poll_recv(cx),
                        Err(_) => return std::task::Poll::Pending,
                    };
                    match handed {
                        std::task::Poll::Ready(Some((stream, peer))) => {
                            std::task::Poll::Ready(tokio::net::TcpStream::from_std(stream).map(|s| (s, peer)))
                        }
                        _ => std::task::Poll::Pending,
                    }
                })
            };
            accept_loop(next, on_connection(Some(open)), shutdown).await
        }
    };
    self::drain(closing, timeouts.drain).await;
}

/// Serves `listener` (with `tls`) in a task of its own until the returned sender is dropped or
/// sent on; open requests then get a second to finish. For the loopback peers and tests.
pub fn spawn<H, Fut>(listener: TcpListener, tls: Option<TlsAcceptor>, handler: H) -> tokio::sync::oneshot::Sender<()>
where
    H: Fn(Request<RequestBody>, Peer) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output: Into<Answer>> + Send + 'static,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let timeouts = Timeouts { drain: Duration::from_secs(1), ..Timeouts::default() };
    tokio::spawn(serve(listener, tls, handler, shutdown, timeouts));
    stop
}

/// Connections `dispatch` hands to one worker, and how many of them the worker has open.
pub struct Handoff {
    pub connections: UnboundedReceiver<(std::net::TcpStream, std::net::SocketAddr)>,
    pub open: Arc<AtomicUsize>,
}

/// The sending side of a worker's `Handoff`.
pub type HandoffTo = (UnboundedSender<(std::net::TcpStream, std::net::SocketAddr)>, Arc<AtomicUsize>);

/// A worker's `Handoff` and the sending side `dispatch` takes.
pub fn handoff() -> (HandoffTo, Handoff) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let open = Arc::new(AtomicUsize::new(0));
    ((tx, Arc::clone(&open)), Handoff { connections: rx, open })
}

/// Accepts on `listener` until `shutdown` resolves, handing each connection to the worker with
/// the fewest open (the first of them on a tie), then closes the listener. Every worker thus
/// gets its share of a burst of new connections and of a few long-lived ones, as they arrive:
/// with a socket per worker (`SO_REUSEPORT`) the kernel spread them by a hash of their
/// addresses, and 50 connections could split 30 / 20, one worker then busy while the other
/// idled; on one socket shared by all, the thread that woke first took every connection waiting.
pub async fn dispatch(listener: TcpListener, workers: Vec<HandoffTo>, shutdown: impl Future<Output = ()>) {
    // The workers' servers watch the connections for their drain; nothing here waits on them.
    let on_connection = |(stream, peer): (tokio::net::TcpStream, std::net::SocketAddr), _| {
        // Handed over without its registration with this thread's event loop.
        match stream.into_std() {
            Ok(stream) => hand_over(&workers, (stream, peer)),
            Err(e) => tracing::debug!(error = %e, "A connection could not be handed over."),
        }
    };
    accept_loop(|| listener.accept(), on_connection, shutdown).await;
}

/// Hands a connection to the serving worker with the fewest open. A worker that stopped serving
/// (its thread failed) is passed over, so that it takes no connection again.
fn hand_over(workers: &[HandoffTo], mut connection: (std::net::TcpStream, std::net::SocketAddr)) {
    loop {
        let serving = workers.iter().filter(|(to, _)| !to.is_closed());
        let Some((to, open)) = serving.min_by_key(|(_, open)| open.load(Ordering::Relaxed)) else {
            tracing::error!("No worker is serving: a new connection is closed.");
            return;
        };
        open.fetch_add(1, Ordering::Relaxed);
        match to.send(connection) {
            Ok(()) => return,
            Err(tokio::sync::mpsc::error::SendError(back)) => {
                open.fetch_sub(1, Ordering::Relaxed);
                connection = back;
            }
        }
    }
}

/// One open connection of a worker's count: counted down when the connection ends.
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one TCP connection (TLS first, with `tls`) until it ends.
async fn connection<H, Fut>(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    tls: Option<TlsAcceptor>,
    handler: H,
    watch: Watch,
    _open: Option<OpenConnection>,
    timeouts: Timeouts,
) where
    H: Fn(Request<RequestBody>, Peer) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output: Into<Answer>> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let mut watch = watch;
    match tls {
        None => {
            let peer = Peer { addr: Some(peer), cert: None, user: None };
            conn::serve(Box::new(stream), peer, handler, &mut watch, timeouts).await;
        }
        Some(acceptor) => {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed.");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out.");
                    return;
                }
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|c| std::sync::Arc::new(c.clone().into_owned()));
            conn::serve(Box::new(stream), Peer { addr: Some(peer), cert, user: None }, handler, &mut watch, timeouts)
                .await;
        }
    }
}

/// Serves HTTP/1.1 on a Unix socket until `shutdown` resolves; each request carries the peer's
/// credentials (`PeerUser`), which the kernel vouches for.
#[cfg(unix)]
pub async fn serve_unix<H, Fut>(
    listener: tokio::net::UnixListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
    timeouts: Timeouts,
) where
    H: Fn(Request<RequestBody>, Peer) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output: Into<Answer>> + Send + 'static,
{
    let on_connection = |(stream, _): (tokio::net::UnixStream, tokio::net::unix::SocketAddr), watch: Watch| {
        let user = stream.peer_cred().ok().map(|c| PeerUser { uid: c.uid(), gid: c.gid() });
        let handler = handler.clone();
        let mut watch = watch;
        tokio::spawn(async move {
            conn::serve(Box::new(stream), Peer { addr: None, cert: None, user }, handler, &mut watch, timeouts).await;
        });
    };
    let closing = accept_loop(|| listener.accept(), on_connection, shutdown).await;
    drop(listener);
    self::drain(closing, timeouts.drain).await;
}

/// A TLS acceptor for a PEM certificate chain and private key.
pub fn tls_acceptor(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, String> {
    tls_acceptor_with_clients(cert_chain_pem, key_pem, None)
}

/// A TLS acceptor that also asks for client certificates issued by `client_ca_pem` (PEM, one or
/// more CAs). A client without one may still connect (and must then prove itself otherwise); a
/// client with one the CAs did not issue is refused in the handshake.
pub fn tls_acceptor_with_clients(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<TlsAcceptor, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate chain: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("private key: {e}"))?;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(pem) {
                roots.add(ca.map_err(|e| format!("client CA: {e}"))?).map_err(|e| format!("client CA: {e}"))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| format!("client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| e.to_string())?;
    Ok(TlsAcceptor::from(std::sync::Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The accepting thread hands each new connection to the worker with the fewest open: a
    /// burst splits evenly, and connections that end on one worker send the next ones there.
    /// Another listener on the held port is refused.
    #[tokio::test]
    async fn connections_go_to_the_worker_with_the_fewest_open() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let at = listener.local_addr().expect("address");
        let (senders, handoffs): (Vec<_>, Vec<_>) = (0..2).map(|_| handoff()).unzip();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let accepting = tokio::spawn(dispatch(listener, senders, async {
            let _ = stop_rx.await;
        }));
        let [mut first, mut second]: [Handoff; 2] = handoffs.try_into().ok().expect("two");
        let mut clients = Vec::new();
        let mut handed = [Vec::new(), Vec::new()];
        let mut take =
            async |clients: &mut Vec<tokio::net::TcpStream>, n: usize, handed: &mut [Vec<std::net::TcpStream>; 2]| {
                for _ in 0..n {
                    clients.push(tokio::net::TcpStream::connect(at).await.expect("connected"));
                }
                let goal = handed[0].len() + handed[1].len() + n;
                while handed[0].len() + handed[1].len() < goal {
                    tokio::select! {
                        Some((stream, _)) = first.connections.recv() => handed[0].push(stream),
                        Some((stream, _)) = second.connections.recv() => handed[1].push(stream),
                    }
                }
            };
        let within = std::time::Duration::from_secs(30);
        tokio::time::timeout(within, take(&mut clients, 64, &mut handed)).await.expect("all handed over");
        assert_eq!([handed[0].len(), handed[1].len()], [32, 32]);
        // Ten of the first worker's connections end (as its server counts them down).
        handed[0].truncate(22);
        first.open.fetch_sub(10, std::sync::atomic::Ordering::Relaxed);
        tokio::time::timeout(within, take(&mut clients, 10, &mut handed)).await.expect("all handed over");
        assert_eq!([handed[0].len(), handed[1].len()], [32, 32], "the ten new ones went to the first worker");
        assert_eq!(second.open.load(std::sync::atomic::Ordering::Relaxed), 32);

        let taken = tokio::net::TcpListener::bind(at).await.expect_err("the port is held");
        assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse);
        let _ = stop_tx.send(());
        accepting.await.expect("stopped");
        tokio::net::TcpListener::bind(at).await.expect("the port is free once the dispatcher stopped");
    }

    /// A worker that stopped serving (its thread failed) takes no more connections: they go to
    /// the others, however few it had open.
    #[tokio::test]
    async fn a_worker_that_stopped_serving_is_passed_over() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let at = listener.local_addr().expect("address");
        let (senders, handoffs): (Vec<_>, Vec<_>) = (0..2).map(|_| handoff()).unzip();
        let [stopped, mut serving]: [Handoff; 2] = handoffs.try_into().ok().expect("two");
        serving.open.store(100, std::sync::atomic::Ordering::Relaxed);
        drop(stopped);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let accepting = tokio::spawn(dispatch(listener, senders, async {
            let _ = stop_rx.await;
        }));
        let mut clients = Vec::new();
        for _ in 0..5 {
            clients.push(tokio::net::TcpStream::connect(at).await.expect("connected"));
        }
        let within = std::time::Duration::from_secs(30);
        for _ in 0..5 {
            let handed = tokio::time::timeout(within, serving.connections.recv()).await.expect("handed over");
            assert!(handed.is_some());
        }
        assert_eq!(serving.open.load(std::sync::atomic::Ordering::Relaxed), 105);
        let _ = stop_tx.send(());
        accepting.await.expect("stopped");
    }

    /// On shutdown, a keep-alive connection waiting idle for its next request is closed at once
    /// (not after the drain time), and one with a request in flight gets its answer first, then
    /// is closed; the server returns once both are.
    #[tokio::test]
    async fn shutdown_closes_idle_connections_at_once_and_finishes_requests_in_flight() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let at = listener.local_addr().expect("address");
        // Requests to /slow say they arrived, then wait until released.
        let release = Arc::new(tokio::sync::Notify::new());
        let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
        let handler = {
            let release = Arc::clone(&release);
            move |req: Request<RequestBody>, _: Peer| {
                let (release, arrived_tx) = (Arc::clone(&release), arrived_tx.clone());
                async move {
                    if req.uri().path() == "/slow" {
                        let _ = arrived_tx.send(());
                        release.notified().await;
                    }
                    Response::new(crate::proxy::full(bytes::Bytes::from_static(b"done")))
                }
            }
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let drain_time = Duration::from_secs(300);
        let server = tokio::spawn(serve(
            listener,
            None,
            handler,
            async {
                let _ = stop_rx.await;
            },
            Timeouts { drain: drain_time, ..Timeouts::default() },
        ));
        let ask = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        // An idle keep-alive connection: one request answered, then nothing.
        let mut idle = tokio::net::TcpStream::connect(at).await.expect("connected");
        idle.write_all(ask("/").as_bytes()).await.expect("sent");
        let mut first = Vec::new();
        while !first.ends_with(b"done") {
            let mut buf = [0u8; 1024];
            let n = idle.read(&mut buf).await.expect("answer");
            assert!(n > 0, "closed before the answer: {}", String::from_utf8_lossy(&first));
            first.extend_from_slice(&buf[..n]);
        }
        // A connection whose request is in flight.
        let mut busy = tokio::net::TcpStream::connect(at).await.expect("connected");
        busy.write_all(ask("/slow").as_bytes()).await.expect("sent");
        arrived.recv().await.expect("the slow request arrived");
        let _ = stop_tx.send(());

        let within = Duration::from_secs(30);
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(within, idle.read_to_end(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(0))), "the idle connection is closed at once: {closed:?}");
        assert!(!server.is_finished(), "the request in flight holds the drain");
        release.notify_one();
        let mut answer = Vec::new();
        tokio::time::timeout(within, busy.read_to_end(&mut answer)).await.expect("in time").expect("read");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"), "{answer}");
        tokio::time::timeout(within, server).await.expect("the server returns once both closed").expect("served");
    }
}
