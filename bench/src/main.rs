//! `pos-bench`: measures the real binaries and, beside each figure, the physical limit
//! it is bounded by, in the same run on the same disk. Prints a table and writes JSON.
//!
//! `cargo run --release -p pos-bench -- [--quick] --out FILE`

mod agent_sales;
mod sqlite_limit;

use anyhow::Context;
use clap::Parser;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// Benchmark options.
#[derive(Debug, Parser)]
#[command(name = "pos-bench", about)]
struct Args {
    /// Smaller runs (under 3 minutes in all).
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON figures.
    #[arg(long, default_value = "bench-results.json")]
    out: PathBuf,
    /// Directory for the journals and databases (default: a temp dir under target/).
    #[arg(long)]
    dir: Option<PathBuf>,
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

    let sales = if args.quick { 500 } else { 3_000 };
    let raw = sqlite_limit::raw_commits_per_s(
        work.path(),
        Duration::from_secs(if args.quick { 3 } else { 10 }),
        200,
    )?;
    let agent = agent_sales::measure(&work.path().join("agent"), sales)?;
    figures.insert("sqlite_raw_commits_per_s".into(), json!(round(raw)));
    figures.insert("agent_sales_per_s".into(), json!(round(agent.sales_per_s)));
    figures.insert(
        "agent_commits_per_s".into(),
        json!(round(agent.commits_per_s)),
    );
    figures.insert("agent_rss_mb_idle".into(), json!(round(agent.rss_mb_idle)));
    table.push(row(
        "till sale+commit pairs/s",
        agent.sales_per_s,
        "raw SQLite commits/s",
        raw,
        Some(agent.commits_per_s / raw),
        "agent commits (2 per sale) vs raw commits",
    ));
    table.push(row(
        "agent idle RSS (MB)",
        agent.rss_mb_idle,
        "goal",
        30.0,
        None,
        "below 30 MB",
    ));

    figures.insert("machine".into(), json!(machine()));
    figures.insert("quick".into(), json!(args.quick));
    let out = Value::Object(figures);
    std::fs::write(&args.out, serde_json::to_string_pretty(&out)? + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    print_table(&table);
    println!("\nwrote {}", args.out.display());
    Ok(())
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

struct Row {
    what: &'static str,
    value: f64,
    limit_name: &'static str,
    limit: f64,
    ratio: Option<f64>,
    note: &'static str,
}

fn row(
    what: &'static str,
    value: f64,
    limit_name: &'static str,
    limit: f64,
    ratio: Option<f64>,
    note: &'static str,
) -> Row {
    Row {
        what,
        value,
        limit_name,
        limit,
        ratio,
        note,
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<34} {:>12}   {:<28} {:>12} {:>8}  note",
        "figure", "value", "limit", "limit value", "ratio"
    );
    for r in rows {
        let ratio = r
            .ratio
            .map_or_else(|| "-".to_owned(), |x| format!("{:.0}%", x * 100.0));
        println!(
            "{:<34} {:>12.2}   {:<28} {:>12.2} {:>8}  {}",
            r.what, r.value, r.limit_name, r.limit, ratio, r.note
        );
    }
}

/// Builds the release binaries the benchmark starts (a no-op when up to date).
fn build_binaries() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
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
