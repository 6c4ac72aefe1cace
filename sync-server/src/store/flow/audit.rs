//! What `verify` compares ([`crate::ledger::verify`] decides), every sum read from
//! one snapshot so that `verify` compares consistent numbers while pushes go on. A
//! card whose row or id does not read is set aside with the reason, and the others
//! are still checked.

use super::done;
use crate::ledger::verify::CardAudit;
use crate::store::Audit;
use crate::store::Result;
use crate::store::backend::{Access, Attempt, Op};
use crate::store::statements::Statements;
use protocol::CardId;
use std::collections::BTreeMap;

/// See [`crate::store::Store::audit`].
pub struct Read;

fn blank(card: CardId) -> CardAudit {
    CardAudit {
        card,
        cached: None,
        ledger_balance: 0,
        ledger_pending: 0,
        unmatured_remaining: 0,
        lots_remaining: 0,
        open_reserved: 0,
        open_leased: 0,
    }
}

/// The audit of the card `stored` names (blank when first seen), or `None` when the
/// card does not read: it is set aside as unreadable, once, with the reason.
fn audit_of<'a>(
    stored: String,
    cards: &'a mut BTreeMap<CardId, CardAudit>,
    unreadable: &mut BTreeMap<String, String>,
) -> Option<&'a mut CardAudit> {
    if unreadable.contains_key(&stored) {
        return None;
    }
    match CardId::parse(&stored) {
        Ok(card) => Some(cards.entry(card.clone()).or_insert_with(|| blank(card))),
        Err(e) => {
            unreadable.insert(stored, e.to_string());
            None
        }
    }
}

impl Op for Read {
    type Out = Audit;
    const ACCESS: Access = Access::Snapshot;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Audit>> {
        // Every card, and every card that has ledger rows, lots or store memberships
        // (a row without its card is a difference too).
        let mut cards: BTreeMap<CardId, CardAudit> = BTreeMap::new();
        let mut unreadable: BTreeMap<String, String> = BTreeMap::new();
        for (stored, state) in c.all_cards().await? {
            match state {
                Ok(state) => {
                    let mut a = blank(state.card.clone());
                    a.cached = Some(state);
                    cards.insert(a.card.clone(), a);
                }
                Err(e) => {
                    unreadable.insert(stored, e.to_string());
                }
            }
        }
        for (stored, balance, pending) in c.ledger_sums().await? {
            if let Some(a) = audit_of(stored, &mut cards, &mut unreadable) {
                a.ledger_balance = balance;
                a.ledger_pending = pending;
            }
        }
        for (stored, remaining, unmatured) in c.lot_sums().await? {
            if let Some(a) = audit_of(stored, &mut cards, &mut unreadable) {
                a.lots_remaining = remaining;
                a.unmatured_remaining = unmatured;
            }
        }
        for (stored, reserved, leased) in c.hold_sums().await? {
            if let Some(a) = audit_of(stored, &mut cards, &mut unreadable) {
                a.open_reserved = reserved;
                a.open_leased = leased;
            }
        }
        // Only a card's presence matters here: its sums stay blank.
        for stored in c.members_without_card().await? {
            audit_of(stored, &mut cards, &mut unreadable);
        }
        let terminals = c.terminal_audits().await?;
        done(Ok(Audit {
            cards: cards.into_values().collect(),
            unreadable: unreadable.into_iter().collect(),
            terminals,
        }))
    }
}
