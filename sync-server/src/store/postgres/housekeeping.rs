//! The periodic job and the audit on PostgreSQL: load what [`crate::ledger::jobs`] and
//! [`crate::ledger::verify`] need, write what they decide.
//!
//! The job runs in two steps. A read finds the candidates (due lots and the cards whose
//! spend or tier may have changed) without locking anything. Then the cards are
//! handled in chunks, each chunk one transaction that locks its cards in card-id order
//! (like a push does) and re-reads their lots and spend under the lock. So the job
//! and pushes take turns per card and never write a balance computed from stale
//! lots, and a second instance running the job at the same moment finds the due lots
//! already handled (the ledger's job is idempotent at a given `now`). Chunks keep
//! each transaction short: pushes of a card wait for at most one chunk.

use super::cards::{
    insert_ledger, load_lots, load_spend, lock_existing_cards, update_lots, write_cards,
};
use super::sql;
use crate::ledger::jobs::{JobInput, JobReport, plan_jobs};
use crate::ledger::verify::{CardAudit, TerminalAudit};
use crate::ledger::{CardState, spend_window_start, tier_name};
use crate::store::encode::{card, signed, to_db, unsigned};
use crate::store::{Audit, StoreError};
use deadpool_postgres::{Client, GenericClient};
use protocol::rules::ProgramRules;
use protocol::{CardId, Money, Points};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use tokio_postgres::IsolationLevel;

/// Cards per job transaction.
pub const JOB_CHUNK: usize = 500;

/// What the job has to look at: each candidate card with the ids of its due lots.
#[derive(Debug, Default)]
pub struct Candidates {
    /// Card id → due lot ids (empty for a card whose spend or tier may change).
    pub cards: BTreeMap<String, Vec<i64>>,
    /// The rules version to record once every tier was recomputed, if a recompute is
    /// part of this run.
    pub tiers_version: Option<u64>,
}

/// Finds the candidates at `now` under `rules`.
pub async fn candidates(
    c: &impl GenericClient,
    now: OffsetDateTime,
    rules: &ProgramRules,
) -> Result<Candidates, StoreError> {
    let at = to_db(now);
    let mut out = Candidates::default();
    let rows = sql::query(
        c,
        "SELECT card, id FROM lots WHERE NOT matured AND matures_at <= $1
         UNION
         SELECT card, id FROM lots
         WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= $1",
        &[&at],
    )
    .await?;
    for r in rows {
        out.cards
            .entry(r.try_get(0)?)
            .or_default()
            .push(r.try_get(1)?);
    }
    let rows = sql::query(
        c,
        "SELECT card FROM cards WHERE spend_drops_at IS NOT NULL AND spend_drops_at <= $1",
        &[&at],
    )
    .await?;
    for r in rows {
        out.cards.entry(r.try_get(0)?).or_default();
    }
    let tiers_version: i64 = sql::query_one(
        c,
        "SELECT tiers_rules_version FROM job_state WHERE id = 1",
        &[],
    )
    .await?
    .try_get(0)?;
    if unsigned(tiers_version)? != rules.version {
        // After a rules change, every card that has a spend or a tier.
        let zero_tier = tier_name(rules, Money::ZERO);
        let rows = sql::query(
            c,
            "SELECT card FROM cards WHERE spend_12m <> 0 OR tier IS DISTINCT FROM $1",
            &[&zero_tier.as_deref()],
        )
        .await?;
        for r in rows {
            out.cards.entry(r.try_get(0)?).or_default();
        }
        out.tiers_version = Some(rules.version);
    }
    Ok(out)
}

/// Runs the job for one chunk of candidates in one transaction.
pub async fn run_chunk(
    client: &mut Client,
    chunk: &[(&String, &Vec<i64>)],
    now: OffsetDateTime,
    rules: &ProgramRules,
) -> Result<JobReport, StoreError> {
    let tx = client.transaction().await?;
    let keys: Vec<String> = chunk.iter().map(|(c, _)| (*c).clone()).collect();
    let cards = lock_existing_cards(&tx, &keys).await?;
    let lot_ids: Vec<i64> = chunk
        .iter()
        .flat_map(|(_, ids)| ids.iter().copied())
        .collect();
    // Read after the locks: a push may have consumed these lots since the candidates
    // were found; the ledger skips lots that are no longer due.
    let due_lots = load_lots(&tx, &lot_ids).await?;
    let spend = load_spend(
        &tx,
        keys.iter().map(String::as_str),
        spend_window_start(now),
    )
    .await?;
    let plan = plan_jobs(JobInput {
        now,
        due_lots,
        cards,
        spend,
        rules,
    });
    let states: Vec<&CardState> = plan.cards.iter().collect();
    write_cards(&tx, &states, now).await?;
    update_lots(&tx, &plan.changed_lots).await?;
    insert_ledger(&tx, &plan.ledger).await?;
    tx.commit().await?;
    Ok(plan.report)
}

/// Records that every tier follows rules `version` (never going back, should an
/// instance with older rules finish later).
pub async fn mark_tiers(c: &impl GenericClient, version: u64) -> Result<(), StoreError> {
    sql::execute(
        c,
        "UPDATE job_state SET tiers_rules_version = $1 WHERE id = 1 AND tiers_rules_version < $1",
        &[&signed(version)?],
    )
    .await?;
    Ok(())
}

/// Adds a chunk's report to the run's.
pub fn add_report(total: &mut JobReport, part: JobReport) {
    total.matured_lots += part.matured_lots;
    total.matured_points = Points(total.matured_points.get() + part.matured_points.get());
    total.expired_lots += part.expired_lots;
    total.expired_points = Points(total.expired_points.get() + part.expired_points.get());
    total.tier_updates += part.tier_updates;
}

/// See [`crate::store::Store::audit`]: every sum from one snapshot, so `verify`
/// compares consistent numbers while pushes go on.
pub async fn audit(client: &mut Client) -> Result<Audit, StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut cards: BTreeMap<CardId, CardAudit> = BTreeMap::new();
    let blank = |c: CardId| CardAudit {
        card: c,
        cached: None,
        ledger_balance: Points::ZERO,
        ledger_pending: Points::ZERO,
        unmatured_remaining: Points::ZERO,
        lots_remaining: Points::ZERO,
    };
    let rows = sql::query(
        &tx,
        &format!("SELECT {} FROM cards", crate::store::encode::CARD_COLUMNS),
        &[],
    )
    .await?;
    for r in &rows {
        let state = super::rows::card_row(r, 0)?.into_state()?;
        let mut a = blank(state.card.clone());
        a.cached = Some(state);
        cards.insert(a.card.clone(), a);
    }
    let rows = sql::query(
        &tx,
        "SELECT card, SUM(delta_balance)::bigint, SUM(delta_pending)::bigint
         FROM ledger GROUP BY card",
        &[],
    )
    .await?;
    for r in &rows {
        let c = card(&r.try_get::<_, String>(0)?)?;
        let a = cards.entry(c.clone()).or_insert_with(|| blank(c));
        a.ledger_balance = Points(r.try_get(1)?);
        a.ledger_pending = Points(r.try_get(2)?);
    }
    let rows = sql::query(
        &tx,
        "SELECT card, SUM(remaining)::bigint,
                SUM(CASE WHEN NOT matured THEN remaining ELSE 0 END)::bigint
         FROM lots GROUP BY card",
        &[],
    )
    .await?;
    for r in &rows {
        let c = card(&r.try_get::<_, String>(0)?)?;
        let a = cards.entry(c.clone()).or_insert_with(|| blank(c));
        a.lots_remaining = Points(r.try_get(1)?);
        a.unmatured_remaining = Points(r.try_get(2)?);
    }
    let rows = sql::query(
        &tx,
        "SELECT t.store, t.terminal, t.acked_through, COUNT(e.seq), MIN(e.seq), MAX(e.seq)
         FROM terminals t LEFT JOIN entries e ON e.terminal_ref = t.id
         GROUP BY t.id ORDER BY t.store, t.terminal",
        &[],
    )
    .await?;
    let mut terminals = Vec::with_capacity(rows.len());
    for r in &rows {
        let (s, t): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        let min: Option<i64> = r.try_get(4)?;
        let max: Option<i64> = r.try_get(5)?;
        terminals.push(TerminalAudit {
            name: format!("{s}/{t}"),
            acked_through: unsigned(r.try_get(2)?)?,
            count: unsigned(r.try_get(3)?)?,
            min_seq: min.map(unsigned).transpose()?,
            max_seq: max.map(unsigned).transpose()?,
        });
    }
    tx.commit().await?;
    Ok(Audit {
        cards: cards.into_values().collect(),
        terminals,
    })
}
