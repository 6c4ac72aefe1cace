//! Entries HQ cannot apply, on every backend: figures beyond the protocol's limits
//! (the probe's sales near `i64::MAX`, a card lifted past its maximum), an entry whose
//! application fails inside HQ, retries, and `verify` on sums beyond 64 bits. Each
//! poisoned entry sits between good ones, which must still apply.

use super::{Db, OTHER_CARD, balance, batch, card, fresh, terminal, verify_ok};
use crate::admin;
use crate::ledger::apply::tests::{CARD, T0, pending_sale, sale};
use crate::ledger::kpi::Period;
use crate::ledger::quarantine::{QuarantineKind, RetryOutcome};
use crate::store::StoreError;
use protocol::journal::{EntryBody, JournalEntry};
use protocol::limits::Limits;
use protocol::{Money, Points, Seq};
use time::Duration;

testkit::on_every_backend!(
    open: Db::open;
    entries_beyond_the_limits_are_quarantined_and_the_entries_around_them_apply,
    huge_sales_on_one_card_no_longer_stop_the_tills_sync,
    an_entry_whose_application_fails_inside_hq_is_isolated_then_retried_once,
    a_retry_applies_a_quarantined_entry_exactly_once_after_the_fix,
    verify_names_each_bad_card_and_checks_the_others,
    a_batch_failing_inside_hq_spoils_none_of_the_pushes_running_with_it,
    a_quarantined_entry_counts_in_the_kpis_only_once_a_retry_applies_it,
);

/// A sale on `card` at `at` paying `paid` minor units (no redemption, no accrual).
fn paying(seq: u64, card: &str, paid: i64, at: time::OffsetDateTime) -> JournalEntry {
    let mut e = sale(seq, card, 0, 0);
    e.at = at;
    if let EntryBody::Sale(s) = &mut e.body {
        s.sale.total_minor = Money(paid);
        s.sale.paid_minor = Money(paid);
        s.sale.lines[0].amount_minor = Money(paid);
        s.sale.lines[0].paid_minor = Money(paid);
    }
    e
}

async fn entries_beyond_the_limits_are_quarantined_and_the_entries_around_them_apply(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    let matures = T0 + Duration::days(30);
    let entries = vec![
        sale(1, OTHER_CARD, 0, 5),
        pending_sale(2, CARD, i64::MAX, matures),
        sale(3, OTHER_CARD, 0, 5),
        // Plain `+` in the ledger wrapped the card's pending points negative here.
        pending_sale(4, CARD, i64::MAX, matures),
        sale(5, OTHER_CARD, 0, 5),
    ];
    let outcome = store.push(&t, batch(entries), T0).await.unwrap();
    assert_eq!(outcome.acked_through, Seq(5));
    assert_eq!(outcome.applied, 3);
    assert_eq!(outcome.quarantined, vec![Seq(2), Seq(4)]);
    assert_eq!(
        balance(&*store, &t, CARD).await,
        (Seq(5), Points(0), Points(0))
    );
    assert_eq!(balance(&*store, &t, OTHER_CARD).await.1, Points(15));
    let listed = store.quarantined().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].seq, Seq(2));
    assert_eq!(listed[0].kind, QuarantineKind::OutOfLimits, "{listed:?}");
    assert_eq!(listed[0].card, Some(card(CARD)));
    assert!(
        listed[0].reason.contains("above max_entry_points"),
        "{listed:?}"
    );
    assert_eq!(listed[0].released_at, None);
    let mut report = Vec::new();
    admin::report_quarantine(&*store, &mut report)
        .await
        .unwrap();
    let report = String::from_utf8(report).unwrap();
    assert!(report.contains("s1/t1 seq 4"), "{report}");
    assert!(report.contains("QUARANTINED"), "{report}");
    // The same entries again: duplicates, nothing quarantined twice.
    let again = vec![
        pending_sale(4, CARD, i64::MAX, matures),
        sale(5, OTHER_CARD, 0, 5),
    ];
    let again = store.push(&t, batch(again), T0).await.unwrap();
    assert_eq!((again.duplicates, again.quarantined.len()), (2, 0));
    assert_eq!(store.quarantined().await.unwrap().len(), 2);
    assert!(verify_ok(&*store).await);
}

async fn huge_sales_on_one_card_no_longer_stop_the_tills_sync(store: Db) {
    // The probe's case: sales near i64::MAX on one card. On main the till got its
    // 200s, and once their spend had to be summed from the entries (a year on) every
    // push of the till failed with the SQL sum's overflow.
    let t = terminal(&*store, "s1", "t1").await;
    let big = 5_000_000_000_000_000_000;
    let first = store
        .push(&t, batch(vec![paying(1, CARD, big, T0)]), T0)
        .await
        .unwrap();
    assert_eq!(first.quarantined, vec![Seq(1)]);
    let later = T0 + Duration::days(300);
    let outcome = store
        .push(
            &t,
            batch(vec![
                paying(2, CARD, big, later),
                paying(3, CARD, big, later),
                paying(4, CARD, 100, later),
                sale(5, OTHER_CARD, 0, 5),
            ]),
            later,
        )
        .await
        .unwrap();
    assert_eq!(outcome.acked_through, Seq(5));
    assert_eq!(outcome.quarantined, vec![Seq(2), Seq(3)]);
    let listed = store.quarantined().await.unwrap();
    assert!(listed.iter().all(|q| q.reason.contains("max_line_minor")));
    // A year after the first sale: the card's spend is summed from its entries, and
    // only what was applied counts.
    let year_on = T0 + Duration::days(366);
    let outcome = store
        .push(
            &t,
            batch(vec![
                paying(6, CARD, 100, year_on),
                sale(7, OTHER_CARD, 0, 5),
            ]),
            year_on,
        )
        .await
        .unwrap();
    assert_eq!((outcome.acked_through, outcome.applied), (Seq(7), 2));
    let report = store.card_report(&card(CARD), 1).await.unwrap().unwrap();
    assert_eq!(report.state.spend_12m, Money(200));
    assert_eq!(balance(&*store, &t, OTHER_CARD).await.1, Points(10));
    assert!(verify_ok(&*store).await);
}

async fn an_entry_whose_application_fails_inside_hq_is_isolated_then_retried_once(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    store
        .push(
            &t,
            batch(vec![sale(1, CARD, 0, 1), sale(2, OTHER_CARD, 0, 1)]),
            T0,
        )
        .await
        .unwrap();
    // A hand-edited row HQ cannot read: every push touching the card fails inside HQ.
    store
        .exec(&format!(
            "UPDATE cards SET spend_drops_at = 9223372036854775807 WHERE card = '{CARD}'"
        ))
        .await
        .unwrap();
    let entries = vec![
        sale(3, OTHER_CARD, 0, 10),
        sale(4, CARD, 0, 10),
        sale(5, OTHER_CARD, 0, 10),
    ];
    let outcome = store.push(&t, batch(entries), T0).await.unwrap();
    assert_eq!(outcome.acked_through, Seq(5));
    assert_eq!((outcome.applied, outcome.quarantined), (2, vec![Seq(4)]));
    assert_eq!(balance(&*store, &t, OTHER_CARD).await.1, Points(21));
    let listed = store.quarantined().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].kind, QuarantineKind::Internal);
    // Retrying before the fix fails the same way and changes nothing.
    let id = listed[0].id;
    assert!(matches!(
        store.retry_quarantined(id, T0).await,
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(store.quarantined().await.unwrap()[0].released_at, None);
    store
        .exec(&format!(
            "UPDATE cards SET spend_drops_at = NULL WHERE card = '{CARD}'"
        ))
        .await
        .unwrap();
    assert_eq!(
        store.retry_quarantined(id, T0).await.unwrap(),
        RetryOutcome::Applied
    );
    assert_eq!(balance(&*store, &t, CARD).await.1, Points(11));
    assert!(verify_ok(&*store).await);
}

async fn a_retry_applies_a_quarantined_entry_exactly_once_after_the_fix(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    let most = Limits::CEILING.max_entry_points.get();
    let full = Limits::CEILING.max_card_balance_points;
    // Ten of the largest accruals fill the card; the eleventh would lift it past.
    let entries: Vec<JournalEntry> = (1..=11).map(|seq| sale(seq, CARD, 0, most)).collect();
    let outcome = store.push(&t, batch(entries), T0).await.unwrap();
    assert_eq!(outcome.quarantined, vec![Seq(11)]);
    let id = store.quarantined().await.unwrap()[0].id;
    // Still no room for it.
    let still = store.retry_quarantined(id, T0).await.unwrap();
    assert!(
        matches!(&still, RetryOutcome::StillQuarantined(why) if why.contains("max_card_balance_points")),
        "{still:?}"
    );
    assert_eq!(balance(&*store, &t, CARD).await.1, full);
    // The customer spends points: now it fits.
    let mut spend = sale(12, CARD, 0, 0);
    if let EntryBody::Sale(s) = &mut spend.body {
        s.sale.redeemed_points = Points(most);
        s.sale.lines[0].redeemed_points = Points(most);
    }
    store.push(&t, batch(vec![spend]), T0).await.unwrap();
    let (a, b) = tokio::join!(
        store.retry_quarantined(id, T0),
        store.retry_quarantined(id, T0)
    );
    let mut outcomes = [a, b];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert!(
        matches!(
            outcomes.as_slice(),
            [Ok(RetryOutcome::AlreadyApplied), Ok(RetryOutcome::Applied)]
        ),
        "{outcomes:?}"
    );
    assert_eq!(balance(&*store, &t, CARD).await.1, full);
    let listed = store.quarantined().await.unwrap();
    assert!(listed[0].released_at.is_some());
    assert!(matches!(
        store.retry_quarantined(id + 100, T0).await,
        Err(StoreError::UnknownQuarantine(_))
    ));
    assert!(verify_ok(&*store).await);
}

async fn verify_names_each_bad_card_and_checks_the_others(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    let third = "4006381333955";
    store
        .push(
            &t,
            batch(vec![
                sale(1, CARD, 0, 7),
                sale(2, OTHER_CARD, 0, 7),
                sale(3, third, 0, 7),
            ]),
            T0,
        )
        .await
        .unwrap();
    assert!(verify_ok(&*store).await);
    // Two ledger rows of i64::MAX: the card's rows add up beyond 64 bits, which
    // made SQLite's SUM (and PostgreSQL's cast back to bigint) fail the whole run.
    for _ in 0..2 {
        store
            .exec(&format!(
                "INSERT INTO ledger (card, kind, delta_balance, delta_pending, at)
                 VALUES ('{CARD}', 'accrual', 9223372036854775807, 0, 0)"
            ))
            .await
            .unwrap();
    }
    store
        .exec(&format!(
            "UPDATE cards SET spend_drops_at = 9223372036854775807 WHERE card = '{third}'"
        ))
        .await
        .unwrap();
    let mut out = Vec::new();
    assert!(!admin::verify(&*store, &mut out).await.unwrap());
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(&format!(
            "card {}: balance (vs ledger) is 7, recomputed {}",
            protocol::ids::masked(CARD),
            7 + 2 * i128::from(i64::MAX)
        )),
        "{text}"
    );
    assert!(
        text.contains("card ****3955: its row is unreadable"),
        "{text}"
    );
    assert!(
        !text.contains(CARD) && !text.contains(third),
        "card numbers are masked: {text}"
    );
    assert!(
        !text.contains(&format!("card {}", protocol::ids::masked(OTHER_CARD))),
        "{text}"
    );
    assert!(text.contains("verified 3 cards"), "{text}");
}

/// SQLite runs the writes waiting at once in one transaction, a savepoint each: the
/// failing batch, each of its entries pushed again alone and the isolation of the bad
/// one share groups with other tills' pushes, and must undo none of them.
async fn a_batch_failing_inside_hq_spoils_none_of_the_pushes_running_with_it(store: Db) {
    let poisoned = terminal(&*store, "s1", "t1").await;
    store
        .push(&poisoned, batch(vec![sale(1, CARD, 0, 1)]), T0)
        .await
        .unwrap();
    store
        .exec(&format!(
            "UPDATE cards SET spend_drops_at = 9223372036854775807 WHERE card = '{CARD}'"
        ))
        .await
        .unwrap();
    let mut others = Vec::new();
    for i in 0..8 {
        others.push(terminal(&*store, "s2", &format!("t{i}")).await);
    }
    let bad = batch(vec![
        sale(2, OTHER_CARD, 0, 1),
        sale(3, CARD, 0, 1),
        sale(4, OTHER_CARD, 0, 1),
    ]);
    let shared = std::sync::Arc::clone(&store.store);
    let bad_push = tokio::spawn(async move { shared.push(&poisoned, bad, T0).await });
    let good: Vec<_> = others
        .iter()
        .map(|t| {
            let (store, t) = (std::sync::Arc::clone(&store.store), t.clone());
            let entries = (1..=3)
                .map(|seq| fresh(sale(seq, OTHER_CARD, 0, 1)))
                .collect();
            tokio::spawn(async move { store.push(&t, batch(entries), T0).await })
        })
        .collect();
    let outcome = bad_push.await.unwrap().unwrap();
    assert_eq!(outcome.acked_through, Seq(4));
    assert_eq!((outcome.applied, outcome.quarantined), (2, vec![Seq(3)]));
    for push in good {
        let outcome = push.await.unwrap().unwrap();
        assert_eq!(outcome.acked_through, Seq(3));
        assert_eq!((outcome.applied, outcome.quarantined), (3, Vec::new()));
    }
    // Two of the poisoned batch's entries and three of each other till's.
    assert_eq!(balance(&*store, &others[0], OTHER_CARD).await.1, Points(26));
    assert_eq!(store.quarantined().await.unwrap().len(), 1);
    store
        .exec(&format!(
            "UPDATE cards SET spend_drops_at = NULL WHERE card = '{CARD}'"
        ))
        .await
        .unwrap();
    assert!(verify_ok(&*store).await);
}

async fn a_quarantined_entry_counts_in_the_kpis_only_once_a_retry_applies_it(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    let most = Limits::CEILING.max_entry_points.get();
    let day = Period::new(T0.date(), T0.date()).unwrap();
    let receipts = || async {
        let inputs = store.kpi_inputs(day, None, T0).await.unwrap();
        inputs.days.iter().map(|(_, _, t)| t.receipts).sum::<i64>()
    };
    // The eleventh of the largest accruals would lift the card past its maximum.
    let entries: Vec<JournalEntry> = (1..=11).map(|seq| sale(seq, CARD, 0, most)).collect();
    let outcome = store.push(&t, batch(entries), T0).await.unwrap();
    assert_eq!(outcome.quarantined, vec![Seq(11)]);
    assert_eq!(receipts().await, 10);
    let id = store.quarantined().await.unwrap()[0].id;
    let mut spend = sale(12, CARD, 0, 0);
    if let EntryBody::Sale(s) = &mut spend.body {
        s.sale.redeemed_points = Points(most);
        s.sale.lines[0].redeemed_points = Points(most);
    }
    store.push(&t, batch(vec![spend]), T0).await.unwrap();
    assert_eq!(receipts().await, 11);
    let applied = store.retry_quarantined(id, T0).await.unwrap();
    assert!(matches!(applied, RetryOutcome::Applied), "{applied:?}");
    assert_eq!(receipts().await, 12);
    // A second retry applies nothing and adds nothing.
    let again = store.retry_quarantined(id, T0).await.unwrap();
    assert!(matches!(again, RetryOutcome::AlreadyApplied), "{again:?}");
    assert_eq!(receipts().await, 12);
}
