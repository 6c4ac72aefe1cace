//! The escrow rules at HQ, over rows in memory; the entry builders are shared with
//! the store's contract tests.

use super::*;
use crate::ledger::apply::tests::{CARD, T0, sale};
use protocol::journal::{LeaseClosedEntry, LeaseDraw, ReleaseEntry, ReleaseReason};
use testkit::entries::Entry;

/// A release of the reservation of receipt `R-{sale_seq}`, as entry `seq`.
pub fn release(seq: u64, card: &str, sale_seq: u64, points: i64) -> JournalEntry {
    Entry::fixed(seq).body(EntryBody::Release(ReleaseEntry {
        receipt_id: receipt(sale_seq),
        card: CardId::parse(card).unwrap(),
        points: Points(points),
        reason: ReleaseReason::Cancelled,
    }))
}

/// The close of lease `lease` after the till spent `spent` of it, as entry `seq`.
pub fn lease_closed(seq: u64, card: &str, lease: Uuid, spent: i64) -> JournalEntry {
    Entry::fixed(seq).body(EntryBody::LeaseClosed(LeaseClosedEntry {
        lease_id: lease,
        card: CardId::parse(card).unwrap(),
        spent: Points(spent),
    }))
}

/// A sale redeeming `redeemed` points, `drawn` of them from lease `lease`.
pub fn sale_on_lease(seq: u64, card: &str, redeemed: i64, lease: Uuid, drawn: i64) -> JournalEntry {
    let mut e = sale(seq, card, redeemed, 0);
    if let EntryBody::Sale(s) = &mut e.body {
        s.lease = Some(LeaseDraw {
            lease_id: lease,
            points: Points(drawn),
        });
    }
    e
}

/// Receipt `R-{seq}` (the receipt of `sale(seq, …)`).
pub fn receipt(seq: u64) -> ReceiptId {
    ReceiptId::parse(&format!("R-{seq}")).unwrap()
}

fn card_with(balance: i64) -> HashMap<CardId, CardRecord> {
    let id = CardId::parse(CARD).unwrap();
    let mut c = CardRecord::new(id.clone());
    c.balance = Points(balance);
    HashMap::from([(id, c)])
}

fn the(cards: &HashMap<CardId, CardRecord>) -> &CardRecord {
    &cards[&CardId::parse(CARD).unwrap()]
}

fn ask(seq: u64, points: i64) -> ReserveAsk {
    ReserveAsk {
        receipt_id: receipt(seq),
        card: CardId::parse(CARD).unwrap(),
        points: Points(points),
        expires_at: T0 + Duration::minutes(15),
    }
}

#[test]
fn a_reservation_holds_spendable_points_once_and_a_retry_changes_nothing() {
    let mut cards = card_with(100);
    let row = reserve(1, &ask(1, 60), None, &mut cards, T0).unwrap();
    assert_eq!(the(&cards).reserved, Points(60));
    // The same ask again: the same hold, nothing more reserved.
    let again = reserve(1, &ask(1, 60), Some(&row), &mut cards, T0).unwrap();
    assert_eq!(
        (again.points, the(&cards).reserved),
        (Points(60), Points(60))
    );
    // Another receipt may only take what is left, and is told how much that is.
    assert_eq!(
        reserve(2, &ask(2, 41), None, &mut cards, T0),
        Err(EscrowRefusal::InsufficientPoints {
            spendable: Points(40),
            asked: Points(41)
        })
    );
    // The receipt's own hold is replaced, not added to.
    let smaller = reserve(1, &ask(1, 30), Some(&again), &mut cards, T0).unwrap();
    assert_eq!(
        (smaller.points, the(&cards).reserved),
        (Points(30), Points(30))
    );
    let mut settled = smaller;
    settled.status = ReservationStatus::Captured;
    assert_eq!(
        reserve(1, &ask(1, 30), Some(&settled), &mut cards, T0),
        Err(EscrowRefusal::ReservationSettled("captured"))
    );
}

#[test]
fn unknown_and_blocked_cards_are_refused() {
    let mut none = HashMap::new();
    assert_eq!(
        reserve(1, &ask(1, 1), None, &mut none, T0),
        Err(EscrowRefusal::InsufficientPoints {
            spendable: Points(0),
            asked: Points(1)
        })
    );
    let mut cards = card_with(100);
    for c in cards.values_mut() {
        c.blocked = true;
    }
    assert_eq!(
        reserve(1, &ask(1, 1), None, &mut cards, T0),
        Err(EscrowRefusal::CardBlocked)
    );
}

fn asks(max_total: i64, want: i64) -> LeaseAsks {
    LeaseAsks {
        terminal: 1,
        max_total: Points(max_total),
        want: vec![(CardId::parse(CARD).unwrap(), Points(want))],
        duration: Duration::hours(24),
    }
}

#[test]
fn leases_are_bounded_by_the_ask_the_terminal_room_and_half_the_card() {
    let mut cards = card_with(100);
    let granted = grant_leases(&asks(1_000, 1_000), &[], &mut cards, T0);
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0].points, Points(50));
    assert_eq!(granted[0].expires_at, T0 + Duration::hours(24));
    assert_eq!(the(&cards).leased, Points(50));
    // A second lease of the same card at the same terminal: none while one is open.
    assert!(grant_leases(&asks(1_000, 1_000), &granted, &mut cards, T0).is_empty());
    // Another terminal: the share is used up.
    let mut other = asks(1_000, 1_000);
    other.terminal = 2;
    assert!(grant_leases(&other, &[], &mut cards, T0).is_empty());
    let mut small = card_with(100);
    assert_eq!(
        grant_leases(&asks(7, 1_000), &[], &mut small, T0)[0].points,
        Points(7)
    );
    let mut small = card_with(100);
    assert_eq!(
        grant_leases(&asks(1_000, 5), &[], &mut small, T0)[0].points,
        Points(5)
    );
    assert!(grant_leases(&asks(1_000, 5), &[], &mut HashMap::new(), T0).is_empty());
}

fn open_reservation(seq: u64, points: i64) -> ReservationRow {
    ReservationRow {
        terminal: 1,
        receipt_id: receipt(seq),
        card: CardId::parse(CARD).unwrap(),
        points: Points(points),
        status: ReservationStatus::Open,
        expires_at: T0,
        updated_at: T0,
    }
}

fn open_lease(id: u128, points: i64) -> LeaseRow {
    LeaseRow {
        id: Uuid::from_u128(id),
        terminal: 1,
        card: CardId::parse(CARD).unwrap(),
        points: Points(points),
        charged: Points(0),
        status: LeaseStatus::Open,
        expires_at: T0 + Duration::hours(24),
        granted_at: T0,
    }
}

#[test]
fn a_sale_captures_its_reservation_and_a_release_releases_one_once() {
    let mut cards = card_with(100);
    for c in cards.values_mut() {
        c.reserved = Points(70);
    }
    let entries = [
        sale(1, CARD, 40, 0),
        release(2, CARD, 2, 30),
        release(3, CARD, 1, 40),
    ];
    let s = settle(
        1,
        &entries,
        vec![open_reservation(1, 40), open_reservation(2, 30)],
        vec![],
        &mut cards,
        T0,
    );
    assert_eq!(the(&cards).reserved, Points(0));
    let status: Vec<_> = s.reservations.iter().map(|r| r.status).collect();
    assert_eq!(
        status,
        [ReservationStatus::Captured, ReservationStatus::Released]
    );
    assert!(s.mismatches.is_empty());
}

#[test]
fn a_sale_or_release_before_its_reservation_leaves_a_settled_marker() {
    let mut cards = card_with(100);
    let s = settle(
        1,
        &[
            sale(1, CARD, 40, 0),
            release(2, CARD, 9, 5),
            sale(3, CARD, 0, 5),
        ],
        vec![],
        vec![],
        &mut cards,
        T0,
    );
    let marks: Vec<_> = s
        .reservations
        .iter()
        .map(|r| (r.receipt_id.as_str().to_owned(), r.status, r.points))
        .collect();
    assert_eq!(
        marks,
        [
            ("R-1".to_owned(), ReservationStatus::Captured, Points(0)),
            ("R-9".to_owned(), ReservationStatus::Released, Points(0)),
        ]
    );
    // The late ask is refused, never a second hold.
    assert_eq!(
        reserve(1, &ask(1, 40), Some(&s.reservations[0]), &mut cards, T0),
        Err(EscrowRefusal::ReservationSettled("captured"))
    );
    assert_eq!(the(&cards).reserved, Points(0));
}

#[test]
fn lease_draws_are_charged_and_a_close_returns_the_rest() {
    let mut cards = card_with(100);
    for c in cards.values_mut() {
        c.leased = Points(50);
    }
    let lease = Uuid::from_u128(7);
    let entries = [
        sale_on_lease(1, CARD, 20, lease, 20),
        sale_on_lease(2, CARD, 10, lease, 10),
        lease_closed(3, CARD, lease, 30),
    ];
    let s = settle(1, &entries, vec![], vec![open_lease(7, 50)], &mut cards, T0);
    assert_eq!(the(&cards).leased, Points(0));
    assert_eq!(s.leases.len(), 1);
    assert_eq!(
        (s.leases[0].charged, s.leases[0].status),
        (Points(30), LeaseStatus::Closed)
    );
    assert!(s.mismatches.is_empty());
}

#[test]
fn lease_settlements_that_do_not_add_up_are_reported_not_refused() {
    let mut cards = card_with(100);
    for c in cards.values_mut() {
        c.leased = Points(10);
    }
    let lease = Uuid::from_u128(7);
    let entries = [
        sale_on_lease(1, CARD, 15, lease, 15),
        lease_closed(2, CARD, lease, 12),
        sale_on_lease(3, CARD, 1, Uuid::from_u128(8), 1),
    ];
    let s = settle(1, &entries, vec![], vec![open_lease(7, 10)], &mut cards, T0);
    assert_eq!(the(&cards).leased, Points(0));
    let details: Vec<&str> = s.mismatches.iter().map(|m| m.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            "drew 15 points on a lease holding 10 more",
            "the till spent 12 points of it, its pushed sales drew 10",
            "drew 1 points on a lease HQ never granted",
        ]
    );
    // A lease HQ reclaimed: the draw is reported, the card's figures stay.
    let mut reclaimed = open_lease(9, 10);
    reclaimed.status = LeaseStatus::Reclaimed;
    let s = settle(
        1,
        &[sale_on_lease(4, CARD, 5, Uuid::from_u128(9), 5)],
        vec![],
        vec![reclaimed],
        &mut cards,
        T0,
    );
    assert_eq!(
        s.mismatches[0].detail,
        "drew 5 points on a lease already reclaimed"
    );
    assert_eq!(the(&cards).leased, Points(0));
}

#[test]
fn abandoned_holds_return_to_the_card() {
    let mut cards = card_with(100);
    for c in cards.values_mut() {
        c.reserved = Points(40);
        c.leased = Points(30);
    }
    let mut res = vec![open_reservation(1, 40)];
    release_abandoned(&mut res, &mut cards, T0);
    let mut lease = open_lease(1, 50);
    lease.charged = Points(20);
    let mut leases = vec![lease];
    reclaim_abandoned(&mut leases, &mut cards);
    assert_eq!(res[0].status, ReservationStatus::Released);
    assert_eq!(leases[0].status, LeaseStatus::Reclaimed);
    assert_eq!(
        (the(&cards).reserved, the(&cards).leased),
        (Points(0), Points(0))
    );
}

#[test]
fn a_token_use_is_a_retry_only_at_the_same_terminal_and_scan() {
    let first = TokenUse {
        token_id: "ab".repeat(16),
        terminal: 1,
        scan_id: Uuid::from_u128(1),
        card: CardId::parse(CARD).unwrap(),
        expires_at: T0,
        used_at: T0,
    };
    assert!(first.is_retry_of(&first));
    let other_scan = TokenUse {
        scan_id: Uuid::from_u128(2),
        ..first.clone()
    };
    assert!(!other_scan.is_retry_of(&first));
    let other_till = TokenUse {
        terminal: 2,
        ..first.clone()
    };
    assert!(!other_till.is_retry_of(&first));
}

/// Receipts whose row `settle` needs whatever its status (redeeming sales, releases)
/// are apart from those of sales that redeemed nothing, which only an open row
/// changes; a receipt in both is loaded as the first kind, once.
#[test]
fn settlement_keys_split_receipts_by_the_rows_settle_needs() {
    let mut anonymous = sale(6, CARD, 0, 0);
    if let EntryBody::Sale(s) = &mut anonymous.body {
        s.card = None;
    }
    let entries = [
        sale(1, CARD, 5, 0),
        sale(2, CARD, 0, 3),
        release(3, CARD, 2, 1),
        sale(4, CARD, 0, 0),
        sale(5, CARD, 0, 0),
        release(7, CARD, 9, 1),
        anonymous,
    ];
    let keys = settlement_keys(&entries);
    assert_eq!(keys.receipts, [receipt(1), receipt(2), receipt(9)]);
    assert_eq!(keys.open_receipts, [receipt(4), receipt(5)]);
}
