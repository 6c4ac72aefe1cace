//! The escrow part of the `Store` contract on every backend: reservations (idempotent,
//! refused without changing anything, settled exactly once by the push in any order,
//! exactly one winner when two terminals race on two store instances), leases (grant
//! bounds, charge, close, epoch and push-first), app-token uses, and the job that
//! takes back what tills abandoned.

use super::{
    CARD, Db, T0, TestTerminal, batch, card, fresh, live, other_terminal, terminal, verify_ok,
};
use crate::keys::TerminalToken;
use crate::ledger::apply::tests::sale;
use crate::ledger::escrow::tests::{lease_closed, receipt, release, sale_on_lease};
use crate::ledger::escrow::{EscrowRefusal, LeaseAsks, ReserveAsk, TokenUse};
use crate::ledger::quarantine::QuarantineKind;
use crate::store::flow::escrow::AbandonAfter;
use crate::store::{Store, StoreError, TerminalIdentity};
use protocol::journal::{EntryBody, JournalEntry};
use protocol::limits::Limits;
use protocol::wire::ReserveResponse;
use protocol::{Points, Seq};
use std::sync::Arc;
use time::Duration;
use uuid::Uuid;

testkit::on_every_backend!(
    open: Db::open;
    a_reservation_is_idempotent_and_a_refusal_changes_nothing,
    a_reservation_of_an_unknown_or_revoked_token_changes_nothing,
    two_terminals_racing_for_the_same_points_on_two_instances_exactly_one_wins,
    a_hold_is_settled_once_whatever_the_order_of_ask_commit_and_push,
    a_sale_that_redeems_nothing_settles_only_its_terminal_s_open_hold,
    leases_are_bounded_charged_and_closed_and_syncs_are_ordered,
    an_app_code_is_used_once_everywhere_and_a_retry_is_not_a_replay,
    the_job_takes_back_only_what_tills_abandoned,
    verify_checks_the_cached_reserved_and_leased_figures,
    a_quarantined_sale_ends_its_hold_and_moves_no_points,
);

fn ask(seq: u64, points: i64) -> ReserveAsk {
    ReserveAsk {
        receipt_id: receipt(seq),
        card: card(CARD),
        points: Points(points),
        expires_at: T0 + Duration::minutes(15),
    }
}

/// `ask` of the active terminal `t`, authenticated by its token as the API does.
async fn reserve(
    store: &dyn Store,
    t: &TestTerminal,
    ask: ReserveAsk,
) -> Result<ReserveResponse, StoreError> {
    let answer = store.reserve(&t.token, ask, T0).await?;
    Ok(answer.expect("an active terminal's token authenticates"))
}

fn refusal(result: Result<impl std::fmt::Debug, StoreError>) -> EscrowRefusal {
    match result {
        Err(StoreError::Escrow(r)) => r,
        other => panic!("expected an escrow refusal, got {other:?}"),
    }
}

/// (balance, reserved, leased) as `card show` reports them (every terminal).
async fn figures(store: &dyn Store) -> (Points, Points, Points) {
    let s = store
        .card_report(&card(CARD), 1)
        .await
        .unwrap()
        .unwrap()
        .state;
    (s.balance, s.reserved, s.leased)
}

/// A card with `points` spendable, earned through terminal `t`'s first sale.
async fn funded(store: &dyn Store, t: &TerminalIdentity, points: i64) {
    store
        .push(t, batch(vec![sale(1, CARD, 0, points)]), T0)
        .await
        .unwrap();
}

async fn a_reservation_is_idempotent_and_a_refusal_changes_nothing(store: Db) {
    let t1 = terminal(&*store, "s1", "t1").await;
    let t2 = terminal(&*store, "s1", "t2").await;
    funded(&*store, &t1, 100).await;
    let first = reserve(&*store, &t1, ask(2, 60)).await.unwrap();
    assert_eq!(first.reservation.points, Points(60));
    // The asking terminal is told the others' holds only.
    assert_eq!(first.balance.reserved, Points(0));
    let again = reserve(&*store, &t1, ask(2, 60)).await.unwrap();
    assert_eq!(again.reservation, first.reservation);
    assert_eq!(figures(&*store).await, (Points(100), Points(60), Points(0)));
    // Another terminal sees the hold, and cannot take the same points.
    let live = live(&*store, &t2, CARD).await;
    assert_eq!(live.balance.reserved, Points(60));
    assert_eq!(
        refusal(reserve(&*store, &t2, ask(2, 41)).await),
        EscrowRefusal::InsufficientPoints {
            spendable: Points(40),
            asked: Points(41)
        }
    );
    // A different amount for the open reservation replaces it.
    reserve(&*store, &t1, ask(2, 30)).await.unwrap();
    assert_eq!(figures(&*store).await.1, Points(30));
    store
        .set_blocked(&card(CARD), true, None, T0)
        .await
        .unwrap();
    assert_eq!(
        refusal(reserve(&*store, &t2, ask(3, 1)).await),
        EscrowRefusal::CardBlocked
    );
    let mut unknown = ask(4, 1);
    unknown.card = card(super::OTHER_CARD);
    assert_eq!(
        refusal(reserve(&*store, &t2, unknown).await),
        EscrowRefusal::InsufficientPoints {
            spendable: Points(0),
            asked: Points(1)
        }
    );
    assert_eq!(figures(&*store).await, (Points(100), Points(30), Points(0)));
    assert!(verify_ok(&*store).await);
}

async fn a_reservation_of_an_unknown_or_revoked_token_changes_nothing(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    funded(&*store, &t, 100).await;
    let unknown = TerminalToken::generate().unwrap().hash();
    assert!(
        store
            .reserve(&unknown, ask(2, 60), T0)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(figures(&*store).await, (Points(100), Points(0), Points(0)));
    // A revoked terminal's open reservation stays as it was: neither replaced nor
    // released by the revoked token.
    reserve(&*store, &t, ask(2, 30)).await.unwrap();
    store
        .revoke_terminal(&t.store, &t.terminal, T0)
        .await
        .unwrap();
    assert!(
        store
            .reserve(&t.token, ask(2, 60), T0)
            .await
            .unwrap()
            .is_none()
    );
    let mut moved = ask(2, 10);
    moved.card = card(super::OTHER_CARD);
    assert!(store.reserve(&t.token, moved, T0).await.unwrap().is_none());
    assert_eq!(figures(&*store).await, (Points(100), Points(30), Points(0)));
    assert!(verify_ok(&*store).await);
}

async fn two_terminals_racing_for_the_same_points_on_two_instances_exactly_one_wins(store: Db) {
    const ROUNDS: u64 = 12;
    const ALL: i64 = 100;
    let other = store.another_store().await;
    let t1 = terminal(&*store, "s1", "t1").await;
    let t2 = terminal(&*store, "s2", "t1").await;
    funded(&*store, &t1, ALL).await;
    // The last seq of each terminal.
    let mut next = [1u64, 0];
    for round in 0..ROUNDS {
        // Each round both tills ask for everything the card holds, through two
        // store instances at once.
        let (a, b) = {
            let (s1, s2) = (Arc::clone(&store.store), Arc::clone(&other));
            let (a1, a2) = (ask(10 + round, ALL), ask(10 + round, ALL));
            let (t1, t2) = (t1.clone(), t2.clone());
            let ha = tokio::spawn(async move { reserve(&*s1, &t1, a1).await });
            let hb = tokio::spawn(async move { reserve(&*s2, &t2, a2).await });
            (ha.await.unwrap(), hb.await.unwrap())
        };
        let won = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {a:?} / {b:?}");
        let (winner, seq, lost) = if a.is_ok() {
            next[0] += 1;
            (&t1, next[0], b)
        } else {
            next[1] += 1;
            (&t2, next[1], a)
        };
        assert!(matches!(
            refusal(lost),
            EscrowRefusal::InsufficientPoints { .. }
        ));
        assert_eq!(
            figures(&*store).await,
            (Points(ALL), Points(ALL), Points(0))
        );
        // The last round's winner sells; the others cancel, freeing the points.
        let entry = if round + 1 == ROUNDS {
            let mut s = fresh(sale(seq, CARD, ALL, 0));
            if let protocol::journal::EntryBody::Sale(sale) = &mut s.body {
                sale.receipt_id = receipt(10 + round);
            }
            s
        } else {
            fresh(release(seq, CARD, 10 + round, ALL))
        };
        store.push(winner, batch(vec![entry]), T0).await.unwrap();
    }
    assert_eq!(figures(&*store).await, (Points(0), Points(0), Points(0)));
    assert!(store.overdrafts().await.unwrap().is_empty());
    assert!(verify_ok(&*store).await);
}

async fn a_hold_is_settled_once_whatever_the_order_of_ask_commit_and_push(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    funded(&*store, &t, 100).await;
    // Ask, then the sale is pushed: captured; asking again is refused.
    reserve(&*store, &t, ask(2, 40)).await.unwrap();
    store
        .push(&t, batch(vec![sale(2, CARD, 40, 0)]), T0)
        .await
        .unwrap();
    assert_eq!(figures(&*store).await, (Points(60), Points(0), Points(0)));
    assert_eq!(
        refusal(reserve(&*store, &t, ask(2, 40)).await),
        EscrowRefusal::ReservationSettled("captured")
    );
    // The sale pushed before its (late) ask: the ask never holds anything.
    store
        .push(&t, batch(vec![sale(3, CARD, 10, 0)]), T0)
        .await
        .unwrap();
    assert_eq!(
        refusal(reserve(&*store, &t, ask(3, 10)).await),
        EscrowRefusal::ReservationSettled("captured")
    );
    // Ask, then the hold is cancelled: released, and a replayed release is a no-op.
    reserve(&*store, &t, ask(4, 20)).await.unwrap();
    assert_eq!(figures(&*store).await.1, Points(20));
    store
        .push(&t, batch(vec![release(4, CARD, 4, 20)]), T0)
        .await
        .unwrap();
    assert_eq!(figures(&*store).await, (Points(50), Points(0), Points(0)));
    assert_eq!(
        refusal(reserve(&*store, &t, ask(4, 20)).await),
        EscrowRefusal::ReservationSettled("released")
    );
    // A release of a hold HQ never granted changes nothing.
    store
        .push(&t, batch(vec![release(5, CARD, 99, 5)]), T0)
        .await
        .unwrap();
    assert_eq!(figures(&*store).await, (Points(50), Points(0), Points(0)));
    // A hold survives a restart of HQ (a new store on the same database).
    reserve(&*store, &t, ask(6, 50)).await.unwrap();
    let reopened = store.another_store().await;
    assert_eq!(
        refusal(reserve(&*reopened, &t, ask(7, 1)).await),
        EscrowRefusal::InsufficientPoints {
            spendable: Points(0),
            asked: Points(1)
        }
    );
    assert!(verify_ok(&*store).await);
}

/// Sale `seq` of [`CARD`] on receipt `receipt_seq`'s id, redeeming `redeemed`.
fn sale_on_receipt(seq: u64, receipt_seq: u64, redeemed: i64) -> JournalEntry {
    let mut e = sale(seq, CARD, redeemed, 0);
    if let EntryBody::Sale(s) = &mut e.body {
        s.receipt_id = receipt(receipt_seq);
    }
    e
}

/// A push reads the reservations of sales that redeemed nothing apart from the others
/// (`SettlementKeys::open_receipts`): such a sale captures its receipt's open hold,
/// leaves a settled one and another terminal's hold of the same receipt id as they
/// are and writes no marker, while a redeeming sale of the same push leaves its
/// marker.
async fn a_sale_that_redeems_nothing_settles_only_its_terminal_s_open_hold(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    let t2 = terminal(&*store, "s1", "t2").await;
    funded(&*store, &t, 100).await;
    reserve(&*store, &t, ask(2, 30)).await.unwrap();
    reserve(&*store, &t, ask(3, 10)).await.unwrap();
    store
        .push(&t, batch(vec![release(2, CARD, 3, 10)]), T0)
        .await
        .unwrap();
    reserve(&*store, &t2, ask(2, 20)).await.unwrap();
    assert_eq!(figures(&*store).await, (Points(100), Points(50), Points(0)));
    let entries = vec![
        sale_on_receipt(3, 2, 0),
        sale_on_receipt(4, 3, 0),
        sale_on_receipt(5, 5, 0),
        sale_on_receipt(6, 6, 7),
    ];
    store.push(&t, batch(entries), T0).await.unwrap();
    // t's hold of receipt 2 captured, t2's left open.
    assert_eq!(figures(&*store).await, (Points(93), Points(20), Points(0)));
    let settled = |status| EscrowRefusal::ReservationSettled(status);
    assert_eq!(
        refusal(reserve(&*store, &t, ask(2, 30)).await),
        settled("captured")
    );
    assert_eq!(
        refusal(reserve(&*store, &t, ask(3, 10)).await),
        settled("released")
    );
    assert_eq!(
        refusal(reserve(&*store, &t, ask(6, 1)).await),
        settled("captured")
    );
    // No marker for receipt 5: it can still be reserved.
    reserve(&*store, &t, ask(5, 1)).await.unwrap();
    // t2's hold is still open: its sale captures it.
    store
        .push(
            &t2,
            batch(vec![other_terminal(sale_on_receipt(1, 2, 0))]),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(figures(&*store).await, (Points(93), Points(1), Points(0)));
    assert_eq!(
        refusal(reserve(&*store, &t2, ask(2, 20)).await),
        settled("captured")
    );
    assert!(verify_ok(&*store).await);
}

fn lease_asks(t: &TerminalIdentity, max_total: i64, want: i64) -> LeaseAsks {
    LeaseAsks {
        terminal: t.key,
        max_total: Points(max_total),
        want: vec![(card(CARD), Points(want))],
        duration: Duration::hours(24),
    }
}

async fn leases_are_bounded_charged_and_closed_and_syncs_are_ordered(store: Db) {
    let t1 = terminal(&*store, "s1", "t1").await;
    let t2 = terminal(&*store, "s2", "t1").await;
    funded(&*store, &t1, 100).await;
    // The till must push everything first.
    assert_eq!(
        refusal(
            store
                .lease_sync(&t1, 1, Seq(2), lease_asks(&t1, 1_000, 1_000), T0)
                .await
        ),
        EscrowRefusal::PushFirst {
            acked_through: Seq(1),
            through_seq: Seq(2)
        }
    );
    let leases = store
        .lease_sync(&t1, 1, Seq(1), lease_asks(&t1, 1_000, 1_000), T0)
        .await
        .unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].points, Points(50));
    assert_eq!(leases[0].expires_at, T0 + Duration::hours(24));
    assert_eq!(
        refusal(
            store
                .lease_sync(&t1, 1, Seq(1), lease_asks(&t1, 1_000, 1_000), T0)
                .await
        ),
        EscrowRefusal::StaleEpoch { epoch: 1, last: 1 }
    );
    // Asking again lists the open lease, grants no second one.
    let again = store
        .lease_sync(&t1, 2, Seq(1), lease_asks(&t1, 1_000, 1_000), T0)
        .await
        .unwrap();
    assert_eq!(again, leases);
    // Another store's till gets nothing: half the card is leased already.
    let other = store
        .lease_sync(&t2, 1, Seq(0), lease_asks(&t2, 1_000, 1_000), T0)
        .await
        .unwrap();
    assert!(other.is_empty());
    // The leased points are not spendable online anywhere.
    assert_eq!(
        refusal(reserve(&*store, &t2, ask(2, 51)).await),
        EscrowRefusal::InsufficientPoints {
            spendable: Points(50),
            asked: Points(51)
        }
    );
    let theirs = live(&*store, &t2, CARD).await;
    assert_eq!(theirs.balance.leased, Points(50));
    let own = live(&*store, &t1, CARD).await;
    assert_eq!(own.balance.leased, Points(0));
    // Spent offline, then closed with a wrong figure: applied, flagged, never refused.
    let id = leases[0].lease_id;
    store
        .push(
            &t1,
            batch(vec![
                sale_on_lease(2, CARD, 30, id, 30),
                lease_closed(3, CARD, id, 31),
            ]),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(figures(&*store).await, (Points(70), Points(0), Points(0)));
    let anomalies = store.anomalies().await.unwrap();
    assert_eq!(anomalies.len(), 1);
    assert_eq!(anomalies[0].kind.as_str(), "lease_mismatch");
    let after = store
        .lease_sync(&t1, 3, Seq(3), lease_asks(&t1, 10, 1_000), T0)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].points, Points(10));
    assert!(verify_ok(&*store).await);
}

fn token_use(t: &TerminalIdentity, scan: u128) -> TokenUse {
    TokenUse {
        token_id: "0f".repeat(16),
        terminal: t.key,
        scan_id: Uuid::from_u128(scan),
        card: card(CARD),
        expires_at: T0 + Duration::seconds(60),
        used_at: T0,
    }
}

async fn an_app_code_is_used_once_everywhere_and_a_retry_is_not_a_replay(store: Db) {
    let t1 = terminal(&*store, "s1", "t1").await;
    let t2 = terminal(&*store, "s2", "t1").await;
    let other = store.another_store().await;
    store.use_token(token_use(&t1, 1)).await.unwrap();
    other.use_token(token_use(&t1, 1)).await.unwrap();
    assert_eq!(
        refusal(store.use_token(token_use(&t1, 2)).await),
        EscrowRefusal::TokenUsed
    );
    assert_eq!(
        refusal(other.use_token(token_use(&t2, 1)).await),
        EscrowRefusal::TokenUsed
    );
    // Forgotten a day after the token expired, by the job.
    let report = store
        .release_abandoned(T0 + Duration::days(2), abandon())
        .await
        .unwrap();
    assert_eq!(report.token_uses_forgotten, 1);
    store.use_token(token_use(&t2, 3)).await.unwrap();
}

fn abandon() -> AbandonAfter {
    AbandonAfter::default()
}

async fn the_job_takes_back_only_what_tills_abandoned(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    funded(&*store, &t, 100).await;
    reserve(&*store, &t, ask(2, 30)).await.unwrap();
    store
        .lease_sync(&t, 1, Seq(1), lease_asks(&t, 1_000, 20), T0)
        .await
        .unwrap();
    assert_eq!(
        figures(&*store).await,
        (Points(100), Points(30), Points(20))
    );
    // A week after the deadlines less a minute: nothing is taken back yet.
    let early = T0 + Duration::hours(24 + 168) - Duration::minutes(1);
    let none = store.release_abandoned(early, abandon()).await.unwrap();
    assert_eq!((none.reservations_released, none.leases_reclaimed), (1, 0));
    assert_eq!(figures(&*store).await, (Points(100), Points(0), Points(20)));
    let late = T0 + Duration::hours(24 + 168) + Duration::minutes(1);
    let all = store.release_abandoned(late, abandon()).await.unwrap();
    assert_eq!((all.reservations_released, all.leases_reclaimed), (0, 1));
    assert_eq!(figures(&*store).await, (Points(100), Points(0), Points(0)));
    assert!(verify_ok(&*store).await);
}

async fn verify_checks_the_cached_reserved_and_leased_figures(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    funded(&*store, &t, 100).await;
    reserve(&*store, &t, ask(2, 30)).await.unwrap();
    assert!(verify_ok(&*store).await);
    store
        .exec("UPDATE cards SET reserved = reserved + 1")
        .await
        .unwrap();
    assert!(!verify_ok(&*store).await);
    store
        .exec("UPDATE cards SET reserved = reserved - 1, leased = 60")
        .await
        .unwrap();
    assert!(!verify_ok(&*store).await);
}

/// HQ stores a sale it cannot apply (beyond the limits) and acks it: the till's hold
/// has ended, so its reservation is captured like any other sale's, while the points
/// stay where they are until a retry applies the entry.
async fn a_quarantined_sale_ends_its_hold_and_moves_no_points(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    funded(&*store, &t, 100).await;
    reserve(&*store, &t, ask(2, 60)).await.unwrap();
    assert_eq!(figures(&*store).await, (Points(100), Points(60), Points(0)));
    let beyond = Limits::CEILING.max_entry_points.get() + 1;
    let outcome = store
        .push(&t, batch(vec![sale(2, CARD, 60, beyond)]), T0)
        .await
        .unwrap();
    assert_eq!((outcome.applied, outcome.quarantined), (0, vec![Seq(2)]));
    assert_eq!(figures(&*store).await, (Points(100), Points(0), Points(0)));
    let listed = store.quarantined().await.unwrap();
    assert_eq!(listed[0].kind, QuarantineKind::OutOfLimits);
    assert!(verify_ok(&*store).await);
}
