//! The local SQLite journal: the till's source of truth while HQ is away, and the only
//! module of the agent that speaks SQL.
//!
//! One connection behind one lock (one writer, one transaction at a time). Async code
//! runs closures on it through [`Journal::write`] and [`Journal::read`], off the async
//! scheduler (`block_in_place` or the blocking pool); each runs in its own
//! transaction, a write in `BEGIN IMMEDIATE`, committed before the caller (and so the
//! till) gets an answer, durably (`synchronous=FULL`). [`Journal::refresh`] is a
//! write whose commit skips the fsync, for HQ's cached figures only (never a till
//! operation or an entry). The closures get a [`Tx`]: the typed operations of the schema, grouped by
//! table, so a function that must run inside a transaction says so in its signature.
//!
//! Submodules: [`schema`] (open, identity checks, migrations), [`entries`] (append with
//! a gap-free `seq`, running totals per card), [`sales`] and [`returns`] (the till's
//! sales and their stored answers), [`card_views`] (the figures of a card's view),
//! [`offline_usage`] (what the offline caps count), [`leases`] (this till's escrow
//! leases, the lease sync epoch, recently seen cards), [`hq_cache`] (HQ's balances,
//! blocked cards, rules, signing keys), [`used_tokens`] (app tokens seen here),
//! [`sync_state`] (acks, HQ contact, the pull cursor).

/// The condition on `sales` that keeps the rows that may still be held: every hold
/// still open is at most the newest sale's `open_back` rows before it (journal
/// migration 11, [`sales`]), so a read of open holds scans only those rows, the
/// last one or two at a till that commits what it holds. A literal, for `concat!`
/// into the statements that read open holds.
macro_rules! maybe_held {
    () => {
        "rowid >= (SELECT rowid - COALESCE(open_back, rowid) FROM sales ORDER BY rowid DESC LIMIT 1)"
    };
}

pub mod card_views;
pub mod entries;
pub mod hq_cache;
pub mod leases;
pub mod offline_usage;
pub mod returns;
pub mod sales;
pub mod schema;
pub mod sync_state;
pub mod used_tokens;

use protocol::{StoreId, TerminalId};
use rusqlite::{Connection, ErrorCode};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::runtime::{Handle, RuntimeFlavor};

/// Why the journal could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal file could not be opened.
    #[error("cannot open journal {path}: {message}")]
    Open {
        /// File path.
        path: String,
        /// SQLite's message.
        message: String,
    },
    /// A directory for the journal could not be created.
    #[error("cannot create journal directory {path}: {source}")]
    Io {
        /// Directory path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file exists but is not a pos-agent journal (or is damaged). It is left as is.
    #[error(
        "{path} is not a usable pos-agent journal ({reason}); refusing to touch it — move it away or point [journal] path elsewhere"
    )]
    NotAJournal {
        /// File path.
        path: String,
        /// What was found.
        reason: String,
    },
    /// The journal belongs to another store/terminal.
    #[error(
        "journal {path} belongs to terminal {journal}, but the config says {config}; a journal cannot change terminals"
    )]
    OtherTerminal {
        /// File path.
        path: String,
        /// store/terminal recorded in the journal.
        journal: String,
        /// store/terminal of the config.
        config: String,
    },
    /// A schema migration failed.
    #[error("cannot migrate journal {path}: {message}")]
    Migration {
        /// File path.
        path: String,
        /// The migration error.
        message: String,
    },
    /// The disk is full: nothing was written.
    #[error("journal disk is full; nothing was written")]
    DiskFull,
    /// Another process holds the file locked (a backup tool, a second agent): nothing
    /// was written; retrying later may succeed.
    #[error("journal error: {0}")]
    Busy(rusqlite::Error),
    /// Any other SQLite failure: nothing was written.
    #[error("journal error: {0}")]
    Sqlite(rusqlite::Error),
    /// A stored JSON document or value could not be read back or written.
    #[error("journal data error: {0}")]
    Data(String),
    /// A card's running total of this terminal's entries would not fit in 64 bits:
    /// nothing was written. Refused like a sale above the card's balance limit.
    #[error(
        "card {card}: this till's running total of the card's points would overflow; nothing was written"
    )]
    RunningTotalOverflow {
        /// The card, masked.
        card: String,
    },
    /// The operation was lost before it finished (the runtime is shutting down, or it
    /// panicked and its transaction was rolled back).
    #[error("journal is closed")]
    Closed,
}

impl JournalError {
    fn open(path: &Path, e: rusqlite::Error) -> Self {
        Self::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// A stored value that does not read back as its type.
    pub fn data(e: impl std::fmt::Display) -> Self {
        Self::Data(e.to_string())
    }
}

impl From<rusqlite::Error> for JournalError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => Self::DiskFull,
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Self::Busy(e),
            _ => Self::Sqlite(e),
        }
    }
}

/// One open transaction on the journal: every read and write of the schema is a
/// method of this type (in the submodule of its table), so nothing touches the journal
/// outside a transaction.
pub struct Tx<'c> {
    inner: &'c Connection,
}

/// The journal file, opened and migrated, for synchronous use: a [`Journal`] holds
/// one, and so do commands that run without the daemon (`sync-resume`) and tools that
/// prepare a journal (tests, benchmarks).
pub struct JournalFile {
    conn: Connection,
    /// True from the moment [`Self::refresh`] lowers `synchronous` until `FULL` is
    /// back: a refresh that failed to restore it (or panicked) leaves it set, and the
    /// next [`Self::write`] restores `FULL` before it begins, or refuses to write.
    relaxed: bool,
}

impl JournalFile {
    /// Opens (creating if needed) the journal at `path` for this terminal, migrated to
    /// the latest schema.
    pub fn open(path: &Path, store: &StoreId, terminal: &TerminalId) -> Result<Self, JournalError> {
        Ok(Self {
            conn: schema::open(path, store, terminal)?,
            relaxed: false,
        })
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed when `f` returns `Ok`,
    /// rolled back (nothing written) otherwise. The commit is durable
    /// (`synchronous=FULL`: the WAL is fsynced before this returns).
    pub fn write<R, E>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<JournalError>,
    {
        if self.relaxed {
            self.set_synchronous(Synchronous::Full)
                .map_err(|e| E::from(JournalError::from(e)))?;
        }
        self.run("BEGIN IMMEDIATE", f)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction like [`Self::write`], but its
    /// commit does not wait for the disk (`synchronous=NORMAL` for this transaction
    /// only; `FULL` again before this returns, whether `f` succeeded or not).
    ///
    /// Only for transactions that write nothing but HQ's figures as the agent caches
    /// them (card balances, blocked cards, rules, keys, the pull cursor, HQ contact):
    /// **never a till operation or an entry**, whose 2xx promises it survives a power
    /// cut (DESIGN.md invariant 1). Why losing such a commit is safe:
    /// - a kill -9 loses nothing: the WAL frames are written (in the OS) at commit;
    /// - a power cut can lose only the last refreshes, never a durable commit: the
    ///   WAL is appended in order and the next `FULL` commit fsyncs it up to and
    ///   including the refresh's frames, so any till operation that may have relied
    ///   on the refreshed figures (an offline redemption under the caps) makes them
    ///   durable with itself;
    /// - what is lost is only HQ's news, older figures the agent already shows "as
    ///   of" their time, and the next live lookup or pull (from the cursor, which
    ///   is lost with them) brings it again.
    ///
    /// It saves the fsync of a live balance lookup (docs/performance.md, *Till
    /// sales*), which otherwise held the journal's one lock, and every till request
    /// behind it, for the length of the disk flush.
    pub fn refresh<R, E>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<JournalError>,
    {
        // `set_synchronous` marks the file relaxed once NORMAL is set, so a panic in
        // `f` leaves the mark for the next write.
        let out = self
            .set_synchronous(Synchronous::Normal)
            .map_err(|e| E::from(JournalError::from(e)))
            .and_then(|()| self.run("BEGIN IMMEDIATE", f));
        let restored = self
            .set_synchronous(Synchronous::Full)
            .map_err(|e| E::from(JournalError::from(e)));
        let out = out?;
        restored?;
        Ok(out)
    }

    /// Runs `f` in one read transaction (a consistent snapshot).
    pub fn read<R, E>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<JournalError>,
    {
        self.run("BEGIN DEFERRED", f)
    }

    /// Sets the connection's `synchronous` level; restoring `FULL` clears
    /// [`Self::relaxed`].
    fn set_synchronous(&mut self, level: Synchronous) -> rusqlite::Result<()> {
        let sql = match level {
            Synchronous::Normal => "PRAGMA synchronous = NORMAL",
            Synchronous::Full => "PRAGMA synchronous = FULL",
        };
        self.conn.prepare_cached(sql)?.execute([])?;
        self.relaxed = level == Synchronous::Normal;
        Ok(())
    }

    fn run<R, E>(
        &mut self,
        begin: &'static str,
        f: impl FnOnce(&Tx<'_>) -> Result<R, E>,
    ) -> Result<R, E>
    where
        E: From<JournalError>,
    {
        let open = OpenTransaction::begin(&self.conn, begin)
            .map_err(|e| E::from(JournalError::from(e)))?;
        // On `Err` (or a panic) `open` is dropped here and rolls the work back.
        let out = f(&Tx { inner: &self.conn })?;
        open.commit().map_err(|e| E::from(JournalError::from(e)))?;
        Ok(out)
    }
}

/// The `synchronous` levels the journal commits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synchronous {
    /// WAL written at commit, fsynced at the next `FULL` commit or checkpoint.
    Normal,
    /// WAL fsynced at every commit (the journal's setting, `schema::apply_pragmas`).
    Full,
}

/// A transaction begun and committed with cached statements: rusqlite's
/// `Transaction` compiles `BEGIN` and `COMMIT` anew for every transaction, which cost
/// a till sale more than some of its own statements (docs/performance.md, *Till
/// sales*). Like it, a transaction not committed is rolled back when dropped.
struct OpenTransaction<'c> {
    conn: &'c Connection,
    committed: bool,
}

impl<'c> OpenTransaction<'c> {
    /// Runs `begin` (`BEGIN IMMEDIATE` to write, `BEGIN DEFERRED` to read).
    fn begin(conn: &'c Connection, begin: &'static str) -> rusqlite::Result<Self> {
        conn.prepare_cached(begin)?.execute([])?;
        Ok(Self {
            conn,
            committed: false,
        })
    }

    /// Commits; on failure the transaction is rolled back (when `self` drops).
    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        // SQLite may have rolled back already (some errors end the transaction).
        if !self.committed
            && !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(error = %e, "rolling back a journal transaction");
        }
    }
}

/// Handle to the journal's one connection. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    file: Arc<Mutex<JournalFile>>,
}

impl Journal {
    /// Opens the journal file for this terminal.
    pub fn open(path: &Path, store: &StoreId, terminal: &TerminalId) -> Result<Self, JournalError> {
        Ok(Self {
            file: Arc::new(Mutex::new(JournalFile::open(path, store, terminal)?)),
        })
    }

    /// Closes the connection, which checkpoints the WAL into the main file, when this
    /// is the last handle (otherwise the last one dropped closes it).
    pub fn close(self) {
        if let Ok(file) = Arc::try_unwrap(self.file) {
            let file = file.into_inner().unwrap_or_else(PoisonError::into_inner);
            if let Err((_, e)) = file.conn.close() {
                tracing::warn!(error = %e, "closing journal");
            }
        }
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction: committed when `f` returns
    /// `Ok`, rolled back (nothing written) otherwise.
    pub async fn write<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<JournalError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<R, E> + Send + 'static,
    {
        self.with_file(move |file| file.write(f)).await
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction whose commit does not wait
    /// for the disk: only for HQ's cached figures, never a till operation or an entry
    /// ([`JournalFile::refresh`] says why that is safe).
    pub async fn refresh<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<JournalError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<R, E> + Send + 'static,
    {
        self.with_file(move |file| file.refresh(f)).await
    }

    /// Runs `f` inside one read transaction.
    pub async fn read<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<JournalError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<R, E> + Send + 'static,
    {
        self.with_file(move |file| file.read(f)).await
    }

    /// Runs `f` on the connection, one caller at a time, off the async scheduler.
    ///
    /// On the daemon's multi-threaded runtime the transaction runs on the calling
    /// task's own thread, which hands its other tasks to a fresh worker first
    /// (`block_in_place`): the request is answered without a hand-off to another
    /// thread and back, which cost more than the commit itself (docs/performance.md,
    /// *Till sales*). Elsewhere (current-thread runtimes: one-shot commands, tests) it
    /// runs on the blocking pool; polled outside tokio, on the caller's thread. Either way
    /// `f` runs to its end even when the caller is cancelled: the work is committed
    /// or rolled back, never cut in the middle.
    async fn with_file<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<JournalError> + Send + 'static,
        F: FnOnce(&mut JournalFile) -> Result<R, E> + Send + 'static,
    {
        let file = Arc::clone(&self.file);
        let run = move || {
            // A panic inside a transaction rolled it back (rusqlite's transaction
            // rolls back when dropped), so the connection behind a poisoned lock is
            // as the last commit left it.
            let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut file)
        };
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
            Ok(_) => tokio::task::spawn_blocking(run)
                .await
                .unwrap_or_else(|_| Err(E::from(JournalError::Closed))),
            // Polled outside tokio (`Handle::current` would panic): the caller's own
            // thread is the one an executor without a blocking pool expects to block.
            Err(_) => run(),
        }
    }
}

/// A new journal in a temporary directory, for tests (the directory lives as long as
/// the first half of the pair).
#[cfg(test)]
pub(crate) fn test_journal() -> (tempfile::TempDir, JournalFile) {
    let dir = tempfile::tempdir().unwrap();
    let file = JournalFile::open(
        &dir.path().join("j.db"),
        &protocol::StoreId::parse("s").unwrap(),
        &protocol::TerminalId::parse("t").unwrap(),
    )
    .unwrap();
    (dir, file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::journal::{EntryBody, WelcomeEntry};
    use protocol::{CardId, Points, Seq};
    use time::macros::datetime;

    fn welcome() -> EntryBody {
        EntryBody::Welcome(WelcomeEntry {
            card: CardId::parse("4006381333931").unwrap(),
            points: Points(5),
        })
    }

    #[derive(Debug, thiserror::Error)]
    enum Refused {
        #[error("refused")]
        Refused,
        #[error(transparent)]
        Journal(#[from] JournalError),
    }

    fn open(dir: &tempfile::TempDir) -> Journal {
        Journal::open(
            &dir.path().join("j.db"),
            &StoreId::parse("s").unwrap(),
            &TerminalId::parse("t").unwrap(),
        )
        .unwrap()
    }

    /// The journal is empty, and the next write commits entry 1.
    async fn nothing_written_then_one_entry(journal: &Journal, at: time::OffsetDateTime) {
        assert_eq!(journal.read(|tx| tx.last_seq()).await.unwrap(), Seq(0));
        let entry = journal
            .write(move |tx| tx.append(welcome(), at, 0))
            .await
            .unwrap();
        assert_eq!(entry.seq, Seq(1));
    }

    async fn a_write_commits_on_ok_and_writes_nothing_on_err(journal: Journal) {
        let at = datetime!(2026-11-24 10:00 UTC);
        let refused = journal
            .write(move |tx| -> Result<(), Refused> {
                tx.append(welcome(), at, 0)?;
                Err(Refused::Refused)
            })
            .await;
        assert!(matches!(refused, Err(Refused::Refused)));
        nothing_written_then_one_entry(&journal, at).await;
        assert_eq!(journal.read(|tx| tx.last_seq()).await.unwrap(), Seq(1));
        journal.close();
    }

    #[tokio::test]
    async fn on_a_current_thread_runtime_a_write_commits_on_ok_and_writes_nothing_on_err() {
        let dir = tempfile::tempdir().unwrap();
        a_write_commits_on_ok_and_writes_nothing_on_err(open(&dir)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_the_daemons_runtime_a_write_commits_on_ok_and_writes_nothing_on_err() {
        let dir = tempfile::tempdir().unwrap();
        a_write_commits_on_ok_and_writes_nothing_on_err(open(&dir)).await;
    }

    #[test]
    fn outside_tokio_a_write_commits_on_ok_and_writes_nothing_on_err() {
        let dir = tempfile::tempdir().unwrap();
        let work = std::pin::pin!(a_write_commits_on_ok_and_writes_nothing_on_err(open(&dir)));
        // No runtime: every journal call runs on this thread, so one poll finishes.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(std::future::Future::poll(work, &mut cx).is_ready());
    }

    /// The `synchronous` level of the journal's connection, read inside `tx`.
    fn synchronous(tx: &Tx<'_>) -> Result<i64, JournalError> {
        Ok(tx
            .inner
            .pragma_query_value(None, "synchronous", |r| r.get(0))?)
    }

    const NORMAL: i64 = 1;
    const FULL: i64 = 2;

    fn open_file(dir: &tempfile::TempDir) -> JournalFile {
        JournalFile::open(
            &dir.path().join("j.db"),
            &StoreId::parse("s").unwrap(),
            &TerminalId::parse("t").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn a_refresh_commits_without_an_fsync_and_every_write_after_it_with_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = open_file(&dir);
        let at = datetime!(2026-11-24 10:00 UTC);
        assert_eq!(file.write(synchronous).unwrap(), FULL);
        assert_eq!(
            file.refresh(|tx| {
                tx.record_contact(at)?;
                synchronous(tx)
            })
            .unwrap(),
            NORMAL
        );
        assert_eq!(file.write(synchronous).unwrap(), FULL);
        // A refresh that fails rolls back and restores FULL all the same.
        let refused = file.refresh(|tx| -> Result<(), Refused> {
            tx.record_contact(at + time::Duration::HOUR)?;
            Err(Refused::Refused)
        });
        assert!(matches!(refused, Err(Refused::Refused)));
        assert!(!file.relaxed);
        assert_eq!(file.read(synchronous).unwrap(), FULL);
        assert_eq!(file.write(synchronous).unwrap(), FULL);
        assert_eq!(
            file.read(|tx| tx.last_contact()).unwrap(),
            Some(at.unix_timestamp())
        );
    }

    #[test]
    fn a_write_after_a_refresh_that_panicked_restores_full_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = open_file(&dir);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            file.refresh(|_| -> Result<(), JournalError> { panic!("a bug in a refresh") })
        }));
        assert!(panicked.is_err());
        assert_eq!(file.read(synchronous).unwrap(), NORMAL);
        assert_eq!(file.write(synchronous).unwrap(), FULL);
        assert!(!file.relaxed);
    }

    #[test]
    fn a_refresh_then_a_write_are_both_in_the_journal_after_it_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let at = datetime!(2026-11-24 10:00 UTC);
        let mut file = open_file(&dir);
        file.refresh(|tx| tx.record_contact(at)).unwrap();
        file.write(|tx| tx.append(welcome(), at, 0)).unwrap();
        drop(file);
        let mut file = open_file(&dir);
        assert_eq!(file.read(|tx| tx.last_seq()).unwrap(), Seq(1));
        assert_eq!(
            file.read(|tx| tx.last_contact()).unwrap(),
            Some(at.unix_timestamp())
        );
        assert_eq!(file.read(synchronous).unwrap(), FULL);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_inside_a_transaction_rolls_it_back_and_the_journal_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(&dir);
        let at = datetime!(2026-11-24 10:00 UTC);
        let buggy = journal.clone();
        let panicked = tokio::spawn(async move {
            buggy
                .write(move |tx| -> Result<(), JournalError> {
                    tx.append(welcome(), at, 0)?;
                    panic!("a bug inside a transaction");
                })
                .await
        })
        .await;
        assert!(panicked.is_err());
        nothing_written_then_one_entry(&journal, at).await;
    }
}
