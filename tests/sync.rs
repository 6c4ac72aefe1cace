//! Exactly-once reconciliation between real `pos-agent` and `sync-server` processes,
//! through a fault-injecting proxy. `sync-server verify` passes at the end of each test.

#![allow(clippy::unwrap_used)]

use e2e::agent::{Agent, sale_body, sync_config};
use e2e::proxy::{Fault, Proxy};
use e2e::server::Server;
use e2e::{temp_dir, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

const CARD: &str = "4006381333931";
const CARD_B: &str = "5901234123457";
/// Offline redemption by the caps (the escrow default needs leases granted first).
const CAPS_MODE: &str = "[offline]\nredemption = \"caps\"\n";

/// HQ's live balance of `card`, asked with `token`.
fn hq_balance(server: &Server, token: &str, card: &str) -> Value {
    server.balance(token, card)
}

struct Setup {
    _dir: tempfile::TempDir,
    server: Server,
    token: String,
    agent: Agent,
}

/// A server, and an agent syncing with it directly.
fn setup(extra_agent_config: &str) -> Setup {
    setup_on(extra_agent_config, false).0
}

/// A server, and an agent syncing with it through a fault-injecting proxy.
fn setup_with_proxy(extra_agent_config: &str) -> (Setup, Proxy) {
    let (s, proxy) = setup_on(extra_agent_config, true);
    (s, proxy.expect("a proxy was asked for"))
}

fn setup_on(extra_agent_config: &str, proxied: bool) -> (Setup, Option<Proxy>) {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("hq"), "");
    let token = server.add_terminal("store-1", "till-1");
    let proxy = proxied.then(|| Proxy::start(server.base.trim_start_matches("http://")));
    let url = proxy
        .as_ref()
        .map_or_else(|| server.base.clone(), Proxy::url);
    let adir = dir.path().join("till-1");
    let agent = Agent::start(
        &adir,
        &sync_config(&adir, "store-1", "till-1", &url, &token, extra_agent_config),
    );
    (
        Setup {
            _dir: dir,
            server,
            token,
            agent,
        },
        proxy,
    )
}

#[test]
fn sales_reach_hq_once_and_hq_balances_flow_back_to_the_till() {
    let s = setup("");
    s.agent.sell("R-1", Some(CARD), 100_000, 0); // +50
    s.agent.sell("R-2", Some(CARD), 20_000, 0); // +10
    s.agent.sell("R-3", None, 5_000, 0); // anonymous
    s.agent.wait_synced();
    assert_eq!(hq_balance(&s.server, &s.token, CARD)["balance"], 60);
    let card = s.agent.card(CARD);
    assert_eq!(card["balance"], 60);
    assert_eq!(card["offline"], false);
    assert!(card["as_of"].is_string());
    let health = s.agent.health();
    assert_eq!(health["online"], true);
    assert_eq!(health["acked_through"], 3);
    assert_eq!(health["oldest_unsynced_secs"], 0);
    // An online redemption checks HQ's live balance.
    let (_, commit) = s.agent.sell("R-4", Some(CARD), 20_000, 60);
    assert_eq!(commit.status, 200, "{}", commit.text);
    s.agent.wait_synced();
    assert_eq!(
        hq_balance(&s.server, &s.token, CARD)["balance"],
        7 /* 60 - 60 redeemed + 7 accrued */
    );
    s.server.assert_verify();
}

#[test]
fn selling_goes_on_while_hq_is_down_and_catches_up_when_it_is_back() {
    let (s, proxy) = setup_with_proxy("");
    s.agent.wait_synced();
    proxy.set(Fault::Refuse);
    for i in 0..20 {
        let (_, c) = s.agent.sell(&format!("OFF-{i}"), Some(CARD), 10_000, 0);
        assert_eq!(c.status, 200);
    }
    wait_for(
        Duration::from_secs(30),
        "the agent to notice HQ is down",
        || {
            let h = s.agent.health();
            (h["online"] == false && h["queue_depth"] == 20).then_some(())
        },
    );
    assert_eq!(s.agent.card(CARD)["balance"], 100);
    assert_eq!(s.agent.card(CARD)["offline"], true);
    proxy.set(Fault::Pass);
    s.agent.wait_synced();
    assert_eq!(hq_balance(&s.server, &s.token, CARD)["balance"], 100);
    s.server.assert_verify();
}

#[test]
fn a_lost_answer_after_hq_committed_is_not_applied_twice() {
    let (s, proxy) = setup_with_proxy("");
    s.agent.wait_synced();
    proxy.set(Fault::DropResponse);
    for i in 0..5 {
        s.agent.sell(&format!("L-{i}"), Some(CARD), 20_000, 0); // +10 each
    }
    // HQ has all five entries although the agent does not know it yet. (The sales
    // and the pushes race: an answer can be dropped before the last sale was in a
    // push, so the test waits for both rather than for two drops alone.)
    wait_for(
        Duration::from_secs(30),
        "HQ to hold all five behind dropped answers",
        || {
            (proxy.responses_dropped() >= 2
                && hq_balance(&s.server, &s.token, CARD)["balance"] == 50)
                .then_some(())
        },
    );
    assert_eq!(s.agent.health()["queue_depth"], 5);
    proxy.set(Fault::TruncateResponse(20));
    let before = proxy.responses_dropped();
    wait_for(Duration::from_secs(30), "a truncated answer", || {
        (proxy.responses_dropped() > before).then_some(())
    });
    proxy.set(Fault::Pass);
    s.agent.wait_synced();
    assert_eq!(hq_balance(&s.server, &s.token, CARD)["balance"], 50);
    assert_eq!(s.agent.card(CARD)["balance"], 50);
    s.server.assert_verify();
}

#[test]
fn a_backlog_sent_batch_after_batch_goes_on_from_what_hq_holds_after_lost_answers() {
    // The sync client sends the next batch as soon as HQ answered one, and records
    // that answer while the next is in flight: a lost answer mid-backlog makes it
    // start again from what its journal recorded, and HQ recognises what it holds.
    let (s, proxy) = setup_with_proxy("batch_size = 3\n");
    s.agent.wait_synced();
    proxy.set(Fault::Refuse);
    let sales = 13;
    for i in 0..sales {
        s.agent.sell(&format!("P-{i}"), Some(CARD), 2_000, 0); // +1 each
    }
    proxy.set(Fault::DropResponse);
    wait_for(
        Duration::from_secs(30),
        "HQ to hold the first batch behind dropped answers",
        || {
            (proxy.responses_dropped() >= 2
                && hq_balance(&s.server, &s.token, CARD)["balance"] == 3)
                .then_some(())
        },
    );
    proxy.set(Fault::Pass);
    s.agent.wait_synced();
    assert_eq!(s.agent.health()["queue_depth"], 0);
    assert_eq!(hq_balance(&s.server, &s.token, CARD)["balance"], sales);
    s.server.assert_verify();
}

#[test]
fn an_agent_killed_between_push_and_ack_resends_without_doubling() {
    let (mut s, proxy) = setup_with_proxy("");
    s.agent.wait_synced();
    proxy.set(Fault::DropResponse);
    for i in 0..3 {
        s.agent.sell(&format!("K-{i}"), Some(CARD), 20_000, 0);
    }
    wait_for(Duration::from_secs(30), "HQ to commit the push", || {
        (proxy.responses_dropped() >= 1 && hq_balance(&s.server, &s.token, CARD)["balance"] == 30)
            .then_some(())
    });
    s.agent.kill9();
    proxy.set(Fault::Pass);
    s.agent.restart();
    s.agent.wait_synced();
    assert_eq!(hq_balance(&s.server, &s.token, CARD)["balance"], 30);
    assert_eq!(s.agent.card(CARD)["balance"], 30);
    s.server.assert_verify();
}

#[test]
fn a_server_killed_mid_backlog_loses_and_doubles_nothing() {
    let (mut s, proxy) = setup_with_proxy("batch_size = 20\n");
    proxy.set(Fault::Refuse);
    let sales = 300;
    for i in 0..sales {
        s.agent.sell(&format!("B-{i}"), Some(CARD), 2_000, 0); // +1 each
    }
    proxy.set(Fault::Delay(5));
    wait_for(
        Duration::from_secs(60),
        "the backlog to start draining",
        || {
            let acked = s.agent.health()["acked_through"].as_i64().unwrap();
            (acked > 0).then_some(())
        },
    );
    s.server.kill9();
    s.server.restart();
    proxy.set(Fault::Pass);
    s.agent.wait_synced();
    assert_eq!(hq_balance(&s.server, &s.token, CARD)["balance"], sales);
    s.server.assert_verify();
}

#[test]
fn a_bad_token_is_refused_and_nothing_is_applied_until_it_is_fixed() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("hq"), "");
    let token = server.add_terminal("store-1", "till-1");
    let adir = dir.path().join("till-1");
    let mut agent = Agent::start(
        &adir,
        &sync_config(
            &adir,
            "store-1",
            "till-1",
            &server.base,
            "lt_forged-token",
            "",
        ),
    );
    agent.sell("T-1", Some(CARD), 20_000, 0);
    wait_for(Duration::from_secs(30), "the sync error to show", || {
        let h = agent.health();
        let err = h["last_sync_error"].as_str().unwrap_or("").to_owned();
        (h["online"] == false && err.contains("401")).then_some(())
    });
    assert_eq!(hq_balance(&server, &token, CARD)["balance"], 0);
    agent.stop();
    std::fs::write(adir.join("terminal.token"), &token).unwrap();
    agent.restart();
    agent.wait_synced();
    assert_eq!(hq_balance(&server, &token, CARD)["balance"], 10);
    server.assert_verify();
}

#[test]
fn tls_with_the_right_ca_syncs_and_a_wrong_ca_is_refused() {
    let dir = temp_dir();
    let pki = e2e::tls::generate(dir.path(), "hq");
    let other = e2e::tls::generate(dir.path(), "other");
    let server = Server::start(
        &dir.path().join("hq"),
        &format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            pki.cert.display(),
            pki.key.display()
        ),
    );
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let token = server.add_terminal("store-1", "till-1");
    let good_dir = dir.path().join("good");
    let good = Agent::start(
        &good_dir,
        &sync_config(
            &good_dir,
            "store-1",
            "till-1",
            &server.base,
            &token,
            &format!("ca_file = \"{}\"\n", pki.ca.display()),
        ),
    );
    good.sell("G-1", Some(CARD), 20_000, 0);
    good.wait_synced();

    let token2 = server.add_terminal("store-1", "till-2");
    let bad_dir = dir.path().join("bad");
    let bad = Agent::start(
        &bad_dir,
        &sync_config(
            &bad_dir,
            "store-1",
            "till-2",
            &server.base,
            &token2,
            &format!("ca_file = \"{}\"\n", other.ca.display()),
        ),
    );
    bad.sell("B-1", Some(CARD), 20_000, 0);
    wait_for(
        Duration::from_secs(30),
        "the certificate to be refused",
        || {
            let h = bad.health();
            let err = h["last_sync_error"].as_str().unwrap_or("").to_lowercase();
            (h["online"] == false && err.contains("certificate")).then_some(())
        },
    );
    assert_eq!(bad.health()["queue_depth"], 1);
    server.assert_verify();
}

#[test]
fn two_stores_see_each_others_effect_on_a_shared_card() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("hq"), "");
    let t1 = server.add_terminal("store-1", "till-1");
    let t2 = server.add_terminal("store-2", "till-1");
    let (d1, d2) = (dir.path().join("s1"), dir.path().join("s2"));
    let a = Agent::start(
        &d1,
        &sync_config(&d1, "store-1", "till-1", &server.base, &t1, ""),
    );
    let b = Agent::start(
        &d2,
        &sync_config(&d2, "store-2", "till-1", &server.base, &t2, ""),
    );
    a.sell("A-1", Some(CARD), 200_000, 0); // +100 in store 1
    a.wait_synced();
    // Store 2 has never seen the card: it asks HQ live.
    assert_eq!(b.card(CARD)["balance"], 100);
    let (_, commit) = b.sell("B-1", Some(CARD), 100_000, 40); // -40 +48 in store 2
    assert_eq!(commit.status, 200, "{}", commit.text);
    b.wait_synced();
    let expected = 100 - 40 + commit.body["accrued_points"].as_i64().unwrap();
    // Store 1 learns it from its change feed (the card was seen there).
    a.wait_card(CARD, "store 1 to see store 2's sale", |v| {
        v["balance"] == expected
    });
    assert_eq!(hq_balance(&server, &t1, CARD)["balance"], expected);
    server.assert_verify();
}

#[test]
fn pending_points_mature_and_unspent_points_expire_with_the_hq_job() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("hq"), "");
    server.set_rules("version = 0\npending_days = 14\nexpiry_days = 30\n");
    let token = server.add_terminal("store-1", "till-1");
    let adir = dir.path().join("till");
    let agent = Agent::start(
        &adir,
        &sync_config(&adir, "store-1", "till-1", &server.base, &token, ""),
    );
    wait_for(
        Duration::from_secs(30),
        "the agent to get the rules",
        || (agent.health()["rules_version"] == 1).then_some(()),
    );
    agent.sell("P-1", Some(CARD), 100_000, 0); // +50 pending
    agent.wait_synced();
    let v = agent.card(CARD);
    assert_eq!(
        (
            v["balance"].as_i64(),
            v["pending"].as_i64(),
            v["available"].as_i64()
        ),
        (Some(50), Some(50), Some(0))
    );
    let refused = agent.post("/v1/sales", &sale_body("P-2", Some(CARD), 10_000, 1));
    assert_eq!(refused.code(), "insufficient_points");

    let in_days = |d: i64| {
        (time::OffsetDateTime::now_utc() + time::Duration::days(d))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    server.admin_ok(&["jobs", "run", "--now", &in_days(15)]);
    agent.wait_card(CARD, "the points to mature", |v| {
        v["available"] == 50 && v["pending"] == 0
    });
    server.admin_ok(&["jobs", "run", "--now", &in_days(31)]);
    agent.wait_card(CARD, "the points to expire", |v| v["balance"] == 0);
    server.assert_verify();
}

#[test]
fn offline_caps_hold_while_hq_is_down() {
    let (s, proxy) = setup_with_proxy(
        "[offline]\nredemption = \"caps\"\nmax_redeem_per_card_per_day = 1000\nmax_redeem_per_terminal_per_day = 1200\n\
         max_redeem_per_receipt = 500\nmax_consecutive_per_card = 3\n",
    );
    s.agent.sell("F-1", Some(CARD), 4_000_000, 0); // +2000
    s.agent.sell("F-2", Some(CARD_B), 4_000_000, 0); // +2000
    s.agent.wait_synced();
    s.agent.card(CARD);
    s.agent.card(CARD_B);
    proxy.set(Fault::Blackhole);

    let try_redeem = |receipt: &str, card: &str, points: i64| {
        s.agent.post(
            "/v1/sales",
            &sale_body(receipt, Some(card), 1_000_000, points),
        )
    };
    let r = try_redeem("O-1", CARD, 600);
    assert_eq!(
        (r.status, r.code()),
        (422, "offline_receipt_cap"),
        "{}",
        r.text
    );
    let mut card_delta = 0;
    for i in 0..2 {
        let r = try_redeem(&format!("O-ok-{i}"), CARD, 500);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["offline"], true);
        let c = s
            .agent
            .post(&format!("/v1/sales/O-ok-{i}/commit"), &json!({}));
        assert_eq!(c.status, 200);
        card_delta += c.body["accrued_points"].as_i64().unwrap() - 500;
    }
    let r = try_redeem("O-2", CARD, 1);
    assert_eq!(
        (r.status, r.code()),
        (422, "offline_card_daily_cap"),
        "{}",
        r.text
    );
    let r = try_redeem("O-3", CARD_B, 200);
    assert_eq!(r.status, 200, "{}", r.text);
    let r = try_redeem("O-4", CARD_B, 1);
    assert_eq!(
        (r.status, r.code()),
        (422, "offline_terminal_daily_cap"),
        "{}",
        r.text
    );
    // Accrual is never limited.
    let (_, c) = s.agent.sell("O-5", Some(CARD), 10_000, 0);
    assert_eq!(c.status, 200);
    card_delta += c.body["accrued_points"].as_i64().unwrap();
    let quote = s.agent.post("/v1/quote", &json!({"card": CARD, "lines": [{"sku": "a", "category": "g", "amount_minor": 100_000, "qty": 1}]}));
    assert_eq!(quote.body["offline"], true);
    assert_eq!(quote.body["max_redeem_points"], 0);

    proxy.set(Fault::Pass);
    assert_eq!(s.agent.post("/v1/sales/O-3/cancel", &json!({})).status, 200);
    s.agent.wait_synced();
    assert_eq!(
        hq_balance(&s.server, &s.token, CARD)["balance"],
        2000 + card_delta
    );
    s.server.assert_verify();
}

#[test]
fn no_offline_redemption_once_hq_has_been_away_longer_than_max_offline_hours() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("hq"), "");
    let token = server.add_terminal("store-1", "till-1");
    let proxy = Proxy::start(server.base.trim_start_matches("http://"));
    let adir = dir.path().join("till");
    let config = sync_config(&adir, "store-1", "till-1", &proxy.url(), &token, CAPS_MODE);
    let mut agent = Agent::start(&adir, &config);
    agent.sell("H-1", Some(CARD), 200_000, 0);
    agent.wait_synced();
    agent.card(CARD);
    proxy.set(Fault::Refuse);
    agent.stop();
    let later = Agent::start_with_env(&adir, &config, &[("LOYALTY_CLOCK_OFFSET_SECS", "90000")]);
    let r = later.post("/v1/sales", &sale_body("H-2", Some(CARD), 100_000, 10));
    assert_eq!(
        (r.status, r.code()),
        (422, "offline_too_long"),
        "{}",
        r.text
    );
    drop(later);
    server.assert_verify();
}

#[test]
fn a_card_blocked_at_hq_is_refused_at_the_till() {
    let s = setup("");
    s.agent.sell("X-1", Some(CARD), 20_000, 0);
    s.agent.wait_synced();
    s.server
        .admin_ok(&["card", "block", CARD, "--reason", "lost"]);
    s.agent
        .wait_card(CARD, "the block to arrive", |v| v["blocked"] == true);
    let r = s
        .agent
        .post("/v1/sales", &sale_body("X-2", Some(CARD), 20_000, 0));
    assert_eq!((r.status, r.code()), (422, "card_blocked"), "{}", r.text);
    s.server.admin_ok(&["card", "unblock", CARD]);
    s.agent
        .wait_card(CARD, "the unblock to arrive", |v| v["blocked"] == false);
    s.server.assert_verify();
}

#[test]
fn offline_redemptions_at_two_stores_overdraw_a_card_and_hq_reports_it() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("hq"), "");
    let t1 = server.add_terminal("store-1", "till-1");
    let t2 = server.add_terminal("store-2", "till-1");
    let (p1, p2) = (
        Proxy::start(server.base.trim_start_matches("http://")),
        Proxy::start(server.base.trim_start_matches("http://")),
    );
    let (d1, d2) = (dir.path().join("s1"), dir.path().join("s2"));
    let a = Agent::start(
        &d1,
        &sync_config(&d1, "store-1", "till-1", &p1.url(), &t1, CAPS_MODE),
    );
    let b = Agent::start(
        &d2,
        &sync_config(&d2, "store-2", "till-1", &p2.url(), &t2, CAPS_MODE),
    );
    a.sell("A-0", Some(CARD), 1_000_000, 0); // +500
    a.wait_synced();
    assert_eq!(b.card(CARD)["balance"], 500); // store 2 caches it
    p1.set(Fault::Refuse);
    p2.set(Fault::Refuse);
    let (_, ca) = a.sell("A-1", Some(CARD), 80_000, 400);
    let (_, cb) = b.sell("B-1", Some(CARD), 80_000, 400);
    assert_eq!((ca.status, cb.status), (200, 200));
    p1.set(Fault::Pass);
    p2.set(Fault::Pass);
    a.wait_synced();
    b.wait_synced();
    let expected = 500 - 800
        + ca.body["accrued_points"].as_i64().unwrap()
        + cb.body["accrued_points"].as_i64().unwrap();
    assert_eq!(hq_balance(&server, &t1, CARD)["balance"], expected);
    assert!(expected < 0);
    let report = server.admin_ok(&["report", "overdrafts"]);
    assert!(
        report.contains(&protocol::ids::masked(CARD)) && !report.contains(CARD),
        "the overdrawn card is named, masked: {report}"
    );
    server.assert_verify();
}

#[test]
fn a_replaced_journal_halts_sync_instead_of_touching_hq() {
    let mut s = setup("");
    s.agent.sell("J-1", Some(CARD), 20_000, 0);
    s.agent.sell("J-2", Some(CARD), 20_000, 0);
    s.agent.wait_synced();
    assert!(s.agent.stop());
    // The till's disk was replaced: a fresh journal under the same terminal.
    for f in ["journal.db", "journal.db-wal", "journal.db-shm"] {
        let _ = std::fs::remove_file(s.agent.dir.join(f));
    }
    s.agent.restart();
    s.agent.sell("J-3", Some(CARD), 20_000, 0);
    let halted = wait_for(Duration::from_secs(30), "sync to halt", || {
        s.agent.health()["sync_halted"].as_str().map(str::to_owned)
    });
    assert!(halted.contains("seq_conflict"), "{halted}");
    assert_eq!(hq_balance(&s.server, &s.token, CARD)["balance"], 20);
    let anomalies = s.server.admin_ok(&["report", "anomalies"]);
    assert!(anomalies.contains("till-1"), "{anomalies}");
    // A human clears it; the conflict is still there, so it halts again.
    let out = std::process::Command::new(e2e::bin("pos-agent"))
        .arg("sync-resume")
        .arg("--config")
        .arg(s.agent.dir.join("agent.toml"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("sync resumed"));
    s.server.assert_verify();
}

#[test]
fn a_till_that_never_reached_hq_says_never_synced_until_it_does() {
    let root = temp_dir();
    let mut server = Server::start(&root.path().join("hq"), "");
    let token = server.add_terminal("store-1", "till-1");
    server.kill9();
    let dir = root.path().join("till");
    let config = sync_config(&dir, "store-1", "till-1", &server.base, &token, "");
    let agent = Agent::start(&dir, &config);
    let health = agent.health();
    assert_eq!(
        (&health["mode"], &health["online"]),
        (&json!("never_synced"), &json!(false)),
        "{health}"
    );
    server.restart();
    wait_for(Duration::from_secs(60), "HQ's first answer", || {
        (agent.health()["mode"] == "synced").then_some(())
    });
}

#[test]
fn a_commit_answer_is_dated_by_the_sale_it_includes_not_by_hqs_older_figure() {
    let s = setup("");
    s.agent.sell("R-1", Some(CARD), 100_000, 0); // +50
    s.agent.wait_synced();
    let at = |v: &Value| {
        let text = v["as_of"].as_str().unwrap_or_else(|| panic!("as_of: {v}"));
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    };
    // Online, the card is read from HQ: its figure is dated by HQ.
    let before = s.agent.card(CARD);
    assert_eq!(before["balance"], 50);
    // A sale without points does not ask HQ, so HQ's cached figure stays the one
    // above; the answer's card includes the sale, so it is dated by the sale.
    let (_, commit) = s.agent.sell("R-2", Some(CARD), 20_000, 0); // +10
    assert_eq!(commit.status, 200, "{}", commit.text);
    let card = &commit.body["card"];
    assert_eq!(card["balance"], 60);
    assert!(at(card) > at(&before), "{card} is dated before {before}");
}

#[test]
fn points_above_the_rules_cap_are_refused_before_hq_so_the_receipt_can_ask_again() {
    let s = setup("");
    s.agent.sell("R-1", Some(CARD), 100_000, 0); // +50
    s.agent.wait_synced();
    // 50 % of 25.00 is 12 points: 20 is refused, and HQ holds nothing for R-2.
    let over = s
        .agent
        .post("/v1/sales", &sale_body("R-2", Some(CARD), 2_500, 20));
    assert_eq!(over.status, 422, "{}", over.text);
    assert_eq!(over.body["error"]["code"], "redeem_above_rule_cap");
    s.agent.wait_synced();
    // The same receipt with points within the cap.
    let (hold, commit) = s.agent.sell("R-2", Some(CARD), 2_500, 12);
    assert_eq!(hold.body["redeem_points"], 12, "{}", hold.text);
    assert_eq!(commit.status, 200, "{}", commit.text);
    s.agent.wait_synced();
    assert_eq!(hq_balance(&s.server, &s.token, CARD)["balance"], 38);
}
