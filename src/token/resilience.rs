//! How a provider treats a misbehaving token endpoint: retries with exponential backoff and
//! jitter inside a deadline (honouring `Retry-After`), a circuit breaker that fails new exchanges
//! fast after repeated failures and lets one probe through after a cool-down, and a short memory
//! of `invalid_grant` per subject so a misconfigured user cannot turn every request into an
//! exchange. Breaker and memory run on the advanceable `Clock`; backoff waits are real.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::TokenError;

/// The settings, per provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// How long one exchange may take, retries and waits included.
    pub deadline: Duration,
    /// Consecutive failed attempts that open the breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe is let through.
    pub breaker_cooldown: Duration,
    /// How long an `invalid_grant` for a subject is answered from memory.
    pub refused_ttl: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            deadline: Duration::from_secs(10),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            refused_ttl: Duration::from_secs(60),
        }
    }
}

/// Whether another attempt may succeed, and after how long the endpoint asked to wait.
pub fn retryable(e: &TokenError) -> Option<Option<Duration>> {
    match e {
        TokenError::Unreachable(_) => Some(None),
        TokenError::Status(s) if *s >= 500 || *s == 429 => Some(None),
        TokenError::RetryAfter { seconds, .. } => Some(Some(Duration::from_secs(*seconds))),
        _ => None,
    }
}

/// The wait before attempt `n + 1`: 100 ms doubling to at most 2 s, less up to half at random so
/// that many proxies do not retry in step.
pub fn backoff(attempt: u32) -> Duration {
    let full = Duration::from_millis(100).saturating_mul(1 << attempt.min(5)).min(Duration::from_secs(2));
    let random = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    full - full / 2 * random / 1000
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// A circuit breaker per provider.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<BreakerState>,
}

/// What the breaker says about one attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// Open: fail fast; the cool-down ends in this long.
    Refuse(Duration),
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn admit(&self, now: Instant) -> Admit {
        let mut s = self.lock();
        match s.open_until {
            None => Admit::Go,
            Some(until) if now < until => Admit::Refuse(until - now),
            // Cool-down over: one probe, the others keep failing fast until it reports.
            Some(_) if !s.probing => {
                s.probing = true;
                Admit::Go
            }
            Some(_) => Admit::Refuse(Duration::from_secs(1)),
        }
    }

    pub fn success(&self) {
        *self.lock() = BreakerState::default();
    }

    pub fn failure(&self, now: Instant, policy: &Policy) {
        let mut s = self.lock();
        s.failures += 1;
        if s.probing || s.failures >= policy.breaker_failures {
            s.open_until = Some(now + policy.breaker_cooldown);
            s.probing = false;
        }
    }

    /// Whether new exchanges are being refused now.
    pub fn is_open(&self, now: Instant) -> bool {
        matches!(self.lock().open_until, Some(until) if now < until)
    }
}

/// Remembered `invalid_grant` answers, per subject, bounded in count.
#[derive(Debug)]
pub struct Refusals {
    cache: moka::sync::Cache<std::sync::Arc<str>, (TokenError, Instant)>,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals { cache: moka::sync::Cache::new(10_000) }
    }
}

impl Refusals {
    pub fn get(&self, subject: &str, now: Instant) -> Option<TokenError> {
        match self.cache.get(subject) {
            Some((e, until)) if now < until => Some(e),
            Some(_) => {
                self.cache.invalidate(subject);
                None
            }
            None => None,
        }
    }

    pub fn remember(&self, subject: &str, e: TokenError, until: Instant) {
        self.cache.insert(subject.into(), (e, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_probes_and_closes() {
        let policy = Policy { breaker_failures: 3, breaker_cooldown: Duration::from_secs(30), ..Policy::default() };
        let b = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.admit(t0), Admit::Go);
            b.failure(t0, &policy);
        }
        assert_eq!(b.admit(t0), Admit::Go);
        b.failure(t0, &policy);
        assert_eq!(b.admit(t0 + Duration::from_secs(10)), Admit::Refuse(Duration::from_secs(20)));
        let later = t0 + Duration::from_secs(31);
        assert_eq!(b.admit(later), Admit::Go, "one probe");
        assert!(matches!(b.admit(later), Admit::Refuse(_)), "only one");
        b.failure(later, &policy);
        assert!(b.is_open(later + Duration::from_secs(1)), "a failed probe opens it again");
        let again = later + Duration::from_secs(31);
        assert_eq!(b.admit(again), Admit::Go);
        b.success();
        assert_eq!(b.admit(again), Admit::Go);
        assert!(!b.is_open(again));
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        for attempt in 0..10 {
            let d = backoff(attempt);
            let full = Duration::from_millis(100 * (1 << attempt.min(5))).min(Duration::from_secs(2));
            assert!(d <= full && d >= full / 2, "{attempt}: {d:?}");
        }
    }
}
