//! What the proxy counts, for the admin listener's `/metrics` (Prometheus/OpenMetrics text):
//! requests by route, operation and status with their latency; token cache outcomes; token
//! endpoint exchanges by outcome with their latency; validation rejections by rule; breaker state.
//!
//! One set of counters per process (`METRICS`): counters survive config reloads, as Prometheus
//! expects of a process. Rendering and the breaker gauges, read from the config served now, are
//! here; where each count is taken is at the code that does the thing.

use std::sync::{Arc, LazyLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::sharded::{Counter, Latency};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: Arc<str>,
    pub operation: Arc<str>,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExchangeLabels {
    pub provider: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub code: &'static str,
    pub rule: &'static str,
}

/// What a token look-up came to (the `outcome` label of `token_cache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    RefreshAhead,
    Renegotiation,
}

impl CacheOutcome {
    fn label(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::RefreshAhead => "refresh_ahead",
            CacheOutcome::Renegotiation => "renegotiation",
        }
    }
}

type Histograms<L> = Family<L, Latency>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Histograms<RouteLabels>,
    /// `hit`, `miss` (the request waited for an exchange), `refresh_ahead` (served the current
    /// token while its renewal started), `renegotiation` (the upstream refused the session).
    pub token_cache: Family<OutcomeLabels, Counter>,
    /// The series of `token_cache`, resolved once (in `CacheOutcome` order): a look-up is counted
    /// with one atomic add, without the family's lock and label hashing.
    cache_outcomes: [Counter; 4],
    /// `ok`, `refused` (invalid_grant and other 4xx answers), `unavailable` (unreachable, 429,
    /// 5xx), `error` (an answer not understood, signing).
    pub exchanges: Family<ExchangeLabels, Counter>,
    pub exchange_seconds: Histograms<ProviderLabels>,
    pub rejections: Family<RuleLabels, Counter>,
    /// 1 while a provider's breaker is open (new exchanges refused fast), else 0.
    breaker_open: Family<ProviderLabels, Gauge>,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("oauth_egress");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests answered, by route, operation and HTTP status", requests.clone());
        let request_seconds: Histograms<RouteLabels> = Family::default();
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers, by route",
            request_seconds.clone(),
        );
        let token_cache = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "token_cache",
            "Token look-ups by outcome: hit, miss, refresh_ahead, renegotiation",
            token_cache.clone(),
        );
        let exchanges = Family::<ExchangeLabels, Counter>::default();
        registry.register("idp_exchanges", "Token endpoint exchanges by provider and outcome", exchanges.clone());
        let exchange_seconds: Histograms<ProviderLabels> = Family::default();
        registry.register(
            "idp_exchange_duration_seconds",
            "Time of one token endpoint exchange, by provider",
            exchange_seconds.clone(),
        );
        let rejections = Family::<RuleLabels, Counter>::default();
        registry.register(
            "validation_rejections",
            "SOAP requests refused by the envelope pass, by fault code and rule",
            rejections.clone(),
        );
        let breaker_open = Family::<ProviderLabels, Gauge>::default();
        registry.register(
            "breaker_open",
            "1 while a provider's breaker is open and new exchanges are refused fast",
            breaker_open.clone(),
        );
        let cache_outcomes =
            [CacheOutcome::Hit, CacheOutcome::Miss, CacheOutcome::RefreshAhead, CacheOutcome::Renegotiation]
                .map(|o| token_cache.get_or_create(&OutcomeLabels { outcome: o.label() }).clone());
        Metrics {
            registry,
            requests,
            request_seconds,
            token_cache,
            cache_outcomes,
            exchanges,
            exchange_seconds,
            rejections,
            breaker_open,
        }
    }

    pub fn cache(&self, outcome: CacheOutcome) {
        self.cache_outcomes[outcome as usize].inc();
    }

    /// The latency histogram of `route`, to be kept by the route (see `Route::latency`).
    pub fn route_latency(&self, route: &Arc<str>) -> Latency {
        self.request_seconds.get_or_create(&RouteLabels { route: Arc::clone(route) }).clone()
    }

    /// The text `/metrics` answers with; breaker gauges are read from `config` now.
    pub fn render(&self, config: &Config, now: std::time::Instant) -> String {
        self.breaker_open.clear();
        for p in &config.providers {
            let open = i64::from(p.breaker.is_open(now));
            self.breaker_open.get_or_create(&ProviderLabels { provider: p.name.to_string() }).set(open);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The content type of `render`'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
