//! The HQ dashboard in a real browser (headless Chromium through ChromeDriver), on the
//! CDNOW sample imported with `sync-server import purchases` plus today's sales from a
//! real `pos-agent`: an operator logs in, reads the KPIs the CLI reports (both
//! periods), looks up and blocks a card, sees a quarantined entry, and logs out. A
//! screenshot of the KPI page is kept in `target/tmp/dashboard-kpi.png`. Skipped, with
//! a note, on a machine without Chromium unless `REQUIRE_BROWSER=1` (CI installs it and
//! sets that).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::agent::enrolled;
use e2e::browser::Browser;
use e2e::entries::{Entry, figures};
use e2e::hq_http::push_body;
use e2e::server::Server;
use e2e::{bin, http, temp_dir, wait_for};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "../analytics/tests/common/cdnow.rs"]
#[allow(dead_code)]
mod cdnow;

const PASSWORD: &str = "a long admin password";
const CARD: &str = "4006381333931";

/// `sync-server admin hash-password` of `password`.
fn hash_password(password: &str) -> String {
    let mut child = Command::new(bin("sync-server"))
        .args(["admin", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Every KPI figure on the page shown for `from`..`to` equals `report kpi`'s.
fn assert_page_figures_equal_the_cli(browser: &Browser, server: &Server, from: &str, to: &str) {
    browser.goto(&server.at(&format!("/admin/?from={from}&to={to}")));
    let csv = server.admin_ok(&[
        "report", "kpi", "--from", from, "--to", to, "--format", "csv",
    ]);
    let mut compared = 0;
    for line in csv.lines().skip(1) {
        let (name, value) = line.split_once(',').unwrap();
        let cell = browser.find(&format!("td[data-figure=\"{name}\"]"));
        assert_eq!(cell.text(), value, "{name} from {from} to {to}");
        compared += 1;
    }
    assert!(compared > 10, "{csv}");
}

#[test]
fn an_operator_logs_in_reads_the_kpis_blocks_a_card_and_logs_out() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let dir = temp_dir();
    let server = Server::start(
        &dir.path().join("hq"),
        &format!("[admin]\npassword_hash = \"{}\"\n", hash_password(PASSWORD)),
    );
    // A tier today's big receipt reaches (at the base accrual rate, so the points stay
    // as without it) and a promotion on the imported history's category in March 1997:
    // the pages show the tier figures and the promotion's difference-in-differences.
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[tier]]\nname = \"gold\"\nmin_spend_minor = 100000\naccrual_bp = 500\n\n\
         [[promotion]]\nname = \"spring\"\nmultiplier_percent = 200\n\
         categories = [\"import\"]\nstarts = 1997-03-01\nends = 1997-03-31\n",
    )
    .unwrap();
    server.admin_ok(&["rules", "set", rules.to_str().unwrap()]);
    // The CDNOW sample's 2,357 customers, one card each, as history.
    let purchases = cdnow::load("CDNOW_sample.txt").unwrap_or_else(|e| panic!("{e}"));
    let csv = dir.path().join("cdnow.csv");
    std::fs::write(&csv, cdnow::import_csv(&purchases)).unwrap();
    server.admin_ok(&["import", "purchases", csv.to_str().unwrap()]);
    let till = enrolled(&dir.path().join("till"), &server, "store-1", "till-1", "");
    // Two member receipts (one redeeming) and one without a card.
    till.sell("R-1", Some(CARD), 200_000, 0);
    till.wait_synced();
    till.sell("R-2", None, 5_000, 0);
    till.sell("R-3", Some(CARD), 30_000, 40);
    till.wait_synced();

    // Not logged in: the login page. A wrong password is refused there.
    browser.goto(&server.at("/admin/"));
    assert!(browser.all("td[data-figure]").is_empty());
    browser.find("#password").type_text("not the password");
    browser.find("#login").click();
    assert_eq!(browser.find("p.error").text(), "Wrong password.");
    browser.find("#password").type_text(PASSWORD);
    browser.find("#login").click();
    browser.find("td[data-figure]");
    assert!(browser.url().ends_with("/admin/"), "{}", browser.url());
    assert!(browser.all("#password").is_empty());

    // The session cookie is out of a script's reach and never sent cross-site.
    let cookies = browser.cookies();
    let session = cookies
        .iter()
        .find(|c| c.name == "loyalty_admin")
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert!(session.http_only, "{session:?}");
    assert_eq!(session.same_site, "Strict", "{session:?}");
    // No script at all; the two charts are drawn by the server.
    assert!(browser.all("script").is_empty());
    assert_eq!(browser.all("svg").len(), 2, "{}", browser.source());

    // Every figure on the page is the CLI's: today's sales (the default period, the
    // last 30 days) and the CDNOW history.
    let today = time::OffsetDateTime::now_utc().date();
    let month_ago = today - time::Duration::days(29);
    assert_page_figures_equal_the_cli(
        &browser,
        &server,
        &month_ago.to_string(),
        &today.to_string(),
    );
    assert_eq!(
        browser.find("td[data-figure=\"members.receipts\"]").text(),
        "2"
    );
    assert_eq!(
        browser
            .find("td[data-figure=\"non_members.receipts\"]")
            .text(),
        "1"
    );
    assert_eq!(
        browser
            .find("td[data-figure=\"tier_moves.none.gold\"]")
            .text(),
        "1",
        "the card reached gold today"
    );
    assert_page_figures_equal_the_cli(&browser, &server, "1997-01-01", "1998-06-30");
    assert_eq!(
        browser.find("td[data-figure=\"members.receipts\"]").text(),
        purchases.len().to_string()
    );
    let did = browser.find("td[data-figure=\"promotion.spring.did_minor\"]");
    assert_ne!(did.text(), "0", "March 1997 against the 31 days before it");
    assert!(
        browser
            .source()
            .contains("<td>1997-03-01 to 1997-03-31</td><td>1997-01-29 to 1997-02-28</td>"),
        "the promotions table shows both windows"
    );
    assert_eq!(browser.all("svg").len(), 2);
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-kpi.png");
    browser.screenshot(&shot);
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    // Look up the card: shown masked, never in full; block it with a reason.
    browser.goto(&server.at("/admin/cards"));
    browser.find("#card").type_text(CARD);
    browser.find("#lookup").click();
    let masked = browser.find("#masked").text();
    assert!(
        masked.ends_with("3931") && !masked.contains(CARD),
        "{masked}"
    );
    assert!(!browser.source().contains(CARD));
    browser
        .find("input[name=reason]")
        .type_text("reported lost");
    browser.find("#block").click();
    wait_for(
        Duration::from_secs(10),
        "the page to show the card blocked",
        || browser.source().contains("yes reported lost").then_some(()),
    );
    let shown = server.admin_ok(&["card", "show", CARD]);
    assert!(shown.contains("blocked"), "{shown}");

    // An entry HQ cannot apply is listed on the quarantine page, card masked.
    let bad = vec![Entry::new(1).sale(Some(CARD), figures(0, i64::MAX))];
    let body = serde_json::to_value(push_body("store-9", "till-9", bad)).unwrap();
    let rogue = server.add_terminal("store-9", "till-9");
    let pushed = http::post_hq(&server.at("/v1/sync/push"), &rogue, &body);
    assert_eq!(
        pushed.body["quarantined"],
        serde_json::json!([1]),
        "{}",
        pushed.text
    );
    browser.goto(&server.at("/admin/quarantine"));
    let rows = browser.all("tr:has(td)");
    assert_eq!(rows.len(), 1, "{}", browser.source());
    let row = rows[0].text();
    assert!(
        row.contains("store-9/till-9 seq 1") && row.contains("quarantined"),
        "{row}"
    );
    assert!(!browser.source().contains(CARD));

    // Logging out ends the session: the dashboard asks for the password again.
    browser.find("#logout").click();
    browser.find("#password");
    browser.goto(&server.at("/admin/"));
    browser.find("#password");
    assert!(browser.all("td[data-figure]").is_empty());
}
