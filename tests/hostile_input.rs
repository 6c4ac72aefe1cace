//! Hostile and extreme input against the real `pos-agent` and `sync-server` (issue 13):
//! figures near `i64::MAX` at the till, a terminal pushing figures HQ cannot apply,
//! every way HQ can fail the agent (down, silent, 5xx, 4xx, TLS) with the full card
//! number absent from the agent's log and health, and a wrong method at the till API.

#![allow(clippy::unwrap_used)]

use e2e::agent::{Agent, sale_body, sync_config};
use e2e::entries::{Entry, figures, sale};
use e2e::hq_http::push_body;
use e2e::proxy::{Fault, Proxy};
use e2e::server::Server;
use e2e::{http, temp_dir, wait_for};
use serde_json::{Value, json};
use std::net::TcpStream;
use std::time::Duration;

const CARD: &str = "4006381333931";
const CARD_B: &str = "5901234123457";

/// An agent syncing with a fresh HQ directly.
fn agent_and_hq(dir: &std::path::Path, extra_agent_config: &str) -> (Server, String, Agent) {
    let server = Server::start(&dir.join("hq"), "");
    let token = server.add_terminal("store-1", "till-1");
    let adir = dir.join("till-1");
    let config = sync_config(
        &adir,
        "store-1",
        "till-1",
        &server.base,
        &token,
        extra_agent_config,
    );
    let agent = Agent::start(&adir, &config);
    (server, token, agent)
}

/// Defect 1: sales whose lines total near `i64::MAX` used to be accepted and then
/// stop the till's sync for good. Now the till refuses them with 400 naming the limit,
/// records nothing, and the sales around them reach HQ.
#[test]
fn near_i64_max_sales_are_refused_at_the_till_naming_the_limit_and_sync_flows_on() {
    let dir = temp_dir();
    let (server, token, agent) = agent_and_hq(dir.path(), "");
    agent.sell("OK-1", Some(CARD), 20_000, 0);

    let huge = agent.post(
        "/v1/sales",
        &sale_body("HUGE-1", Some(CARD), i64::MAX - 1, 0),
    );
    assert_eq!(
        (huge.status, huge.code()),
        (400, "max_line_minor"),
        "{}",
        huge.text
    );
    assert!(
        huge.text.contains("max_line_minor (1000000000)"),
        "{}",
        huge.text
    );

    // Every line at its own limit, the receipt over its limit.
    let lines: Vec<Value> = (0..11)
        .map(|i| json!({"sku": format!("sku-{i}"), "category": "grocery", "amount_minor": 1_000_000_000_i64, "qty": 1}))
        .collect();
    let body = json!({"receipt_id": "HUGE-2", "card": CARD, "lines": lines, "redeem_points": 0});
    let receipt = agent.post("/v1/sales", &body);
    assert_eq!(
        (receipt.status, receipt.code()),
        (400, "max_receipt_minor"),
        "{}",
        receipt.text
    );
    // Nothing of either was recorded: the receipts are unknown to the till.
    for id in ["HUGE-1", "HUGE-2"] {
        let commit = agent.post(&format!("/v1/sales/{id}/commit"), &json!({}));
        assert_eq!(commit.status, 404, "{}", commit.text);
    }

    agent.sell("OK-2", Some(CARD), 20_000, 0);
    agent.wait_synced();
    assert_eq!(server.balance(&token, CARD)["balance"], 20);
    server.assert_verify();
}

/// Defect 2: a card's running total used to overflow at the agent and answer 503
/// (retry) forever. Now a sale that would take the card above its balance limit is
/// refused with 422 naming the limit, the same on a retry, and the till goes on.
#[test]
fn a_sale_above_the_card_balance_limit_is_refused_with_422_every_time_and_the_till_goes_on() {
    let dir = temp_dir();
    let (server, token, agent) =
        agent_and_hq(dir.path(), "[limits]\nmax_card_balance_points = 1000\n");
    let (_, commit) = agent.sell("FILL-1", Some(CARD), 2_000_000, 0);
    assert_eq!(commit.status, 200, "{}", commit.text);
    assert_eq!(commit.body["accrued_points"], 1000);

    for _ in 0..2 {
        let over = agent.post("/v1/sales", &sale_body("OVER-1", Some(CARD), 20_000, 0));
        assert_eq!(
            (over.status, over.code()),
            (422, "max_card_balance_points"),
            "{}",
            over.text
        );
    }
    let (_, other) = agent.sell("OTHER-1", Some(CARD_B), 20_000, 0);
    assert_eq!(other.status, 200, "{}", other.text);
    agent.wait_synced();
    assert_eq!(server.balance(&token, CARD)["balance"], 1000);
    assert_eq!(server.balance(&token, CARD_B)["balance"], 10);
    assert_eq!(agent.health()["status"], "ok");
    server.assert_verify();
}

/// Defect 3: a terminal with a valid token pushing `accrued_points = i64::MAX` used to
/// wrap the card's pending points and make `verify` fail for the whole ledger. Now its
/// entries are quarantined (acknowledged, nothing applied), the till's later entries
/// apply, `report quarantine` names them, and `verify` checks card by card.
#[test]
fn a_terminal_pushing_i64_max_points_gets_them_quarantined_and_its_later_entries_apply() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("hq"), "");
    let token = server.add_terminal("store-1", "till-9");
    let entries = vec![
        Entry::new(1).sale(Some(CARD), figures(0, i64::MAX)),
        Entry::new(2).sale(Some(CARD), figures(0, i64::MAX)),
        sale(3, CARD_B, 0),
        sale(4, CARD, 0),
    ];
    let body = serde_json::to_value(push_body("store-1", "till-9", entries)).unwrap();
    let pushed = http::post_hq(&server.at("/v1/sync/push"), &token, &body);
    assert_eq!(pushed.status, 200, "{}", pushed.text);
    assert_eq!(pushed.body["acked_through"], 4, "{}", pushed.text);
    assert_eq!(pushed.body["quarantined"], json!([1, 2]), "{}", pushed.text);

    // Only the sales HQ could apply count: 5 points each.
    assert_eq!(server.balance(&token, CARD)["balance"], 5);
    assert_eq!(server.balance(&token, CARD_B)["balance"], 5);
    let report = server.admin_ok(&["report", "quarantine"]);
    let flagged: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("QUARANTINED"))
        .collect();
    assert_eq!(flagged.len(), 2, "{report}");
    assert!(
        flagged.iter().all(|l| l.contains("till-9 seq")
            && l.contains("card ****3931")
            && l.contains("out_of_limits")),
        "{report}"
    );
    assert!(!report.contains(CARD), "card numbers are masked: {report}");
    let verified = server.admin_ok(&["verify"]);
    assert!(
        verified.contains("every balance matches its ledger"),
        "{verified}"
    );

    // A ledger whose rows for one card no longer fit in 64 bits (damage, not a push:
    // HQ never writes such rows) is named card by card; the other card is still checked.
    let db = rusqlite::Connection::open(server.dir.join("hq.db")).unwrap();
    db.execute(
        "INSERT INTO ledger (card, kind, delta_balance, delta_pending, at)
         SELECT card, 'welcome', 9223372036854775807, 0, at FROM ledger WHERE card = ?1",
        [CARD],
    )
    .unwrap();
    drop(db);
    let damaged = server.admin(&["verify"]);
    assert_eq!(damaged.status.code(), Some(1));
    let text = String::from_utf8_lossy(&damaged.stdout);
    assert!(text.contains("DIFFERENCE card ****3931"), "{text}");
    assert!(!text.contains(CARD), "card numbers are masked: {text}");
    assert!(!text.contains("****3457"), "{text}");
}

/// An entry of a real till that HQ cannot apply (here made so by editing the journal
/// while the till was offline, as a bug would): HQ quarantines it, the till's queue
/// drains, its other entries apply, and the till's health says how many of its
/// entries HQ quarantined, and the last one's seq.
#[test]
fn a_till_entry_hq_quarantines_is_counted_in_the_till_health_and_the_queue_drains() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("hq"), "");
    let token = server.add_terminal("store-1", "till-1");
    let proxy = Proxy::start(server.base.trim_start_matches("http://"));
    proxy.set(Fault::Refuse);
    let adir = dir.path().join("till-1");
    let mut agent = Agent::start(
        &adir,
        &sync_config(&adir, "store-1", "till-1", &proxy.url(), &token, ""),
    );
    for (receipt, card) in [("Q-1", CARD), ("Q-2", CARD_B)] {
        let (_, commit) = agent.sell(receipt, Some(card), 20_000, 0);
        assert_eq!(commit.status, 200, "{}", commit.text);
        assert_eq!(commit.body["accrued_points"], 10, "{}", commit.text);
    }
    assert_eq!(agent.health()["hq_quarantined"], 0);
    assert!(agent.stop());

    let journal = rusqlite::Connection::open(adir.join("journal.db")).unwrap();
    let seq: u64 = journal
        .query_row(
            "SELECT seq FROM entries WHERE body LIKE '%\"Q-1\"%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    journal
        .execute_batch(
            "DROP TRIGGER entries_are_immutable;
             UPDATE entries SET body = replace(body, '\"accrued_points\":10', '\"accrued_points\":9223372036854775807')
              WHERE body LIKE '%\"Q-1\"%';
             CREATE TRIGGER entries_are_immutable BEFORE UPDATE ON entries
             BEGIN SELECT RAISE(ABORT, 'journal entries are immutable'); END;",
        )
        .unwrap();
    drop(journal);

    agent.restart();
    proxy.set(Fault::Pass);
    agent.wait_synced();
    let health = agent.health();
    assert_eq!(health["hq_quarantined"], 1, "{health}");
    assert_eq!(health["hq_quarantined_last_seq"], seq, "{health}");
    assert_eq!(server.balance(&token, CARD_B)["balance"], 10);
    let report = server.admin_ok(&["report", "quarantine"]);
    assert!(
        report.contains(&format!("till-1 seq {seq} ")) && report.contains("out_of_limits"),
        "{report}"
    );
    // Selling goes on, and the count stays what HQ said.
    agent.sell("Q-3", Some(CARD_B), 20_000, 0);
    agent.wait_synced();
    assert_eq!(agent.health()["hq_quarantined"], 1);
    assert_eq!(server.balance(&token, CARD_B)["balance"], 20);
}

/// Everything the agent writes about HQ while HQ misbehaves: its log and every health
/// answer. The card's own answers (`/v1/cards/…`) are not collected: they show the card.
struct Watch<'a> {
    agent: &'a Agent,
    health: Vec<String>,
}

impl<'a> Watch<'a> {
    fn new(agent: &'a Agent) -> Self {
        Self {
            agent,
            health: Vec::new(),
        }
    }

    /// Reaches HQ every way the till does with the card (live balance, a sale to push),
    /// then waits until health shows an error about HQ that satisfies `check`.
    fn provoke(&mut self, receipt: &str, what: &str, check: impl Fn(&str) -> bool) {
        assert_eq!(self.agent.get(&format!("/v1/cards/{CARD}")).status, 200);
        let (_, commit) = self.agent.sell(receipt, Some(CARD), 20_000, 0);
        assert_eq!(commit.status, 200, "{}", commit.text);
        let seen = wait_for(Duration::from_secs(60), what, || {
            let health = self.agent.get("/v1/health");
            let error = health.body["last_sync_error"].as_str().unwrap_or("");
            (health.body["online"] == false && check(error)).then(|| health.text.clone())
        });
        self.health.push(seen);
        // The card lookup again, now that the failure is established.
        assert_eq!(self.agent.get(&format!("/v1/cards/{CARD}")).status, 200);
        self.health.push(self.agent.get("/v1/health").text);
    }

    fn assert_no_card_number(&self) {
        let log = self.agent.log();
        assert!(
            log.contains("sync failed"),
            "the failures were logged:\n{log}"
        );
        assert!(
            !log.contains(CARD),
            "full card number in the agent log:\n{log}"
        );
        for health in &self.health {
            assert!(
                !health.contains(CARD),
                "full card number in health: {health}"
            );
        }
    }
}

/// Defect 4: the HTTP client's error text carries the URL `/v1/cards/{card}`; it used
/// to reach the log and `/v1/health`. Every failure of HQ the test can cause for real:
/// refused connections, a black hole (timeouts), HQ's own 503 (its connection cap
/// full), 401 (terminal revoked), and a certificate the agent does not trust.
#[test]
fn whatever_hq_does_wrong_the_full_card_number_stays_out_of_the_log_and_health() {
    let dir = temp_dir();
    // Connections to HQ wait long for their headers here, so the ones filling the cap
    // stay until the test lets them go.
    let server = Server::start(
        &dir.path().join("hq"),
        "max_connections = 16\nheader_timeout_secs = 600\n",
    );
    let hq_addr = server.base.trim_start_matches("http://").to_owned();
    let token = server.add_terminal("store-1", "till-1");
    let proxy = Proxy::start(&hq_addr);
    let adir = dir.path().join("till-1");
    let agent = Agent::start(
        &adir,
        &sync_config(&adir, "store-1", "till-1", &proxy.url(), &token, ""),
    );
    agent.sell("S-0", Some(CARD), 20_000, 0);
    agent.wait_synced();
    let mut watch = Watch::new(&agent);

    proxy.set(Fault::Refuse);
    watch.provoke("S-1", "HQ down to show", |e| !e.is_empty());

    proxy.set(Fault::Blackhole);
    watch.provoke("S-2", "a timeout to show", |e| {
        e.to_lowercase().contains("timed out") || e.to_lowercase().contains("timeout")
    });

    // HQ's cap full of idle connections (the agent's own went with the black hole):
    // the agent's next connections are answered 503 by HQ itself.
    let mut fillers = Vec::new();
    wait_for(Duration::from_secs(60), "HQ's cap to fill", || {
        fillers.push(TcpStream::connect(&hq_addr).unwrap());
        let probe = http::get(&server.at("/v1/health"));
        (probe.status == 503).then_some(())
    });
    proxy.set(Fault::Pass);
    watch.provoke("S-3", "HQ's 503 to show", |e| e.contains("503"));
    drop(fillers);

    server.admin_ok(&[
        "terminal",
        "revoke",
        "--store",
        "store-1",
        "--terminal",
        "till-1",
    ]);
    watch.provoke("S-4", "the 401 to show", |e| e.contains("401"));
    watch.assert_no_card_number();

    // TLS failure: an HQ whose certificate the agent does not trust.
    let pki = e2e::tls::generate(dir.path(), "hq");
    let other = e2e::tls::generate(dir.path(), "other");
    let tls_server = Server::start(
        &dir.path().join("hq-tls"),
        &format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            pki.cert.display(),
            pki.key.display()
        ),
    );
    let tls_token = tls_server.add_terminal("store-1", "till-2");
    let tdir = dir.path().join("till-2");
    let tls_agent = Agent::start(
        &tdir,
        &sync_config(
            &tdir,
            "store-1",
            "till-2",
            &tls_server.base,
            &tls_token,
            &format!("ca_file = \"{}\"\n", other.ca.display()),
        ),
    );
    let mut watch = Watch::new(&tls_agent);
    watch.provoke("T-1", "the certificate to be refused", |e| {
        e.to_lowercase().contains("certificate")
    });
    watch.assert_no_card_number();
}

/// Defect 5: a wrong method at the till API used to get an empty 405.
#[test]
fn a_wrong_method_at_the_till_api_gets_a_json_405_naming_the_right_one() {
    let dir = temp_dir();
    let agent = Agent::start(dir.path(), &Agent::standalone_config());
    for (method, path, allowed) in [
        ("PUT", "/v1/sales", "POST"),
        ("DELETE", "/v1/health", "GET"),
        ("GET", "/v1/sales/R-1/commit", "POST"),
    ] {
        let (answer, allow) = http::call(method, &agent.url(path));
        assert_eq!(
            (answer.status, answer.code()),
            (405, "method_not_allowed"),
            "{method} {path}: {}",
            answer.text
        );
        assert!(
            allow.as_deref().is_some_and(|a| a.contains(allowed)),
            "{method} {path}: Allow {allow:?}"
        );
    }
}
