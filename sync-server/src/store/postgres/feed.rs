//! The change feed on PostgreSQL, read in one REPEATABLE READ read-only transaction.
//!
//! # The cursor
//!
//! Transactions commit out of order here, so "everything after counter N" would
//! skip a change whose transaction drew a lower number but committed after the pull.
//! Instead every card change and block event records the 64-bit id of its
//! transaction (`loyalty_xid()`, the top-level id), and a pull answers only changes
//! whose transaction id is below the bound of its own snapshot (below): no
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
//! own snapshot's xmin, in that order. A card changed again later comes again with
//! its newer state. Block events are answered by transaction id only, once their
//! whole transaction is behind the cursor; each carries the card's current state in
//! the snapshot, so events that arrive out of their commit order still leave the
//! agent with HQ's latest word.
//!
//! # The bound
//!
//! The snapshot's xmin would do, but it is the oldest transaction running anywhere
//! in the PostgreSQL cluster that has an id: another application's session left
//! `idle in transaction`, a batch job in another database, a prepared transaction.
//! While it lasted, no till would get a balance, block or rule change (invariant 7).
//! So the bound ([`HEAD`]) is the smallest id the snapshot lists as in progress
//! (`pg_snapshot_xip`: top-level ids only, which are what `loyalty_xid()` records),
//! or its xmax when none is, leaving out only ids positively known to be another
//! database's transactions; every id below it has either finished (so its changes
//! are in the snapshot, or were rolled back) or belongs to a transaction that cannot
//! write this database's cards. An id is another database's when
//!
//! * `pg_stat_get_activity` (what `pg_stat_activity` shows; `datid` and `backend_xid`
//!   are shown to every role) lists a backend of another database with that id. A
//!   backend stays in one database for its life, and the list is read after the
//!   snapshot was taken (in the same statement, the transaction's first: the list is
//!   read once per transaction and never cached from an earlier one). PostgreSQL
//!   copies a backend's entry, then reads the id of the process in that slot; a
//!   process leaving clears its entry before it frees the slot, and a new one fills
//!   its entry before it runs a query. The process in the slot when the id was read
//!   holds an id it took before the snapshot, so it held that slot all along, and the
//!   entry copied is its own;
//! * `pg_prepared_xact()` (`pg_prepared_xacts`) lists a prepared transaction of
//!   another database with it (a prepared transaction keeps the database it ran in).
//!
//! Both give 32-bit ids, compared with the snapshot's 64-bit ones modulo 2^32: every
//! id listed in progress is less than 2^31 behind the snapshot's xmax (PostgreSQL
//! stops assigning ids before that), and an id read from those lists is running
//! then, so two ids equal modulo 2^32 are the same one. An id listed in progress in
//! the snapshot that neither list shows (it ended since, or its backend was between
//! states) still bounds: its changes are invisible to this snapshot. A transaction of
//! this database that is not HQ's (an operator's `psql`, a script) bounds too, since
//! it may write cards: [`FeedWatch`] logs a warning and sets the
//! `sync_server_feed_held_back_seconds` gauge while one holds the feed.
//!
//! Reading those lists costs about 85 µs with 46 backends connected, so a pull reads
//! them only once the same transaction has held the snapshots' xmin for
//! [`PATIENCE`] (a second; a push holds it milliseconds), and is bounded by the xmin,
//! always safe, until then ([`FeedWatch`]).
//!
//! A bound can be lower than a previous pull's: until a transaction of another
//! database has held the xmin for [`PATIENCE`] (on each instance: every instance has
//! its own watch), or when it was being prepared between the two reads of the lists.
//! A cursor between the bound and the snapshot's xmax is then kept as the head
//! ([`FeedRows::feed_head`]): the pull answers nothing new rather than the agent
//! starting over. Only a cursor past the xmax, which no pull of this database gave,
//! is "from the future" (HQ restored from a backup, another database) and starts the
//! agent over.

use super::session::{self, PgSession};
use super::{escrow, push, sql, terminals};
use crate::keys::TokenHash;
use crate::ledger::CardRecord;
use crate::store::Result;
use crate::store::StoreError;
use crate::store::rows::{self, CARD_COLUMNS};
use crate::store::statements::{FeedPosition, FeedRows, LiveReads};
use deadpool_postgres::Client;
use prometheus_client::metrics::gauge::Gauge;
use protocol::wire::BlockChange;
use protocol::{CardId, StoreId};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// What [`HEAD`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bound {
    /// Changes of transactions below this id are answered.
    xid: i64,
    /// The snapshot's xmin: the oldest transaction in progress anywhere in the cluster.
    xmin: i64,
    /// The snapshot's xmax: `xid` is below it when a running transaction holds the
    /// bound.
    xmax: i64,
}

impl Bound {
    /// The running transaction that holds the feed at `xid`, if one does.
    fn holder(self) -> Option<i64> {
        (self.xid < self.xmax).then_some(self.xid)
    }
}

/// The feed's bound in the snapshot `s` (see the module documentation), its xmin
/// and its xmax. The lists of backends and prepared transactions cost about 85 µs
/// with 46 backends (docs/performance.md), so they are read only when the xmin is at
/// or below `$1`, an xid the [`FeedWatch`] has seen hold the xmin for a while (the
/// xmin itself is always a safe bound), and only when the snapshot lists a
/// transaction in progress (anti joins on an empty side read nothing).
fn bound_statement(snapshot: &str) -> String {
    const ELSEWHERE: &str = "<> (SELECT oid FROM pg_database WHERE datname = current_database())";
    format!(
        "SELECT CASE WHEN pg_snapshot_xmin(s)::text::bigint > $1
                     THEN pg_snapshot_xmin(s)::text::bigint
                     ELSE COALESCE(
                       (SELECT min(x::text::bigint) FROM pg_snapshot_xip(s) AS x
                         WHERE NOT EXISTS (
                                 SELECT FROM pg_stat_get_activity(NULL) a
                                  WHERE a.backend_xid::text::bigint = x::text::bigint % 4294967296
                                    AND a.datid {ELSEWHERE})
                           AND NOT EXISTS (
                                 SELECT FROM pg_prepared_xact() p
                                  WHERE p.transaction::text::bigint = x::text::bigint % 4294967296
                                    AND p.dbid {ELSEWHERE})),
                       pg_snapshot_xmax(s)::text::bigint) END,
                pg_snapshot_xmin(s)::text::bigint,
                pg_snapshot_xmax(s)::text::bigint
         FROM (SELECT {snapshot}) AS t(s)"
    )
}

/// The statement of [`FeedRows::feed_head`]: the bound of the transaction's snapshot.
static HEAD: LazyLock<String> = LazyLock::new(|| bound_statement("pg_current_snapshot()"));

/// How long one transaction holds the snapshots' xmin before pulls look for
/// transactions of other databases: a push holds it milliseconds.
const PATIENCE: Duration = Duration::from_secs(1);

/// How long a transaction may hold the feed back before [`FeedWatch`] warns.
const HELD_TOO_LONG: Duration = Duration::from_secs(60);

/// Watches, pull after pull, which running transactions hold the snapshots' xmin and
/// the feed's bound back. The same xmin for [`PATIENCE`] makes the next pulls pass
/// over the transactions of other databases ([`bound_statement`]); the same bound for
/// [`HELD_TOO_LONG`] is said in the log (at most once per that interval, with the
/// transaction's 32-bit id as `pg_stat_activity.backend_xid` shows it; no card, no
/// SQL) and in a gauge of `/metrics`. Under load a different push holds them at each
/// pull; the same one for a minute is a transaction left open.
#[derive(Debug)]
pub struct FeedWatch {
    patience: Duration,
    state: Mutex<Watched>,
    /// Seconds the same transaction has held the feed, as of the last pull.
    seconds: Gauge,
}

impl Default for FeedWatch {
    fn default() -> Self {
        Self {
            patience: PATIENCE,
            state: Mutex::default(),
            seconds: Gauge::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Watched {
    /// The last xmin seen, since when.
    xmin: Option<(i64, Instant)>,
    /// The transaction holding the bound at the last pull.
    held: Option<Held>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    xid: i64,
    since: Instant,
    warned: Option<Instant>,
}

/// `slot`'s transaction and since when, started over at `now` unless it is `xid`.
fn same_since(slot: Option<(i64, Instant)>, xid: i64, now: Instant) -> (i64, Instant) {
    match slot {
        Some((x, since)) if x == xid => (x, since),
        _ => (xid, now),
    }
}

impl FeedWatch {
    /// The gauge, to register with the metrics.
    pub fn gauge(&self) -> Gauge {
        self.seconds.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        // Two observations, sound whatever a panicking holder left.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`HEAD`]'s `$1` for a pull at `now`: the xmin seen for [`PATIENCE`], or -1.
    fn pass_over(&self, now: Instant) -> i64 {
        match self.lock().xmin {
            Some((xid, since)) if now.saturating_duration_since(since) >= self.patience => xid,
            _ => -1,
        }
    }

    /// A pull's bound, seen at `now`. Returns how long its holder has held the feed.
    fn saw(&self, bound: Bound, now: Instant) -> Duration {
        let mut state = self.lock();
        state.xmin = Some(same_since(state.xmin, bound.xmin, now));
        let Some(xid) = bound.holder() else {
            state.held = None;
            self.seconds.set(0);
            return Duration::ZERO;
        };
        let h = match state.held {
            Some(h) if h.xid == xid => h,
            _ => Held {
                xid,
                since: now,
                warned: None,
            },
        };
        let for_how_long = now.saturating_duration_since(h.since);
        let warn = for_how_long >= HELD_TOO_LONG
            && h.warned
                .is_none_or(|w| now.saturating_duration_since(w) >= HELD_TOO_LONG);
        if warn {
            tracing::warn!(
                backend_xid = xid % (1 << 32),
                held_seconds = for_how_long.as_secs(),
                "the balance feed is held back by a transaction open for at least {} s \
                 (of this database, or not placed in another): no till gets a balance \
                 change written after it took its id until it ends; find it in \
                 pg_stat_activity by its backend_xid",
                for_how_long.as_secs()
            );
        }
        state.held = Some(Held {
            warned: if warn { Some(now) } else { h.warned },
            ..h
        });
        self.seconds
            .set(i64::try_from(for_how_long.as_secs()).unwrap_or(i64::MAX));
        for_how_long
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

#[cfg(test)]
mod bound_tests {
    use super::{Bound, Cursor, FeedWatch, HELD_TOO_LONG, PATIENCE, bound_statement};
    use crate::store::backend::{Session, TxKind};
    use crate::store::postgres::PgStore;
    use crate::store::postgres::session::PgSession;
    use crate::store::postgres::test_hq::new_hq;
    use crate::store::statements::FeedRows;
    use deadpool_postgres::Client;
    use protocol::StoreId;
    use std::time::{Duration, Instant};
    use testkit::pg::TestDatabase;

    /// A watch that looks for other databases' transactions from the second pull
    /// that finds the same xmin.
    fn impatient() -> FeedWatch {
        FeedWatch {
            patience: Duration::ZERO,
            ..FeedWatch::default()
        }
    }

    /// Card `n` of `store-1`, changed by the transaction `c` is in (or its own).
    async fn change_card(c: &tokio_postgres::Client, n: u32) {
        c.batch_execute(&format!(
            "INSERT INTO cards (card, balance, pending, spend_12m, welcome_given, seen,
                                change_xid, updated_at)
             VALUES (lpad('{n}', 13, '0'), 0, 0, 0, FALSE, FALSE, loyalty_xid(), 0);
             INSERT INTO store_cards (store, card) VALUES ('store-1', lpad('{n}', 13, '0'))"
        ))
        .await
        .unwrap();
    }

    /// One pull's head and cards of `store-1` after `after`, as the pull flow reads
    /// them: the head first in a read-only snapshot.
    async fn pull(store: &PgStore, watch: &FeedWatch, after: &Cursor) -> (Cursor, Vec<u32>) {
        let client = store.connection().await.unwrap();
        let mut s = PgSession::new(client, &store.inner.caches, watch);
        s.begin(TxKind::Snapshot).await.unwrap();
        let head = s.feed_head(after).await.unwrap();
        let store_id = StoreId::parse("store-1").unwrap();
        let cards = s.changed_cards(&store_id, after, &head, 100).await.unwrap();
        s.commit().await.unwrap();
        let cards = cards
            .into_iter()
            .map(|(_, c)| c.card.as_str().parse().unwrap())
            .collect();
        (head, cards)
    }

    /// A connection to another database of the same cluster, inside a transaction
    /// that took an id (returned, with that database, dropped after the connection).
    async fn open_elsewhere() -> (tokio_postgres::Client, TestDatabase, i64) {
        let db = TestDatabase::create()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .expect("the HQ database was made, so this one is too");
        let (c, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        c.batch_execute("BEGIN; CREATE TEMP TABLE held (x int)")
            .await
            .unwrap();
        let held = xid(&c).await;
        (c, db, held)
    }

    /// The id of the transaction `c` is in, taking one.
    async fn xid(c: &tokio_postgres::Client) -> i64 {
        c.query_one("SELECT pg_current_xact_id()::text::bigint", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Pulls from `after` until `done` says yes of a pull's head and cards (other
    /// tests of the cluster's may hold the xmin a moment, and the watch looks past
    /// it only once a pull saw it twice); `None` after a few hundred pulls.
    async fn pull_until(
        store: &PgStore,
        watch: &FeedWatch,
        after: &Cursor,
        done: impl Fn(&Cursor, &[u32]) -> bool,
    ) -> Option<(Cursor, Vec<u32>)> {
        for _ in 0..300 {
            let (head, cards) = pull(store, watch, after).await;
            if done(&head, &cards) {
                return Some((head, cards));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Another application's transaction left open in another database of the
    /// cluster cannot write HQ's cards: once it has held the xmin a while, a change
    /// made after it began is pulled.
    #[tokio::test]
    async fn a_transaction_open_in_another_database_does_not_hold_the_feed() {
        let Some((_db, store, c)) = new_hq().await else {
            return;
        };
        let (other, _other_db, held) = open_elsewhere().await;
        change_card(&c, 1).await;
        let watch = impatient();
        // The first pull to see it is bound by the xmin: a push usually holds it.
        let (head, cards) = pull(&store, &watch, &Cursor::START).await;
        assert!(head.xid <= held && cards.is_empty(), "{head}: {cards:?}");
        let (head, _) = pull_until(&store, &watch, &Cursor::START, |_, cards| cards == [1])
            .await
            .expect("the change made after the other database's transaction is never pulled");
        assert!(head.xid > held, "head {head}, held by {held}");
        // Nothing of this database holds it: nothing to warn about.
        assert_eq!(watch.seconds.get(), 0);
        assert!(watch.lock().held.is_none());
        // Another instance, whose watch has not looked past it yet, keeps the
        // cursor: the agent neither starts over nor gets anything again.
        let (again, cards) = pull(&store, &FeedWatch::default(), &head).await;
        assert_eq!((again, cards.len()), (head, 0));
        other.batch_execute("COMMIT").await.unwrap();
    }

    /// A transaction of HQ's own database that is not HQ's may write cards: it holds
    /// the feed (the watch knows which one), and once it commits, its change and
    /// those made after it are delivered from the cursor the held pulls returned.
    #[tokio::test]
    async fn a_transaction_open_in_hq_s_database_holds_the_feed_and_is_never_skipped() {
        let Some((_db, store, c)) = new_hq().await else {
            return;
        };
        let operator = store.connection().await.unwrap();
        operator.batch_execute("BEGIN").await.unwrap();
        change_card(&operator, 1).await;
        let held = xid(&operator).await;
        change_card(&c, 2).await;
        let watch = impatient();
        // By the xmin (another test's transaction may be older), then looking past
        // other databases' transactions: never past this one.
        let (head, _) = pull_until(&store, &watch, &Cursor::START, |head, cards| {
            assert!(head.xid <= held && cards.is_empty(), "{head}: {cards:?}");
            head.xid == held && watch.lock().held.map(|h| h.xid) == Some(held)
        })
        .await
        .expect("the feed is never bound by the open transaction");
        operator.batch_execute("COMMIT").await.unwrap();
        // Card 1's transaction is older than card 2's: never the second alone.
        let (next, mut cards) = pull_until(&store, &watch, &head, |_, cards| {
            assert!(!cards.contains(&2) || cards.contains(&1), "{cards:?}");
            cards.len() == 2
        })
        .await
        .expect("not both pulled once the transaction committed");
        cards.sort_unstable();
        assert_eq!(cards, [1, 2], "from {head} to {next}");
    }

    /// The bound of a snapshot given as text, looking for other databases'
    /// transactions: its xid, its xmax.
    async fn bound_of(c: &Client, snapshot: &str) -> (i64, i64) {
        let row = c
            .query_one(
                &bound_statement(&format!("'{snapshot}'::pg_snapshot")),
                &[&i64::MAX],
            )
            .await
            .unwrap();
        (row.get(0), row.get(2))
    }

    /// The rule on its own, on snapshots written out: an id in progress that no list
    /// places (here one that ended long ago, as if it ended since the snapshot)
    /// bounds; one running in another database does not; one running in this
    /// database does.
    #[tokio::test]
    async fn only_ids_placed_in_another_database_are_passed_over() {
        let Some((_db, store, c)) = new_hq().await else {
            return;
        };
        let (other, _other_db, elsewhere) = open_elsewhere().await;
        let here = store.connection().await.unwrap();
        here.batch_execute("BEGIN").await.unwrap();
        let mine = xid(&here).await;
        // The cluster's first transaction id, of `initdb`: it ended long ago.
        let ended = 3;
        let after = mine + 1;
        for (snapshot, bound) in [
            (format!("{ended}:{after}:{ended}"), ended),
            (format!("{elsewhere}:{after}:{elsewhere}"), after),
            (format!("{elsewhere}:{after}:{elsewhere},{mine}"), mine),
        ] {
            assert_eq!(bound_of(&c, &snapshot).await, (bound, after), "{snapshot}");
        }
        here.batch_execute("ROLLBACK").await.unwrap();
        other.batch_execute("COMMIT").await.unwrap();
    }

    /// The watch: the same xmin for a while makes pulls look further; the same
    /// transaction holding the feed a minute is worth a warning and shows in the
    /// gauge; another one, or none, starts over.
    #[test]
    fn the_watch_times_one_holder_and_forgets_it_once_it_ends() {
        let watch = FeedWatch::default();
        let t0 = Instant::now();
        let held = Bound {
            xid: 7,
            xmin: 7,
            xmax: 9,
        };
        assert_eq!(watch.pass_over(t0), -1);
        assert_eq!(watch.saw(held, t0), Duration::ZERO);
        assert_eq!(watch.pass_over(t0), -1);
        assert_eq!(watch.pass_over(t0 + PATIENCE), 7);
        let later = t0 + HELD_TOO_LONG + Duration::from_secs(1);
        assert_eq!(watch.saw(held, later), later - t0);
        assert_eq!(watch.seconds.get(), 61);
        assert!(watch.lock().held.unwrap().warned.is_some());
        let other = Bound { xid: 8, ..held };
        assert_eq!(watch.saw(other, later), Duration::ZERO);
        let none = Bound { xid: 9, ..held };
        assert_eq!(watch.saw(none, later), Duration::ZERO);
        assert_eq!(watch.seconds.get(), 0);
        assert!(watch.lock().held.is_none());
        // The xmin, unchanged all along, is still looked past.
        assert_eq!(watch.pass_over(later), 7);
    }
}
