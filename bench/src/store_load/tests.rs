//! Not tests: the benchmarks, one per backend, printing their figures and appending
//! them to `target/sync-server-bench.txt`. Measure in release:
//!
//! `cargo test --release -p pos-bench store_load::tests -- --ignored --nocapture --test-threads 1`

use super::drivers::{backlog, concurrent};
use super::raw::Baseline;
use super::*;
use std::io::Write;
use std::time::Duration;
use testkit::pg::TestDatabase;

/// Appends a line of figures to the benchmark file.
pub(super) fn record(line: &str) {
    println!("{line}");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/sync-server-bench.txt"
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{} {line}", OffsetDateTime::now_utc());
    }
}

async fn pg() -> Option<TestDatabase> {
    TestDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

const BACKLOG: u64 = 100_000;
const BATCH: u64 = 500;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; prints figures"]
async fn backlog_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let push = Target::Sqlite(dir.path().join("push.db"));
    let raw = Target::Sqlite(dir.path().join("raw.db"));
    let figures = backlog(&push, &[(Baseline::SqliteInsert, raw)], BACKLOG, BATCH)
        .await
        .unwrap();
    record(&format!("SQLite {figures}"));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; prints figures"]
async fn backlog_on_postgres() {
    let (Some(push), Some(insert), Some(copy)) = (pg().await, pg().await, pg().await) else {
        return;
    };
    let figures = backlog(
        &Target::Postgres(push.url().to_owned()),
        &[
            (
                Baseline::PgInsert,
                Target::Postgres(insert.url().to_owned()),
            ),
            (Baseline::PgCopy, Target::Postgres(copy.url().to_owned())),
        ],
        BACKLOG,
        BATCH,
    )
    .await
    .unwrap();
    record(&format!("PostgreSQL {figures}"));
}

const TERMINALS: usize = 500;
const ROUNDS: u64 = 20;
const SMALL_BATCH: u64 = 5;
/// Agents push every `interval_secs`; once a second is five times the default.
const PACE: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; prints figures"]
async fn concurrent_terminals_on_sqlite() {
    for pace in [None, Some(PACE)] {
        let dir = tempfile::tempdir().unwrap();
        let store = Target::Sqlite(dir.path().join("hq.db"))
            .open()
            .await
            .unwrap();
        let figures = concurrent(&[store], TERMINALS, ROUNDS, SMALL_BATCH, pace)
            .await
            .unwrap();
        record(&format!("SQLite store, {figures}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; prints figures"]
async fn concurrent_terminals_on_postgres_with_two_instances() {
    for (pool, pace) in [(4, None), (8, None), (16, None), (8, Some(PACE))] {
        let Some(db) = pg().await else { return };
        let target = Target::Postgres(format!("{}?pool_max_size={pool}", db.url()));
        let stores = [target.open().await.unwrap(), target.open().await.unwrap()];
        target.checkpoint().await;
        let figures = concurrent(&stores, TERMINALS, ROUNDS, SMALL_BATCH, pace)
            .await
            .unwrap();
        record(&format!(
            "PostgreSQL store, 2 instances x {pool} connections, {figures}"
        ));
    }
}
