//! Validate + rewrite throughput against a plain quick-xml read of the same bytes, on 2 KB,
//! 200 KB and 5 MB enterprise-WSDL `create` envelopes (typed Account records through `xsi:type`),
//! printed as MB/s by criterion and as ratios after (from criterion's means, then from
//! interleaved rounds); and the peak heap one 5 MB pass takes.
//!
//! Run: `cargo bench --bench envelope`.

#[allow(unsafe_code)]
#[path = "support/counting.rs"]
mod counting;
#[path = "support/create.rs"]
mod create;
#[path = "support/passes.rs"]
mod passes;
use counting::{CURRENT, ON, PEAK};
use passes::{SESSION, plain_read, validate_rewrite};

use std::hint::black_box;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use oauth_egress::soap::envelope::Limits;
use oauth_egress::soap::validate::Mode;
use oauth_egress::soap::wsdl::Wsdl;

fn envelope(records: usize) -> Bytes {
    Bytes::from(create::create_envelope(records))
}

fn mean_ns(group: &str, function: &str) -> Option<f64> {
    let path = format!("target/criterion/{group}/{function}/new/estimates.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn main() {
    let wsdl = Wsdl::load(std::path::Path::new("wsdl/salesforce-enterprise-v40.wsdl")).expect("wsdl");
    let session: Vec<String> = SESSION.iter().map(|s| s.to_string()).collect();
    let limits = Limits::default();
    let sizes = [("2KB", 3), ("200KB", 340), ("5MB", 8_900)];
    // Timed without the counting allocator's atomics; counted for the memory figure only.
    ON.store(false, Ordering::Relaxed);
    let mut c = Criterion::default().configure_from_args();
    for (label, records) in sizes {
        let body = envelope(records);
        let mut g = c.benchmark_group(format!("envelope_{label}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        if records > 1000 {
            g.sample_size(20);
        }
        g.bench_function("plain_read", |b| b.iter(|| plain_read(black_box(&body))));
        g.bench_function("validate_rewrite", |b| {
            b.iter(|| validate_rewrite(&wsdl, &session, &limits, Mode::Strict, black_box(&body)))
        });
        g.finish();
    }
    c.final_summary();

    println!("\nvalidate+rewrite throughput as a fraction of a plain quick-xml read (target >= 0.4):");
    for (label, records) in sizes {
        let body = envelope(records);
        let group = format!("envelope_{label}");
        match (mean_ns(&group, "plain_read"), mean_ns(&group, "validate_rewrite")) {
            (Some(plain), Some(ours)) => {
                let mbps = |ns: f64| body.len() as f64 / ns * 1e9 / 1e6;
                println!(
                    "  {label:>6} ({:>8} bytes): plain {:>7.1} MB/s, validate+rewrite {:>7.1} MB/s, ratio {:.2}",
                    body.len(),
                    mbps(plain),
                    mbps(ours),
                    plain / ours
                );
            }
            _ => println!("  {label}: no estimates (run without --test)"),
        }
    }
    // The same ratio measured side by side: rounds alternate the two passes, and each side's
    // fastest round counts (the least disturbed by whatever else the machine runs). Steadier
    // than the means above on a shared machine, and less favourable.
    println!("\nthe same, interleaved: 30 alternating rounds, fastest round of each:");
    for (label, records) in sizes {
        let body = envelope(records);
        let (plain, ours) = passes::interleaved(30, &body, || {
            black_box(validate_rewrite(&wsdl, &session, &limits, Mode::Strict, black_box(&body)));
        });
        let mbps = |secs: f64| body.len() as f64 / secs / 1e6;
        println!(
            "  {label:>6}: plain {:>7.1} MB/s, validate+rewrite {:>7.1} MB/s, ratio {:.2}",
            mbps(plain),
            mbps(ours),
            plain / ours
        );
    }
    let body = envelope(8_900);
    // On a thread of its own: a pass keeps its buffers on its thread for the next one, and this
    // thread's are already grown; a fresh thread's pass allocates them, and they count.
    let (out, peak) = std::thread::scope(|s| {
        s.spawn(|| {
            CURRENT.store(0, Ordering::Relaxed);
            PEAK.store(0, Ordering::Relaxed);
            ON.store(true, Ordering::Relaxed);
            let out = validate_rewrite(&wsdl, &session, &limits, Mode::Strict, &body);
            ON.store(false, Ordering::Relaxed);
            (out, PEAK.load(Ordering::Relaxed))
        })
        .join()
        .expect("pass")
    });
    println!(
        "\npeak heap during one 5 MB pass: {peak} bytes for a {} byte body ({:.2}x the body; the forwarded envelope, {out} bytes, shares the body's buffer)",
        body.len(),
        peak as f64 / body.len() as f64
    );
}
