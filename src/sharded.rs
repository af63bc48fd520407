//! Counts that serving threads update on every request without sharing a cache line: each thread
//! adds to a slot of its own (picked by `thread_number`), and a read sums the slots. With
//! prometheus-client's own types every update by one worker took the line from the other core
//! (a counter is one atomic; a histogram is a mutex around its buckets). Also the thread
//! numbering the upstream pool's shards use.
//!
//! Here: the numbering, a counter for prometheus-client's `Counter` (`ShardedU64`), and the
//! latency histogram (`Latency`). Not here: what is counted (`metrics`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Atomic;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Slots per count. Threads beyond this many share slots, correctly (the adds are atomic).
const SLOTS: usize = 8;

/// A number for the calling thread, in the order threads first ask (the serving threads, on
/// their first request: 0, 1, ...).
pub fn thread_number() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    thread_local! {
        static NUMBER: u32 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.with(|n| *n)
}

fn slot() -> usize {
    thread_number() as usize % SLOTS
}

/// A value on cache lines of its own (two lines: the adjacent-line prefetcher fetches pairs).
#[repr(align(128))]
#[derive(Debug, Default)]
struct Line<T>(T);

/// A `u64` counted per thread slot: `prometheus_client::metrics::counter::Counter<u64, ShardedU64>`.
#[derive(Debug, Default)]
pub struct ShardedU64([Line<AtomicU64>; SLOTS]);

impl Atomic<u64> for ShardedU64 {
    fn inc(&self) -> u64 {
        self.inc_by(1)
    }

    /// Returns the calling thread's slot as it was (not the counter's value).
    fn inc_by(&self, v: u64) -> u64 {
        self.0[slot()].0.fetch_add(v, Ordering::Relaxed)
    }

    fn get(&self) -> u64 {
        self.0.iter().map(|line| line.0.load(Ordering::Relaxed)).sum()
    }
}

/// The counter every metric of the proxy counts with.
pub type Counter = prometheus_client::metrics::counter::Counter<u64, ShardedU64>;

/// Upper bounds of the latency buckets: 0.5 ms, doubling, to about 16 s (then `+Inf`); the
/// bounds `exponential_buckets(0.0005, 2.0, 16)` gives.
const BOUNDS: [f64; 16] = {
    let mut bounds = [0.0; 16];
    let (mut i, mut bound) = (0, 0.0005);
    while i < bounds.len() {
        bounds[i] = bound;
        bound *= 2.0;
        i += 1;
    }
    bounds
};

#[derive(Debug, Default)]
struct LatencySlot {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    /// The sum of the observations, in nanoseconds.
    nanos: AtomicU64,
}

/// A latency histogram (seconds) kept per thread slot; encoded as prometheus-client encodes its
/// own histogram with `BOUNDS`. Its count is the sum of its buckets, so a scrape during updates
/// still sees the two agree.
#[derive(Clone, Debug, Default)]
pub struct Latency(Arc<[Line<LatencySlot>; SLOTS]>);

impl Latency {
    pub fn observe(&self, seconds: f64) {
        let slot = &self.0[slot()].0;
        let bucket = BOUNDS.iter().position(|&bound| seconds <= bound).unwrap_or(BOUNDS.len());
        slot.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // Saturating casts: NaN and negative durations count as 0 ns.
        slot.nanos.fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(f64::INFINITY, 0u64); BOUNDS.len() + 1];
        for (bucket, bound) in buckets.iter_mut().zip(BOUNDS) {
            bucket.0 = bound;
        }
        let mut nanos = 0u64;
        for line in self.0.iter() {
            for (bucket, count) in buckets.iter_mut().zip(&line.0.buckets) {
                bucket.1 += count.load(Ordering::Relaxed);
            }
            nanos = nanos.wrapping_add(line.0.nanos.load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|b| b.1).sum();
        encoder.encode_histogram::<NoLabelSet>(nanos as f64 / 1e9, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
    use prometheus_client::registry::Registry;

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).expect("encodes");
        out
    }

    /// Counted from several threads at once, a counter and a histogram lose nothing, and the
    /// histogram reads as prometheus-client's own with the same bounds (its sum to rounding).
    #[test]
    fn counts_from_many_threads_add_up_and_read_as_prometheus_clients_own() {
        let (counter, latency, reference) =
            (Counter::default(), Latency::default(), Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        let seconds = [0.0, 0.0004, 0.0005, 0.0007, 0.003, 0.2, 1.5, 16.384, 16.4, 3600.0];
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        counter.inc();
                        for &v in &seconds {
                            latency.observe(v);
                            reference.observe(v);
                        }
                    }
                });
            }
        });
        assert_eq!(counter.get(), 12_000);
        let (mut ours, mut theirs) = (Registry::default(), Registry::default());
        ours.register("latency", "Latency", latency);
        theirs.register("latency", "Latency", reference);
        let lines = |text: String| -> Vec<String> { text.lines().map(str::to_owned).collect() };
        let (ours, theirs) = (lines(text(&ours)), lines(text(&theirs)));
        assert_eq!(ours.len(), theirs.len(), "{ours:?}");
        for (a, b) in ours.iter().zip(&theirs) {
            if let (Some(a), Some(b)) = (a.strip_prefix("latency_sum "), b.strip_prefix("latency_sum ")) {
                let (a, b): (f64, f64) = (a.parse().expect("sum"), b.parse().expect("sum"));
                assert!((a - b).abs() < 1e-6 * b, "{a} against {b}");
            } else {
                assert_eq!(a, b);
            }
        }
        assert!(ours.contains(&"latency_count 120000".to_owned()), "{ours:?}");
        assert!(ours.contains(&"latency_bucket{le=\"0.001\"} 48000".to_owned()), "{ours:?}");
    }
}
