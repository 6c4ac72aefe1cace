//! Many terminals at once: `terminals` simulated tills each push small batches to
//! real `sync-server` processes concurrently, each waiting for its answer before the
//! next push (as the agent does), back to back or at Poisson arrival times
//! ([`Load`]). Throughput and push latency percentiles.
//!
//! Meanwhile the probe till ([`ProbeTill`], a real `pos-agent` on the first instance)
//! opens sales with points and looks up its card: HQ's reservation and live balance
//! round trips under that load, which a cashier waits for.

use crate::arrivals::Load;
use crate::cpu;
use crate::hq::HqDb;
use crate::latency::quantile_ms;
use crate::probe_till::{ProbeTill, Probed};
use crate::push_tills::{Connected, Sent, Till};
use crate::store_load::Target;
use crate::timeline;
use protocol::wire::{PROTOCOL_VERSION, PushRequest};
use protocol::{StoreId, TerminalId};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The figures.
pub struct PushFigures {
    /// The rate offered (`None` back to back).
    pub offered_entries_per_s: Option<f64>,
    /// Entries acknowledged per second, all terminals together, from the start to the
    /// last answer.
    pub entries_per_s: f64,
    /// Median push latency.
    pub p50_ms: f64,
    /// 99th percentile push latency.
    pub p99_ms: f64,
    /// 99.9th percentile push latency.
    pub p999_ms: f64,
    /// Pushes made.
    pub pushes: usize,
    /// Entries they acknowledged.
    pub entries: u64,
    /// The probe till opening sales with points while the terminals pushed.
    pub open_sale: Probed,
    /// The probe till looking up its card's balance (online: HQ's live balance).
    pub live_balance: Probed,
    /// CPU seconds the sync-server processes used during the run.
    pub hq_cpu_s: f64,
    /// CPU seconds PostgreSQL's processes used during the run (`None` on SQLite).
    pub pg_cpu_s: Option<f64>,
    /// CPU seconds the load generator (the simulated tills' thread) used during the
    /// run: taken from the cores the servers had.
    pub generator_cpu_s: f64,
}

impl PushFigures {
    /// Entries acknowledged per CPU-second of the sync-server processes: what one busy
    /// HQ core handles.
    pub fn entries_per_hq_core(&self) -> f64 {
        self.entries as f64 / self.hq_cpu_s.max(f64::MIN_POSITIVE)
    }

    /// The generator's CPU per push, in microseconds.
    pub fn generator_cpu_us_per_push(&self) -> f64 {
        self.generator_cpu_s * 1e6 / self.pushes.max(1) as f64
    }

    /// Entries acknowledged per CPU-second of PostgreSQL (`None` on SQLite).
    pub fn entries_per_pg_core(&self) -> Option<f64> {
        self.pg_cpu_s
            .map(|s| self.entries as f64 / s.max(f64::MIN_POSITIVE))
    }
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

/// Runs the load: `terminals` tills pushing batches of `batch` entries as `load` says,
/// spread over `instances` sync-server processes on the one database (as behind a
/// load balancer).
///
/// A paced push's latency counts from when it was due, not from when it was sent: a
/// till still waiting for its previous answer sends late, and that wait is part of
/// what its next push costs (no coordinated omission).
pub fn measure(
    dir: &Path,
    db: &HqDb,
    instances: usize,
    terminals: usize,
    batch: u64,
    load: Load,
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
    let now = time::OffsetDateTime::now_utc();
    let tills = tokens
        .into_iter()
        .enumerate()
        .map(|(i, (store, token))| {
            let terminal = format!("till-{i}");
            let schedule = load.schedule(i, terminals, batch);
            let bodies = (0..schedule.len() as u64)
                .map(|r| {
                    let entries = (1..=batch)
                        .map(|k| crate::store_load::sale(&terminal, r * batch + k, now))
                        .collect();
                    Ok(serde_json::to_vec(&PushRequest {
                        protocol: PROTOCOL_VERSION,
                        store_id: StoreId::parse(&store)?,
                        terminal_id: TerminalId::parse(&terminal)?,
                        entries,
                    })?
                    .into())
                })
                .collect::<anyhow::Result<_>>()?;
            Ok(Till {
                base: servers[i % servers.len()].base.clone(),
                token,
                bodies,
                schedule,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tills = Connected::open(tills)?;
    // Every sync-server's CPU and PostgreSQL's (the probe till's requests included:
    // they are HQ's work too).
    let hq_cpu = || -> anyhow::Result<f64> {
        servers
            .iter()
            .filter_map(testkit::hq::Server::pid)
            .map(cpu::process_seconds)
            .sum()
    };
    let pg_cpu = || match db {
        HqDb::Postgres(_) => cpu::postgres_seconds().map(Some),
        HqDb::Sqlite => Ok(None),
    };
    let (hq_cpu_before, pg_cpu_before) = (hq_cpu()?, pg_cpu()?);
    let started = Instant::now();
    let running = tills.start();
    let stop = AtomicBool::new(false);
    let (generated, (open_sale, live_balance)) = std::thread::scope(|s| -> anyhow::Result<_> {
        let probing = s.spawn(|| probe.run(&stop));
        let generated = running.join();
        // Stopped before any error returns: the probe would otherwise never end.
        stop.store(true, Ordering::Relaxed);
        let probed = probing
            .join()
            .map_err(|_| anyhow::anyhow!("the probe till panicked"))??;
        Ok((generated?, probed))
    })?;
    let secs = started.elapsed().as_secs_f64();
    let hq_cpu_s = hq_cpu()? - hq_cpu_before;
    let pg_cpu_s = pg_cpu()?
        .zip(pg_cpu_before)
        .map(|(after, before)| after - before);
    servers[0].assert_verify();
    timeline::write_if_asked(dir, &generated)?;
    let mut all: Vec<Duration> = generated.pushes.iter().map(Sent::latency).collect();
    all.sort();
    Ok(PushFigures {
        offered_entries_per_s: load.offered_entries_per_s(),
        entries_per_s: (all.len() as u64 * batch) as f64 / secs,
        p50_ms: quantile_ms(&all, 0.5),
        p99_ms: quantile_ms(&all, 0.99),
        p999_ms: quantile_ms(&all, 0.999),
        pushes: all.len(),
        entries: all.len() as u64 * batch,
        hq_cpu_s,
        pg_cpu_s,
        generator_cpu_s: generated.cpu_s,
        open_sale,
        live_balance,
    })
}
