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

impl FeedRows for SqliteSession<'_> {
    type Position = ChangePos;

    /// The counter: every position up to it is committed (one writer).
    async fn feed_head(&mut self, _after: &ChangePos) -> Result<ChangePos> {
        self.one("SELECT pos FROM change_counter WHERE id = 1", [], |r| {
            Ok(ChangePos(r.get(0)?))
        })
    }

    /// Every position up to the head is committed (one writer), so `head` bounds
    /// nothing here.
    async fn changed_cards(
        &mut self,
        store: &StoreId,
        after: &ChangePos,
        _head: &ChangePos,
        page: i64,
    ) -> Result<Vec<(ChangePos, CardRecord)>> {
        self.all(
            &format!(
                "SELECT c.change_pos, {CARD_COLUMNS} FROM cards c
                 WHERE c.change_pos > ?2
                   AND EXISTS (SELECT 1 FROM store_cards s WHERE s.store = ?1 AND s.card = c.card)
                 ORDER BY c.change_pos LIMIT ?3"
            ),
            (store.as_str(), after.0, page),
            |r| Ok((ChangePos(r.get(0)?), rows::card_record(r, 1)?)),
        )
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
    use super::*;

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
