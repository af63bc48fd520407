//! Fuzzes the reading of a caller's request head (`server::conn`): parsed as a connection parses
//! it, from any bytes. A caller is not trusted to speak HTTP well: each input is either
//! incomplete, a request, or refused with a status and a reason; never a panic. A request read
//! is consistent with what it says of its body.
//!
//! Run: `cargo fuzz run request -- -max_total_time=300`
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauth_egress::server::read_request;

fuzz_target!(|data: &[u8]| {
    match read_request(data) {
        Ok(Some((request, chunked, length))) => {
            assert!(!(chunked && length.is_some()), "both framings: {request:?}");
            assert!(request.version() == http::Version::HTTP_11 || !chunked);
        }
        Ok(None) => {}
        Err((status, detail)) => assert!(status >= 400 && !detail.is_empty()),
    }
});
