//! The WAL checkpoint, off the writer thread.
//!
//! Left to itself SQLite checkpoints inside the `COMMIT` that takes the WAL past
//! 1,000 pages: the writer copies every page of the WAL into the database file and
//! syncs it while the pushes of its group, and those queued behind them, wait (about
//! 14 % of the writer's time in a backlog). Here the writer's connection never
//! checkpoints on its own (`wal_autocheckpoint = 0`); after each commit it reads the
//! WAL's size (a `NOOP` checkpoint, no lock, taken in SQLite's WAL hook) and, past
//! [`Limits::checkpoint_at`], wakes a [`Checkpointer`]: a thread with a connection
//! of its own that runs `PRAGMA wal_checkpoint(PASSIVE)`, which copies what no reader
//! still needs and waits for nobody. It never begins a transaction, so it is never a
//! writer.
//!
//! The checkpointer is woken only once [`Limits::checkpoint_every`] frames wait to be
//! copied, not after every commit: each checkpoint syncs the WAL and the database
//! file (two `fsync`s on the disk the next `COMMIT` syncs on, besides its locks and
//! the reading of the WAL's index), and with small groups (a push or two each, as at
//! half the writer's capacity) a checkpoint per commit made three `fsync`s of every
//! group's one.
//!
//! SQLite starts the WAL over (and so keeps it bounded) at the first write
//! transaction that finds it wholly copied. Under a steady stream of groups a passive
//! checkpoint may stay a group behind for a long time, so past
//! [`Limits::restart_at`] the writer itself runs `wal_checkpoint(RESTART)` after its
//! commit: by then the checkpointer has copied nearly everything, the writer copies the
//! rest, waits for the readers still inside the WAL (short transactions) and its next
//! transaction writes from the WAL's start. A checkpointer busy at that moment makes
//! the restart return at once (SQLite does not wait for the checkpoint lock); the
//! writer tries again after its next commit.
//!
//! The restart waits for readers through the connection's busy handler, and a long
//! reader (a report, the dashboard, `sync-server verify`, a big feed page) would hold
//! the one writer, and every push of every till behind it, for the whole busy timeout
//! (15 s), again after each commit while it lasted. So the restart runs with a busy
//! handler of its own ([`restart_busy`]), set for that call only and the connection's
//! restored after it, also when it failed: it waits [`RESTART_TRIES`] milliseconds at
//! most, then the restart answers `busy`. Having waited for a reader in vain, the
//! writer lets [`RESTART_PAUSE`] pass before it tries again, so a reader of minutes
//! costs the pushes 10 ms a second, not 10 ms a commit (a busy checkpointer, which
//! SQLite does not wait for, only makes it try at the next commit). Readers that
//! begin once the WAL is wholly copied read the database file, not the WAL, so once
//! the long reader ends the next restart finds nobody to wait for and the WAL starts
//! over, grown by a second's writes at most.
//!
//! A restart costs the writer milliseconds (7–30 ms measured under the push
//! benchmark's load: the copy, the database file's sync and the readers' waits), and
//! every push queued behind it waits as long. So the writer restarts only when no
//! operation is waiting for it, or once the WAL has grown to
//! [`Limits::restart_anyway_at`], which bounds it under a load that never lets the
//! queue empty.

use rusqlite::Connection;
use rusqlite::hooks::{CheckpointMode, Wal as WalHandle};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// When the WAL is checkpointed, in pages (frames).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The checkpointer is woken once the WAL holds this many frames: SQLite's own
    /// default for its automatic checkpoint.
    pub checkpoint_at: i64,
    /// ... and then again each time this many frames wait to be copied (1 MB of 4 KB
    /// pages: a few groups' worth at half the writer's capacity, less than one group
    /// at its saturation). Small enough that a restart of the WAL by the writer
    /// finds little left to copy.
    pub checkpoint_every: i64,
    /// The writer restarts the WAL itself past this many (40 MB of 4 KB pages), at
    /// a commit after which no operation waits for it.
    pub restart_at: i64,
    /// ... and past this many even when operations wait (120 MB of 4 KB pages).
    pub restart_anyway_at: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            checkpoint_at: 1_000,
            checkpoint_every: 256,
            restart_at: 10_000,
            restart_anyway_at: 30_000,
        }
    }
}

/// How many times (a millisecond each) a restart of the WAL waits for readers still
/// inside it: long enough for the short transactions of pulls and live balances to
/// end, short enough that the pushes queued behind the writer hardly notice a long
/// reader.
const RESTART_TRIES: i32 = 10;

/// How long the writer waits before trying a restart again after one waited for a
/// reader in vain.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// How long the checkpointer waits before trying again when readers kept it from
/// copying the whole WAL and no commit woke it meanwhile.
const RETRY: Duration = Duration::from_millis(100);

/// `PRAGMA wal_checkpoint`'s answer: the WAL's frames and those copied into the
/// database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wal {
    /// True when the checkpoint could not take a lock it needed.
    pub busy: bool,
    /// Frames in the WAL.
    pub log: i64,
    /// Frames of it in the database file.
    pub checkpointed: i64,
}

impl Wal {
    /// Whether every frame is in the database file (the next write transaction
    /// starts the WAL over unless a reader still uses it).
    pub fn caught_up(&self) -> bool {
        self.checkpointed >= self.log
    }
}

/// The checkpoint modes HQ uses.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Only reads the WAL's size, taking no lock (SQLite 3.51 on, as bundled; an
    /// older one would run a passive checkpoint instead).
    Noop,
    /// Copies what no reader needs; waits for nobody.
    Passive,
    /// Copies everything, then waits for readers to leave the WAL.
    Restart,
}

thread_local! {
    /// The WAL's size after the last commit that wrote to it on this thread's
    /// watched connection (the writer's), set by [`record_size`] and taken by
    /// [`WalWatch::committed`].
    static COMMITTED: Cell<Option<Wal>> = const { Cell::new(None) };
}

/// SQLite's WAL hook on the writer's connection: runs at the end of every commit
/// that wrote frames, and reads the WAL's size there with a `NOOP` checkpoint
/// through the C interface. Read with `PRAGMA wal_checkpoint(NOOP)` instead, the
/// size cost a statement per commit that SQLite prepared again at every run (a
/// `PRAGMA` runs only once per preparation): about 6,000 instructions of a push's
/// 9,000 for it. The hook's answer goes to SQLite, which would report an error as
/// the commit's own: none is returned, a failed read is only not recorded.
fn record_size(wal: &WalHandle, _frames: std::ffi::c_int) -> rusqlite::Result<()> {
    if let Ok((log, checkpointed)) = wal.checkpoint_v2(CheckpointMode::NOOP) {
        COMMITTED.set(Some(Wal {
            busy: false,
            log: log.into(),
            checkpointed: checkpointed.into(),
        }));
    }
    Ok(())
}

/// Runs one `PRAGMA wal_checkpoint` on `conn`, which must be outside a transaction.
fn checkpoint(conn: &Connection, mode: Mode) -> rusqlite::Result<Wal> {
    let sql = match mode {
        Mode::Noop => "PRAGMA wal_checkpoint(NOOP)",
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
    };
    conn.prepare_cached(sql)?.query_row([], |r| {
        Ok(Wal {
            busy: r.get::<_, i64>(0)? != 0,
            log: r.get(1)?,
            checkpointed: r.get(2)?,
        })
    })
}

thread_local! {
    /// Whether [`restart_busy`] was called during the restart on this thread.
    static RESTART_WAITED: Cell<bool> = const { Cell::new(false) };
}

/// The busy handler of a restart: SQLite calls it only while readers keep the
/// restart from finishing (never for the checkpoint lock). Waits a millisecond,
/// [`RESTART_TRIES`] times at most.
fn restart_busy(calls: i32) -> bool {
    RESTART_WAITED.set(true);
    if calls >= RESTART_TRIES {
        return false;
    }
    std::thread::sleep(Duration::from_millis(1));
    true
}

/// `wal_checkpoint(RESTART)` on the writer's `conn`, waiting for readers through
/// [`restart_busy`] only; the connection's own busy timeout ([`super::BUSY_TIMEOUT`],
/// for another process's write lock) is restored after it, whatever the restart's
/// outcome. Also returns whether it waited for a reader.
fn restart(conn: &Connection) -> rusqlite::Result<(Wal, bool)> {
    RESTART_WAITED.set(false);
    conn.busy_handler(Some(restart_busy))?;
    let restarted = checkpoint(conn, Mode::Restart);
    let restored = conn.busy_timeout(super::BUSY_TIMEOUT);
    let wal = restarted?;
    restored?;
    Ok((wal, RESTART_WAITED.take()))
}

/// What the checkpointer and the writer share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Checkpoints that copied frames, for tests and curiosity.
    done: AtomicU64,
}

#[derive(Default)]
struct State {
    /// The writer saw the WAL past the threshold since the last checkpoint.
    due: bool,
    /// The store is closing.
    stop: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two flags, sound whatever a panicking holder left.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The checkpointer thread, stopped and joined when dropped.
pub struct Checkpointer {
    shared: Arc<Shared>,
    limits: Limits,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the checkpointer on `conn`, a connection of its own to the database.
    pub fn start(conn: Connection, limits: Limits) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("sqlite-checkpointer".into())
                .spawn(move || serve(&conn, &shared))?
        };
        Ok(Self {
            shared,
            limits,
            thread: Some(thread),
        })
    }

    /// The writer's side of it.
    pub fn watch(&self) -> WalWatch {
        WalWatch {
            shared: Arc::clone(&self.shared),
            limits: self.limits,
            pause: RESTART_PAUSE,
            paused_until: Cell::new(None),
        }
    }

    /// Checkpoints that copied frames so far.
    #[cfg(test)]
    pub fn done(&self) -> u64 {
        self.shared.done.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // A panic in the thread was its own; the store is closing anyway.
            let _ = thread.join();
        }
    }
}

/// The checkpointer thread: a passive checkpoint each time the writer says the WAL
/// grew past the threshold, and again after [`RETRY`] while readers hold it back.
fn serve(conn: &Connection, shared: &Shared) {
    let mut behind = false;
    loop {
        {
            let mut state = shared.lock();
            while !state.due && !state.stop {
                if behind {
                    let (s, waited) = shared
                        .wake
                        .wait_timeout(state, RETRY)
                        .unwrap_or_else(PoisonError::into_inner);
                    state = s;
                    if waited.timed_out() {
                        break;
                    }
                } else {
                    state = shared
                        .wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
            if state.stop {
                return;
            }
            state.due = false;
        }
        behind = match checkpoint(conn, Mode::Passive) {
            Ok(wal) => {
                if wal.checkpointed > 0 {
                    shared.done.fetch_add(1, Ordering::Relaxed);
                }
                !wal.caught_up()
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; trying again");
                true
            }
        };
    }
}

/// The writer's side: reads the WAL's size after each commit and acts on it.
pub struct WalWatch {
    shared: Arc<Shared>,
    limits: Limits,
    /// How long restarts pause after one waited for a reader in vain
    /// ([`RESTART_PAUSE`]).
    pause: Duration,
    /// No restart before then: the last one waited for a reader in vain.
    paused_until: Cell<Option<Instant>>,
}

impl WalWatch {
    /// Makes `conn` (the writer's) leave checkpoints to the checkpointer, and
    /// record the WAL's size at each of its commits ([`record_size`]).
    pub fn take_over(&self, conn: &Connection) -> rusqlite::Result<()> {
        // The pragma removes any WAL hook: the recording one is set after it.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        conn.wal_hook(Some(record_size));
        Ok(())
    }

    /// After a commit on the writer's `conn`: wakes the checkpointer past the
    /// threshold when enough frames wait to be copied, and restarts the WAL itself
    /// when it has grown far past it and no operation is `waiting` for the writer
    /// (or it has grown very far past it), unless a restart waited for a reader in
    /// vain less than a pause ([`RESTART_PAUSE`]) ago.
    pub fn committed(&self, conn: &Connection, waiting: bool) -> rusqlite::Result<Wal> {
        // A commit that wrote nothing left no size from the hook: read it then.
        let wal = match COMMITTED.take() {
            Some(wal) => wal,
            None => checkpoint(conn, Mode::Noop)?,
        };
        let limit = if waiting {
            self.limits.restart_anyway_at
        } else {
            self.limits.restart_at
        };
        if wal.log >= limit {
            let now = Instant::now();
            if self.paused_until.get().is_none_or(|until| now >= until) {
                let (wal, waited) = restart(conn)?;
                self.paused_until
                    .set((wal.busy && waited).then(|| now + self.pause));
                return Ok(wal);
            }
        }
        if wal.log >= self.limits.checkpoint_at
            && wal.log - wal.checkpointed >= self.limits.checkpoint_every
        {
            self.shared.lock().due = true;
            self.shared.wake.notify_one();
        }
        Ok(wal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL database with a table `t`, on a connection set up as the writer's.
    fn database(dir: &tempfile::TempDir, watch: &WalWatch) -> (Connection, std::path::PathBuf) {
        let path = dir.path().join("hq.db");
        let conn = super::super::connect(&path).unwrap();
        watch.take_over(&conn).unwrap();
        conn.execute_batch("CREATE TABLE t (v TEXT)").unwrap();
        (conn, path)
    }

    /// Commits a transaction of about `pages` new pages.
    fn grow(conn: &Connection, pages: usize) {
        let row = "x".repeat(3_000);
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        for _ in 0..pages {
            conn.execute("INSERT INTO t (v) VALUES (?1)", [&row])
                .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }

    fn unwatched(limits: Limits) -> WalWatch {
        WalWatch {
            shared: Arc::default(),
            limits,
            pause: RESTART_PAUSE,
            paused_until: Cell::new(None),
        }
    }

    /// A database whose writer's watch has no checkpointer behind it, woken past
    /// 100 frames and then every `every`, restarting as the other two limits say.
    fn unwatched_database(
        every: i64,
        restart_at: i64,
        restart_anyway_at: i64,
    ) -> (tempfile::TempDir, WalWatch, Connection, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let watch = unwatched(Limits {
            checkpoint_at: 100,
            checkpoint_every: every,
            restart_at,
            restart_anyway_at,
        });
        let (conn, path) = database(&dir, &watch);
        (dir, watch, conn, path)
    }

    /// The WAL's size after a commit comes from SQLite's WAL hook: reading it runs
    /// no statement (a `PRAGMA` is prepared again at every run), and it is the size
    /// another connection reads. A commit that wrote nothing still gets it.
    #[test]
    fn the_size_after_a_commit_is_read_without_a_statement() {
        let (_dir, watch, conn, path) = unwatched_database(1_000_000, 1_000_000, 1_000_000);
        let steps = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&steps);
        let count_steps = move || {
            counted.fetch_add(1, Ordering::Relaxed);
            false
        };
        let other = super::super::connect(&path).unwrap();
        for pages in [3, 40] {
            grow(&conn, pages);
            conn.progress_handler(1, Some(count_steps.clone())).unwrap();
            let wal = watch.committed(&conn, false).unwrap();
            conn.progress_handler(1, None::<fn() -> bool>).unwrap();
            assert_eq!(steps.load(Ordering::Relaxed), 0, "a statement ran");
            assert_eq!(wal, checkpoint(&other, Mode::Noop).unwrap());
        }
        conn.execute_batch("BEGIN IMMEDIATE; COMMIT").unwrap();
        let wal = watch.committed(&conn, false).unwrap();
        assert_eq!(wal, checkpoint(&other, Mode::Noop).unwrap());
        assert!(wal.log > 40, "{wal:?}");
    }

    #[test]
    fn the_writer_does_not_checkpoint_below_the_restart_limit() {
        let dir = tempfile::tempdir().unwrap();
        let watch = unwatched(Limits::default());
        let (conn, path) = database(&dir, &watch);
        for _ in 0..30 {
            grow(&conn, 50);
            watch.committed(&conn, false).unwrap();
        }
        // SQLite's automatic checkpoint would have copied the WAL at 1,000 frames.
        let wal = checkpoint(&super::super::connect(&path).unwrap(), Mode::Noop).unwrap();
        assert!(wal.log > 1_000, "{wal:?}");
        assert_eq!(wal.checkpointed, 0, "{wal:?}");
        // And the checkpointer was told.
        assert!(watch.shared.lock().due);
    }

    /// Past the threshold, a commit wakes the checkpointer only once enough frames
    /// wait to be copied: a checkpoint per small group would sync the disk twice
    /// more per group.
    #[test]
    fn the_checkpointer_is_woken_again_only_once_enough_frames_wait() {
        let (_dir, watch, conn, path) = unwatched_database(100, 1_000_000, 1_000_000);
        let due = |watch: &WalWatch| std::mem::take(&mut watch.shared.lock().due);
        grow(&conn, 150);
        watch.committed(&conn, false).unwrap();
        assert!(due(&watch), "past both thresholds");
        // A reader inside the WAL keeps SQLite from starting it over once it is
        // copied, so the WAL goes on growing past the copied frames.
        let reader = super::super::connect(&path).unwrap();
        reader
            .execute_batch("BEGIN; SELECT COUNT(*) FROM t;")
            .unwrap();
        let copied = checkpoint(&super::super::connect(&path).unwrap(), Mode::Passive).unwrap();
        assert!(copied.caught_up(), "{copied:?}");
        let mut waiting = 0;
        while waiting < 90 {
            grow(&conn, 10);
            let wal = watch.committed(&conn, false).unwrap();
            waiting = wal.log - wal.checkpointed;
            assert!(wal.log >= watch.limits.checkpoint_at, "{wal:?}");
            assert!(!due(&watch), "woken with {waiting} frames to copy");
        }
        grow(&conn, 20);
        watch.committed(&conn, false).unwrap();
        assert!(due(&watch), "not woken with over 100 frames to copy");
        reader.execute_batch("COMMIT").unwrap();
    }

    #[test]
    fn past_the_restart_limit_the_writer_starts_the_wal_over() {
        let (_dir, watch, conn, _path) = unwatched_database(1, 400, 100_000);
        let limits = watch.limits;
        let mut largest = 0;
        for _ in 0..40 {
            grow(&conn, 50);
            let wal = watch.committed(&conn, false).unwrap();
            largest = largest.max(wal.log);
            // Nobody else reads: a restart copies everything at once.
            assert!(!wal.busy && wal.log < limits.restart_at + 100, "{wal:?}");
        }
        assert!(
            largest >= limits.restart_at,
            "the WAL never reached the limit"
        );
    }

    /// Calls of [`count_busy`]: the busy handler of one test's connection only.
    static BUSY_CALLS: AtomicU64 = AtomicU64::new(0);

    /// A busy handler that counts its calls and waits a millisecond each, giving up
    /// after a thousand (where the connection's own handler would wait 15 s).
    fn count_busy(calls: i32) -> bool {
        BUSY_CALLS.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1));
        calls < 1_000
    }

    /// A report holding a read transaction open inside the WAL: the restart past the
    /// limit answers `busy` without going through the connection's busy handler (its
    /// own few milliseconds only), then is not tried again for a while; the commits
    /// go on, and once the reader is gone the next restart starts the WAL over.
    #[test]
    fn a_long_reader_does_not_hold_the_writer_s_restart() {
        let (_dir, watch, conn, path) = unwatched_database(1, 400, 100_000);
        // A pause no test run outlasts, set back by hand below.
        let watch = WalWatch {
            pause: Duration::from_secs(3_600),
            ..watch
        };
        let reader = super::super::connect(&path).unwrap();
        grow(&conn, 10);
        watch.committed(&conn, false).unwrap();
        reader
            .execute_batch("BEGIN; SELECT COUNT(*) FROM t;")
            .unwrap();
        conn.busy_handler(Some(count_busy)).unwrap();
        let mut busy = 0;
        let mut largest = 0;
        for _ in 0..20 {
            grow(&conn, 50);
            let wal = watch.committed(&conn, false).unwrap();
            busy += usize::from(wal.busy);
            largest = largest.max(wal.log);
        }
        assert!(largest >= 2 * watch.limits.restart_at, "{largest}");
        // Commits go on well past the limit; no second restart waits meanwhile.
        assert_eq!(busy, 1, "restarts tried while the reader lasted");
        assert_eq!(BUSY_CALLS.load(Ordering::Relaxed), 0, "the restart waited");
        // The pause over and the reader gone, the next commit past the limit starts
        // the WAL over.
        reader.execute_batch("COMMIT").unwrap();
        watch.paused_until.set(None);
        grow(&conn, 50);
        let wal = watch.committed(&conn, false).unwrap();
        assert!(!wal.busy && wal.caught_up(), "{wal:?}");
        grow(&conn, 1);
        assert!(watch.committed(&conn, false).unwrap().log < 10);
    }

    #[test]
    fn while_operations_wait_the_writer_restarts_the_wal_only_far_past_the_limit() {
        let (_dir, watch, conn, _path) = unwatched_database(1, 400, 1_000);
        let mut sizes = Vec::new();
        for _ in 0..30 {
            grow(&conn, 50);
            sizes.push(watch.committed(&conn, true).unwrap().log);
        }
        // Past `restart_at` with operations waiting, the WAL went on growing...
        assert!(sizes.iter().any(|s| (600..1_000).contains(s)), "{sizes:?}");
        // ... up to `restart_anyway_at`, never far past it.
        assert!(sizes.iter().all(|s| *s < 1_100), "{sizes:?}");
        // Once nobody waits, past `restart_at` the writer starts it over.
        grow(&conn, 50);
        let wal = watch.committed(&conn, false).unwrap();
        assert!(!wal.busy && wal.caught_up(), "{wal:?}");
        grow(&conn, 1);
        assert!(watch.committed(&conn, false).unwrap().log < 10);
    }

    #[test]
    fn the_checkpointer_copies_the_wal_when_the_writer_says_it_grew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hq.db");
        let limits = Limits {
            checkpoint_at: 100,
            checkpoint_every: 1,
            restart_at: 1_000_000,
            restart_anyway_at: 1_000_000,
        };
        let checkpointer =
            Checkpointer::start(super::super::connect(&path).unwrap(), limits).unwrap();
        let watch = checkpointer.watch();
        let (conn, path) = database(&dir, &watch);
        grow(&conn, 50);
        watch.committed(&conn, false).unwrap();
        assert_eq!(checkpointer.done(), 0, "below the threshold");
        grow(&conn, 100);
        watch.committed(&conn, false).unwrap();
        // No deadline: the test harness's own timeout catches a checkpointer that
        // never runs.
        while checkpointer.done() == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let wal = checkpoint(&super::super::connect(&path).unwrap(), Mode::Noop).unwrap();
        assert!(wal.checkpointed > 0, "{wal:?}");
        // The next transaction writes from the WAL's start.
        grow(&conn, 1);
        let wal = watch.committed(&conn, false).unwrap();
        assert!(wal.log < 10, "{wal:?}");
        drop(checkpointer);
    }
}
