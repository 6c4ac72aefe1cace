//! The HQ dashboard in a real headless Chromium, on the CDNOW history imported
//! through the real binary, on every backend: the login is required, the KPI page's
//! figures equal `report kpi`'s, the charts render, the card page shows the card
//! masked and blocks it, logout ends the session; the JSON endpoint needs the admin
//! password. A screenshot of the KPI page is kept under `target/dashboard/`.
//!
//! Needs `chromium` on PATH (CI installs it); see `common::browser` for the local
//! escape hatch.

#![allow(clippy::unwrap_used)]

mod common;

#[path = "../../analytics/tests/common/cdnow.rs"]
#[allow(dead_code)] // Only the loader and the CSV writer are used here.
mod cdnow;

use common::browser::{Browser, chromium};
use common::{BIN, Backend, Hq};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const PASSWORD: &str = "dashboard test password";
const PERIOD: &str = "from=1997-01-01&to=1997-03-31";

/// `[admin] password_hash` from the real `admin hash-password`.
fn password_hash() -> String {
    let mut child = Command::new(BIN)
        .args(["admin", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An HQ with the dashboard on and the CDNOW sample imported.
fn hq_with_cdnow(backend: Backend) -> Hq {
    let hq = backend.hq_with_config(&format!(
        "[admin]\npassword_hash = \"{}\"\n",
        password_hash()
    ));
    let purchases = cdnow::load("CDNOW_sample.txt").unwrap_or_else(|e| panic!("{e}"));
    let csv = hq.dir.path().join("cdnow.csv");
    std::fs::write(&csv, cdnow::import_csv(&purchases)).unwrap();
    hq.ok(&["import", "purchases", csv.to_str().unwrap()]);
    hq
}

/// A GET over plain HTTP/1.0: status and body.
fn http_get(url: &str, authorization: Option<&str>) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    let auth = authorization.map_or_else(String::new, |a| format!("Authorization: {a}\r\n"));
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n{auth}\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// Where the screenshot goes: the workspace's target directory.
fn screenshot_path(backend: Backend) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join(format!("dashboard/kpi-{backend:?}.png").to_lowercase())
}

fn the_dashboard_shows_the_clis_figures_behind_a_login(backend: Backend) {
    let Some(chromium) = chromium() else { return };
    let hq = hq_with_cdnow(backend);
    let cli_csv = hq.ok(&[
        "report",
        "kpi",
        "--from",
        "1997-01-01",
        "--to",
        "1997-03-31",
        "--format",
        "csv",
    ]);
    let server = hq.start();
    let mut b = Browser::start(&chromium);

    // Not logged in: the KPI page sends the browser to the login.
    b.goto(&server.at(&format!("/admin/?{PERIOD}")));
    assert_eq!(b.eval("location.pathname"), "/admin/login");
    b.eval("document.getElementById('password').value = 'wrong password'");
    b.submit("document.querySelector('form').submit()");
    assert!(
        b.eval("document.body.innerText")
            .as_str()
            .unwrap()
            .contains("Wrong password")
    );
    assert_eq!(b.eval("location.pathname"), "/admin/login");
    b.eval(&format!(
        "document.getElementById('password').value = '{PASSWORD}'"
    ));
    b.submit("document.querySelector('form').submit()");
    assert_eq!(b.eval("location.pathname"), "/admin/");

    // The KPI page of the period: every figure as the CLI prints it, and two charts.
    b.goto(&server.at(&format!("/admin/?{PERIOD}")));
    let on_page = b.eval(
        "[...document.querySelectorAll('[data-figure]')].map(e => e.dataset.figure + ',' + e.textContent).join('\\n')",
    );
    let cli_figures: Vec<&str> = cli_csv.lines().skip(1).collect();
    let page_figures: Vec<&str> = on_page.as_str().unwrap().lines().collect();
    assert_eq!(page_figures, cli_figures);
    assert!(cli_csv.contains("members.receipts,"), "{cli_csv}");
    assert!(
        !cli_csv.contains("members.receipts,0\n"),
        "CDNOW has receipts: {cli_csv}"
    );
    assert_eq!(b.eval("document.querySelectorAll('svg.chart').length"), 2);
    assert!(
        b.eval("document.querySelectorAll('svg.chart rect').length")
            .as_u64()
            .unwrap()
            > 100
    );
    let shot = screenshot_path(backend);
    b.screenshot(&shot);
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "{}",
        shot.display()
    );

    // Card lookup: shown masked, never in full; blocked from the page.
    let first = cdnow::load("CDNOW_sample.txt").unwrap()[0].customer;
    let card = cdnow::card_of(first);
    b.goto(&server.at("/admin/cards"));
    b.eval(&format!("document.getElementById('card').value = '{card}'"));
    b.submit("document.getElementById('lookup').form.submit()");
    let masked = format!("****{}", &card[card.len() - 4..]);
    assert_eq!(
        b.eval("document.getElementById('masked').textContent"),
        masked.as_str()
    );
    let html = b.eval("document.documentElement.outerHTML");
    assert!(
        !html.as_str().unwrap().contains(&card),
        "the full number is not on the page"
    );
    b.submit("document.getElementById('block').form.submit()");
    assert!(hq.ok(&["card", "show", &card]).contains("blocked    yes"));

    b.goto(&server.at("/admin/terminals"));
    assert!(
        b.eval("document.body.innerText")
            .as_str()
            .unwrap()
            .contains("import/import")
    );

    // Logout ends the session: the pages ask for the login again.
    b.goto(&server.at("/admin/"));
    b.submit("document.getElementById('logout').form.submit()");
    assert_eq!(b.eval("location.pathname"), "/admin/login");
    b.goto(&server.at("/admin/flags"));
    assert_eq!(b.eval("location.pathname"), "/admin/login");

    // The JSON endpoint: the admin password (HTTP Basic), nothing else.
    let url = server.at(&format!("/v1/admin/kpi?{PERIOD}"));
    assert_eq!(http_get(&url, None).0, 401);
    let wrong = data_encoding::BASE64.encode(b"admin:guess");
    assert_eq!(http_get(&url, Some(&format!("Basic {wrong}"))).0, 401);
    let right = data_encoding::BASE64.encode(format!("admin:{PASSWORD}").as_bytes());
    let (status, body) = http_get(&url, Some(&format!("Basic {right}")));
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let receipts = format!("members.receipts,{}", json["members"]["receipts"]);
    assert!(
        cli_figures.contains(&receipts.as_str()),
        "{receipts} in {cli_csv}"
    );
    for key in ["revenue_minor", "avg_receipt_minor", "frequency"] {
        assert!(json["members"].get(key).is_some(), "members.{key}");
    }
    for key in ["accrued", "redeemed", "expired", "liability_minor"] {
        assert!(json["points"].get(key).is_some(), "points.{key}");
    }
    assert!(json["active_members_30d"].is_i64() && json["churned_members"].is_i64());
}

on_every_backend!(blocking: the_dashboard_shows_the_clis_figures_behind_a_login);
