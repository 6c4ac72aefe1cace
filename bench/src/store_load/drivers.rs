//! The load drivers of the benchmark tests: [`backlog`] (one terminal's backlog in
//! batches, beside the raw baselines) and [`concurrent`] (many terminals at once).

use super::raw;
use super::{BenchError, Target, enroll, journal};
use crate::latency::quantile;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync_server::ledger::batch::Batch;
use sync_server::store::Store;
use time::OffsetDateTime;

/// Entries over seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Entries written.
    pub entries: u64,
    /// Seconds it took.
    pub secs: f64,
}

impl Rate {
    /// Entries per second.
    pub fn per_s(&self) -> f64 {
        self.entries as f64 / self.secs.max(1e-9)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.0} entries/s ({:.2} s)", self.per_s(), self.secs)
    }
}

/// What [`backlog`] measured.
#[derive(Debug, Clone)]
pub struct BacklogFigures {
    /// Entries in the backlog.
    pub entries: u64,
    /// Entries per push.
    pub batch: u64,
    /// Through [`Store::push`]: exactly-once checks, ledger, lots, cards, feed.
    pub push: Rate,
    /// The raw baselines: (method, rate).
    pub raw: Vec<(String, Rate)>,
}

impl fmt::Display for BacklogFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backlog of {} entries in batches of {}: push {}",
            self.entries, self.batch, self.push
        )?;
        for (name, rate) in &self.raw {
            write!(
                f,
                "; raw {name} {rate} (push = {:.0}% of it)",
                100.0 * self.push.per_s() / rate.per_s()
            )?;
        }
        Ok(())
    }
}

/// Pushes a backlog of `entries` entries of one terminal in batches of `batch` into
/// `push` (empty), then writes the same rows raw into each of `raw` (empty, one
/// database per baseline; see [`raw::Baseline`]).
pub async fn backlog(
    push: &Target,
    raw: &[(raw::Baseline, Target)],
    entries: u64,
    batch: u64,
) -> Result<BacklogFigures, BenchError> {
    let journal = journal("till-1", entries);
    let size = usize::try_from(batch.max(1)).unwrap_or(500);
    let store = push.open().await?;
    let terminal = enroll(store.as_ref(), "store-1", "till-1").await?;
    let batches = journal
        .chunks(size)
        .map(|c| Batch::new(c.to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    let now = OffsetDateTime::now_utc();
    push.checkpoint().await;
    let started = Instant::now();
    for b in batches {
        store.push(&terminal, b, now).await?;
    }
    let push_rate = Rate {
        entries,
        secs: started.elapsed().as_secs_f64(),
    };
    let mut raw_rates = Vec::new();
    for (baseline, target) in raw {
        let secs = raw::write(*baseline, target, &journal, size).await?;
        raw_rates.push((baseline.to_string(), Rate { entries, secs }));
    }
    Ok(BacklogFigures {
        entries,
        batch,
        push: push_rate,
        raw: raw_rates,
    })
}

/// What [`concurrent`] measured.
#[derive(Debug, Clone)]
pub struct ConcurrentFigures {
    /// Terminals pushing at once.
    pub terminals: usize,
    /// Each terminal's push period, if paced.
    pub pace: Option<Duration>,
    /// Pushes made, all terminals together.
    pub pushes: usize,
    /// Entries acknowledged, all terminals together.
    pub rate: Rate,
    /// Median push latency.
    pub p50: Duration,
    /// 99th percentile push latency.
    pub p99: Duration,
    /// Slowest push.
    pub max: Duration,
}

impl fmt::Display for ConcurrentFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pace = self.pace.map_or_else(
            || "back to back".to_owned(),
            |p| format!("one push each per {:.1} s", p.as_secs_f64()),
        );
        write!(
            f,
            "{} terminals ({pace}), {} pushes: {}; push latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.terminals,
            self.pushes,
            self.rate,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}

/// `terminals` terminals (of 50 stores) each push `rounds` batches of `batch` entries
/// through `stores` (one per server instance; terminal `i` uses `stores[i % n]`), all
/// at once. Without `pace` each pushes again as soon as it has its answer (the
/// saturation figure: latency is then mostly queueing); with `pace` each pushes once
/// per period, at its own phase, as agents do.
pub async fn concurrent(
    stores: &[Arc<dyn Store>],
    terminals: usize,
    rounds: u64,
    batch: u64,
    pace: Option<Duration>,
) -> Result<ConcurrentFigures, BenchError> {
    let Some(first) = stores.first() else {
        return Err(BenchError::Workload("no store".into()));
    };
    let size = usize::try_from(batch.max(1)).unwrap_or(10);
    let mut work = Vec::with_capacity(terminals);
    for i in 0..terminals {
        let name = format!("till-{i}");
        let identity = enroll(first.as_ref(), &format!("store-{}", i % 50), &name).await?;
        let batches = journal(&name, rounds * batch)
            .chunks(size)
            .map(|c| Batch::new(c.to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        work.push((Arc::clone(&stores[i % stores.len()]), identity, batches));
    }
    let start = Arc::new(tokio::sync::Barrier::new(terminals + 1));
    let tasks: Vec<_> = work
        .into_iter()
        .enumerate()
        .map(|(i, (store, identity, batches))| {
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                let mut ticks = pace.map(|period| {
                    // Spread the terminals over the period, like agents started at
                    // different moments.
                    let phase = period.mul_f64(i as f64 / terminals.max(1) as f64);
                    let mut t =
                        tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                });
                let mut latencies = Vec::with_capacity(batches.len());
                for b in batches {
                    if let Some(t) = ticks.as_mut() {
                        t.tick().await;
                    }
                    let began = Instant::now();
                    store.push(&identity, b, OffsetDateTime::now_utc()).await?;
                    latencies.push(began.elapsed());
                }
                Ok::<_, BenchError>(latencies)
            })
        })
        .collect();
    start.wait().await;
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    Ok(ConcurrentFigures {
        terminals,
        pace,
        pushes: all.len(),
        rate: Rate {
            entries: rounds * batch * terminals as u64,
            secs,
        },
        p50: quantile(&all, 0.50),
        p99: quantile(&all, 0.99),
        max: all.last().copied().unwrap_or_default(),
    })
}
