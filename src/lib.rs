//! oauth-egress: an outbound proxy that takes an internal app's unauthenticated SOAP or REST call,
//! works out which SaaS user it is for, gets that user an OAuth 2.0 access token with a signed
//! JWT bearer assertion (RFC 7523), injects it, and forwards the call.
//!
//! `config` loads what to do; `proxy` does it per request; `token` gets and keeps tokens; `soap`
//! reads envelopes and WSDLs; `server` accepts connections; `loopback` holds the local token
//! endpoint and upstream that `demo` and the tests run against.

pub mod bearer;
pub mod clock;
pub mod config;
pub mod demo;
pub mod identity;
pub mod loopback;
pub mod offline;
pub mod policy;
pub mod proxy;
pub mod secret;
pub mod server;
pub mod soap;
pub mod systemd;
pub mod token;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
pub use proxy::App;

/// How long open requests may take to finish after shutdown is asked for.
pub const DRAIN: Duration = Duration::from_secs(30);

/// A proxy serving in the background (demo, tests): where it listens, how to stop it.
pub struct Running {
    pub addr: SocketAddr,
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
            Ok(addr) => Ok(Running { addr, stop: Some(stop), task: Some(task) }),
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                _ => Err(std::io::Error::other("the proxy stopped before listening")),
            },
        }
    }

    /// Shuts down as SIGTERM would and waits until `run` has returned.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

/// Binds `config.listen` and serves the proxy until `shutdown` resolves. Returns the bound address
/// through `bound` as soon as the listener is up (port 0 picks a free port).
pub async fn run(
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(app.config().listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, routes = app.config().routes.len(), "Listening.");
    if let Some(bound) = bound {
        let _ = bound.send(addr);
    }
    let serving = Arc::clone(&app);
    let handler = move |req| {
        let app = Arc::clone(&serving);
        async move { app.handle(req).await }
    };
    let tls = app.config().tls.as_ref().map(|t| t.0.clone());
    // Both listeners stop on the one shutdown.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
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
            Some(tokio::spawn(server::serve_unix(listener, handler.clone(), stopped(), DRAIN)))
        }
        None => None,
    };
    let tcp = tokio::spawn(server::serve(listener, tls, handler, stopped(), DRAIN));
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
    systemd::notify("STOPPING=1");
    let _ = stop_tx.send(true);
    let _ = tcp.await;
    #[cfg(unix)]
    if let Some(unix) = unix {
        let _ = unix.await;
    }
    app.revoke_held().await;
    Ok(())
}
