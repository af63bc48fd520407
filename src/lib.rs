//! oauth-egress: an outbound proxy that takes an internal app's unauthenticated SOAP or REST call,
//! works out which SaaS user it is for, gets that user an OAuth 2.0 access token with a signed
//! JWT bearer assertion (RFC 7523), injects it, and forwards the call.
//!
//! `config` loads what to do; `proxy` does it per request; `token` gets and keeps tokens; `soap`
//! reads envelopes and WSDLs; `server` accepts connections; `loopback` holds the local token
//! endpoint and upstream that `demo` and the tests run against.

pub mod admin;
pub mod affinity;
pub mod bearer;
pub mod clock;
pub mod config;
pub mod demo;
pub mod identity;
pub mod loopback;
pub mod memory;
pub mod metrics;
pub mod offline;
pub mod policy;
pub mod proxy;
pub mod secret;
pub mod server;
pub mod sharded;
pub mod soap;
pub mod systemd;
pub mod token;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
pub use proxy::App;

/// Where a running proxy listens (port 0 in the config picks a free port).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub proxy: SocketAddr,
    pub admin: Option<SocketAddr>,
}

/// A proxy serving in the background (demo, tests): where it listens, how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    /// The admin listener, when configured.
    pub admin: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Starts `run` in a task and waits until it listens.
    pub async fn start(app: Arc<App>) -> std::io::Result<Running> {
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(run(app, shutdown, Some(bound_tx)));
        match bound_rx.await {
            Ok(bound) => Ok(Running { addr: bound.proxy, admin: bound.admin, stop: Some(stop), task: Some(task) }),
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                _ => Err(std::io::Error::other("the proxy stopped before listening")),
            },
        }
    }

    /// Asks for shutdown as SIGTERM would, without waiting (`stop` then waits).
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down as SIGTERM would and waits until `run` has returned.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        self.begin_stop();
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

/// Binds `config.listen` (and the admin listener, when configured) and serves the proxy until
/// `shutdown` resolves; then stops accepting, lets requests in flight finish for up to the
/// configured drain time, and returns. Says where it listens through `bound` as soon as the
/// listeners are up.
pub async fn run(
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    bound: Option<tokio::sync::oneshot::Sender<Bound>>,
) -> std::io::Result<()> {
    let config = app.config();
    let timeouts =
        server::Timeouts { keepalive: config.keepalive_timeout, client: config.client_timeout, drain: config.drain };
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    // Workers the scheduler places (more than one, not pinned) share one work-stealing runtime
    // (`stealing_runtime` says why); pinned workers, and a single one, each run a single-threaded
    // runtime of their own, which `server::dispatch` hands connections to.
    let count = worker_count(config.workers);
    let stealing = if count > 1 && !config.pin_workers { Some(stealing_runtime(count)?) } else { None };
    tracing::info!(listen = %addr, routes = config.routes.len(), "Listening.");
    let ready = Arc::new(admin::Readiness::default());
    let admin_listener = match config.admin_listen {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at).await?;
            tracing::info!(listen = %l.local_addr()?, "Admin listener: /metrics, /healthz, /readyz, POST /reload.");
            Some(l)
        }
        None => None,
    };
    let admin_addr = admin_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    if let Some(bound) = bound {
        let _ = bound.send(Bound { proxy: addr, admin: admin_addr });
    }
    let serving = Arc::clone(&app);
    let handler = move |req, peer| serving.handle(req, peer);
    let tls = app.config().tls.as_ref().map(|t| t.0.clone());
    // Both listeners stop on the one shutdown.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (stopped_all, _) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    #[cfg(unix)]
    let unix = match &app.config().unix_socket {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path)?;
            tracing::info!(socket = %path.display(), "Listening on the Unix socket.");
            Some(tokio::spawn(server::serve_unix(listener, handler.clone(), stopped(), timeouts)))
        }
        None => None,
    };
    tokio::spawn(reap_idle_upstreams(Arc::clone(&app), stopped()));
    let mut workers = Vec::new();
    let (accepting, tcp) = match &stealing {
        // Every worker takes connections from the one listener and work from the others.
        Some(runtime) => {
            let listener = {
                let _in = runtime.enter();
                tokio::net::TcpListener::from_std(listener.into_std()?)?
            };
            (None, runtime.spawn(server::serve(listener, tls, handler, stopped(), timeouts)))
        }
        None => {
            // More workers: threads of their own, each a single-threaded runtime serving the
            // connections handed to it. This thread accepts, and is the first worker. Worker n
            // is kept on the nth CPU the process may use (read before any thread is pinned: a
            // new thread starts with its creator's CPUs).
            let cpus = if config.pin_workers { affinity::allowed_cpus() } else { Vec::new() };
            // One handoff per worker; `server::dispatch` accepts and shares the connections out.
            let (senders, mut handoffs): (Vec<_>, Vec<_>) = (0..count).map(|_| server::handoff()).unzip();
            let first = handoffs.remove(0);
            for (n, handoff) in (1..).zip(handoffs) {
                let (handler, tls, stop) = (handler.clone(), tls.clone(), stopped());
                let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                let exit = stopped_all.subscribe();
                let cpu = affinity::cpu_for(&cpus, n);
                let thread = std::thread::Builder::new().name(format!("oauth-egress-{n}")).spawn(move || {
                    if let Some(cpu) = cpu {
                        affinity::pin_current_thread(n, cpu);
                    }
                    let built = tokio::runtime::Builder::new_current_thread().enable_all().build();
                    let served = built.and_then(|runtime| {
                        runtime.block_on(async move {
                            server::serve(server::Source::Handed(handoff), tls, handler, stop, timeouts).await;
                            let _ = done_tx.send(());
                            // Token exchanges this thread started may be awaited by requests on
                            // others: its runtime runs until every worker is done.
                            let mut exit = exit;
                            let _ = exit.wait_for(|done| *done).await;
                            Ok::<(), std::io::Error>(())
                        })
                    });
                    // Said at once: the other workers go on serving without this one.
                    if let Err(e) = &served {
                        tracing::error!(worker = n, error = %e, "A worker thread could not serve.");
                    }
                    served
                })?;
                workers.push((thread, done_rx));
            }
            if let Some(cpu) = affinity::cpu_for(&cpus, 0) {
                affinity::pin_current_thread(0, cpu);
            }
            let accepting = tokio::spawn(server::dispatch(listener, senders, stopped()));
            let first = tokio::spawn(server::serve(server::Source::Handed(first), tls, handler, stopped(), timeouts));
            (Some(accepting), first)
        }
    };
    // The admin listener answers until the proxy's listeners are done (`/readyz` says 503 then).
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let admin_task = admin_listener.map(|listener| {
        let (app, ready) = (Arc::clone(&app), Arc::clone(&ready));
        let handler = move |req, _| admin::handle(Arc::clone(&app), Arc::clone(&ready), req);
        let stop = async {
            let _ = admin_stop_rx.await;
        };
        let timeouts = server::Timeouts { drain: Duration::from_secs(1), ..timeouts };
        tokio::spawn(server::serve(listener, None, handler, stop, timeouts))
    });
    ready.set(true);
    systemd::notify("READY=1");
    if let Some(every) = systemd::watchdog_interval() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                systemd::notify("WATCHDOG=1");
            }
        });
    }
    shutdown.await;
    ready.set(false);
    systemd::notify("STOPPING=1");
    let _ = stop_tx.send(true);
    if let Some(accepting) = accepting {
        let _ = accepting.await;
    }
    let _ = tcp.await;
    let mut threads = Vec::with_capacity(workers.len());
    for (thread, done) in workers {
        let _ = done.await;
        threads.push(thread);
    }
    let _ = stopped_all.send(true);
    for thread in threads {
        if !matches!(tokio::task::spawn_blocking(move || thread.join()).await, Ok(Ok(_))) {
            tracing::warn!("A worker thread ended abnormally.");
        }
    }
    #[cfg(unix)]
    if let Some(unix) = unix {
        let _ = unix.await;
    }
    // Served and drained: what the stealing runtime still holds (idle timers, pooled
    // connections' registrations) goes without waiting.
    if let Some(runtime) = stealing {
        runtime.shutdown_background();
    }
    app.revoke_held().await;
    let _ = admin_stop_tx.send(());
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    Ok(())
}

/// How often the upstream connections idle too long are closed.
const REAP_EVERY: Duration = Duration::from_secs(15);

/// Closes the idle upstream connections every `REAP_EVERY`, until `stop`.
async fn reap_idle_upstreams(app: Arc<App>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(REAP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let closed = app.reap_idle_upstreams();
                if closed > 0 {
                    tracing::debug!(closed, "Closed upstream connections idle too long.");
                }
            }
            _ = &mut stop => return,
        }
    }
}

/// The runtime that workers the scheduler places share: a thread each, and a task's work taken
/// over by another thread while its own waits for a CPU.
///
/// Why two kinds: a worker thread that owns its connections holds every request on them while it
/// waits to run, and on a busy machine the scheduler makes it wait a tick (4 ms here) whenever it
/// puts two busy threads on one CPU. Measured with 2 workers, unpinned, `wrk -c50` REST beside the
/// upstream on 2 cores: p99 4.3-4.5 ms with a runtime per thread, 3.1-3.5 ms with work stealing, at
/// the same requests per second. Pinned workers are never put on one CPU together, and there
/// stealing only costs (the threads wake each other across CPUs: 47 k req/s against 58 k).
fn stealing_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("oauth-egress-w")
        .on_thread_start(proxy::pool::on_shared_runtime)
        .enable_all()
        .build()
}

/// How many threads serve: `workers`, or one per CPU when 0.
pub fn worker_count(workers: usize) -> usize {
    match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}
