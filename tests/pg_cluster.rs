//! HQ as a cluster: two `sync-server run` instances on one PostgreSQL database, four
//! real `pos-agent`s (two per instance) selling on ONE card at once, accruals and
//! redemptions, and one instance killed with SIGKILL and restarted mid-way. At the end
//! every agent is synced, HQ's balance of the card is exactly the sum of what the
//! tills acknowledged (accrued − redeemed, from the commit answers), and
//! `sync-server verify` passes against the database.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (`$LOYALTY_PG_ADMIN_URL`); the test makes its
//! own database and drops it. `SKIP_PG_TESTS=1` skips it.

#![allow(clippy::unwrap_used)]

use e2e::agent::{Agent, sale_body, sync_config};
use e2e::http;
use e2e::pg::TestDatabase;
use e2e::server::Server;
use e2e::temp_dir;
use serde_json::json;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const CARD: &str = "4006381333931";
const SALES_PER_TILL: usize = 60;

/// What one till's acknowledged sales did to the card.
#[derive(Debug, Default)]
struct Effect {
    accrued: i64,
    redeemed: i64,
    refused_redemptions: usize,
    /// The journal position of the last sale (HQ must acknowledge through it).
    last_seq: u64,
}

/// Sells `SALES_PER_TILL` receipts on the card: mostly accruals, every fourth one
/// redeeming a few points (refused redemptions are fine: the till said no).
fn sell(agent: &Agent, name: &str, done: &AtomicUsize) -> Effect {
    let mut effect = Effect::default();
    for i in 0..SALES_PER_TILL {
        let receipt = format!("{name}-{i}");
        let redeem = if i % 4 == 3 { 3 } else { 0 };
        let hold = agent.post(
            "/v1/sales",
            &sale_body(&receipt, Some(CARD), 20_000, redeem),
        );
        if hold.status == 422 {
            effect.refused_redemptions += 1;
            done.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        assert_eq!(hold.status, 200, "hold {receipt}: {}", hold.text);
        let commit = agent.post(&format!("/v1/sales/{receipt}/commit"), &json!({}));
        assert_eq!(commit.status, 200, "commit {receipt}: {}", commit.text);
        effect.accrued += commit.body["accrued_points"].as_i64().unwrap();
        effect.redeemed += commit.body["redeemed_points"].as_i64().unwrap();
        effect.last_seq = commit.body["entry_seq"].as_u64().unwrap();
        done.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(25));
    }
    effect
}

#[test]
fn two_instances_on_one_postgres_database_apply_every_sale_of_four_tills_once() {
    let Some(db) = TestDatabase::create_blocking().unwrap_or_else(|e| panic!("{e}")) else {
        eprintln!("SKIP_PG_TESTS=1: two-instance PostgreSQL test skipped");
        return;
    };
    let dir = temp_dir();
    // Both run the ledger job every second, so it races the pushes on both.
    let job = "[ledger]\njob_interval_secs = 1\n";
    let mut a = Server::start_on(&dir.path().join("hq-a"), db.url(), job);
    let b = Server::start_on(&dir.path().join("hq-b"), db.url(), job);
    let tills = ["till-1", "till-2", "till-3", "till-4"];
    let agents: Vec<Agent> = tills
        .iter()
        .enumerate()
        .map(|(i, till)| {
            let token = a.add_terminal("store-1", till);
            let hq = if i < 2 { &a.base } else { &b.base };
            let adir = dir.path().join(till);
            Agent::start(&adir, &sync_config(&adir, "store-1", till, hq, &token, ""))
        })
        .collect();

    let done = AtomicUsize::new(0);
    let killed = AtomicBool::new(false);
    let start = Barrier::new(agents.len() + 1);
    let effects: Vec<Effect> = std::thread::scope(|scope| {
        let workers: Vec<_> = agents
            .iter()
            .zip(tills)
            .map(|(agent, till)| {
                let (done, start) = (&done, &start);
                scope.spawn(move || {
                    start.wait();
                    sell(agent, till, done)
                })
            })
            .collect();
        start.wait();
        // Mid-way, instance A dies without a chance to finish anything; its tills
        // keep selling (offline) until it is back on the same address.
        while done.load(Ordering::SeqCst) < agents.len() * SALES_PER_TILL / 2 {
            std::thread::sleep(Duration::from_millis(10));
        }
        a.kill9();
        killed.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(2));
        a.restart();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert!(killed.load(Ordering::SeqCst));

    for agent in &agents {
        agent.wait_synced();
    }
    eprintln!("acknowledged by the tills: {effects:?}");
    let accrued: i64 = effects.iter().map(|e| e.accrued).sum();
    let redeemed: i64 = effects.iter().map(|e| e.redeemed).sum();
    assert!(accrued > 0 && redeemed > 0, "{effects:?}");
    let token = a.add_terminal("store-1", "auditor");
    for server in [&a, &b] {
        let r = http::get_hq(&format!("{}/v1/cards/{CARD}", server.base), &token);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.body["balance"]["balance"].as_i64(),
            Some(accrued - redeemed),
            "HQ balance vs acknowledged sales {effects:?}"
        );
    }
    a.assert_verify();
    // Every till's journal is at HQ through its last sale (verify checked it is
    // gap-free and held once).
    let list = b.admin_ok(&["terminal", "list"]);
    for (till, effect) in tills.iter().zip(&effects) {
        let row: Vec<&str> = list
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(till))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(row[4], effect.last_seq.to_string(), "{list}");
    }
}
