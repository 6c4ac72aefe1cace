//! The physical limit of the till's journal: raw rusqlite committing one small row
//! per transaction, with the journal's pragmas (WAL, synchronous=FULL), on the same
//! disk as the agent's journal. Every sale commit is bounded by this fsync rate.

use std::path::Path;
use std::time::{Duration, Instant};

/// Commits per second over `duration` (at least `min_commits`).
pub fn raw_commits_per_s(dir: &Path, duration: Duration, min_commits: u32) -> anyhow::Result<f64> {
    let path = dir.join("raw-limit.db");
    let mut conn = rusqlite::Connection::open(&path)?;
    agent::journal::schema::apply_pragmas(&conn)?;
    conn.execute_batch("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")?;
    let body = "x".repeat(600); // about the size of a sale entry
    let started = Instant::now();
    let mut n = 0u32;
    while n < min_commits || started.elapsed() < duration {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("INSERT INTO rows (body) VALUES (?1)", [&body])?;
        tx.commit()?;
        n += 1;
    }
    let rate = f64::from(n) / started.elapsed().as_secs_f64();
    drop(conn);
    let _ = std::fs::remove_file(&path);
    Ok(rate)
}
