//! The local SQLite journal: the till's source of truth while HQ is away.
//!
//! One dedicated thread owns the only connection (one writer, and SQLite work never
//! runs on tokio's worker threads). Async code sends it closures through
//! [`Journal::call`]; each operation runs in its own `BEGIN IMMEDIATE` transaction
//! and is committed before the caller (and so the till) gets an answer.
//!
//! Submodules: [`schema`] (open, identity checks, migrations), [`entries`] (append
//! with a gap-free `seq`), [`sync_state`] (unsynced entries, acks, HQ contact, the
//! pull cursor). The till operations that run inside these transactions live in
//! `crate::sales` and `crate::cards`.

pub mod entries;
pub mod schema;
pub mod sync_state;

use protocol::{StoreId, TerminalId};
use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

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
    /// A directory for the journal (or the journal's thread) could not be created.
    #[error("cannot create journal directory or thread for {path}: {source}")]
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
    /// Any other SQLite failure: nothing was written.
    #[error("journal error: {0}")]
    Sqlite(rusqlite::Error),
    /// A stored JSON document could not be read back or written.
    #[error("journal data error: {0}")]
    Data(String),
    /// The writer thread has stopped (shutting down).
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
}

impl JournalError {
    /// A JSON (de)serialization failure of stored data.
    pub fn data(e: impl std::fmt::Display) -> Self {
        Self::Data(e.to_string())
    }
}

impl From<rusqlite::Error> for JournalError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => Self::DiskFull,
            _ => Self::Sqlite(e),
        }
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to the journal's writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    jobs: mpsc::UnboundedSender<Job>,
}

/// Joins the writer thread when the last [`Journal`] handle is gone.
pub struct JournalThread {
    handle: JoinHandle<()>,
}

impl JournalThread {
    /// Waits until every queued operation has finished and the connection is closed.
    /// Call after dropping every [`Journal`] handle.
    pub fn join(self) {
        if self.handle.join().is_err() {
            tracing::error!("journal thread panicked");
        }
    }
}

impl Journal {
    /// Opens the journal file for this terminal and starts its writer thread.
    pub fn open(
        path: &Path,
        store: &StoreId,
        terminal: &TerminalId,
    ) -> Result<(Self, JournalThread), JournalError> {
        let conn = schema::open(path, store, terminal)?;
        Self::start(conn, path.to_path_buf())
    }

    fn start(mut conn: Connection, path: PathBuf) -> Result<(Self, JournalThread), JournalError> {
        let shown = path.display().to_string();
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    job(&mut conn);
                }
                // A clean close checkpoints the WAL into the main file.
                if let Err((_, e)) = conn.close() {
                    tracing::warn!(path = %path.display(), error = %e, "closing journal");
                }
            })
            .map_err(|e| JournalError::Io {
                path: shown,
                source: e,
            })?;
        Ok((Self { jobs }, JournalThread { handle }))
    }

    /// Runs `f` on the writer thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R, JournalError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| JournalError::Closed)?;
        rx.await.map_err(|_| JournalError::Closed)
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction on the writer thread: committed
    /// when `f` returns `Ok`, rolled back (nothing written) otherwise.
    pub async fn write<R, E, F>(&self, f: F) -> Result<Result<R, E>, JournalError>
    where
        R: Send + 'static,
        E: From<JournalError> + Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<R, E> + Send + 'static,
    {
        self.call(move |conn| in_transaction(conn, f)).await
    }
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction, committing on `Ok`.
pub fn in_transaction<R, E, F>(conn: &mut Connection, f: F) -> Result<R, E>
where
    E: From<JournalError>,
    F: FnOnce(&Transaction<'_>) -> Result<R, E>,
{
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| E::from(JournalError::from(e)))?;
    let out = f(&tx)?;
    tx.commit().map_err(|e| E::from(JournalError::from(e)))?;
    Ok(out)
}
