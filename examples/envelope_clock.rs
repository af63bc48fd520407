//! The envelope pass (`soap::envelope::scan` + `rewrite`) against a plain quick-xml read of the
//! same bytes, outside criterion: for taking the pass apart on the clock and under callgrind.
//! BENCHMARKS.md says which figures came from here.
//!
//! ```sh
//! # plain read and pass alternated, ROUNDS rounds of ~2 MB each, fastest round of each:
//! cargo run --release --example envelope_clock -- ratio RECORDS ROUNDS [strict|lax|off]
//! # one thing ITERS times, for callgrind (run with ITERS 1 and 2001; the difference / 2000 is
//! # the instructions of one pass):
//! cargo run --release --example envelope_clock -- loop plain|strict|lax|off RECORDS ITERS
//! ```
//!
//! The body is the envelope bench's enterprise `create` of RECORDS typed Account records, or
//! with `ENVELOPE=query` the e2e bench's 2 KB partner `query` (RECORDS ignored).

#[path = "../benches/support/create.rs"]
mod create;
#[path = "../benches/support/passes.rs"]
mod passes;

use std::hint::black_box;

use bytes::Bytes;
use oauth_egress::soap::envelope::Limits;
use oauth_egress::soap::validate::Mode;
use oauth_egress::soap::wsdl::Wsdl;
use passes::{SESSION, plain_read, validate_rewrite};

const USAGE: &str =
    "usage: envelope_clock ratio RECORDS ROUNDS [strict|lax|off] | loop plain|strict|lax|off RECORDS ITERS";

fn mode(name: &str) -> Mode {
    match name {
        "lax" => Mode::Lax,
        "off" => Mode::Off,
        "strict" => Mode::Strict,
        _ => panic!("{USAGE}"),
    }
}

fn number(arg: Option<&String>) -> usize {
    arg.and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("{USAGE}"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let query = std::env::var("ENVELOPE").is_ok_and(|v| v == "query");
    let wsdl = if query { "wsdl/salesforce-partner-v58.wsdl" } else { "wsdl/salesforce-enterprise-v40.wsdl" };
    let wsdl = Wsdl::load(std::path::Path::new(wsdl)).expect("wsdl");
    let session: Vec<String> = SESSION.iter().map(|s| s.to_string()).collect();
    let limits = Limits::default();
    let command = args.first().map(String::as_str);
    let records = number(args.get(if command == Some("loop") { 2 } else { 1 }));
    let body = Bytes::from(if query {
        let fields: Vec<String> = (0..135).map(|i| format!("Field{i}__c")).collect();
        oauth_egress::demo::query_envelope(
            "alice@corp.example.com",
            &format!("SELECT Id, {} FROM Account", fields.join(", ")),
        )
    } else {
        create::create_envelope(records)
    });
    let pass = |m: Mode| black_box(validate_rewrite(&wsdl, &session, &limits, m, black_box(&body)));
    match command {
        Some("ratio") => {
            let rounds = number(args.get(2));
            let m = mode(args.get(3).map_or("strict", String::as_str));
            let (plain, ours) = passes::interleaved(rounds, &body, || {
                pass(m);
            });
            println!(
                "{} bytes: plain {:.0} ns, pass {:.0} ns, ratio {:.3}",
                body.len(),
                plain * 1e9,
                ours * 1e9,
                plain / ours
            );
        }
        Some("loop") => {
            let what = args.get(1).map_or("", String::as_str);
            let iters = number(args.get(3));
            for _ in 0..iters {
                if what == "plain" {
                    black_box(plain_read(black_box(&body)));
                } else {
                    pass(mode(what));
                }
            }
        }
        _ => panic!("{USAGE}"),
    }
}
