//! The KPI report over a large history: `receipts` sales (three in four with a card,
//! over 20,000 cards) spread over a year and `stores` stores, pushed through the real
//! push flow (which keeps the aggregates), then `sync-server report kpi` of the whole
//! year run as a process, start to exit, as a marketer would. The rules have a tier
//! the regular cards reach during the fill (a tier move each) and three two-week
//! promotions on the sales' category, so the report reads tiers, tier moves and
//! three difference-in-differences too.

use crate::hq::HqDb;
use protocol::journal::EntryBody;
use protocol::rules::{ProgramRules, Promotion, Tier};
use protocol::{BasisPoints, Money};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use sync_server::ledger::batch::Batch;
use time::macros::{date, datetime};
use time::{Date, OffsetDateTime};

/// Entries per push while filling.
const BATCH: usize = 5_000;
/// The year the history covers.
const START: OffsetDateTime = datetime!(2025-01-01 08:00 UTC);

/// What was measured.
pub struct KpiFigures {
    /// Receipts in the database.
    pub receipts: u64,
    /// Filling rate through the push flow (aggregates included), entries/s.
    pub fill_entries_per_s: f64,
    /// Fastest of the report runs, chain-wide, whole year.
    pub report_s: f64,
    /// Fastest of the report runs for one store.
    pub store_report_s: f64,
}

/// A tier and three promotions (March, June, November) on the sales' category.
fn bench_rules() -> ProgramRules {
    let promotion = |name: &str, starts: Date| Promotion {
        name: name.to_owned(),
        multiplier_percent: 200,
        categories: vec!["grocery".to_owned()],
        skus: Vec::new(),
        starts,
        ends: starts + time::Duration::days(13),
    };
    ProgramRules {
        tiers: vec![Tier {
            name: "silver".to_owned(),
            min_spend_minor: Money(10_000),
            accrual_bp: BasisPoints(500),
        }],
        promotions: vec![
            promotion("march", date!(2025 - 03 - 03)),
            promotion("june", date!(2025 - 06 - 02)),
            promotion("november", date!(2025 - 11 - 03)),
        ],
        ..ProgramRules::default()
    }
}

/// Names a copy of the filled history to keep for study (`EXPLAIN`, timing the
/// report by hand): PostgreSQL's as a database of that name, SQLite's as `NAME.db`.
const KEEP: &str = "POS_BENCH_KPI_KEEP";

/// Copies the filled history as [`KEEP`] names it. The fill's connections close
/// when its runtime is dropped, but PostgreSQL ends their backends a moment later
/// and copies no database anyone is connected to: hence the retries.
fn keep(db: &HqDb, file: &Path, name: &str) -> anyhow::Result<()> {
    match db {
        HqDb::Sqlite => {
            std::fs::copy(file, format!("{name}.db"))?;
            let wal = file.with_extension("db-wal");
            if wal.exists() {
                std::fs::copy(wal, format!("{name}.db-wal"))?;
            }
        }
        HqDb::Postgres(pg) => {
            let sql = format!("CREATE DATABASE {name} TEMPLATE {{db}}");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut tries = 0;
            while let Err(e) = rt.block_on(pg.admin_execute(&sql)) {
                tries += 1;
                anyhow::ensure!(tries < 50, "keeping the history as {name}: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    println!("kpi: the filled history is kept as {name}");
    Ok(())
}

/// Fills `db` and times the report (best of three runs each).
pub fn measure(dir: &Path, db: &HqDb, receipts: u64, stores: u64) -> anyhow::Result<KpiFigures> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join("hq.db");
    let target = db.target(&file);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let per_store = receipts / stores;
    let fill = rt.block_on(async {
        let store = target.open().await?;
        store
            .set_rules(bench_rules(), OffsetDateTime::now_utc())
            .await?;
        let started = Instant::now();
        for s in 0..stores {
            let store_id = format!("store-{s}");
            let terminal = crate::store_load::enroll(&*store, &store_id, "till-1").await?;
            let mut seq = 0;
            while seq < per_store {
                let first = seq + 1;
                seq += (BATCH as u64).min(per_store - seq);
                let mut entries = Vec::with_capacity(BATCH);
                for n in first..=seq {
                    // Spread over the year's first 364 days from 08:00, so every receipt
                    // (the last one at 07:59 on 31 December at the latest) is in 2025.
                    let minutes = i64::try_from((n - 1) * 524_160 / per_store.max(1)).unwrap_or(0);
                    let at = START + time::Duration::minutes(minutes);
                    let mut e = crate::store_load::sale("till-1", n, at);
                    if n % 4 == 1
                        && let EntryBody::Sale(sale) = &mut e.body
                        && sale.sale.redeemed_points.get() == 0
                    {
                        sale.card = None;
                    }
                    entries.push(e);
                }
                store
                    .push(&terminal, Batch::new(entries)?, OffsetDateTime::now_utc())
                    .await?;
            }
        }
        anyhow::Ok(started.elapsed())
    })?;
    drop(rt);
    if let Ok(name) = std::env::var(KEEP) {
        keep(db, &file, &name)?;
    }
    let database = match db {
        HqDb::Sqlite => format!("sqlite:{}", file.display()),
        HqDb::Postgres(pg) => pg.url().to_owned(),
    };
    let run = |extra: &[&str], expected: u64| -> anyhow::Result<Duration> {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            let out = Command::new(testkit::bin("sync-server"))
                .args(["--database", &database, "report", "kpi"])
                .args([
                    "--from",
                    "2025-01-01",
                    "--to",
                    "2025-12-31",
                    "--format",
                    "json",
                ])
                .args(extra)
                .output()?;
            let took = started.elapsed();
            anyhow::ensure!(
                out.status.success(),
                "report kpi failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let counted = report["members"]["receipts"].as_u64().unwrap_or(0)
                + report["non_members"]["receipts"].as_u64().unwrap_or(0);
            anyhow::ensure!(
                counted == expected,
                "the report counted {counted} receipts, not {expected}"
            );
            let promotions = report["promotions"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(
                promotions == 3,
                "the report has {promotions} promotions, not 3"
            );
            best = best.min(took);
        }
        Ok(best)
    };
    let report = run(&[], per_store * stores)?;
    let one_store = run(&["--store", "store-0"], per_store)?;
    Ok(KpiFigures {
        receipts: per_store * stores,
        fill_entries_per_s: (per_store * stores) as f64 / fill.as_secs_f64(),
        report_s: report.as_secs_f64(),
        store_report_s: one_store.as_secs_f64(),
    })
}
