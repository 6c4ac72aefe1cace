//! The change feed on PostgreSQL, read in one REPEATABLE READ read-only transaction.
//!
//! # The cursor
//!
//! Transactions commit out of order here, so "everything after counter N" would
//! skip a change whose transaction drew a lower number but committed after the pull.
//! Instead every card change and block event records the 64-bit id of its
//! transaction (`loyalty_xid()`, the top-level id), and a pull answers only changes
//! whose transaction id is below the bound of its own snapshot ([`super::bound`]): no
//! transaction below the bound can still write a card, and every later writer gets a
//! larger id, so nothing can still commit into the range a pull has answered. A
//! cursor is a position `(xid, card)`:
//!
//! * `x<xid>`: every change with a transaction id below `xid` was delivered (the
//!   usual cursor, `xid` being the bound of the last pull's snapshot);
//! * `x<xid>:<card>`: a full page stopped inside transaction `xid`; cards up to
//!   `(xid, card)` were delivered.
//!
//! The next pull answers cards with `(xid, card)` past the cursor and `xid` below its
//! own snapshot's bound, in that order. A card changed again later comes again with
//! its newer state. Block events are answered by transaction id only, once their
//! whole transaction is behind the cursor; each carries the card's current state in
//! the snapshot, so events that arrive out of their commit order still leave the
//! agent with HQ's latest word.
//!
//! A store's page is read from its own memberships (`store_cards.change_xid`,
//! migration 9), not from the chain's cards: each membership carries its card's
//! position, set by the triggers on `cards` in the transaction that changed the card
//! (or, for a new membership, its own transaction's, at or above the card's). So a
//! position is still the `loyalty_xid()` of the transaction that wrote it, and the
//! bound's reasoning holds for memberships as it did for cards: the cursor, its
//! meaning and the agents' stored cursors are unchanged.
//!
//! The bound is the smallest transaction id in progress in the snapshot that may
//! write this database: transactions of the cluster's other databases do not hold
//! it back ([`super::bound`]).

use super::bound::{Bound, HEAD};
use super::session::{self, PgSession};
use super::{escrow, push, sql, terminals};
use crate::keys::TokenHash;
use crate::ledger::CardRecord;
use crate::store::Result;
use crate::store::StoreError;
use crate::store::rows::{self, CARD_COLUMNS};
use crate::store::statements::{FeedPosition, FeedRows, LiveReads};
use deadpool_postgres::Client;
use protocol::wire::BlockChange;
use protocol::{CardId, StoreId};
use std::sync::LazyLock;
use std::time::Instant;

/// A feed position; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Changes of transactions below this id are delivered (and those of this one up
    /// to `card`).
    pub xid: i64,
    /// Empty: nothing of transaction `xid` itself was delivered.
    pub card: String,
}

impl Cursor {
    /// The start of the feed.
    pub const START: Self = Self {
        xid: 0,
        card: String::new(),
    };
}

impl FeedPosition for Cursor {
    fn start() -> Self {
        Self::START
    }

    /// A plain number is a cursor of the SQLite backend (an agent of an HQ that moved
    /// to PostgreSQL): such an agent starts over and receives every balance once.
    fn parse(cursor: Option<&str>) -> Result<Self> {
        let s = match cursor.map(str::trim) {
            None | Some("") => return Ok(Self::START),
            Some(s) => s,
        };
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Self::START);
        }
        let bad = || StoreError::BadCursor(s.to_owned());
        let rest = s.strip_prefix('x').ok_or_else(bad)?;
        let (xid, card) = rest.split_once(':').unwrap_or((rest, ""));
        let xid = xid
            .parse::<i64>()
            .ok()
            .filter(|x| *x >= 0)
            .ok_or_else(bad)?;
        if !card.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Self {
            xid,
            card: card.to_owned(),
        })
    }

    /// By transaction id only: a page cut inside a transaction is below its bound.
    fn is_past(&self, head: &Self) -> bool {
        self.xid > head.xid
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.card.is_empty() {
            write!(f, "x{}", self.xid)
        } else {
            write!(f, "x{}:{}", self.xid, self.card)
        }
    }
}

impl FeedRows for PgSession<'_> {
    type Position = Cursor;

    /// The first statement takes the transaction's snapshot; its [`Bound`] bounds the
    /// page, and is shown to the [`FeedWatch`]. A cursor `after` past the bound and
    /// not past the snapshot's xmax is the head: a previous pull looked past a
    /// transaction of another database that this one did not (yet), and what it
    /// delivered stays delivered.
    async fn feed_head(&mut self, after: &Cursor) -> Result<Cursor> {
        let started = Instant::now();
        let pass_over = self.feed_watch().pass_over(started);
        let bound = sql::one(self.conn().await?, &HEAD, &[&pass_over], |r| {
            Ok(Bound {
                xid: r.try_get(0)?,
                xmin: r.try_get(1)?,
                xmax: r.try_get(2)?,
            })
        })
        .await?;
        self.feed_watch().saw(bound, started);
        if after.xid > bound.xid && after.xid <= bound.xmax {
            return Ok(after.clone());
        }
        Ok(Cursor {
            xid: bound.xid,
            card: String::new(),
        })
    }

    async fn changed_cards(
        &mut self,
        store: &StoreId,
        after: &Cursor,
        head: &Cursor,
        page: i64,
    ) -> Result<Vec<(Cursor, CardRecord)>> {
        sql::all(
            self.conn().await?,
            &CHANGED_CARDS,
            &[&store.as_str(), &after.xid, &after.card, &head.xid, &page],
            |r| {
                let card = rows::card_record(r, 1)?;
                let at = Cursor {
                    xid: r.try_get(0)?,
                    card: card.card.as_str().to_owned(),
                };
                Ok((at, card))
            },
        )
        .await
    }

    /// Block events of transactions wholly behind `upto` and not behind `after`,
    /// each with the card's current state in the snapshot.
    async fn block_changes(&mut self, after: &Cursor, upto: &Cursor) -> Result<Vec<BlockChange>> {
        sql::all(
            self.conn().await?,
            "SELECT e.card, c.blocked FROM block_events e JOIN cards c ON c.card = e.card
             WHERE e.xid >= $1 AND e.xid < $2 ORDER BY e.xid, e.id",
            &[&after.xid, &upto.xid],
            rows::block_change,
        )
        .await
    }

    /// One flight, one round trip: the held-back `START TRANSACTION`, the three reads
    /// keyed by the token (so that an unknown or revoked token reads nothing: its
    /// `acked_through` has no row, and the card and holds are read only for an active
    /// terminal), then the `COMMIT`.
    async fn live_reads(&mut self, token: &TokenHash, card: &CardId) -> Result<Option<LiveReads>> {
        let start = self.take_begin();
        let whole = start.is_some();
        let c = self.client();
        let cards = [card];
        let statements = [
            terminals::TOKEN_ACKED.as_str(),
            &TOKEN_CARD,
            &escrow::TOKEN_OWN_HOLDS,
        ];
        let (began, acked_through, record, own_holds, committed) =
            sql::flight(c, &statements, async {
                tokio::join!(
                    push::begin(c, start),
                    terminals::token_acked_through(c, token),
                    token_card(c, token, card),
                    escrow::token_own_holds(c, token, &cards),
                    session::commit_in_flight(c, whole),
                )
            })
            .await?;
        committed?;
        if whole {
            self.ended();
        }
        began?;
        let Some((_, acked_through)) = acked_through? else {
            return Ok(None);
        };
        Ok(Some(LiveReads {
            acked_through,
            card: record?,
            own_holds: own_holds?,
        }))
    }
}

/// The statement of [`FeedRows::changed_cards`]: a range scan of the store's own
/// positions (`store_cards_feed`, migration 9) from the cursor, each card read by key,
/// stopping at the page's end. A membership's position is its card's (or, for a
/// membership newer than the card's last change, its own transaction's, above it):
/// the triggers on `cards` set it in the transaction that changed the card, so a
/// position is still the `loyalty_xid()` of the transaction that wrote it and the
/// snapshot bound `$4` ([`super::bound`]) holds as it did for `cards_change`. A page
/// reads the store's changes only, whatever the rest of the chain changed.
///
/// The card is a `LATERAL` subquery kept apart (`OFFSET 0`), so it can only be
/// probed per membership: a join could be planned (a generic plan, guessing the
/// page's size) as a hash of every card of the chain.
static CHANGED_CARDS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT s.change_xid, {} FROM store_cards s,
                LATERAL (SELECT {CARD_COLUMNS} FROM cards WHERE card = s.card OFFSET 0) c
         WHERE s.store = $1 AND (s.change_xid, s.card) > ($2, $3) AND s.change_xid < $4
         ORDER BY s.change_xid, s.card LIMIT $5",
        prefixed(CARD_COLUMNS, "c.")
    )
});

/// One card's stored state, read for the active terminal of `token` only.
async fn token_card(c: &Client, token: &TokenHash, card: &CardId) -> Result<Option<CardRecord>> {
    sql::first(c, &TOKEN_CARD, &[&token.as_str(), &card.as_str()], |r| {
        rows::card_record(r, 0)
    })
    .await
}

/// The statement of [`token_card`]: the card `$2` if the token hash `$1` is an
/// active terminal's.
static TOKEN_CARD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {CARD_COLUMNS} FROM cards WHERE card = $2 AND EXISTS {}",
        *terminals::TOKEN_TERMINAL
    )
});

/// `a, b` with each column prefixed (`c.a, c.b`).
fn prefixed(columns: &str, prefix: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{prefix}{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_start_over() {
        for c in [
            Cursor::START,
            Cursor {
                xid: 7_000_123,
                card: String::new(),
            },
            Cursor {
                xid: 42,
                card: "4006381333931".into(),
            },
        ] {
            assert_eq!(Cursor::parse(Some(&c.to_string())).unwrap(), c);
        }
        assert_eq!(Cursor::parse(None).unwrap(), Cursor::START);
        assert_eq!(Cursor::parse(Some("1234")).unwrap(), Cursor::START);
        for bad in ["x", "y12", "x-1", "x12:abc", "x1:2:3"] {
            assert!(
                matches!(Cursor::parse(Some(bad)), Err(StoreError::BadCursor(_))),
                "{bad}"
            );
        }
        assert_eq!(prefixed("a, b", "c."), "c.a, c.b");
    }
}

#[cfg(test)]
mod positions;
