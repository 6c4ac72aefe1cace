//! Measuring the HQ store, on either backend (moved here from the `sync-server`
//! library, which ships no benchmark code): the workload (sales priced by the agent's
//! own code), terminals enrolled straight in the store, the raw baselines of [`raw`]
//! (the same entry rows written into the same schema with no ledger work at all) and,
//! for the ignored benchmark tests, the load drivers (`drivers`: a backlog in batches,
//! many terminals at once).
//!
//! Everything takes fresh, empty databases and fills them; the caller makes and drops
//! them (on PostgreSQL, [`testkit::pg::TestDatabase`]).

pub mod raw;

use protocol::journal::JournalEntry;
use protocol::{StoreId, TerminalId};
use std::path::PathBuf;
use std::sync::Arc;
use sync_server::keys::TerminalToken;
use sync_server::ledger::batch::BatchError;
use sync_server::store::postgres::PgStore;
use sync_server::store::sqlite::SqliteStore;
use sync_server::store::{Store, StoreError, TerminalIdentity};
use time::OffsetDateTime;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A generated batch was refused (a bug in the generator).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The workload could not be built.
    #[error("workload: {0}")]
    Workload(String),
    /// A raw baseline failed.
    #[error("raw baseline: {0}")]
    Raw(String),
    /// A task died.
    #[error("task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A database the benchmarks fill: a SQLite file or a PostgreSQL URL.
#[derive(Debug, Clone)]
pub enum Target {
    /// `sqlite:PATH`.
    Sqlite(PathBuf),
    /// `postgres://…`.
    Postgres(String),
}

impl Target {
    /// On PostgreSQL, a `CHECKPOINT` (when the role may), so that each measured phase
    /// starts from the same state instead of paying for the previous phase's
    /// checkpoint; SQLite: nothing.
    pub async fn checkpoint(&self) {
        if let Self::Postgres(url) = self
            && let Ok((client, connection)) =
                tokio_postgres::connect(url, tokio_postgres::NoTls).await
        {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let _ = client.batch_execute("CHECKPOINT").await;
        }
    }

    /// Opens the store on this database (migrating it).
    pub async fn open(&self) -> Result<Arc<dyn Store>, BenchError> {
        Ok(match self {
            Self::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
            Self::Postgres(url) => Arc::new(PgStore::open(url).await?),
        })
    }
}

/// The `n`-th sale of a terminal on one of 20,000 cards ([`testkit::entries::chain_sale`]).
pub fn sale(terminal: &str, seq: u64, at: OffsetDateTime) -> JournalEntry {
    testkit::entries::chain_sale(terminal, seq, 20_000, at)
}

/// `count` consecutive sales of `terminal` from seq 1.
pub fn journal(terminal: &str, count: u64) -> Vec<JournalEntry> {
    let now = OffsetDateTime::now_utc();
    (1..=count).map(|seq| sale(terminal, seq, now)).collect()
}

/// Adds a terminal and returns its identity.
pub async fn enroll(
    store: &dyn Store,
    store_id: &str,
    terminal: &str,
) -> Result<TerminalIdentity, BenchError> {
    let token =
        TerminalToken::generate().map_err(|e| BenchError::Workload(format!("token: {e}")))?;
    let parse = |e: protocol::ids::IdError| BenchError::Workload(e.to_string());
    let (s, t) = (
        StoreId::parse(store_id).map_err(parse)?,
        TerminalId::parse(terminal).map_err(parse)?,
    );
    let now = OffsetDateTime::now_utc();
    store
        .add_terminal(&s, &t, &token.hash(), false, now)
        .await?;
    store
        .authenticate(&token.hash())
        .await?
        .ok_or_else(|| BenchError::Workload("the new terminal does not authenticate".into()))
}

#[cfg(test)]
mod drivers;
#[cfg(test)]
mod over_http;
#[cfg(test)]
mod pg_cost;
#[cfg(test)]
mod tests;
