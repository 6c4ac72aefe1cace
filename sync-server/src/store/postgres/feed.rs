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

/// The statement of [`FeedRows::changed_cards`]: a range scan of `cards_change` from
/// the cursor, each card's membership in the store probed by key, stopping at the
/// page's end.
///
/// The membership is a scalar subquery, not `EXISTS`: PostgreSQL turns an `EXISTS`
/// into a join, and with an estimate of the store's cards made while `store_cards` was
/// small (or of a range it thinks nearly empty) it drove that join from every card of
/// the store, probed each in `cards` and sorted them all for one page: 100–225 ms a
/// page at 20,000 cards during a backlog, growing with the store. A scalar subquery
/// stays a per-row filter, so the only way to the page's order is the index.
static CHANGED_CARDS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT c.change_xid, {} FROM cards c
         WHERE (c.change_xid, c.card) > ($2, $3) AND c.change_xid < $4
           AND (SELECT TRUE FROM store_cards s WHERE s.store = $1 AND s.card = c.card)
         ORDER BY c.change_xid, c.card LIMIT $5",
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
mod plan_tests {
    use super::CHANGED_CARDS;
    use crate::store::postgres::test_hq::{add_cards, new_hq};
    use deadpool_postgres::Client;

    /// Index entries of `store_cards` one page of the feed (10 cards) read, and
    /// scans of `cards_change`, after cursor `(after, "")`.
    async fn page_reads(c: &Client, after: i64) -> (i64, i64) {
        const READS: &str = "SELECT pg_stat_get_xact_tuples_returned('store_cards_pkey'::regclass),
                                    pg_stat_get_xact_numscans('cards_change'::regclass)";
        c.batch_execute("START TRANSACTION").await.unwrap();
        let before = c.query_one(READS, &[]).await.unwrap();
        let stmt = c.prepare_cached(&CHANGED_CARDS).await.unwrap();
        let rows = c
            .query(&stmt, &[&"store-1", &after, &"", &i64::MAX, &10_i64])
            .await
            .unwrap();
        assert_eq!(rows.len(), 10);
        let after = c.query_one(READS, &[]).await.unwrap();
        c.batch_execute("ROLLBACK").await.unwrap();
        let delta = |i| after.get::<_, i64>(i) - before.get::<_, i64>(i);
        (delta(0), delta(1))
    }

    /// A page of the store feed reads about a page of the store's cards, whatever the
    /// statistics say: those of a new HQ (the connection's plan made on a few cards),
    /// and fresh ones once the chain's cards arrived.
    #[tokio::test]
    async fn a_feed_page_reads_a_page_of_the_store_s_cards() {
        let Some((_db, _store, c)) = new_hq().await else {
            return;
        };
        // A new HQ: a few cards, never analyzed yet, and more pages than PostgreSQL
        // plans for their values before it settles on a generic plan (five).
        add_cards(&c, 0, 50).await;
        for _ in 0..10 {
            page_reads(&c, 0).await;
        }
        add_cards(&c, 50, 20_050).await;
        assert_pages_read_a_page(&c, "stale statistics").await;
        c.batch_execute("ANALYZE cards; ANALYZE store_cards")
            .await
            .unwrap();
        assert_pages_read_a_page(&c, "fresh statistics").await;
    }

    /// Pages from the start and from a later cursor each read at most a page's worth
    /// of `store_cards` and scan `cards_change` once.
    async fn assert_pages_read_a_page(c: &Client, statistics: &str) {
        for after in [0, 20] {
            let (store_cards, range_scans) = page_reads(c, after).await;
            assert!(
                store_cards <= 20,
                "{statistics}, after {after}: {store_cards}"
            );
            assert_eq!(range_scans, 1, "{statistics}, after {after}");
        }
    }
}
