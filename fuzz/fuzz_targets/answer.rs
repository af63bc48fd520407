//! Fuzzes the reading of an upstream's answer (`proxy::h1`): its head parsed, its framing chosen
//! (length, chunked, to the close; HEAD or GET by the first byte), its body decoded. An upstream
//! is not trusted to speak HTTP well: anything but a panic is fine, and no header of the
//! connection (hop-by-hop) is ever among those passed on.
//!
//! Run: `cargo fuzz run answer fuzz/corpus/answer -- -max_total_time=300`
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use oauth_egress::proxy::h1;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, wire)) = data.split_first() else { return };
    let method = if selector % 2 == 0 { Method::GET } else { Method::HEAD };
    // Whatever the answer, none of the headers of its connection may be passed on.
    if let Ok((head, _)) = h1::decode_answer(wire, &method) {
        assert!(head.headers.iter().all(|(name, _)| std::str::from_utf8(name).is_ok_and(|name| !h1::is_hop_by_hop(name))));
    }
});
