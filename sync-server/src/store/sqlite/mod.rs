//! The SQLite backend: one writer connection (every write is a `BEGIN IMMEDIATE`
//! transaction on it) and a few reader connections for pulls, live balances,
//! authentication and health, all used from blocking threads so no tokio worker ever
//! waits on SQLite.
//!
//! WAL mode lets readers see a consistent snapshot while the writer works;
//! `synchronous=FULL` makes every acknowledged push survive a power cut.
//!
//! Only SQL lives here: the flows are [`crate::store::flow`]'s, run by
//! [`Backend::run`] on a blocking thread through `session::block_on`.

mod admin;
mod cards;
mod feed;
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
use rusqlite::Connection;
use session::{SqliteSession, block_on};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Reader connections: pulls of many terminals proceed in parallel with pushes.
const READERS: usize = 4;
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
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    caches: Caches,
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -65536;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up
    /// to date. Blocking.
    pub fn open_blocking(path: &Path) -> Result<Self> {
        let mut writer = connect(path)?;
        schema::migrations().to_latest(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| connect(path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                caches: Caches::default(),
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
    /// Runs `op` on a blocking thread, on the writer connection when it writes and
    /// on the next reader otherwise.
    async fn run<O: Op>(&self, mut op: O) -> Result<O::Out> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = if O::ACCESS.writes() {
                &inner.writer
            } else {
                let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
                &inner.readers[i]
            };
            // A panic inside a transaction rolled it back when its connection guard
            // was dropped, so the connection behind a poisoned lock is still sound.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            let mut session = SqliteSession::new(&mut conn, &inner.caches);
            block_on(drive(&mut session, &mut op))
        })
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
    }
}
