//! The SQLite backend: one writer connection, owned by a writer thread that runs
//! the write operations waiting at once in one `BEGIN IMMEDIATE` transaction (group
//! commit, [`group`]), and a few reader connections for pulls, live balances,
//! authentication and health, used from blocking threads; no tokio worker ever waits
//! on SQLite.
//!
//! WAL mode lets readers see a consistent snapshot while the writer works;
//! `synchronous=FULL` makes every acknowledged push survive a power cut.
//! `temp_store=MEMORY` keeps the statement journals of the group commit's savepoints
//! (the pages each push changed, to undo it alone) in memory: they matter only
//! until the savepoint ends, never after a crash, and on disk every push wrote them
//! to a temporary file. The writer never checkpoints the WAL itself: a thread of its
//! own does ([`checkpoint`]).
//!
//! Only SQL lives here: the flows are [`crate::store::flow`]'s, run by
//! [`Backend::run`] on a blocking thread through `session::block_on`.

mod admin;
mod analytics;
mod cards;
mod checkpoint;
mod escrow;
mod feed;
mod group;
mod jobs;
mod quarantine;
mod rules;
mod schema;
mod session;
mod terminals;

use super::StoreError;
use super::backend::{Backend, Op, drive};
use super::caches::Caches;
use crate::store::Result;
use checkpoint::{Checkpointer, Limits};
use group::Writer;
use rusqlite::Connection;
use session::{SqliteSession, block_on};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Reader connections: pulls of many terminals proceed in parallel with pushes.
const READERS: usize = 4;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 256;
/// How long a connection waits for another process's write lock (a second server
/// instance on the same file) before giving up.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// HQ's store in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Writer,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    caches: Arc<Caches>,
    /// Stopped after the writer's handle is dropped.
    _checkpointer: Checkpointer,
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA cache_size = -65536;
         PRAGMA temp_store = MEMORY;",
    )?;
    // Every statement HQ runs stays prepared: about 90 single statements, and each
    // multi-row insert in its six sizes (`session::insert_chunk`). An evicted
    // statement is parsed and planned again at its next use.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Foreign keys on, for every connection once the schema is up to date (migrations
/// that rebuild a table run with them off and check them before commit).
fn enforce_foreign_keys(conn: &Connection) -> Result<()> {
    conn.execute_batch("PRAGMA foreign_keys = ON;")?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up
    /// to date. Blocking.
    pub fn open_blocking(path: &Path) -> Result<Self> {
        let mut writer = connect(path)?;
        schema::migrations().to_latest(&mut writer)?;
        enforce_foreign_keys(&writer)?;
        let readers = (0..READERS)
            .map(|_| {
                let conn = connect(path)?;
                enforce_foreign_keys(&conn)?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>>>()?;
        let caches = Arc::new(Caches::default());
        let checkpointer = Checkpointer::start(connect(path)?, Limits::default())
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let writer = Writer::start(writer, Arc::clone(&caches), checkpointer.watch())
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer,
                readers,
                next_reader: AtomicUsize::new(0),
                caches,
                _checkpointer: checkpointer,
            }),
        })
    }

    /// [`Self::open_blocking`] on a blocking thread.
    pub async fn open(path: &Path) -> Result<Self> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl Backend for SqliteStore {
    /// Runs `op` in the writer's next group when it writes, and on a blocking thread
    /// on the next reader otherwise.
    async fn run<O: Op>(&self, mut op: O) -> Result<O::Out> {
        if O::ACCESS.writes() {
            return self.inner.writer.run(op).await;
        }
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            // A panic inside a transaction rolled it back when its connection guard
            // was dropped, so the connection behind a poisoned lock is still sound.
            let mut conn = inner.readers[i]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut session = SqliteSession::new(&mut conn, &inner.caches);
            block_on(drive(&mut session, &mut op))
        })
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
    }
}
