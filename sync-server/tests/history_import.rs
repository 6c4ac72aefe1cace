//! History import and the CLV report on the real binary, on every backend: the CDNOW
//! sample imported as purchases reproduces Fader, Hardie & Lee's published fits through
//! `report clv`; imports are idempotent, checked whole with line numbers, and leave a
//! ledger that `verify` accepts.

// Test bodies are plain functions that `on_every_backend!` calls from each backend's
// #[test], so clippy's allow-unwrap-in-tests does not see them as tests.
#![allow(clippy::unwrap_used)]

mod common;

#[path = "../../analytics/tests/common/cdnow.rs"]
#[allow(dead_code)] // Only the loader and the CSV writer are used here.
mod cdnow;

use common::{Backend, Hq};
use std::path::PathBuf;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write_file(hq: &Hq, name: &str, text: &str) -> PathBuf {
    let path = hq.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn within(got: f64, published: f64) -> bool {
    (got / published - 1.0).abs() <= 0.01
}

async fn the_imported_cdnow_sample_reproduces_the_published_fits(backend: Backend) {
    let hq = backend.hq();
    let purchases = cdnow::load("CDNOW_sample.txt").unwrap_or_else(|e| panic!("{e}"));
    let csv = write_file(&hq, "cdnow.csv", &cdnow::import_csv(&purchases));
    let csv = csv.to_str().unwrap();

    let out = hq.run(&["import", "purchases", csv]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows = purchases.len();
    assert_eq!(
        stdout.trim(),
        format!("imported {rows} rows: {rows} written, 0 already held")
    );
    assert!(
        stderr(&out).contains(&format!("import: {rows}/{rows} written")),
        "progress line: {}",
        stderr(&out)
    );
    // Again: every row is recognised, nothing is written twice.
    let again = hq.ok(&["import", "purchases", csv]);
    assert_eq!(
        again.trim(),
        format!("imported {rows} rows: 0 written, {rows} already held")
    );
    hq.ok(&["verify"]);

    let json = hq.ok(&[
        "report",
        "clv",
        "--calibration-end",
        "1997-09-30",
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["member_count"], 2357);
    assert_eq!(report["repeat_buyers"], 946);
    // Fader, Hardie & Lee (2005): r 0.243, α 4.414, a 0.793, b 2.426 (weeks);
    // Gamma-Gamma p 6.25, q 3.74, γ 15.44 dollars (1,544 cents).
    for (model, name, published) in [
        ("bgnbd", "r", 0.243),
        ("bgnbd", "alpha", 4.414),
        ("bgnbd", "a", 0.793),
        ("bgnbd", "b", 2.426),
        ("gamma_gamma", "p", 6.25),
        ("gamma_gamma", "q", 3.74),
        ("gamma_gamma", "gamma", 1544.0),
    ] {
        let got = report[model][name].as_f64().unwrap();
        assert!(
            within(got, published),
            "{model}.{name} = {got}, published {published}"
        );
    }
    let members = report["members"].as_array().unwrap();
    assert_eq!(members.len(), 2357);
    let card = cdnow::card_of(purchases[0].customer);
    let first = members.iter().find(|m| m["card"] == card).unwrap();
    assert!(first["p_alive"].as_f64().unwrap() <= 1.0);
    assert!(!report["at_risk"].as_array().unwrap().is_empty());

    let table = hq.ok(&["report", "clv", "--calibration-end", "1997-09-30"]);
    assert!(table.contains("2357 members, 946 repeat buyers"), "{table}");
    assert!(!table.contains(&card), "the table masks cards: {table}");
}

async fn a_bad_file_is_refused_with_its_line_numbers_and_changes_nothing(backend: Backend) {
    let hq = backend.hq();
    let csv = write_file(
        &hq,
        "bad.csv",
        "card,at,receipt_id,amount_minor\n\
         4006381333931,2024-01-02,R-1,1000\n\
         4006381333931,2024-13-02,R-2,1000\n\
         4006381333931,2024-01-03,R-3,ten\n",
    );
    let out = hq.run(&["import", "purchases", csv.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("line 3: at:"), "{err}");
    assert!(err.contains("line 4: amount_minor:"), "{err}");
    assert!(!err.contains("4006381333931"), "no full card number: {err}");
    let card = hq.ok(&["card", "show", "4006381333931"]);
    assert!(
        card.contains("HQ holds no record"),
        "nothing written: {card}"
    );
    assert!(!hq.ok(&["terminal", "list"]).contains("import"));
}

async fn opening_balances_enter_the_ledger_once_and_verify_holds(backend: Backend) {
    let hq = backend.hq();
    let csv = write_file(
        &hq,
        "balances.csv",
        "card,balance,at\n4006381333931,120,2026-01-31\n123456,0,\n",
    );
    let csv = csv.to_str().unwrap();
    let first = hq.ok(&["import", "balances", csv, "--store", "store-1"]);
    assert_eq!(first.trim(), "imported 2 rows: 2 written, 0 already held");
    let again = hq.ok(&["import", "balances", csv]);
    assert_eq!(again.trim(), "imported 2 rows: 0 written, 2 already held");
    let card = hq.ok(&["card", "show", "4006381333931"]);
    assert!(card.contains("balance    120"), "{card}");
    assert!(card.contains("accrual"), "an accrual ledger row: {card}");
    hq.ok(&["verify"]);
    assert!(hq.ok(&["terminal", "list"]).contains("store-1"));
}

on_every_backend!(
    the_imported_cdnow_sample_reproduces_the_published_fits,
    a_bad_file_is_refused_with_its_line_numbers_and_changes_nothing,
    opening_balances_enter_the_ledger_once_and_verify_holds,
);
