//! Every operation of the [`Store`] contract, written once for every backend.
//!
//! Each submodule holds the flows of one area as [`Op`](crate::store::backend::Op)s: which statements run, in
//! which order, in which kind of transaction, and what the pure [`crate::ledger`]
//! decides in between. The backends provide the statements
//! ([`crate::store::statements`]) and run the ops ([`Backend`]); `Store` itself is
//! implemented here, once, for any backend.

pub mod analytics;
pub mod audit;
pub mod cards;
pub mod escrow;
pub mod feed;
pub mod import;
pub mod jobs;
pub mod keys;
pub mod push;
pub mod quarantine;
pub mod reports;
pub mod rules;
pub mod terminals;

use crate::keys::TokenHash;
use crate::ledger::batch::Batch;
use crate::ledger::escrow::{LeaseAsks, ReserveAsk, TokenUse};
use crate::ledger::jobs::JobReport;
use crate::ledger::kpi::{KpiInputs, Period};
use crate::ledger::quarantine::RetryOutcome;
use crate::ledger::sequence::Refusal;
use crate::store::Result;
use crate::store::backend::{Attempt, Backend};
use crate::store::flow::escrow::{AbandonAfter, AbandonReport};
use crate::store::{
    Anomaly, Audit, CardReport, FlaggedEntry, KeyInfo, Overdraft, PullRequest, PushOutcome,
    QuarantinedEntry, Store, StoreError, TerminalAdded, TerminalIdentity, TerminalInfo,
};
use async_trait::async_trait;
use ed25519_dalek::SigningKey;
use protocol::rules::ProgramRules;
use protocol::token::KeyId;
use protocol::wire::{Lease, LiveBalanceResponse, PullResponse, ReserveResponse};
use protocol::{CardId, Money, Seq, StoreId, TerminalId};
use std::collections::HashSet;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// An op's answer, done (no [`Attempt::StartOver`]).
fn done<T>(result: Result<T>) -> Result<Attempt<T>> {
    result.map(Attempt::Done)
}

#[async_trait]
impl<B: Backend> Store for B {
    fn pool_metrics(&self) -> crate::metrics::PoolMetrics {
        Backend::pool_metrics(self)
    }

    async fn health(&self) -> Result<u64> {
        self.run(rules::CurrentVersion).await
    }

    async fn authenticate(&self, hash: &TokenHash) -> Result<Option<TerminalIdentity>> {
        self.run(terminals::Authenticate(hash.clone())).await
    }

    async fn add_terminal(
        &self,
        store: &StoreId,
        terminal: &TerminalId,
        hash: &TokenHash,
        rotate: bool,
        now: OffsetDateTime,
    ) -> Result<TerminalAdded> {
        self.run(terminals::Add {
            store: store.clone(),
            terminal: terminal.clone(),
            hash: hash.clone(),
            rotate,
            now,
        })
        .await
    }

    async fn revoke_terminal(
        &self,
        store: &StoreId,
        terminal: &TerminalId,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.run(terminals::Revoke {
            store: store.clone(),
            terminal: terminal.clone(),
            now,
        })
        .await
    }

    async fn list_terminals(&self) -> Result<Vec<TerminalInfo>> {
        self.run(terminals::List).await
    }

    async fn push(
        &self,
        terminal: &TerminalIdentity,
        batch: Batch,
        now: OffsetDateTime,
    ) -> Result<PushOutcome> {
        let batch = Arc::new(batch);
        let op = push::Push::new(terminal.clone(), Arc::clone(&batch), now);
        match self.run(op).await {
            // Rolled back by now; name the owner for the anomaly report.
            Err(StoreError::Refused(Refusal::IdConflict {
                id, acked_through, ..
            })) => {
                let (id, owner) = self
                    .run(push::IdOwner::new(terminal.clone(), batch, id))
                    .await?;
                Err(Refusal::IdConflict {
                    id,
                    owner,
                    acked_through,
                }
                .into())
            }
            // Rolled back: find the entries that fail alone and quarantine them.
            Err(e) if quarantine::is_internal(&e) => {
                quarantine::push_one_by_one(self, terminal, &batch, now).await
            }
            other => other,
        }
    }

    async fn record_anomaly(&self, anomaly: &Anomaly) -> Result<()> {
        self.run(reports::RecordAnomaly(anomaly.clone())).await
    }

    async fn pull(
        &self,
        terminal: &TerminalIdentity,
        request: PullRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<PullResponse> {
        self.run(feed::Pull {
            terminal: terminal.clone(),
            cursor: request.cursor.map(str::to_owned),
            rules_version: request.rules_version,
            page_size: request.page_size,
            now,
        })
        .await
    }

    async fn live_balance(
        &self,
        token: &TokenHash,
        card: &CardId,
        now: OffsetDateTime,
    ) -> Result<Option<LiveBalanceResponse>> {
        self.run(feed::LiveBalance {
            token: token.clone(),
            card: card.clone(),
            now,
        })
        .await
    }

    async fn current_rules(&self) -> Result<ProgramRules> {
        Ok((*self.run(rules::Current).await?).clone())
    }

    async fn set_rules(&self, rules: ProgramRules, now: OffsetDateTime) -> Result<u64> {
        self.run(rules::Set { rules, now }).await
    }

    async fn set_blocked(
        &self,
        card: &CardId,
        blocked: bool,
        reason: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<bool> {
        self.run(cards::SetBlocked {
            card: card.clone(),
            blocked,
            reason: reason.map(str::to_owned),
            now,
        })
        .await
    }

    async fn card_report(&self, card: &CardId, recent: u32) -> Result<Option<CardReport>> {
        self.run(cards::Report {
            card: card.clone(),
            recent,
        })
        .await
    }

    async fn rotate_keys(
        &self,
        key: &SigningKey,
        grace: Duration,
        now: OffsetDateTime,
    ) -> Result<KeyInfo> {
        self.run(keys::Rotate {
            key: key.clone(),
            grace,
            now,
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.run(keys::List).await
    }

    async fn current_signing_key(&self) -> Result<Option<(KeyId, SigningKey)>> {
        self.run(keys::Current).await
    }

    async fn run_jobs(&self, now: OffsetDateTime) -> Result<JobReport> {
        let rules = self.run(rules::Current).await?;
        let candidates = self
            .run(jobs::FindCandidates {
                now,
                rules: Arc::clone(&rules),
            })
            .await?;
        let mut report = JobReport::default();
        let mut cards = candidates.cards.into_iter().peekable();
        while cards.peek().is_some() {
            let chunk = jobs::Chunk {
                cards: cards.by_ref().take(jobs::JOB_CHUNK).collect(),
                now,
                rules: Arc::clone(&rules),
            };
            report.add(self.run(chunk).await?);
        }
        if let Some(version) = candidates.tiers_version {
            self.run(jobs::MarkTiers(version)).await?;
        }
        Ok(report)
    }

    async fn audit(&self) -> Result<Audit> {
        self.run(audit::Read).await
    }

    async fn overdrafts(&self) -> Result<Vec<Overdraft>> {
        self.run(reports::Overdrafts).await
    }

    async fn flagged_entries(&self) -> Result<Vec<FlaggedEntry>> {
        self.run(reports::Flagged).await
    }

    async fn anomalies(&self) -> Result<Vec<Anomaly>> {
        self.run(reports::Anomalies).await
    }

    async fn held_entry_ids(&self, ids: Vec<Uuid>) -> Result<HashSet<Uuid>> {
        self.run(import::HeldIds(ids)).await
    }

    async fn member_purchases(&self) -> Result<Vec<(CardId, OffsetDateTime, Money)>> {
        self.run(analytics::MemberPurchases).await
    }

    async fn kpi_inputs(
        &self,
        period: Period,
        store: Option<&StoreId>,
        now: OffsetDateTime,
    ) -> Result<KpiInputs> {
        self.run(analytics::KpiRead {
            period,
            store: store.cloned(),
            now,
        })
        .await
    }

    async fn quarantined(&self) -> Result<Vec<QuarantinedEntry>> {
        self.run(quarantine::List).await
    }

    async fn retry_quarantined(&self, id: i64, now: OffsetDateTime) -> Result<RetryOutcome> {
        self.run(quarantine::Retry { id, now }).await
    }

    async fn reserve(
        &self,
        token: &TokenHash,
        ask: ReserveAsk,
        now: OffsetDateTime,
    ) -> Result<Option<ReserveResponse>> {
        self.run(escrow::Reserve::new(token.clone(), ask, now))
            .await
    }

    async fn lease_sync(
        &self,
        terminal: &TerminalIdentity,
        epoch: u64,
        through_seq: Seq,
        asks: LeaseAsks,
        now: OffsetDateTime,
    ) -> Result<Vec<Lease>> {
        self.run(escrow::LeaseSync {
            terminal: terminal.clone(),
            epoch,
            through_seq,
            asks,
            now,
        })
        .await
    }

    async fn use_token(&self, token: TokenUse) -> Result<()> {
        self.run(escrow::UseToken(token)).await
    }

    async fn release_abandoned(
        &self,
        now: OffsetDateTime,
        after: AbandonAfter,
    ) -> Result<AbandonReport> {
        let mut report = AbandonReport::default();
        loop {
            let chunk = self.run(escrow::ReleaseAbandoned { now, after }).await?;
            let more = chunk.reservations_released + chunk.leases_reclaimed > 0;
            report.add(chunk);
            if !more {
                return Ok(report);
            }
        }
    }
}
