//! The quarantine through the real binary: a push with an entry HQ cannot apply is
//! answered so the till moves on, `report quarantine` lists the entry, and
//! `quarantine retry` applies it once after the cause is gone.

// Test bodies are plain functions that `on_every_backend!` calls from each backend's
// #[test], so clippy's allow-unwrap-in-tests does not see them as tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, client, push, push_body, sale};
use protocol::journal::{EntryBody, JournalEntry};
use protocol::limits::Limits;
use protocol::{Money, Points};

const CARD: &str = "4006381333931";
const OTHER_CARD: &str = "4006381333948";

/// A sale now on `card` that accrues `accrued` and redeems `redeemed` points.
fn points(seq: u64, card: &str, redeemed: i64, accrued: i64) -> JournalEntry {
    let mut e = sale(seq, card, 0);
    if let EntryBody::Sale(s) = &mut e.body {
        s.sale.accrued_points = Points(accrued);
        s.sale.redeemed_points = Points(redeemed);
        s.sale.lines[0].accrued_points = Points(accrued);
        s.sale.lines[0].redeemed_points = Points(redeemed);
    }
    e
}

on_every_backend!(
    a_poisoned_entry_is_acknowledged_listed_and_blocks_nothing,
    quarantine_retry_applies_an_entry_once_after_the_card_has_room,
);

async fn a_poisoned_entry_is_acknowledged_listed_and_blocks_nothing(backend: Backend) {
    let hq = backend.hq();
    let token = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let http = client();
    let mut poisoned = sale(2, CARD, 0);
    if let EntryBody::Sale(s) = &mut poisoned.body {
        s.sale.total_minor = Money(i64::MAX);
    }
    let body = push_body(
        "store-1",
        "till-1",
        vec![sale(1, OTHER_CARD, 0), poisoned, sale(3, OTHER_CARD, 0)],
    );
    let (status, answer) = push(&http, &server, &token, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["acked_through"], 3, "{answer}");
    assert_eq!(answer["applied"], 2, "{answer}");
    assert_eq!(answer["quarantined"], serde_json::json!([2]), "{answer}");
    // The till's next entries go on.
    let body = push_body("store-1", "till-1", vec![sale(4, CARD, 0)]);
    let (status, answer) = push(&http, &server, &token, &body).await;
    assert_eq!((status, answer["acked_through"].as_u64()), (200, Some(4)));
    assert!(answer.get("quarantined").is_none(), "{answer}");

    let report = hq.ok(&["report", "quarantine"]);
    let line = report.lines().find(|l| l.contains("seq 2")).unwrap();
    assert!(line.starts_with("#1 "), "{report}");
    assert!(line.contains("store-1/till-1"), "{report}");
    assert!(line.contains("card ****3931"), "{report}");
    assert!(!report.contains(CARD), "card numbers are masked: {report}");
    assert!(line.contains("QUARANTINED"), "{report}");
    assert!(line.contains("out_of_limits"), "{report}");
    assert!(line.contains("max_receipt_minor"), "{report}");
    // The figure is what it is: a retry cannot apply it and changes nothing.
    let retry = hq.run(&["quarantine", "retry", "1"]);
    assert!(!retry.status.success());
    assert!(String::from_utf8_lossy(&retry.stdout).contains("still quarantined"));
    let unknown = hq.run(&["quarantine", "retry", "7"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no quarantined entry 7"));
    assert!(hq.ok(&["verify"]).contains("every balance matches"));
}

async fn quarantine_retry_applies_an_entry_once_after_the_card_has_room(backend: Backend) {
    let hq = backend.hq();
    let token = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let http = client();
    let most = Limits::CEILING.max_entry_points.get();
    // Ten of the largest accruals fill the card to its maximum; the eleventh would
    // lift it past.
    let entries: Vec<JournalEntry> = (1..=11).map(|seq| points(seq, CARD, 0, most)).collect();
    let (status, answer) = push(
        &http,
        &server,
        &token,
        &push_body("store-1", "till-1", entries),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["quarantined"], serde_json::json!([11]), "{answer}");
    assert!(
        hq.ok(&["report", "quarantine"])
            .contains("max_card_balance_points"),
        "names the limit"
    );
    // The customer spends points at the till; now the entry fits.
    let spend = push_body("store-1", "till-1", vec![points(12, CARD, most, 0)]);
    assert_eq!(push(&http, &server, &token, &spend).await.0, 200);
    let applied = hq.ok(&["quarantine", "retry", "1"]);
    assert!(
        applied.contains("quarantined entry #1: applied"),
        "{applied}"
    );
    let again = hq.ok(&["quarantine", "retry", "1"]);
    assert!(again.contains("already applied"), "{again}");
    let card = hq.ok(&["card", "show", CARD]);
    let balance = Limits::CEILING.max_card_balance_points.get();
    assert!(card.contains(&balance.to_string()), "{card}");
    assert!(
        hq.ok(&["report", "quarantine"])
            .contains("applied by a retry")
    );
    assert!(hq.ok(&["verify"]).contains("every balance matches"));
}
