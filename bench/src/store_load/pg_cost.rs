//! Not a test: what pushes cost PostgreSQL itself, on one pooled connection pushing
//! one batch after the other (no concurrency, so the figures are the work, not
//! waiting): the backend's CPU (utime + stime from `/proc`), its statements from
//! `pg_stat_statements` (calls, planning and execution time, rows, WAL bytes), per
//! push and per entry. Terminals of the push benchmark's workload (10 stores, sales on
//! 20,000 cards); a warm-up first fills the tables. Measure in release:
//!
//! `cargo test --release -p pos-bench pg_cost -- --ignored --nocapture`
//!
//! Sizes from the environment: `PG_COST_BATCH` entries per push (10),
//! `PG_COST_TERMINALS` (50), `PG_COST_WARM` pushes before measuring (1,000),
//! `PG_COST_PUSHES` measured (1,000); `PG_COST_PERF=FILE` also records the backend
//! with `perf record -e cpu-clock -g` while measuring; `PG_COST_WAL=1` prints the
//! measured window's WAL records by relation (`pg_waldump`, which must be on `PATH`
//! and able to read the server's `pg_wal`); `PG_COST_SQL` is run on the migrated
//! database before the warm-up, to measure a schema variant (an index dropped, a
//! table's fillfactor) before building it. A backlog: `PG_COST_BATCH=500
//! PG_COST_TERMINALS=1 PG_COST_WARM=40 PG_COST_PUSHES=100`.

mod wal;

use super::tests::record;
use super::{Target, enroll, journal};
use crate::cpu;
use sync_server::ledger::batch::Batch;
use testkit::pg::TestDatabase;
use time::OffsetDateTime;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Calls, plans, planning ms, execution ms, rows and WAL bytes of one statement.
type Counts = (String, i64, i64, f64, f64, i64, i64);

/// This database's statements as `pg_stat_statements` counts them since its reset,
/// the statistics' own queries left out.
async fn statements(c: &tokio_postgres::Client) -> Vec<Counts> {
    c.query(
        "SELECT query, calls, plans, total_plan_time, total_exec_time, rows, wal_bytes::bigint
         FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query NOT LIKE '%pg_stat%' AND query NOT LIKE '%pg_current_wal%'
         ORDER BY total_plan_time + total_exec_time DESC",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; prints figures"]
async fn what_pushes_cost_postgres() {
    let Some(db) = TestDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    else {
        return;
    };
    let batch = setting("PG_COST_BATCH", 10);
    let terminals = setting("PG_COST_TERMINALS", 50);
    let warm = setting("PG_COST_WARM", 1_000);
    let pushes = setting("PG_COST_PUSHES", 1_000);
    let admin = db.client().await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
             ALTER DATABASE {} SET pg_stat_statements.track_planning = on",
            db.name()
        ))
        .await
        .unwrap();
    let store = Target::Postgres(format!("{}?pool_max_size=1", db.url()))
        .open()
        .await
        .unwrap();
    if let Ok(variant) = std::env::var("PG_COST_SQL") {
        admin.batch_execute(&variant).await.unwrap();
    }
    let rounds = (warm + pushes).div_ceil(terminals);
    let mut work = Vec::new();
    for i in 0..terminals {
        let name = format!("till-{i}");
        let identity = enroll(store.as_ref(), &format!("store-{}", i % 10), &name)
            .await
            .unwrap();
        let batches: Vec<Batch> = journal(&name, rounds * batch)
            .chunks(usize::try_from(batch).unwrap())
            .map(|c| Batch::new(c.to_vec()).unwrap())
            .collect();
        work.push((identity, batches.into_iter()));
    }
    // Round-robin over the terminals, as their pushes arrive at HQ.
    let mut order = Vec::new();
    for _ in 0..rounds {
        for t in 0..work.len() {
            order.push(t);
        }
    }
    let mut order = order.into_iter();
    let mut push_some = async |n: u64| {
        for _ in 0..n {
            let t = order.next().unwrap();
            let (identity, batches) = &mut work[t];
            let b = batches.next().unwrap();
            store
                .push(identity, b, OffsetDateTime::now_utc())
                .await
                .unwrap();
        }
    };
    push_some(warm).await;
    let backend: i32 = admin
        .query_one(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let pid = u32::try_from(backend).unwrap();
    // A server without `pg_stat_statements` preloaded still gives the CPU and the
    // WAL: the statements' table is left out.
    let tracked = admin
        .batch_execute(
            "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database
                                                 WHERE datname = current_database()), 0)",
        )
        .await
        .inspect_err(|e| eprintln!("no statement counts: {e}"))
        .is_ok();
    let perf = std::env::var("PG_COST_PERF").ok().map(|file| {
        std::process::Command::new("perf")
            .args(["record", "-q", "-e", "cpu-clock", "-g", "-o", &file, "-p"])
            .arg(pid.to_string())
            .spawn()
            .unwrap()
    });
    let lsn = async |c: &tokio_postgres::Client| {
        let r = c
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap();
        let text: String = r.get(0);
        let (hi, lo) = text.split_once('/').unwrap();
        let at =
            (u64::from_str_radix(hi, 16).unwrap() << 32) + u64::from_str_radix(lo, 16).unwrap();
        (at, text)
    };
    let lsn_before = lsn(&admin).await;
    let cpu_before = cpu::process_seconds(pid).unwrap();
    let started = std::time::Instant::now();
    push_some(pushes).await;
    let secs = started.elapsed().as_secs_f64();
    let cpu_s = cpu::process_seconds(pid).unwrap() - cpu_before;
    let lsn_after = lsn(&admin).await;
    let wal_all = lsn_after.0 - lsn_before.0;
    if let Some(mut perf) = perf {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status();
        let _ = perf.wait();
    }
    if std::env::var_os("PG_COST_WAL").is_some() {
        print_wal(&admin, &lsn_before.1, &lsn_after.1, pushes, pushes * batch).await;
    }
    let counts = if tracked {
        statements(&admin).await
    } else {
        Vec::new()
    };
    let per = |x: f64| x / pushes as f64;
    let (mut calls, mut plans, mut plan, mut exec, mut wal) = (0, 0, 0.0, 0.0, 0);
    for (query, c, n, p, e, rows, w) in &counts {
        calls += c;
        plans += n;
        plan += p;
        exec += e;
        wal += w;
        println!(
            "{:>6.2} calls {:>5.2} plans {:>6.1} plan µs {:>6.1} exec µs {:>6.1} rows \
             {:>6.0} WAL B  {}",
            per(*c as f64),
            per(*n as f64),
            per(p * 1e3),
            per(e * 1e3),
            per(*rows as f64),
            per(*w as f64),
            query
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(90)
                .collect::<String>()
        );
    }
    record(&format!(
        "PostgreSQL cost of {pushes} pushes of {batch} ({terminals} terminals, after \
         {warm}): backend CPU {:.0} µs per push, {:.1} µs per entry; {:.2} statements, \
         {:.2} planned, plan {:.0} µs, exec {:.0} µs, WAL {:.0} B (statements) / {:.0} B (cluster) per \
         push; {:.1} ms per push wall",
        per(cpu_s * 1e6),
        cpu_s * 1e6 / (pushes * batch) as f64,
        per(calls as f64),
        per(plans as f64),
        per(plan * 1e3),
        per(exec * 1e3),
        per(wal as f64),
        per(wal_all as f64),
        per(secs * 1e3),
    ));
}

/// [`wal::print`] for the window `[from, to)` of this database.
async fn print_wal(c: &tokio_postgres::Client, from: &str, to: &str, pushes: u64, entries: u64) {
    let row = c
        .query_one(
            "SELECT current_setting('data_directory'),
                    (SELECT oid FROM pg_database WHERE datname = current_database())::int8",
            &[],
        )
        .await
        .unwrap();
    let dir: String = row.get(0);
    let db = u32::try_from(row.get::<_, i64>(1)).unwrap();
    let names = c
        .query(
            "SELECT pg_relation_filenode(oid)::int8, relname::text FROM pg_class
             WHERE pg_relation_filenode(oid) IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (u32::try_from(r.get::<_, i64>(0)).unwrap(), r.get(1)))
        .collect();
    wal::print(
        &format!("{dir}/pg_wal"),
        from,
        to,
        db,
        &names,
        pushes,
        entries,
    );
}
