//! oauth-egress between implementations nobody here wrote (`tests/peers/`): Authlib's RFC 7523
//! grant as the token endpoint (answering like Salesforce, and like Okta), python `zeep` and node
//! `soap` clients built from the real partner WSDL, `curl` and python `requests` on REST, and an
//! upstream that only accepts the sessions Authlib issued.
//!
//! Needs the peers `.ci/run` installs (a Python venv at `tests/peers/.venv` with the pinned
//! `tests/peers/requirements.txt`, and `npm ci` in `tests/peers`); run with
//! `cargo test --test peers -- --ignored`. A missing peer fails the test: it never skips.

// A panic in a test is a failed test: unwrap freely here.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use oauth_egress::{App, Config};
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::Value;
use support::*;
use tokio::io::AsyncBufReadExt;

const CLIENT: &str = "3MVG9peer.consumer.key";
const AUD: &str = "https://login.salesforce.com";

fn peers_dir() -> PathBuf {
    manifest_dir().join("tests/peers")
}

fn python() -> PathBuf {
    let python =
        std::env::var_os("PEERS_PYTHON").map(PathBuf::from).unwrap_or_else(|| peers_dir().join(".venv/bin/python"));
    assert!(python.exists(), "peer missing: {} (install the peers as .ci/run does)", python.display());
    python
}

fn node_ready() {
    let soap = peers_dir().join("node_modules/soap/package.json");
    assert!(soap.exists(), "peer missing: {} (run `npm ci` in tests/peers)", soap.display());
}

/// The Python token endpoint and upstream (`servers.py`), running until dropped.
struct Servers {
    _child: tokio::process::Child,
    token_url: String,
    upstream: String,
}

impl Servers {
    async fn start(dir: &std::path::Path, mode: &str, refuse: &[&str]) -> Servers {
        let public = dir.join(format!("{mode}.pub.pem"));
        std::fs::write(&public, key().to_public_key().to_public_key_pem(LineEnding::LF).unwrap()).unwrap();
        let mut command = tokio::process::Command::new(python());
        command.arg(peers_dir().join("servers.py")).args(["--public-key"]).arg(&public).args([
            "--client-id",
            CLIENT,
            "--audience",
            AUD,
            "--mode",
            mode,
        ]);
        for subject in refuse {
            command.args(["--refuse", subject]);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true).spawn().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.unwrap().unwrap().unwrap();
        let ports: Vec<&str> = ready.split_whitespace().collect();
        assert_eq!(ports.first(), Some(&"READY"), "{ready}");
        Servers {
            _child: child,
            token_url: format!("http://127.0.0.1:{}/services/oauth2/token", ports[1]),
            upstream: format!("http://127.0.0.1:{}", ports[2]),
        }
    }

    async fn issued(&self) -> u64 {
        let url = self.token_url.replace("/services/oauth2/token", "/_counts");
        let counts: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        counts["issued"].as_u64().unwrap()
    }
}

/// A proxy in front of `servers`: the partner SOAP route with `validation`, and a REST route to
/// `rest_upstream` (`instance_url` or a base URL).
async fn proxy(
    dir: &std::path::Path,
    servers: &Servers,
    validation: &str,
    rest_upstream: &str,
) -> (oauth_egress::Running, Arc<App>) {
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"

[[providers]]
name = "salesforce"
token_url = "{token_url}"
client_id = "{CLIENT}"
audience = "{AUD}"
private_key = "test.key"

[[routes]]
name = "sf-soap"
path = "/services/Soap/u/58.0"
kind = "soap"
provider = "salesforce"
wsdl = "wsdl/salesforce-partner-v58.wsdl"
upstream = "instance_url"
validation = "{validation}"

[[routes]]
name = "sf-rest"
path = "/services/data/"
kind = "rest"
provider = "salesforce"
upstream = "{rest_upstream}"

[subjects]
unmapped = "reject"
map = {{ "alice@corp.example.com" = "alice@peer.example", "bob@corp.example.com" = "bob@peer.example" }}
"#,
        token_url = servers.token_url,
        rest_upstream = rest_upstream
    );
    let path = dir.join(format!("{validation}.toml"));
    std::fs::write(&path, config).unwrap();
    let app = Arc::new(App::new(Config::load(&path).unwrap_or_else(|e| panic!("{e}"))).unwrap());
    (oauth_egress::Running::start(Arc::clone(&app)).await.unwrap(), app)
}

fn wsdl() -> String {
    manifest_dir().join("wsdl/salesforce-partner-v58.wsdl").display().to_string()
}

async fn run_json(mut command: tokio::process::Command) -> Value {
    let out = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?} failed:\n{stdout}\n{}", command, String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn zeep(proxy: &str, upstream: &str, user: &str, fault: bool) -> Value {
    let mut c = tokio::process::Command::new(python());
    c.arg(peers_dir().join("zeep_client.py")).args([&wsdl(), proxy, upstream, user]);
    if fault {
        c.arg("--expect-fault");
    }
    run_json(c).await
}

async fn node_soap(proxy: &str, upstream: &str, user: &str, fault: bool) -> Value {
    let mut c = tokio::process::Command::new("node");
    c.arg(peers_dir().join("soap_client.js")).args([&wsdl(), proxy, upstream, user]).current_dir(peers_dir());
    if fault {
        c.arg("--expect-fault");
    }
    run_json(c).await
}

/// Each call parsed as the client expects, and the answer it got is byte for byte the one the
/// upstream sent.
fn check_calls(client: &str, v: &Value) {
    for call in ["query", "create", "describeSObjects"] {
        assert_eq!(v[call]["raw"], v[call]["upstream"], "{client} {call}: the answer changed on the way: {v}");
    }
    assert_eq!(v["query"]["size"], 1, "{client}: {v}");
    assert_eq!(v["create"]["ids"], serde_json::json!(["001000000000000AAA", "001000000000001AAA"]), "{client}: {v}");
    assert_eq!(v["describeSObjects"]["names"], serde_json::json!(["Account", "Contact"]), "{client}: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs peers: see .ci/run"]
async fn salesforce_like_peers_through_the_proxy() {
    node_ready();
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("test.key"), &key_pem());
    copy_wsdls(dir.path());
    let servers = Servers::start(dir.path(), "salesforce", &["bob@peer.example"]).await;
    // zeep sends nillable elements it was not given as xsi:nil, so strict validation passes;
    // node `soap` leaves them out, as Salesforce allows: that takes `lax`.
    let (strict, _) = proxy(dir.path(), &servers, "strict", "instance_url").await;
    let (lax, _) = proxy(dir.path(), &servers, "lax", "instance_url").await;
    let strict_url = format!("http://{}", strict.addr);
    let lax_url = format!("http://{}", lax.addr);
    let alice = "alice@corp.example.com";

    let z = zeep(&strict_url, &servers.upstream, alice, false).await;
    check_calls("zeep", &z);
    let n = node_soap(&lax_url, &servers.upstream, alice, false).await;
    check_calls("node soap", &n);
    assert_eq!(servers.issued().await, 2, "one exchange per proxy for alice");

    // Refusals reach each client as a fault it parses.
    for (client, answer) in [
        ("zeep", zeep(&strict_url, &servers.upstream, "eve@corp.example.com", true).await),
        ("node soap", node_soap(&lax_url, &servers.upstream, "eve@corp.example.com", true).await),
    ] {
        let message = answer["fault"]["message"].as_str().unwrap_or_else(|| panic!("{client}: {answer}"));
        assert!(message.contains("no subject mapping for requester 'eve@corp.example.com'"), "{client}: {answer}");
        assert!(answer["fault"]["code"].as_str().unwrap().ends_with("Client"), "{client}: {answer}");
    }
    for (client, answer) in [
        ("zeep", zeep(&strict_url, &servers.upstream, "bob@corp.example.com", true).await),
        ("node soap", node_soap(&lax_url, &servers.upstream, "bob@corp.example.com", true).await),
    ] {
        let message = answer["fault"]["message"].as_str().unwrap_or_else(|| panic!("{client}: {answer}"));
        assert!(message.contains("invalid_grant (user hasn't approved this consumer)"), "{client}: {answer}");
    }

    // REST through curl and python requests: the upstream sees alice's token as a Bearer.
    let rest = format!("{strict_url}/services/data/v58.0/sobjects/Account/001000000000001AAA");
    let curl = tokio::process::Command::new("curl")
        .args(["-sS", "--fail-with-body", "-H", &format!("X-Requester: {alice}"), &rest])
        .output()
        .await
        .unwrap();
    assert!(curl.status.success(), "curl: {}", String::from_utf8_lossy(&curl.stderr));
    let got: Value = serde_json::from_slice(&curl.stdout).unwrap();
    assert_eq!(got["Owner"], "alice@peer.example");
    let script = "import sys, requests; r = requests.get(sys.argv[1], headers={'X-Requester': sys.argv[2]}); \
                  print(r.status_code, r.json()['Owner'])";
    let py = tokio::process::Command::new(python()).args(["-c", script, &rest, alice]).output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), "200 alice@peer.example", "{py:?}");

    // A session killed upstream: the proxy gets a new token and replays the call, once.
    let before = servers.issued().await;
    reqwest::Client::new().post(format!("{}/_kill", servers.upstream)).send().await.unwrap();
    let z = zeep(&strict_url, &servers.upstream, alice, false).await;
    check_calls("zeep after the session was killed", &z);
    assert_eq!(servers.issued().await, before + 1, "renegotiated once");

    // The independent server accepts an assertion we sign, and refuses it tampered with.
    let signer = oauth_egress::token::assertion::Signer {
        issuer: CLIENT.into(),
        audience: AUD.into(),
        lifetime: Duration::from_secs(180),
        key: oauth_egress::token::assertion::SigningKey::from_key(key(), None).unwrap(),
        next: None,
    };
    let http = reqwest::Client::new();
    let grant = |assertion: String| {
        let http = http.clone();
        let url = servers.token_url.clone();
        async move {
            let form =
                [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned()), ("assertion", assertion)];
            let r = http.post(url).form(&form).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let good = signer.sign("alice@peer.example").unwrap().expose().to_owned();
    let (status, body) = grant(good.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("expires_in").is_none() && body["instance_url"].is_string(), "Salesforce-like: {body}");
    let mut tampered = signer.sign("alice@peer.example").unwrap().expose().to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, body) = grant(tampered).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let (status, body) = grant(good).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "a replayed jti: {body}");
    let other = oauth_egress::token::assertion::Signer { issuer: "someone-else".into(), ..signer };
    let (status, body) = grant(other.sign("alice@peer.example").unwrap().expose().to_owned()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client_id")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs peers: see .ci/run"]
async fn okta_like_peer_sets_the_token_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("test.key"), &key_pem());
    copy_wsdls(dir.path());
    let servers = Servers::start(dir.path(), "okta", &[]).await;
    // Okta answers with expires_in and no instance_url: the REST route goes to a fixed upstream.
    let (running, app) = proxy(dir.path(), &servers, "strict", &servers.upstream).await;
    let url = format!("http://{}/services/data/v58.0/sobjects/Account/x", running.addr);
    let r = reqwest::Client::new().get(&url).header("X-Requester", "alice@corp.example.com").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["Owner"], "alice@peer.example");
    let held = app.store().held();
    assert_eq!(held.len(), 1);
    let left = held[0].1.expires_at.saturating_duration_since(std::time::Instant::now());
    assert!(left > Duration::from_secs(800) && left <= Duration::from_secs(900), "expires_in 900 was used: {left:?}");
}
