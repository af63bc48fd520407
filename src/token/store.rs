//! Where tokens are kept: the `TokenStore` trait and its in-memory backend.
//!
//! The contract every backend keeps: at most one exchange in flight per key, however many requests
//! wait; all of them share its result, success or error; a token past its refresh point is still
//! served while one renewal runs in the background; a token past expiry is never served.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use super::{KeyRef, Token, TokenError, TokenKey};
use crate::clock::Clock;

pub type TokenResult = Result<Arc<Token>, TokenError>;
/// Runs one exchange. Called only when the store decides one is needed.
pub type Fetch = Box<dyn FnOnce() -> BoxFuture<'static, Result<Token, TokenError>> + Send>;

/// Counters a store reports (for tests and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub tokens: u64,
    pub exchanges_started: u64,
    pub exchanges_in_flight: usize,
    /// Requests now waiting for an exchange to finish.
    pub waiting: usize,
    /// Requests that ever had to wait for an exchange (the rest were served from the store).
    pub waited: u64,
}

pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The stored token for `key` if it needs nothing done (not yet due for renewal), counted as
    /// a hit; `None` sends the caller to `get_or_fetch`. The cached path without a future.
    /// `now`: the monotonic clock as the caller read it (the store adds its clock's offset).
    fn fresh(&self, key: KeyRef<'_>, now: std::time::Instant) -> Option<Arc<Token>>;
    /// A usable token for `key`, running `fetch` if there is none (at most one at a time per key).
    fn get_or_fetch<'a>(&'a self, key: &'a TokenKey, fetch: Fetch) -> BoxFuture<'a, TokenResult>;
    /// Forgets `token` if it is still the one stored for `key` (the upstream refused it).
    fn invalidate(&self, key: &TokenKey, token: &Arc<Token>);
    fn stats(&self) -> StoreStats;
    /// Every token held now (for revocation at shutdown).
    fn held(&self) -> Vec<(TokenKey, Arc<Token>)>;
}

type InflightResult = Shared<BoxFuture<'static, TokenResult>>;

/// Tokens in this process's memory, bounded by count (least recently used goes first).
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Hashed with foldhash, seeded per process: SipHash of the key (provider identity, subject,
    /// scope) cost ~600 instructions of every request's look-up.
    tokens: moka::sync::Cache<TokenKey, Arc<Held>, foldhash::quality::RandomState>,
    /// This store among others a thread may have looked up in (`Front::store`).
    id: u64,
    /// Bumped whenever a token is stored or dropped: a thread's `Front` filled at another
    /// generation is emptied before use.
    generation: AtomicU64,
    /// A token unused this many milliseconds is dropped (measured on `clock`, so tests can
    /// cross it).
    idle_ms: u64,
    epoch: std::time::Instant,
    inflight: Mutex<HashMap<TokenKey, InflightResult>>,
    clock: Clock,
    started: AtomicU64,
    waiting: AtomicUsize,
    waited: AtomicU64,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").field("stats", &self.stats()).finish()
    }
}

impl MemoryStore {
    /// At most `max_tokens` tokens; one unused for `idle` is dropped.
    pub fn new(max_tokens: u64, idle: std::time::Duration, clock: Clock) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Inner {
                // moka's own idle expiry frees memory of tokens nobody asks for again; `lookup`
                // applies the same rule on the store's clock.
                tokens: moka::sync::Cache::builder()
                    .max_capacity(max_tokens)
                    .time_to_idle(idle)
                    .build_with_hasher(foldhash::quality::RandomState::default()),
                id: NEXT_STORE.fetch_add(1, Ordering::Relaxed),
                generation: AtomicU64::new(0),
                idle_ms: u64::try_from(idle.as_millis()).unwrap_or(u64::MAX),
                epoch: clock.now(),
                inflight: Mutex::new(HashMap::new()),
                clock,
                started: AtomicU64::new(0),
                waiting: AtomicUsize::new(0),
                waited: AtomicU64::new(0),
            }),
        }
    }

    /// The exchange in flight for `key`, started now if there is none. Call with the lock held.
    fn join_or_start(
        &self,
        inflight: &mut HashMap<TokenKey, InflightResult>,
        key: &TokenKey,
        fetch: Fetch,
    ) -> InflightResult {
        if let Some(running) = inflight.get(key) {
            return running.clone();
        }
        self.inner.started.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::clone(&self.inner);
        let owned_key = key.clone();
        // A task of its own, so that the exchange finishes (and is stored) even if every request
        // that waited for it has gone away.
        let task = tokio::spawn(async move {
            let result = fetch().await.map(Arc::new);
            if let Ok(token) = &result {
                let now = inner.millis(inner.clock.now());
                inner
                    .tokens
                    .insert(owned_key.clone(), Arc::new(Held { token: Arc::clone(token), used: AtomicU64::new(now) }));
                inner.generation.fetch_add(1, Ordering::Release);
            }
            lock(&inner.inflight).remove(&owned_key);
            result
        });
        let shared =
            async move { task.await.unwrap_or_else(|e| Err(TokenError::Internal(e.to_string()))) }.boxed().shared();
        inflight.insert(key.clone(), shared.clone());
        shared
    }
}

/// A stored token and when it was last handed out (milliseconds after the store's epoch).
struct Held {
    token: Arc<Token>,
    used: AtomicU64,
}

impl Held {
    /// Marks the token used at `now` (ms): written only when that is later than the last mark,
    /// at most once a millisecond, so that workers serving one subject do not pass its cache
    /// line back and forth on every request.
    fn touch(&self, now: u64) {
        if self.used.load(Ordering::Relaxed) < now {
            self.used.store(now, Ordering::Relaxed);
        }
    }
}

/// Numbers the stores of this process, for `Front::store`.
static NEXT_STORE: AtomicU64 = AtomicU64::new(1);

/// How long a thread serves an entry from its `Front` before looking it up in moka again.
const FRONT_MS: u64 = 1000;
/// Most entries in a thread's `Front` (emptied when full).
const FRONT_ENTRIES: usize = 256;

/// A serving thread's own copy of the entries it took from moka in the last `FRONT_MS`: a hit
/// here skips moka's look-up (its hashing, epoch pin, clock reading and access record: the
/// look-up went from ~1,000 instructions to ~350, callgrind). Used only at the store's
/// generation it was filled at (every token stored or dropped bumps it, so an invalidated or
/// renewed token is never served from here) and for `FRONT_MS` after each entry was taken, so
/// that moka still sees each subject in use at least once a second for its idle expiry and
/// eviction order. An entry moka evicts for room may still be served from here for up to that
/// second.
struct Front {
    store: u64,
    generation: u64,
    /// The held token, the thread's own copy of it (`Token::copy_for_thread`), and when it was
    /// taken from moka (ms after the store's epoch). Looked up by a lent key (`KeyRef`), hence
    /// hashbrown's map rather than std's.
    entries: hashbrown::HashMap<TokenKey, (Arc<Held>, Arc<Token>, u64), rustc_hash::FxBuildHasher>,
}

thread_local! {
    static FRONT: std::cell::RefCell<Front> =
        std::cell::RefCell::new(Front { store: 0, generation: 0, entries: hashbrown::HashMap::default() });
}

impl Inner {
    fn millis(&self, at: std::time::Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// The token stored for `key`, unless its subject has been idle too long (then it is dropped).
    fn lookup(&self, key: &TokenKey, now: std::time::Instant) -> Option<Arc<Token>> {
        self.lookup_held(key, self.millis(now)).map(|held| Arc::clone(&held.token))
    }

    /// `lookup` in moka, `now` in ms after the epoch.
    fn lookup_held(&self, key: &TokenKey, now: u64) -> Option<Arc<Held>> {
        let held = self.tokens.get(key)?;
        if self.idle_at(&held, now) {
            self.tokens.invalidate(key);
            self.generation.fetch_add(1, Ordering::Release);
            return None;
        }
        held.touch(now);
        Some(held)
    }

    fn idle_at(&self, held: &Held, now: u64) -> bool {
        now.saturating_sub(held.used.load(Ordering::Relaxed)) > self.idle_ms
    }

    /// `lookup` through the calling thread's `Front`.
    fn lookup_front(&self, key: KeyRef<'_>, now: std::time::Instant) -> Option<Arc<Token>> {
        let now = self.millis(now);
        let generation = self.generation.load(Ordering::Acquire);
        FRONT.with_borrow_mut(|front| {
            if front.store != self.id || front.generation != generation {
                front.entries.clear();
                (front.store, front.generation) = (self.id, generation);
            }
            if let Some((held, copy, taken)) = front.entries.get(&key)
                && now.saturating_sub(*taken) < FRONT_MS
                && !self.idle_at(held, now)
            {
                held.touch(now);
                return Some(Arc::clone(copy));
            }
            let key = key.to_key();
            let held = self.lookup_held(&key, now)?;
            if front.entries.len() >= FRONT_ENTRIES {
                front.entries.clear();
            }
            let copy = Arc::new(held.token.copy_for_thread());
            front.entries.insert(key, (held, Arc::clone(&copy), now));
            Some(copy)
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent even if a holder panicked: every critical section is one call.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TokenStore for MemoryStore {
    fn fresh(&self, key: KeyRef<'_>, now: std::time::Instant) -> Option<Arc<Token>> {
        let now = self.inner.clock.at(now);
        let token = self.inner.lookup_front(key, now)?;
        if now < token.refresh_at {
            crate::metrics::METRICS.cache(crate::metrics::CacheOutcome::Hit);
            Some(token)
        } else {
            None
        }
    }

    fn get_or_fetch<'a>(&'a self, key: &'a TokenKey, fetch: Fetch) -> BoxFuture<'a, TokenResult> {
        let now = self.inner.clock.now();
        let metrics = &crate::metrics::METRICS;
        if let Some(token) = self.inner.lookup(key, now) {
            if now < token.refresh_at {
                metrics.cache(crate::metrics::CacheOutcome::Hit);
                return futures_util::future::ready(Ok(token)).boxed();
            }
            if now < token.expires_at {
                // Serve the current token; renew in the background.
                metrics.cache(crate::metrics::CacheOutcome::RefreshAhead);
                let mut inflight = lock(&self.inner.inflight);
                drop(self.join_or_start(&mut inflight, key, fetch));
                return futures_util::future::ready(Ok(token)).boxed();
            }
        }
        metrics.cache(crate::metrics::CacheOutcome::Miss);
        let running = {
            let mut inflight = lock(&self.inner.inflight);
            // An exchange may have finished between the look-up above and taking the lock.
            match self.inner.lookup(key, now) {
                Some(token) if now < token.expires_at && !inflight.contains_key(key) && now < token.refresh_at => {
                    return futures_util::future::ready(Ok(token)).boxed();
                }
                _ => self.join_or_start(&mut inflight, key, fetch),
            }
        };
        async move {
            self.inner.waiting.fetch_add(1, Ordering::Relaxed);
            self.inner.waited.fetch_add(1, Ordering::Relaxed);
            let _waiting = Waiting(&self.inner.waiting);
            running.await
        }
        .boxed()
    }

    fn invalidate(&self, key: &TokenKey, token: &Arc<Token>) {
        // By value: a thread's front serves a copy of the stored token.
        if self.inner.tokens.get(key).is_some_and(|current| current.token.same(token)) {
            self.inner.tokens.invalidate(key);
        }
        // Even when moka no longer holds it: a thread's `Front` may.
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    fn held(&self) -> Vec<(TokenKey, Arc<Token>)> {
        self.inner.tokens.iter().map(|(k, v)| ((*k).clone(), Arc::clone(&v.token))).collect()
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            tokens: self.inner.tokens.entry_count(),
            exchanges_started: self.inner.started.load(Ordering::Relaxed),
            exchanges_in_flight: lock(&self.inner.inflight).len(),
            waiting: self.inner.waiting.load(Ordering::Relaxed),
            waited: self.inner.waited.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{AccessToken, Secret};
    use std::time::Duration;

    fn token(clock: &Clock, n: u32) -> Token {
        let now = clock.now();
        Token {
            access_token: AccessToken::new(&Secret::new(format!("tok-{n}"))).expect("header value"),
            token_type: "Bearer".into(),
            instance_url: None,
            scope: None,
            id: None,
            refresh_at: now + Duration::from_secs(60),
            expires_at: now + Duration::from_secs(120),
        }
    }

    fn key() -> TokenKey {
        TokenKey { provider: "p".into(), subject: "alice@example.com".into(), scope: None }
    }

    #[tokio::test]
    async fn waiters_share_one_exchange_and_its_error() {
        let clock = Clock::default();
        let store = MemoryStore::new(100, std::time::Duration::from_secs(3600), clock.clone());
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let k = key();
        let mut pending = Vec::new();
        for _ in 0..20 {
            let calls = calls.clone();
            let mut gate = gate.clone();
            let fetch: Fetch = Box::new(move || {
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.wait_for(|open| *open).await;
                    Err(TokenError::Status(503))
                }
                .boxed()
            });
            pending.push(store.get_or_fetch(&k, fetch));
        }
        let all = futures_util::future::join_all(pending);
        let _ = release.send(true);
        let results = all.await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(results.iter().all(|r| r.as_ref().err() == Some(&TokenError::Status(503))));
        assert_eq!(store.stats().exchanges_in_flight, 0);
    }

    /// A fetch of a token valid for two hours.
    fn fetching(clock: Clock, n: u32) -> Fetch {
        Box::new(move || {
            async move {
                let mut t = token(&clock, n);
                t.refresh_at += Duration::from_secs(3600);
                t.expires_at += Duration::from_secs(7200);
                Ok(t)
            }
            .boxed()
        })
    }

    #[tokio::test]
    async fn idle_subjects_are_dropped_and_the_count_is_bounded() {
        let clock = Clock::default();
        let store = MemoryStore::new(10, Duration::from_secs(600), clock.clone());
        let k = key();
        let first = store.get_or_fetch(&k, fetching(clock.clone(), 0)).await.expect("first");
        clock.advance(Duration::from_secs(590));
        // Still used within the idle time: kept, and its idle time starts again.
        let kept = store.get_or_fetch(&k, fetching(clock.clone(), 1)).await.expect("kept");
        assert!(Arc::ptr_eq(&first, &kept));
        clock.advance(Duration::from_secs(601));
        let after_idle = store.get_or_fetch(&k, fetching(clock.clone(), 2)).await.expect("new");
        assert_eq!(after_idle.access_token.expose(), "tok-2", "idle longer than 600 s: dropped");

        for i in 0..100u32 {
            let k = TokenKey { provider: "p".into(), subject: format!("user{i}@example.com").into(), scope: None };
            store.get_or_fetch(&k, fetching(clock.clone(), i)).await.expect("token");
        }
        store.inner.tokens.run_pending_tasks();
        assert!(store.stats().tokens <= 10, "{}", store.stats().tokens);
    }

    /// What a thread took from moka it serves for a second from its own `Front`; never a token
    /// since dropped (refused upstream, or idle), and never another store's.
    #[tokio::test]
    async fn a_threads_front_serves_only_what_the_store_still_holds() {
        let clock = Clock::default();
        let store = MemoryStore::new(100, Duration::from_secs(600), clock.clone());
        let k = key();
        let first = store.get_or_fetch(&k, fetching(clock.clone(), 0)).await.expect("first");
        let now = std::time::Instant::now();
        for _ in 0..3 {
            assert!(store.fresh(k.lent(), now).is_some_and(|t| t.same(&first)));
        }
        // The thread's own copy: neither the token's allocation nor its header value's bytes
        // are the stored token's.
        let copy = store.fresh(k.lent(), now).expect("served");
        assert!(!Arc::ptr_eq(&copy, &first));
        let bytes = |t: &Token| t.access_token.authorization().as_bytes().as_ptr();
        assert_ne!(bytes(&copy), bytes(&first));
        assert_eq!(copy.access_token.expose(), first.access_token.expose());
        // Another store on this thread, same key, as many tokens stored: only its own tokens.
        let other = MemoryStore::new(100, Duration::from_secs(600), clock.clone());
        assert!(other.fresh(k.lent(), now).is_none());
        let its_own = other.get_or_fetch(&k, fetching(clock.clone(), 9)).await.expect("its own");
        for _ in 0..2 {
            assert!(other.fresh(k.lent(), now).is_some_and(|t| t.same(&its_own)));
            assert!(store.fresh(k.lent(), now).is_some_and(|t| t.same(&first)));
        }

        // Refused upstream, as the copy the request was served.
        store.invalidate(&k, &copy);
        assert!(store.fresh(k.lent(), now).is_none(), "refused upstream: not served again");
        let second = store.get_or_fetch(&k, fetching(clock.clone(), 1)).await.expect("second");
        assert!(store.fresh(k.lent(), now).is_some_and(|t| t.same(&second)));

        // Served from the front, the subject is still in use: not dropped as idle...
        for _ in 0..4 {
            clock.advance(Duration::from_secs(300));
            assert!(store.fresh(k.lent(), std::time::Instant::now()).is_some_and(|t| t.same(&second)));
        }
        // ...until it is unused for longer than the idle time.
        clock.advance(Duration::from_secs(601));
        assert!(store.fresh(k.lent(), std::time::Instant::now()).is_none(), "idle: dropped");
        assert!(store.fresh(k.lent(), std::time::Instant::now()).is_none(), "and gone from the front too");

        // An idle time shorter than the front's second is kept all the same.
        let brief = MemoryStore::new(100, Duration::from_millis(500), clock.clone());
        brief.get_or_fetch(&k, fetching(clock.clone(), 2)).await.expect("token");
        assert!(brief.fresh(k.lent(), std::time::Instant::now()).is_some());
        clock.advance(Duration::from_millis(600));
        assert!(brief.fresh(k.lent(), std::time::Instant::now()).is_none(), "idle for 600 ms of 500");
    }

    #[tokio::test]
    async fn refresh_point_renews_in_background_and_expiry_waits() {
        let clock = Clock::default();
        let store = MemoryStore::new(100, std::time::Duration::from_secs(3600), clock.clone());
        let k = key();
        let n = Arc::new(AtomicUsize::new(0));
        let fetcher = |clock: Clock, n: Arc<AtomicUsize>| -> Fetch {
            Box::new(move || {
                async move {
                    let i = n.fetch_add(1, Ordering::SeqCst) as u32;
                    Ok(token(&clock, i))
                }
                .boxed()
            })
        };
        let first = store.get_or_fetch(&k, fetcher(clock.clone(), n.clone())).await.expect("first");
        assert_eq!(first.access_token.expose(), "tok-0");
        let hit = store.get_or_fetch(&k, fetcher(clock.clone(), n.clone())).await.expect("hit");
        assert!(Arc::ptr_eq(&first, &hit));
        clock.advance(Duration::from_secs(90));
        // Past the refresh point: the old token is served at once, a renewal starts.
        let served = store.get_or_fetch(&k, fetcher(clock.clone(), n.clone())).await.expect("served");
        assert!(Arc::ptr_eq(&first, &served));
        clock.advance(Duration::from_secs(200));
        // Past expiry of both: the request waits for a new one.
        let fresh = store.get_or_fetch(&k, fetcher(clock.clone(), n.clone())).await.expect("fresh");
        assert_ne!(fresh.access_token.expose(), "tok-0");
        assert!(n.load(Ordering::SeqCst) >= 2);
    }
}
