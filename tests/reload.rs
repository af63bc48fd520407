//! Live reload and the admin listener: 50 reloads under continuous load with no failed request,
//! each taking effect; a config with errors refused while the old one serves; requests in flight
//! finishing on the config they started with; tokens kept for unchanged provider identities;
//! `/metrics`, `/healthz`, `/readyz`.

// A panic in a test is a failed test: unwrap freely here.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use support::*;

/// The default config with an admin listener and `extra` appended (more routes).
fn config_with(peers: &Peers, extra: &str) -> String {
    let mut text = default_config(peers).replacen("[subjects]", &format!("{extra}\n[subjects]"), 1);
    text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    text
}

fn admin_config(peers: &Peers) -> String {
    config_with(peers, "")
}

/// A REST route `name` at `/name` to the loopback upstream.
fn extra_route(peers: &Peers, name: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath = \"/{name}\"\nkind = \"rest\"\nprovider = \"salesforce\"\nupstream = \"{}\"\n",
        peers.upstream
    )
}

fn peers(h: &Harness) -> Peers {
    Peers { token_url: h.idp.token_url(), upstream: h.upstream.url() }
}

async fn admin_post(h: &Harness, path: &str) -> (u16, String) {
    let url = format!("http://{}{}", h.admin.unwrap(), path);
    let r = h.http.post(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn admin_get(h: &Harness, path: &str) -> (u16, String) {
    let url = format!("http://{}{}", h.admin.unwrap(), path);
    let r = h.http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn rest_status(h: &Harness, path: &str) -> u16 {
    h.get(path, &[("X-Requester", ALICE)]).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_load_fail_no_request_and_each_takes_effect() {
    let h = Arc::new(Harness::with(Setup { config: admin_config, ..Setup::default() }).await);
    let p = peers(&h);
    assert_eq!(h.soap11(&query(ALICE)).await.status, 200);
    let exchanges_before = h.idp.issued();

    // Continuous load: SOAP and REST requests from 4 clients until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (h, stop, done, failed) = (Arc::clone(&h), Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failed));
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let status = if i % 2 == 0 {
                    h.soap11(&query(ALICE)).await.status
                } else {
                    h.get("/fixed/x", &[("X-Requester", ALICE)]).await.status
                };
                if status != 200 {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let mut during = 0;
    for i in 0..50 {
        let name = format!("gen{i}");
        assert_eq!(rest_status(&h, &format!("/{name}/x")).await, 404, "route {name} before its reload");
        std::fs::write(&h.config_path, config_with(&p, &extra_route(&p, &name))).unwrap();
        let before = done.load(Ordering::SeqCst);
        let (status, body) = admin_post(&h, "/reload").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"reloaded\":true"), "{body}");
        assert_eq!(rest_status(&h, &format!("/{name}/x")).await, 200, "route {name} after its reload");
        during += done.load(Ordering::SeqCst) - before;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0, "failed requests during 50 reloads");
    assert!(during > 0, "the load ran while reloading");
    assert!(done.load(Ordering::SeqCst) >= 50, "{} requests", done.load(Ordering::SeqCst));
    assert_eq!(h.idp.issued(), exchanges_before, "the provider's identity never changed: its token was kept");
}

#[tokio::test]
async fn a_config_with_errors_is_refused_and_the_running_one_stays() {
    let h = Harness::with(Setup { config: admin_config, ..Setup::default() }).await;
    let p = peers(&h);
    let broken = config_with(
        &p,
        "[[routes]]\nname = \"bad\"\npath = \"/bad\"\nkind = \"rest\"\nprovider = \"nobody\"\nupstream = \"instance_url\"\n",
    );
    std::fs::write(&h.config_path, broken).unwrap();
    let (status, body) = admin_post(&h, "/reload").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("oauth-egress.toml:"), "errors name the file and line: {body}");
    assert!(body.contains("nobody"), "{body}");
    assert_eq!(h.soap11(&query(ALICE)).await.status, 200, "the running config still serves");
    assert_eq!(rest_status(&h, "/bad/x").await, 404);

    std::fs::write(&h.config_path, "this is [not toml").unwrap();
    let (status, body) = admin_post(&h, "/reload").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(h.soap11(&query(ALICE)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_the_config_it_started_with() {
    let h = Harness::with(Setup { config: admin_config, ..Setup::default() }).await;
    let p = peers(&h);
    std::fs::write(&h.config_path, config_with(&p, &extra_route(&p, "old"))).unwrap();
    assert_eq!(admin_post(&h, "/reload").await.0, 200);
    assert_eq!(rest_status(&h, "/old/x").await, 200);

    h.upstream.hold();
    let arrived = h.upstream.arrived();
    let url = h.url("/old/x");
    let http = h.http.clone();
    let in_flight =
        tokio::spawn(async move { http.get(url).header("X-Requester", ALICE).send().await.unwrap().status() });
    wait_until("the request reaches the upstream", || h.upstream.arrived() > arrived).await;
    // The route it uses goes away while it waits upstream.
    std::fs::write(&h.config_path, admin_config(&p)).unwrap();
    assert_eq!(admin_post(&h, "/reload").await.0, 200);
    assert_eq!(rest_status(&h, "/old/x").await, 404, "new requests see the new config");
    h.upstream.release();
    assert_eq!(in_flight.await.unwrap().as_u16(), 200, "the request in flight completed");
}

#[tokio::test]
async fn tokens_are_kept_for_providers_whose_identity_did_not_change() {
    let h = Harness::with(Setup { config: admin_config, ..Setup::default() }).await;
    let p = peers(&h);
    assert_eq!(h.soap11(&query(ALICE)).await.status, 200);
    assert_eq!(h.idp.issued(), 1);

    // Renamed provider, same endpoint, client, audience, scope and key: same identity.
    let renamed = admin_config(&p).replace("\"salesforce\"", "\"sf-prod\"");
    std::fs::write(&h.config_path, renamed).unwrap();
    let (status, body) = admin_post(&h, "/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"new_identities\":[]"), "{body}");
    assert_eq!(h.soap11(&query(ALICE)).await.status, 200);
    assert_eq!(h.idp.issued(), 1, "the token survived the reload");

    // A scope makes another identity: its tokens start afresh.
    let scoped = admin_config(&p).replacen("kid = \"test-key-1\"\n", "kid = \"test-key-1\"\nscope = \"api\"\n", 1);
    std::fs::write(&h.config_path, scoped).unwrap();
    let (status, body) = admin_post(&h, "/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"new_identities\":[\"salesforce\"]"), "{body}");
    assert_eq!(h.soap11(&query(ALICE)).await.status, 200);
    assert_eq!(h.idp.issued(), 2, "a new identity gets a new token");

    // A change that needs a restart is reported, and the rest applies.
    let moved =
        admin_config(&p).replacen("listen = \"127.0.0.1:0\"\nmax_body", "listen = \"127.0.0.1:1\"\nmax_body", 1);
    std::fs::write(&h.config_path, moved).unwrap();
    let (status, body) = admin_post(&h, "/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("server.listen"), "{body}");
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let mut h = Harness::with(Setup { config: admin_config, ..Setup::default() }).await;
    assert_eq!(admin_get(&h, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(admin_get(&h, "/readyz").await, (200, "ready\n".to_owned()));
    assert_eq!(admin_get(&h, "/nothing").await.0, 404);
    assert_eq!(admin_post(&h, "/metrics").await.0, 405);

    assert_eq!(h.soap11(&query(ALICE)).await.status, 200);
    assert_eq!(h.soap11(&query(ALICE)).await.status, 200);
    let wrong = query(ALICE).replace("<urn:queryString>SELECT Id FROM Account</urn:queryString>", "");
    assert_eq!(h.soap11(&wrong).await.status, 500);
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
    // Past the renewal point (session lifetime 2 h, renew 5 min before; used within every idle
    // hour): served, and renewed behind.
    for seconds in [3000, 3000, 1000] {
        h.clock.advance(std::time::Duration::from_secs(seconds));
        assert_eq!(h.soap11(&query(ALICE)).await.status, 200);
    }
    // The upstream refuses the session: renegotiated once, and its refusal passed through.
    h.upstream.refuse_all(true);
    h.soap11(&query(ALICE)).await;
    h.upstream.refuse_all(false);

    let url = format!("http://{}/metrics", h.admin.unwrap());
    let response = h.http.get(url).send().await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    for series in [
        "oauth_egress_requests_total{route=\"sf-soap\",operation=\"query\",status=\"200\"}",
        "oauth_egress_requests_total{route=\"sf-soap\",operation=\"\",status=\"500\"}",
        "oauth_egress_requests_total{route=\"sf-rest\",operation=\"\",status=\"200\"}",
        "oauth_egress_request_duration_seconds_bucket{le=",
        "oauth_egress_token_cache_total{outcome=\"miss\"}",
        "oauth_egress_token_cache_total{outcome=\"hit\"}",
        "oauth_egress_token_cache_total{outcome=\"refresh_ahead\"}",
        "oauth_egress_token_cache_total{outcome=\"renegotiation\"}",
        "oauth_egress_idp_exchanges_total{provider=\"salesforce\",outcome=\"ok\"}",
        "oauth_egress_idp_exchange_duration_seconds_count{provider=\"salesforce\"}",
        "oauth_egress_validation_rejections_total{code=\"schema_violation\",rule=\"missing_element\"}",
        "oauth_egress_breaker_open{provider=\"salesforce\"} 0",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    assert!(!text.contains(ALICE), "no subject in metrics");
    // Counted, not only named: this test's own answers are in the series (other tests of this
    // file may add to them while it runs).
    let count = |series: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(series)).unwrap_or_default();
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    assert!(count("oauth_egress_requests_total{route=\"sf-soap\",operation=\"query\",status=\"200\"}") >= 5, "{text}");
    assert!(count("oauth_egress_requests_total{route=\"sf-rest\",operation=\"\",status=\"200\"}") >= 1, "{text}");
    assert!(count("oauth_egress_requests_total{route=\"sf-soap\",operation=\"\",status=\"500\"}") >= 1, "{text}");

    // While draining, the admin listener says not ready.
    h.upstream.hold();
    let arrived = h.upstream.arrived();
    let url = h.url("/fixed/x");
    let http = h.http.clone();
    let in_flight =
        tokio::spawn(async move { http.get(url).header("X-Requester", ALICE).send().await.unwrap().status() });
    wait_until("the request reaches the upstream", || h.upstream.arrived() > arrived).await;
    h.begin_shutdown();
    let admin = h.admin.unwrap();
    let mut readyz = 200;
    // `run` marks itself not ready as soon as shutdown is asked; ask until it has.
    for _ in 0..10_000 {
        readyz = h.http.get(format!("http://{admin}/readyz")).send().await.unwrap().status().as_u16();
        if readyz == 503 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(readyz, 503, "not ready once shutting down");
    h.upstream.release();
    assert_eq!(in_flight.await.unwrap().as_u16(), 200, "the request in flight completed");
    h.shutdown().await;
}
