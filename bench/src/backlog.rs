//! Catch-up after an outage: a till whose journal holds a backlog of offline entries
//! pushes it to a real `sync-server` (both real binaries), timed from the agent being
//! ready to HQ having acknowledged everything. Beside it, the limit: the same entry
//! rows written raw into the same schema, with no ledger work at all.

use crate::hq::HqDb;
use crate::store_load::raw::Baseline;
use protocol::{StoreId, TerminalId};
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::agent::{Agent, sync_config};
use testkit::wait_for;

/// Writes `n` offline sales into a fresh journal for store-1/till-1 in `dir`.
pub fn write_backlog(dir: &Path, n: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut journal = agent::journal::JournalFile::open(
        &dir.join("journal.db"),
        &StoreId::parse("store-1")?,
        &TerminalId::parse("till-1")?,
    )?;
    let now = time::OffsetDateTime::now_utc();
    let mut seq = 0;
    while seq < n {
        let first = seq + 1;
        seq += 1_000.min(n - seq);
        journal.write(|tx| -> anyhow::Result<()> {
            for s in first..=seq {
                let body = crate::store_load::sale("till-1", s, now).body;
                tx.append(body, now, 0)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Entries per second from agent start to HQ (on `db`) having acknowledged all `n`.
pub fn agent_to_hq(dir: &Path, db: &HqDb, n: u64, batch_size: u32) -> anyhow::Result<f64> {
    let server = db.start_server(&dir.join("hq"));
    let token = server.add_terminal("store-1", "till-1");
    let adir = dir.join("till");
    write_backlog(&adir, n)?;
    let config = sync_config(
        &adir,
        "store-1",
        "till-1",
        &server.base,
        &token,
        &format!("batch_size = {batch_size}\n"),
    );
    let agent = Agent::start(&adir, &config);
    let started = Instant::now();
    wait_for(Duration::from_secs(1_800), "the backlog to drain", || {
        let h = agent.health();
        (h["queue_depth"] == 0 && h["acked_through"] == n).then_some(())
    });
    let rate = n as f64 / started.elapsed().as_secs_f64();
    server.assert_verify();
    Ok(rate)
}

/// Entries per second of raw batched writes of the same rows into the same schema:
/// (name, rate) per baseline.
pub fn raw_limits(dir: &Path, db: &HqDb, n: u64, batch: u64) -> anyhow::Result<Vec<(String, f64)>> {
    std::fs::create_dir_all(dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let journal = crate::store_load::journal("till-1", n);
    let size = usize::try_from(batch)?;
    let mut out = Vec::new();
    let baselines: Vec<Baseline> = match db {
        HqDb::Sqlite => vec![Baseline::SqliteInsert],
        HqDb::Postgres(_) => vec![Baseline::PgInsert, Baseline::PgCopy],
    };
    for (i, baseline) in baselines.into_iter().enumerate() {
        // Each baseline writes into its own empty database.
        let fresh = match (i, db) {
            (0, _) | (_, HqDb::Sqlite) => None,
            (_, HqDb::Postgres(_)) => Some(HqDb::postgres().map_err(|e| anyhow::anyhow!(e))?),
        };
        let target = fresh
            .as_ref()
            .unwrap_or(db)
            .target(&dir.join(format!("raw-{i}.db")));
        let secs = rt.block_on(crate::store_load::raw::write(
            baseline, &target, &journal, size,
        ))?;
        out.push((baseline.to_string(), n as f64 / secs));
    }
    Ok(out)
}
