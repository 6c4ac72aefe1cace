//! The `Store` contract, run against every backend: exactly-once pushes, refusals
//! that apply nothing, the change feed, the job, `verify`, and concurrency (two
//! instances on one database, many terminals on one card while the job runs).
//!
//! Each test is written once against [`Db`] and instantiated for SQLite (a temporary
//! file) and PostgreSQL (a database of its own on the local server; see
//! `testkit::pg`) by `testkit::on_every_backend!`.

use crate::admin;
use crate::keys::{TerminalToken, TokenHash};
use crate::ledger::apply::tests::{CARD, T0, entry_id, pending_sale, sale, welcome};
use crate::ledger::batch::Batch;
use crate::ledger::kpi::{KpiInputs, Period};
use crate::ledger::sequence::Refusal;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{PullRequest, Store, StoreError, TerminalIdentity};
use protocol::journal::JournalEntry;
use protocol::rules::ProgramRules;
use protocol::wire::{LiveBalanceResponse, PullResponse};
use protocol::{CardId, Points, Seq, StoreId, TerminalId};
use std::path::PathBuf;
use std::sync::Arc;
use tempfile::TempDir;
use testkit::Backend;
use testkit::pg::TestDatabase;
use time::Duration;
use uuid::Uuid;

const OTHER_CARD: &str = "4006381333948";

/// Where a test's database lives.
enum Place {
    Sqlite { _dir: TempDir, path: PathBuf },
    Postgres(TestDatabase),
}

/// A fresh database of one backend and a store on it.
pub(crate) struct Db {
    store: Arc<dyn Store>,
    place: Place,
}

impl Db {
    /// A fresh database of `backend`; `None` when `SKIP_PG_TESTS=1` skips PostgreSQL,
    /// a failure when PostgreSQL is not reachable.
    async fn open(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("hq.db");
                let store = Arc::new(SqliteStore::open(&path).await.unwrap());
                Some(Self {
                    store,
                    place: Place::Sqlite { _dir: dir, path },
                })
            }
            Backend::Postgres => {
                let db = TestDatabase::create()
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))?;
                let store = Arc::new(PgStore::open(db.url()).await.unwrap());
                Some(Self {
                    store,
                    place: Place::Postgres(db),
                })
            }
        }
    }

    /// Another store on the same database, as a second server instance would open.
    async fn another_store(&self) -> Arc<dyn Store> {
        match &self.place {
            Place::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).await.unwrap()),
            Place::Postgres(db) => Arc::new(PgStore::open(db.url()).await.unwrap()),
        }
    }

    /// Waits until a pull can answer every change committed so far (see
    /// [`TestDatabase::settle`]; SQLite's feed has no such delay).
    async fn settle(&self) {
        if let Place::Postgres(db) = &self.place {
            db.settle().await.unwrap();
        }
    }

    /// Runs raw SQL on the database, as someone tampering with it would.
    async fn exec(&self, sql: &str) -> Result<(), String> {
        match &self.place {
            Place::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .and_then(|c| c.execute_batch(sql))
                .map_err(|e| e.to_string()),
            Place::Postgres(db) => db.execute(sql).await.map_err(|e| e.to_string()),
        }
    }
}

impl std::ops::Deref for Db {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        self.store.as_ref()
    }
}

testkit::on_every_backend!(
    open: Db::open;
    the_same_batch_twice_is_applied_once_then_reported_as_duplicates,
    an_empty_batch_is_a_probe_for_acked_through,
    a_held_seq_with_another_body_is_a_conflict_and_nothing_is_applied,
    a_batch_past_the_next_seq_is_a_gap_that_names_what_hq_holds,
    an_entry_id_reused_by_another_terminal_is_an_id_conflict,
    an_id_reused_deep_in_a_large_batch_is_the_one_named,
    a_batch_that_fails_midway_applies_nothing,
    pull_pages_through_the_store_cards_and_carries_blocks_and_acked_through,
    a_card_s_changes_reach_every_store_that_holds_it_whoever_writes_them,
    rules_are_pulled_only_when_newer_and_versions_only_go_up,
    the_job_matures_and_expires_lots_once_per_instant,
    tiers_follow_the_spend_window_and_new_rules_through_the_job,
    a_push_after_the_window_moved_counts_only_the_spend_still_in_it,
    flagged_entries_are_applied_and_reported,
    verify_detects_a_tampered_balance_and_a_tampered_ack,
    verify_names_each_card_that_rows_name_and_no_card_row_holds,
    revoked_terminals_lose_their_token_and_rotation_replaces_it,
    the_schema_enforces_unique_seq_per_terminal_and_unique_entry_ids,
    blocking_twice_changes_nothing_and_keys_rotate_with_a_grace_period,
    the_same_batches_pushed_to_two_instances_at_once_are_applied_once,
    many_terminals_selling_on_one_card_while_the_job_runs_keep_its_balance_exact,
    kpi_aggregates_count_each_entry_once_per_store_and_day,
    a_member_s_first_day_is_its_earliest_receipt_in_any_push_order,
    kpi_cohorts_follow_each_member_from_its_first_month,
    member_counts_take_each_window_of_the_chain_or_the_store,
);

mod escrow;
mod extremes;
mod kpi_programs;
mod quarantine;
mod round_trips;

/// A terminal of the tests: who it is, and its token's hash (what a live balance
/// lookup authenticates).
#[derive(Clone)]
struct TestTerminal {
    identity: TerminalIdentity,
    token: TokenHash,
}

impl std::ops::Deref for TestTerminal {
    type Target = TerminalIdentity;

    fn deref(&self) -> &TerminalIdentity {
        &self.identity
    }
}

async fn terminal(store: &dyn Store, s: &str, t: &str) -> TestTerminal {
    let token = TerminalToken::generate().unwrap();
    let (s, t) = (StoreId::parse(s).unwrap(), TerminalId::parse(t).unwrap());
    store
        .add_terminal(&s, &t, &token.hash(), false, T0)
        .await
        .unwrap();
    let identity = store.authenticate(&token.hash()).await.unwrap().unwrap();
    TestTerminal {
        identity,
        token: token.hash(),
    }
}

/// The live balance `t` is answered for `c`.
async fn live(store: &dyn Store, t: &TestTerminal, c: &str) -> LiveBalanceResponse {
    store
        .live_balance(&t.token, &card(c), T0)
        .await
        .unwrap()
        .expect("an active terminal is answered")
}

fn batch(entries: Vec<JournalEntry>) -> Batch {
    Batch::new(entries).unwrap()
}

/// Entries of a second terminal: same shapes, other ids.
fn other_terminal(mut e: JournalEntry) -> JournalEntry {
    e.id = Uuid::from_u128(0xF000_0000 + u128::from(e.seq.get()));
    e
}

fn card(s: &str) -> CardId {
    CardId::parse(s).unwrap()
}

async fn balance(store: &dyn Store, t: &TestTerminal, c: &str) -> (Seq, Points, Points) {
    let live = live(store, t, c).await;
    (
        live.acked_through,
        live.balance.balance,
        live.balance.pending,
    )
}

async fn verify_ok(store: &dyn Store) -> bool {
    let mut out = Vec::new();
    let ok = admin::verify(store, &mut out).await.unwrap();
    if !ok {
        eprintln!("{}", String::from_utf8_lossy(&out));
    }
    ok
}

async fn the_same_batch_twice_is_applied_once_then_reported_as_duplicates(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    let entries = vec![sale(1, CARD, 0, 10), sale(2, CARD, 0, 5)];
    let first = store.push(&t, batch(entries.clone()), T0).await.unwrap();
    assert_eq!(
        (first.acked_through, first.applied, first.duplicates),
        (Seq(2), 2, 0)
    );
    let again = store.push(&t, batch(entries.clone()), T0).await.unwrap();
    assert_eq!(
        (again.acked_through, again.applied, again.duplicates),
        (Seq(2), 0, 2)
    );
    // An overlapping batch: the held part is duplicate, the rest is applied.
    let mut overlap = entries;
    overlap.push(sale(3, CARD, 4, 0));
    let third = store.push(&t, batch(overlap), T0).await.unwrap();
    assert_eq!(
        (third.acked_through, third.applied, third.duplicates),
        (Seq(3), 1, 2)
    );
    assert_eq!(
        balance(&*store, &t, CARD).await,
        (Seq(3), Points(11), Points(0))
    );
    assert!(verify_ok(&*store).await);
}

async fn an_empty_batch_is_a_probe_for_acked_through(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    store
        .push(&t, batch(vec![sale(1, CARD, 0, 10)]), T0)
        .await
        .unwrap();
    let probe = store.push(&t, batch(vec![]), T0).await.unwrap();
    assert_eq!(
        (probe.acked_through, probe.applied, probe.duplicates),
        (Seq(1), 0, 0)
    );
}

async fn a_held_seq_with_another_body_is_a_conflict_and_nothing_is_applied(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    store
        .push(&t, batch(vec![sale(1, CARD, 0, 10)]), T0)
        .await
        .unwrap();
    let rewritten = sale(1, CARD, 0, 99);
    let err = store
        .push(&t, batch(vec![rewritten, sale(2, CARD, 0, 7)]), T0)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::Refused(Refusal::Conflict { seq: Seq(1), .. })
    ));
    assert_eq!(
        balance(&*store, &t, CARD).await,
        (Seq(1), Points(10), Points(0))
    );
}

async fn a_batch_past_the_next_seq_is_a_gap_that_names_what_hq_holds(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    store
        .push(&t, batch(vec![sale(1, CARD, 0, 10)]), T0)
        .await
        .unwrap();
    let err = store
        .push(&t, batch(vec![sale(3, CARD, 0, 10)]), T0)
        .await
        .unwrap_err();
    match err {
        StoreError::Refused(r @ Refusal::Gap { .. }) => assert_eq!(r.acked_through(), Seq(1)),
        other => panic!("expected a gap, got {other:?}"),
    }
}

async fn an_entry_id_reused_by_another_terminal_is_an_id_conflict(store: Db) {
    let t1 = terminal(&*store, "s1", "t1").await;
    let t2 = terminal(&*store, "s1", "t2").await;
    store
        .push(&t1, batch(vec![sale(1, CARD, 0, 10)]), T0)
        .await
        .unwrap();
    let err = store
        .push(&t2, batch(vec![sale(1, CARD, 0, 10)]), T0)
        .await
        .unwrap_err();
    match err {
        StoreError::Refused(Refusal::IdConflict { id, owner, .. }) => {
            assert_eq!(id, entry_id(1));
            assert_eq!(owner, "s1/t1 seq 1");
        }
        other => panic!("expected an id conflict, got {other:?}"),
    }
    assert_eq!(
        balance(&*store, &t2, CARD).await,
        (Seq(0), Points(10), Points(0))
    );
    // Beside a duplicate t2 already holds, the reused id is still the one named.
    store
        .push(&t1, batch(vec![sale(2, CARD, 0, 10)]), T0)
        .await
        .unwrap();
    let own = other_terminal(sale(1, CARD, 0, 3));
    store.push(&t2, batch(vec![own.clone()]), T0).await.unwrap();
    let err = store
        .push(&t2, batch(vec![own, sale(2, CARD, 0, 10)]), T0)
        .await
        .unwrap_err();
    match err {
        StoreError::Refused(Refusal::IdConflict { id, owner, .. }) => {
            assert_eq!((id, owner.as_str()), (entry_id(2), "s1/t1 seq 2"));
        }
        other => panic!("expected an id conflict, got {other:?}"),
    }
}

/// SQLite inserts a batch's entries 32 rows per statement: the id named is the one
/// that clashed, in the middle of a later statement, and nothing of the batch stays.
async fn an_id_reused_deep_in_a_large_batch_is_the_one_named(store: Db) {
    let t1 = terminal(&*store, "s1", "t1").await;
    let t2 = terminal(&*store, "s1", "t2").await;
    let own: Vec<JournalEntry> = (1..=45).map(|s| sale(s, CARD, 0, 10)).collect();
    store.push(&t1, batch(own), T0).await.unwrap();
    // t2's own ids, but for its 37th entry (the 5th row of its second statement).
    let reused: Vec<JournalEntry> = (1..=45)
        .map(|s| match s {
            37 => sale(s, CARD, 0, 10),
            _ => other_terminal(sale(s, CARD, 0, 10)),
        })
        .collect();
    let err = store.push(&t2, batch(reused), T0).await.unwrap_err();
    match err {
        StoreError::Refused(Refusal::IdConflict { id, owner, .. }) => {
            assert_eq!((id, owner.as_str()), (entry_id(37), "s1/t1 seq 37"));
        }
        other => panic!("expected an id conflict, got {other:?}"),
    }
    assert_eq!(
        balance(&*store, &t2, CARD).await,
        (Seq(0), Points(450), Points(0))
    );
}

/// A refused batch writes nothing at all: not its known cards' figures and lots, not
/// the cards HQ never held, not the KPI aggregates, not the store's feed, not the
/// ack. (On PostgreSQL the push's `COMMIT` goes out in the same flight as its
/// writes; the failed entry insert aborted the transaction, so that `COMMIT` rolled
/// it back.)
async fn a_batch_that_fails_midway_applies_nothing(store: Db) {
    let t1 = terminal(&*store, "s1", "t1").await;
    let t2 = terminal(&*store, "s2", "t1").await;
    store
        .push(&t1, batch(vec![sale(1, CARD, 0, 10)]), T0)
        .await
        .unwrap();
    let day = Period::new(T0.date(), T0.date()).unwrap();
    let kpi_before = store.kpi_inputs(day, None, T0).await.unwrap();
    let report_before = store.card_report(&card(CARD), 10).await.unwrap();
    // Entries 1 to 3 are fine (a redemption on a card HQ holds, which consumes its
    // lots, and a card HQ never held); entry 4 reuses t1's entry id and fails at
    // insert, with the others written inside the transaction.
    let mut fourth = other_terminal(sale(4, OTHER_CARD, 0, 1));
    fourth.id = entry_id(1);
    let entries = vec![
        other_terminal(sale(1, CARD, 6, 0)),
        other_terminal(sale(2, OTHER_CARD, 0, 10)),
        other_terminal(sale(3, OTHER_CARD, 0, 10)),
        fourth,
    ];
    let err = store.push(&t2, batch(entries), T0).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Refused(Refusal::IdConflict { .. })),
        "{err:?}"
    );
    assert_eq!(
        balance(&*store, &t2, OTHER_CARD).await,
        (Seq(0), Points(0), Points(0))
    );
    assert_eq!(
        store.card_report(&card(CARD), 10).await.unwrap(),
        report_before
    );
    assert_eq!(store.kpi_inputs(day, None, T0).await.unwrap(), kpi_before);
    assert!(
        store
            .card_report(&card(OTHER_CARD), 10)
            .await
            .unwrap()
            .is_none()
    );
    store.settle().await;
    let pulled = store
        .pull(
            &t2,
            PullRequest {
                cursor: None,
                rules_version: 0,
                page_size: 10,
            },
            T0,
        )
        .await
        .unwrap();
    assert!(pulled.balances.is_empty());
    assert!(verify_ok(&*store).await);
}

async fn pull_pages_through_the_store_cards_and_carries_blocks_and_acked_through(store: Db) {
    let t1 = terminal(&*store, "s1", "t1").await;
    let t2 = terminal(&*store, "s2", "t1").await;
    let cards = ["100000000001", "100000000002", "100000000003"];
    let entries: Vec<_> = cards
        .iter()
        .enumerate()
        .map(|(i, c)| sale(i as u64 + 1, c, 0, 5))
        .collect();
    store.push(&t1, batch(entries), T0).await.unwrap();
    store
        .push(
            &t2,
            batch(vec![other_terminal(sale(1, "200000000001", 0, 5))]),
            T0,
        )
        .await
        .unwrap();
    store
        .set_blocked(&card("100000000002"), true, Some("fraud"), T0)
        .await
        .unwrap();
    store.settle().await;
    let pull = |cursor: Option<String>| {
        let store = Arc::clone(&store.store);
        let t1 = t1.clone();
        async move { pull_page(&*store, &t1, cursor.as_deref()).await }
    };
    let first = pull(None).await;
    assert!(first.more);
    assert_eq!(first.acked_through, Seq(3));
    assert_eq!(first.balances.len(), 2);
    let second = pull(Some(first.cursor.clone())).await;
    assert!(!second.more);
    let mut seen: Vec<String> = first
        .balances
        .iter()
        .chain(&second.balances)
        .map(|b| b.card.to_string())
        .collect();
    seen.sort();
    // Card 2 changed twice (sale, block) but its latest state comes once; the other
    // store's card never comes.
    assert_eq!(seen, cards);
    let blocked_card = second
        .balances
        .iter()
        .find(|b| b.card.as_str() == "100000000002");
    assert!(blocked_card.is_some_and(|b| b.blocked));
    let blocks: Vec<_> = first.blocked.iter().chain(&second.blocked).collect();
    assert_eq!(blocks.len(), 1);
    assert!(blocks[0].blocked);
    // Nothing changed since: nothing comes, now or from the idle answer's cursor (on
    // PostgreSQL the cursor itself moves with other databases' transactions).
    let idle = pull(Some(second.cursor.clone())).await;
    assert!(idle.balances.is_empty() && idle.blocked.is_empty() && !idle.more);
    let again = pull(Some(idle.cursor.clone())).await;
    assert!(again.balances.is_empty() && again.blocked.is_empty() && !again.more);
    assert!(matches!(
        store
            .pull(
                &t1,
                PullRequest {
                    cursor: Some("x"),
                    rules_version: 0,
                    page_size: 2
                },
                T0
            )
            .await,
        Err(StoreError::BadCursor(_))
    ));
}

/// `t`'s pull of a 2-card page from `cursor`.
async fn pull_page(store: &dyn Store, t: &TerminalIdentity, cursor: Option<&str>) -> PullResponse {
    store
        .pull(
            t,
            PullRequest {
                cursor,
                rules_version: 0,
                page_size: 2,
            },
            T0,
        )
        .await
        .unwrap()
}

/// What `t`'s pull from `cursor` answers, each page pulled at once until no more:
/// each card's (card, balance, pending, blocked), and the next cursor.
async fn pulled(
    store: &Db,
    t: &TestTerminal,
    cursor: Option<String>,
) -> (Vec<(String, i64, i64, bool)>, String) {
    store.settle().await;
    let (mut cards, mut cursor) = (Vec::new(), cursor);
    loop {
        let page = pull_page(&**store, t, cursor.as_deref()).await;
        cards.extend(page.balances.iter().map(|b| {
            (
                b.card.to_string(),
                b.balance.get(),
                b.pending.get(),
                b.blocked,
            )
        }));
        cursor = Some(page.cursor);
        if !page.more {
            return (cards, cursor.unwrap_or_default());
        }
    }
}

/// Every change of a card reaches the feed of every store that holds it, whoever
/// writes it (a push at another store, an admin's block, the ledger job), and a
/// store's first push of a card HQ already holds brings the store the card's state.
async fn a_card_s_changes_reach_every_store_that_holds_it_whoever_writes_them(store: Db) {
    let t1 = terminal(&*store, "s1", "t1").await;
    let t2 = terminal(&*store, "s2", "t1").await;
    let matures = T0 + Duration::days(5);
    store
        .push(
            &t1,
            batch(vec![
                sale(1, CARD, 0, 10),
                pending_sale(2, OTHER_CARD, 20, matures),
            ]),
            T0,
        )
        .await
        .unwrap();
    let card_state = |c: &str, balance, pending, blocked| (c.to_owned(), balance, pending, blocked);
    let (mut s1, c1) = pulled(&store, &t1, None).await;
    s1.sort();
    assert_eq!(
        s1,
        [
            card_state(CARD, 10, 0, false),
            card_state(OTHER_CARD, 20, 20, false)
        ]
    );
    // Store s2's first push of the card: the new membership brings s2 its state.
    store
        .push(&t2, batch(vec![other_terminal(sale(1, CARD, 0, 5))]), T0)
        .await
        .unwrap();
    let (s2, c2) = pulled(&store, &t2, None).await;
    assert_eq!(s2, [card_state(CARD, 15, 0, false)]);
    // The push at s2 reaches s1.
    let (s1, c1) = pulled(&store, &t1, Some(c1)).await;
    assert_eq!(s1, [card_state(CARD, 15, 0, false)]);
    // An admin's block reaches both stores.
    store
        .set_blocked(&card(CARD), true, Some("fraud"), T0)
        .await
        .unwrap();
    let (s1, c1) = pulled(&store, &t1, Some(c1)).await;
    assert_eq!(s1, [card_state(CARD, 15, 0, true)]);
    let (s2, c2) = pulled(&store, &t2, Some(c2)).await;
    assert_eq!(s2, [card_state(CARD, 15, 0, true)]);
    // The job matures the other card's points: s1 holds it, s2 does not.
    store.run_jobs(matures).await.unwrap();
    let (s1, _) = pulled(&store, &t1, Some(c1)).await;
    assert_eq!(s1, [card_state(OTHER_CARD, 20, 0, false)]);
    let (s2, _) = pulled(&store, &t2, Some(c2)).await;
    assert!(s2.is_empty(), "{s2:?}");
    assert!(verify_ok(&*store).await);
}

async fn rules_are_pulled_only_when_newer_and_versions_only_go_up(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    let rules = ProgramRules {
        welcome_bonus_points: Points(50),
        ..ProgramRules::default()
    };
    assert_eq!(store.set_rules(rules.clone(), T0).await.unwrap(), 1);
    assert_eq!(
        store
            .set_rules(
                ProgramRules {
                    version: 5,
                    ..rules.clone()
                },
                T0
            )
            .await
            .unwrap(),
        5
    );
    assert!(matches!(
        store
            .set_rules(
                ProgramRules {
                    version: 4,
                    ..rules.clone()
                },
                T0
            )
            .await,
        Err(StoreError::RulesVersion(_))
    ));
    let req = |v| PullRequest {
        cursor: None,
        rules_version: v,
        page_size: 10,
    };
    let pulled = store.pull(&t, req(1), T0).await.unwrap();
    assert_eq!(pulled.rules.map(|r| r.version), Some(5));
    assert!(store.pull(&t, req(5), T0).await.unwrap().rules.is_none());
    // With a welcome bonus in force, HQ grants it on first sight.
    store
        .push(&t, batch(vec![sale(1, CARD, 0, 10)]), T0)
        .await
        .unwrap();
    assert_eq!(balance(&*store, &t, CARD).await.1, Points(60));
    assert_eq!(store.health().await.unwrap(), 5);
}

async fn the_job_matures_and_expires_lots_once_per_instant(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    store
        .set_rules(
            ProgramRules {
                expiry_days: 30,
                ..ProgramRules::default()
            },
            T0,
        )
        .await
        .unwrap();
    let matures = T0 + Duration::days(5);
    store
        .push(
            &t,
            batch(vec![
                pending_sale(1, CARD, 20, matures),
                welcome(2, CARD, 7),
            ]),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        balance(&*store, &t, CARD).await,
        (Seq(2), Points(27), Points(20))
    );
    let report = store.run_jobs(matures).await.unwrap();
    assert_eq!(report.matured_points, Points(20));
    assert_eq!(balance(&*store, &t, CARD).await.2, Points(0));
    assert_eq!(store.run_jobs(matures).await.unwrap(), Default::default());
    let report = store.run_jobs(T0 + Duration::days(31)).await.unwrap();
    assert_eq!(report.expired_points, Points(27));
    assert_eq!(balance(&*store, &t, CARD).await.1, Points(0));
    assert!(verify_ok(&*store).await);
}

async fn tiers_follow_the_spend_window_and_new_rules_through_the_job(store: Db) {
    use protocol::rules::Tier;
    use protocol::{BasisPoints, Money};
    let t = terminal(&*store, "s1", "t1").await;
    let tier = |name: &str, min: i64| Tier {
        name: name.into(),
        min_spend_minor: Money(min),
        accrual_bp: BasisPoints(700),
    };
    let rules = ProgramRules {
        tiers: vec![tier("silver", 15_000)],
        ..ProgramRules::default()
    };
    store.set_rules(rules.clone(), T0).await.unwrap();
    store
        .push(
            &t,
            batch(vec![sale(1, CARD, 0, 5), sale(2, CARD, 0, 5)]),
            T0,
        )
        .await
        .unwrap();
    let tier_of = || async {
        store
            .card_report(&card(CARD), 1)
            .await
            .unwrap()
            .unwrap()
            .state
            .tier
    };
    assert_eq!(tier_of().await.as_deref(), Some("silver"));
    assert_eq!(
        store
            .run_jobs(T0 + Duration::days(100))
            .await
            .unwrap()
            .tier_updates,
        0
    );
    // The first sale leaves the window: 100.00 remains, below silver.
    let report = store
        .run_jobs(T0 + Duration::days(365) + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(report.tier_updates, 1);
    assert_eq!(tier_of().await, None);
    let report = store.run_jobs(T0 + Duration::days(366)).await.unwrap();
    assert_eq!(report.tier_updates, 1, "the second sale leaves too");
    // New rules with a tier every card reaches: the next run re-tiers every card once.
    let rules = ProgramRules {
        tiers: vec![tier("member", 0), tier("silver", 15_000)],
        ..rules
    };
    store.set_rules(rules, T0).await.unwrap();
    let report = store.run_jobs(T0 + Duration::days(366)).await.unwrap();
    assert_eq!(report.tier_updates, 1);
    assert_eq!(tier_of().await.as_deref(), Some("member"));
    assert_eq!(
        store
            .run_jobs(T0 + Duration::days(366))
            .await
            .unwrap()
            .tier_updates,
        0
    );
}

async fn a_push_after_the_window_moved_counts_only_the_spend_still_in_it(store: Db) {
    use protocol::rules::Tier;
    use protocol::{BasisPoints, Money};
    let rules = ProgramRules {
        tiers: vec![Tier {
            name: "silver".into(),
            min_spend_minor: Money(15_000),
            accrual_bp: BasisPoints(700),
        }],
        ..ProgramRules::default()
    };
    store.set_rules(rules, T0).await.unwrap();
    let t = terminal(&*store, "s1", "t1").await;
    store
        .push(&t, batch(vec![sale(1, CARD, 0, 5)]), T0)
        .await
        .unwrap();
    let state = |report: Option<crate::store::CardReport>| {
        let s = report.unwrap().state;
        (s.spend_12m, s.tier)
    };
    assert_eq!(
        state(store.card_report(&card(CARD), 1).await.unwrap()),
        (Money(10_000), None)
    );
    // A year and a day later, without the job having run: the first sale no longer
    // counts, so the second alone does not reach silver.
    let later = T0 + Duration::days(366);
    let mut second = sale(2, CARD, 0, 5);
    second.at = later;
    store.push(&t, batch(vec![second]), later).await.unwrap();
    assert_eq!(
        state(store.card_report(&card(CARD), 1).await.unwrap()),
        (Money(10_000), None)
    );
    // Within the window both count.
    let mut third = sale(3, CARD, 0, 5);
    third.at = later;
    store.push(&t, batch(vec![third]), later).await.unwrap();
    assert_eq!(
        state(store.card_report(&card(CARD), 1).await.unwrap()),
        (Money(20_000), Some("silver".to_owned()))
    );
}

async fn flagged_entries_are_applied_and_reported(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    store
        .push(&t, batch(vec![sale(1, CARD, 0, 10)]), T0)
        .await
        .unwrap();
    store
        .set_blocked(&card(CARD), true, None, T0)
        .await
        .unwrap();
    store
        .push(&t, batch(vec![sale(2, CARD, 15, 0)]), T0)
        .await
        .unwrap();
    assert_eq!(balance(&*store, &t, CARD).await.1, Points(-5));
    let flags = store.flagged_entries().await.unwrap();
    let kinds: Vec<&str> = flags.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, ["blocked_card", "overdraft"]);
    assert_eq!(flags[0].seq, Seq(2));
    let overdrafts = store.overdrafts().await.unwrap();
    assert_eq!(overdrafts.len(), 1);
    assert_eq!(overdrafts[0].flagged.len(), 2);
    assert!(verify_ok(&*store).await);
}

async fn verify_detects_a_tampered_balance_and_a_tampered_ack(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    store
        .push(
            &t,
            batch(vec![sale(1, CARD, 0, 10), sale(2, CARD, 3, 0)]),
            T0,
        )
        .await
        .unwrap();
    assert!(verify_ok(&*store).await);
    store
        .exec("UPDATE cards SET balance = balance + 1")
        .await
        .unwrap();
    let mut out = Vec::new();
    assert!(!admin::verify(&*store, &mut out).await.unwrap());
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("balance (vs ledger) is 8, recomputed 7"),
        "{text}"
    );
    store
        .exec("UPDATE cards SET balance = balance - 1; UPDATE terminals SET acked_through = 5")
        .await
        .unwrap();
    assert!(!verify_ok(&*store).await);
}

/// Neither backend keeps ledger rows, lots or store memberships from naming a card
/// HQ holds no row for (no foreign key on the push's tables): `verify` names each.
async fn verify_names_each_card_that_rows_name_and_no_card_row_holds(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    store
        .push(&t, batch(vec![sale(1, CARD, 0, 10)]), T0)
        .await
        .unwrap();
    assert!(verify_ok(&*store).await);
    let missing = |c: &str| {
        format!(
            "card {}: ledger rows, lots or store memberships without a card row",
            card(c).masked()
        )
    };
    let verified = || async {
        let mut out = Vec::new();
        assert!(!admin::verify(&*store, &mut out).await.unwrap());
        String::from_utf8(out).unwrap()
    };
    store
        .exec(&format!(
            "INSERT INTO store_cards (store, card) VALUES ('s2', '{OTHER_CARD}')"
        ))
        .await
        .unwrap();
    let text = verified().await;
    assert!(text.contains(&missing(OTHER_CARD)), "{text}");
    assert!(text.contains("1 differences"), "{text}");
    store
        .exec(&format!(
            "DELETE FROM store_cards WHERE card = '{OTHER_CARD}';
             DELETE FROM cards WHERE card = '{CARD}'"
        ))
        .await
        .unwrap();
    let text = verified().await;
    assert!(text.contains(&missing(CARD)), "{text}");
    assert!(text.contains("1 differences"), "{text}");
}

async fn revoked_terminals_lose_their_token_and_rotation_replaces_it(store: Db) {
    let (s, t) = (
        StoreId::parse("s1").unwrap(),
        TerminalId::parse("t1").unwrap(),
    );
    let old = TerminalToken::generate().unwrap();
    store
        .add_terminal(&s, &t, &old.hash(), false, T0)
        .await
        .unwrap();
    let before_rotation = store.authenticate(&old.hash()).await.unwrap().unwrap();
    let new = TerminalToken::generate().unwrap();
    assert!(matches!(
        store.add_terminal(&s, &t, &new.hash(), false, T0).await,
        Err(StoreError::TerminalActive { .. })
    ));
    store
        .add_terminal(&s, &t, &new.hash(), true, T0)
        .await
        .unwrap();
    assert!(store.authenticate(&old.hash()).await.unwrap().is_none());
    // An identity read under the old token (as HTTP remembers one) pushes nothing:
    // the push's own transaction finds the token replaced.
    assert!(matches!(
        store
            .push(&before_rotation, batch(vec![sale(1, CARD, 0, 1)]), T0)
            .await,
        Err(StoreError::Revoked(_))
    ));
    let identity = store.authenticate(&new.hash()).await.unwrap().unwrap();
    // The live balance authenticates in its own snapshot: only the active token is
    // answered, and a card HQ holds is read for nobody else.
    store
        .push(&identity, batch(vec![sale(1, CARD, 0, 1)]), T0)
        .await
        .unwrap();
    let looked_up = |hash: TokenHash| {
        let store = &store;
        async move { store.live_balance(&hash, &card(CARD), T0).await.unwrap() }
    };
    assert_eq!(
        looked_up(new.hash()).await.map(|l| l.acked_through),
        Some(Seq(1))
    );
    assert!(looked_up(old.hash()).await.is_none());
    let unknown = TerminalToken::generate().unwrap();
    assert!(looked_up(unknown.hash()).await.is_none());
    store.revoke_terminal(&s, &t, T0).await.unwrap();
    assert!(store.authenticate(&new.hash()).await.unwrap().is_none());
    assert!(looked_up(new.hash()).await.is_none());
    assert!(matches!(
        store
            .push(&identity, batch(vec![sale(2, CARD, 0, 1)]), T0)
            .await,
        Err(StoreError::Revoked(_))
    ));
    let listed = store.list_terminals().await.unwrap();
    assert!(listed[0].revoked_at.is_some());
}

async fn the_schema_enforces_unique_seq_per_terminal_and_unique_entry_ids(store: Db) {
    let t = terminal(&*store, "s1", "t1").await;
    store
        .push(&t, batch(vec![sale(1, CARD, 0, 10)]), T0)
        .await
        .unwrap();
    let copy = |id: String, seq: i64| {
        let sql = format!(
            "INSERT INTO entries (id, terminal_ref, seq, at, kind, card, spend_minor,
                                  rules_version, content_hash, body, received_at)
             SELECT '{id}', terminal_ref, {seq}, at, kind, card, spend_minor, rules_version,
                    content_hash, body, received_at FROM entries LIMIT 1"
        );
        let store = &store;
        async move { store.exec(&sql).await }
    };
    let another = Uuid::from_u128(0xAA).to_string();
    assert!(copy(another.clone(), 1).await.is_err());
    assert!(copy(entry_id(1).to_string(), 2).await.is_err());
    assert!(copy(another, 2).await.is_ok());
}

async fn blocking_twice_changes_nothing_and_keys_rotate_with_a_grace_period(store: Db) {
    let c = card(CARD);
    assert!(store.set_blocked(&c, true, Some("lost"), T0).await.unwrap());
    assert!(
        !store
            .set_blocked(&c, true, Some("again"), T0)
            .await
            .unwrap()
    );
    let report = store.card_report(&c, 5).await.unwrap().unwrap();
    assert!(report.state.blocked);
    assert_eq!(report.block_reason.as_deref(), Some("lost"));
    assert!(store.set_blocked(&c, false, None, T0).await.unwrap());
    assert!(store.current_signing_key().await.unwrap().is_none());
    let first = crate::keys::generate_signing_key().unwrap();
    let second = crate::keys::generate_signing_key().unwrap();
    assert_eq!(
        store
            .rotate_keys(&first, Duration::days(30), T0)
            .await
            .unwrap()
            .key_id
            .0,
        1
    );
    store
        .rotate_keys(&second, Duration::days(30), T0)
        .await
        .unwrap();
    let keys = store.list_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].valid_until, Some(T0 + Duration::days(30)));
    assert_eq!(keys[1].valid_until, None);
    let (id, key) = store.current_signing_key().await.unwrap().unwrap();
    assert_eq!((id.0, key.to_bytes()), (2, second.to_bytes()));
}

/// A sale with a random id, as a real till makes them.
fn fresh(mut e: JournalEntry) -> JournalEntry {
    e.id = Uuid::new_v4();
    e
}

async fn the_same_batches_pushed_to_two_instances_at_once_are_applied_once(store: Db) {
    let other = store.another_store().await;
    let t = terminal(&*store, "s1", "t1").await;
    let mut seq = 0;
    for _ in 0..10 {
        let entries: Vec<_> = (0..20)
            .map(|_| {
                seq += 1;
                fresh(sale(seq, CARD, 0, 5))
            })
            .collect();
        let (a, b) = tokio::join!(
            store.push(&t, batch(entries.clone()), T0),
            other.push(&t, batch(entries), T0)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(
            (a.applied + b.applied, a.duplicates + b.duplicates),
            (20, 20)
        );
        assert_eq!((a.acked_through, b.acked_through), (Seq(seq), Seq(seq)));
    }
    assert_eq!(
        balance(&*other, &t, CARD).await,
        (Seq(200), Points(1000), Points(0))
    );
    assert!(verify_ok(&*store).await);
}

async fn many_terminals_selling_on_one_card_while_the_job_runs_keep_its_balance_exact(store: Db) {
    const TERMINALS: u64 = 6;
    const ROUNDS: u64 = 8;
    let other = store.another_store().await;
    let mut expected = 0i64;
    let mut tasks = Vec::new();
    for i in 0..TERMINALS {
        let t = terminal(&*store, "s1", &format!("t{i}")).await;
        // Half the terminals push through the second instance.
        let target = if i % 2 == 0 {
            Arc::clone(&store.store)
        } else {
            Arc::clone(&other)
        };
        let batches: Vec<Vec<JournalEntry>> = (0..ROUNDS)
            .map(|round| {
                (1..=4)
                    .map(|k| {
                        let seq = round * 4 + k;
                        let e = match k {
                            1 => pending_sale(seq, CARD, 6, T0 + Duration::minutes(30)),
                            2 => sale(seq, CARD, 3, 0),
                            _ => sale(seq, CARD, 1, 4),
                        };
                        fresh(e)
                    })
                    .collect()
            })
            .collect();
        expected += batches.iter().flatten().map(effect).sum::<i64>();
        tasks.push(tokio::spawn(async move {
            for b in batches {
                target.push(&t, batch(b), T0).await.unwrap();
            }
        }));
    }
    // The job runs all along, at times when the pending points have matured.
    let job_store = Arc::clone(&other);
    let job = tokio::spawn(async move {
        for minute in 0..20 {
            job_store
                .run_jobs(T0 + Duration::minutes(25 + minute))
                .await
                .unwrap();
        }
    });
    for t in tasks {
        t.await.unwrap();
    }
    job.await.unwrap();
    store.run_jobs(T0 + Duration::days(1)).await.unwrap();
    let report = store.card_report(&card(CARD), 1).await.unwrap().unwrap();
    assert_eq!(report.state.balance, Points(expected));
    assert_eq!(report.state.pending, Points(0));
    assert!(verify_ok(&*store).await);
}

/// Accrued minus redeemed points of a sale.
fn effect(e: &JournalEntry) -> i64 {
    match &e.body {
        protocol::journal::EntryBody::Sale(s) => {
            s.sale.accrued_points.get() - s.sale.redeemed_points.get()
        }
        _ => 0,
    }
}

/// What only the PostgreSQL backend has: its snapshot cursor, concurrent migrations,
/// and the classification of conflicts it retries.
mod postgres_only {
    use super::*;
    use crate::store::postgres::retry::is_transient;
    use crate::store::postgres::schema;

    fn testdb(db: &Db) -> &TestDatabase {
        match &db.place {
            Place::Postgres(t) => t,
            Place::Sqlite { .. } => unreachable!("a PostgreSQL test"),
        }
    }

    /// A connection inside a transaction that inserted a row of `CARD` and has not
    /// committed it: a push finds no row of the card to lock, and its insert of the
    /// card waits for this transaction.
    async fn uncommitted_card(db: &TestDatabase) -> tokio_postgres::Client {
        let other = db.client().await.unwrap();
        other
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO cards (card, balance, pending, spend_12m, welcome_given, seen,
                                    change_xid, updated_at)
                 VALUES ('{CARD}', 0, 0, 0, FALSE, FALSE, loyalty_xid(), 0);"
            ))
            .await
            .unwrap();
        other
    }

    /// A push of `entry` by `t`, running on its own task.
    fn spawn_push(
        db: &Db,
        t: &TestTerminal,
        entry: JournalEntry,
    ) -> tokio::task::JoinHandle<Result<crate::store::PushOutcome, StoreError>> {
        let (store, t) = (Arc::clone(&db.store), t.clone());
        tokio::spawn(async move { store.push(&t, batch(vec![entry]), T0).await })
    }

    /// Waits until `n` backends of the test's database wait for a lock. Asked on a
    /// connection of its own, outside any transaction: inside one, every read of
    /// `pg_stat_activity` answers the snapshot its first one took.
    async fn lock_waiters(db: &TestDatabase, n: i64) {
        let watcher = db.client().await.unwrap();
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_committed_late_by_an_older_transaction_is_not_skipped() {
        let Some(store) = Db::open(Backend::Postgres).await else {
            return;
        };
        let t = terminal(&*store, "s1", "t1").await;
        store
            .push(&t, batch(vec![sale(1, CARD, 0, 5)]), T0)
            .await
            .unwrap();
        store.settle().await;
        // An older transaction: it takes its transaction id now and commits last.
        let older = testdb(&store).client().await.unwrap();
        older
            .batch_execute("BEGIN; SELECT loyalty_xid();")
            .await
            .unwrap();
        store
            .push(&t, batch(vec![sale(2, OTHER_CARD, 0, 7)]), T0)
            .await
            .unwrap();
        let request = |cursor| PullRequest {
            cursor,
            rules_version: 0,
            page_size: 100,
        };
        let first = store.pull(&t, request(None), T0).await.unwrap();
        let cards: Vec<&str> = first.balances.iter().map(|b| b.card.as_str()).collect();
        // The newer change waits until the older transaction has finished: answering
        // it now would move the cursor past whatever the older one commits.
        assert_eq!(cards, [CARD]);
        assert_eq!(first.acked_through, Seq(2));
        older
            .batch_execute(&format!(
                "UPDATE cards SET balance = 1005, change_xid = loyalty_xid() WHERE card = '{CARD}';
                 COMMIT;"
            ))
            .await
            .unwrap();
        store.settle().await;
        let second = store
            .pull(&t, request(Some(&first.cursor)), T0)
            .await
            .unwrap();
        let mut got: Vec<(&str, i64)> = second
            .balances
            .iter()
            .map(|b| (b.card.as_str(), b.balance.get()))
            .collect();
        got.sort();
        assert_eq!(got, [(CARD, 1005), (OTHER_CARD, 7)]);
    }

    /// A push plans a card HQ holds no row for as new and inserts it among its
    /// writes; when another transaction inserted the card meanwhile, the push must
    /// not keep the other's row unchanged (its points would be lost) nor overwrite
    /// it: it starts over and applies its entries on top.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_card_inserted_meanwhile_by_another_transaction_makes_the_push_start_over() {
        let Some(store) = Db::open(Backend::Postgres).await else {
            return;
        };
        let t = terminal(&*store, "s1", "t1").await;
        let other = uncommitted_card(testdb(&store)).await;
        let push = spawn_push(&store, &t, sale(1, CARD, 0, 5));
        // The push found no row to lock and now waits for the other insert.
        lock_waiters(testdb(&store), 1).await;
        other.batch_execute("COMMIT").await.unwrap();
        let out = push.await.unwrap().unwrap();
        assert_eq!((out.acked_through, out.applied), (Seq(1), 1));
        assert_eq!(
            balance(&*store, &t, CARD).await,
            (Seq(1), Points(5), Points(0))
        );
        assert!(verify_ok(&*store).await);
    }

    /// Two pushes that both find no row for a card plan it as new and insert it with
    /// their writes, their `COMMIT` in the same flight. The second insert fails on
    /// the card's key once the first push committed, which aborts its transaction,
    /// so that `COMMIT` commits none of its writes; it starts over on the row the
    /// first one committed. Each push is applied once, on top of the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_pushes_creating_the_same_card_are_both_applied_once() {
        let Some(store) = Db::open(Backend::Postgres).await else {
            return;
        };
        let t1 = terminal(&*store, "s1", "t1").await;
        let t2 = terminal(&*store, "s1", "t2").await;
        // A third transaction holds an uncommitted row of the card: both pushes find
        // no row to lock, plan the card as new, and their inserts queue behind it.
        let other = uncommitted_card(testdb(&store)).await;
        let first = spawn_push(&store, &t1, sale(1, CARD, 0, 5));
        let second = spawn_push(&store, &t2, other_terminal(sale(1, CARD, 0, 7)));
        lock_waiters(testdb(&store), 2).await;
        // Gone: the pushes' inserts go ahead, one of them first.
        other.batch_execute("ROLLBACK").await.unwrap();
        for out in [first.await.unwrap(), second.await.unwrap()] {
            let out = out.unwrap();
            assert_eq!((out.acked_through, out.applied), (Seq(1), 1));
        }
        assert_eq!(
            balance(&*store, &t1, CARD).await,
            (Seq(1), Points(12), Points(0))
        );
        assert!(verify_ok(&*store).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_starting_together_migrate_once() {
        let Some(db) = TestDatabase::create()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        else {
            return;
        };
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = db.url().to_owned();
                tokio::spawn(async move { PgStore::open(&url).await })
            })
            .collect();
        for o in opens {
            o.await.unwrap().unwrap();
        }
        let client = deadpool_postgres::Config {
            url: Some(db.url().to_owned()),
            ..Default::default()
        }
        .create_pool(
            Some(deadpool_postgres::Runtime::Tokio1),
            tokio_postgres::NoTls,
        )
        .unwrap()
        .get()
        .await
        .unwrap();
        assert_eq!(schema::version(&client).await.unwrap(), schema::latest());
        let rows: i64 = client
            .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, i64::from(schema::latest()), "each migration once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deadlock_is_retried_and_a_constraint_violation_is_not() {
        let Some(store) = Db::open(Backend::Postgres).await else {
            return;
        };
        let db = testdb(&store);
        db.execute(
            "CREATE TABLE d (id INT PRIMARY KEY, n INT); INSERT INTO d VALUES (1, 0), (2, 0);",
        )
        .await
        .unwrap();
        let (a, b) = (db.client().await.unwrap(), db.client().await.unwrap());
        a.batch_execute("BEGIN; UPDATE d SET n = 1 WHERE id = 1;")
            .await
            .unwrap();
        b.batch_execute("BEGIN; UPDATE d SET n = 1 WHERE id = 2;")
            .await
            .unwrap();
        let (ra, rb) = tokio::join!(
            a.batch_execute("UPDATE d SET n = 2 WHERE id = 2"),
            b.batch_execute("UPDATE d SET n = 2 WHERE id = 1")
        );
        let err = ra
            .err()
            .or(rb.err())
            .expect("PostgreSQL breaks the deadlock");
        assert!(is_transient(&StoreError::from(err)));
        a.batch_execute("ROLLBACK").await.unwrap();
        b.batch_execute("ROLLBACK").await.unwrap();
        let dup = a
            .batch_execute("INSERT INTO d VALUES (1, 0)")
            .await
            .unwrap_err();
        assert!(!is_transient(&StoreError::from(dup)));
    }
}

async fn kpi_aggregates_count_each_entry_once_per_store_and_day(store: Db) {
    let t1 = terminal(&*store, "s1", "t1").await;
    let t2 = terminal(&*store, "s2", "t1").await;
    let entries = vec![
        sale(1, CARD, 0, 10),
        sale(2, CARD, 5, 0),
        sale(3, OTHER_CARD, 0, 3),
    ];
    store.push(&t1, batch(entries.clone()), T0).await.unwrap();
    // A retried push applies nothing and adds nothing to the aggregates.
    store.push(&t1, batch(entries), T0).await.unwrap();
    store
        .push(&t2, batch(vec![other_terminal(sale(1, CARD, 0, 1))]), T0)
        .await
        .unwrap();

    let day = Period::new(T0.date(), T0.date()).unwrap();
    let receipts = |i: &KpiInputs| i.days.iter().map(|(_, _, t)| t.receipts).sum::<i64>();
    let revenue = |i: &KpiInputs| i.days.iter().map(|(_, _, t)| t.revenue_minor).sum::<i64>();
    let chain = store.kpi_inputs(day, None, T0).await.unwrap();
    assert_eq!(receipts(&chain), 4);
    assert_eq!(revenue(&chain), 10_000 + 9_500 + 10_000 + 10_000);
    assert!(chain.days.iter().all(|(_, member, _)| *member));
    assert_eq!((chain.active_members, chain.new_members), (2, 2));
    assert_eq!(chain.points_outstanding, 10 - 5 + 3 + 1);

    let s2 = StoreId::parse("s2").unwrap();
    let one_store = store.kpi_inputs(day, Some(&s2), T0).await.unwrap();
    assert_eq!(receipts(&one_store), 1);
    assert_eq!((one_store.active_members, one_store.new_members), (1, 1));

    // The next day nobody bought: both members of the day before churned.
    let next = T0.date().next_day().unwrap();
    let after = store
        .kpi_inputs(Period::new(next, next).unwrap(), None, T0)
        .await
        .unwrap();
    assert_eq!(receipts(&after), 0);
    assert_eq!((after.churned_members, after.new_members), (2, 0));
    assert_eq!(after.active_members_30d, 2);
}

/// A member's first day is its earliest receipt whatever order the pushes bring them
/// in: an offline till's older receipt moves it back, a later receipt leaves it.
async fn a_member_s_first_day_is_its_earliest_receipt_in_any_push_order(store: Db) {
    let t1 = terminal(&*store, "s1", "t1").await;
    let t2 = terminal(&*store, "s1", "t2").await;
    let now = T0 + Duration::days(3);
    let on_day = |mut e: JournalEntry, day: i64| {
        e.at = T0 + Duration::days(day);
        e
    };
    store
        .push(&t1, batch(vec![on_day(sale(1, CARD, 0, 10), 1)]), now)
        .await
        .unwrap();
    store
        .push(
            &t2,
            batch(vec![other_terminal(on_day(sale(1, CARD, 0, 10), 0))]),
            now,
        )
        .await
        .unwrap();
    store
        .push(&t1, batch(vec![on_day(sale(2, CARD, 0, 10), 2)]), now)
        .await
        .unwrap();
    let mut new_members = Vec::new();
    for day in 0..3 {
        let date = (T0 + Duration::days(day)).date();
        let period = Period::new(date, date).unwrap();
        let inputs = store.kpi_inputs(period, None, now).await.unwrap();
        new_members.push((inputs.active_members, inputs.new_members));
    }
    assert_eq!(new_members, [(1, 1), (1, 0), (1, 0)]);
}

/// Retention by enrolment month, as the store counts it (the report's arithmetic is
/// tested in `reports::kpi`): each member counted once per month, in the month of
/// its first receipt and in every later month it bought in.
async fn kpi_cohorts_follow_each_member_from_its_first_month(store: Db) {
    use time::macros::datetime;
    let t1 = terminal(&*store, "s1", "t1").await;
    let at = |seq: u64, card: &str, when: time::OffsetDateTime| {
        testkit::entries::Entry::fixed(seq)
            .at(when)
            .sale(Some(card), testkit::entries::figures(0, 1))
    };
    let entries = vec![
        // CARD joins in January, buys twice in February, then in April.
        at(1, CARD, datetime!(2024-01-10 10:00 UTC)),
        at(2, CARD, datetime!(2024-02-03 10:00 UTC)),
        at(3, CARD, datetime!(2024-02-20 10:00 UTC)),
        at(4, CARD, datetime!(2024-04-01 10:00 UTC)),
        // OTHER_CARD joins on the last day of January and never comes back.
        at(5, OTHER_CARD, datetime!(2024-01-31 23:00 UTC)),
        // A third card joins in February and buys again in March.
        at(6, "7700000000001", datetime!(2024-02-29 12:00 UTC)),
        at(7, "7700000000001", datetime!(2024-03-01 12:00 UTC)),
    ];
    store.push(&t1, batch(entries), T0).await.unwrap();
    let period = Period::new(
        time::macros::date!(2024 - 01 - 01),
        time::macros::date!(2024 - 04 - 30),
    )
    .unwrap();
    let inputs = store.kpi_inputs(period, None, T0).await.unwrap();
    let jan = 2024 * 12;
    assert_eq!(
        inputs.cohorts,
        vec![
            (jan, jan, 2),
            (jan, jan + 1, 1),
            (jan, jan + 3, 1),
            (jan + 1, jan + 1, 1),
            (jan + 1, jan + 2, 1),
        ]
    );
    // A period starting in February: January's members are not a cohort of it.
    let feb = Period::new(
        time::macros::date!(2024 - 02 - 01),
        time::macros::date!(2024 - 04 - 30),
    )
    .unwrap();
    let inputs = store.kpi_inputs(feb, None, T0).await.unwrap();
    assert_eq!(
        inputs.cohorts,
        vec![(jan + 1, jan + 1, 1), (jan + 1, jan + 2, 1)]
    );
}

/// Each member count of a one-day period over its own window (the period, the 30
/// and 90 days ending with it, the day before for churn), all read in one pass over
/// days from 90 days back: a receipt in the span but outside a window must not count
/// in it, nor one of another store.
async fn member_counts_take_each_window_of_the_chain_or_the_store(store: Db) {
    let s1 = terminal(&*store, "s1", "t1").await;
    let s2 = terminal(&*store, "s2", "t1").await;
    let day = time::macros::datetime!(2024-06-30 12:00 UTC);
    let at = |seq: u64, card: &str, days_back: i64| {
        testkit::entries::Entry::fixed(seq)
            .at(day - Duration::days(days_back))
            .sale(Some(card), testkit::entries::figures(0, 1))
    };
    // CARD buys on the day and the day before (active, not churned); a second card
    // 50 days back (90 days only), a third 100 days back (outside every window).
    let in_s1 = vec![
        at(1, "7700000000003", 100),
        at(2, "7700000000002", 50),
        at(3, CARD, 1),
        at(4, CARD, 0),
    ];
    store.push(&s1, batch(in_s1), day).await.unwrap();
    // OTHER_CARD bought the day before only, in the other store: churned.
    let in_s2 = vec![other_terminal(at(1, OTHER_CARD, 1))];
    store.push(&s2, batch(in_s2), day).await.unwrap();
    let period = Period::new(day.date(), day.date()).unwrap();
    let counts = |i: &KpiInputs| {
        (
            i.active_members,
            i.active_members_30d,
            i.active_members_90d,
            i.churned_members,
        )
    };
    let chain = store.kpi_inputs(period, None, day).await.unwrap();
    assert_eq!(counts(&chain), (1, 2, 3, 1));
    let (id1, id2) = (StoreId::parse("s1").unwrap(), StoreId::parse("s2").unwrap());
    let one = store.kpi_inputs(period, Some(&id1), day).await.unwrap();
    assert_eq!(counts(&one), (1, 1, 2, 0));
    let two = store.kpi_inputs(period, Some(&id2), day).await.unwrap();
    assert_eq!(counts(&two), (0, 1, 1, 1));
    // The store's cohorts: CARD alone (first day in June) bought in s1 in June.
    let june = Period::new(
        time::macros::date!(2024 - 06 - 01),
        time::macros::date!(2024 - 06 - 30),
    )
    .unwrap();
    let in_june = store.kpi_inputs(june, Some(&id1), day).await.unwrap();
    let month = 2024 * 12 + 5;
    assert_eq!(in_june.cohorts, vec![(month, month, 1)]);
}
