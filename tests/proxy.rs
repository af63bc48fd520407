//! The core pipeline over real loopback sockets: SOAP and REST calls in, assertion verified by the
//! token endpoint, credential checked by the upstream, answers back; and every error path.
// A panic in a test is a failed test: unwrap freely here.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::*;

// === SOAP ===

const HEALTH_ACTION: &str = "\"http://www.interhome.com/webservice/CheckServerHealth\"";

#[tokio::test]
async fn soap11_session_email_becomes_a_token_and_the_answer_comes_back() {
    let h = Harness::start().await;
    let envelope = query(ALICE);
    let a = h.soap11(&envelope).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains(&format!("<sf:Username>{ALICE_SUB}</sf:Username>")), "{}", a.body);
    assert!(a.content_type().starts_with("text/xml"));

    let got = h.upstream.received();
    assert_eq!(got.len(), 1);
    let forwarded = String::from_utf8(got[0].body.to_vec()).unwrap();
    // The upstream accepted the session as alice's: it is a token the endpoint issued for her.
    assert_eq!(got[0].subject.as_deref(), Some(ALICE_SUB));
    assert!(!forwarded.contains(ALICE), "the email must not reach the SaaS");
    // Everything but the session text is byte for byte what the app sent.
    let token = &h.sessions.tokens()[0];
    assert_eq!(forwarded, envelope.replace(ALICE, token));
    // With its exact length, not chunked.
    let length = got[0].headers.get("content-length").and_then(|v| v.to_str().ok());
    assert_eq!(length, Some(forwarded.len().to_string().as_str()));
    assert!(got[0].headers.get("transfer-encoding").is_none());
    assert_eq!(got[0].uri.path(), "/services/Soap/u/58.0");
    assert_eq!(h.idp.issued(), 1);
}

#[tokio::test]
async fn soap_endpoint_path_and_query_are_kept_on_the_instance() {
    let h = Harness::start().await;
    let a = h.post("/services/Soap/u/58.0/00D000000000001?x=1", "text/xml", &query(ALICE), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let got = h.upstream.received();
    assert_eq!(got[0].uri.to_string(), "/services/Soap/u/58.0/00D000000000001?x=1");
}

#[tokio::test]
async fn soap12_with_header_requester_gets_a_created_session_header() {
    let h = Harness::with(Setup { upstream_session_element: "Password", ..Setup::default() }).await;
    let envelope = r#"<?xml version="1.0" encoding="utf-8"?>
<soap12:Envelope xmlns:soap12="http://www.w3.org/2003/05/soap-envelope">
  <soap12:Body>
    <Availability xmlns="http://www.interhome.com/webservice"><inputValue><AccommodationCode>CH3920.100.1</AccommodationCode></inputValue></Availability>
  </soap12:Body>
</soap12:Envelope>"#;
    let a = h.post("/interhome", "application/soap+xml; charset=utf-8", envelope, &[("X-Requester", ALICE)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.content_type().starts_with("application/soap+xml"));
    let got = h.upstream.received();
    assert_eq!(got[0].subject.as_deref(), Some(ALICE_SUB));
    assert!(!got[0].headers.contains_key("x-requester"), "requester header must be stripped");
    let forwarded = String::from_utf8(got[0].body.to_vec()).unwrap();
    let token = &h.sessions.tokens()[0];
    assert!(
        forwarded.contains(&format!(
            r#"<soap12:Header><ServiceAuthHeader xmlns="http://www.interhome.com/webservice"><Password>{token}</Password></ServiceAuthHeader></soap12:Header><soap12:Body>"#
        )),
        "{forwarded}"
    );
    // The fixed upstream got the request path appended to its base.
    assert_eq!(got[0].uri.path(), "/interhome");
}

#[tokio::test]
async fn soap_empty_session_element_is_filled() {
    let h = Harness::with(Setup { upstream_session_element: "Password", ..Setup::default() }).await;
    let envelope = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:i="http://www.interhome.com/webservice"><s:Header><i:ServiceAuthHeader><i:Username>x</i:Username><i:Password/></i:ServiceAuthHeader></s:Header><s:Body><i:CheckServerHealth/></s:Body></s:Envelope>"#;
    let a = h.post("/interhome", "text/xml", envelope, &[("X-Requester", ALICE), ("SOAPAction", HEALTH_ACTION)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let forwarded = String::from_utf8(h.upstream.received()[0].body.to_vec()).unwrap();
    let token = &h.sessions.tokens()[0];
    assert_eq!(forwarded, envelope.replace("<i:Password/>", &format!("<i:Password>{token}</i:Password>")));
}

#[tokio::test]
async fn soap_entities_in_the_requester_are_decoded_and_the_table_applies() {
    let h = Harness::start().await;
    let envelope = query("ops@corp.example.com").replace("ops@", "&#111;ps@");
    let a = h.soap11(&envelope).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(h.upstream.received()[0].subject.as_deref(), Some("integration@corp.example.com"));
}

// === REST ===

#[tokio::test]
async fn rest_gets_bearer_and_loses_requester_and_callers_credentials() {
    let h = Harness::start().await;
    let a = h
        .get(
            "/services/data/v58.0/query?q=SELECT+Id+FROM+Account",
            &[("X-Requester", ALICE), ("Authorization", "Bearer caller-own"), ("X-Trace", "t1")],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["records"][0]["Username"], ALICE_SUB);
    let got = &h.upstream.received()[0];
    let token = &h.sessions.tokens()[0];
    assert_eq!(got.headers["authorization"], format!("Bearer {token}").as_str());
    assert!(!got.headers.contains_key("x-requester"));
    assert_eq!(got.headers["x-trace"], "t1");
    assert_eq!(got.uri.to_string(), "/services/data/v58.0/query?q=SELECT+Id+FROM+Account");
    assert!(a.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn a_caller_that_half_closes_after_its_request_still_gets_the_answer() {
    // Some clients shut down their sending side once the request is out (`Connection: close`
    // style). The answer is still theirs: the proxy does not take the end of their sending for
    // the end of the exchange. (It also does not read ahead while a request is in flight.)
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start().await;
    let mut stream = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    let request = format!(
        "GET /services/data/v58.0/query?q=SELECT+Id+FROM+Account HTTP/1.1\r\nHost: proxy\r\nX-Requester: {ALICE}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains(ALICE_SUB), "{answer}");
    assert_eq!(h.upstream.received().len(), 1);
}

#[tokio::test]
async fn rest_fixed_upstream_keeps_its_base_path() {
    let h = Harness::start().await;
    let a = h.post("/fixed/things?a=b", "application/json", r#"{"n":1}"#, &[("X-Requester", ALICE)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let got = &h.upstream.received()[0];
    assert_eq!(got.uri.to_string(), "/base/fixed/things?a=b");
    assert_eq!(&got.body[..], br#"{"n":1}"#);
}

#[tokio::test]
async fn large_responses_stream_through_unchanged() {
    let h = Harness::start().await;
    let size = 3 * 1024 * 1024 + 17;
    let r = h
        .http
        .get(h.url(&format!("/services/data/v58.0/blob?bytes={size}")))
        .header("X-Requester", ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), size);
    assert!(body.iter().enumerate().all(|(i, b)| *b == b'a' + (i % 26) as u8));
}

#[tokio::test]
async fn soap_and_rest_for_one_subject_share_one_token() {
    let h = Harness::start().await;
    assert_eq!(h.soap11(&query(ALICE)).await.status, 200);
    assert_eq!(h.get("/services/data/v58.0/limits", &[("X-Requester", ALICE)]).await.status, 200);
    assert_eq!(h.get("/services/data/v58.0/limits", &[("X-Requester", "bob@corp.example.com")]).await.status, 200);
    assert_eq!(h.idp.issued(), 2, "one exchange per subject");
}

#[tokio::test]
async fn https_upstream_with_a_private_ca_in_ca_files() {
    let h = Harness::with(Setup { tls_upstream: true, trust_test_ca: true, ..Setup::default() }).await;
    assert!(h.upstream.url().starts_with("https://"));
    let a = h.soap11(&query(ALICE)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(h.upstream.received()[1].subject.as_deref(), Some(ALICE_SUB));

    // The same upstream without the CA trusted: the certificate is refused, nothing is sent.
    let untrusted = Harness::with(Setup { tls_upstream: true, ..Setup::default() }).await;
    let a = untrusted.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert!(a.body.contains("upstream_unreachable"), "{}", a.body);
    assert!(untrusted.upstream.received().is_empty());
}

// === tokens ===

#[tokio::test]
async fn a_hundred_concurrent_first_requests_cause_one_exchange() {
    let h = Harness::start().await;
    h.idp.hold();
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let (http, url) = (h.http.clone(), h.url(&format!("/services/data/v58.0/sobjects/{i}")));
            tokio::spawn(
                async move { http.get(url).header("X-Requester", ALICE).send().await.map(|r| r.status().as_u16()) },
            )
        })
        .collect();
    // All 100 are inside the proxy, waiting on the token, before the endpoint answers anything.
    wait_until("100 requests waiting on one exchange", || {
        h.app.store().stats().waiting == 100 && h.idp.requests() >= 1
    })
    .await;
    assert_eq!(h.idp.requests(), 1);
    h.idp.release();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 200);
    }
    assert_eq!(h.idp.requests(), 1);
    assert_eq!(h.idp.issued(), 1);
    assert_eq!(h.upstream.received().len(), 100);
}

#[tokio::test]
async fn expiry_causes_a_new_exchange_and_the_new_token_is_used() {
    // Salesforce-like: no expires_in, so the configured session_lifetime (2h) applies.
    let h = Harness::start().await;
    assert_eq!(h.soap11(&query(ALICE)).await.status, 200);
    let first = h.sessions.tokens();
    h.clock.advance(Duration::from_secs(2 * 3600 + 1));
    assert_eq!(h.soap11(&query(ALICE)).await.status, 200);
    assert_eq!(h.idp.issued(), 2);
    let got = h.upstream.received();
    let second_body = String::from_utf8(got[1].body.to_vec()).unwrap();
    assert!(!second_body.contains(&first[0]), "expired token must not be sent");
}

#[tokio::test]
async fn within_the_renewal_margin_the_old_token_serves_while_one_renewal_runs() {
    // Okta-like: expires_in = 600 s; renew_before defaults to 5 m, so renewal starts at 300 s.
    let h = Harness::with(Setup { expires_in: Some(600), ..Setup::default() }).await;
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
    h.clock.advance(Duration::from_secs(400));
    h.idp.hold();
    // Served at once with the current token although the endpoint is holding its answers.
    for _ in 0..5 {
        assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
    }
    assert_eq!(h.idp.requests(), 2, "exactly one renewal started");
    h.idp.release();
    wait_until("renewal stored", || h.app.store().stats().exchanges_in_flight == 0).await;
    assert_eq!(h.idp.issued(), 2);
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
    let got = h.upstream.received();
    assert_ne!(got[0].headers["authorization"], got[6].headers["authorization"], "renewed token in use");
}

// === errors ===

fn assert_soap11_fault(a: &Answer, code: &str, says: &str) {
    assert_eq!(a.status, 500, "{}", a.body);
    assert!(a.content_type().starts_with("text/xml"), "{}", a.content_type());
    assert!(a.body.contains("<faultcode>soapenv:Client</faultcode>"), "{}", a.body);
    assert!(a.body.contains(&format!(">{code}</oe:error>")), "{}", a.body);
    assert!(a.body.contains(says), "{}", a.body);
}

fn assert_problem(a: &Answer, status: u16, code: &str, says: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.content_type(), "application/problem+json");
    let p = a.json();
    assert_eq!(p["status"], status);
    assert_eq!(p["code"], code);
    assert!(p["detail"].as_str().unwrap().contains(says), "{}", a.body);
}

#[tokio::test]
async fn missing_requester() {
    let h = Harness::start().await;
    let no_header = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com"><soapenv:Body><urn:query><urn:queryString>x</urn:queryString></urn:query></soapenv:Body></soapenv:Envelope>"#;
    assert_soap11_fault(
        &h.soap11(no_header).await,
        "missing_requester",
        "the envelope has no Header/SessionHeader/sessionId",
    );
    assert_problem(
        &h.get("/services/data/v58.0/x", &[]).await,
        400,
        "missing_requester",
        "header x-requester is absent",
    );
    let empty = query("");
    assert_soap11_fault(&h.soap11(&empty).await, "invalid_requester", "requester is empty");
    assert_eq!(h.idp.requests(), 0, "no token work for a refused request");
}

#[tokio::test]
async fn unmapped_subject_is_refused_before_any_token_work() {
    let h = Harness::start().await;
    assert_soap11_fault(
        &h.soap11(&query("mallory")).await,
        "unmapped_subject",
        "no subject mapping for requester 'mallory'",
    );
    assert_problem(
        &h.get("/services/data/v58.0/x", &[("X-Requester", "mallory")]).await,
        403,
        "unmapped_subject",
        "'mallory'",
    );
    assert_eq!(h.idp.requests(), 0);
    assert!(h.upstream.received().is_empty());
}

#[tokio::test]
async fn idp_invalid_grant_is_403_with_the_idp_words() {
    let h = Harness::start().await;
    h.idp.refuse(ALICE_SUB);
    let a = h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await;
    assert_problem(&a, 403, "subject_refused", "user hasn't approved this consumer");
    assert_eq!(a.json()["idp_error"], "invalid_grant");
    assert_eq!(a.json()["idp_error_description"], "user hasn't approved this consumer");
    let s = h.soap11(&query(ALICE)).await;
    assert_soap11_fault(&s, "subject_refused", "invalid_grant (user hasn't approved this consumer)");
    // The refusal is remembered for refused_ttl (default 60 s): the second answer came from memory.
    assert_eq!(h.idp.requests(), 1);
    for _ in 0..10 {
        assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 403);
    }
    assert_eq!(h.idp.requests(), 1, "a refused user does not turn requests into exchanges");
    // Once the memory lapses the endpoint is asked again; another subject was never affected.
    h.clock.advance(Duration::from_secs(61));
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 403);
    assert_eq!(h.idp.requests(), 2);
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", "bob@corp.example.com")]).await.status, 200);
    assert_eq!(h.upstream.received().len(), 1);
}

#[tokio::test]
async fn idp_retry_after_is_honoured_and_the_breaker_opens_and_closes() {
    let h = Harness::with(Setup {
        config: |p| {
            default_config(p)
                .replace("retry_deadline = \"1s\"", "retry_deadline = \"5s\"")
                .replace("breaker_failures = 1000", "breaker_failures = 3\nbreaker_cooldown = \"30s\"")
        },
        ..Setup::default()
    })
    .await;
    // 429 with Retry-After: 1 once, then a token: the request waits it out and succeeds.
    h.idp.fail_times(1, 429, Some(1));
    let started = std::time::Instant::now();
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
    assert_eq!(h.idp.requests(), 2);

    // The endpoint fails every attempt: after 3 the breaker opens and new exchanges fail fast.
    h.idp.fail_with(Some(503));
    let a = h.get("/services/data/v58.0/x", &[("X-Requester", "bob@corp.example.com")]).await;
    assert_eq!(a.status, 503, "{}", a.body);
    let asked = h.idp.requests();
    assert_eq!(asked, 2 + 3, "three attempts, then the breaker opened");
    let fast = h.get("/services/data/v58.0/x", &[("X-Requester", "carol@corp.example.com")]).await;
    assert_eq!(fast.status, 503);
    assert!(fast.json()["detail"].as_str().unwrap().contains("new exchanges pause"), "{}", fast.body);
    let wait: u64 = fast.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert_eq!(h.idp.requests(), asked, "no attempt while open");
    // Subjects with a valid token keep flowing during the outage.
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);

    // After the cool-down one probe goes through; the endpoint is back, so the breaker closes.
    h.idp.fail_with(None);
    h.clock.advance(Duration::from_secs(31));
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", "carol@corp.example.com")]).await.status, 200);
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", "dave@corp.example.com")]).await.status, 200);
    assert_eq!(h.idp.requests(), asked + 2);
}

#[tokio::test]
async fn idp_down_or_failing() {
    let h = Harness::start().await;
    h.idp.fail_with(Some(500));
    let a = h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await;
    assert_problem(&a, 503, "idp_unavailable", "HTTP 500");
    assert!(a.headers.contains_key("retry-after"));
    assert!(h.idp.requests() >= 2, "retried within the deadline");
    h.idp.fail_with(Some(503));
    let s = h.soap11(&query(ALICE)).await;
    assert_eq!(s.status, 500);
    assert!(
        s.body.contains("<faultcode>soapenv:Server</faultcode>") && s.body.contains("idp_unavailable"),
        "{}",
        s.body
    );
    h.idp.fail_with(None);
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);

    // Nothing listens on the token endpoint at all.
    let down = Harness::with(Setup {
        config: |p| {
            default_config(&Peers {
                token_url: format!("http://127.0.0.1:{}/token", closed_port()),
                upstream: p.upstream.clone(),
            })
        },
        ..Setup::default()
    })
    .await;
    assert_problem(
        &down.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await,
        503,
        "idp_unavailable",
        "unreachable",
    );
}

#[tokio::test]
async fn upstream_unreachable_is_502() {
    let h = Harness::with(Setup {
        config: |p| {
            default_config(&Peers {
                token_url: p.token_url.clone(),
                upstream: format!("http://127.0.0.1:{}", closed_port()),
            })
        },
        ..Setup::default()
    })
    .await;
    assert_problem(&h.get("/fixed/x", &[("X-Requester", ALICE)]).await, 502, "upstream_unreachable", "unreachable");
    let envelope = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><CheckServerHealth xmlns="http://www.interhome.com/webservice"/></s:Body></s:Envelope>"#;
    let a = h.post("/interhome", "text/xml", envelope, &[("X-Requester", ALICE), ("SOAPAction", HEALTH_ACTION)]).await;
    assert_eq!(a.status, 500);
    assert!(a.body.contains("soapenv:Server") && a.body.contains("upstream_unreachable"), "{}", a.body);
}

static SILENT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// `config` with `[server] upstream_timeout` set.
fn with_upstream_timeout(config: String, timeout: &str) -> String {
    config.replace("max_body = \"1 MiB\"", &format!("max_body = \"1 MiB\"\nupstream_timeout = \"{timeout}\""))
}

/// The default config with a 500 ms upstream timeout, its fixed upstream the silent one.
fn silent_config(p: &Peers) -> String {
    let port = SILENT_PORT.load(std::sync::atomic::Ordering::SeqCst);
    let upstream = format!("http://127.0.0.1:{port}");
    with_upstream_timeout(default_config(&Peers { token_url: p.token_url.clone(), upstream }), "500ms")
}

/// An upstream that takes connections, reads what comes and never answers: the deadline for the
/// answer's head is a 504 (problem or SOAP Server fault) naming the timeout.
#[tokio::test]
async fn an_upstream_that_never_answers_is_504_at_the_deadline() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    SILENT_PORT.store(listener.local_addr().unwrap().port(), std::sync::atomic::Ordering::SeqCst);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
            });
        }
    });
    let h = Harness::with(Setup { config: silent_config, ..Setup::default() }).await;
    let started = std::time::Instant::now();
    assert_problem(&h.get("/fixed/x", &[("X-Requester", ALICE)]).await, 504, "upstream_timeout", "within 500ms");
    assert!(started.elapsed() >= Duration::from_millis(500));
    let envelope = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><CheckServerHealth xmlns="http://www.interhome.com/webservice"/></s:Body></s:Envelope>"#;
    let a = h.post("/interhome", "text/xml", envelope, &[("X-Requester", ALICE), ("SOAPAction", HEALTH_ACTION)]).await;
    assert_eq!(a.status, 500);
    assert!(a.body.contains("soapenv:Server") && a.body.contains("upstream_timeout"), "{}", a.body);
}

/// The upstream's deadline counts from the request going out: a token exchange that took longer
/// than the upstream timeout leaves the upstream its whole time.
#[tokio::test]
async fn a_slow_token_exchange_does_not_eat_the_upstreams_time() {
    let h = Harness::with(Setup { config: |p| with_upstream_timeout(default_config(p), "300ms"), ..Setup::default() })
        .await;
    h.idp.hold();
    let request = h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]);
    let release = async {
        wait_until("the exchange reached the token endpoint", || h.idp.requests() >= 1).await;
        // What is tested: an exchange longer than the upstream timeout.
        tokio::time::sleep(Duration::from_millis(500)).await;
        h.idp.release();
    };
    let (a, ()) = tokio::join!(request, release);
    assert_eq!(a.status, 200, "{}", a.body);
}

/// What a bare upstream saw: connections accepted, requests that carried a bearer token, and
/// connections it closed on `close_idle`.
struct Bare {
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    bearers: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    closed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    close_idle: tokio::sync::broadcast::Sender<()>,
}

/// A bare HTTP/1.1 upstream on `listener`: answers `ok` to each GET and keeps the connection;
/// on `close_idle` it closes every connection between requests without a word (no `Connection:
/// close`), as an upstream's idle timeout does.
fn bare_upstream(listener: tokio::net::TcpListener) -> Bare {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (close_idle, _) = tokio::sync::broadcast::channel(16);
    let bare = Bare {
        connections: Arc::new(AtomicUsize::new(0)),
        bearers: Arc::new(AtomicUsize::new(0)),
        closed: Arc::new(AtomicUsize::new(0)),
        close_idle: close_idle.clone(),
    };
    let (c, b, closed) = (bare.connections.clone(), bare.bearers.clone(), bare.closed.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            c.fetch_add(1, Ordering::SeqCst);
            let (b, closed, mut close) = (b.clone(), closed.clone(), close_idle.subscribe());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        buf.drain(..end + 4);
                        if head.contains("\r\nauthorization: bearer ") {
                            b.fetch_add(1, Ordering::SeqCst);
                        }
                        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
                    }
                    tokio::select! {
                        read = stream.read(&mut chunk) => match read {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        },
                        _ = close.recv() => {
                            drop(stream);
                            closed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            });
        }
    });
    bare
}

static BARE_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

fn bare_config(p: &Peers) -> String {
    let port = BARE_PORT.load(std::sync::atomic::Ordering::SeqCst);
    default_config(&Peers { token_url: p.token_url.clone(), upstream: format!("http://127.0.0.1:{port}") })
}

#[tokio::test]
async fn upstream_connections_are_reused_and_one_the_upstream_closed_is_replaced() {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    BARE_PORT.store(listener.local_addr().unwrap().port(), Ordering::SeqCst);
    let bare = bare_upstream(listener);
    let h = Harness::with(Setup { config: bare_config, ..Setup::default() }).await;
    for i in 0..5 {
        let a = h.get("/fixed/x", &[("X-Requester", ALICE)]).await;
        assert_eq!((a.status, a.body.as_str()), (200, "ok"), "request {i}");
    }
    assert_eq!(bare.connections.load(Ordering::SeqCst), 1, "five requests in a row, one connection");
    assert_eq!(bare.bearers.load(Ordering::SeqCst), 5);

    // The pooled connection is closed by the upstream while idle: the next request finds it
    // closed before writing and goes out on a new connection, without failing.
    for round in 1..=3 {
        bare.close_idle.send(()).unwrap();
        wait_until("the upstream closed its idle connection", || bare.closed.load(Ordering::SeqCst) == round).await;
        let a = h.get("/fixed/x", &[("X-Requester", ALICE)]).await;
        assert_eq!((a.status, a.body.as_str()), (200, "ok"), "after close {round}");
        assert_eq!(bare.connections.load(Ordering::SeqCst), 1 + round);
    }
    assert_eq!(bare.bearers.load(Ordering::SeqCst), 8);
}

/// An upstream that answers each request as its path says, with the framing under test written
/// byte for byte; it counts connections and checks every request carried a bearer token.
fn scripted_upstream(listener: tokio::net::TcpListener) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut served = 0;
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length = head
                            .split("\r\n")
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |n| n.parse::<usize>().unwrap());
                        if buf.len() < end + 4 + length {
                            break;
                        }
                        buf.drain(..end + 4 + length);
                        assert!(head.contains("\r\nauthorization: bearer "), "{head}");
                        let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                        served += 1;
                        // Gone without a word when it is not the connection's first request: as
                        // an upstream closing an idle connection just as the request arrives.
                        if path == "/base/fixed/vanish" && served > 1 {
                            return;
                        }
                        let (answer, then_close): (&[u8], bool) = match path.as_str() {
                            "/base/fixed/chunked" => (
                                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kept: 1\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
                                false,
                            ),
                            "/base/fixed/interim" => {
                                (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\ninterim", false)
                            }
                            "/base/fixed/empty" => (b"HTTP/1.1 204 No Content\r\n\r\n", false),
                            "/base/fixed/head" => (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false),
                            "/base/fixed/close" => (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true),
                            "/base/fixed/garbage" => (b"SMTP ready\r\n\r\n", true),
                            "/base/fixed/two-lengths" => {
                                (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc", true)
                            }
                            "/base/fixed/cut" => (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort", true),
                            _ => (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
                        };
                        if stream.write_all(answer).await.is_err() || then_close {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    connections
}

static SCRIPTED_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

#[tokio::test]
async fn upstream_answers_are_framed_as_http_1_1_says_and_bad_ones_are_502() {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    SCRIPTED_PORT.store(listener.local_addr().unwrap().port(), Ordering::SeqCst);
    let connections = scripted_upstream(listener);
    let h = Harness::with(Setup {
        config: |p| {
            let port = SCRIPTED_PORT.load(Ordering::SeqCst);
            default_config(&Peers { token_url: p.token_url.clone(), upstream: format!("http://127.0.0.1:{port}") })
        },
        ..Setup::default()
    })
    .await;
    let alice = [("X-Requester", ALICE)];
    // Chunked (with an extension and a trailer), an interim 100 before the answer, no content,
    // the length of a HEAD answer without its body: each read to its end, and the one connection
    // serves them all.
    let a = h.get("/fixed/chunked", &alice).await;
    assert_eq!((a.status, a.body.as_str()), (200, "hello world"));
    assert_eq!(a.headers["x-kept"], "1");
    assert!(!a.headers.contains_key("x-trailer"));
    let a = h.get("/fixed/interim", &alice).await;
    assert_eq!((a.status, a.body.as_str()), (200, "interim"));
    let a = h.get("/fixed/empty", &alice).await;
    assert_eq!((a.status, a.body.as_str()), (204, ""));
    let head = h.http.head(h.url("/fixed/head")).header("X-Requester", ALICE).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "5");
    let a = h.get("/fixed/ok", &alice).await;
    assert_eq!((a.status, a.body.as_str()), (200, "ok"));
    assert_eq!(connections.load(Ordering::SeqCst), 1, "one connection for all of them");

    // Delimited by the close: read to the end, and that connection is not used again.
    let a = h.get("/fixed/close", &alice).await;
    assert_eq!((a.status, a.body.as_str()), (200, "until the end"));
    assert_eq!(h.get("/fixed/ok", &alice).await.status, 200);
    assert_eq!(connections.load(Ordering::SeqCst), 2);

    // Not HTTP, or a length that contradicts itself: 502, naming it.
    assert_problem(&h.get("/fixed/garbage", &alice).await, 502, "upstream_unreachable", "not HTTP/1.1");
    assert_problem(
        &h.get("/fixed/two-lengths", &alice).await,
        502,
        "upstream_unreachable",
        "conflicting Content-Length",
    );
    // A body cut short: the caller sees the answer fail, not a short answer that looks whole.
    // (The connection to the caller is cut before or after the head, as far as it had gone.)
    let cut = h.http.get(h.url("/fixed/cut")).header("X-Requester", ALICE).send().await;
    match cut {
        Ok(answer) => assert!(answer.bytes().await.is_err(), "a truncated body is an error"),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    assert_eq!(h.get("/fixed/ok", &alice).await.status, 200, "and the proxy goes on");

    // The upstream closes a reused connection on receiving the request, without answering: a
    // GET may be repeated and goes again on a new connection; a POST may have acted, and is not.
    let before = connections.load(Ordering::SeqCst);
    let a = h.get("/fixed/vanish", &alice).await;
    assert_eq!((a.status, a.body.as_str()), (200, "ok"), "the GET repeated");
    assert_eq!(connections.load(Ordering::SeqCst), before + 1);
    assert_eq!(h.get("/fixed/ok", &alice).await.status, 200);
    let a = h.post("/fixed/vanish", "application/json", "{}", &alice).await;
    assert_problem(&a, 502, "upstream_unreachable", "closed the connection without answering");
}

#[tokio::test]
async fn envelope_problems_are_client_faults_naming_the_problem() {
    let h = Harness::start().await;
    let cases = [
        ("not xml at all", "malformed_envelope", "request body is not an XML document"),
        (r#"<a xmlns="urn:x"/>"#, "malformed_envelope", "not a SOAP 1.1 or SOAP 1.2 Envelope"),
        (
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><x:launch xmlns:x="urn:partner.soap.sforce.com"/></soapenv:Body></soapenv:Envelope>"#,
            "unknown_operation",
            "{urn:partner.soap.sforce.com}launch is not an operation",
        ),
        (
            r#"<!DOCTYPE x [<!ENTITY e "boom">]><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"/>"#,
            "xml_not_allowed",
            "document type declarations",
        ),
        (
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body/><soapenv:Body/></soapenv:Envelope>"#,
            "malformed_envelope",
            "more than one Body",
        ),
    ];
    for (body, code, says) in cases {
        assert_soap11_fault(&h.soap11(body).await, code, says);
    }
    let two = query(ALICE).replace(
        "</soapenv:Header>",
        "<urn:SessionHeader><urn:sessionId>ops@corp.example.com</urn:sessionId></urn:SessionHeader></soapenv:Header>",
    );
    assert_soap11_fault(
        &h.soap11(&two).await,
        "malformed_envelope",
        "Header/SessionHeader/sessionId appears more than once",
    );
    assert_eq!(h.idp.requests(), 0);
}

#[tokio::test]
async fn soap12_envelope_on_a_soap11_only_wsdl_is_a_sender_fault() {
    let h = Harness::start().await;
    let envelope =
        query(ALICE).replace("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope");
    let a = h.post("/services/Soap/u/58.0", "application/soap+xml", &envelope, &[]).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.content_type().starts_with("application/soap+xml"));
    assert!(a.body.contains("<env:Value>env:Sender</env:Value>"), "{}", a.body);
    assert!(
        a.body.contains("SOAP 1.2 envelope, but the WSDL binds operation 'query' only over SOAP 1.1"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn oversized_body_is_413_and_unknown_path_404() {
    let h = Harness::start().await;
    let big = query(ALICE).replace("SELECT Id FROM Account", &"x".repeat(1024 * 1024 + 1));
    let a = h.soap11(&big).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.body.contains("body_too_large"));
    assert_problem(&h.get("/nowhere", &[]).await, 404, "no_route", "no route for path '/nowhere'");
    // A prefix matches at a '/' boundary only.
    assert_problem(&h.get("/fixedx", &[("X-Requester", ALICE)]).await, 404, "no_route", "/fixedx");
}

/// A caller that writes its whole request before it reads (Python's `http.client` does) still
/// gets the 413 fault for a body over the limit: the proxy reads and drops the rest of the body
/// after answering instead of resetting the connection under it.
#[tokio::test]
async fn an_oversized_body_sent_whole_before_reading_still_gets_its_fault() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start().await;
    let envelope = query(ALICE).replace("SELECT Id FROM Account", &"x".repeat(16 * 1024 * 1024));
    let head = format!(
        "POST /services/Soap/u/58.0 HTTP/1.1\r\nHost: proxy\r\nContent-Type: text/xml; charset=utf-8\r\n\
         SOAPAction: \"\"\r\nContent-Length: {}\r\n\r\n",
        envelope.len()
    );
    let mut conn = tokio::net::TcpStream::connect(h.proxy).await.expect("connected");
    conn.write_all(head.as_bytes()).await.expect("head sent");
    let sent = conn.write_all(envelope.as_bytes()).await;
    assert!(sent.is_ok(), "the envelope could not be sent whole: {sent:?}");
    let mut answer = Vec::new();
    let read = conn.read_to_end(&mut answer).await;
    assert!(read.is_ok(), "the answer could not be read: {read:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains("<faultcode>soapenv:Client</faultcode>") && answer.contains("body_too_large"), "{answer}");
}

// === the token endpoint used above can fail a wrong assertion ===

#[tokio::test]
async fn the_loopback_endpoint_rejects_replays_tampering_and_foreign_keys() {
    use oauth_egress::token::assertion::{Signer, SigningKey};
    use oauth_egress::token::client::TokenClient;
    let h = Harness::start().await;
    let signer = Signer {
        issuer: CLIENT_ID.into(),
        audience: AUDIENCE.into(),
        lifetime: Duration::from_secs(180),
        key: SigningKey::from_key(key(), None).unwrap(),
        next: None,
    };
    let client = TokenClient::new(h.idp.token_url().parse().unwrap(), Duration::from_secs(5), &[]).unwrap();
    let assertion = signer.sign(ALICE_SUB).unwrap();
    assert!(client.exchange(&assertion, None).await.is_ok());
    let replay = client.exchange(&assertion, None).await.err().unwrap();
    assert!(replay.to_string().contains("replayed"), "{replay}");

    let fresh = signer.sign(ALICE_SUB).unwrap();
    let mut parts: Vec<String> = fresh.expose().split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    let tampered = oauth_egress::secret::Secret::new(parts.join("."));
    assert!(client.exchange(&tampered, None).await.is_err());

    let too_long =
        Signer { lifetime: Duration::from_secs(600), key: SigningKey::from_key(key(), None).unwrap(), ..signer };
    let err = client.exchange(&too_long.sign(ALICE_SUB).unwrap(), None).await.err().unwrap();
    assert!(err.to_string().contains("more than 3 minutes"), "{err}");

    let other = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let foreign =
        Signer { key: SigningKey::from_key(&other, None).unwrap(), lifetime: Duration::from_secs(180), ..too_long };
    let err = client.exchange(&foreign.sign(ALICE_SUB).unwrap(), None).await.err().unwrap();
    assert!(err.to_string().contains("signature"), "{err}");
}

/// A loopback port with nothing listening: bound, read, released.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// === the upstream refuses the session ===

#[tokio::test]
async fn fifty_requests_refused_by_the_upstream_share_one_renewal_and_replay_once() {
    let h = Harness::start().await;
    assert_eq!(h.soap11(&query(ALICE)).await.status, 200);
    let first = h.sessions.tokens();
    assert_eq!(first.len(), 1);
    h.upstream.hold();
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let (http, url) =
                (h.http.clone(), h.url(if i % 2 == 0 { "/services/Soap/u/58.0" } else { "/services/data/v58.0/x" }));
            let soap = i % 2 == 0;
            tokio::spawn(async move {
                let req = if soap {
                    http.post(url).header("content-type", "text/xml").body(query(ALICE))
                } else {
                    http.get(url).header("X-Requester", ALICE)
                };
                let r = req.send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    // All 50 reach the SaaS with the first token; then an admin ends that session there, so
    // every one of them is answered INVALID_SESSION_ID.
    wait_until("50 requests at the upstream", || h.upstream.arrived() == 51).await;
    h.sessions.revoke(&first[0]);
    h.idp.hold();
    h.upstream.release();
    // All 50 were refused and now wait on one renewal.
    wait_until("50 refused requests waiting on one exchange", || {
        h.app.store().stats().waiting == 50 && h.idp.requests() >= 2
    })
    .await;
    h.idp.release();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(h.idp.issued(), 2, "the first token and exactly one renewal");
    let got = h.upstream.received();
    assert_eq!(got.len(), 1 + 50 + 50, "each refused request sent exactly once more");
    assert_eq!(got.iter().filter(|r| r.subject.is_none()).count(), 50);
    assert!(got[51..].iter().all(|r| r.subject.as_deref() == Some(ALICE_SUB)));
}

#[tokio::test]
async fn a_second_refusal_reaches_the_caller_as_it_came() {
    let h = Harness::start().await;
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
    // The SaaS refuses every session now, the renewed one too.
    h.upstream.refuse_all(true);
    let a = h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.body.contains("INVALID_SESSION_ID"), "{}", a.body);
    assert_eq!(h.upstream.received().len(), 3, "first call, refused call, one replay");
    assert_eq!(h.idp.issued(), 2);
}

#[tokio::test]
async fn steady_state_over_five_lifetimes_no_request_waits_on_an_exchange() {
    // Okta-like: expires_in 600 s, renewal from 300 s on (renew_before 5 m, never before half).
    let h = Harness::with(Setup { expires_in: Some(600), ..Setup::default() }).await;
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
    assert_eq!(h.app.store().stats().waited, 1, "only the very first request waits");
    for _ in 0..50 {
        h.clock.advance(Duration::from_secs(60));
        assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
        wait_until("renewal done", || h.app.store().stats().exchanges_in_flight == 0).await;
    }
    let stats = h.app.store().stats();
    assert_eq!(stats.waited, 1, "3000 s = 5 lifetimes later, still only the first request waited");
    assert!(h.idp.issued() >= 10, "renewed about every 300 s: {}", h.idp.issued());
    assert!(h.upstream.received().iter().all(|r| r.subject.as_deref() == Some(ALICE_SUB)), "no expired token was sent");
}

#[tokio::test]
async fn an_idp_outage_stops_no_request_whose_subject_has_a_token() {
    let h = Harness::start().await;
    let users: Vec<String> = (0..20).map(|i| format!("user{i}@corp.example.com")).collect();
    for u in &users {
        assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", u)]).await.status, 200);
    }
    h.idp.fail_with(Some(503));
    let before = h.idp.requests();
    // A minute of outage, in steps, with all 20 users calling.
    let mut failed = 0;
    for step in 0..60 {
        h.clock.advance(Duration::from_secs(1));
        let u = &users[step % users.len()];
        let soap = h.soap11(&query(u)).await;
        let rest = h.get("/services/data/v58.0/x", &[("X-Requester", u)]).await;
        failed += usize::from(soap.status != 200) + usize::from(rest.status != 200);
    }
    assert_eq!(failed, 0);
    assert_eq!(h.idp.requests(), before, "no exchange was needed");
    // A new user gets a clear 503 within the retry deadline (1 s in the test config).
    let started = std::time::Instant::now();
    let newcomer = h.get("/services/data/v58.0/x", &[("X-Requester", "new@corp.example.com")]).await;
    assert_eq!(newcomer.status, 503, "{}", newcomer.body);
    assert!(newcomer.headers.contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The endpoint is back: the next request for the new user succeeds.
    h.idp.fail_with(None);
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", "new@corp.example.com")]).await.status, 200);
}

#[tokio::test]
async fn without_expires_in_the_introspected_exp_is_used_else_the_configured_lifetime() {
    // The endpoint answers without expires_in; introspection says 900 s (session_lifetime is 2 h).
    let h = Harness::with(Setup { introspection: true, ..Setup::default() }).await;
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
    assert_eq!(h.idp.introspections(), 1);
    h.clock.advance(Duration::from_secs(901));
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
    assert_eq!(h.idp.issued(), 2, "expired after the introspected 900 s, not the configured 2 h");

    // Introspection down: the configured 2 h applies.
    h.idp.fail_introspection(true);
    h.clock.advance(Duration::from_secs(901));
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
    assert_eq!(h.idp.issued(), 3);
    h.clock.advance(Duration::from_secs(901));
    assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
    assert_eq!(h.idp.issued(), 3, "still valid: the configured lifetime was assumed");
}

#[tokio::test]
async fn held_tokens_are_revoked_at_shutdown_when_configured() {
    let mut h = Harness::with(Setup { revocation: true, ..Setup::default() }).await;
    for u in [ALICE, "bob@corp.example.com"] {
        assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", u)]).await.status, 200);
    }
    let issued = h.idp.tokens();
    assert_eq!(issued.len(), 2);
    h.shutdown().await;
    assert_eq!(h.idp.revocations(), 2);
    assert!(issued.iter().all(|t| h.sessions.subject_of(t).is_none()), "both sessions ended");

    // Without revocation_url, shutdown leaves tokens to expire.
    let mut plain = Harness::start().await;
    assert_eq!(plain.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
    plain.shutdown().await;
    assert_eq!(plain.idp.revocations(), 0);
    assert_eq!(plain.sessions.tokens().len(), 1);
}

#[tokio::test]
async fn an_endpoint_that_never_answers_times_out_and_is_retried_then_503() {
    let h = Harness::with(Setup {
        config: |p| {
            default_config(p).replace("retry_deadline = \"1s\"", "retry_deadline = \"1s\"\ntimeout = \"200ms\"")
        },
        ..Setup::default()
    })
    .await;
    h.idp.hold();
    let started = std::time::Instant::now();
    let a = h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(a.json()["detail"].as_str().unwrap().contains("timed out"), "{}", a.body);
    assert!(h.idp.requests() >= 2, "each attempt timed out and was retried: {}", h.idp.requests());
    assert!(started.elapsed() < Duration::from_secs(5));
    h.idp.release();
}

/// A second key, generated once per test binary.
fn new_key() -> &'static rsa::RsaPrivateKey {
    static KEY: std::sync::OnceLock<rsa::RsaPrivateKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap())
}

fn pem_of(key: &rsa::RsaPrivateKey) -> String {
    use rsa::pkcs8::EncodePrivateKey;
    key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap().to_string()
}

fn rotating(p: &Peers, active_from: &str) -> String {
    default_config(p).replace(
        "kid = \"test-key-1\"\n",
        &format!(
            "kid = \"test-key-1\"\nnext_key = {{ private_key = \"new.key\", kid = \"key-2\", active_from = \"{active_from}\" }}\n"
        ),
    )
}

#[tokio::test]
async fn a_next_key_takes_over_at_its_time_with_no_gap() {
    let past: fn(&Peers) -> String = |p| rotating(p, "2000-01-01T00:00:00Z");
    let future: fn(&Peers) -> String = |p| rotating(p, "2999-01-01T00:00:00Z");
    for (config, expected_kid) in [(past, "key-2"), (future, "test-key-1")] {
        let h = Harness::with(Setup {
            config,
            files: vec![("new.key", pem_of(new_key()), true)],
            // The connected app holds both certificates during the rotation.
            idp_other_keys: vec![("key-2".into(), new_key().to_public_key())],
            ..Setup::default()
        })
        .await;
        assert_eq!(h.get("/services/data/v58.0/x", &[("X-Requester", ALICE)]).await.status, 200);
        assert_eq!(h.idp.kids(), vec![Some(expected_kid.to_owned())]);
    }
}
