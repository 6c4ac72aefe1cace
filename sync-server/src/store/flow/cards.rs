//! HQ's own word on a card: `card block` / `unblock`, and `card show`.

use super::done;
use crate::ledger::CardRecord;
use crate::store::CardReport;
use crate::store::Result;
use crate::store::backend::{Access, Attempt, Op};
use crate::store::statements::{Blocking, Missing, Statements};
use protocol::CardId;
use time::OffsetDateTime;

/// See [`crate::store::Store::set_blocked`]. The card is locked first (as every
/// writer of a card does), creating a blank row for a card HQ never held; the block
/// event and the card row both go to the change feed, so agents see both the event
/// and the card's new state.
pub struct SetBlocked {
    /// The card.
    pub card: CardId,
    /// Block (true) or unblock.
    pub blocked: bool,
    /// Why, kept while blocked.
    pub reason: Option<String>,
    /// The server's time.
    pub now: OffsetDateTime,
}

impl Op for SetBlocked {
    /// False when the card already was in that state.
    type Out = bool;
    const ACCESS: Access = Access::Write;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<bool>> {
        let locked = c
            .lock_cards(&[&self.card], Missing::Create(self.now))
            .await?;
        let existed = !locked.created.contains(self.card.as_str());
        let mut card = match locked.cards.get(&self.card) {
            Some(card) if existed && card.blocked == self.blocked => return done(Ok(false)),
            Some(card) => card.clone(),
            None => CardRecord::new(self.card.clone()),
        };
        card.blocked = self.blocked;
        c.store_block(&Blocking {
            card: &card,
            reason: self.reason.as_deref(),
            at: self.now,
        })
        .await?;
        done(Ok(true))
    }
}

/// See [`crate::store::Store::card_report`].
pub struct Report {
    /// The card.
    pub card: CardId,
    /// How many of its latest ledger rows.
    pub recent: u32,
}

impl Op for Report {
    type Out = Option<CardReport>;
    const ACCESS: Access = Access::Snapshot;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Option<CardReport>>> {
        let Some(detail) = c.card_detail(&self.card).await? else {
            return done(Ok(None));
        };
        let recent = c.recent_ledger(&self.card, self.recent).await?;
        done(Ok(Some(CardReport {
            state: detail.record,
            block_reason: detail.block_reason,
            updated_at: detail.updated_at,
            recent,
        })))
    }
}
