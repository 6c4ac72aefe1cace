//! The periodic job (maturation, expiry, tiers; decided by [`crate::ledger::jobs`]),
//! in two steps on every backend.
//!
//! A read finds the candidates (due lots, and the cards whose spend or tier may
//! have changed) without locking anything. Then the cards are handled in chunks,
//! each chunk one write transaction that locks its cards in card-id order (as a push
//! does) and reads their lots and spend under the lock. So the job and pushes take
//! turns per card and never write a balance computed from stale lots, and a second
//! instance running the job at the same moment finds the due lots already handled
//! (the ledger's job is idempotent at a given `now`). Chunks keep each transaction
//! short: a push waits for at most one chunk. Once every chunk is done the tiers are
//! marked as following the current rules version.

use super::done;
use crate::ledger::jobs::{JobInput, JobReport, plan_jobs};
use crate::ledger::{CardRecord, spend_window_start, tier_name};
use crate::store::Result;
use crate::store::backend::{Access, Attempt, Op};
use crate::store::statements::Statements;
use protocol::rules::ProgramRules;
use protocol::{CardId, Money};
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;

/// Cards per job transaction.
pub const JOB_CHUNK: usize = 500;

/// What the job has to look at.
#[derive(Debug, Default)]
pub struct Candidates {
    /// Each candidate card with the ids of its due lots (none for a card whose spend
    /// or tier may change), in card-id order.
    pub cards: BTreeMap<CardId, Vec<i64>>,
    /// The rules version to record once every tier was recomputed, if a recompute is
    /// part of this run.
    pub tiers_version: Option<u64>,
}

/// Finds the job's candidates at `now` under `rules`.
pub struct FindCandidates {
    /// The job's time.
    pub now: OffsetDateTime,
    /// The current rules.
    pub rules: Arc<ProgramRules>,
}

impl Op for FindCandidates {
    type Out = Candidates;
    const ACCESS: Access = Access::Read;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Candidates>> {
        let mut out = Candidates::default();
        for (card, lot) in c.due_lots(self.now).await? {
            out.cards.entry(card).or_default().push(lot);
        }
        for card in c.cards_with_spend_dropping(self.now).await? {
            out.cards.entry(card).or_default();
        }
        if c.tiers_version().await? != self.rules.version {
            // After a rules change, every card that has a spend or a tier.
            let zero_tier = tier_name(&self.rules, Money::ZERO);
            for card in c.cards_with_spend_or_tier(zero_tier.as_deref()).await? {
                out.cards.entry(card).or_default();
            }
            out.tiers_version = Some(self.rules.version);
        }
        done(Ok(out))
    }
}

/// Runs the job for one chunk of candidates.
pub struct Chunk {
    /// The cards with their due lots.
    pub cards: Vec<(CardId, Vec<i64>)>,
    /// The job's time.
    pub now: OffsetDateTime,
    /// The current rules.
    pub rules: Arc<ProgramRules>,
}

impl Op for Chunk {
    type Out = JobReport;
    const ACCESS: Access = Access::Write;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<JobReport>> {
        let keys: Vec<&CardId> = self.cards.iter().map(|(card, _)| card).collect();
        let cards = c.lock_existing_cards(&keys).await?;
        let lot_ids: Vec<i64> = self
            .cards
            .iter()
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        // Read after the locks: a push may have consumed these lots since the
        // candidates were found; the ledger skips lots that are no longer due.
        let due_lots = c.lots(&lot_ids).await?;
        let spend = c
            .spend_since(&keys, spend_window_start(self.now))
            .await?
            .into_iter()
            .collect();
        let plan = plan_jobs(JobInput {
            now: self.now,
            due_lots,
            cards,
            spend,
            rules: &self.rules,
        });
        let states: Vec<&CardRecord> = plan.cards.iter().collect();
        c.write_cards(&states, self.now).await?;
        c.update_lots(&plan.changed_lots).await?;
        c.insert_ledger(&plan.ledger).await?;
        done(Ok(plan.report))
    }
}

/// Records that every tier follows rules `version`.
pub struct MarkTiers(pub u64);

impl Op for MarkTiers {
    type Out = ();
    const ACCESS: Access = Access::WriteOne;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<()>> {
        done(c.mark_tiers(self.0).await)
    }
}
