//! The PostgreSQL backend: a pool of tokio-postgres connections (deadpool), shared
//! by any number of stateless server instances on one database.
//!
//! Every operation is one transaction (the job: one per chunk of cards), run again
//! from the start when PostgreSQL reports a serialization failure or a deadlock
//! ([`retry`]). Exactly-once and consistent balances rest on row locks taken in a
//! fixed order (terminal row, then card rows by id; see `terminals.rs` and
//! `cards.rs`); the change feed rests on transaction ids and snapshots (`feed.rs`).
//!
//! Only SQL lives here: the flows (and the business decisions, [`crate::ledger`]'s)
//! are [`crate::store::flow`]'s, exactly as on SQLite.

mod admin;
mod analytics;
mod bound;
mod cards;
mod escrow;
mod feed;
mod jobs;
pub mod options;
mod push;
mod quarantine;
pub mod retry;
mod rules;
pub mod schema;
mod session;
mod sql;
mod terminals;
#[cfg(test)]
mod test_hq;

pub use terminals::INSERT_ENTRIES;

use super::StoreError;
use super::backend::{Backend, Op, drive};
use super::caches::Caches;
use crate::metrics::PoolMetrics;
use crate::store::Result;
use bound::FeedWatch;
use deadpool_postgres::{
    Client, Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime,
};
use retry::{Next, Retry};
use session::PgSession;
use std::sync::Arc;
use tokio_postgres::NoTls;

/// Run on each new connection: a transaction HQ leaves idle for a minute ends, so an
/// instance stuck inside one (it would hold every till's balance feed, `bound.rs`, and
/// its row locks) cannot hold it for ever. No operation of HQ's waits that long
/// between two statements of a transaction. A timeout the operator set for the role
/// or the database is kept.
const IDLE_IN_TRANSACTION: &str =
    "SELECT set_config('idle_in_transaction_session_timeout', '60s', false)
     WHERE current_setting('idle_in_transaction_session_timeout') = '0'";

/// How long a request waits for a free pooled connection before it is answered 503.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// HQ's store in a PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    pool_metrics: PoolMetrics,
    caches: Caches,
    feed: FeedWatch,
    redacted_url: String,
}

impl PgStore {
    /// Connects to the database `url` names (`postgres://…`, see [`options::parse`])
    /// and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self> {
        let options = options::parse(url)?;
        let manager = Manager::from_config(
            options.config,
            NoTls,
            ManagerConfig {
                // A pooled connection that died is noticed by the driver (is_closed);
                // a test query per checkout would cost a round trip per request.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move {
                    client
                        .batch_execute(IDLE_IN_TRANSACTION)
                        .await
                        .map_err(HookError::Backend)
                })
            }))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("connection pool: {e}").into()))?;
        let feed = FeedWatch::default();
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                pool_metrics: PoolMetrics {
                    feed_held_back_seconds: feed.gauge(),
                    ..PoolMetrics::default()
                },
                caches: Caches::default(),
                feed,
                redacted_url: options.redacted,
            }),
        };
        let mut client = store.connection().await?;
        schema::migrate(&mut client).await?;
        Ok(store)
    }

    /// The database URL, password hidden.
    pub fn url(&self) -> &str {
        &self.inner.redacted_url
    }

    /// A pooled connection. Counts a request that found every connection busy, how
    /// long it waited, and one that got none.
    async fn connection(&self) -> Result<Client> {
        let status = self.inner.pool.status();
        let waits = status.available == 0 && status.size >= status.max_size;
        let started = std::time::Instant::now();
        let got = self.inner.pool.get().await;
        let metrics = &self.inner.pool_metrics;
        if waits {
            metrics.waits.inc();
            metrics
                .wait_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        got.map_err(|e| {
            metrics.errors.inc();
            StoreError::Unavailable(
                format!(
                    "cannot connect to {}: {}",
                    self.inner.redacted_url,
                    retry::describe(&e)
                )
                .into(),
            )
        })
    }
}

impl Backend for PgStore {
    /// Runs `op` on a pooled connection, and again from the start on [`retry`]'s
    /// terms.
    async fn run<O: Op>(&self, mut op: O) -> Result<O::Out> {
        let mut retry = Retry::default();
        loop {
            let mut session = PgSession::new(
                self.connection().await?,
                &self.inner.caches,
                &self.inner.feed,
            );
            let result = drive(&mut session, &mut op).await;
            // Back to the pool before the wait.
            drop(session);
            match result {
                Ok(out) => return Ok(out),
                Err(e) => match retry.after(e) {
                    Next::Again(delay) => tokio::time::sleep(delay).await,
                    Next::Fail(e) => return Err(e),
                },
            }
        }
    }

    fn pool_metrics(&self) -> PoolMetrics {
        self.inner.pool_metrics.clone()
    }
}
