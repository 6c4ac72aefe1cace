//! Invariant 2: every entry takes effect at HQ exactly once, whatever the retries, and
//! with two server instances on one database.

// Test bodies are plain functions that `on_every_backend!` calls from each backend's
// #[test], so clippy's allow-unwrap-in-tests does not see them as tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, client, push, push_body, sale};
use protocol::wire::LiveBalanceResponse;

const CARD: &str = "4006381333931";

async fn the_same_batch_sent_to_two_instances_on_one_database_is_applied_once(backend: Backend) {
    let hq = backend.hq();
    let token = hq.add_terminal("store-1", "till-1");
    let a = hq.start();
    let b = hq.start();
    let http = client();
    let mut seq = 0;
    for _ in 0..10 {
        let entries: Vec<_> = (0..20)
            .map(|_| {
                seq += 1;
                sale(seq, CARD, 0)
            })
            .collect();
        let body = push_body("store-1", "till-1", entries);
        let (ra, rb) = tokio::join!(
            push(&http, &a, &token, &body),
            push(&http, &b, &token, &body)
        );
        assert_eq!((ra.0, rb.0), (200, 200), "{ra:?} {rb:?}");
        let applied = ra.1["applied"].as_u64().unwrap() + rb.1["applied"].as_u64().unwrap();
        let duplicates =
            ra.1["duplicates"].as_u64().unwrap() + rb.1["duplicates"].as_u64().unwrap();
        assert_eq!((applied, duplicates), (20, 20));
        assert_eq!(ra.1["acked_through"], rb.1["acked_through"]);
    }
    let live: LiveBalanceResponse = common::get(&http, &a.at(&format!("/v1/cards/{CARD}")), &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(live.acked_through.get(), 200);
    assert_eq!(live.balance.balance.get(), 200 * 5);
    hq.ok(&["verify"]);
}

async fn many_terminals_pushing_at_once_while_the_job_runs_stay_consistent(backend: Backend) {
    let hq = backend.hq_with_config("[ledger]\njob_interval_secs = 1\n");
    let server = hq.start();
    let http = client();
    let tokens: Vec<String> = (1..=6)
        .map(|i| hq.add_terminal("store-1", &format!("till-{i}")))
        .collect();
    let mut tasks = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let http = http.clone();
        let url = server.url.clone();
        tasks.push(tokio::spawn(async move {
            let terminal = format!("till-{}", i + 1);
            for round in 0..5u64 {
                let entries = (1..=10)
                    .map(|k| {
                        let card = format!("40063813339{:02}", (k + round) % 7);
                        sale(
                            round * 10 + k,
                            &card,
                            if k.is_multiple_of(3) { 2 } else { 0 },
                        )
                    })
                    .collect();
                let body = push_body("store-1", &terminal, entries);
                let response = http
                    .post(format!("{url}/v1/sync/push"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    hq.ok(&["jobs", "run"]);
    let verify = hq.ok(&["verify"]);
    assert!(
        verify.contains("verified 7 cards and 6 terminals"),
        "{verify}"
    );
}

on_every_backend!(
    the_same_batch_sent_to_two_instances_on_one_database_is_applied_once,
    many_terminals_pushing_at_once_while_the_job_runs_stay_consistent,
);
