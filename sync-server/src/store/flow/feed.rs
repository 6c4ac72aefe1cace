//! What agents read: the change feed (`pull`) and live balances, each from one
//! snapshot, so that `acked_through` and the balances agree on which of the
//! terminal's entries HQ's figures include.
//!
//! What a feed position is belongs to the backend ([`FeedRows::Position`]: SQLite's
//! single writer makes a counter exact; PostgreSQL bounds the feed by its snapshot's
//! xmin); how a page is cut and the next cursor chosen is decided here.
//!
//! [`FeedRows::Position`]: crate::store::statements::FeedRows::Position

use super::escrow::{balance_for, own_holds};
use super::push::revoked;
use super::{done, rules};
use crate::keys::TokenHash;
use crate::store::Result;
use crate::store::TerminalIdentity;
use crate::store::backend::{Access, Attempt, Op};
use crate::store::encode::card_balance;
use crate::store::statements::{FeedPosition, FeedRows, Statements};
use protocol::wire::{LiveBalanceResponse, PROTOCOL_VERSION, PublicKeyInfo, PullResponse};
use protocol::{CardId, Seq};
use time::OffsetDateTime;

/// `acked_through` of the terminal, refused once it was revoked.
async fn acked_through<C: Statements>(c: &mut C, terminal: &TerminalIdentity) -> Result<Seq> {
    c.active_acked_through(terminal.key)
        .await?
        .ok_or_else(|| revoked(terminal))
}

/// See [`crate::store::Store::pull`].
pub struct Pull {
    /// The pulling terminal.
    pub terminal: TerminalIdentity,
    /// The cursor the agent got last time.
    pub cursor: Option<String>,
    /// The rules version the agent holds.
    pub rules_version: u64,
    /// Most balances in the answer.
    pub page_size: u32,
    /// The server's time (the balances' `as_of`).
    pub now: OffsetDateTime,
}

impl Op for Pull {
    type Out = PullResponse;
    const ACCESS: Access = Access::Snapshot;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<PullResponse>> {
        let cursor = <C as FeedRows>::Position::parse(self.cursor.as_deref())?;
        let page = i64::from(self.page_size.max(1));
        let head = c.feed_head(&cursor).await?;
        let acked = acked_through(c, &self.terminal).await?;
        // A cursor from the future (HQ restored from a backup, or another database)
        // cannot be trusted: the agent gets everything again.
        let cursor = if cursor.is_past(&head) {
            <C as FeedRows>::Position::start()
        } else {
            cursor
        };
        let current = rules::current(c).await?;
        let rules = (current.version > self.rules_version).then(|| (*current).clone());
        let keys = c
            .list_keys()
            .await?
            .into_iter()
            .map(|k| PublicKeyInfo {
                key_id: k.key_id,
                public_key: k.public_key,
                valid_until: k.valid_until,
            })
            .collect();
        let changed = c
            .changed_cards(&self.terminal.store, &cursor, &head, page)
            .await?;
        let more = i64::try_from(changed.len()).unwrap_or(i64::MAX) >= page;
        let next = match changed.last() {
            Some((last, _)) if more => last.clone(),
            _ => head,
        };
        // Each till is told the other terminals' holds; it counts its own itself.
        let held: Vec<&CardId> = changed
            .iter()
            .filter(|(_, card)| card.reserved.get() > 0 || card.leased.get() > 0)
            .map(|(_, card)| &card.card)
            .collect();
        let own = own_holds(c, self.terminal.key, &held).await?;
        let balances = changed
            .into_iter()
            .map(|(_, card)| {
                let mine = own.get(&card.card).copied().unwrap_or_default();
                card_balance(card, mine, self.now)
            })
            .collect();
        let blocked = c.block_changes(&cursor, &next).await?;
        done(Ok(PullResponse {
            protocol: PROTOCOL_VERSION,
            cursor: next.to_string(),
            more,
            acked_through: acked,
            rules,
            blocked,
            keys,
            balances,
        }))
    }
}

/// See [`crate::store::Store::live_balance`].
pub struct LiveBalance {
    /// The asking terminal's token hash: authenticated in the lookup's own snapshot.
    pub token: TokenHash,
    /// The card.
    pub card: CardId,
    /// The server's time (the balance's `as_of`).
    pub now: OffsetDateTime,
}

impl Op for LiveBalance {
    type Out = Option<LiveBalanceResponse>;
    const ACCESS: Access = Access::Snapshot;

    async fn run<C: Statements>(
        &mut self,
        c: &mut C,
    ) -> Result<Attempt<Option<LiveBalanceResponse>>> {
        // One snapshot, and on PostgreSQL one flight with the authentication in it: a
        // cashier waits for this answer, and each round trip queues behind the pushes
        // for a CPU on a busy HQ.
        let Some(reads) = c.live_reads(&self.token, &self.card).await? else {
            return done(Ok(None));
        };
        done(Ok(Some(LiveBalanceResponse {
            protocol: PROTOCOL_VERSION,
            acked_through: reads.acked_through,
            balance: balance_for(&self.card, reads.card, reads.own_holds, self.now),
        })))
    }
}
