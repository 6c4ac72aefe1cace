//! Points never spent twice, end to end: real `pos-agent`s and a real `sync-server`
//! (SQLite, and PostgreSQL unless `SKIP_PG_TESTS=1`). Online, HQ authorises every
//! redemption under the card's lock; holds cancelled or expired release their
//! reservation through the journal; `sync-server verify` passes at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::agent::{Agent, sale_body, sync_config};
use e2e::server::Server;
use e2e::temp_dir;
use serde_json::json;
use std::path::Path;
use std::sync::Barrier;
use testkit::Backend;
use testkit::hq::Database;

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
    let token = server.add_terminal(store, till);
    let dir = root.join(format!("{store}-{till}"));
    Agent::start(
        &dir,
        &sync_config(&dir, store, till, &server.base, &token, ""),
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

testkit::on_every_backend!(blocking:
    two_tills_racing_for_the_same_points_exactly_one_wins,
    a_cancelled_hold_gives_its_points_back_to_every_till,
);
