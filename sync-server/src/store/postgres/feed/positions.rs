//! Each store's feed positions (migration 9): what a page reads, which writers move
//! a membership's position, the triggers' plan, and the upgrade of an existing HQ.

use super::CHANGED_CARDS;
use crate::store::postgres::test_hq::{add_cards, new_hq, till};
use crate::store::postgres::{PgStore, schema};
use crate::store::{PullRequest, Store, TerminalIdentity};
use deadpool_postgres::Client;
use protocol::CardId;
use protocol::journal::JournalEntry;
use std::collections::HashMap;
use testkit::entries::{Entry, T0, figures};
use testkit::pg::TestDatabase;
use time::Duration;

/// Rows read whole and index entries returned, in `cards`, `store_cards` and their
/// indexes, by this connection since its statistics were last flushed (so read
/// before and after).
const READS: &str = "SELECT sum(pg_stat_get_xact_tuples_returned(oid))::bigint FROM pg_class
     WHERE oid IN ('cards'::regclass, 'store_cards'::regclass)
        OR oid IN (SELECT indexrelid FROM pg_index
                   WHERE indrelid IN ('cards'::regclass, 'store_cards'::regclass))";

/// One page (`page` cards) of `store`'s feed after cursor `(after, "")`: the cards
/// it answered and what it read ([`READS`]).
async fn page_reads(c: &Client, store: &str, after: i64, page: i64) -> (usize, i64) {
    c.batch_execute("START TRANSACTION").await.unwrap();
    let before: i64 = c.query_one(READS, &[]).await.unwrap().get(0);
    let stmt = c.prepare_cached(&CHANGED_CARDS).await.unwrap();
    let rows = c
        .query(&stmt, &[&store, &after, &"", &i64::MAX, &page])
        .await
        .unwrap();
    let after: i64 = c.query_one(READS, &[]).await.unwrap().get(0);
    c.batch_execute("ROLLBACK").await.unwrap();
    (rows.len(), after - before)
}

/// A sale `seq` of `card` accruing 5 points, with an id of its own.
fn sale(seq: u64, card: &str) -> JournalEntry {
    Entry::new(seq)
        .at(T0)
        .rules_version(1)
        .sale(Some(card), figures(0, 5))
}

/// Pushes `entries` by `t`, 500 to a push.
async fn push(store: &PgStore, t: &TerminalIdentity, entries: Vec<JournalEntry>) {
    for chunk in entries.chunks(500) {
        let batch = crate::ledger::batch::Batch::new(chunk.to_vec()).unwrap();
        store.push(t, batch, T0).await.unwrap();
    }
}

/// Card `n` of the tests: 13 digits.
fn card(n: u64) -> String {
    format!("{:013}", 4_000_000_000_000 + n)
}

/// An id of a transaction that began after every one committed so far: a cursor
/// with it has delivered everything before.
async fn later_xid(c: &Client) -> i64 {
    c.query_one("SELECT loyalty_xid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// A store whose till pulls often reads its own changes, not the chain's: a page
/// after its cursor, with one card of the store and 2,000 of another store changed
/// past it, reads about the page. At the chain-wide `cards_change` it walked every
/// card changed since the cursor and probed its membership (2,006 reads).
#[tokio::test]
async fn a_quiet_store_s_page_reads_its_own_changes_not_the_chain_s() {
    let Some((_db, store, c)) = new_hq().await else {
        return;
    };
    let (a, b) = (till(&store, "store-a").await, till(&store, "store-b").await);
    push(&store, &a, vec![sale(1, &card(1))]).await;
    let cursor = later_xid(&c).await;
    push(&store, &a, vec![sale(2, &card(2))]).await;
    push(
        &store,
        &b,
        (1..=2_000).map(|n| sale(n, &card(10_000 + n))).collect(),
    )
    .await;
    c.batch_execute("ANALYZE cards; ANALYZE store_cards")
        .await
        .unwrap();
    let (cards, reads) = page_reads(&c, "store-a", cursor, 10).await;
    assert_eq!(cards, 1);
    assert!(reads <= 10, "{reads} rows and index entries read");
    let (cards, reads) = page_reads(&c, "store-b", cursor, 10).await;
    assert_eq!(cards, 10);
    assert!(reads <= 30, "{reads} rows and index entries read");
}

/// A page of the store feed reads about a page of the store's cards, whatever the
/// statistics say: those of a new HQ (the connection's plan made on a few cards),
/// and fresh ones once the chain's cards arrived; nothing is read whole.
#[tokio::test]
async fn a_feed_page_reads_a_page_of_the_store_s_cards() {
    let Some((_db, _store, c)) = new_hq().await else {
        return;
    };
    // A new HQ: a few cards, never analyzed yet, and more pages than PostgreSQL
    // plans for their values before it settles on a generic plan (five).
    add_cards(&c, 0, 50).await;
    for _ in 0..10 {
        page_reads(&c, "store-1", 0, 10).await;
    }
    add_cards(&c, 50, 20_050).await;
    assert_pages_read_a_page(&c, "stale statistics").await;
    c.batch_execute("ANALYZE cards; ANALYZE store_cards")
        .await
        .unwrap();
    assert_pages_read_a_page(&c, "fresh statistics").await;
}

/// Pages from the start and from a later cursor each read about a page's worth of
/// memberships and cards.
async fn assert_pages_read_a_page(c: &Client, statistics: &str) {
    for after in [0, 20] {
        let (cards, reads) = page_reads(c, "store-1", after, 10).await;
        assert_eq!(cards, 10, "{statistics}, after {after}");
        assert!(reads <= 30, "{statistics}, after {after}: {reads}");
    }
}

/// Every writer of a card moves the card to the feed of each of its stores: a push at
/// another store, an admin's block, the ledger job; a push that makes a card a
/// store's sends the store the card's state. (The push's writes are one statement
/// with data-modifying sub-statements: the triggers on `cards` fire at its end.)
#[tokio::test]
async fn every_writer_of_a_card_moves_it_into_each_of_its_stores_feeds() {
    let Some((db, store, c)) = new_hq().await else {
        return;
    };
    let (a, b) = (till(&store, "store-a").await, till(&store, "store-b").await);
    let (shared, blocked, maturing, new_to_b) = (card(1), card(2), card(3), card(4));
    push(&store, &a, vec![sale(1, &shared), sale(2, &new_to_b)]).await;
    let pending = Entry::new(2)
        .at(T0)
        .rules_version(1)
        .matures_at(Some(T0 + Duration::days(1)))
        .sale(Some(&maturing), figures(0, 7));
    push(
        &store,
        &b,
        vec![sale(1, &shared), pending, sale(3, &blocked)],
    )
    .await;
    db.settle().await.unwrap();
    let (cursor, _) = pull(&store, &b, None).await;

    push(&store, &a, vec![sale(3, &shared)]).await;
    store
        .set_blocked(&CardId::parse(&blocked).unwrap(), true, Some("lost"), T0)
        .await
        .unwrap();
    store.run_jobs(T0 + Duration::days(2)).await.unwrap();
    db.settle().await.unwrap();
    let (cursor, got) = pull(&store, &b, Some(cursor)).await;
    assert_eq!(got[&shared], (15, 0, false), "{got:?}");
    assert_eq!(got[&blocked], (5, 0, true), "{got:?}");
    assert_eq!(got[&maturing], (7, 0, false), "{got:?}");
    assert_eq!(got.len(), 3, "{got:?}");

    push(&store, &b, vec![sale(4, &new_to_b)]).await;
    db.settle().await.unwrap();
    let (_, got) = pull(&store, &b, Some(cursor)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[&new_to_b], (10, 0, false), "{got:?}");
    // Store A's memberships were not written by B's push of the card, yet A's feed
    // has the card's new state past A's cursor all the same.
    let lagging: i64 = c
        .query_one(
            "SELECT count(*) FROM store_cards s JOIN cards c ON c.card = s.card
             WHERE s.change_xid < c.change_xid",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(lagging, 0);
}

/// The whole feed of `t`'s store after `cursor`, by pages of 100: the cursor it
/// ends at and each card's balance, pending points and block.
async fn pull(
    store: &PgStore,
    t: &TerminalIdentity,
    mut cursor: Option<String>,
) -> (String, HashMap<String, (i64, i64, bool)>) {
    let mut got = HashMap::new();
    loop {
        let page = store
            .pull(
                t,
                PullRequest {
                    cursor: cursor.as_deref(),
                    rules_version: 0,
                    page_size: 100,
                },
                T0,
            )
            .await
            .unwrap();
        for b in page.balances {
            got.insert(
                b.card.as_str().to_owned(),
                (b.balance.0, b.pending.0, b.blocked),
            );
        }
        cursor = Some(page.cursor);
        if !page.more {
            return (cursor.unwrap_or_default(), got);
        }
    }
}

/// The triggers' update probes the memberships by card whatever the batch it was
/// first planned for: PL/pgSQL keeps a trigger's plan for the connection's life, and
/// one made for a large statement (the job's chunk) as a hash join read every
/// membership at each later statement, a push's included.
#[tokio::test]
async fn the_triggers_probe_memberships_by_card_whatever_the_first_batch() {
    let Some((_db, _store, c)) = new_hq().await else {
        return;
    };
    add_cards(&c, 0, 20_000).await;
    c.batch_execute("ANALYZE cards; ANALYZE store_cards")
        .await
        .unwrap();
    // The connection's first statement on `cards`: 5,000 cards. Rows read whole, and
    // index entries of the key returned (a probe may also meet a card's earlier
    // versions).
    let reads = "SELECT pg_stat_get_xact_tuples_returned('store_cards'::regclass),
                        pg_stat_get_xact_tuples_returned('store_cards_pkey'::regclass)";
    for (cards, memberships) in [(5_000, 5_000), (1, 1)] {
        c.batch_execute("START TRANSACTION").await.unwrap();
        let before = c.query_one(reads, &[]).await.unwrap();
        c.batch_execute(&format!(
            "UPDATE cards SET change_xid = loyalty_xid()
             WHERE card IN (SELECT lpad(n::text, 13, '0')
                            FROM generate_series(100, 99 + {cards}) AS n)"
        ))
        .await
        .unwrap();
        let row = c.query_one(reads, &[]).await.unwrap();
        let moved: i64 = c
            .query_one(
                "SELECT count(*) FROM store_cards WHERE change_xid = loyalty_xid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        c.batch_execute("COMMIT").await.unwrap();
        let delta = |i| row.get::<_, i64>(i) - before.get::<_, i64>(i);
        let (whole, probed) = (delta(0), delta(1));
        assert_eq!(moved, memberships, "{cards} cards");
        assert_eq!(whole, 0, "{cards} cards: store_cards read whole");
        assert!(probed <= 2 * memberships, "{cards} cards: {probed}");
    }
}

/// An HQ at migration 8 keeps its feed: each membership gets its card's position,
/// one without a card gets 0 until the card is inserted, and a page after a cursor
/// has the store's cards changed past it.
#[tokio::test]
async fn an_upgraded_hq_s_memberships_take_their_card_s_position() {
    let Some(db) = TestDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    else {
        return;
    };
    let config: tokio_postgres::Config = db.url().parse().unwrap();
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(1)
        .build()
        .unwrap();
    let mut c = pool.get().await.unwrap();
    schema::migrate_to(&mut c, 8).await.unwrap();
    c.batch_execute(&format!(
        "INSERT INTO cards (card, balance, pending, spend_12m, welcome_given, seen,
                            change_xid, updated_at)
         VALUES ('{0}', 0, 0, 0, FALSE, FALSE, 700, 0), ('{1}', 0, 0, 0, FALSE, FALSE, 900, 0);
         INSERT INTO store_cards (store, card)
         VALUES ('s1', '{0}'), ('s1', '{1}'), ('s2', '{1}'), ('s2', '{2}')",
        card(1),
        card(2),
        card(3)
    ))
    .await
    .unwrap();
    drop(c);
    let store = PgStore::open(db.url()).await.unwrap();
    let c = store.connection().await.unwrap();
    let positions = || async {
        c.query(
            "SELECT store, card, change_xid FROM store_cards ORDER BY store, card",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect::<Vec<(String, String, i64)>>()
    };
    let row = |s: &str, n: u64, xid: i64| (s.to_owned(), card(n), xid);
    assert_eq!(
        positions().await,
        [
            row("s1", 1, 700),
            row("s1", 2, 900),
            row("s2", 2, 900),
            row("s2", 3, 0)
        ]
    );
    let (cards, _) = page_reads(&c, "s1", 800, 10).await;
    assert_eq!(cards, 1);
    let (cards, _) = page_reads(&c, "s2", 0, 10).await;
    assert_eq!(cards, 1, "a membership without a card answers nothing");
    // The missing card arrives: its membership follows.
    c.batch_execute(&format!(
        "INSERT INTO cards (card, balance, pending, spend_12m, welcome_given, seen,
                            change_xid, updated_at)
         VALUES ('{}', 0, 0, 0, FALSE, FALSE, 1000, 0)",
        card(3)
    ))
    .await
    .unwrap();
    assert_eq!(positions().await[3], row("s2", 3, 1000));
    let (cards, _) = page_reads(&c, "s2", 950, 10).await;
    assert_eq!(cards, 1);
}
