//! Many terminals at once: `terminals` simulated tills each push small batches to
//! real `sync-server` processes concurrently, each waiting for its answer before the
//! next push (as the agent does). Throughput and push latency percentiles.

use crate::hq::HqDb;
use crate::store_load::Target;
use protocol::wire::{PROTOCOL_VERSION, PushRequest};
use protocol::{StoreId, TerminalId};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

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
}

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
    let tokens = enroll(&db.target(&sqlite_file), terminals)?;
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
    let mut all = Vec::new();
    for t in threads {
        all.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a terminal thread panicked"))??,
        );
    }
    let secs = started.elapsed().as_secs_f64();
    servers[0].assert_verify();
    all.sort();
    let pct = |p: usize| all[(all.len() * p / 100).min(all.len() - 1)].as_secs_f64() * 1000.0;
    Ok(PushFigures {
        entries_per_s: (terminals as u64 * rounds * batch) as f64 / secs,
        p50_ms: pct(50),
        p99_ms: pct(99),
        pushes: all.len(),
    })
}
