//! The probe till: one real `pos-agent` on HQ that, while the simulated terminals
//! push, does what a cashier's screen waits for. It opens sales with points (HQ's
//! reservation round trip, in the checkout path) and, from a second client, looks up
//! the card's balance (HQ's live balance, what the till shows on a scan). Each sample
//! is the time the till's client waited, and whether the agent had to decide offline
//! because HQ did not answer within `live_balance_timeout_ms`.

use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use testkit::agent::{Agent, sale_body, sync_config};

/// The probe till's card.
const PROBE_CARD: &str = "4006381333931";

/// The product's default `live_balance_timeout_ms`, not the tests' shorter one.
pub const LIVE_BALANCE_TIMEOUT_MS: u64 = 800;

/// A real till opening sales with points (1 point each, then cancelled) and looking up
/// its card until told to stop, from a card it earned points on before the load.
pub struct ProbeTill {
    agent: Agent,
}

/// One kind of probe's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probed {
    /// 99th percentile of the time the till's client waited.
    pub p99_ms: f64,
    /// Requests made.
    pub count: usize,
    /// The share the agent answered offline (HQ not answering in time).
    pub offline_share: f64,
}

impl Probed {
    /// The figures of `samples` (latency, answered offline).
    fn of(samples: &[(Duration, bool)]) -> Self {
        let offline = samples.iter().filter(|(_, offline)| *offline).count();
        let mut latencies: Vec<Duration> = samples.iter().map(|(d, _)| *d).collect();
        latencies.sort();
        Self {
            p99_ms: crate::latency::quantile_ms(&latencies, 0.99),
            count: samples.len(),
            offline_share: offline as f64 / samples.len().max(1) as f64,
        }
    }
}

impl ProbeTill {
    /// Starts the till on HQ `base` as `store`/`terminal` and earns the card's points.
    pub fn start(dir: &Path, base: &str, store: &str, terminal: &str, token: &str) -> Self {
        // Caps mode: no allowance, so every hold asks HQ for its reservation.
        let config = sync_config(
            dir,
            store,
            terminal,
            base,
            token,
            "[offline]\nredemption = \"caps\"\n",
        )
        .replace(
            "live_balance_timeout_ms = 500",
            &format!("live_balance_timeout_ms = {LIVE_BALANCE_TIMEOUT_MS}"),
        );
        let agent = Agent::start(dir, &config);
        // 10,000 points: far more than the holds whose releases are still queued.
        agent.sell("EARN", Some(PROBE_CARD), 20_000_000, 0);
        agent.wait_synced();
        Self { agent }
    }

    /// Opens and cancels sales, and looks up the card, until `stop`: the figures of
    /// the openings and of the lookups.
    pub fn run(&self, stop: &AtomicBool) -> anyhow::Result<(Probed, Probed)> {
        std::thread::scope(|s| {
            let lookups = s.spawn(|| self.look_up(stop));
            let sales = self.open_sales(stop);
            if sales.is_err() {
                // The lookups would otherwise go on until the load ends.
                stop.store(true, Ordering::Relaxed);
            }
            let lookups = lookups
                .join()
                .map_err(|_| anyhow::anyhow!("the probe till's lookups panicked"))?;
            Ok((Probed::of(&sales?), Probed::of(&lookups?)))
        })
    }

    fn open_sales(&self, stop: &AtomicBool) -> anyhow::Result<Vec<(Duration, bool)>> {
        let client = client();
        let mut n = 0u64;
        sample_until(stop, || {
            n += 1;
            let receipt = format!("P-{n}");
            let started = Instant::now();
            let mut reply = client
                .post(&self.agent.url("/v1/sales"))
                .send_json(sale_body(&receipt, Some(PROBE_CARD), 10_000, 1))?;
            let answer: serde_json::Value = reply.body_mut().read_json()?;
            let waited = started.elapsed();
            // Read to its end, so ureq keeps the connection (as in `agent_sales`).
            client
                .post(&self.agent.url(&format!("/v1/sales/{receipt}/cancel")))
                .send_json(json!({}))?
                .body_mut()
                .read_to_vec()?;
            Ok((waited, answer["offline"] == true))
        })
    }

    fn look_up(&self, stop: &AtomicBool) -> anyhow::Result<Vec<(Duration, bool)>> {
        let client = client();
        let url = self.agent.url(&format!("/v1/cards/{PROBE_CARD}"));
        sample_until(stop, || {
            let started = Instant::now();
            let mut reply = client.get(&url).call()?;
            let answer: serde_json::Value = reply.body_mut().read_json()?;
            Ok((started.elapsed(), answer["offline"] == true))
        })
    }
}

/// A client of the till API that treats an error status as an error.
fn client() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(true)
            .build(),
    )
}

/// Takes samples one after the other until `stop`.
fn sample_until<T>(
    stop: &AtomicBool,
    mut sample: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        samples.push(sample()?);
    }
    Ok(samples)
}
