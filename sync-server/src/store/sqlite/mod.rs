//! The SQLite backend: one writer connection (every write is a `BEGIN IMMEDIATE`
//! transaction on it) and a few reader connections for pulls, live balances,
//! authentication and health, all used from blocking threads so no tokio worker ever
//! waits on SQLite.
//!
//! WAL mode lets readers see a consistent snapshot while the writer works;
//! `synchronous=FULL` makes every acknowledged push survive a power cut.

mod admin;
mod feed;
mod housekeeping;
mod push;
mod rows;
mod rules;
mod schema;

use super::encode::RulesCache;
use super::{
    Anomaly, Audit, CardReport, FlaggedEntry, KeyInfo, Overdraft, PullRequest, PushOutcome, Store,
    StoreError, TerminalAdded, TerminalIdentity, TerminalInfo,
};
use crate::keys::TokenHash;
use crate::ledger::batch::Batch;
use crate::ledger::jobs::JobReport;
use async_trait::async_trait;
use ed25519_dalek::SigningKey;
use protocol::rules::ProgramRules;
use protocol::token::KeyId;
use protocol::wire::{LiveBalanceResponse, PullResponse};
use protocol::{CardId, StoreId, TerminalId};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use time::{Duration, OffsetDateTime};

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
    rules_cache: RulesCache,
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
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
    pub fn open_blocking(path: &Path) -> Result<Self, StoreError> {
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
                rules_cache: RulesCache::default(),
            }),
        })
    }

    /// [`Self::open_blocking`] on a blocking thread.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` with the writer connection on a blocking thread.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // A panic inside a transaction rolled it back when the Transaction was
            // dropped, so the connection behind a poisoned lock is still sound.
            let mut conn = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn, &inner)
        })
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
    }

    /// Runs `f` with a reader connection on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let mut conn = inner.readers[i]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            f(&mut conn, &inner)
        })
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> Result<u64, StoreError> {
        self.read(|conn, _| rules::current_version(conn)).await
    }

    async fn authenticate(&self, hash: &TokenHash) -> Result<Option<TerminalIdentity>, StoreError> {
        let hash = hash.clone();
        self.read(move |conn, _| admin::authenticate(conn, &hash))
            .await
    }

    async fn add_terminal(
        &self,
        store: &StoreId,
        terminal: &TerminalId,
        hash: &TokenHash,
        rotate: bool,
        now: OffsetDateTime,
    ) -> Result<TerminalAdded, StoreError> {
        let (store, terminal, hash) = (store.clone(), terminal.clone(), hash.clone());
        self.write(move |conn, _| admin::add_terminal(conn, &store, &terminal, &hash, rotate, now))
            .await
    }

    async fn revoke_terminal(
        &self,
        store: &StoreId,
        terminal: &TerminalId,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (store, terminal) = (store.clone(), terminal.clone());
        self.write(move |conn, _| admin::revoke_terminal(conn, &store, &terminal, now))
            .await
    }

    async fn list_terminals(&self) -> Result<Vec<TerminalInfo>, StoreError> {
        self.read(|conn, _| admin::list_terminals(conn)).await
    }

    async fn push(
        &self,
        terminal: &TerminalIdentity,
        batch: Batch,
        now: OffsetDateTime,
    ) -> Result<PushOutcome, StoreError> {
        let terminal = terminal.clone();
        self.write(move |conn, inner| push::push(conn, inner, &terminal, &batch, now))
            .await
    }

    async fn record_anomaly(&self, anomaly: &Anomaly) -> Result<(), StoreError> {
        let anomaly = anomaly.clone();
        self.write(move |conn, _| admin::record_anomaly(conn, &anomaly))
            .await
    }

    async fn pull(
        &self,
        terminal: &TerminalIdentity,
        request: PullRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<PullResponse, StoreError> {
        let terminal = terminal.clone();
        let cursor = request.cursor.map(str::to_owned);
        let (rules_version, page_size) = (request.rules_version, request.page_size);
        self.read(move |conn, inner| {
            let request = PullRequest {
                cursor: cursor.as_deref(),
                rules_version,
                page_size,
            };
            feed::pull(conn, inner, &terminal, request, now)
        })
        .await
    }

    async fn live_balance(
        &self,
        terminal: &TerminalIdentity,
        card: &CardId,
        now: OffsetDateTime,
    ) -> Result<LiveBalanceResponse, StoreError> {
        let (terminal, card) = (terminal.clone(), card.clone());
        self.read(move |conn, _| feed::live_balance(conn, &terminal, &card, now))
            .await
    }

    async fn current_rules(&self) -> Result<ProgramRules, StoreError> {
        self.read(|conn, inner| rules::current(conn, inner).map(|r| (*r).clone()))
            .await
    }

    async fn set_rules(&self, rules: ProgramRules, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.write(move |conn, _| rules::set(conn, rules, now))
            .await
    }

    async fn set_blocked(
        &self,
        card: &CardId,
        blocked: bool,
        reason: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (card, reason) = (card.clone(), reason.map(str::to_owned));
        self.write(move |conn, _| admin::set_blocked(conn, &card, blocked, reason.as_deref(), now))
            .await
    }

    async fn card_report(
        &self,
        card: &CardId,
        recent: u32,
    ) -> Result<Option<CardReport>, StoreError> {
        let card = card.clone();
        self.read(move |conn, _| admin::card_report(conn, &card, recent))
            .await
    }

    async fn rotate_keys(
        &self,
        key: &SigningKey,
        grace: Duration,
        now: OffsetDateTime,
    ) -> Result<KeyInfo, StoreError> {
        let key = key.clone();
        self.write(move |conn, _| admin::rotate_keys(conn, &key, grace, now))
            .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        self.read(|conn, _| admin::list_keys(conn)).await
    }

    async fn current_signing_key(&self) -> Result<Option<(KeyId, SigningKey)>, StoreError> {
        self.read(|conn, _| admin::current_signing_key(conn)).await
    }

    async fn run_jobs(&self, now: OffsetDateTime) -> Result<JobReport, StoreError> {
        self.write(move |conn, inner| housekeeping::run_jobs(conn, inner, now))
            .await
    }

    async fn audit(&self) -> Result<Audit, StoreError> {
        self.read(|conn, _| housekeeping::audit(conn)).await
    }

    async fn overdrafts(&self) -> Result<Vec<Overdraft>, StoreError> {
        self.read(|conn, _| admin::overdrafts(conn)).await
    }

    async fn flagged_entries(&self) -> Result<Vec<FlaggedEntry>, StoreError> {
        self.read(|conn, _| admin::flagged_entries(conn, None))
            .await
    }

    async fn anomalies(&self) -> Result<Vec<Anomaly>, StoreError> {
        self.read(|conn, _| admin::anomalies(conn)).await
    }
}
