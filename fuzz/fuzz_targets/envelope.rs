//! Fuzzes the request pass: UTF-16/BOM handling, the streaming envelope scan with schema
//! validation (strict, lax or off, chosen by the first byte) against the Salesforce partner and
//! rules WSDLs, and the rewrite of whatever passes. Anything but a panic is fine.
//!
//! Run: `cargo fuzz run envelope fuzz/corpus/envelope tests/hostile -- -max_total_time=600`
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use oauth_egress::soap::envelope::{self, Limits, Plan};
use oauth_egress::soap::validate::Mode;
use oauth_egress::soap::wsdl::Wsdl;

fn wsdls() -> &'static [Wsdl; 2] {
    static W: OnceLock<[Wsdl; 2]> = OnceLock::new();
    W.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        [
            Wsdl::load(&root.join("wsdl/salesforce-partner-v58.wsdl")).expect("partner"),
            Wsdl::load(&root.join("tests/fixtures/rules.wsdl")).expect("rules"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let mode = match selector % 3 {
        0 => Mode::Strict,
        1 => Mode::Lax,
        _ => Mode::Off,
    };
    let wsdl = &wsdls()[usize::from(selector / 3 % 2)];
    let converted = match envelope::to_utf8(body) {
        Ok(c) => c,
        Err(_) => return,
    };
    let body = converted.as_deref().unwrap_or(body);
    let session: Vec<String> = ["Header", "SessionHeader", "sessionId"].iter().map(|s| s.to_string()).collect();
    let limits = Limits { max_elements: 10_000, ..Limits::default() };
    let action = (selector & 0x80 != 0).then_some("urn:rules:order");
    let plan = Plan { requester: Some(&session), session: &session, mode, limits: &limits, action };
    if let Ok(scan) = envelope::scan(body, &plan, wsdl) {
        if let Ok(slot) = &scan.slot {
            let out = envelope::rewrite(&bytes::Bytes::copy_from_slice(body), slot, &session, "00D!token&<>").concat();
            // The rewrite changes only the slot: what it writes must itself be well-formed.
            assert!(std::str::from_utf8(&out).is_ok());
        }
    }
});
