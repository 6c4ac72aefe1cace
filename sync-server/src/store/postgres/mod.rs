//! The PostgreSQL backend: a pool of tokio-postgres connections (deadpool), shared
//! by any number of stateless server instances on one database.
//!
//! Every method is one transaction (the job: one per chunk of cards), run again from
//! the start when PostgreSQL reports a serialization failure or a deadlock
//! ([`retry`]). Exactly-once and consistent balances rest on row locks taken in a
//! fixed order (terminal row, then card rows by id; see [`push`] and [`cards`]); the
//! change feed rests on transaction ids and snapshots ([`feed`]). The business
//! decisions are [`crate::ledger`]'s, exactly as on SQLite.

mod admin;
mod cards;
mod feed;
mod housekeeping;
pub mod options;
mod push;
pub mod retry;
mod rows;
mod rules;
pub mod schema;
mod sql;
pub mod testdb;

use super::encode::RulesCache;
use super::{
    Anomaly, Audit, CardReport, FlaggedEntry, KeyInfo, Overdraft, PullRequest, PushOutcome, Store,
    StoreError, TerminalAdded, TerminalIdentity, TerminalInfo,
};
use crate::keys::TokenHash;
use crate::ledger::batch::Batch;
use crate::ledger::jobs::JobReport;
use async_trait::async_trait;
use deadpool_postgres::{Client, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use ed25519_dalek::SigningKey;
use protocol::rules::ProgramRules;
use protocol::token::KeyId;
use protocol::wire::{LiveBalanceResponse, PullResponse};
use protocol::{CardId, StoreId, TerminalId};
use retry::{Next, Retry};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};
use tokio_postgres::NoTls;

/// How long a request waits for a free pooled connection before it is answered 503.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Runs `$op` (an expression using `$client: &mut Client`) on a pooled connection,
/// and again on [`retry`]'s terms. A macro rather than a function taking a closure:
/// the operation's future borrows both the connection and the caller's arguments.
macro_rules! retrying {
    ($store:expr, |$client:ident| $op:expr) => {{
        let mut retry = Retry::default();
        loop {
            let mut conn = $store.connection().await?;
            let $client = &mut conn;
            let result = $op.await;
            drop(conn);
            match result {
                Ok(value) => break Ok(value),
                Err(e) => match retry.after(e) {
                    Next::Again(delay) => tokio::time::sleep(delay).await,
                    Next::Fail(e) => break Err(e),
                },
            }
        }
    }};
}

/// HQ's store in a PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    rules: RulesCache,
    associations: cards::Associations,
    redacted_url: String,
}

impl PgStore {
    /// Connects to the database `url` names (`postgres://…`, see [`options::parse`])
    /// and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
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
            .build()
            .map_err(|e| StoreError::Unavailable(format!("connection pool: {e}")))?;
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                rules: RulesCache::default(),
                associations: cards::Associations::default(),
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

    /// A pooled connection.
    async fn connection(&self) -> Result<Client, StoreError> {
        self.inner.pool.get().await.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to {}: {}",
                self.inner.redacted_url,
                retry::describe(&e)
            ))
        })
    }

    /// Runs the job for `candidates`, one chunk of cards per transaction.
    async fn run_candidates(
        &self,
        candidates: housekeeping::Candidates,
        now: OffsetDateTime,
        rules: &ProgramRules,
    ) -> Result<JobReport, StoreError> {
        let mut report = JobReport::default();
        let all: Vec<(&String, &Vec<i64>)> = candidates.cards.iter().collect();
        for chunk in all.chunks(housekeeping::JOB_CHUNK) {
            let part: JobReport = retrying!(self, |client| housekeeping::run_chunk(
                client, chunk, now, rules
            ))?;
            housekeeping::add_report(&mut report, part);
        }
        if let Some(version) = candidates.tiers_version {
            retrying!(self, |client| housekeeping::mark_tiers(&*client, version))?;
        }
        Ok(report)
    }
}

#[async_trait]
impl Store for PgStore {
    async fn health(&self) -> Result<u64, StoreError> {
        retrying!(self, |client| rules::current_version(&*client))
    }

    async fn authenticate(&self, hash: &TokenHash) -> Result<Option<TerminalIdentity>, StoreError> {
        retrying!(self, |client| admin::authenticate(&*client, hash))
    }

    async fn add_terminal(
        &self,
        store: &StoreId,
        terminal: &TerminalId,
        hash: &TokenHash,
        rotate: bool,
        now: OffsetDateTime,
    ) -> Result<TerminalAdded, StoreError> {
        retrying!(self, |client| admin::add_terminal(
            client, store, terminal, hash, rotate, now
        ))
    }

    async fn revoke_terminal(
        &self,
        store: &StoreId,
        terminal: &TerminalId,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        retrying!(self, |client| admin::revoke_terminal(
            &*client, store, terminal, now
        ))
    }

    async fn list_terminals(&self) -> Result<Vec<TerminalInfo>, StoreError> {
        retrying!(self, |client| admin::list_terminals(&*client))
    }

    async fn push(
        &self,
        terminal: &TerminalIdentity,
        batch: Batch,
        now: OffsetDateTime,
    ) -> Result<PushOutcome, StoreError> {
        let caches = push::PushCaches {
            rules: &self.inner.rules,
            associations: &self.inner.associations,
        };
        let batch = Arc::new(batch);
        let mut encoded = push::Encoded::start(&batch);
        retrying!(self, |client| push::push(
            client,
            &caches,
            terminal,
            &batch,
            &mut encoded,
            now
        ))
    }

    async fn record_anomaly(&self, anomaly: &Anomaly) -> Result<(), StoreError> {
        retrying!(self, |client| admin::record_anomaly(&*client, anomaly))
    }

    async fn pull(
        &self,
        terminal: &TerminalIdentity,
        request: PullRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<PullResponse, StoreError> {
        retrying!(self, |client| feed::pull(
            client,
            &self.inner.rules,
            terminal,
            request,
            now
        ))
    }

    async fn live_balance(
        &self,
        terminal: &TerminalIdentity,
        card: &CardId,
        now: OffsetDateTime,
    ) -> Result<LiveBalanceResponse, StoreError> {
        retrying!(self, |client| feed::live_balance(
            client, terminal, card, now
        ))
    }

    async fn current_rules(&self) -> Result<ProgramRules, StoreError> {
        let rules = retrying!(self, |client| rules::current(&*client, &self.inner.rules))?;
        Ok((*rules).clone())
    }

    async fn set_rules(&self, rules: ProgramRules, now: OffsetDateTime) -> Result<u64, StoreError> {
        retrying!(self, |client| rules::set(client, rules.clone(), now))
    }

    async fn set_blocked(
        &self,
        card: &CardId,
        blocked: bool,
        reason: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        retrying!(self, |client| admin::set_blocked(
            client, card, blocked, reason, now
        ))
    }

    async fn card_report(
        &self,
        card: &CardId,
        recent: u32,
    ) -> Result<Option<CardReport>, StoreError> {
        retrying!(self, |client| admin::card_report(client, card, recent))
    }

    async fn rotate_keys(
        &self,
        key: &SigningKey,
        grace: Duration,
        now: OffsetDateTime,
    ) -> Result<KeyInfo, StoreError> {
        retrying!(self, |client| admin::rotate_keys(client, key, grace, now))
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        retrying!(self, |client| admin::list_keys(&*client))
    }

    async fn current_signing_key(&self) -> Result<Option<(KeyId, SigningKey)>, StoreError> {
        retrying!(self, |client| admin::current_signing_key(&*client))
    }

    async fn run_jobs(&self, now: OffsetDateTime) -> Result<JobReport, StoreError> {
        let rules = retrying!(self, |client| rules::current(&*client, &self.inner.rules))?;
        let candidates = retrying!(self, |client| housekeeping::candidates(
            &*client, now, &rules
        ))?;
        self.run_candidates(candidates, now, &rules).await
    }

    async fn audit(&self) -> Result<Audit, StoreError> {
        retrying!(self, |client| housekeeping::audit(client))
    }

    async fn overdrafts(&self) -> Result<Vec<Overdraft>, StoreError> {
        retrying!(self, |client| admin::overdrafts(client))
    }

    async fn flagged_entries(&self) -> Result<Vec<FlaggedEntry>, StoreError> {
        retrying!(self, |client| admin::flagged_entries(&*client, None))
    }

    async fn anomalies(&self) -> Result<Vec<Anomaly>, StoreError> {
        retrying!(self, |client| admin::anomalies(&*client))
    }
}
