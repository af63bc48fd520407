//! The clock token expiry is measured on: monotonic time plus an offset that tests can advance.
//!
//! Production code never advances it; tests do, to cross a token's renewal point without sleeping.
//! Wall-clock time for JWT claims (`iat`, `exp`) is not taken from here: the token endpoint
//! checks those against its own clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicU64>,
}

impl Clock {
    pub fn now(&self) -> Instant {
        self.at(Instant::now())
    }

    /// The time on this clock when the monotonic clock read `instant` (a caller that has read
    /// the monotonic clock already passes its reading on instead of reading it again).
    pub fn at(&self, instant: Instant) -> Instant {
        instant + Duration::from_millis(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}
