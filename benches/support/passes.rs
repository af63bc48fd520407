//! The two passes the envelope bench and `examples/envelope_clock` compare: a plain quick-xml
//! read, and the proxy's validate + rewrite.

use bytes::Bytes;
use oauth_egress::soap::envelope::{self, Limits, Plan};
use oauth_egress::soap::validate::Mode;
use oauth_egress::soap::wsdl::Wsdl;

/// The session path the benches' envelopes carry the requester and take the token at.
pub const SESSION: [&str; 3] = ["Header", "SessionHeader", "sessionId"];

/// Every event of `body`, read and dropped; how many there were.
pub fn plain_read(body: &[u8]) -> usize {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut events = 0;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => return events,
            Ok(_) => events += 1,
            Err(e) => panic!("{e}"),
        }
    }
}

/// The envelope pass in `mode`, then the rewrite with a token; the forwarded length.
pub fn validate_rewrite(wsdl: &Wsdl, session: &[String], limits: &Limits, mode: Mode, body: &Bytes) -> usize {
    let plan = Plan { requester: Some(session), session, mode, limits, action: None };
    let scan = envelope::scan(body, &plan, wsdl).expect("valid envelope");
    let slot = scan.slot.as_ref().expect("slot");
    envelope::rewrite(body, slot, session, "00DLOOPBACK0000001!AQ4AQHk2Bd0token").iter().map(Bytes::len).sum()
}

/// The plain read and `pass` over `body` in alternating rounds of about 2 MB each; the fastest
/// round of each (the least disturbed by whatever else the machine runs), in seconds per pass.
pub fn interleaved(rounds: usize, body: &[u8], mut pass: impl FnMut()) -> (f64, f64) {
    let per_round = (2_000_000 / body.len()).max(1);
    let (mut plain, mut ours) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        for _ in 0..per_round {
            std::hint::black_box(plain_read(std::hint::black_box(body)));
        }
        plain = plain.min(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        for _ in 0..per_round {
            pass();
        }
        ours = ours.min(t.elapsed().as_secs_f64());
    }
    (plain / per_round as f64, ours / per_round as f64)
}
