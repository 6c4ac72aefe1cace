//! A push caches its card locks, open lots and reservations, and the plans
//! PostgreSQL caches for them find their rows by key whatever the tables' statistics
//! said when they were made.

use super::{KEYS_ONLY, begin_push, with_push_settings};
use crate::ledger::apply::tests::{CARD, T0, sale};
use crate::ledger::batch::Batch;
use crate::store::postgres::test_hq::{self, add_cards, new_hq};
use crate::store::postgres::{PgStore, cards, escrow, sql};
use crate::store::{Store, TerminalIdentity};
use deadpool_postgres::Client;
use protocol::{CardId, ReceiptId};
use testkit::pg::TestDatabase;

/// A till `t1` of store `s1` on `store`, as its pushes authenticate.
async fn till(store: &PgStore) -> TerminalIdentity {
    test_hq::till(store, "s1").await
}

#[tokio::test]
async fn a_push_caches_its_card_locks_open_lots_and_reservations() {
    let Some(db) = TestDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    else {
        return;
    };
    // One connection: the one the pushes ran on is the one asked afterwards.
    let store = PgStore::open(&format!("{}?pool_max_size=1", db.url()))
        .await
        .unwrap();
    let t = till(&store).await;
    // The second push redeems: it reads the card's open lots.
    for entry in [sale(1, CARD, 0, 20), sale(2, CARD, 5, 3)] {
        let batch = Batch::new(vec![entry]).unwrap();
        store.push(&t, batch, T0).await.unwrap();
    }
    let c = store.connection().await.unwrap();
    let prepared: Vec<String> = c
        .query("SELECT statement FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for read in [
        &*cards::LOCK_CARDS,
        &*cards::OPEN_LOTS,
        &*escrow::RESERVATIONS,
    ] {
        assert!(
            prepared.iter().any(|p| p == read),
            "{read} in {prepared:#?}"
        );
    }
}

/// Sequential scans and rows fetched by index of `cards`, `lots` and `reservations`
/// by this connection's open transaction so far.
async fn reads(c: &Client) -> (i64, i64) {
    let row = c
        .query_one(
            "SELECT SUM(seq_scan)::bigint, SUM(idx_tup_fetch)::bigint
             FROM pg_stat_xact_user_tables
             WHERE relname IN ('cards', 'lots', 'reservations')",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The push's card reads of `keys` for terminal 1, each with the generic plan the
/// connection caches, in one rolled-back push transaction; answers the sequential
/// scans and the rows fetched by index they made.
async fn push_reads(c: &Client, keys: &[&str]) -> (i64, i64) {
    begin_push(c, Some("START TRANSACTION")).await.unwrap();
    // The worst case: the plan made without the run's values.
    c.batch_execute("SET LOCAL plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    let before = reads(c).await;
    let in_push = sql::Plan::InPush;
    let locked = cards::lock_sorted(c, keys, in_push).await.unwrap();
    assert_eq!(locked.len(), keys.len());
    let ids: Vec<CardId> = keys.iter().map(|k| CardId::parse(k).unwrap()).collect();
    let ids: Vec<&CardId> = ids.iter().collect();
    let lots = cards::open_lots(c, &ids, in_push).await.unwrap();
    assert_eq!(lots.len(), keys.len());
    let receipts: Vec<ReceiptId> = keys
        .iter()
        .map(|k| ReceiptId::parse(&format!("R-{k}")).unwrap())
        .collect();
    let held = escrow::reservations(c, 1, &receipts, in_push)
        .await
        .unwrap();
    assert_eq!(held.len(), keys.len());
    let after = reads(c).await;
    c.batch_execute("ROLLBACK").await.unwrap();
    (after.0 - before.0, after.1 - before.1)
}

/// An open lot per card `from..to` and a reservation of terminal 1 per card, with
/// the receipt `R-{card}`.
async fn add_lots_and_reservations(c: &Client, from: u32, to: u32) {
    c.batch_execute(&format!(
        "INSERT INTO lots (card, kind, earned_at, matured, amount, remaining)
         SELECT lpad(n::text, 13, '0'), 'accrual', 0, TRUE, 5, 5
         FROM generate_series({from}, {to} - 1) AS n;
         INSERT INTO reservations (terminal_ref, receipt_id, card, points, status,
                                   expires_at, updated_at)
         SELECT 1, 'R-' || lpad(n::text, 13, '0'), lpad(n::text, 13, '0'), 1, 'captured',
                0, 0
         FROM generate_series({from}, {to} - 1) AS n"
    ))
    .await
    .unwrap();
}

/// Runs `push` on keys of 10 cards with the plans its connection caches, on a new HQ
/// whose statistics say every table is empty (an `ANALYZE` before its first rows:
/// where a sequential scan, or a scan of a key by its first column alone, looks
/// cheapest), ten times while it holds 50 cards, lots and reservations, then once
/// more after the chain's cards, lots and receipts arrived (20,050 each). Answers
/// what that last run read (its sequential scans and rows fetched by index) and the
/// keys' number; `None` where the PostgreSQL tests are skipped.
async fn after_growth(
    push: impl AsyncFn(&Client, &[&str]) -> (i64, i64),
) -> Option<(i64, i64, i64)> {
    let (_db, _store, c) = new_hq().await?;
    c.batch_execute(
        "INSERT INTO terminals (store, terminal, token_hash, created_at)
         VALUES ('store-1', 't1', 'hash', 0)",
    )
    .await
    .unwrap();
    c.batch_execute("ANALYZE").await.unwrap();
    add_cards(&c, 0, 50).await;
    add_lots_and_reservations(&c, 0, 50).await;
    let keys: Vec<String> = (0..10u32).map(|n| format!("{:013}", n * 3)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    for _ in 0..10 {
        push(&c, &keys).await;
    }
    add_cards(&c, 50, 20_050).await;
    add_lots_and_reservations(&c, 50, 20_050).await;
    let (scans, fetched) = push(&c, &keys).await;
    Some((scans, fetched, keys.len() as i64))
}

/// Each cached read of a push must still fetch only its keys' rows once the chain
/// has grown.
#[tokio::test]
async fn the_cached_card_reads_of_a_push_use_the_key_whatever_the_statistics() {
    let Some((scans, fetched, keys)) = after_growth(push_reads).await else {
        return;
    };
    assert_eq!(scans, 0, "sequential scans under {KEYS_ONLY}");
    // A card, a lot and a reservation per key.
    assert!(fetched <= 3 * keys, "{fetched} rows fetched");
}

/// The push reads a batch's reservations by receipt: planned with the default
/// page costs, 500 receipts were costed cheaper as a scan of every reservation
/// ever written (settled rows stay, for every terminal) than as 500 probes of the
/// key, so each push read them all.
#[tokio::test]
async fn a_push_sized_batch_probes_its_reservations_by_key() {
    let Some((_db, _store, c)) = new_hq().await else {
        return;
    };
    let terminal: i64 = c
        .query_one(
            "INSERT INTO terminals (store, terminal, token_hash, created_at)
             VALUES ('store-1', 'till-1', 'h', 0) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    c.batch_execute(&format!(
        "INSERT INTO reservations (terminal_ref, receipt_id, card, points, status,
                                   expires_at, updated_at)
         SELECT {terminal}, 'till-1-R' || n, lpad(n::text, 13, '0'), 3, 'captured', 0, 0
         FROM generate_series(1, 15000) AS n;
         ANALYZE reservations"
    ))
    .await
    .unwrap();
    let receipts: Vec<ReceiptId> = (15_001..15_501)
        .map(|n| ReceiptId::parse(&format!("till-1-R{n}")).unwrap())
        .collect();
    const SCANS: &str =
        "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'reservations'";
    c.batch_execute(&with_push_settings("START TRANSACTION"))
        .await
        .unwrap();
    let before: i64 = c.query_one(SCANS, &[]).await.unwrap().get(0);
    let found = escrow::reservations(&c, terminal, &receipts, sql::Plan::InPush)
        .await
        .unwrap();
    let after: i64 = c.query_one(SCANS, &[]).await.unwrap().get(0);
    c.batch_execute("ROLLBACK").await.unwrap();
    assert!(found.is_empty());
    assert_eq!(after - before, 0);
}

/// The cards' and the lots' updates are cached with the push's other writes (one
/// statement, [`super::write`]), so PostgreSQL may cache a generic plan of them made
/// on a new HQ whose statistics say every table is empty. Once the chain's cards and
/// lots are there, each update must still fetch only its keys' rows: without the
/// keys as an index condition of their own, that plan walked the whole key of
/// `cards` or `lots` for every push.
#[tokio::test]
async fn the_cached_card_and_lot_updates_of_a_push_use_the_key_whatever_the_statistics() {
    let Some((scans, fetched, keys)) = after_growth(push_updates).await else {
        return;
    };
    assert_eq!(scans, 0, "sequential scans under {KEYS_ONLY}");
    // A card and a lot per key.
    assert!(fetched <= 2 * keys, "{fetched} rows fetched");
}

/// The push's updates of the cards `keys` and of their lots, each with the generic
/// plan the connection caches, in one rolled-back push transaction (after the card
/// locks); answers the sequential scans and the rows fetched by index they made.
async fn push_updates(c: &Client, keys: &[&str]) -> (i64, i64) {
    let lots: Vec<i64> = c
        .query("SELECT id FROM lots WHERE card = ANY($1)", &[&keys])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(lots.len(), keys.len());
    begin_push(c, Some("START TRANSACTION")).await.unwrap();
    c.batch_execute("SET LOCAL plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    let locked = cards::lock_sorted(c, keys, sql::Plan::InPush)
        .await
        .unwrap();
    let records: Vec<_> = locked.values().collect();
    let before = reads(c).await;
    let written = sql::execute(
        c,
        cards::WRITE_CARDS,
        &sql::refs(&cards::CardArrays::of(&records).owned(T0)),
    )
    .await
    .unwrap();
    assert_eq!(written, keys.len() as u64);
    let remaining = vec![4_i64; lots.len()];
    let matured = vec![true; lots.len()];
    let updated = sql::execute(c, cards::UPDATE_LOTS, &[&lots, &remaining, &matured])
        .await
        .unwrap();
    assert_eq!(updated, keys.len() as u64);
    let after = reads(c).await;
    c.batch_execute("ROLLBACK").await.unwrap();
    (after.0 - before.0, after.1 - before.1)
}

/// WAL records of `relation` in this database between the LSNs `from` and `to`, by
/// type (`pg_walinspect`).
async fn wal_records(c: &Client, relation: &str, from: &str, to: &str) -> Vec<(String, i64)> {
    c.query(
        "SELECT record_type, count(*) FROM pg_get_wal_records_info($2::text::pg_lsn, $3::text::pg_lsn)
         WHERE block_ref LIKE '%/' || (SELECT oid FROM pg_database
                                       WHERE datname = current_database())
                              || '/' || pg_relation_filenode($1::text::regclass) || ' fork %'
         GROUP BY 1 ORDER BY 1",
        &[&relation, &from, &to],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// The server's WAL position flushed (a committed push's records are before it).
async fn wal_position(c: &Client) -> String {
    c.query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
        .await
        .unwrap()
        .get(0)
}

/// A push's new member-days and store memberships are plain inserts, one heap and
/// one key record each: with `ON CONFLICT` each new row was inserted speculatively
/// and then confirmed (a third record). Rows stored already are left out, and the
/// push that finds them is not refused.
#[tokio::test]
async fn a_push_inserts_its_new_member_days_and_memberships_without_speculation() {
    let Some(db) = TestDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    else {
        return;
    };
    let store = PgStore::open(db.url()).await.unwrap();
    let c = store.connection().await.unwrap();
    let available: bool = c
        .query_one(
            "SELECT count(*) > 0 FROM pg_available_extensions WHERE name = 'pg_walinspect'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    if !available {
        eprintln!("skipped: pg_walinspect is not installed");
        return;
    }
    c.batch_execute("CREATE EXTENSION pg_walinspect")
        .await
        .unwrap();
    let t = till(&store).await;
    const CARDS: [&str; 3] = [CARD, "4000000000017", "4000000000025"];
    let from = wal_position(&c).await;
    let sales = (1..=3).map(|seq| sale(seq, CARDS[seq as usize - 1], 0, 5));
    store
        .push(&t, Batch::new(sales.collect()).unwrap(), T0)
        .await
        .unwrap();
    // The same cards on the same day again, through an instance that has not seen
    // them associated: their rows are there already.
    let other = PgStore::open(db.url()).await.unwrap();
    let more = (4..=6).map(|seq| sale(seq, CARDS[seq as usize - 4], 0, 5));
    other
        .push(&t, Batch::new(more.collect()).unwrap(), T0)
        .await
        .unwrap();
    let to = wal_position(&c).await;
    for table in ["kpi_member_days", "kpi_members", "store_cards"] {
        let rows: i64 = c
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 3, "{table}");
        let heap = wal_records(&c, table, &from, &to).await;
        let inserts: i64 = heap
            .iter()
            .filter(|(kind, _)| kind.starts_with("INSERT"))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(inserts, 3, "{table}: {heap:?}");
        // The second push's cards move their memberships' feed positions (the
        // triggers on `cards`, migration 9): updates, not inserts.
        let moved = |kind: &str| table == "store_cards" && kind == "UPDATE";
        assert!(
            heap.iter()
                .all(|(kind, _)| kind.starts_with("INSERT") || moved(kind)),
            "{table}: {heap:?}"
        );
    }
}
