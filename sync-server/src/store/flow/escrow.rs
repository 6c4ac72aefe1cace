//! Points never spent twice, at HQ: reservations, lease syncs, app-token uses and the
//! release of what tills abandoned, each one write transaction on every backend.
//!
//! Every operation that changes a card's `reserved` or `leased` locks the card's row
//! first ([`CardRows::lock_existing_cards`]: PostgreSQL `SELECT … FOR UPDATE` in
//! card-id order; SQLite's single writer) and reads the reservation or lease rows
//! after the lock, so two terminals (or two HQ instances) asking for the same points
//! queue up on the card and the second one decides from what the first committed.
//! The decisions are [`crate::ledger::escrow`]'s; a refusal is a
//! [`StoreError::Escrow`] and rolls back everything.
//!
//! [`CardRows::lock_existing_cards`]: crate::store::statements::CardRows::lock_existing_cards

use super::done;
use super::push::revoked;
use crate::keys::TokenHash;
use crate::ledger::CardRecord;
use crate::ledger::escrow::{
    EscrowRefusal, LeaseAsks, LeaseRow, ReservationStatus, ReserveAsk, TokenUse, grant_leases,
    reclaim_abandoned, release_abandoned, reserve,
};
use crate::store::Result;
use crate::store::backend::{Access, Attempt, Op};
use crate::store::encode::{Holds, card_balance, unseen_card_balance};
use crate::store::statements::{ReserveReads, Statements};
use crate::store::{StoreError, TerminalIdentity};
use protocol::wire::{CardBalance, Lease, PROTOCOL_VERSION, Reservation, ReserveResponse};
use protocol::{CardId, Points, Seq};
use std::collections::{BTreeSet, HashMap};
use time::{Duration, OffsetDateTime};

/// Rows per transaction of the abandoned-reservation and lease jobs.
pub const ABANDON_CHUNK: i64 = 500;

/// The terminal's own holds of each of `cards`.
pub async fn own_holds<C: Statements>(
    c: &mut C,
    terminal: i64,
    cards: &[&CardId],
) -> Result<HashMap<CardId, Holds>> {
    Ok(holds_by_card(c.own_holds(terminal, cards).await?))
}

/// `(card, reserved, leased)` rows by card.
pub fn holds_by_card(rows: Vec<(CardId, Points, Points)>) -> HashMap<CardId, Holds> {
    rows.into_iter()
        .map(|(card, reserved, leased)| (card, Holds { reserved, leased }))
        .collect()
}

/// A card's balance as its terminal is told it, from the card's stored state (`None`:
/// a card HQ never held) and the terminal's own holds (`(card, reserved, leased)`
/// rows): others' reservations and leases only.
pub fn balance_for(
    card: &CardId,
    state: Option<CardRecord>,
    own_holds: Vec<(CardId, Points, Points)>,
    now: OffsetDateTime,
) -> CardBalance {
    let Some(state) = state else {
        return unseen_card_balance(card, now);
    };
    let own = holds_by_card(own_holds);
    card_balance(state, own.get(card).copied().unwrap_or_default(), now)
}

/// See [`crate::store::Store::reserve`].
pub struct Reserve {
    /// The asking terminal's token hash: authenticated in the reservation's own
    /// transaction.
    token: TokenHash,
    /// The ask.
    ask: ReserveAsk,
    /// The server's time.
    now: OffsetDateTime,
    /// A card to lock besides the asked one and the one the receipt's reservation
    /// named before the locks: the card an earlier attempt found the reservation on
    /// after them.
    also: Option<CardId>,
}

impl Reserve {
    /// The reservation `ask` of the terminal the token hash belongs to.
    pub fn new(token: TokenHash, ask: ReserveAsk, now: OffsetDateTime) -> Self {
        Self {
            token,
            ask,
            now,
            also: None,
        }
    }
}

impl Op for Reserve {
    type Out = Option<ReserveResponse>;
    const ACCESS: Access = Access::Write;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Option<ReserveResponse>>> {
        // The receipt's reservation may name another card (the till changed the
        // card of an open sale): both cards are locked, in one sorted pass, and on
        // PostgreSQL in the same flight as the authentication.
        let reads = c
            .reserve_reads(
                &self.token,
                &self.ask.receipt_id,
                &self.ask.card,
                self.also.as_ref(),
            )
            .await?;
        let Some(ReserveReads {
            terminal,
            acked_through,
            mut cards,
            existing,
        }) = reads
        else {
            return done(Ok(None));
        };
        // Read again under the locks, the reservation may have moved to a card they
        // missed (another ask for the same receipt committed in between): its points
        // are released only under that card's lock too, so start over locking it. A
        // card asked for once and still without a row is one HQ never held.
        if let Some(moved) = existing.as_ref().filter(|r| {
            r.status == ReservationStatus::Open
                && r.card != self.ask.card
                && !cards.contains_key(&r.card)
                && self.also.as_ref() != Some(&r.card)
        }) {
            self.also = Some(moved.card.clone());
            return Ok(Attempt::StartOver);
        }
        let before = cards.clone();
        let row = reserve(terminal, &self.ask, existing.as_ref(), &mut cards, self.now)?;
        let changed: Vec<&CardRecord> = cards
            .values()
            .filter(|card| before.get(&card.card) != Some(*card))
            .collect();
        let own_holds = c.finish_reservation(&changed, &row, self.now).await?;
        let state = cards.remove(&self.ask.card);
        done(Ok(Some(ReserveResponse {
            protocol: PROTOCOL_VERSION,
            balance: balance_for(&self.ask.card, state, own_holds, self.now),
            reservation: Reservation {
                receipt_id: row.receipt_id,
                card: row.card,
                points: row.points,
                expires_at: row.expires_at,
            },
            acked_through,
        })))
    }
}

/// See [`crate::store::Store::lease_sync`].
pub struct LeaseSync {
    /// The asking terminal.
    pub terminal: TerminalIdentity,
    /// The request's epoch.
    pub epoch: u64,
    /// The till's last journal seq.
    pub through_seq: Seq,
    /// What it asks for.
    pub asks: LeaseAsks,
    /// The server's time.
    pub now: OffsetDateTime,
}

impl Op for LeaseSync {
    type Out = Vec<Lease>;
    const ACCESS: Access = Access::Write;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Vec<Lease>>> {
        let key = self.terminal.key;
        // The terminal's row lock serializes its lease syncs (and orders them after
        // its pushes), so two syncs cannot both pass the epoch check.
        let state = match c.lock_terminal(key).await? {
            Some(t) if t.admits(&self.terminal) => t,
            _ => return Err(revoked(&self.terminal)),
        };
        if self.epoch <= state.lease_epoch {
            return Err(EscrowRefusal::StaleEpoch {
                epoch: self.epoch,
                last: state.lease_epoch,
            }
            .into());
        }
        if state.acked_through < self.through_seq {
            return Err(EscrowRefusal::PushFirst {
                acked_through: state.acked_through,
                through_seq: self.through_seq,
            }
            .into());
        }
        let open = c.open_leases(key).await?;
        let wanted: Vec<&CardId> = self
            .asks
            .want
            .iter()
            .map(|(card, _)| card)
            .filter(|card| !open.iter().any(|l| &l.card == *card))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut cards = c.lock_existing_cards(&wanted).await?;
        let granted = grant_leases(&self.asks, &open, &mut cards, self.now);
        let changed: Vec<&CardRecord> = granted.iter().filter_map(|l| cards.get(&l.card)).collect();
        c.write_cards(&changed, self.now).await?;
        c.write_leases(&granted).await?;
        c.set_lease_epoch(key, self.epoch).await?;
        done(Ok(open.iter().chain(&granted).map(wire_lease).collect()))
    }
}

fn wire_lease(l: &LeaseRow) -> Lease {
    Lease {
        lease_id: l.id,
        card: l.card.clone(),
        points: l.points,
        expires_at: l.expires_at,
    }
}

/// See [`crate::store::Store::use_token`].
pub struct UseToken(pub TokenUse);

impl Op for UseToken {
    type Out = ();
    const ACCESS: Access = Access::Write;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<()>> {
        let recorded = c
            .claim_token(&self.0)
            .await?
            .ok_or_else(|| StoreError::corrupt("a token use just recorded is not there"))?;
        if self.0.is_retry_of(&recorded) {
            done(Ok(()))
        } else {
            Err(EscrowRefusal::TokenUsed.into())
        }
    }
}

/// What [`ReleaseAbandoned`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AbandonReport {
    /// Reservations released.
    pub reservations_released: u64,
    /// Leases reclaimed.
    pub leases_reclaimed: u64,
    /// Token uses forgotten.
    pub token_uses_forgotten: u64,
}

impl AbandonReport {
    /// Adds another chunk's counts.
    pub fn add(&mut self, other: Self) {
        self.reservations_released += other.reservations_released;
        self.leases_reclaimed += other.leases_reclaimed;
        self.token_uses_forgotten += other.token_uses_forgotten;
    }
}

impl std::fmt::Display for AbandonReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} abandoned reservations released, {} abandoned leases reclaimed, \
             {} app-code uses forgotten",
            self.reservations_released, self.leases_reclaimed, self.token_uses_forgotten
        )
    }
}

/// How long after its deadline HQ waits before taking back what a till abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbandonAfter {
    /// After a reservation's hold deadline.
    pub reservation: Duration,
    /// After a lease's expiry.
    pub lease: Duration,
}

impl Default for AbandonAfter {
    /// A week each (`[ledger] reservation_abandon_hours`, `lease_abandon_hours`).
    fn default() -> Self {
        Self {
            reservation: Duration::hours(168),
            lease: Duration::hours(168),
        }
    }
}

/// How long a lease lives unless `[ledger] lease_hours` says otherwise.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::hours(24);

/// One chunk of the abandoned-holds job: releases up to [`ABANDON_CHUNK`]
/// reservations and reclaims up to as many leases whose deadline passed long ago, and
/// forgets token uses a day after their token expired. Run again until it reports
/// nothing.
pub struct ReleaseAbandoned {
    /// The job's time.
    pub now: OffsetDateTime,
    /// The grace periods.
    pub after: AbandonAfter,
}

impl Op for ReleaseAbandoned {
    type Out = AbandonReport;
    const ACCESS: Access = Access::Write;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<AbandonReport>> {
        let res_cutoff = self
            .now
            .checked_sub(self.after.reservation)
            .unwrap_or(self.now);
        let lease_cutoff = self.now.checked_sub(self.after.lease).unwrap_or(self.now);
        let first_res = c
            .open_reservations_before(res_cutoff, ABANDON_CHUNK)
            .await?;
        let first_leases = c.open_leases_before(lease_cutoff, ABANDON_CHUNK).await?;
        let ids: Vec<&CardId> = first_res
            .iter()
            .map(|r| &r.card)
            .chain(first_leases.iter().map(|l| &l.card))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut cards = c.lock_existing_cards(&ids).await?;
        // Read again under the card locks (a push may have settled some meanwhile),
        // keeping only rows of cards this transaction holds.
        let mut res = c
            .open_reservations_before(res_cutoff, ABANDON_CHUNK)
            .await?;
        res.retain(|r| ids.contains(&&r.card));
        let mut leases = c.open_leases_before(lease_cutoff, ABANDON_CHUNK).await?;
        leases.retain(|l| ids.contains(&&l.card));
        release_abandoned(&mut res, &mut cards, self.now);
        reclaim_abandoned(&mut leases, &mut cards);
        let changed: Vec<&CardRecord> = cards.values().collect();
        c.write_cards(&changed, self.now).await?;
        c.write_reservations(&res).await?;
        c.write_leases(&leases).await?;
        let forget_before = self.now.checked_sub(Duration::DAY).unwrap_or(self.now);
        let forgotten = c.forget_token_uses(forget_before).await?;
        done(Ok(AbandonReport {
            reservations_released: res.len() as u64,
            leases_reclaimed: leases.len() as u64,
            token_uses_forgotten: forgotten,
        }))
    }
}
