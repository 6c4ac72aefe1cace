//! Many terminals at once: `terminals` simulated tills each push small batches to
//! real `sync-server` processes concurrently, each waiting for its answer before the
//! next push (as the agent does). Throughput and push latency percentiles.
//!
//! Meanwhile one real `pos-agent` (the *probe till*) opens sales with points against
//! the first instance and cancels them, one after the other: the time to open such a
//! sale is HQ's reservation round trip under that load, which is in the checkout path.

use crate::hq::HqDb;
use crate::store_load::Target;
use protocol::wire::{PROTOCOL_VERSION, PushRequest};
use protocol::{StoreId, TerminalId};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use testkit::agent::{Agent, sale_body, sync_config};

/// The figures.
pub struct PushFigures {
    /// Entries acknowledged per second, all terminals together.
    pub entries_per_s: f64,
    /// Median push latency.
    pub p50_ms: f64,
    /// 99th percentile push latency.
    pub p99_ms: f64,
    /// Pushes made.
    pub pushes: usize,
    /// The probe till: 99th percentile time to open a sale with points while the
    /// terminals pushed.
    pub open_sale_p99_ms: f64,
    /// Sales the probe opened, and the share HQ did not answer in time for (the
    /// till fell back to the offline rules: `"offline": true`).
    pub open_sales: usize,
    /// See [`Self::open_sales`].
    pub open_sale_offline_share: f64,
}

/// A real till opening sales with points (1 point each, then cancelled) until told to
/// stop, from a card it earned 100 points on before the load.
struct ProbeTill {
    agent: Agent,
}

impl ProbeTill {
    /// Starts the till on HQ `base` as `store`/`terminal` and earns the card's points.
    fn start(dir: &Path, base: &str, store: &str, terminal: &str, token: &str) -> Self {
        // Caps mode: no allowance, so every hold asks HQ for its reservation. The
        // product's default live_balance_timeout_ms (800), not the tests' shorter one.
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
            "live_balance_timeout_ms = 800",
        );
        let agent = Agent::start(dir, &config);
        // 10,000 points: far more than the holds whose releases are still queued.
        agent.sell("EARN", Some(PROBE_CARD), 20_000_000, 0);
        agent.wait_synced();
        Self { agent }
    }

    /// Opens and cancels sales until `stop`; each opening's latency and whether it
    /// was decided offline.
    fn run(&self, stop: &AtomicBool) -> anyhow::Result<Vec<(Duration, bool)>> {
        let client = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(true)
                .build(),
        );
        let mut samples = Vec::new();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let receipt = format!("P-{n}");
            let started = Instant::now();
            let mut reply = client
                .post(&self.agent.url("/v1/sales"))
                .send_json(sale_body(&receipt, Some(PROBE_CARD), 10_000, 1))?;
            let answer: serde_json::Value = reply.body_mut().read_json()?;
            samples.push((started.elapsed(), answer["offline"] == true));
            client
                .post(&self.agent.url(&format!("/v1/sales/{receipt}/cancel")))
                .send_json(json!({}))?;
        }
        Ok(samples)
    }
}

/// The probe till's card.
const PROBE_CARD: &str = "4006381333931";

/// Enrolls `n` terminals directly in the database (the CLI would start `n` processes);
/// returns (store id, token) per terminal `till-{i}`.
fn enroll(target: &Target, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = target.open().await?;
        let clock = config::clock::Clock::default();
        let mut tokens = Vec::with_capacity(n);
        for i in 0..n {
            let store_id = format!("store-{}", i % 50);
            let mut out = Vec::new();
            sync_server::admin::terminal_add(
                store.as_ref(),
                clock,
                &StoreId::parse(&store_id)?,
                &TerminalId::parse(&format!("till-{i}"))?,
                false,
                &mut out,
            )
            .await?;
            let token = String::from_utf8(out)?
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_owned();
            tokens.push((store_id, token));
        }
        Ok(tokens)
    })
}

/// Runs the load: `terminals` tills, `rounds` pushes each of `batch` entries, spread
/// over `instances` sync-server processes on the one database (as behind a load
/// balancer). With `pace`, each till pushes once per `pace`, the tills spread evenly
/// over the period as real ones are; without, back to back (saturation).
pub fn measure(
    dir: &Path,
    db: &HqDb,
    instances: usize,
    terminals: usize,
    rounds: u64,
    batch: u64,
    pace: Option<Duration>,
) -> anyhow::Result<PushFigures> {
    let dirs: Vec<_> = (0..instances.max(1))
        .map(|i| dir.join(format!("hq-{i}")))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d)?;
    }
    let sqlite_file = dirs[0].join("hq.db");
    // One more terminal than the load: the probe till.
    let mut tokens = enroll(&db.target(&sqlite_file), terminals + 1)?;
    let (probe_store, probe_token) = tokens.pop().unwrap_or_default();
    let servers: Vec<_> = dirs
        .iter()
        .map(|d| match db {
            // Every SQLite instance uses the one file the terminals were enrolled in.
            HqDb::Sqlite => {
                testkit::hq::Server::start_on(d, &format!("sqlite:{}", sqlite_file.display()), "")
            }
            HqDb::Postgres(_) => db.start_server(d),
        })
        .collect();
    let probe = ProbeTill::start(
        &dir.join("probe-till"),
        &servers[0].base,
        &probe_store,
        &format!("till-{terminals}"),
        &probe_token,
    );
    let barrier = Arc::new(Barrier::new(terminals + 1));
    let mut threads = Vec::new();
    for (i, (store, token)) in tokens.into_iter().enumerate() {
        let url = format!("{}/v1/sync/push", servers[i % servers.len()].base);
        let barrier = barrier.clone();
        threads.push(std::thread::spawn(
            move || -> anyhow::Result<Vec<Duration>> {
                let terminal = format!("till-{i}");
                let now = time::OffsetDateTime::now_utc();
                let bodies: Vec<String> = (0..rounds)
                    .map(|r| {
                        let entries = (1..=batch)
                            .map(|k| crate::store_load::sale(&terminal, r * batch + k, now))
                            .collect();
                        Ok(serde_json::to_string(&PushRequest {
                            protocol: PROTOCOL_VERSION,
                            store_id: StoreId::parse(&store)?,
                            terminal_id: TerminalId::parse(&terminal)?,
                            entries,
                        })?)
                    })
                    .collect::<anyhow::Result<_>>()?;
                let client = ureq::Agent::new_with_config(
                    ureq::Agent::config_builder()
                        .timeout_global(Some(Duration::from_secs(120)))
                        .build(),
                );
                barrier.wait();
                let start = Instant::now();
                let offset = pace.map(|p| p.mul_f64(i as f64 / terminals as f64));
                let mut latencies = Vec::with_capacity(bodies.len());
                for (round, body) in bodies.into_iter().enumerate() {
                    if let (Some(p), Some(o)) = (pace, offset) {
                        let due = start + o + p * u32::try_from(round).unwrap_or(u32::MAX);
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    }
                    let started = Instant::now();
                    client
                        .post(&url)
                        .header("authorization", &format!("Bearer {token}"))
                        .header("content-type", "application/json")
                        .send(body.as_bytes())?;
                    latencies.push(started.elapsed());
                }
                Ok(latencies)
            },
        ));
    }
    barrier.wait();
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let (all, probed) = std::thread::scope(|s| -> anyhow::Result<_> {
        let probing = s.spawn(|| probe.run(&stop));
        let mut all = Vec::new();
        for t in threads {
            all.extend(
                t.join()
                    .map_err(|_| anyhow::anyhow!("a terminal thread panicked"))??,
            );
        }
        stop.store(true, Ordering::Relaxed);
        let probed = probing
            .join()
            .map_err(|_| anyhow::anyhow!("the probe till panicked"))??;
        Ok((all, probed))
    })?;
    let secs = started.elapsed().as_secs_f64();
    let mut all = all;
    servers[0].assert_verify();
    all.sort();
    let offline = probed.iter().filter(|(_, offline)| *offline).count();
    let mut opened: Vec<Duration> = probed.iter().map(|(d, _)| *d).collect();
    opened.sort();
    Ok(PushFigures {
        entries_per_s: (terminals as u64 * rounds * batch) as f64 / secs,
        p50_ms: percentile_ms(&all, 50),
        p99_ms: percentile_ms(&all, 99),
        pushes: all.len(),
        open_sale_p99_ms: percentile_ms(&opened, 99),
        open_sales: opened.len(),
        open_sale_offline_share: offline as f64 / opened.len().max(1) as f64,
    })
}

/// The `p`th percentile of sorted `samples`, in milliseconds (0 when empty).
fn percentile_ms(samples: &[Duration], p: usize) -> f64 {
    match samples.len() {
        0 => 0.0,
        n => samples[(n * p / 100).min(n - 1)].as_secs_f64() * 1000.0,
    }
}
