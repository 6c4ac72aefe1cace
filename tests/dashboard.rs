//! The HQ dashboard in a real browser (headless Chromium through ChromeDriver): an
//! operator logs in, reads the KPIs the CLI reports, looks up and blocks a card, and
//! logs out. Sales reach HQ from a real `pos-agent`. Skipped, with a note, on a
//! machine without Chromium unless `REQUIRE_BROWSER=1` (CI installs it and sets that).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::agent::{Agent, sync_config};
use e2e::browser::Browser;
use e2e::server::Server;
use e2e::{bin, temp_dir};
use std::io::Write;
use std::process::{Command, Stdio};

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
    let token = server.add_terminal("store-1", "till-1");
    let till_dir = dir.path().join("till");
    let till = Agent::start(
        &till_dir,
        &sync_config(&till_dir, "store-1", "till-1", &server.base, &token, ""),
    );
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

    // Every figure on the page is the CLI's, for the same (default: 30 days) period.
    let today = time::OffsetDateTime::now_utc().date();
    let from = today - time::Duration::days(29);
    let csv = server.admin_ok(&[
        "report",
        "kpi",
        "--from",
        &from.to_string(),
        "--to",
        &today.to_string(),
        "--format",
        "csv",
    ]);
    let mut compared = 0;
    for line in csv.lines().skip(1) {
        let (name, value) = line.split_once(',').unwrap();
        let cell = browser.find(&format!("td[data-figure=\"{name}\"]"));
        assert_eq!(cell.text(), value, "{name}");
        compared += 1;
    }
    assert!(compared > 10, "{csv}");
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
    let shown = server.admin_ok(&["card", "show", CARD]);
    assert!(shown.contains("blocked"), "{shown}");
    assert!(
        browser.source().contains("yes reported lost"),
        "{}",
        browser.source()
    );

    // Logging out ends the session: the dashboard asks for the password again.
    browser.find("#logout").click();
    browser.find("#password");
    browser.goto(&server.at("/admin/"));
    browser.find("#password");
    assert!(browser.all("td[data-figure]").is_empty());
}
