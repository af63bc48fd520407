//! Every authorisation decision is one `audit` log line with caller, subject, route, operation,
//! decision, the broken rule and the request id.

// A panic in a test is a failed test: unwrap freely here.
#![allow(clippy::unwrap_used)]

mod support;

use support::*;

fn with_caller(p: &Peers) -> String {
    default_config(p)
        + r#"
[[callers]]
name = "ops-box"
sources = ["127.0.0.1/32"]
subjects = ["*@corp.example.com.sandbox"]
operations = ["query"]
"#
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_decision_is_one_audit_line() {
    let logs = Captured::install(tracing::Level::INFO);
    let h = Harness::with(Setup { config: with_caller, ..Setup::default() }).await;
    let allowed = h.post("/services/Soap/u/58.0", "text/xml", &query(ALICE), &[("X-Request-Id", "req-allow-1")]).await;
    assert_eq!(allowed.status, 200);
    let denied = h
        .get("/services/data/v58.0/x", &[("X-Requester", "ops@corp.example.com"), ("X-Request-Id", "req-deny-2")])
        .await;
    assert_eq!(denied.status, 403);

    // A request that is no caller at all (a key nobody has) is a decision too.
    let unknown = h.get("/services/data/v58.0/x", &[("X-API-Key", "guess"), ("X-Request-Id", "req-unknown-3")]).await;
    assert_eq!(unknown.status, 401);
    let text = logs.text();
    let audit: Vec<&str> = text.lines().filter(|l| l.contains(" audit: ")).collect();
    assert_eq!(audit.len(), 3, "{text}");
    let stranger = audit.iter().find(|l| l.contains("request_id=req-unknown-3")).unwrap();
    assert!(
        stranger.contains("decision=\"deny\"") && stranger.contains("not one of a configured caller"),
        "{stranger}"
    );
    let allow = audit.iter().find(|l| l.contains("request_id=req-allow-1")).unwrap();
    for part in [
        "caller=ops-box",
        "subject=alice@corp.example.com.sandbox",
        "route=sf-soap",
        "operation=\"query\"",
        "decision=\"allow\"",
    ] {
        assert!(allow.contains(part), "{part} in {allow}");
    }
    let deny = audit.iter().find(|l| l.contains("request_id=req-deny-2")).unwrap();
    for part in [
        "caller=ops-box",
        "subject=integration@corp.example.com",
        "route=sf-rest",
        "decision=\"deny\"",
        "may not act as subject",
    ] {
        assert!(deny.contains(part), "{part} in {deny}");
    }
}
