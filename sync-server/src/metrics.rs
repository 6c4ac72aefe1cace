//! Prometheus metrics of HQ, served at `GET /metrics` (see `http::metrics` for who
//! may read them): pushes and their entries, refusals, quarantined entries, push
//! latency, live-balance lookups, the PostgreSQL pool's waits and errors, and how
//! long an open transaction has held the PostgreSQL balance feed back. Label
//! values come from enums and fixed strings, never from request text, so no card or
//! token can reach a scrape.

use crate::ledger::AnomalyKind;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// 1 ms .. ~16 s: a push is milliseconds when idle, seconds when queued at saturation.
fn push_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// 100 µs .. ~16 s: a free connection is immediate, the pool gives up after 15 s.
fn wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// The PostgreSQL store's share (its connection pool and its change feed); on SQLite
/// (one writer, no pool, a feed no other transaction holds back) it stays at zero.
#[derive(Debug, Clone)]
pub struct PoolMetrics {
    /// Requests that found no free connection and had to wait for one.
    pub waits: Counter,
    /// How long those requests waited.
    pub wait_seconds: Histogram,
    /// Requests that got no connection (pool timeout, database unreachable).
    pub errors: Counter,
    /// How long one open transaction has held the balance feed back, as of the last
    /// pull (0 when none does).
    pub feed_held_back_seconds: Gauge,
}

impl Default for PoolMetrics {
    fn default() -> Self {
        Self {
            waits: Counter::default(),
            wait_seconds: wait_histogram(),
            errors: Counter::default(),
            feed_held_back_seconds: Gauge::default(),
        }
    }
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushResult {
    /// Committed and acknowledged (some entries may be duplicates or quarantined).
    Acknowledged,
    /// Refused as a whole (bad body, sequence refusal, terminal mismatch).
    Refused,
    /// Failed inside HQ (database unavailable, internal error).
    Failed,
}

impl PushResult {
    /// Every result, in the order of [`Self::index`].
    const ALL: [Self; 3] = [Self::Acknowledged, Self::Refused, Self::Failed];

    const fn index(self) -> usize {
        match self {
            Self::Acknowledged => 0,
            Self::Refused => 1,
            Self::Failed => 2,
        }
    }

    const fn as_str(self) -> &'static str {
        match self {
            Self::Acknowledged => "acknowledged",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// The outcomes of an acknowledged push's entries, the `entries` family's labels.
const ENTRY_OUTCOMES: [&str; 3] = ["applied", "duplicate", "quarantined"];

/// Every metric HQ exports.
pub struct Metrics {
    registry: Registry,
    pushes: Family<Labels, Counter>,
    entries: Family<Labels, Counter>,
    refusals: Family<Labels, Counter>,
    push_seconds: Histogram,
    live_balances: Family<Labels, Counter>,
    /// The series every push updates, looked up once (each counter is shared with
    /// its family): a lookup allocates its label list and takes the family's lock.
    /// `pushes` by [`PushResult::index`], `entries` in [`ENTRY_OUTCOMES`] order.
    push_series: [Counter; 3],
    entry_series: [Counter; 3],
}

impl Metrics {
    /// Creates and registers every metric, with the store's pool metrics.
    pub fn new(pool: PoolMetrics) -> Self {
        let mut registry = Registry::with_prefix("sync_server");
        let pushes = Family::<Labels, Counter>::default();
        let entries = Family::<Labels, Counter>::default();
        // Every known series exists from the start at 0, so a rate() has a baseline.
        let push_series = PushResult::ALL.map(|result| {
            pushes
                .get_or_create(&vec![("result", result.as_str())])
                .clone()
        });
        let entry_series = ENTRY_OUTCOMES
            .map(|outcome| entries.get_or_create(&vec![("outcome", outcome)]).clone());
        let m = Self {
            pushes,
            entries,
            refusals: Family::default(),
            push_seconds: push_histogram(),
            live_balances: Family::default(),
            registry: Registry::default(),
            push_series,
            entry_series,
        };
        registry.register(
            "pushes",
            "Pushes by result (acknowledged, refused, failed)",
            m.pushes.clone(),
        );
        registry.register(
            "entries",
            "Entries of acknowledged pushes by outcome (applied, duplicate, quarantined)",
            m.entries.clone(),
        );
        registry.register(
            "push_refusals",
            "Pushes refused by kind (gap; rewind and id_reuse are conflicts; terminal_mismatch)",
            m.refusals.clone(),
        );
        registry.register(
            "push_duration_seconds",
            "Time to answer a push, from its body read to its answer",
            m.push_seconds.clone(),
        );
        registry.register(
            "live_balance_lookups",
            "Live-balance lookups by result (ok, error)",
            m.live_balances.clone(),
        );
        registry.register(
            "db_pool_waits",
            "Requests that waited for a free database connection",
            pool.waits,
        );
        registry.register(
            "db_pool_wait_seconds",
            "Time requests waited for a free database connection",
            pool.wait_seconds,
        );
        registry.register(
            "db_pool_errors",
            "Requests that got no database connection",
            pool.errors,
        );
        registry.register(
            "feed_held_back_seconds",
            "How long one open transaction has held the balance feed back, as of the last pull",
            pool.feed_held_back_seconds,
        );
        for result in ["ok", "error"] {
            let _ = m.live_balances.get_or_create(&vec![("result", result)]);
        }
        Self { registry, ..m }
    }

    /// Counts a push and its latency.
    pub fn push(&self, result: PushResult, seconds: f64) {
        self.push_series[result.index()].inc();
        self.push_seconds.observe(seconds);
    }

    /// Counts the entries of an acknowledged push.
    pub fn entries(&self, applied: u32, duplicates: u32, quarantined: usize) {
        let counts = [
            u64::from(applied),
            u64::from(duplicates),
            u64::try_from(quarantined).unwrap_or(u64::MAX),
        ];
        for (series, n) in self.entry_series.iter().zip(counts) {
            series.inc_by(n);
        }
    }

    /// Counts a refused push by its kind.
    pub fn refusal(&self, kind: AnomalyKind) {
        self.refusals
            .get_or_create(&vec![("kind", kind.as_str())])
            .inc();
    }

    /// Counts a live-balance lookup.
    pub fn live_balance(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.live_balances
            .get_or_create(&vec![("result", result)])
            .inc();
    }

    /// The metrics in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_exposition_under_their_labels() {
        let pool = PoolMetrics::default();
        let m = Metrics::new(pool.clone());
        m.push(PushResult::Acknowledged, 0.002);
        m.entries(3, 1, 1);
        m.refusal(AnomalyKind::Rewind);
        m.live_balance(true);
        pool.waits.inc();
        let text = m.render();
        for line in [
            "sync_server_pushes_total{result=\"acknowledged\"} 1",
            "sync_server_entries_total{outcome=\"applied\"} 3",
            "sync_server_entries_total{outcome=\"duplicate\"} 1",
            "sync_server_entries_total{outcome=\"quarantined\"} 1",
            "sync_server_push_refusals_total{kind=\"rewind\"} 1",
            "sync_server_live_balance_lookups_total{result=\"ok\"} 1",
            "sync_server_db_pool_waits_total 1",
            "sync_server_push_duration_seconds_count 1",
            "sync_server_feed_held_back_seconds 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
