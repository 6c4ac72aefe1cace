//! The change feed in SQLite. The cursor is the decimal change position: every card
//! change and block event takes the next position in its writing transaction, and
//! with a single writer commit order is position order, so "everything after
//! position N" is exact.

use super::session::SqliteSession;
use crate::keys::TokenHash;
use crate::ledger::CardRecord;
use crate::store::Result;
use crate::store::StoreError;
use crate::store::rows::{self, CARD_COLUMNS};
use crate::store::statements::{EscrowRows, FeedPosition, FeedRows, LiveReads, TerminalRows};
use protocol::wire::BlockChange;
use protocol::{CardId, StoreId};
use std::fmt;

/// A change position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangePos(i64);

impl fmt::Display for ChangePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FeedPosition for ChangePos {
    fn start() -> Self {
        Self(0)
    }

    fn parse(cursor: Option<&str>) -> Result<Self> {
        match cursor.map(str::trim) {
            None | Some("") => Ok(Self::start()),
            // A cursor of the PostgreSQL backend (an agent of an HQ that moved to
            // SQLite): it starts over, as PostgreSQL does with a SQLite cursor.
            Some(s) if is_postgres_cursor(s) => Ok(Self::start()),
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Self)
                .ok_or_else(|| StoreError::BadCursor(s.to_owned())),
        }
    }

    fn is_past(&self, head: &Self) -> bool {
        self.0 > head.0
    }
}

/// `x<transaction id>[:<card>]`, the PostgreSQL backend's cursor.
fn is_postgres_cursor(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('x') else {
        return false;
    };
    let (xid, card) = rest.split_once(':').unwrap_or((rest, ""));
    !xid.is_empty()
        && [xid, card]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// A page of the store's (`?1`) cards past position `?2`, at most `?3`, in position
/// order: each membership carries its card's position (schema migration 13), so the
/// page is a range scan of `store_feed` and a read of each card by key, in that order
/// (`CROSS JOIN`).
fn changed_cards_sql() -> String {
    format!(
        "SELECT s.change_pos, {CARD_COLUMNS}
         FROM store_cards s CROSS JOIN cards USING (card)
         WHERE s.store = ?1 AND s.change_pos > ?2
         ORDER BY s.change_pos LIMIT ?3"
    )
}

impl FeedRows for SqliteSession<'_> {
    type Position = ChangePos;

    /// The counter: every position up to it is committed (one writer).
    async fn feed_head(&mut self, _after: &ChangePos) -> Result<ChangePos> {
        self.one("SELECT pos FROM change_counter WHERE id = 1", [], |r| {
            Ok(ChangePos(r.get(0)?))
        })
    }

    /// Every position up to the head is committed (one writer), so `head` bounds
    /// nothing here. A range scan of the store's own positions (schema migration 13):
    /// a quiet store reads its page, not every card the chain changed since its cursor.
    async fn changed_cards(
        &mut self,
        store: &StoreId,
        after: &ChangePos,
        _head: &ChangePos,
        page: i64,
    ) -> Result<Vec<(ChangePos, CardRecord)>> {
        self.all(&changed_cards_sql(), (store.as_str(), after.0, page), |r| {
            Ok((ChangePos(r.get(0)?), rows::card_record(r, 1)?))
        })
    }

    async fn block_changes(
        &mut self,
        after: &ChangePos,
        upto: &ChangePos,
    ) -> Result<Vec<BlockChange>> {
        self.all(
            "SELECT card, blocked FROM block_events WHERE pos > ?1 AND pos <= ?2 ORDER BY pos",
            (after.0, upto.0),
            |r| rows::block_change(r),
        )
    }

    /// One after the other: on SQLite a statement costs no round trip.
    async fn live_reads(&mut self, token: &TokenHash, card: &CardId) -> Result<Option<LiveReads>> {
        let Some(terminal) = self.authenticate(token).await? else {
            return Ok(None);
        };
        // Authenticated in this snapshot: the terminal is active in it.
        let Some(acked_through) = self.active_acked_through(terminal.key).await? else {
            return Ok(None);
        };
        Ok(Some(LiveReads {
            acked_through,
            card: self.first(
                &format!("SELECT {CARD_COLUMNS} FROM cards WHERE card = ?1"),
                [card.as_str()],
                |r| rows::card_record(r, 0),
            )?,
            own_holds: self.own_holds(terminal.key, &[card]).await?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::session::block_on;
    use super::*;
    use crate::store::caches::Caches;
    use rusqlite::{Connection, StatementStatus};

    /// A quiet store's page reads its own cards, whatever the rest of the chain
    /// changed since its cursor: store `a`'s pull after one change of its card runs as
    /// many SQLite program steps once store `b`'s 2,000 cards changed too (a range
    /// scan of the chain's changes from the cursor read each of them).
    #[test]
    fn a_quiet_store_s_page_reads_its_cards_not_the_chain_s_changes() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrations()
            .to_latest(&mut conn)
            .unwrap();
        // Card 4000000000000 of store a and 2,000 cards of store b at positions
        // 1..=2001; each card's change moves its memberships (the cards' trigger).
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO cards (card, balance, pending, spend_12m, welcome_given, seen,
                                change_pos, updated_at)
             SELECT printf('4%012d', i), 0, 0, 0, 1, 1, i + 1, 0 FROM n;
             INSERT INTO store_cards (store, card)
             SELECT CASE card WHEN '4000000000000' THEN 'a' ELSE 'b' END, card FROM cards;
             UPDATE cards SET change_pos = change_pos;
             UPDATE change_counter SET pos = 2001;",
        )
        .unwrap();
        let cursor = ChangePos(2001);
        let store = StoreId::parse("a").unwrap();
        let caches = Caches::default();
        // Store a's page from the cursor: its cards, and the program steps it took.
        let pull = |conn: &mut Connection| {
            let page = {
                let mut session = SqliteSession::new(conn, &caches);
                block_on(session.changed_cards(&store, &cursor, &cursor, 100)).unwrap()
            };
            let steps = conn
                .prepare_cached(&changed_cards_sql())
                .unwrap()
                .reset_status(StatementStatus::VmStep);
            let cards: Vec<(i64, String)> = page
                .into_iter()
                .map(|(pos, c)| (pos.0, c.card.as_str().to_owned()))
                .collect();
            (cards, steps)
        };
        conn.execute_batch("UPDATE cards SET change_pos = 2002 WHERE card = '4000000000000'")
            .unwrap();
        let (page, quiet) = pull(&mut conn);
        assert_eq!(page, [(2002, "4000000000000".to_owned())]);
        conn.execute_batch(
            "UPDATE cards SET change_pos = change_pos + 2002 WHERE card <> '4000000000000'",
        )
        .unwrap();
        let (page, busy) = pull(&mut conn);
        assert_eq!(page, [(2002, "4000000000000".to_owned())]);
        assert_eq!(busy, quiet, "store a read store b's changes");
        // Store b's own page comes from its positions, in order.
        let mut session = SqliteSession::new(&mut conn, &caches);
        let b = StoreId::parse("b").unwrap();
        let page = block_on(session.changed_cards(&b, &cursor, &cursor, 3)).unwrap();
        let positions: Vec<i64> = page.iter().map(|(pos, _)| pos.0).collect();
        assert_eq!(positions, [2004, 2005, 2006]);
    }

    /// The page is driven by the store's positions (`store_feed`), each card read by
    /// its key, with no sort.
    #[test]
    fn the_page_is_a_range_scan_of_the_store_s_positions() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrations()
            .to_latest(&mut conn)
            .unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", changed_cards_sql()))
            .unwrap()
            .query_map(("a", 0, 10), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(plan.len(), 2, "{plan:?}");
        assert!(
            plan[0].contains("store_feed (store=? AND change_pos>?)"),
            "{plan:?}"
        );
        // By its key, whichever (a rowid table's unique index or a WITHOUT ROWID key).
        assert!(
            plan[1].starts_with("SEARCH cards USING") && plan[1].ends_with("(card=?)"),
            "{plan:?}"
        );
    }

    #[test]
    fn cursors_are_non_negative_numbers() {
        assert_eq!(ChangePos::parse(None).unwrap(), ChangePos(0));
        assert_eq!(ChangePos::parse(Some(" 42 ")).unwrap(), ChangePos(42));
        assert_eq!(ChangePos(42).to_string(), "42");
        // A PostgreSQL cursor starts over (the document's pattern covers both).
        assert_eq!(ChangePos::parse(Some("x12:4000")).unwrap(), ChangePos(0));
        assert_eq!(ChangePos::parse(Some("x12")).unwrap(), ChangePos(0));
        for bad in ["-1", "1.5", "x", "x:1", "x1:a", "y12"] {
            assert!(matches!(
                ChangePos::parse(Some(bad)),
                Err(StoreError::BadCursor(_))
            ));
        }
        assert!(ChangePos(5).is_past(&ChangePos(4)));
    }
}
