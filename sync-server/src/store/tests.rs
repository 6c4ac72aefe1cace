//! The SQLite backend against a temporary file: exactly-once pushes, refusals that
//! apply nothing, the change feed, the job, and `verify`.

use super::SqliteStore;
use crate::admin;
use crate::keys::TerminalToken;
use crate::ledger::apply::tests::{CARD, T0, entry_id, pending_sale, sale, welcome};
use crate::ledger::batch::Batch;
use crate::ledger::sequence::Refusal;
use crate::store::{PullRequest, Store, StoreError, TerminalIdentity};
use protocol::journal::JournalEntry;
use protocol::rules::ProgramRules;
use protocol::{CardId, Points, Seq, StoreId, TerminalId};
use tempfile::TempDir;
use time::Duration;
use uuid::Uuid;

const OTHER_CARD: &str = "4006381333948";

async fn temp_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("hq.db")).await.unwrap();
    (dir, store)
}

async fn terminal(store: &SqliteStore, s: &str, t: &str) -> TerminalIdentity {
    let token = TerminalToken::generate().unwrap();
    let (s, t) = (StoreId::parse(s).unwrap(), TerminalId::parse(t).unwrap());
    store
        .add_terminal(&s, &t, &token.hash(), false, T0)
        .await
        .unwrap();
    store.authenticate(&token.hash()).await.unwrap().unwrap()
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

async fn balance(store: &SqliteStore, t: &TerminalIdentity, c: &str) -> (Seq, Points, Points) {
    let live = store.live_balance(t, &card(c), T0).await.unwrap();
    (
        live.acked_through,
        live.balance.balance,
        live.balance.pending,
    )
}

async fn verify_ok(store: &SqliteStore) -> bool {
    let mut out = Vec::new();
    let ok = admin::verify(store, &mut out).await.unwrap();
    if !ok {
        eprintln!("{}", String::from_utf8_lossy(&out));
    }
    ok
}

#[tokio::test]
async fn the_same_batch_twice_is_applied_once_then_reported_as_duplicates() {
    let (_dir, store) = temp_store().await;
    let t = terminal(&store, "s1", "t1").await;
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
        balance(&store, &t, CARD).await,
        (Seq(3), Points(11), Points(0))
    );
    assert!(verify_ok(&store).await);
}

#[tokio::test]
async fn an_empty_batch_is_a_probe_for_acked_through() {
    let (_dir, store) = temp_store().await;
    let t = terminal(&store, "s1", "t1").await;
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

#[tokio::test]
async fn a_held_seq_with_another_body_is_a_conflict_and_nothing_is_applied() {
    let (_dir, store) = temp_store().await;
    let t = terminal(&store, "s1", "t1").await;
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
        balance(&store, &t, CARD).await,
        (Seq(1), Points(10), Points(0))
    );
}

#[tokio::test]
async fn a_batch_past_the_next_seq_is_a_gap_that_names_what_hq_holds() {
    let (_dir, store) = temp_store().await;
    let t = terminal(&store, "s1", "t1").await;
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

#[tokio::test]
async fn an_entry_id_reused_by_another_terminal_is_an_id_conflict() {
    let (_dir, store) = temp_store().await;
    let t1 = terminal(&store, "s1", "t1").await;
    let t2 = terminal(&store, "s1", "t2").await;
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
        balance(&store, &t2, CARD).await,
        (Seq(0), Points(10), Points(0))
    );
}

#[tokio::test]
async fn a_batch_that_fails_midway_applies_nothing() {
    let (_dir, store) = temp_store().await;
    let t1 = terminal(&store, "s1", "t1").await;
    let t2 = terminal(&store, "s2", "t1").await;
    store
        .push(&t1, batch(vec![sale(1, CARD, 0, 10)]), T0)
        .await
        .unwrap();
    // Entries 1 and 2 are fine; entry 3 reuses t1's entry id and fails at insert,
    // after the first two rows were written inside the transaction.
    let mut third = other_terminal(sale(3, OTHER_CARD, 0, 1));
    third.id = entry_id(1);
    let entries = vec![
        other_terminal(sale(1, OTHER_CARD, 0, 10)),
        other_terminal(sale(2, OTHER_CARD, 0, 10)),
        third,
    ];
    let err = store.push(&t2, batch(entries), T0).await.unwrap_err();
    assert!(matches!(
        err,
        StoreError::Refused(Refusal::IdConflict { .. })
    ));
    assert_eq!(
        balance(&store, &t2, OTHER_CARD).await,
        (Seq(0), Points(0), Points(0))
    );
    assert!(
        store
            .card_report(&card(OTHER_CARD), 10)
            .await
            .unwrap()
            .is_none()
    );
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
    assert!(verify_ok(&store).await);
}

#[tokio::test]
async fn pull_pages_through_the_store_cards_and_carries_blocks_and_acked_through() {
    let (_dir, store) = temp_store().await;
    let t1 = terminal(&store, "s1", "t1").await;
    let t2 = terminal(&store, "s2", "t1").await;
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
    let pull = |cursor: Option<String>| {
        let store = store.clone();
        let t1 = t1.clone();
        async move {
            store
                .pull(
                    &t1,
                    PullRequest {
                        cursor: cursor.as_deref(),
                        rules_version: 0,
                        page_size: 2,
                    },
                    T0,
                )
                .await
                .unwrap()
        }
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
    let idle = pull(Some(second.cursor.clone())).await;
    assert!(idle.balances.is_empty() && idle.blocked.is_empty() && !idle.more);
    assert_eq!(idle.cursor, second.cursor);
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

#[tokio::test]
async fn rules_are_pulled_only_when_newer_and_versions_only_go_up() {
    let (_dir, store) = temp_store().await;
    let t = terminal(&store, "s1", "t1").await;
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
                    version: 5,
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
    assert_eq!(balance(&store, &t, CARD).await.1, Points(60));
    assert_eq!(store.health().await.unwrap(), 5);
}

#[tokio::test]
async fn the_job_matures_and_expires_lots_once_per_instant() {
    let (_dir, store) = temp_store().await;
    let t = terminal(&store, "s1", "t1").await;
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
        balance(&store, &t, CARD).await,
        (Seq(2), Points(27), Points(20))
    );
    let report = store.run_jobs(matures).await.unwrap();
    assert_eq!(report.matured_points, Points(20));
    assert_eq!(balance(&store, &t, CARD).await.2, Points(0));
    assert_eq!(store.run_jobs(matures).await.unwrap(), Default::default());
    let report = store.run_jobs(T0 + Duration::days(31)).await.unwrap();
    assert_eq!(report.expired_points, Points(27));
    assert_eq!(balance(&store, &t, CARD).await.1, Points(0));
    assert!(verify_ok(&store).await);
}

#[tokio::test]
async fn tiers_follow_the_spend_window_and_new_rules_through_the_job() {
    use protocol::rules::Tier;
    use protocol::{BasisPoints, Money};
    let (_dir, store) = temp_store().await;
    let t = terminal(&store, "s1", "t1").await;
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

#[tokio::test]
async fn flagged_entries_are_applied_and_reported() {
    let (_dir, store) = temp_store().await;
    let t = terminal(&store, "s1", "t1").await;
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
    assert_eq!(balance(&store, &t, CARD).await.1, Points(-5));
    let flags = store.flagged_entries().await.unwrap();
    let kinds: Vec<&str> = flags.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, ["blocked_card", "overdraft"]);
    assert_eq!(flags[0].seq, Seq(2));
    let overdrafts = store.overdrafts().await.unwrap();
    assert_eq!(overdrafts.len(), 1);
    assert_eq!(overdrafts[0].flagged.len(), 2);
    assert!(verify_ok(&store).await);
}

#[tokio::test]
async fn verify_detects_a_tampered_balance_and_a_tampered_ack() {
    let (dir, store) = temp_store().await;
    let t = terminal(&store, "s1", "t1").await;
    store
        .push(
            &t,
            batch(vec![sale(1, CARD, 0, 10), sale(2, CARD, 3, 0)]),
            T0,
        )
        .await
        .unwrap();
    assert!(verify_ok(&store).await);
    let raw = rusqlite::Connection::open(dir.path().join("hq.db")).unwrap();
    raw.execute("UPDATE cards SET balance = balance + 1", [])
        .unwrap();
    let mut out = Vec::new();
    assert!(!admin::verify(&store, &mut out).await.unwrap());
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("balance (vs ledger) is 8, recomputed 7"),
        "{text}"
    );
    raw.execute("UPDATE cards SET balance = balance - 1", [])
        .unwrap();
    raw.execute("UPDATE terminals SET acked_through = 5", [])
        .unwrap();
    assert!(!verify_ok(&store).await);
}

#[tokio::test]
async fn revoked_terminals_lose_their_token_and_rotation_replaces_it() {
    let (_dir, store) = temp_store().await;
    let (s, t) = (
        StoreId::parse("s1").unwrap(),
        TerminalId::parse("t1").unwrap(),
    );
    let old = TerminalToken::generate().unwrap();
    store
        .add_terminal(&s, &t, &old.hash(), false, T0)
        .await
        .unwrap();
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
    let identity = store.authenticate(&new.hash()).await.unwrap().unwrap();
    store.revoke_terminal(&s, &t, T0).await.unwrap();
    assert!(store.authenticate(&new.hash()).await.unwrap().is_none());
    assert!(matches!(
        store
            .push(&identity, batch(vec![sale(1, CARD, 0, 1)]), T0)
            .await,
        Err(StoreError::Revoked(_))
    ));
    let listed = store.list_terminals().await.unwrap();
    assert!(listed[0].revoked_at.is_some());
}

#[tokio::test]
async fn the_schema_enforces_unique_seq_per_terminal_and_unique_entry_ids() {
    let (dir, store) = temp_store().await;
    let t = terminal(&store, "s1", "t1").await;
    store
        .push(&t, batch(vec![sale(1, CARD, 0, 10)]), T0)
        .await
        .unwrap();
    let raw = rusqlite::Connection::open(dir.path().join("hq.db")).unwrap();
    let copy = |id: &str, seq: i64| {
        raw.execute(
            "INSERT INTO entries (id, terminal_ref, seq, at, kind, card, spend_minor,
                                  rules_version, content_hash, body, received_at)
             SELECT ?1, terminal_ref, ?2, at, kind, card, spend_minor, rules_version,
                    content_hash, body, received_at FROM entries LIMIT 1",
            (id, seq),
        )
    };
    assert!(copy("another-id", 1).is_err());
    assert!(copy(&entry_id(1).to_string(), 2).is_err());
    assert!(copy("another-id", 2).is_ok());
}

/// Not a test: the push path against a raw batched INSERT of the same entry rows.
/// `cargo test -p sync-server --release -- --ignored --nocapture push_throughput`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; prints figures"]
async fn push_throughput_against_raw_inserts() {
    use crate::ledger::apply::{entry_kind, spend_of};
    use std::time::Instant;
    const TOTAL: u64 = 100_000;
    const BATCH: u64 = 500;
    let entries: Vec<JournalEntry> = (1..=TOTAL)
        .map(|seq| {
            let c = format!("{:013}", 4_000_000_000_000u64 + seq % 20_000);
            let mut e = sale(seq, &c, if seq.is_multiple_of(7) { 3 } else { 0 }, 5);
            e.id = Uuid::new_v4();
            e
        })
        .collect();

    let (_dir, store) = temp_store().await;
    let t = terminal(&store, "s1", "t1").await;
    let batches: Vec<Batch> = entries
        .chunks(BATCH as usize)
        .map(|c| batch(c.to_vec()))
        .collect();
    let started = Instant::now();
    for b in batches {
        store.push(&t, b, T0).await.unwrap();
    }
    let push_secs = started.elapsed().as_secs_f64();

    let (dir, raw_store) = temp_store().await;
    let raw_t = terminal(&raw_store, "s1", "t1").await;
    drop(raw_store);
    let mut raw = super::connect(&dir.path().join("hq.db")).unwrap();
    // The raw baseline gets its JSON and hashes for free: only the database work counts.
    let prepared: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e.id.to_string(),
                e.content_hash_hex(),
                serde_json::to_string(e).unwrap(),
            )
        })
        .collect();
    let started = Instant::now();
    for (chunk, rows) in entries
        .chunks(BATCH as usize)
        .zip(prepared.chunks(BATCH as usize))
    {
        let tx = raw
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO entries (id, terminal_ref, seq, at, kind, card, spend_minor,
                                          rules_version, content_hash, body, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .unwrap();
            for (e, (id, hash, body)) in chunk.iter().zip(rows) {
                stmt.execute((
                    id,
                    raw_t.key,
                    e.seq.get() as i64,
                    super::rows::to_db(e.at),
                    entry_kind(e),
                    e.card().map(CardId::as_str),
                    spend_of(e).get(),
                    e.rules_version as i64,
                    hash,
                    body,
                    0i64,
                ))
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let raw_secs = started.elapsed().as_secs_f64();
    println!(
        "push: {:.0} entries/s ({push_secs:.2} s); raw insert: {:.0} entries/s ({raw_secs:.2} s); ratio {:.0}%",
        TOTAL as f64 / push_secs,
        TOTAL as f64 / raw_secs,
        100.0 * raw_secs / push_secs
    );
    let started = Instant::now();
    let report = store.run_jobs(T0 + Duration::days(1)).await.unwrap();
    println!(
        "job over {TOTAL} entries: {:.3} s ({report})",
        started.elapsed().as_secs_f64()
    );
    assert!(verify_ok(&store).await);
}
