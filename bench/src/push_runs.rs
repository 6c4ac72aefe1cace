//! The many-terminal push runs of one HQ backend, as ratios measured in one run: first
//! back to back (the saturation), then Poisson arrivals offering stated fractions of
//! the saturation just measured. A fixed offered rate would land above saturation on a
//! slower day of the machine and flip from milliseconds to seconds; a fraction of
//! what this run's servers took does not.
//!
//! JSON keys (prefixed `pg_` on PostgreSQL): back to back `server_push_entries_per_s`,
//! `server_push_p50_ms`/`_p99_ms`/`_p999_ms`, `server_pushes`,
//! `server_push_entries_per_hq_cpu_s` (and on PostgreSQL `_per_pg_cpu_s`); per fraction (`paced50`,
//! `paced80`) `server_push_paced50_offered_entries_per_s`, `_entries_per_s` (achieved),
//! `_p50_ms`/`_p99_ms`/`_p999_ms`, `_pushes`; `server_push_paced_p50_ms`/`_p99_ms` are
//! the 50 % run's (their name from when the paced run was a fixed grid). The load
//! generator's own CPU per push: `push_generator_cpu_us_per_push` (back to back) and
//! `push_paced50_generator_cpu_us_per_push`, `push_paced80_…`. The probe
//! till's figures are under `open_sale_with_points_*` and `live_balance_*`.

use crate::arrivals::Load;
use crate::hq::HqDb;
use crate::probe_till::{LIVE_BALANCE_TIMEOUT_MS, Probed};
use crate::push_load::{self, PushFigures};
use crate::{Row, round, round3, row};
use serde_json::{Map, json};
use std::path::Path;
use std::time::Duration;

/// Entries per push: what a till sends after a few sales.
const BATCH: u64 = 10;

/// The paced loads, as a share of the saturation, with their key label.
const FRACTIONS: [(f64, &str); 2] = [(0.5, "paced50"), (0.8, "paced80")];

/// The seed of the Poisson arrivals: every run offers the same ones.
const SEED: u64 = 14;

/// Goals from issue 14, shown beside the figures (reported, never asserted).
const GOAL_PACED50_PUSH_P99_MS: f64 = 50.0;
const GOAL_SATURATION_PUSH_P99_MS: f64 = 250.0;
const GOAL_LIVE_BALANCE_P99_MS: f64 = 20.0;

/// One backend's setting.
pub struct Backend<'a> {
    /// `""` for SQLite, `"pg_"` for PostgreSQL.
    pub prefix: &'a str,
    /// Its name in the table.
    pub name: &'a str,
    /// sync-server processes on the one database.
    pub instances: usize,
    /// A fresh, empty database for each run.
    pub fresh: &'a dyn Fn() -> anyhow::Result<HqDb>,
}

/// How big the runs are.
pub struct Size {
    /// Simulated tills.
    pub terminals: usize,
    /// Back to back: pushes per till.
    pub rounds: u64,
    /// Paced: how long arrivals are offered.
    pub window: Duration,
}

/// Runs the backend's loads; adds their figures and rows.
pub fn measure(
    dir: &Path,
    backend: &Backend,
    size: &Size,
    figures: &mut Map<String, serde_json::Value>,
    table: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let Backend {
        prefix,
        name,
        instances,
        fresh,
    } = *backend;
    let terminals = size.terminals;
    let push = push_load::measure(
        &dir.join("push"),
        &fresh()?,
        instances,
        terminals,
        BATCH,
        Load::BackToBack {
            rounds: size.rounds,
        },
    )?;
    let key = |what: &str| format!("{prefix}{what}");
    figures.insert(
        key("server_push_entries_per_s"),
        json!(round(push.entries_per_s)),
    );
    insert_latencies(figures, &key("server_push"), &push);
    figures.insert(key("server_pushes"), json!(push.pushes));
    figures.insert(
        key("push_generator_cpu_us_per_push"),
        json!(round(push.generator_cpu_us_per_push())),
    );
    table.push(row(
        &format!("{terminals} terminals, {name} ({instances} inst.): entries/s"),
        push.entries_per_s,
        "",
        0.0,
        None,
        "pushes of 10 entries, back to back (saturation)",
    ));
    table.push(row(
        &format!("{terminals} terminals, {name}: push p99 (ms)"),
        push.p99_ms,
        "goal p99 (ms)",
        GOAL_SATURATION_PUSH_P99_MS,
        None,
        &format!(
            "queueing at saturation; p50 {:.1}, p99.9 {:.1}",
            push.p50_ms, push.p999_ms
        ),
    ));
    // The capacity per core (README, "Capacity"): what each busy core of HQ, and of
    // PostgreSQL, acknowledged at saturation.
    figures.insert(
        key("server_push_entries_per_hq_cpu_s"),
        json!(round(push.entries_per_hq_core())),
    );
    let mut per_core = format!(
        "{:.2} HQ cores busy",
        push.hq_cpu_s * push.entries_per_s / push.entries.max(1) as f64
    );
    if let (Some(per_pg), Some(pg_cpu_s)) = (push.entries_per_pg_core(), push.pg_cpu_s) {
        figures.insert(
            key("server_push_entries_per_pg_cpu_s"),
            json!(round(per_pg)),
        );
        per_core = format!(
            "{per_core}; PostgreSQL: {per_pg:.0} entries per CPU-second, {:.2} cores busy",
            pg_cpu_s * push.entries_per_s / push.entries.max(1) as f64
        );
    }
    table.push(row(
        &format!("{terminals} terminals, {name}: entries per HQ CPU-second"),
        push.entries_per_hq_core(),
        "",
        0.0,
        None,
        &per_core,
    ));
    let mut paced = Vec::new();
    for (fraction, label) in FRACTIONS {
        let run = push_load::measure(
            &dir.join(format!("push-{label}")),
            &fresh()?,
            instances,
            terminals,
            BATCH,
            Load::Poisson {
                entries_per_s: fraction * push.entries_per_s,
                window: size.window,
                seed: SEED,
            },
        )?;
        let offered = run.offered_entries_per_s.unwrap_or_default();
        figures.insert(
            key(&format!("server_push_{label}_offered_entries_per_s")),
            json!(round(offered)),
        );
        figures.insert(
            key(&format!("server_push_{label}_entries_per_s")),
            json!(round(run.entries_per_s)),
        );
        insert_latencies(figures, &key(&format!("server_push_{label}")), &run);
        figures.insert(
            key(&format!("server_push_{label}_pushes")),
            json!(run.pushes),
        );
        figures.insert(
            key(&format!("push_{label}_generator_cpu_us_per_push")),
            json!(round(run.generator_cpu_us_per_push())),
        );
        let goal = (label == "paced50").then_some(GOAL_PACED50_PUSH_P99_MS);
        table.push(row(
            &format!(
                "{terminals} terminals, {name}, Poisson {:.0}% of sat.: push p99 (ms)",
                fraction * 100.0
            ),
            run.p99_ms,
            if goal.is_some() { "goal p99 (ms)" } else { "" },
            goal.unwrap_or_default(),
            None,
            &format!(
                "p50 {:.1}, p99.9 {:.1}; offered {offered:.0} entries/s, {:.0} acknowledged",
                run.p50_ms, run.p999_ms, run.entries_per_s
            ),
        ));
        paced.push((fraction, label, run));
    }
    // The names these figures had when the one paced run was a fixed grid.
    if let Some((_, _, half)) = paced.first() {
        for (quantile, ms) in [("p50", half.p50_ms), ("p99", half.p99_ms)] {
            figures.insert(
                key(&format!("server_push_paced_{quantile}_ms")),
                json!(round3(ms)),
            );
        }
    }

    let probes = std::iter::once((None, "", &push))
        .chain(paced.iter().map(|(f, label, run)| (Some(*f), *label, run)));
    for (fraction, label, run) in probes {
        let load = match fraction {
            None => "under saturation".to_owned(),
            Some(f) => format!("Poisson {:.0}% of sat.", f * 100.0),
        };
        // Key infixes: back to back and 50 % keep the names they had before the 80 %
        // run existed.
        let (sale_key, balance_key) = match label {
            "" => (String::new(), "under_saturation".to_owned()),
            "paced50" => ("paced_".to_owned(), "under_load".to_owned()),
            _ => (format!("{label}_"), format!("{label}_under_load")),
        };
        insert_probed(
            figures,
            &key(&format!("open_sale_with_points_{sale_key}under_load")),
            &run.open_sale,
        );
        insert_probed(
            figures,
            &key(&format!("live_balance_{balance_key}")),
            &run.live_balance,
        );
        table.push(probe_row(
            &format!("open sale with points, {name}, {load} p99 (ms)"),
            &run.open_sale,
            None,
        ));
        table.push(probe_row(
            &format!("card balance lookup, {name}, {load} p99 (ms)"),
            &run.live_balance,
            (label == "paced50").then_some(GOAL_LIVE_BALANCE_P99_MS),
        ));
    }
    Ok(())
}

/// `{stem}_p50_ms`, `_p99_ms` and `_p999_ms`.
fn insert_latencies(figures: &mut Map<String, serde_json::Value>, stem: &str, run: &PushFigures) {
    for (quantile, ms) in [
        ("p50", run.p50_ms),
        ("p99", run.p99_ms),
        ("p999", run.p999_ms),
    ] {
        figures.insert(format!("{stem}_{quantile}_ms"), json!(round3(ms)));
    }
}

/// `{stem}_p99_ms` and `{stem}_offline_share`.
fn insert_probed(figures: &mut Map<String, serde_json::Value>, stem: &str, probed: &Probed) {
    figures.insert(format!("{stem}_p99_ms"), json!(round3(probed.p99_ms)));
    figures.insert(
        format!("{stem}_offline_share"),
        json!(round3(probed.offline_share)),
    );
}

/// A probe's row: beside the timeout after which the till decides offline.
fn probe_row(what: &str, probed: &Probed, goal_ms: Option<f64>) -> Row {
    let timeout = LIVE_BALANCE_TIMEOUT_MS as f64;
    let goal = goal_ms.map_or_else(String::new, |g| format!("goal p99 < {g:.0} ms; "));
    row(
        what,
        probed.p99_ms,
        "live_balance_timeout_ms",
        timeout,
        Some(probed.p99_ms / timeout),
        &format!(
            "{goal}a real till, {} requests, {:.0}% answered offline",
            probed.count,
            probed.offline_share * 100.0
        ),
    )
}
