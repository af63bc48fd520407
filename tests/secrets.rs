//! No access token, assertion or key material in any log line (at TRACE, every crate), response
//! or `Debug` output, across successes and failures.
// A panic in a test is a failed test: unwrap freely here.
#![allow(clippy::unwrap_used)]

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_responses_or_debug() {
    let logs = Captured::install(tracing::Level::TRACE);

    // With introspection, so the client secret is in play too.
    let h = Harness::with(Setup { introspection: true, ..Setup::default() }).await;
    let mut answers = Vec::new();
    answers.push(h.soap11(&query(ALICE)).await);
    answers.push(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await);
    answers.push(h.get("/services/data/v58.0/x", &[("X-Requester", "bob@corp.example.com")]).await);
    // The SaaS ends every session: the next requests renew theirs and are sent once more.
    for t in &h.sessions.tokens() {
        h.sessions.revoke(t);
    }
    answers.push(h.soap11(&query(ALICE)).await);
    answers.push(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await);
    h.idp.refuse("carol@corp.example.com.sandbox");
    answers.push(h.get("/services/data/v58.0/x", &[("X-Requester", "carol@corp.example.com")]).await);
    // A SaaS that refuses even the renewed session: its fault comes back as it was.
    h.upstream.refuse_all(true);
    answers.push(h.soap11(&query(ALICE)).await);
    h.upstream.refuse_all(false);
    h.idp.fail_with(Some(500));
    answers.push(h.soap11(&query("dave@corp.example.com")).await);

    assert_eq!(answers[0].status, 200);
    assert_eq!(answers[3].status, 200, "renewed and sent once more");
    assert_eq!(answers[4].status, 200);
    assert_eq!(answers[5].status, 403);
    assert_eq!(answers[6].status, 500, "second refusal passed through");
    assert!(answers[6].body.contains("INVALID_SESSION_ID"));

    let assertions = h.idp.assertions();
    let issued = h.idp.tokens();
    // alice, bob, alice renewed, carol (refused), alice renewed again; dave never reached verification.
    assert_eq!(assertions.len(), 5);
    assert_eq!(issued.len(), 4);
    let pem = key_pem();
    let key_lines: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 32).collect();
    assert!(!key_lines.is_empty());

    let log_text = logs.text();
    assert!(log_text.contains("Request answered."), "logs were captured");
    assert!(log_text.contains("subject_refused"), "failures were logged");
    let debug = format!("{:?}", h.app);
    assert!(debug.contains("SigningKey"), "Debug shows the structure");
    let responses: String = answers.iter().map(|a| format!("{:?}\n{}\n", a.headers, a.body)).collect();

    for (name, text) in [("logs", &log_text), ("Debug", &debug), ("responses", &responses)] {
        for t in &issued {
            assert!(!text.contains(t.as_str()), "access token in {name}");
            // Not even a long piece of one.
            assert!(!text.contains(&t[t.len() - 20..]), "access token fragment in {name}");
        }
        for a in &assertions {
            assert!(!text.contains(a.as_str()), "assertion in {name}");
            let signature = a.rsplit('.').next().unwrap();
            assert!(!text.contains(signature), "assertion signature in {name}");
        }
        assert!(!text.contains(CLIENT_SECRET), "client secret in {name}");
        for line in &key_lines {
            assert!(!text.contains(line), "private key material in {name}");
        }
    }
}
