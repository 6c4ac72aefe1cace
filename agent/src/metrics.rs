//! Prometheus metrics of the agent, served at `GET /metrics`. Label values come from
//! enums ([`SaleState`], [`ScanResult`], the till API's error codes), never from
//! free text.

use crate::sales::SaleState;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// What became of one scanner frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanResult {
    /// A card, published to the till.
    Accepted,
    /// The same card again within the debounce window.
    Debounced,
    /// Not a card (bad code, bad token, replayed token).
    Invalid,
    /// Bytes dropped by the framer (too long, control garbage, incomplete).
    Dropped,
}

impl ScanResult {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Debounced => "debounced",
            Self::Invalid => "invalid",
            Self::Dropped => "dropped",
        }
    }
}

/// The `outcome` of holds released by the hold timeout.
const EXPIRED: &str = "expired";

/// Every metric the agent exports.
pub struct Metrics {
    registry: Registry,
    /// Sales by outcome: the state the till moved them to, or `expired`.
    pub sales: Family<Labels, Counter>,
    /// Committed sales that redeemed points.
    pub redemptions: Counter,
    /// Points redeemed by committed sales.
    pub redeemed_points: Counter,
    /// Committed sales that accrued points.
    pub accruals: Counter,
    /// Points accrued by committed sales.
    pub accrued_points: Counter,
    /// Returns recorded.
    pub returns: Counter,
    /// Error answers by code.
    pub errors: Family<Labels, Counter>,
    /// Till API request latency by route.
    pub request_seconds: Family<Labels, Histogram>,
    /// Scanner frames by scanner and result (`accepted`, `debounced`, `invalid`, `dropped`).
    pub scans: Family<Labels, Counter>,
    /// Entries acknowledged by HQ.
    pub synced_entries: Counter,
    /// Failed sync attempts.
    pub sync_failures: Counter,
    /// Entries waiting for HQ.
    pub queue_depth: Gauge,
    /// 1 when HQ answered the last attempt.
    pub online: Gauge,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~1.6 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pos_agent");
        let m = Self {
            sales: Family::default(),
            redemptions: Counter::default(),
            redeemed_points: Counter::default(),
            accruals: Counter::default(),
            accrued_points: Counter::default(),
            returns: Counter::default(),
            errors: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            scans: Family::default(),
            synced_entries: Counter::default(),
            sync_failures: Counter::default(),
            queue_depth: Gauge::default(),
            online: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("sales", "Sales by outcome", m.sales.clone());
        registry.register(
            "redemptions",
            "Committed sales that redeemed points",
            m.redemptions.clone(),
        );
        registry.register(
            "redeemed_points",
            "Points redeemed by committed sales",
            m.redeemed_points.clone(),
        );
        registry.register(
            "accruals",
            "Committed sales that accrued points",
            m.accruals.clone(),
        );
        registry.register(
            "accrued_points",
            "Points accrued by committed sales",
            m.accrued_points.clone(),
        );
        registry.register("returns", "Returns recorded", m.returns.clone());
        registry.register(
            "errors",
            "Error answers of the till API by code",
            m.errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Till API request latency by route",
            m.request_seconds.clone(),
        );
        registry.register(
            "scans",
            "Scanner frames by scanner and result",
            m.scans.clone(),
        );
        registry.register(
            "synced_entries",
            "Journal entries acknowledged by HQ",
            m.synced_entries.clone(),
        );
        registry.register(
            "sync_failures",
            "Failed sync attempts",
            m.sync_failures.clone(),
        );
        registry.register(
            "sync_queue_depth",
            "Journal entries waiting for HQ",
            m.queue_depth.clone(),
        );
        registry.register(
            "online",
            "1 when HQ answered the last attempt",
            m.online.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts an error answer of the till API by its stable code.
    pub fn error(&self, code: &'static str) {
        self.errors
            .get_or_create(&vec![("code", code.to_owned())])
            .inc();
    }

    /// Counts a sale that reached `state` at the till's request.
    pub fn sale(&self, state: SaleState) {
        self.sale_outcome(state.as_str(), 1);
    }

    /// Counts holds released by the hold timeout.
    pub fn holds_expired(&self, n: usize) {
        self.sale_outcome(EXPIRED, u64::try_from(n).unwrap_or(u64::MAX));
    }

    fn sale_outcome(&self, outcome: &'static str, n: u64) {
        self.sales
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc_by(n);
    }

    /// Counts what became of a scanner frame.
    pub fn scan(&self, scanner: &str, result: ScanResult) {
        self.scans
            .get_or_create(&vec![
                ("scanner", scanner.to_owned()),
                ("result", result.as_str().to_owned()),
            ])
            .inc();
    }

    /// Records a request's latency.
    pub fn observe_request(&self, route: &str, seconds: f64) {
        self.request_seconds
            .get_or_create(&vec![("route", route.to_owned())])
            .observe(seconds);
    }

    /// The metrics in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
