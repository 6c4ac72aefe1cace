//! What `verify` compares ([`crate::ledger::verify`] decides), every sum read from
//! one snapshot so that `verify` compares consistent numbers while pushes go on.

use super::done;
use crate::ledger::verify::CardAudit;
use crate::store::Audit;
use crate::store::Result;
use crate::store::backend::{Access, Attempt, Op};
use crate::store::statements::Statements;
use protocol::{CardId, Points};
use std::collections::BTreeMap;

/// See [`crate::store::Store::audit`].
pub struct Read;

fn blank(card: CardId) -> CardAudit {
    CardAudit {
        card,
        cached: None,
        ledger_balance: Points::ZERO,
        ledger_pending: Points::ZERO,
        unmatured_remaining: Points::ZERO,
        lots_remaining: Points::ZERO,
        open_reserved: Points::ZERO,
        open_leased: Points::ZERO,
    }
}

impl Op for Read {
    type Out = Audit;
    const ACCESS: Access = Access::Snapshot;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Audit>> {
        // Every card, and every card that has ledger rows or lots (a row without its
        // card is a difference too).
        let mut cards: BTreeMap<CardId, CardAudit> = BTreeMap::new();
        for state in c.all_cards().await? {
            let mut a = blank(state.card.clone());
            a.cached = Some(state);
            cards.insert(a.card.clone(), a);
        }
        for (card, balance, pending) in c.ledger_sums().await? {
            let a = cards.entry(card.clone()).or_insert_with(|| blank(card));
            a.ledger_balance = balance;
            a.ledger_pending = pending;
        }
        for (card, remaining, unmatured) in c.lot_sums().await? {
            let a = cards.entry(card.clone()).or_insert_with(|| blank(card));
            a.lots_remaining = remaining;
            a.unmatured_remaining = unmatured;
        }
        for (card, reserved, leased) in c.hold_sums().await? {
            let a = cards.entry(card.clone()).or_insert_with(|| blank(card));
            a.open_reserved = reserved;
            a.open_leased = leased;
        }
        let terminals = c.terminal_audits().await?;
        done(Ok(Audit {
            cards: cards.into_values().collect(),
            terminals,
        }))
    }
}
