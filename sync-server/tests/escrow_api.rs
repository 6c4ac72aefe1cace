//! Points never spent twice, over real HTTP against the real binary on every
//! backend: reservations and their refusals, two HQ processes on one database racing
//! for the same points, reservations surviving `kill -9`, lease syncs, and app codes
//! used once everywhere.

// Test bodies are plain functions that `on_every_backend!` calls from each backend's
// #[test], so clippy's allow-unwrap-in-tests does not see them as tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, Server, client, code, get, push, push_body, sale, welcome};
use protocol::wire::{LeaseSyncResponse, LiveBalanceResponse, PROTOCOL_VERSION};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

const CARD: &str = "4006381333931";

fn in_minutes(m: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::minutes(m))
        .format(&Rfc3339)
        .unwrap()
}

async fn post(
    http: &reqwest::Client,
    server: &Server,
    path: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    let response = http
        .post(server.at(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn reservation(receipt: &str, points: i64) -> Value {
    json!({
        "protocol": PROTOCOL_VERSION,
        "card": CARD,
        "receipt_id": receipt,
        "points": points,
        "hold_expires_at": in_minutes(15),
    })
}

async fn reserve(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    receipt: &str,
    points: i64,
) -> (u16, Value) {
    post(
        http,
        server,
        "/v1/reservations",
        token,
        &reservation(receipt, points),
    )
    .await
}

async fn live(http: &reqwest::Client, server: &Server, token: &str) -> LiveBalanceResponse {
    get(http, &server.at(&format!("/v1/cards/{CARD}")), token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn reservations_hold_points_once_and_refusals_say_why(backend: Backend) {
    let hq = backend.hq();
    let t1 = hq.add_terminal("store-1", "till-1");
    let t2 = hq.add_terminal("store-2", "till-1");
    let server = hq.start();
    let http = client();
    let body = push_body("store-1", "till-1", vec![welcome(1, CARD, 100)]);
    assert_eq!(push(&http, &server, &t1, &body).await.0, 200);

    let ask = reservation("R-1", 40);
    let (status, first) = post(&http, &server, "/v1/reservations", &t1, &ask).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["reservation"]["points"], 40);
    assert_eq!(
        first["balance"]["reserved"], 0,
        "its own hold is not 'others'"
    );
    // The same ask again (a lost answer): the same reservation.
    let (status, again) = post(&http, &server, "/v1/reservations", &t1, &ask).await;
    assert_eq!(
        (status, &again["reservation"]),
        (200, &first["reservation"])
    );

    let (status, refused) = reserve(&http, &server, &t2, "R-1", 61).await;
    assert_eq!((status, code(&refused)), (409, "insufficient_points"));
    assert_eq!(refused["error"]["spendable"], 60);
    assert_eq!(live(&http, &server, &t2).await.balance.reserved.get(), 40);

    for bad in [
        reservation("R-2", 0),
        reservation("R-2", -5),
        json!({"protocol": PROTOCOL_VERSION, "card": CARD, "receipt_id": "R-2",
               "points": 1, "hold_expires_at": in_minutes(1), "extra": 1}),
        json!({"protocol": PROTOCOL_VERSION, "card": "123", "receipt_id": "R-2",
               "points": 1, "hold_expires_at": in_minutes(1)}),
        json!({"protocol": PROTOCOL_VERSION, "card": CARD, "receipt_id": "R-2",
               "points": 1, "hold_expires_at": in_minutes(3 * 24 * 60)}),
    ] {
        let (status, answer) = post(&http, &server, "/v1/reservations", &t2, &bad).await;
        assert_eq!((status, code(&answer)), (400, "bad_request"), "{bad}");
    }
    let (status, _) = post(
        &http,
        &server,
        "/v1/reservations",
        "not-a-token",
        &reservation("R-2", 1),
    )
    .await;
    assert_eq!(status, 401);

    // The till commits: its sale settles the hold; asking again is refused.
    let mut s = sale(2, CARD, 40);
    if let protocol::journal::EntryBody::Sale(sale) = &mut s.body {
        sale.receipt_id = protocol::ReceiptId::parse("R-1").unwrap();
    }
    let body = push_body("store-1", "till-1", vec![s]);
    assert_eq!(push(&http, &server, &t1, &body).await.0, 200);
    let (status, settled) = reserve(&http, &server, &t1, "R-1", 40).await;
    assert_eq!((status, code(&settled)), (409, "reservation_settled"));
    assert_eq!(live(&http, &server, &t2).await.balance.reserved.get(), 0);

    hq.ok(&["card", "block", CARD]);
    let (status, blocked) = reserve(&http, &server, &t2, "R-9", 1).await;
    assert_eq!((status, code(&blocked)), (409, "card_blocked"));
    let shown = hq.ok(&["card", "show", CARD]);
    assert!(shown.contains("reserved   0"), "{shown}");
    assert!(hq.ok(&["verify"]).contains("every balance matches"));
}

async fn two_hq_processes_on_one_database_grant_the_same_points_once(backend: Backend) {
    const ROUNDS: usize = 8;
    let hq = backend.hq();
    let t1 = hq.add_terminal("store-1", "till-1");
    let t2 = hq.add_terminal("store-2", "till-1");
    let (a, b) = (hq.start(), hq.start());
    let http = client();
    let body = push_body("store-1", "till-1", vec![welcome(1, CARD, 100)]);
    assert_eq!(push(&http, &a, &t1, &body).await.0, 200);
    for round in 0..ROUNDS {
        let receipt = format!("R-{round}");
        // Both ask for everything the card may spend, through different processes.
        let spendable = {
            let l = live(&http, &a, &t1).await.balance;
            l.balance.get() - l.pending.get() - l.reserved.get()
        };
        assert!(spendable > 0);
        let (x, y) = tokio::join!(
            reserve(&http, &a, &t1, &receipt, spendable),
            reserve(&http, &b, &t2, &receipt, spendable),
        );
        let statuses = [x.0, y.0];
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {x:?} {y:?}"
        );
        let loser = if x.0 == 200 { &y.1 } else { &x.1 };
        assert_eq!(code(loser), "insufficient_points");
        // The winner cancels, so the next round has the points again.
        let (winner, store) = if x.0 == 200 {
            (&t1, "store-1")
        } else {
            (&t2, "store-2")
        };
        let acked = live(&http, &a, winner).await.acked_through.get();
        let release = protocol::journal::JournalEntry {
            id: Uuid::new_v4(),
            seq: protocol::Seq(acked + 1),
            at: OffsetDateTime::now_utc(),
            rules_version: 0,
            body: protocol::journal::EntryBody::Release(protocol::journal::ReleaseEntry {
                receipt_id: protocol::ReceiptId::parse(&receipt).unwrap(),
                card: protocol::CardId::parse(CARD).unwrap(),
                points: protocol::Points(spendable),
                reason: protocol::journal::ReleaseReason::Cancelled,
            }),
        };
        let body = push_body(store, "till-1", vec![release]);
        let (status, answer) = push(&http, &b, winner, &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    assert!(hq.ok(&["verify"]).contains("every balance matches"));
}

async fn reservations_survive_kill_9_of_hq(backend: Backend) {
    let hq = backend.hq();
    let t1 = hq.add_terminal("store-1", "till-1");
    let t2 = hq.add_terminal("store-2", "till-1");
    let server = hq.start();
    let http = client();
    let body = push_body("store-1", "till-1", vec![welcome(1, CARD, 100)]);
    assert_eq!(push(&http, &server, &t1, &body).await.0, 200);
    assert_eq!(reserve(&http, &server, &t1, "R-1", 100).await.0, 200);
    // SIGKILL: no shutdown of any kind.
    let mut server = server;
    server.kill9();
    let server = hq.start();
    let (status, refused) = reserve(&http, &server, &t2, "R-1", 1).await;
    assert_eq!((status, code(&refused)), (409, "insufficient_points"));
    let (status, again) = reserve(&http, &server, &t1, "R-1", 100).await;
    assert_eq!(status, 200, "{again}");
    assert!(hq.ok(&["card", "show", CARD]).contains("reserved   100"));
    // A week after the hold's deadline HQ releases it on its own.
    let week = (OffsetDateTime::now_utc() + time::Duration::days(8))
        .format(&Rfc3339)
        .unwrap();
    let ran = hq.ok(&["jobs", "run", "--now", &week]);
    assert!(ran.contains("1 abandoned reservations released"), "{ran}");
    assert!(hq.ok(&["card", "show", CARD]).contains("reserved   0"));
}

fn lease_sync(epoch: u64, through: u64, max_total: i64) -> Value {
    json!({
        "protocol": PROTOCOL_VERSION,
        "epoch": epoch,
        "through_seq": through,
        "held": [],
        "max_total": max_total,
        "want": [{"card": CARD, "max_points": 1000}],
    })
}

async fn leases_are_granted_in_order_after_the_push_and_bounded(backend: Backend) {
    let hq = backend.hq_with_config("[ledger]\nlease_hours = 2\n");
    let t1 = hq.add_terminal("store-1", "till-1");
    let t2 = hq.add_terminal("store-2", "till-1");
    let server = hq.start();
    let http = client();
    let body = push_body("store-1", "till-1", vec![welcome(1, CARD, 100)]);
    assert_eq!(push(&http, &server, &t1, &body).await.0, 200);

    let (status, first) = post(
        &http,
        &server,
        "/v1/sync/leases",
        &t1,
        &lease_sync(1, 2, 1_000),
    )
    .await;
    assert_eq!((status, code(&first)), (409, "push_first"));
    let (status, granted) = post(
        &http,
        &server,
        "/v1/sync/leases",
        &t1,
        &lease_sync(1, 1, 1_000),
    )
    .await;
    assert_eq!(status, 200, "{granted}");
    let granted: LeaseSyncResponse = serde_json::from_value(granted).unwrap();
    assert_eq!(granted.leases.len(), 1);
    assert_eq!(granted.leases[0].points.get(), 50);
    let hours = (granted.leases[0].expires_at - OffsetDateTime::now_utc()).whole_minutes();
    assert!((100..=120).contains(&hours), "{hours} minutes");
    let (status, stale) = post(
        &http,
        &server,
        "/v1/sync/leases",
        &t1,
        &lease_sync(1, 1, 1_000),
    )
    .await;
    assert_eq!((status, code(&stale)), (409, "stale_epoch"));
    let (status, none) = post(
        &http,
        &server,
        "/v1/sync/leases",
        &t2,
        &lease_sync(1, 0, 1_000),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(none["leases"], json!([]));
    assert_eq!(live(&http, &server, &t2).await.balance.leased.get(), 50);
    let (status, refused) = reserve(&http, &server, &t2, "R-1", 51).await;
    assert_eq!(
        (status, refused["error"]["spendable"].clone()),
        (409, json!(50))
    );
    let mut bad = lease_sync(2, 1, -1);
    let (status, _) = post(&http, &server, "/v1/sync/leases", &t1, &bad).await;
    assert_eq!(status, 400);
    bad = lease_sync(2, 1, 10);
    bad["want"][0]["max_points"] = json!(-1);
    let (status, _) = post(&http, &server, "/v1/sync/leases", &t1, &bad).await;
    assert_eq!(status, 400);
    assert!(hq.ok(&["card", "show", CARD]).contains("leased     50"));
    assert!(hq.ok(&["verify"]).contains("every balance matches"));
}

fn token_use(scan: Uuid) -> Value {
    json!({
        "protocol": PROTOCOL_VERSION,
        "token_id": "0123456789abcdef0123456789abcdef",
        "card": CARD,
        "expires_at": in_minutes(1),
        "scan_id": scan,
    })
}

async fn an_app_code_is_used_once_at_any_till_and_a_retry_is_answered(backend: Backend) {
    let hq = backend.hq();
    let t1 = hq.add_terminal("store-1", "till-1");
    let t2 = hq.add_terminal("store-2", "till-1");
    let (a, b) = (hq.start(), hq.start());
    let http = client();
    let scan = Uuid::new_v4();
    let (status, answer) = post(&http, &a, "/v1/tokens/use", &t1, &token_use(scan)).await;
    assert_eq!(status, 200, "{answer}");
    // The same scan retried (a lost answer), through the other process: the same use.
    assert_eq!(
        post(&http, &b, "/v1/tokens/use", &t1, &token_use(scan))
            .await
            .0,
        200
    );
    let (status, replay) = post(&http, &b, "/v1/tokens/use", &t2, &token_use(scan)).await;
    assert_eq!((status, code(&replay)), (409, "token_used"));
    let (status, rescan) = post(&http, &a, "/v1/tokens/use", &t1, &token_use(Uuid::new_v4())).await;
    assert_eq!((status, code(&rescan)), (409, "token_used"));
    let mut bad = token_use(scan);
    bad["token_id"] = json!("not hex");
    assert_eq!(post(&http, &a, "/v1/tokens/use", &t1, &bad).await.0, 400);
}

on_every_backend!(
    reservations_hold_points_once_and_refusals_say_why,
    two_hq_processes_on_one_database_grant_the_same_points_once,
    reservations_survive_kill_9_of_hq,
    leases_are_granted_in_order_after_the_push_and_bounded,
    an_app_code_is_used_once_at_any_till_and_a_retry_is_answered,
);
