//! Caller identity and subject authorisation over loopback: API keys (stored as SHA-256),
//! source ranges, and the policy matrix caller × subject × route × operation. Refusals cost no
//! token work; the API key never reaches the SaaS.

// A panic in a test is a failed test: unwrap freely here.
#![allow(clippy::unwrap_used)]

mod support;

use support::*;

const SALES_KEY: &str = "sk_live_4f1d2a9c8e7b6a5d4c3b2a1f0e9d8c7b";
const REMOTE_KEY: &str = "sk_live_remote_0000000000000000000000";

fn hex(key: &str) -> String {
    oauth_egress::policy::key_digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn with_callers(p: &Peers) -> String {
    format!(
        r#"{base}
[[callers]]
name = "sales-app"
api_key_sha256 = "{sales}"
subjects = ["*@corp.example.com.sandbox"]
routes = ["sf-soap", "sf-rest"]
operations = ["query", "retrieve"]

[[callers]]
name = "ops-box"
sources = ["127.0.0.1/32", "::1"]
subjects = ["integration@corp.example.com"]

[[callers]]
name = "remote-app"
api_key_sha256 = "{remote}"
sources = ["10.0.0.0/8"]
subjects = ["*"]
"#,
        base = default_config(p),
        sales = hex(SALES_KEY),
        remote = hex(REMOTE_KEY),
    )
}

async fn harness() -> Harness {
    Harness::with(Setup { config: with_callers, ..Setup::default() }).await
}

fn search(requester: &str) -> String {
    query(requester).replace(
        "<urn:query><urn:queryString>SELECT Id FROM Account</urn:queryString></urn:query>",
        "<urn:search><urn:searchString>FIND {x}</urn:searchString></urn:search>",
    )
}

#[tokio::test]
async fn an_api_key_caller_within_its_grant() {
    let h = harness().await;
    let key = [("X-API-Key", SALES_KEY)];
    let a = h.get("/services/data/v58.0/x", &[("X-API-Key", SALES_KEY), ("X-Requester", ALICE)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let s = h.post("/services/Soap/u/58.0", "text/xml", &query(ALICE), &key).await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert!(h.upstream.received().iter().all(|r| !r.headers.contains_key("x-api-key")), "the key stays here");
}

#[tokio::test]
async fn the_policy_matrix_refuses_with_caller_subject_and_rule() {
    let h = harness().await;
    let key = [("X-API-Key", SALES_KEY)];
    // Operation not granted.
    let op = h.post("/services/Soap/u/58.0", "text/xml", &search(ALICE), &key).await;
    assert_eq!(op.status, 500);
    assert!(
        op.body.contains("caller &apos;sales-app&apos; may not invoke operation &apos;search&apos;")
            || op.body.contains("caller 'sales-app' may not invoke operation 'search'"),
        "{}",
        op.body
    );
    assert!(op.body.contains(">forbidden</oe:error>"), "{}", op.body);
    // Route not granted.
    let route = h.get("/fixed/x", &[("X-API-Key", SALES_KEY), ("X-Requester", ALICE)]).await;
    assert_eq!(route.status, 403);
    assert_eq!(route.json()["code"], "forbidden");
    assert!(route.json()["detail"].as_str().unwrap().contains("may not use route 'fixed-rest'"));
    // Subject not granted: ops@ maps to integration@corp.example.com, outside *@corp.example.com.sandbox.
    let subject =
        h.get("/services/data/v58.0/x", &[("X-API-Key", SALES_KEY), ("X-Requester", "ops@corp.example.com")]).await;
    assert_eq!(subject.status, 403);
    assert!(
        subject.json()["detail"].as_str().unwrap().contains("may not act as subject 'integration@corp.example.com'"),
        "{}",
        subject.body
    );
    // The source-identified caller may act only as its one subject.
    let ops = h.get("/services/data/v58.0/x", &[("X-Requester", "ops@corp.example.com")]).await;
    assert_eq!(ops.status, 200, "{}", ops.body);
    let not_ops = h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await;
    assert_eq!(not_ops.status, 403);
    assert!(not_ops.json()["detail"].as_str().unwrap().contains("caller 'ops-box' may not act as subject"));
    // A keyed caller limited to 10.0.0.0/8 is refused from loopback.
    let remote = h.get("/services/data/v58.0/x", &[("X-API-Key", REMOTE_KEY), ("X-Requester", ALICE)]).await;
    assert_eq!(remote.status, 403);
    assert!(remote.json()["detail"].as_str().unwrap().contains("caller 'remote-app' may not call from 127.0.0.1"));
    // Only the two allowed requests did token work: one exchange each for two subjects.
    assert_eq!(h.idp.requests(), 1, "integration@ only; refused requests cost no exchange");
}

#[tokio::test]
async fn unknown_missing_and_malformed_credentials() {
    let h = harness().await;
    let wrong = h.get("/services/data/v58.0/x", &[("X-API-Key", "sk_live_guess"), ("X-Requester", ALICE)]).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["code"], "unauthenticated");
    let empty = h.get("/services/data/v58.0/x", &[("X-API-Key", " "), ("X-Requester", ALICE)]).await;
    assert_eq!(empty.status, 400);
    assert_eq!(empty.json()["code"], "malformed_credential");
    let soap = h.post("/services/Soap/u/58.0", "text/xml", &query(ALICE), &[("X-API-Key", "nope")]).await;
    assert_eq!(soap.status, 500);
    assert!(soap.body.contains(">unauthenticated</oe:error>"), "{}", soap.body);
    assert_eq!(h.idp.requests(), 0);
    assert!(h.upstream.received().is_empty());
}

fn with_limits(p: &Peers) -> String {
    format!(
        r#"{base}
[[callers]]
name = "batch"
api_key_sha256 = "{sales}"
subjects = ["*"]
requests_per_second = 2
burst = 2

[[callers]]
name = "ops-box"
sources = ["127.0.0.1/32"]
subjects = ["*"]
max_concurrent = 1
"#,
        base = default_config(p),
        sales = hex(SALES_KEY),
    )
}

#[tokio::test]
async fn over_its_rate_or_open_requests_a_caller_gets_429() {
    let h = Harness::with(Setup { config: with_limits, ..Setup::default() }).await;
    let key = [("X-API-Key", SALES_KEY), ("X-Requester", ALICE)];
    assert_eq!(h.get("/services/data/v58.0/x", &key).await.status, 200);
    assert_eq!(h.get("/services/data/v58.0/x", &key).await.status, 200);
    let third = h.get("/services/data/v58.0/x", &key).await;
    assert_eq!(third.status, 429, "{}", third.body);
    assert_eq!(third.json()["code"], "rate_limited");
    assert_eq!(third.headers["retry-after"], "1");
    let soap = h.post("/services/Soap/u/58.0", "text/xml", &query(ALICE), &[("X-API-Key", SALES_KEY)]).await;
    assert_eq!(soap.status, 429, "a SOAP caller is throttled at the HTTP level too");
    h.clock.advance(std::time::Duration::from_secs(1));
    assert_eq!(h.get("/services/data/v58.0/x", &key).await.status, 200, "the bucket refilled");

    // One open request at a time for ops-box: the second, while the first is held upstream, is refused.
    h.upstream.hold();
    let (http, url) = (h.http.clone(), h.url("/services/data/v58.0/slow"));
    let first = tokio::spawn(async move { http.get(url).header("X-Requester", ALICE).send().await.unwrap().status() });
    let arrived = h.upstream.arrived();
    wait_until("first request at the upstream", || h.upstream.arrived() == arrived + 1).await;
    let second = h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await;
    assert_eq!(second.status, 429, "{}", second.body);
    assert!(second.json()["detail"].as_str().unwrap().contains("limit of open requests"));
    h.upstream.release();
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
}

fn with_mtls(p: &Peers) -> String {
    default_config(p).replacen(
        "[server]\n",
        "[server]\ntls_certificate = \"server.pem\"\ntls_private_key = \"server.key\"\ntls_client_ca = \"client-ca.pem\"\n",
        1,
    ) + r#"
[[callers]]
name = "billing"
certificate_names = ["billing.corp.example.com"]
subjects = ["*"]
"#
}

fn client(pki: &MtlsPki, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.server_ca_pem.as_bytes()).unwrap()]);
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test]
async fn mutual_tls_identifies_the_caller_by_its_certificate() {
    let pki = mtls_pki();
    let h = Harness::with(Setup {
        config: with_mtls,
        files: vec![
            ("server.pem", pki.server_pem.clone(), false),
            ("server.key", pki.server_key_pem.clone(), true),
            ("client-ca.pem", pki.client_ca_pem.clone(), false),
        ],
        ..Setup::default()
    })
    .await;
    let url = format!("https://127.0.0.1:{}/services/data/v58.0/x", h.proxy.port());
    let billing = client(&pki, Some((&pki.client_pem, &pki.client_key_pem)));
    let r = billing.get(&url).header("X-Requester", ALICE).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // No certificate (and no key, and no source grant): 401.
    let anonymous = client(&pki, None);
    let r = anonymous.get(&url).header("X-Requester", ALICE).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // A certificate for the same name from a CA the proxy does not trust: refused in the handshake.
    let stranger = client(&pki, Some((&pki.stranger_pem, &pki.stranger_key_pem)));
    assert!(stranger.get(&url).header("X-Requester", ALICE).send().await.is_err());
    assert_eq!(h.idp.requests(), 1, "only the billing caller's request did token work");
}

fn with_bearer_callers(p: &Peers) -> String {
    let introspect = p.token_url.replace("/token", "/introspect");
    default_config(p).replacen(
        "[server]\n",
        &format!(
            "[server]\ncaller_introspection_url = \"{introspect}\"\ncaller_introspection_client_id = \"{CLIENT_ID}\"\ncaller_introspection_secret_file = \"caller.secret\"\n"
        ),
        1,
    ) + &format!(
        r#"
[[callers]]
name = "portal"
client_ids = ["{CLIENT_ID}"]
required_scope = "api"
subjects = ["*"]
"#
    )
}

#[tokio::test]
async fn a_bearer_token_caller_is_introspected_once_per_token() {
    let h = Harness::with(Setup {
        config: with_bearer_callers,
        files: vec![("caller.secret", format!("{CLIENT_SECRET}\n"), true)],
        ..Setup::default()
    })
    .await;
    h.idp.grant("portal-app-token-1", "portal-service");
    for _ in 0..5 {
        let a = h
            .get("/services/data/v58.0/x", &[("Authorization", "Bearer portal-app-token-1"), ("X-Requester", ALICE)])
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    assert_eq!(h.idp.introspections(), 1, "five requests with one token: one introspection");
    assert!(
        h.upstream.received().iter().all(|r| r.headers["authorization"] != "Bearer portal-app-token-1"),
        "the app's own token never reaches the SaaS"
    );
    let inactive = h.get("/services/data/v58.0/x", &[("Authorization", "Bearer forged"), ("X-Requester", ALICE)]).await;
    assert_eq!(inactive.status, 401);
    assert!(inactive.json()["detail"].as_str().unwrap().contains("not active"));
    let malformed =
        h.get("/services/data/v58.0/x", &[("Authorization", "Basic Zm9vOmJhcg=="), ("X-Requester", ALICE)]).await;
    assert_eq!(malformed.status, 400);
    // Bearer tokens are the only way in here: no token is a malformed request, as gateways answer.
    let none = h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await;
    assert_eq!(none.status, 400);
    assert!(none.json()["detail"].as_str().unwrap().contains("no bearer token"));
}

/// The uid this test runs as: the owner of a file it creates.
fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    tempfile::NamedTempFile::new().unwrap().as_file().metadata().unwrap().uid()
}

fn with_unix_socket(p: &Peers) -> String {
    default_config(p).replacen("[server]\n", "[server]\nunix_socket = \"proxy.sock\"\n", 1)
        + &format!(
            r#"
[[callers]]
name = "local-batch"
unix_uids = [{}]
subjects = ["*@corp.example.com.sandbox"]
"#,
            my_uid()
        )
}

#[tokio::test]
async fn on_the_unix_socket_the_caller_is_its_uid() {
    let h = Harness::with(Setup { config: with_unix_socket, ..Setup::default() }).await;
    let socket = h.dir.path().join("proxy.sock");
    assert_eq!(get_over_unix_socket(&socket, ALICE).await, 200);
    assert_eq!(get_over_unix_socket(&socket, "ops@corp.example.com").await, 403, "outside its subjects");
    // Over TCP the same process has no uid to show: nothing identifies it.
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 401);
}

fn with_unix_socket_for_someone_else(p: &Peers) -> String {
    with_unix_socket(p).replace(&format!("unix_uids = [{}]", my_uid()), &format!("unix_uids = [{}]", my_uid() + 1))
}

#[tokio::test]
async fn on_the_unix_socket_an_unlisted_uid_is_refused() {
    let h = Harness::with(Setup { config: with_unix_socket_for_someone_else, ..Setup::default() }).await;
    assert_eq!(get_over_unix_socket(&h.dir.path().join("proxy.sock"), ALICE).await, 401);
    assert_eq!(h.idp.requests(), 0);
}

#[tokio::test]
async fn a_bearer_token_without_the_required_scope_or_from_another_client_is_forbidden() {
    let scope: fn(&Peers) -> String =
        |p| with_bearer_callers(p).replace("required_scope = \"api\"", "required_scope = \"egress\"");
    let other: fn(&Peers) -> String = |p| {
        with_bearer_callers(p).replace(&format!("client_ids = [\"{CLIENT_ID}\"]"), "client_ids = [\"someone-else\"]")
    };
    for (config, says) in [
        (scope, "must present a token with scope 'egress'"),
        (other, &*format!("OAuth client '{CLIENT_ID}' is not a configured caller")),
    ] {
        let h = Harness::with(Setup {
            config,
            files: vec![("caller.secret", format!("{CLIENT_SECRET}\n"), true)],
            ..Setup::default()
        })
        .await;
        h.idp.grant("portal-app-token-2", "portal-service");
        let a = h
            .get("/services/data/v58.0/x", &[("Authorization", "Bearer portal-app-token-2"), ("X-Requester", ALICE)])
            .await;
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(a.json()["detail"].as_str().unwrap().contains(says), "{}", a.body);
        assert_eq!(h.idp.requests(), 0, "no token work");
    }
}
