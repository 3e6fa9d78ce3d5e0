//! `/metrics`: Prometheus text format, encoded by `prometheus-client`.
//! Off by default; optionally behind a bearer token.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Class {
    class: &'static str,
}

/// Everything gatehouse counts.
pub struct Metrics {
    registry: Registry,
    logins: Family<Outcome, Counter>,
    throttled: Counter,
    requests: Family<Class, Counter>,
    latency: Histogram,
    reaped: Counter,
    db_errors: Counter,
    active: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl crate::accounts::Counters for Metrics {
    fn login(&self, outcome: &str) {
        Metrics::login(self, outcome);
    }
    fn throttled(&self) {
        Metrics::throttled(self);
    }
}

impl Metrics {
    /// A fresh set of metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let logins = Family::<Outcome, Counter>::default();
        let throttled = Counter::default();
        let requests = Family::<Class, Counter>::default();
        // 100 µs to ~3 s.
        let latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let reaped = Counter::default();
        let db_errors = Counter::default();
        let active = Gauge::default();
        registry.register("logins", "Sign-in attempts by outcome", logins.clone());
        registry.register(
            "login_throttled",
            "Sign-in attempts refused by throttling",
            throttled.clone(),
        );
        registry.register(
            "requests",
            "HTTP requests by status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a request",
            latency.clone(),
        );
        registry.register(
            "reaper_deleted_sessions",
            "Expired sessions deleted by the reaper",
            reaped.clone(),
        );
        registry.register(
            "database_errors",
            "Requests that failed on the database or store",
            db_errors.clone(),
        );
        registry.register(
            "active_sessions",
            "Live sessions at the last scrape",
            active.clone(),
        );
        Self {
            registry,
            logins,
            throttled,
            requests,
            latency,
            reaped,
            db_errors,
            active,
        }
    }

    /// Counts a sign-in attempt.
    pub fn login(&self, outcome: &str) {
        self.logins
            .get_or_create(&Outcome {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a throttled attempt.
    pub fn throttled(&self) {
        self.throttled.inc();
    }

    /// Counts a request and its latency.
    pub fn request(&self, status: u16, took: Duration) {
        let class = match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        self.requests.get_or_create(&Class { class }).inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// Counts reaped sessions.
    pub fn reaped(&self, n: usize) {
        self.reaped.inc_by(n as u64);
    }

    /// Counts a database or store failure.
    pub fn db_error(&self) {
        self.db_errors.inc();
    }

    /// The text exposition, with the active-session gauge set to `active`.
    pub fn render(&self, active: i64) -> String {
        self.active.set(active);
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
