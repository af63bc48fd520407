//! Hostile XML: every file in `tests/hostile/` gets the fault `expected.tsv` names, before any
//! token work and without a panic; the inputs too large to commit are made here. Then a few go
//! through the running proxy, to show the token endpoint is never asked.

// A panic in a test is a failed test: unwrap freely here.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::OnceLock;

use oauth_egress::offline::{self, Verdict};
use oauth_egress::soap::envelope::Limits;
use oauth_egress::soap::validate::Mode;
use oauth_egress::soap::wsdl::Wsdl;
use support::*;

fn partner() -> &'static Wsdl {
    static W: OnceLock<Wsdl> = OnceLock::new();
    W.get_or_init(|| Wsdl::load(&manifest_dir().join("wsdl/salesforce-partner-v58.wsdl")).unwrap())
}

fn fault_of(body: &[u8], limits: &Limits) -> String {
    match offline::validate(partner(), body, Mode::Strict, None, limits) {
        Verdict::Valid(op) => panic!("accepted as {op}"),
        Verdict::Fault(f) => f,
    }
}

#[test]
fn corpus_gets_the_expected_faults() {
    let dir = manifest_dir().join("tests/hostile");
    let manifest = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let mut checked = 0;
    for line in manifest.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let mut cols = line.split('\t');
        let (file, code, says) = (cols.next().unwrap(), cols.next().unwrap(), cols.next().unwrap());
        let body = std::fs::read(dir.join(file)).unwrap();
        let fault = fault_of(&body, &Limits::default());
        let escaped = says.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        assert!(fault.contains(&format!(">{code}</oe:error>")), "{file}: wanted code {code}: {fault}");
        assert!(fault.contains(&escaped), "{file}: wanted '{says}': {fault}");
        checked += 1;
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(checked, files - 1, "every corpus file is listed in expected.tsv");
}

#[test]
fn limits_on_elements_and_text_hold_without_reading_on() {
    let small = Limits { max_elements: 1_000, max_text_length: 1_000, ..Limits::default() };
    // In a header block, which the schema does not constrain: only the limit stops it.
    let many = query(ALICE).replace("</soapenv:Header>", &format!("<x>{}</x></soapenv:Header>", "<y/>".repeat(2_000)));
    assert!(fault_of(many.as_bytes(), &small).contains("more than 1000 elements"));
    let long = query(&"a".repeat(1_001));
    assert!(fault_of(long.as_bytes(), &small).contains("a text node is longer than the limit of 1000 bytes"));
    // Entity references count toward the text limit too.
    let refs = query(&"&amp;".repeat(1_001));
    assert!(fault_of(refs.as_bytes(), &small).contains("a text node is longer than the limit"));
}

#[test]
fn utf16_envelopes_are_accepted_and_forwarded_as_utf8() {
    let text = format!("<?xml version=\"1.0\" encoding=\"UTF-16\"?>{}", query(ALICE));
    for (bom, encode) in [
        (vec![0xFF, 0xFE], (|u: u16| u.to_le_bytes()) as fn(u16) -> [u8; 2]),
        (vec![0xFE, 0xFF], (|u: u16| u.to_be_bytes()) as fn(u16) -> [u8; 2]),
    ] {
        let mut body = bom;
        body.extend(text.encode_utf16().flat_map(encode));
        match offline::validate(partner(), &body, Mode::Strict, None, &Limits::default()) {
            Verdict::Valid(op) => assert_eq!(op, "query"),
            Verdict::Fault(f) => panic!("{f}"),
        }
        let utf8 = oauth_egress::soap::envelope::to_utf8(&body).unwrap().unwrap();
        assert!(String::from_utf8(utf8).unwrap().starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    }
}

#[tokio::test]
async fn through_the_proxy_no_token_work_is_done() {
    let h = Harness::start().await;
    let dir = manifest_dir().join("tests/hostile");
    for file in ["billion-laughs.xml", "external-entity.xml", "must-understand.xml", "deep-nesting.xml"] {
        let body = std::fs::read_to_string(dir.join(file)).unwrap();
        let a = h.soap11(&body).await;
        assert_eq!(a.status, 500, "{file}: {}", a.body);
        assert!(a.body.contains("<faultcode>soapenv:"), "{file}: {}", a.body);
    }
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(
        format!("<?xml version=\"1.0\" encoding=\"UTF-16\"?>{}", query(ALICE))
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    let r = h
        .http
        .post(h.url("/services/Soap/u/58.0"))
        .header("content-type", "text/xml; charset=UTF-16")
        .body(utf16)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = h.upstream.received();
    assert_eq!(got.len(), 1, "only the UTF-16 request reached the upstream");
    assert_eq!(got[0].headers["content-type"], "text/xml; charset=utf-8");
    assert!(String::from_utf8(got[0].body.to_vec()).unwrap().contains("encoding=\"UTF-8\""));
    assert_eq!(h.idp.requests(), 1, "hostile requests cause no token exchange");
}
