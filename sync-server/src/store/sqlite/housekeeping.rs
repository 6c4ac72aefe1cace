//! The periodic job and the audit in SQLite: load what [`crate::ledger::jobs`] and
//! [`crate::ledger::verify`] need, write what they decide.

use super::Inner;
use super::push::{insert_ledger, load_cards, load_spend, update_lots, write_cards};
use super::rows::{CARD_COLUMNS, LOT_COLUMNS, card, card_row, lot_row, signed, to_db, unsigned};
use super::rules;
use crate::ledger::jobs::{JobInput, JobReport, plan_jobs};
use crate::ledger::verify::{CardAudit, TerminalAudit};
use crate::ledger::{CardState, spend_window_start, tier_name};
use crate::store::{Audit, StoreError};
use protocol::{CardId, Money, Points};
use rusqlite::{Connection, TransactionBehavior};
use std::collections::{BTreeMap, HashSet};
use time::OffsetDateTime;

/// See [`crate::store::Store::run_jobs`]. One write transaction, so a push waits for
/// it (or it for the push) and both see consistent lots.
pub fn run_jobs(
    conn: &mut Connection,
    inner: &Inner,
    now: OffsetDateTime,
) -> Result<JobReport, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rules = rules::current(&tx, inner)?;
    let at = to_db(now);
    let mut due = Vec::new();
    {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {LOT_COLUMNS} FROM lots WHERE matured = 0 AND matures_at <= ?1
             UNION
             SELECT {LOT_COLUMNS} FROM lots
             WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= ?1"
        ))?;
        let mut rows = stmt.query([at])?;
        while let Some(r) = rows.next()? {
            due.push(lot_row(r)?.into_lot()?);
        }
    }
    // Cards whose spend may have changed with time: those whose oldest counted entry
    // left the window; after a rules change, every card that has a spend or a tier.
    let mut candidates: HashSet<CardId> = due.iter().map(|l| l.card.clone()).collect();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT card FROM cards WHERE spend_drops_at IS NOT NULL AND spend_drops_at <= ?1",
        )?;
        let mut rows = stmt.query([at])?;
        while let Some(r) = rows.next()? {
            candidates.insert(card(&r.get::<_, String>(0)?)?);
        }
    }
    let tiers_version: i64 = tx
        .prepare_cached("SELECT tiers_rules_version FROM job_state WHERE id = 1")?
        .query_row([], |r| r.get(0))?;
    if unsigned(tiers_version)? != rules.version {
        let zero_tier = tier_name(&rules, Money::ZERO);
        let mut stmt =
            tx.prepare_cached("SELECT card FROM cards WHERE spend_12m != 0 OR tier IS NOT ?1")?;
        let mut rows = stmt.query([zero_tier.as_deref()])?;
        while let Some(r) = rows.next()? {
            candidates.insert(card(&r.get::<_, String>(0)?)?);
        }
        tx.prepare_cached("UPDATE job_state SET tiers_rules_version = ?1 WHERE id = 1")?
            .execute([signed(rules.version)?])?;
    }
    let keys: Vec<&CardId> = candidates.iter().collect();
    let cards = load_cards(&tx, &keys)?;
    let spend = load_spend(&tx, &keys, spend_window_start(now))?;
    let plan = plan_jobs(JobInput {
        now,
        due_lots: due,
        cards,
        spend,
        rules: &rules,
    });
    let states: Vec<&CardState> = plan.cards.iter().collect();
    write_cards(&tx, &states, now)?;
    update_lots(&tx, &plan.changed_lots)?;
    insert_ledger(&tx, &plan.ledger)?;
    tx.commit()?;
    Ok(plan.report)
}

/// See [`crate::store::Store::audit`].
pub fn audit(conn: &mut Connection) -> Result<Audit, StoreError> {
    let tx = conn.transaction()?;
    let mut cards: BTreeMap<CardId, CardAudit> = BTreeMap::new();
    let blank = |c: CardId| CardAudit {
        card: c,
        cached: None,
        ledger_balance: Points::ZERO,
        ledger_pending: Points::ZERO,
        unmatured_remaining: Points::ZERO,
        lots_remaining: Points::ZERO,
    };
    {
        let mut stmt = tx.prepare(&format!("SELECT {CARD_COLUMNS} FROM cards"))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let state = card_row(r, 0)?.into_state()?;
            let mut a = blank(state.card.clone());
            a.cached = Some(state);
            cards.insert(a.card.clone(), a);
        }
    }
    {
        let mut stmt = tx.prepare(
            "SELECT card, SUM(delta_balance), SUM(delta_pending) FROM ledger GROUP BY card",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let c = card(&r.get::<_, String>(0)?)?;
            let a = cards.entry(c.clone()).or_insert_with(|| blank(c));
            a.ledger_balance = Points(r.get(1)?);
            a.ledger_pending = Points(r.get(2)?);
        }
    }
    {
        let mut stmt = tx.prepare(
            "SELECT card, SUM(remaining), SUM(CASE WHEN matured = 0 THEN remaining ELSE 0 END)
             FROM lots GROUP BY card",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let c = card(&r.get::<_, String>(0)?)?;
            let a = cards.entry(c.clone()).or_insert_with(|| blank(c));
            a.lots_remaining = Points(r.get(1)?);
            a.unmatured_remaining = Points(r.get(2)?);
        }
    }
    let mut terminals = Vec::new();
    {
        let mut stmt = tx.prepare(
            "SELECT t.store, t.terminal, t.acked_through, COUNT(e.seq), MIN(e.seq), MAX(e.seq)
             FROM terminals t LEFT JOIN entries e ON e.terminal_ref = t.id
             GROUP BY t.id ORDER BY t.store, t.terminal",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (s, t): (String, String) = (r.get(0)?, r.get(1)?);
            let min: Option<i64> = r.get(4)?;
            let max: Option<i64> = r.get(5)?;
            terminals.push(TerminalAudit {
                name: format!("{s}/{t}"),
                acked_through: unsigned(r.get(2)?)?,
                count: unsigned(r.get(3)?)?,
                min_seq: min.map(unsigned).transpose()?,
                max_seq: max.map(unsigned).transpose()?,
            });
        }
    }
    tx.commit()?;
    Ok(Audit {
        cards: cards.into_values().collect(),
        terminals,
    })
}
