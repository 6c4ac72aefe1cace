//! `pos-bench`: measures the real binaries and, beside each figure, the physical limit
//! it is bounded by, in the same run on the same disk. Prints a table and writes JSON.
//!
//! `cargo run --release -p pos-bench -- [--quick] [--only SECTION,..] [--backend B] --out FILE`

mod agent_sales;
mod arrivals;
mod backlog;
mod cpu;
mod feed_pull;
mod hq;
mod kpi_report;
mod latency;
mod offline_replay;
mod probe_till;
mod push_load;
mod push_runs;
mod push_tills;
mod round_trips;
mod scan_latency;
mod sqlite_limit;
mod store_load;
mod timeline;

use anyhow::Context;
use clap::Parser;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// Benchmark options.
#[derive(Debug, Parser)]
#[command(name = "pos-bench", about)]
struct Args {
    /// Smaller runs: fewer sales, entries and pushes than the full run (about 10
    /// minutes on 2 cores), with the same figures.
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON figures.
    #[arg(long, default_value = "bench-results.json")]
    out: PathBuf,
    /// Directory for the journals and databases (default: a temp dir under target/).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run only these sections (default: all), to look at one figure while working
    /// on it; the README's table comes from a run of all of them.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Run the HQ sections against this backend only (default: both).
    #[arg(long, value_enum)]
    backend: Option<Backend>,
}

/// A part of the run, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    /// Till sales against raw SQLite commits, and the agent's memory.
    Till,
    /// Scanner frame to SSE event.
    Scans,
    /// Offline redemptions replayed over CDNOW.
    Offline,
    /// A till's backlog pushed to HQ, beside raw writes of the same rows.
    Backlog,
    /// Round trips of one push (PostgreSQL).
    RoundTrips,
    /// The KPI report over a year of receipts.
    Kpi,
    /// 500 tills pushing: saturation, then 50 % and 80 % of it.
    Push,
    /// A quiet store's pull while the rest of the chain changes cards.
    Feed,
}

/// An HQ backend, for `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Args {
    /// Whether `section` is part of this run.
    fn runs(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }

    /// Whether the HQ sections run against `backend`.
    fn measures(&self, backend: Backend) -> bool {
        self.backend.is_none_or(|b| b == backend)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    build_binaries()?;
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => PathBuf::from("target/bench-work"),
    };
    std::fs::create_dir_all(&base)?;
    let work = tempfile::Builder::new().prefix("run-").tempdir_in(&base)?;
    let mut figures = Map::new();
    let mut table = Vec::new();

    let q = args.quick;
    if args.runs(Section::Till) {
        let sales = if q { 500 } else { 3_000 };
        let raw = sqlite_limit::raw_commits_per_s(
            work.path(),
            Duration::from_secs(if q { 3 } else { 10 }),
            200,
        )?;
        let agent = agent_sales::measure(&work.path().join("agent"), sales)?;
        // The limit again after the agent ran: the disk's fsync rate drifts on shared
        // machines, so the ratio uses the better of the two readings.
        let raw = raw.max(sqlite_limit::raw_commits_per_s(
            work.path(),
            Duration::from_secs(if q { 3 } else { 10 }),
            200,
        )?);
        figures.insert("sqlite_raw_commits_per_s".into(), json!(round(raw)));
        figures.insert("agent_sales_per_s".into(), json!(round(agent.sales_per_s)));
        figures.insert(
            "agent_commits_per_s".into(),
            json!(round(agent.commits_per_s)),
        );
        figures.insert("agent_rss_mb_idle".into(), json!(round(agent.rss_mb_idle)));
        figures.insert(
            "till_agent_cpu_us_per_pair".into(),
            json!(round(agent.agent_cpu_us_per_pair)),
        );
        figures.insert(
            "till_client_cpu_us_per_pair".into(),
            json!(round(agent.client_cpu_us_per_pair)),
        );
        table.push(row(
            "till sale+commit pairs/s",
            agent.sales_per_s,
            "raw SQLite commits/s",
            raw,
            Some(agent.commits_per_s / raw),
            "ratio counts the agent's 2 commits per sale",
        ));
        table.push(row(
            "agent idle RSS (MB)",
            agent.rss_mb_idle,
            "goal",
            30.0,
            None,
            "below 30 MB",
        ));
    }

    if args.runs(Section::Scans) {
        let scans = scan_latency::measure(
            &work.path().join("scanners"),
            if q { 1_000 } else { 5_000 },
            if q { 3 } else { 10 },
        )?;
        figures.insert("scan_to_event_p50_ms".into(), json!(round3(scans.p50_ms)));
        figures.insert("scan_to_event_p99_ms".into(), json!(round3(scans.p99_ms)));
        figures.insert("scan_count".into(), json!(scans.scans));
        figures.insert(
            "agent_idle_cpu_percent_4_scanners".into(),
            json!(round3(scans.idle_cpu_percent)),
        );
        table.push(row(
            "scan -> SSE event p50 (ms)",
            scans.p50_ms,
            "goal p99",
            2.0,
            None,
            "PTY write to event at a client",
        ));
        table.push(row(
            "scan -> SSE event p99 (ms)",
            scans.p99_ms,
            "goal p99",
            2.0,
            None,
            "a 16-byte frame at 9600 baud: ~17 ms",
        ));
        table.push(row(
            "idle CPU, 4 scanners (%)",
            scans.idle_cpu_percent,
            "goal",
            0.0,
            None,
            "near zero: no polling",
        ));
    }

    if args.runs(Section::Offline) {
        // Offline redemption, caps against escrow, over CDNOW (the same in both runs:
        // it replays decision rules, not speed).
        let (caps, escrow) = offline_replay::measure()?;
        figures.insert("offline_replay_outage_days".into(), json!(caps.outage_days));
        figures.insert("offline_replay_attempts".into(), json!(caps.attempts));
        for (name, out) in [("caps", &caps), ("escrow", &escrow)] {
            figures.insert(
                format!("offline_replay_{name}_served_share"),
                json!(round3(out.served_share())),
            );
            figures.insert(
                format!("offline_replay_{name}_points_served"),
                json!(out.points_served),
            );
            figures.insert(
                format!("offline_replay_{name}_points_overdrawn"),
                json!(out.points_overdrawn),
            );
            figures.insert(
                format!("offline_replay_{name}_cards_overdrawn"),
                json!(out.cards_overdrawn),
            );
            table.push(row(
                &format!("offline redemptions served, {name} (%)"),
                out.served_share() * 100.0,
                "attempts (all served)",
                100.0,
                Some(out.served_share()),
                &format!(
                    "CDNOW, {} outage days: {} of {} points, {} overdrawn on {} cards",
                    out.outage_days,
                    out.points_served,
                    out.points_wanted,
                    out.points_overdrawn,
                    out.cards_overdrawn
                ),
            ));
        }
        figures.insert(
            "offline_replay_escrow_online_withheld_share".into(),
            json!(round3(escrow.online_withheld_share())),
        );
        table.push(row(
            "online redemption withheld by allowances (%)",
            escrow.online_withheld_share() * 100.0,
            "goal",
            0.0,
            None,
            "escrow: points other tills hold for the card, refused online",
        ));
    }

    let backlog_n = if q { 20_000 } else { 100_000 };
    let size = push_runs::Size {
        terminals: 500,
        rounds: if q { 4 } else { 20 },
        window: Duration::from_secs(if q { 6 } else { 20 }),
    };
    figures.insert("sync_backlog_entries".into(), json!(backlog_n));
    let kpi_receipts = if q { 100_000 } else { 1_000_000 };
    figures.insert("kpi_receipts".into(), json!(kpi_receipts));
    figures.insert("server_push_terminals".into(), json!(size.terminals));
    // Each measurement gets a fresh, empty database.
    let mut backends: Vec<(&str, FreshDb, usize)> = Vec::new();
    if args.measures(Backend::Sqlite) {
        backends.push(("", || Ok(hq::HqDb::Sqlite), 1));
    }
    if args.measures(Backend::Postgres) {
        match hq::HqDb::postgres() {
            Ok(_) => backends.push(("pg_", hq::HqDb::postgres, 2)),
            Err(why) => println!("PostgreSQL not reachable ({why}): PostgreSQL figures left out"),
        }
    }
    for (prefix, fresh_db, instances) in &backends {
        let fresh = || fresh_db().map_err(|e| anyhow::anyhow!(e));
        let name = if prefix.is_empty() {
            "SQLite"
        } else {
            "PostgreSQL"
        };
        let dir = work.path().join(format!("{name}-hq"));
        if args.runs(Section::Backlog) {
            let backlog = backlog::agent_to_hq(&dir.join("backlog"), &fresh()?, backlog_n, 500)?;
            let raws = backlog::raw_limits(&dir.join("raw"), &fresh()?, backlog_n, 500)?;
            figures.insert(
                format!("{prefix}sync_backlog_entries_per_s"),
                json!(round(backlog)),
            );
            for (baseline, rate) in &raws {
                let key = if baseline.contains("COPY") || baseline.contains("copy") {
                    format!("{prefix}server_raw_copy_entries_per_s")
                } else {
                    format!("{prefix}server_raw_insert_entries_per_s")
                };
                figures.insert(key, json!(round(*rate)));
                table.push(Row {
                    what: format!("backlog sync entries/s ({name} HQ)"),
                    value: backlog,
                    limit_name: format!("raw {baseline}"),
                    limit: *rate,
                    ratio: Some(backlog / rate),
                    note: format!("{backlog_n} entries, agent -> HQ, batches of 500"),
                });
            }
        }
        if !prefix.is_empty() && args.runs(Section::RoundTrips) {
            let trips = round_trips::measure(&fresh()?)?;
            figures.insert(format!("{prefix}push_round_trips"), json!(trips));
            table.push(row(
                &format!("round trips of a 10-entry push ({name})"),
                trips as f64,
                "goal",
                4.0,
                None,
                "counted on the wire; known cards",
            ));
        }
        if args.runs(Section::Kpi) {
            let kpi = kpi_report::measure(&dir.join("kpi"), &fresh()?, kpi_receipts, 20)?;
            figures.insert(format!("{prefix}kpi_report_s"), json!(round3(kpi.report_s)));
            figures.insert(
                format!("{prefix}kpi_store_report_s"),
                json!(round3(kpi.store_report_s)),
            );
            figures.insert(
                format!("{prefix}kpi_fill_entries_per_s"),
                json!(round(kpi.fill_entries_per_s)),
            );
            table.push(row(
                &format!(
                    "report kpi, a year of {} receipts, {name} (s)",
                    kpi.receipts
                ),
                kpi.report_s,
                "goal (s)",
                2.0,
                None,
                "whole process, chain-wide; aggregates kept at push time",
            ));
            table.push(row(
                &format!("report kpi --store, {name} (s)"),
                kpi.store_report_s,
                "goal (s)",
                2.0,
                None,
                "one of 20 stores",
            ));
        }
        if args.runs(Section::Feed) {
            let db = fresh()?;
            std::fs::create_dir_all(&dir)?;
            let behind = if q { 20_000 } else { 100_000 };
            let feed = feed_pull::measure(&db.target(&dir.join("feed.db")), behind, 200)?;
            figures.insert(
                format!("{prefix}feed_chain_changes_behind"),
                json!(feed.behind),
            );
            for (key, value) in [
                ("feed_quiet_pull_p50_ms", feed.quiet_p50_ms),
                ("feed_quiet_pull_p99_ms", feed.quiet_p99_ms),
                ("feed_empty_pull_p50_ms", feed.empty_p50_ms),
            ] {
                figures.insert(format!("{prefix}{key}"), json!(round3(value)));
            }
            table.push(row(
                &format!("a store's pull, {behind} chain changes behind it, p50 ({name}, ms)"),
                feed.quiet_p50_ms,
                "pull with none behind",
                feed.empty_p50_ms,
                Some(feed.quiet_p50_ms / feed.empty_p50_ms),
                "answers its own 10 changed cards",
            ));
        }
        if args.runs(Section::Push) {
            push_runs::measure(
                &dir,
                &push_runs::Backend {
                    prefix,
                    name,
                    instances: *instances,
                    fresh: &fresh,
                },
                &size,
                &mut figures,
                &mut table,
            )?;
        }
    }

    figures.insert("machine".into(), json!(machine()));
    figures.insert("quick".into(), json!(args.quick));
    if !args.only.is_empty() || args.backend.is_some() {
        figures.insert(
            "partial".into(),
            json!(format!("{:?} {:?}", args.only, args.backend)),
        );
    }
    let out = Value::Object(figures);
    std::fs::write(&args.out, serde_json::to_string_pretty(&out)? + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    print_table(&table);
    println!("\nwrote {}", args.out.display());
    Ok(())
}

/// Makes a fresh, empty HQ database for one measurement.
type FreshDb = fn() -> Result<hq::HqDb, String>;

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

struct Row {
    what: String,
    value: f64,
    limit_name: String,
    limit: f64,
    ratio: Option<f64>,
    note: String,
}

fn row(
    what: &str,
    value: f64,
    limit_name: &str,
    limit: f64,
    ratio: Option<f64>,
    note: &str,
) -> Row {
    Row {
        what: what.to_owned(),
        value,
        limit_name: limit_name.to_owned(),
        limit,
        ratio,
        note: note.to_owned(),
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<60} {:>12}   {:<26} {:>12} {:>8}  note",
        "figure", "value", "limit", "limit value", "ratio"
    );
    for r in rows {
        let ratio = r
            .ratio
            .map_or_else(|| "-".to_owned(), |x| format!("{:.0}%", x * 100.0));
        println!(
            "{:<60} {:>12.2}   {:<26} {:>12.2} {:>8}  {}",
            r.what, r.value, r.limit_name, r.limit, ratio, r.note
        );
    }
}

/// Builds the release binaries the benchmark starts (a no-op when up to date). The
/// package set matches `cargo run -p pos-bench`, so features unify the same way and
/// nothing is rebuilt.
fn build_binaries() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    // Variables `cargo run` sets for this process would change build-script
    // fingerprints and make the inner build recompile half the tree each time.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && !matches!(key.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR") {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .args([
            "build",
            "--release",
            "--bins",
            "-p",
            "agent",
            "-p",
            "sync-server",
        ])
        .status()
        .context("running cargo build")?;
    anyhow::ensure!(status.success(), "building the binaries failed");
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}
