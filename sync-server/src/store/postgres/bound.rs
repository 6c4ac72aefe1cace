//! The change feed's bound on PostgreSQL (see `feed.rs` for the cursor it bounds).
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
//!
//! [`FeedRows::feed_head`]: crate::store::statements::FeedRows::feed_head

use prometheus_client::metrics::gauge::Gauge;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What [`HEAD`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// Changes of transactions below this id are answered.
    pub xid: i64,
    /// The snapshot's xmin: the oldest transaction in progress anywhere in the cluster.
    pub xmin: i64,
    /// The snapshot's xmax: `xid` is below it when a running transaction holds the
    /// bound.
    pub xmax: i64,
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
pub static HEAD: LazyLock<String> = LazyLock::new(|| bound_statement("pg_current_snapshot()"));

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
    pub fn pass_over(&self, now: Instant) -> i64 {
        match self.lock().xmin {
            Some((xid, since)) if now.saturating_duration_since(since) >= self.patience => xid,
            _ => -1,
        }
    }

    /// A pull's bound, seen at `now`. Returns how long its holder has held the feed.
    pub fn saw(&self, bound: Bound, now: Instant) -> Duration {
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

#[cfg(test)]
mod tests {
    use super::{Bound, FeedWatch, HELD_TOO_LONG, PATIENCE, bound_statement};
    use crate::store::backend::{Session, TxKind};
    use crate::store::postgres::PgStore;
    use crate::store::postgres::feed::Cursor;
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

    async fn idle_timeout(c: &tokio_postgres::Client) -> String {
        c.query_one("SHOW idle_in_transaction_session_timeout", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// HQ's own connections end a transaction left idle a minute, so that a stuck
    /// instance cannot hold the feed for ever; a timeout set for the database (or the
    /// role) is kept.
    #[tokio::test]
    async fn hq_s_connections_end_a_transaction_left_idle_unless_told_otherwise() {
        let Some((db, _store, c)) = new_hq().await else {
            return;
        };
        assert_eq!(idle_timeout(&c).await, "1min");
        c.batch_execute(
            "DO $$ BEGIN EXECUTE format(
               'ALTER DATABASE %I SET idle_in_transaction_session_timeout = ''5min''',
               current_database()); END $$",
        )
        .await
        .unwrap();
        let store = PgStore::open(db.url()).await.unwrap();
        let c = store.connection().await.unwrap();
        assert_eq!(idle_timeout(&c).await, "5min");
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
