//! Points never spent twice, end to end: real `pos-agent`s and a real `sync-server`
//! (SQLite, and PostgreSQL unless `SKIP_PG_TESTS=1`). Online, HQ authorises every
//! redemption under the card's lock; holds cancelled or expired release their
//! reservation through the journal; `sync-server verify` passes at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::agent::{Agent, enrolled, sale_body, sync_config};
use e2e::proxy::{Fault, Proxy};
use e2e::scanner::{
    Listener, Scanner, assert_scan, scanner_toml, scans_counted, wait_all_connected,
};
use e2e::server::Server;
use e2e::{temp_dir, wait_for};
use serde_json::json;
use std::path::Path;
use std::sync::Barrier;
use std::time::Duration;
use testkit::Backend;
use testkit::hq::Database;
use testkit::hq::last_line;

/// Points one card holds in each round: what a 200.00 receipt accrues.
const POINTS: i64 = 100;
const EARNING_RECEIPT_MINOR: i64 = 200_000;
/// A receipt on which 100 points may pay (at most half of it).
const SPENDING_RECEIPT_MINOR: i64 = 30_000;

/// An HQ on `backend` (its database lives as long as it).
struct Hq {
    server: Server,
    _db: Database,
}

fn hq(dir: &Path, backend: Backend) -> Hq {
    std::fs::create_dir_all(dir).unwrap();
    let db = Database::create(backend, dir);
    Hq {
        server: Server::start_on(dir, &db.url(), ""),
        _db: db,
    }
}

/// An agent of `store`/`till` syncing straight with `server`.
fn till(root: &Path, server: &Server, store: &str, till: &str) -> Agent {
    till_with(root, server, store, till, "")
}

/// [`till`] with `extra` TOML in its config.
fn till_with(root: &Path, server: &Server, store: &str, till: &str, extra: &str) -> Agent {
    enrolled(
        &root.join(format!("{store}-{till}")),
        server,
        store,
        till,
        extra,
    )
}

/// Two tills of two stores race to redeem the same 100 points, round after round
/// (a new card each round): exactly one wins every time, the loser is told there are
/// not enough points, and HQ never goes below zero.
fn two_tills_racing_for_the_same_points_exactly_one_wins(backend: Backend) {
    let dir = temp_dir();
    let hq = hq(&dir.path().join("hq"), backend);
    let tills = [
        till(dir.path(), &hq.server, "store-1", "till-1"),
        till(dir.path(), &hq.server, "store-2", "till-1"),
    ];
    // A terminal of its own sees every till's reservations (HQ shows the others').
    let audit = hq.server.add_terminal("audit", "hq-view");
    for round in 0..4 {
        let card = format!("77000000{round:02}");
        tills[0].sell(&format!("E-{round}"), Some(&card), EARNING_RECEIPT_MINOR, 0);
        tills[0].wait_synced();
        let barrier = Barrier::new(2);
        let answers: Vec<_> = std::thread::scope(|s| {
            let racers: Vec<_> = tills
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let (barrier, card) = (&barrier, &card);
                    s.spawn(move || {
                        barrier.wait();
                        t.post(
                            "/v1/sales",
                            &sale_body(
                                &format!("R-{round}-{i}"),
                                Some(card),
                                SPENDING_RECEIPT_MINOR,
                                POINTS,
                            ),
                        )
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let won: Vec<usize> = (0..2).filter(|&i| answers[i].status == 200).collect();
        assert_eq!(won.len(), 1, "round {round}: {answers:?}");
        let (winner, loser) = (won[0], 1 - won[0]);
        assert_eq!(answers[winner].body["offline"], false);
        assert_eq!(
            (answers[loser].status, answers[loser].code()),
            (422, "insufficient_points"),
            "round {round}: {}",
            answers[loser].text
        );
        let commit =
            tills[winner].post(&format!("/v1/sales/R-{round}-{winner}/commit"), &json!({}));
        assert_eq!(commit.status, 200, "{}", commit.text);
        tills[winner].wait_synced();
        let balance = hq.server.balance(&audit, &card);
        assert!(balance["balance"].as_i64().unwrap() >= 0, "{balance}");
        assert_eq!(balance["reserved"], 0, "{balance}");
    }
    hq.server.assert_verify();
}

/// A hold cancelled gives its points back at HQ at once (the release entry is pushed),
/// so another till may spend them; a committed one keeps them spent.
fn a_cancelled_hold_gives_its_points_back_to_every_till(backend: Backend) {
    let dir = temp_dir();
    let hq = hq(&dir.path().join("hq"), backend);
    let a = till(dir.path(), &hq.server, "store-1", "till-1");
    let b = till(dir.path(), &hq.server, "store-2", "till-1");
    let card = "7700000100";
    a.sell("E-1", Some(card), EARNING_RECEIPT_MINOR, 0);
    a.wait_synced();
    let hold = a.post(
        "/v1/sales",
        &sale_body("C-1", Some(card), SPENDING_RECEIPT_MINOR, POINTS),
    );
    assert_eq!(hold.status, 200, "{}", hold.text);
    let refused = b.post(
        "/v1/sales",
        &sale_body("C-2", Some(card), SPENDING_RECEIPT_MINOR, 1),
    );
    assert_eq!(
        (refused.status, refused.code()),
        (422, "insufficient_points"),
        "{}",
        refused.text
    );
    assert_eq!(a.post("/v1/sales/C-1/cancel", &json!({})).status, 200);
    a.wait_synced();
    let hold = b.post(
        "/v1/sales",
        &sale_body("C-3", Some(card), SPENDING_RECEIPT_MINOR, POINTS),
    );
    assert_eq!(hold.status, 200, "{}", hold.text);
    let commit = b.post("/v1/sales/C-3/commit", &json!({}));
    assert_eq!(commit.status, 200, "{}", commit.text);
    b.wait_synced();
    let refused = a.post(
        "/v1/sales",
        &sale_body("C-4", Some(card), SPENDING_RECEIPT_MINOR, POINTS),
    );
    assert_eq!(
        (refused.status, refused.code()),
        (422, "insufficient_points"),
        "{}",
        refused.text
    );
    hq.server.assert_verify();
}

/// A hold's reservation survives `kill -9` of HQ and of the till: after both restart,
/// HQ still refuses the reserved points to another till, and the till commits the hold
/// from its journal; HQ captures the reservation exactly once.
fn a_reservation_survives_kill_9_of_hq_and_till(backend: Backend) {
    let dir = temp_dir();
    let mut hq = hq(&dir.path().join("hq"), backend);
    // No allowances (caps mode): the whole hold is reserved at HQ, whenever the
    // till's lease cycle runs.
    let caps = "[offline]\nredemption = \"caps\"\n";
    let mut a = till_with(dir.path(), &hq.server, "store-1", "till-1", caps);
    let b = till_with(dir.path(), &hq.server, "store-2", "till-1", caps);
    let audit = hq.server.add_terminal("audit", "hq-view");
    let card = "7700000200";
    a.sell("E-1", Some(card), EARNING_RECEIPT_MINOR, 0);
    a.wait_synced();
    let hold = a.post(
        "/v1/sales",
        &sale_body("K-1", Some(card), SPENDING_RECEIPT_MINOR, POINTS),
    );
    assert_eq!(hold.status, 200, "{}", hold.text);
    assert_eq!(hold.body["offline"], false, "{}", hold.text);

    hq.server.kill9();
    hq.server.restart();
    assert_eq!(hq.server.balance(&audit, card)["reserved"], POINTS);
    let refused = b.post(
        "/v1/sales",
        &sale_body("K-2", Some(card), SPENDING_RECEIPT_MINOR, 1),
    );
    assert_eq!(
        (refused.status, refused.code()),
        (422, "insufficient_points"),
        "{}",
        refused.text
    );

    a.kill9();
    a.restart();
    let commit = a.post("/v1/sales/K-1/commit", &json!({}));
    assert_eq!(commit.status, 200, "{}", commit.text);
    a.wait_synced();
    // The 100 points are spent once; the paid part of the receipt earned its accrual.
    let balance = hq.server.balance(&audit, card);
    assert_eq!(
        (balance["balance"].as_i64(), balance["reserved"].as_i64()),
        (commit.body["accrued_points"].as_i64(), Some(0)),
        "{balance}"
    );
    hq.server.assert_verify();
}

/// Points a card holds for the allowance test: enough that three tills each get an
/// allowance (`max_redeem_per_card_per_day` below) within HQ's half-of-spendable share.
const LEASED_CARD_POINTS: i64 = 1_000;
const ALLOWANCE_PER_TILL: i64 = 200;

/// Three tills (two of one store, one of another) hold allowances of one card; all are
/// cut off from HQ and each spends offline as much as it can. Each serves exactly its
/// allowance and refuses the rest; once healed, HQ has applied every offline sale,
/// the card is never below zero, what is left is spendable online, and `verify` passes.
fn allowances_spent_offline_at_three_tills_never_overdraw(backend: Backend) {
    let dir = temp_dir();
    let hq = hq(&dir.path().join("hq"), backend);
    let audit = hq.server.add_terminal("audit", "hq-view");
    let upstream = hq.server.base.trim_start_matches("http://").to_owned();
    let offline = format!(
        "[offline]\nredemption = \"escrow\"\nlease_sync_secs = 10\n\
         max_redeem_per_card_per_day = {ALLOWANCE_PER_TILL}\n"
    );
    let tills: Vec<(Proxy, Agent)> = [
        ("store-1", "till-1"),
        ("store-1", "till-2"),
        ("store-2", "till-1"),
    ]
    .into_iter()
    .map(|(store, name)| {
        let proxy = Proxy::start(&upstream);
        let token = hq.server.add_terminal(store, name);
        let dir = dir.path().join(format!("{store}-{name}"));
        let agent = Agent::start(
            &dir,
            &sync_config(&dir, store, name, &proxy.url(), &token, &offline),
        );
        (proxy, agent)
    })
    .collect();
    let card = "7700000300";
    // The card earns its points at the first till, and is seen at every till (a
    // sale without points), which makes it a regular there: each till asks for an
    // allowance at its next lease sync.
    tills[0]
        .1
        .sell("E-1", Some(card), LEASED_CARD_POINTS * 2_000, 0);
    tills[0].1.wait_synced();
    for (i, (_, t)) in tills.iter().enumerate().skip(1) {
        t.sell(&format!("S-{i}"), Some(card), 100, 0);
        t.wait_synced();
    }
    let before = hq.server.balance(&audit, card);
    let earned = before["balance"].as_i64().unwrap() + before["pending"].as_i64().unwrap();
    assert!(earned >= LEASED_CARD_POINTS, "{earned}");
    // HQ grants at most half of the card's spendable points in allowances: 3 × 200
    // fits in half of 1,000 only for two tills and a part of the third.
    let leased_total = (earned / 2).min(ALLOWANCE_PER_TILL * 3);
    wait_for_leased(&hq.server, &audit, card, leased_total);
    // Offline, a till redeems no more than the card's figures it last pulled from
    // HQ's feed, whatever its allowance; a till whose pull after its own sale had not
    // run yet (a loaded machine) would quote nothing by "balance". Each till must
    // hold the card's figures before HQ goes away.
    for (i, (_, t)) in tills.iter().enumerate() {
        let journal = t.dir.join("journal.db");
        wait_for(
            Duration::from_secs(60),
            &format!("the card's figures in till {i}'s cache"),
            || (cached_balance_in(&journal, card) > 0).then_some(()),
        );
    }

    for (proxy, _) in &tills {
        proxy.set(Fault::Refuse);
    }
    for (_, t) in &tills {
        wait_for(Duration::from_secs(60), "the till to see HQ gone", || {
            (t.health()["online"] == false).then_some(())
        });
    }
    let (mut spent, mut accrued) = (0, 0);
    for (i, (_, t)) in tills.iter().enumerate() {
        // The quote names the allowance as what bounds the redemption.
        let quote = t.post(
            "/v1/quote",
            &json!({"card": card, "lines": [{"sku": "sku-1", "category": "grocery",
                "amount_minor": 1_000_000, "qty": 1}]}),
        );
        assert_eq!(quote.status, 200, "{}", quote.text);
        assert_eq!(quote.body["offline"], true, "{}", quote.text);
        let quoted = quote.body["max_redeem_points"].as_i64().unwrap();
        let expected_by = if quoted > 0 {
            "offline_allowance"
        } else {
            "offline_no_allowance"
        };
        assert_eq!(quote.body["limited_by"], expected_by, "{}", quote.text);
        // Ask for more than any allowance, then step down to what is left of it.
        let mut served = 0;
        for (n, ask) in [ALLOWANCE_PER_TILL + 1, ALLOWANCE_PER_TILL, 100, 50, 10, 1]
            .into_iter()
            .enumerate()
        {
            let receipt = format!("O-{i}-{n}");
            let r = t.post(
                "/v1/sales",
                &sale_body(&receipt, Some(card), ask * 1_000, ask),
            );
            if r.status == 200 {
                // A hold the till's own allowance covers needs no HQ, so the answer
                // may say "offline": false; what matters is that it was served.
                let commit = t.post(&format!("/v1/sales/{receipt}/commit"), &json!({}));
                assert_eq!(commit.status, 200, "{}", commit.text);
                served += ask;
                // Offline accrual is never limited: the paid part earns as usual.
                accrued += commit.body["accrued_points"].as_i64().unwrap();
            } else {
                assert_eq!(r.status, 422, "{}", r.text);
                assert!(
                    ["offline_allowance_short", "offline_no_allowance"].contains(&r.code()),
                    "{}",
                    r.text
                );
            }
        }
        assert!(served <= ALLOWANCE_PER_TILL, "till {i} served {served}");
        assert_eq!(served, quoted, "till {i}: the quote promised {quoted}");
        spent += served;
    }
    // Every point leased was spendable offline, and no more.
    assert_eq!(spent, leased_total);

    for (proxy, t) in &tills {
        proxy.set(Fault::Pass);
        t.wait_synced();
    }
    let balance = hq.server.balance(&audit, card);
    let held = balance["balance"].as_i64().unwrap() + balance["pending"].as_i64().unwrap();
    assert_eq!(held, earned - spent + accrued, "{balance}");
    assert!(balance["balance"].as_i64().unwrap() >= 0, "{balance}");
    hq.server.assert_verify();
}

/// Waits until HQ shows `points` of `card` leased to tills.
fn wait_for_leased(server: &Server, audit: &str, card: &str, points: i64) {
    wait_for(
        Duration::from_secs(60),
        "HQ to lease the card's points",
        || (server.balance(audit, card)["leased"].as_i64() == Some(points)).then_some(()),
    );
}

/// An app QR code is used once everywhere: scanned at a till of one store it is
/// accepted; the same code at a till of another store (still valid, never seen
/// there) is refused because HQ recorded its use, and it is never published there.
fn an_app_code_is_accepted_at_one_till_and_refused_at_every_other(backend: Backend) {
    let dir = temp_dir();
    let hq = hq(&dir.path().join("hq"), backend);
    hq.server.admin_ok(&["keys", "rotate"]);
    let mut scanners = Vec::new();
    let tills: Vec<Agent> = [("store-1", "till-1"), ("store-2", "till-1")]
        .into_iter()
        .map(|(store, name)| {
            let scanner = Scanner::plug();
            let extra = scanner_toml("front", &scanner.path, "aim_prefix = true\ndebounce_ms = 0");
            scanners.push(scanner);
            till_with(dir.path(), &hq.server, store, name, &extra)
        })
        .collect();
    for (i, t) in tills.iter().enumerate() {
        wait_all_connected(t);
        let journal = t.dir.join("journal.db");
        wait_for(
            Duration::from_secs(60),
            "HQ's signing key at the till",
            || (signing_keys_in(&journal) > 0).then_some(()),
        );
        assert_eq!(scans_counted(t, "front", "invalid"), 0, "till {i}");
    }
    let card = "4006381333931";
    let code = last_line(
        &hq.server
            .admin_ok(&["card", "token", card, "--ttl-secs", "300"]),
    )
    .to_owned();

    let first = Listener::connect(&tills[0]);
    scanners[0].scan(&format!("]Q1{code}"));
    assert_scan(&first.next(), "front", "qr", card);

    let second = Listener::connect(&tills[1]);
    scanners[1].scan(&format!("]Q1{code}"));
    wait_for(
        Duration::from_secs(60),
        "the code to be refused at the second till",
        || (scans_counted(&tills[1], "front", "invalid") == 1).then_some(()),
    );
    // The next scan at the second till is the first event it publishes.
    scanners[1].scan("]E05901234123457");
    assert_scan(&second.next(), "front", "ean13", "5901234123457");
    let log = tills[1].log();
    assert!(log.contains("used at another till"), "{log}");
    assert!(!log.contains(&code[4..40]), "a token in the log\n{log}");
}

/// Signing keys in the journal at `path` (read-only, beside the running agent).
/// A number the till journal at `path` answers to `sql` (one row, one column), or
/// 0 while the journal cannot be read or has no such row yet.
fn journal_number(path: &Path, sql: &str, params: impl rusqlite::Params) -> i64 {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row(sql, params, |r| r.get(0)).unwrap_or(0)
}

/// The balance of `card` in the till's cache of HQ's figures.
fn cached_balance_in(path: &Path, card: &str) -> i64 {
    journal_number(path, "SELECT balance FROM cards WHERE card = ?1", [card])
}

fn signing_keys_in(path: &Path) -> i64 {
    journal_number(path, "SELECT count(*) FROM signing_keys", [])
}

testkit::on_every_backend!(blocking:
    two_tills_racing_for_the_same_points_exactly_one_wins,
    a_cancelled_hold_gives_its_points_back_to_every_till,
    a_reservation_survives_kill_9_of_hq_and_till,
    allowances_spent_offline_at_three_tills_never_overdraw,
    an_app_code_is_accepted_at_one_till_and_refused_at_every_other,
);
