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
    let Service { dir, upstream, idp: _idp, notify, mut child, .. } =
        Service::start("unix_socket = \"proxy.sock\"").await;
    let mut buf = [0u8; 256];

    let socket = dir.path().join("proxy.sock");
    assert_eq!(get_over_unix_socket(&socket, ALICE).await, 200, "serving once ready");
    // SIGHUP reloads the (unchanged) config and does not stop it.
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

/// Lines the child writes to standard error, collected as they come.
fn collect_lines(stderr: tokio::process::ChildStderr) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use tokio::io::AsyncBufReadExt;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&lines);
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// A `run` child serving the default config with `server_lines` added under `[server]` and JSON
/// logs, started as systemd starts it; ready once it said `READY=1` and logged where it listens.
struct Service {
    /// Holds the config and keys; kept for as long as the service runs.
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    /// The config it was started with.
    base: String,
    upstream: LoopbackUpstream,
    idp: LoopbackIdp,
    notify: tokio::net::UnixDatagram,
    child: tokio::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    listen: String,
}

impl Service {
    async fn start(server_lines: &str) -> Service {
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
        let server = default_config(&peers).replacen("[server]\n", &format!("[server]\n{server_lines}\n"), 1);
        let base = format!("{server}\n[log]\nformat = \"json\"\n");
        std::fs::write(&config, &base).unwrap();
        let notify_path = dir.path().join("notify.sock");
        let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_oauth-egress"))
            .args(["run", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("RUST_LOG")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = collect_lines(child.stderr.take().unwrap());
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(30), notify.recv(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        // READY=1 is sent after "Listening." is written.
        wait_until("the Listening line", || lines.lock().unwrap().iter().any(|l| l.contains("Listening."))).await;
        let listen = lines
            .lock()
            .unwrap()
            .iter()
            .map(json)
            .find(|v| v["message"] == "Listening.")
            .map(|v| v["listen"].as_str().unwrap().to_owned())
            .unwrap();
        Service { dir, config, base, upstream, idp, notify, child, lines, listen }
    }
}

fn json(line: &String) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_and_sighup_reloads_the_config() {
    // One worker: the single-threaded runtime serves, reloads and logs as the threaded one does.
    let Service { config, base, upstream, mut child, lines, listen, dir: _dir, idp: _idp, .. } =
        Service::start("workers = 1").await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{listen}{path}");

    let given = http.get(url("/fixed/a")).header("X-Requester", ALICE).header("X-Request-Id", "req-json-1");
    let given = given.send().await.unwrap();
    assert_eq!(given.status(), 200);
    assert_eq!(given.headers()["x-request-id"], "req-json-1");
    let made = http.get(url("/fixed/b")).header("X-Requester", ALICE).send().await.unwrap();
    assert_eq!(made.status(), 200);
    let made_id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    let ids: Vec<String> = upstream
        .received()
        .iter()
        .map(|r| r.headers.get("x-request-id").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default())
        .collect();
    assert_eq!(ids, vec!["req-json-1".to_owned(), made_id.clone()], "the upstream gets each request's id");

    // SIGHUP: a new route appears without a restart.
    assert_eq!(http.get(url("/late/x")).header("X-Requester", ALICE).send().await.unwrap().status(), 404);
    let late = format!(
        "[[routes]]\nname = \"late\"\npath = \"/late\"\nkind = \"rest\"\nprovider = \"salesforce\"\nupstream = \"{}\"\n",
        upstream.url()
    );
    std::fs::write(&config, base.replacen("[subjects]", &format!("{late}\n[subjects]"), 1)).unwrap();
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_until("the reload is logged", || lines.lock().unwrap().iter().any(|l| l.contains("Config reloaded"))).await;
    assert_eq!(http.get(url("/late/x")).header("X-Requester", ALICE).send().await.unwrap().status(), 200);

    // A broken config on SIGHUP: refused, logged, the running one stays.
    std::fs::write(&config, "[server]\nlisten = 5\n").unwrap();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_until("the refusal is logged", || lines.lock().unwrap().iter().any(|l| l.contains("Config reload refused")))
        .await;
    assert_eq!(http.get(url("/late/x")).header("X-Requester", ALICE).send().await.unwrap().status(), 200);

    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");

    let lines = lines.lock().unwrap().clone();
    let records: Vec<serde_json::Value> = lines.iter().map(json).collect();
    // Five requests: /fixed/a, /fixed/b, /late/x before the reload (404) and twice after.
    let answered: Vec<&serde_json::Value> = records.iter().filter(|v| v["path"].is_string()).collect();
    assert_eq!(answered.len(), 5, "{lines:#?}");
    for v in &answered {
        assert!(v["span"]["request_id"].is_string(), "every line of a request has its id: {v}");
    }
    assert!(answered.iter().any(|v| v["span"]["request_id"] == "req-json-1" && v["path"] == "/fixed/a"));
    assert!(answered.iter().any(|v| v["span"]["request_id"] == made_id.as_str() && v["path"] == "/fixed/b"));
    assert!(!lines.iter().any(|l| l.contains("00DLOOPBACK")), "no token in the logs");
}

/// `workers = 3`: three threads of one work-stealing runtime serve, taking connections from the
/// one listener. Requests on many connections at once are all answered; on SIGTERM the listener
/// closes and the requests in flight finish before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_thread_serves_and_drains_on_sigterm() {
    serves_and_drains("workers = 3", |names| names.iter().filter(|t| *t == "oauth-egress-w").count() >= 3).await;
}

/// `workers = 3` pinned: two more threads serve beside the main one, each with a runtime of its
/// own, the main one accepting and sharing the connections out; the same as above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pinned_worker_thread_serves_and_drains_on_sigterm() {
    serves_and_drains("workers = 3\npin_workers = true", |names| {
        names.iter().any(|t| t == "oauth-egress-1") && names.iter().any(|t| t == "oauth-egress-2")
    })
    .await;
}

/// Starts the service with `workers` (config lines), waits until its threads' names satisfy
/// `started`, then holds twelve requests at the upstream across a SIGTERM.
async fn serves_and_drains(workers: &str, started: fn(&[String]) -> bool) {
    let Service { upstream, notify, mut child, listen, dir: _dir, idp: _idp, .. } = Service::start(workers).await;
    let mut buf = [0u8; 256];
    let pid = child.id().unwrap();
    // A thread takes its name once it runs.
    let threads = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    };
    wait_until("the serving threads", || started(&threads())).await;

    // Twelve connections, a request on each, all held at the upstream when SIGTERM arrives.
    let client = || reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    assert_eq!(
        client().get(format!("http://{listen}/fixed/warm")).header("X-Requester", ALICE).send().await.unwrap().status(),
        200
    );
    upstream.hold();
    let arrived = upstream.arrived();
    let in_flight: Vec<_> = (0..12)
        .map(|i| {
            let url = format!("http://{listen}/fixed/{i}");
            let http = client();
            tokio::spawn(async move { http.get(url).header("X-Requester", ALICE).send().await.map(|r| r.status()) })
        })
        .collect();
    wait_until("12 requests at the upstream", || upstream.arrived() == arrived + 12).await;
    assert!(std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let n = tokio::time::timeout(Duration::from_secs(30), notify.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    // No thread accepts any more.
    let refused = client().get(format!("http://{listen}/fixed/late")).header("X-Requester", ALICE).send().await;
    assert!(refused.is_err(), "a new connection after SIGTERM: {refused:?}");
    upstream.release();
    for request in in_flight {
        assert_eq!(request.await.unwrap().unwrap(), 200, "a request in flight completed");
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}

/// `pin_workers = true`: each serving thread is kept on one CPU, the main one on the first the
/// process may use and `oauth-egress-1` on the second (the same one again on a single-CPU
/// machine), and it still serves.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_workers_each_keep_to_a_cpu_of_their_own() {
    let Service { child, listen, dir: _dir, idp: _idp, upstream: _upstream, .. } =
        Service::start("workers = 2\npin_workers = true").await;
    let pid = child.id().unwrap();
    // The CPUs a task may run on, as /proc lists them (e.g. "0-1" or "1").
    let cpus_of = |task: &str| -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/task/{task}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")).unwrap();
        line.trim_start_matches("Cpus_allowed_list:").trim().to_owned()
    };
    let second = || -> Option<String> {
        std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().filter_map(Result::ok).find_map(|t| {
            let name = std::fs::read_to_string(t.path().join("comm")).ok()?;
            (name.trim() == "oauth-egress-1").then(|| t.file_name().to_string_lossy().into_owned())
        })
    };
    wait_until("thread oauth-egress-1", || second().is_some()).await;
    let allowed = oauth_egress::affinity::allowed_cpus();
    let expect = |n: usize| oauth_egress::affinity::cpu_for(&allowed, n).unwrap().to_string();
    // The main thread pins itself before READY=1; the other as it starts.
    assert_eq!(cpus_of(&pid.to_string()), expect(0), "the main serving thread");
    wait_until("oauth-egress-1 on its CPU", || second().is_some_and(|t| cpus_of(&t) == expect(1))).await;
    let client = reqwest::Client::new();
    for i in 0..4 {
        let answer = client.get(format!("http://{listen}/fixed/pinned/{i}")).header("X-Requester", ALICE).send().await;
        assert_eq!(answer.unwrap().status(), 200);
    }
}
