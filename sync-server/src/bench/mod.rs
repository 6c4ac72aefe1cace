//! Load drivers for measuring the store, on either backend, for the workspace's
//! `pos-bench` and the ignored benchmark tests. Nothing here runs in the server.
//!
//! * [`backlog`]: one terminal's backlog pushed in batches through
//!   [`Store::push`], beside the raw baselines of [`raw`] (the same entry rows
//!   written into the same schema with no ledger work at all);
//! * [`concurrent`]: many terminals pushing small batches at once, each waiting for
//!   its answer before the next push as an agent does; throughput and latency.
//!
//! Both take fresh, empty databases and fill them; the caller makes and drops them
//! (on PostgreSQL, [`crate::store::postgres::testdb::TestDatabase`]).

pub mod raw;

use crate::keys::TerminalToken;
use crate::ledger::batch::{Batch, BatchError};
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError, TerminalIdentity};
use protocol::evaluate::price_sale;
use protocol::journal::{EntryBody, JournalEntry, SaleEntry};
use protocol::receipt::Line;
use protocol::rules::ProgramRules;
use protocol::{CardId, Money, Points, ReceiptId, Seq, StoreId, TerminalId};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use uuid::Uuid;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A generated batch was refused (a bug in the generator).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The workload could not be built.
    #[error("workload: {0}")]
    Workload(String),
    /// A raw baseline failed.
    #[error("raw baseline: {0}")]
    Raw(String),
    /// A task died.
    #[error("task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A database the benchmarks fill: a SQLite file or a PostgreSQL URL.
#[derive(Debug, Clone)]
pub enum Target {
    /// `sqlite:PATH`.
    Sqlite(PathBuf),
    /// `postgres://…`.
    Postgres(String),
}

impl Target {
    /// On PostgreSQL, a `CHECKPOINT` (when the role may), so that each measured phase
    /// starts from the same state instead of paying for the previous phase's
    /// checkpoint; SQLite: nothing.
    pub async fn checkpoint(&self) {
        if let Self::Postgres(url) = self
            && let Ok((client, connection)) =
                tokio_postgres::connect(url, tokio_postgres::NoTls).await
        {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let _ = client.batch_execute("CHECKPOINT").await;
        }
    }

    /// Opens the store on this database (migrating it).
    pub async fn open(&self) -> Result<Arc<dyn Store>, BenchError> {
        Ok(match self {
            Self::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
            Self::Postgres(url) => Arc::new(PgStore::open(url).await?),
        })
    }
}

/// The `n`-th sale of a terminal on one of 20,000 cards, one line of 10.00 to
/// 106.00, one sale in seven redeeming 3 points; priced by the agent's own code. The
/// id is random (v4), as real agents make them.
pub fn sale(terminal: &str, seq: u64, at: OffsetDateTime) -> Result<JournalEntry, BenchError> {
    let bad = |e: String| BenchError::Workload(e);
    let card = CardId::parse(&format!("{:013}", 4_000_000_000_000u64 + seq % 20_000))
        .map_err(|e| bad(e.to_string()))?;
    let lines = [Line {
        sku: format!("sku-{}", seq % 500),
        category: "grocery".into(),
        amount_minor: Money(1_000 + i64::try_from(seq % 97).unwrap_or(0) * 100),
        qty: 1,
    }];
    let redeem = Points(if seq.is_multiple_of(7) { 3 } else { 0 });
    let priced = price_sale(&ProgramRules::default(), &lines, redeem, None, at.date())
        .map_err(|e| bad(e.to_string()))?;
    Ok(JournalEntry {
        id: Uuid::new_v4(),
        seq: Seq(seq),
        at,
        rules_version: 0,
        body: EntryBody::Sale(SaleEntry {
            receipt_id: ReceiptId::parse(&format!("{terminal}-R{seq}"))
                .map_err(|e| bad(e.to_string()))?,
            card: Some(card),
            sale: priced,
            matures_at: None,
            offline: true,
            lease: None,
        }),
    })
}

/// `count` consecutive sales of `terminal` from seq 1.
pub fn journal(terminal: &str, count: u64) -> Result<Vec<JournalEntry>, BenchError> {
    let now = OffsetDateTime::now_utc();
    (1..=count).map(|seq| sale(terminal, seq, now)).collect()
}

/// Adds a terminal and returns its identity.
pub async fn enroll(
    store: &dyn Store,
    store_id: &str,
    terminal: &str,
) -> Result<TerminalIdentity, BenchError> {
    let token =
        TerminalToken::generate().map_err(|e| BenchError::Workload(format!("token: {e}")))?;
    let parse = |e: protocol::ids::IdError| BenchError::Workload(e.to_string());
    let (s, t) = (
        StoreId::parse(store_id).map_err(parse)?,
        TerminalId::parse(terminal).map_err(parse)?,
    );
    let now = OffsetDateTime::now_utc();
    store
        .add_terminal(&s, &t, &token.hash(), false, now)
        .await?;
    store
        .authenticate(&token.hash())
        .await?
        .ok_or_else(|| BenchError::Workload("the new terminal does not authenticate".into()))
}

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
    let journal = journal("till-1", entries)?;
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

/// The `q`-quantile of sorted latencies.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let last = sorted.len() - 1;
    let i = ((last as f64) * q).round() as usize;
    sorted[i.min(last)]
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
        let batches = journal(&name, rounds * batch)?
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

#[cfg(test)]
mod tests;
