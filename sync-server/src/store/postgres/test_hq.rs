//! Setup shared by the PostgreSQL plan tests, which grow a table under a connection's
//! cached plans: a new HQ with one pooled connection, and blank cards to grow with.

use super::PgStore;
use crate::keys::TerminalToken;
use crate::ledger::apply::tests::T0;
use crate::store::{Store, TerminalIdentity};
use deadpool_postgres::Client;
use protocol::{StoreId, TerminalId};
use testkit::pg::TestDatabase;

/// A new HQ's database, its store and one of its pooled connections (dropped in
/// reverse order when bound as `let Some((db, store, c))`); `None` where the tests'
/// PostgreSQL is skipped.
pub async fn new_hq() -> Option<(TestDatabase, PgStore, Client)> {
    let db = TestDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("{e}"))?;
    let store = PgStore::open(db.url()).await.unwrap();
    let c = store.connection().await.unwrap();
    Some((db, store, c))
}

/// Blank cards `from..to` (13-digit numbers) of `store-1`, 500 to a feed position
/// (the cards' and their memberships').
pub async fn add_cards(c: &Client, from: u32, to: u32) {
    c.batch_execute(&format!(
        "INSERT INTO cards (card, balance, pending, spend_12m, welcome_given, seen,
                            change_xid, updated_at)
         SELECT lpad(n::text, 13, '0'), 0, 0, 0, FALSE, FALSE, 1 + n / 500, 0
         FROM generate_series({from}, {to} - 1) AS n;
         INSERT INTO store_cards (store, card, change_xid)
         SELECT 'store-1', lpad(n::text, 13, '0'), 1 + n / 500
         FROM generate_series({from}, {to} - 1) AS n"
    ))
    .await
    .unwrap();
}

/// A till `t1` of store `s` on `store`, as its pushes authenticate.
pub async fn till(store: &PgStore, s: &str) -> TerminalIdentity {
    let token = TerminalToken::generate().unwrap();
    let (s, t) = (StoreId::parse(s).unwrap(), TerminalId::parse("t1").unwrap());
    store
        .add_terminal(&s, &t, &token.hash(), false, T0)
        .await
        .unwrap();
    store.authenticate(&token.hash()).await.unwrap().unwrap()
}
