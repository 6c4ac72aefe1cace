//! A PostgreSQL push costs two round trips whatever its size, and a live balance
//! lookup and a reservation few, authentication included, counted on the wire
//! ([`FlightCounter`]) so that the count cannot creep back up unnoticed.

use super::{CARD, OTHER_CARD, T0, batch, terminal};
use crate::ledger::apply::tests::sale;
use crate::ledger::escrow::ReserveAsk;
use crate::ledger::escrow::tests::receipt;
use crate::store::Store;
use crate::store::postgres::PgStore;
use protocol::{CardId, Points, Seq};
use testkit::pg::TestDatabase;
use testkit::pg_flights::FlightCounter;
use time::Duration;

/// The round trips of one push of known cards: `START TRANSACTION` with the
/// terminal's lock and reads and the card locks with theirs, then every write with
/// `COMMIT`.
pub const PUSH_ROUND_TRIPS: u64 = 2;

/// The round trips of a push that repeats entries HQ holds (a till's retry after a
/// lost answer): the card locks taken ahead were the whole batch's, so the new
/// entries' are taken in a round trip of their own.
pub const RETRIED_PUSH_ROUND_TRIPS: u64 = 3;

/// The statements of one push that redeems on known cards (`Execute` messages; its
/// `START TRANSACTION` and `COMMIT` are simple queries): the reads of its first
/// flight (the terminal's lock and what it holds, the card locks and what hangs off
/// them: 7 here), then every write as one statement (there was one per table).
pub const PUSH_STATEMENTS: u64 = 8;

/// A store on a fresh database through a counting proxy, on one connection (so
/// that a warm-up call prepares the statements the measured ones use); `None` when
/// the PostgreSQL tests are skipped. The database lives as long as the first value.
async fn counted_store() -> Option<(TestDatabase, FlightCounter, PgStore)> {
    let db = TestDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("{e}"))?;
    let (counter, url) = FlightCounter::for_url(db.url()).unwrap();
    let store = PgStore::open(&format!("{url}?pool_max_size=1"))
        .await
        .unwrap();
    Some((db, counter, store))
}

#[tokio::test]
async fn a_push_of_ten_entries_costs_two_round_trips() {
    let Some((_db, counter, store)) = counted_store().await else {
        return;
    };
    let t = terminal(&store, "s1", "t1").await;
    // The warm-up push makes the cards known and gives them points to redeem.
    let warm: Vec<_> = (1..=10)
        .map(|seq| sale(seq, if seq % 2 == 0 { CARD } else { OTHER_CARD }, 0, 20))
        .collect();
    store.push(&t, batch(warm), T0).await.unwrap();
    // Redemptions (lots read and consumed), accruals, both cards, KPI rows. The
    // proxy may count a flight twice when it reaches it in pieces on a loaded
    // machine, never a round trip less: the least of identical pushes is the count.
    let (mut trips, mut statements) = (Vec::new(), Vec::new());
    for round in 1..=3u64 {
        let measured: Vec<_> = (round * 10 + 1..=round * 10 + 10)
            .map(|seq| {
                let card = if seq % 2 == 0 { CARD } else { OTHER_CARD };
                sale(seq, card, if seq % 3 == 0 { 5 } else { 0 }, 3)
            })
            .collect();
        counter.reset();
        let out = store.push(&t, batch(measured), T0).await.unwrap();
        trips.push(counter.flights());
        statements.push(counter.executes());
        assert_eq!((out.acked_through, out.applied), (Seq(round * 10 + 10), 10));
    }
    let least = trips.iter().copied().min();
    assert_eq!(
        least,
        Some(PUSH_ROUND_TRIPS),
        "round trips of 10-entry pushes: {trips:?}"
    );
    assert_eq!(
        statements,
        vec![PUSH_STATEMENTS; 3],
        "statements of 10-entry pushes"
    );
}

/// A push whose cards HQ never held costs the same two round trips: it inserts
/// them with its other writes (it used to roll back and start over to create blank
/// rows first, three more).
#[tokio::test]
async fn a_push_of_cards_hq_never_held_costs_two_round_trips_too() {
    let Some((_db, counter, store)) = counted_store().await else {
        return;
    };
    let t = terminal(&store, "s1", "t1").await;
    // The warm-up push prepares the statements (on known and new cards alike).
    store
        .push(&t, batch(vec![sale(1, CARD, 0, 20)]), T0)
        .await
        .unwrap();
    let mut trips = Vec::new();
    for round in 0..3u64 {
        let new_cards: Vec<_> = (1..=10u64)
            .map(|n| {
                let seq = round * 10 + n + 1;
                sale(seq, &format!("{:013}", 5_000_000_000_000 + seq), 0, 3)
            })
            .collect();
        counter.reset();
        let out = store.push(&t, batch(new_cards), T0).await.unwrap();
        trips.push(counter.flights());
        assert_eq!(out.applied, 10);
    }
    assert_eq!(
        trips.iter().copied().min(),
        Some(PUSH_ROUND_TRIPS),
        "round trips of 10-entry pushes of new cards: {trips:?}"
    );
}

/// A retried batch whose first entries HQ holds applies only the rest, from card
/// locks and reads of those entries alone, taken in a round trip of their own: the
/// ones taken ahead, for the whole batch, would settle a held entry's reservation
/// again.
#[tokio::test]
async fn a_retried_push_applies_its_new_entries_from_their_own_card_reads() {
    let Some((_db, counter, store)) = counted_store().await else {
        return;
    };
    let t = terminal(&store, "s1", "t1").await;
    let first: Vec<_> = (1..=6).map(|seq| sale(seq, CARD, 0, 20)).collect();
    store.push(&t, batch(first), T0).await.unwrap();
    let held_card = CardId::parse(CARD).unwrap();
    let before = store.card_report(&held_card, 10).await.unwrap();
    // Seqs 5 and 6 again (held), then four new ones on the other card.
    let retried: Vec<_> = (5..=6)
        .map(|seq| sale(seq, CARD, 0, 20))
        .chain((7..=10).map(|seq| sale(seq, OTHER_CARD, 0, 5)))
        .collect();
    counter.reset();
    let out = store.push(&t, batch(retried), T0).await.unwrap();
    assert_eq!(
        (out.acked_through, out.applied, out.duplicates),
        (Seq(10), 4, 2)
    );
    assert!(
        counter.flights() >= RETRIED_PUSH_ROUND_TRIPS,
        "round trips of a retried push: {}",
        counter.flights()
    );
    assert_eq!(
        store.card_report(&held_card, 10).await.unwrap(),
        before,
        "the held entries moved their card again"
    );
    let other = store
        .card_report(&CardId::parse(OTHER_CARD).unwrap(), 10)
        .await
        .unwrap()
        .expect("the new entries' card");
    assert_eq!(other.recent.len(), 4, "{:?}", other.recent);
}

/// The round trips of a live balance lookup: one flight with the snapshot's `START
/// TRANSACTION`, its three reads keyed by the terminal's token (which authenticates
/// it: no separate query first) and its `COMMIT`.
pub const LIVE_BALANCE_ROUND_TRIPS: u64 = 1;

#[tokio::test]
async fn a_live_balance_lookup_costs_one_round_trip_authentication_included() {
    let Some((_db, counter, store)) = counted_store().await else {
        return;
    };
    let t = terminal(&store, "s1", "t1").await;
    store
        .push(&t, batch(vec![sale(1, CARD, 0, 20)]), T0)
        .await
        .unwrap();
    let card = protocol::CardId::parse(CARD).unwrap();
    // The first lookup prepares its statements; the least of the later ones is the
    // count (see above).
    let mut trips = Vec::new();
    for _ in 0..4 {
        counter.reset();
        let live = store
            .live_balance(&t.token, &card, T0)
            .await
            .unwrap()
            .unwrap();
        trips.push(counter.flights());
        assert_eq!(live.acked_through, Seq(1));
        assert!(live.balance.balance.get() >= 20, "{:?}", live.balance);
    }
    assert_eq!(
        trips[1..].iter().copied().min(),
        Some(LIVE_BALANCE_ROUND_TRIPS),
        "round trips of live balance lookups: {trips:?}"
    );
    // The connection is left outside any transaction: the next operation on it (the
    // pool has one) sees a push committed since.
    store
        .push(&t, batch(vec![sale(2, CARD, 0, 5)]), T0)
        .await
        .unwrap();
    let live = store
        .live_balance(&t.token, &card, T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.acked_through, Seq(2));
}

/// The round trips of a reservation: the write transaction's `START TRANSACTION`,
/// the terminal of the token (authentication), the card locks and the reservation
/// read after them in one flight; the writes, the terminal's own holds and the
/// `COMMIT` in a second one.
pub const RESERVATION_ROUND_TRIPS: u64 = 2;

#[tokio::test]
async fn a_reservation_costs_two_round_trips_authentication_included() {
    let Some((_db, counter, store)) = counted_store().await else {
        return;
    };
    let t = terminal(&store, "s1", "t1").await;
    let funds = vec![sale(1, CARD, 0, 100), sale(2, OTHER_CARD, 0, 100)];
    store.push(&t, batch(funds), T0).await.unwrap();
    // Receipts 1 to 3 hold points of one card; the last ask moves receipt 3's hold to
    // the other card (both cards locked, one released). The first ask prepares the
    // statements; the least of the later ones is the count (see above).
    let asks = [(1, CARD), (2, CARD), (3, CARD), (3, OTHER_CARD)];
    let mut trips = Vec::new();
    for (seq, on) in asks {
        let ask = ReserveAsk {
            receipt_id: receipt(seq),
            card: CardId::parse(on).unwrap(),
            points: Points(5),
            expires_at: T0 + Duration::minutes(15),
        };
        counter.reset();
        let held = store.reserve(&t.token, ask, T0).await.unwrap().unwrap();
        trips.push(counter.flights());
        assert_eq!(held.acked_through, Seq(2));
        assert_eq!(held.reservation.card.as_str(), on);
    }
    assert_eq!(
        trips[1..].iter().copied().min(),
        Some(RESERVATION_ROUND_TRIPS),
        "round trips of reservations: {trips:?}"
    );
    // The transaction committed in the second flight: the next operation on the
    // connection (the pool has one) starts afresh and sees the holds.
    let card = CardId::parse(CARD).unwrap();
    let other = store
        .live_balance(&t.token, &card, T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        other.balance.reserved,
        Points(0),
        "its own holds are not shown"
    );
    let audit = store.card_report(&card, 1).await.unwrap().unwrap();
    assert_eq!(audit.state.reserved, Points(10));
}
