//! HQ's side of "points never spent twice", as pure functions over rows: granting and
//! replacing reservations, granting leases, settling both from pushed entries
//! (capture, release, lease charge, lease close), and releasing what tills abandoned.
//!
//! The card row caches `reserved` (Σ points of open reservations) and `leased`
//! (Σ points − charged of open leases); every function here changes a reservation or
//! lease row and the card's cached figure together, so `verify` can compare them.
//! The decisions themselves (how much may be reserved or leased) are the protocol's
//! ([`protocol::escrow`]), shared with the tills and the simulation.

use super::CardRecord;
use protocol::escrow::{CardFigures, LeaseAsk, ReserveRefusal, decide_reservation, lease_size};
use protocol::journal::{EntryBody, JournalEntry, SaleEntry};
use protocol::money::BasisPoints;
use protocol::{CardId, Points, ReceiptId, Seq};
use std::collections::HashMap;
use std::fmt;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// At most this share of a card's committable points (balance − pending) is in
/// leases at once, over all tills: the rest stays spendable online anywhere.
pub const LEASE_SHARE: BasisPoints = BasisPoints(5_000);

/// Where a reservation stands. The text form is what the database stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationStatus {
    /// Holding points.
    Open,
    /// Settled by the receipt's sale entry.
    Captured,
    /// Settled by a release entry or by HQ's abandoned-reservation job.
    Released,
}

impl ReservationStatus {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Captured => "captured",
            Self::Released => "released",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Captured, Self::Released]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Where a lease stands. The text form is what the database stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseStatus {
    /// The till may draw on it (until its `expires_at`).
    Open,
    /// Closed by the till's `LeaseClosed` entry.
    Closed,
    /// Taken back by HQ's job, long after it expired, the till never having closed it.
    Reclaimed,
}

impl LeaseStatus {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Reclaimed => "reclaimed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Closed, Self::Reclaimed]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A reservation row: points of a card held for one receipt of one terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRow {
    /// The backend's key of the terminal.
    pub terminal: i64,
    /// The receipt (the key, with the terminal).
    pub receipt_id: ReceiptId,
    /// The card.
    pub card: CardId,
    /// Points held (0 for a settled marker HQ wrote for a receipt it never reserved).
    pub points: Points,
    /// Where it stands.
    pub status: ReservationStatus,
    /// The till's hold deadline.
    pub expires_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// A lease row: points of a card moved into one terminal's escrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// Its id.
    pub id: Uuid,
    /// The backend's key of the terminal.
    pub terminal: i64,
    /// The card.
    pub card: CardId,
    /// Points leased.
    pub points: Points,
    /// Points the terminal's pushed sales drew on it.
    pub charged: Points,
    /// Where it stands.
    pub status: LeaseStatus,
    /// From then on the till may not draw on it (HQ's clock).
    pub expires_at: OffsetDateTime,
    /// When HQ granted it.
    pub granted_at: OffsetDateTime,
}

impl LeaseRow {
    /// What the lease still holds out of the card's spendable points.
    pub fn outstanding(&self) -> Points {
        Points((self.points.get() - self.charged.get()).max(0))
    }
}

/// Why HQ refused a reservation, a lease sync or a token use. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscrowRefusal {
    /// The card may spend fewer points than asked.
    #[error("{spendable} points spendable, {asked} asked")]
    InsufficientPoints {
        /// What the card may still spend (besides this receipt's own hold).
        spendable: Points,
        /// What the till asked.
        asked: Points,
    },
    /// HQ blocked the card.
    #[error("the card is blocked")]
    CardBlocked,
    /// The receipt's reservation was already captured or released.
    #[error("the reservation of this receipt was already {0}")]
    ReservationSettled(&'static str),
    /// A lease sync with an epoch HQ already answered (or an older one).
    #[error("lease sync epoch {epoch} is not newer than {last}, the last one answered")]
    StaleEpoch {
        /// The request's epoch.
        epoch: u64,
        /// The last epoch HQ answered for the terminal.
        last: u64,
    },
    /// A lease sync before HQ holds every entry the till has journaled.
    #[error(
        "HQ holds entries through seq {acked_through}, the till through {through_seq}: push first"
    )]
    PushFirst {
        /// What HQ holds.
        acked_through: Seq,
        /// What the till said it holds.
        through_seq: Seq,
    },
    /// The app token was used at another terminal or in another scan.
    #[error("this app code was already used at another till or in another scan")]
    TokenUsed,
}

impl From<ReserveRefusal> for EscrowRefusal {
    fn from(r: ReserveRefusal) -> Self {
        match r {
            ReserveRefusal::Blocked => Self::CardBlocked,
            ReserveRefusal::Insufficient { spendable, asked } => {
                Self::InsufficientPoints { spendable, asked }
            }
            // The API refuses a non-positive ask before it reaches the store; were
            // one to get here, nothing may be held for it.
            ReserveRefusal::NotPositive => Self::InsufficientPoints {
                spendable: Points::ZERO,
                asked: Points::ZERO,
            },
        }
    }
}

/// A card's figures for the escrow rules (a card HQ never held: all zero).
pub fn figures(card: Option<&CardRecord>) -> CardFigures {
    card.map_or_else(CardFigures::default, |c| CardFigures {
        balance: c.balance,
        pending: c.pending,
        reserved: c.reserved,
        leased: c.leased,
    })
}

fn add(points: &mut Points, delta: i64) {
    // Cached figures never go below zero: a settlement of more than is held (a
    // hand-edited row) leaves zero, and `verify` reports the difference.
    *points = Points(points.get().saturating_add(delta).max(0));
}

/// A reservation ask, as the API received it.
#[derive(Debug, Clone)]
pub struct ReserveAsk {
    /// The receipt.
    pub receipt_id: ReceiptId,
    /// The card.
    pub card: CardId,
    /// Points to hold.
    pub points: Points,
    /// The till's hold deadline.
    pub expires_at: OffsetDateTime,
}

/// Decides a reservation ask against the receipt's existing reservation (if any) and
/// the locked cards (the asked card, and the card of an open reservation of the same
/// receipt for another card, which is released). On success the cards' `reserved`
/// figures are updated in `cards` and the row to store (the asking `terminal`'s) is
/// returned.
pub fn reserve(
    terminal: i64,
    ask: &ReserveAsk,
    existing: Option<&ReservationRow>,
    cards: &mut HashMap<CardId, CardRecord>,
    now: OffsetDateTime,
) -> Result<ReservationRow, EscrowRefusal> {
    let already = match existing {
        Some(r) if r.status != ReservationStatus::Open => {
            return Err(EscrowRefusal::ReservationSettled(r.status.as_str()));
        }
        Some(r) if r.card == ask.card => r.points,
        _ => Points::ZERO,
    };
    let card = cards.get(&ask.card);
    let blocked = card.is_some_and(|c| c.blocked);
    let delta = decide_reservation(&figures(card), blocked, already, ask.points)?;
    if let Some(old) = existing.filter(|r| r.card != ask.card)
        && let Some(c) = cards.get_mut(&old.card)
    {
        add(&mut c.reserved, -old.points.get());
    }
    if let Some(c) = cards.get_mut(&ask.card) {
        add(&mut c.reserved, delta.get());
    }
    Ok(ReservationRow {
        terminal,
        receipt_id: ask.receipt_id.clone(),
        card: ask.card.clone(),
        points: ask.points,
        status: ReservationStatus::Open,
        expires_at: ask.expires_at,
        updated_at: now,
    })
}

/// A lease sync's asks, as the API received them.
#[derive(Debug, Clone)]
pub struct LeaseAsks {
    /// The asking terminal's key.
    pub terminal: i64,
    /// Most points all of the terminal's open leases may hold together.
    pub max_total: Points,
    /// Cards wanted, with the most points each lease may hold, in the till's order.
    pub want: Vec<(CardId, Points)>,
    /// How long a new lease lives.
    pub duration: Duration,
}

/// Grants new leases: one per wanted card the terminal holds no open lease of, sized
/// by [`lease_size`] (the till's ask, the room under its total, the card's spendable
/// points and the lease share). Updates the cards' `leased` figures in `cards` and
/// returns the new rows. A card HQ never held gets none (nothing to lease).
pub fn grant_leases(
    asks: &LeaseAsks,
    open: &[LeaseRow],
    cards: &mut HashMap<CardId, CardRecord>,
    now: OffsetDateTime,
) -> Vec<LeaseRow> {
    let held: i128 = open.iter().map(|l| i128::from(l.points.get())).sum();
    let mut room = (i128::from(asks.max_total.get()) - held).max(0);
    let mut granted: Vec<LeaseRow> = Vec::new();
    for (card_id, max_points) in &asks.want {
        let has_lease = open.iter().chain(&granted).any(|l| &l.card == card_id);
        let Some(card) = cards.get_mut(card_id).filter(|_| !has_lease) else {
            continue;
        };
        let ask = LeaseAsk {
            max_points: *max_points,
            terminal_room: Points(i64::try_from(room).unwrap_or(i64::MAX)),
        };
        let size = lease_size(&figures(Some(card)), card.blocked, ask, LEASE_SHARE);
        if size.get() <= 0 {
            continue;
        }
        add(&mut card.leased, size.get());
        room -= i128::from(size.get());
        granted.push(LeaseRow {
            id: Uuid::new_v4(),
            terminal: asks.terminal,
            card: card_id.clone(),
            points: size,
            charged: Points::ZERO,
            status: LeaseStatus::Open,
            expires_at: now.checked_add(asks.duration).unwrap_or(now),
            granted_at: now,
        });
    }
    granted
}

/// The reservation keys and lease ids a batch of one terminal settles: what the push
/// loads before [`settle`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettlementKeys {
    /// Receipts whose reservation row [`settle`] needs whatever its status: those of
    /// sales with a card that redeemed points and of release entries (with no row,
    /// each leaves a settled marker; with a settled one, nothing).
    pub receipts: Vec<ReceiptId>,
    /// Receipts of the other sales with a card (none redeemed points, none is in
    /// `receipts`): only an open reservation of theirs changes anything (a sale
    /// captures it; a settled row or none is left as it is, and no marker is
    /// written), so their open rows are all [`settle`] needs. A store may find them
    /// among the terminal's open reservations instead of looking each receipt up.
    pub open_receipts: Vec<ReceiptId>,
    /// Leases drawn on or closed.
    pub leases: Vec<Uuid>,
}

/// Whether a sale with a card leaves a captured marker for a receipt HQ holds no
/// reservation row for: it redeemed points (a late reservation ask for its receipt
/// must then be refused).
fn marks_receipt(sale: &SaleEntry) -> bool {
    sale.sale.redeemed_points.get() > 0
}

/// What [`settle`] needs loaded for `entries`.
pub fn settlement_keys(entries: &[JournalEntry]) -> SettlementKeys {
    let mut keys = SettlementKeys::default();
    for e in entries {
        match &e.body {
            EntryBody::Sale(s) if s.card.is_some() => {
                let receipts = if marks_receipt(s) {
                    &mut keys.receipts
                } else {
                    &mut keys.open_receipts
                };
                receipts.push(s.receipt_id.clone());
                if let Some(draw) = &s.lease {
                    keys.leases.push(draw.lease_id);
                }
            }
            EntryBody::Release(r) => keys.receipts.push(r.receipt_id.clone()),
            EntryBody::LeaseClosed(l) => keys.leases.push(l.lease_id),
            _ => {}
        }
    }
    let by_text = |a: &ReceiptId, b: &ReceiptId| a.as_str().cmp(b.as_str());
    keys.receipts.sort_unstable_by(by_text);
    keys.receipts.dedup();
    keys.open_receipts.sort_unstable_by(by_text);
    keys.open_receipts.dedup();
    // A receipt `settle` needs whatever its row's status is loaded once, as such.
    let receipts = &keys.receipts;
    keys.open_receipts
        .retain(|r| receipts.binary_search_by(|k| by_text(k, r)).is_err());
    keys.leases.sort_unstable();
    keys.leases.dedup();
    keys
}

/// A lease settlement that does not add up: the entry is applied anyway (it happened
/// at the till) and HQ records an anomaly of kind `lease_mismatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseMismatch {
    /// The entry.
    pub entry_id: Uuid,
    /// The lease.
    pub lease_id: Uuid,
    /// What does not add up.
    pub detail: String,
}

impl fmt::Display for LeaseMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "entry {} on lease {}: {}",
            self.entry_id, self.lease_id, self.detail
        )
    }
}

/// What settling a batch writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settlement {
    /// Reservation rows to store (changed, or settled markers for receipts HQ never
    /// reserved, so that a late reservation ask for them is refused).
    pub reservations: Vec<ReservationRow>,
    /// Lease rows that changed.
    pub leases: Vec<LeaseRow>,
    /// Lease settlements that did not add up.
    pub mismatches: Vec<LeaseMismatch>,
}

/// Settles the reservations and leases `entries` (new entries of `terminal`, in seq
/// order) speak of, updating the `reserved`/`leased` figures of `cards` (the locked
/// cards; a card HQ never held can hold neither).
///
/// - a sale with a card captures its receipt's open reservation; a sale that redeemed
///   points for a receipt HQ never reserved leaves a captured marker;
/// - a release releases the open reservation (a marker when there is none);
/// - a sale's lease draw charges the lease;
/// - a lease close returns what the lease still holds to the card.
///
/// Settled reservations are never settled again, so the order in which a sale, its
/// release and its reservation ask arrive never holds points twice.
pub fn settle(
    terminal: i64,
    entries: &[JournalEntry],
    reservations: Vec<ReservationRow>,
    leases: Vec<LeaseRow>,
    cards: &mut HashMap<CardId, CardRecord>,
    now: OffsetDateTime,
) -> Settlement {
    let mut res: HashMap<ReceiptId, ReservationRow> = reservations
        .into_iter()
        .map(|r| (r.receipt_id.clone(), r))
        .collect();
    let mut leases: HashMap<Uuid, LeaseRow> = leases.into_iter().map(|l| (l.id, l)).collect();
    let mut changed_res: Vec<ReceiptId> = Vec::new();
    let mut changed_leases: Vec<Uuid> = Vec::new();
    let mut mismatches = Vec::new();
    for e in entries {
        match &e.body {
            EntryBody::Sale(s) => {
                let Some(card) = &s.card else { continue };
                let redeemed = marks_receipt(s);
                let target = Target {
                    terminal,
                    receipt_id: &s.receipt_id,
                    card,
                    at: e.at,
                };
                if end_reservation(
                    &mut res,
                    cards,
                    &target,
                    ReservationStatus::Captured,
                    redeemed,
                    now,
                ) {
                    changed_res.push(s.receipt_id.clone());
                }
                if let Some(draw) = &s.lease {
                    match charge(
                        &mut leases,
                        cards,
                        terminal,
                        card,
                        draw.lease_id,
                        draw.points,
                    ) {
                        Ok(()) => changed_leases.push(draw.lease_id),
                        Err(detail) => mismatches.push(LeaseMismatch {
                            entry_id: e.id,
                            lease_id: draw.lease_id,
                            detail,
                        }),
                    }
                }
            }
            EntryBody::Release(r) => {
                let target = Target {
                    terminal,
                    receipt_id: &r.receipt_id,
                    card: &r.card,
                    at: e.at,
                };
                if end_reservation(
                    &mut res,
                    cards,
                    &target,
                    ReservationStatus::Released,
                    true,
                    now,
                ) {
                    changed_res.push(r.receipt_id.clone());
                }
            }
            EntryBody::LeaseClosed(l) => {
                let (changed, mismatch) =
                    close(&mut leases, cards, terminal, &l.card, l.lease_id, l.spent);
                if changed {
                    changed_leases.push(l.lease_id);
                }
                if let Some(detail) = mismatch {
                    mismatches.push(LeaseMismatch {
                        entry_id: e.id,
                        lease_id: l.lease_id,
                        detail,
                    });
                }
            }
            EntryBody::Return(_) | EntryBody::Welcome(_) => {}
        }
    }
    changed_res.dedup();
    changed_leases.sort_unstable();
    changed_leases.dedup();
    let mut out_res = Vec::new();
    for r in &changed_res {
        if let Some(row) = res.remove(r) {
            out_res.push(row);
        }
    }
    Settlement {
        reservations: out_res,
        leases: changed_leases
            .iter()
            .filter_map(|id| leases.remove(id))
            .collect(),
        mismatches,
    }
}

struct Target<'a> {
    terminal: i64,
    receipt_id: &'a ReceiptId,
    card: &'a CardId,
    at: OffsetDateTime,
}

/// Ends the receipt's reservation as `status`; when HQ holds none, leaves a settled
/// marker if `mark`. True when a row changed.
fn end_reservation(
    res: &mut HashMap<ReceiptId, ReservationRow>,
    cards: &mut HashMap<CardId, CardRecord>,
    t: &Target<'_>,
    status: ReservationStatus,
    mark: bool,
    now: OffsetDateTime,
) -> bool {
    match res.get_mut(t.receipt_id) {
        Some(r) if r.status == ReservationStatus::Open => {
            if let Some(c) = cards.get_mut(&r.card) {
                add(&mut c.reserved, -r.points.get());
            }
            r.status = status;
            r.updated_at = now;
            true
        }
        Some(_) => false,
        None if mark => {
            res.insert(
                t.receipt_id.clone(),
                ReservationRow {
                    terminal: t.terminal,
                    receipt_id: t.receipt_id.clone(),
                    card: t.card.clone(),
                    points: Points::ZERO,
                    status,
                    expires_at: t.at,
                    updated_at: now,
                },
            );
            true
        }
        None => false,
    }
}

/// Charges `points` of a sale of `card` to the terminal's lease.
fn charge(
    leases: &mut HashMap<Uuid, LeaseRow>,
    cards: &mut HashMap<CardId, CardRecord>,
    terminal: i64,
    card: &CardId,
    id: Uuid,
    points: Points,
) -> Result<(), String> {
    let Some(lease) = leases.get_mut(&id) else {
        return Err(format!("drew {points} points on a lease HQ never granted"));
    };
    if lease.terminal != terminal || &lease.card != card {
        return Err(format!(
            "drew {points} points on a lease of another terminal or card"
        ));
    }
    if lease.status != LeaseStatus::Open {
        return Err(format!(
            "drew {points} points on a lease already {}",
            lease.status.as_str()
        ));
    }
    let outstanding = lease.outstanding();
    let take = points.min(outstanding).max(Points::ZERO);
    lease.charged = Points(lease.charged.get().saturating_add(take.get()));
    if let Some(c) = cards.get_mut(card) {
        add(&mut c.leased, -take.get());
    }
    if points > outstanding {
        return Err(format!(
            "drew {points} points on a lease holding {outstanding} more"
        ));
    }
    Ok(())
}

/// Closes the terminal's lease: what it still holds returns to the card. Answers
/// whether the row changed and what did not add up.
fn close(
    leases: &mut HashMap<Uuid, LeaseRow>,
    cards: &mut HashMap<CardId, CardRecord>,
    terminal: i64,
    card: &CardId,
    id: Uuid,
    spent: Points,
) -> (bool, Option<String>) {
    let Some(lease) = leases.get_mut(&id) else {
        return (false, Some("closed a lease HQ never granted".to_owned()));
    };
    if lease.terminal != terminal || &lease.card != card {
        return (
            false,
            Some("closed a lease of another terminal or card".to_owned()),
        );
    }
    let changed = lease.status != LeaseStatus::Closed;
    if lease.status == LeaseStatus::Open
        && let Some(c) = cards.get_mut(card)
    {
        add(&mut c.leased, -lease.outstanding().get());
    }
    let was = lease.status;
    lease.status = LeaseStatus::Closed;
    let mismatch = if was == LeaseStatus::Closed {
        Some("closed a lease already closed".to_owned())
    } else if spent != lease.charged {
        Some(format!(
            "the till spent {spent} points of it, its pushed sales drew {}",
            lease.charged
        ))
    } else {
        None
    };
    (changed, mismatch)
}

/// Releases reservations the tills abandoned (open past their deadline plus the
/// grace HQ allows), giving their points back to the locked `cards`.
pub fn release_abandoned(
    reservations: &mut [ReservationRow],
    cards: &mut HashMap<CardId, CardRecord>,
    now: OffsetDateTime,
) {
    for r in reservations
        .iter_mut()
        .filter(|r| r.status == ReservationStatus::Open)
    {
        if let Some(c) = cards.get_mut(&r.card) {
            add(&mut c.reserved, -r.points.get());
        }
        r.status = ReservationStatus::Released;
        r.updated_at = now;
    }
}

/// Reclaims leases the tills abandoned: what they still hold returns to the locked
/// `cards`. A till that comes back later and pushes a sale drawn on one is flagged
/// (its lease is no longer open), the residual risk of a till offline that long.
pub fn reclaim_abandoned(leases: &mut [LeaseRow], cards: &mut HashMap<CardId, CardRecord>) {
    for l in leases.iter_mut().filter(|l| l.status == LeaseStatus::Open) {
        if let Some(c) = cards.get_mut(&l.card) {
            add(&mut c.leased, -l.outstanding().get());
        }
        l.status = LeaseStatus::Reclaimed;
    }
}

/// An app token's recorded use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUse {
    /// The token's id ([`protocol::token::AppToken::id`]: a hash, not the token).
    pub token_id: String,
    /// The backend's key of the terminal that used it.
    pub terminal: i64,
    /// The scan at that terminal.
    pub scan_id: Uuid,
    /// The card it stands for.
    pub card: CardId,
    /// The token's expiry (the use is forgotten a day later).
    pub expires_at: OffsetDateTime,
    /// When HQ recorded it.
    pub used_at: OffsetDateTime,
}

impl TokenUse {
    /// The same use retried (same terminal and scan), not a replay.
    pub fn is_retry_of(&self, recorded: &Self) -> bool {
        self.token_id == recorded.token_id
            && self.terminal == recorded.terminal
            && self.scan_id == recorded.scan_id
    }
}

#[cfg(test)]
mod simulation;
#[cfg(test)]
pub(crate) mod tests;
