//! The card locks and the cards' update find their rows by key however small `cards`
//! was when the connection first ran them, and however big a push's batch is.

use super::{lock_sorted, write_cards};
use crate::store::postgres::push::with_push_settings;
use crate::store::postgres::sql;
use crate::store::postgres::test_hq::{add_cards, new_hq};
use deadpool_postgres::Client;
use time::OffsetDateTime;

/// Sequential scans of `cards` by this connection's open transaction so far.
async fn card_scans(c: &Client) -> i64 {
    c.query_one(
        "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'cards'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Locks and rewrites `keys` in one transaction begun by `begin`; answers the
/// sequential scans of `cards` it made, rolled back.
async fn lock_and_write_in(c: &Client, begin: &str, keys: &[&str]) -> i64 {
    c.batch_execute(begin).await.unwrap();
    let before = card_scans(c).await;
    let locked = lock_sorted(c, keys, sql::Plan::EachRun).await.unwrap();
    assert_eq!(locked.len(), keys.len());
    let records: Vec<_> = locked.values().collect();
    write_cards(c, &records, OffsetDateTime::UNIX_EPOCH)
        .await
        .unwrap();
    let scans = card_scans(c).await - before;
    c.batch_execute("ROLLBACK").await.unwrap();
    scans
}

/// [`lock_and_write_in`] a plain transaction.
async fn lock_and_write(c: &Client, keys: &[&str]) -> i64 {
    lock_and_write_in(c, "START TRANSACTION", keys).await
}

#[tokio::test]
async fn card_locks_and_updates_use_the_key_after_the_table_grew() {
    let Some((_db, _store, c)) = new_hq().await else {
        return;
    };
    // A new HQ: a few cards, and more runs than PostgreSQL plans for their values
    // before it settles on a generic plan (five).
    add_cards(&c, 0, 50).await;
    let keys: Vec<String> = (0..10u32).map(|n| format!("{:013}", n * 3)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    for _ in 0..10 {
        lock_and_write(&c, &keys).await;
    }
    // The chain's cards arrive; the same connection pushes on.
    add_cards(&c, 50, 20_050).await;
    assert_eq!(lock_and_write(&c, &keys).await, 0);
}

/// A push of 500 cards among 20,000 (the backlog benchmark's shape), with the
/// table's statistics current: planned for its arrays with the default page costs,
/// both statements read every card (the update hashing them all) instead of probing
/// the key 500 times; a push's transaction plans with `push::PUSH_COSTS`
/// (among its settings).
#[tokio::test]
async fn a_push_sized_batch_probes_its_cards_by_key() {
    let Some((_db, _store, c)) = new_hq().await else {
        return;
    };
    add_cards(&c, 0, 20_000).await;
    c.batch_execute("ANALYZE cards").await.unwrap();
    let keys: Vec<String> = (3_000..3_500u32).map(|n| format!("{n:013}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let begin = with_push_settings("START TRANSACTION");
    assert_eq!(lock_and_write_in(&c, &begin, &keys).await, 0);
}
