//! The `run` command as systemd runs it: `READY=1` on `$NOTIFY_SOCKET` once listening, and on
//! SIGTERM no new connections while an in-flight request still completes, then `STOPPING=1` and
//! exit 0.

// A panic in a test is a failed test: unwrap freely here.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use oauth_egress::loopback::Sessions;
use oauth_egress::loopback::idp::{IdpOptions, LoopbackIdp};
use oauth_egress::loopback::upstream::LoopbackUpstream;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_then_sigterm_drains_the_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("test.key"), &key_pem());
    copy_wsdls(dir.path());
    let sessions = Sessions::default();
    let upstream = LoopbackUpstream::start(sessions.clone()).await.unwrap();
    let idp = LoopbackIdp::start(
        IdpOptions::salesforce(CLIENT_ID, AUDIENCE, key().to_public_key(), upstream.url()),
        sessions,
    )
    .await
    .unwrap();
    let peers = Peers { token_url: idp.token_url(), upstream: upstream.url() };
    let config = dir.path().join("oauth-egress.toml");
    std::fs::write(
        &config,
        default_config(&peers).replacen("[server]\n", "[server]\nunix_socket = \"proxy.sock\"\n", 1),
    )
    .unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_oauth-egress"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(30), notify.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"READY=1");

    let socket = dir.path().join("proxy.sock");
    assert_eq!(get_over_unix_socket(&socket, ALICE).await, 200, "serving once ready");
    // SIGHUP does not stop it.
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    assert_eq!(get_over_unix_socket(&socket, ALICE).await, 200, "still serving after SIGHUP");

    // A request is in flight (held at the upstream) when SIGTERM arrives.
    upstream.hold();
    let arrived = upstream.arrived();
    let in_flight = tokio::spawn({
        let socket = socket.clone();
        async move { get_over_unix_socket(&socket, ALICE).await }
    });
    wait_until("request at the upstream", || upstream.arrived() == arrived + 1).await;
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let n = tokio::time::timeout(Duration::from_secs(30), notify.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    upstream.release();
    assert_eq!(in_flight.await.unwrap(), 200, "the in-flight request completed");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}
