//! The lease cycle of escrow mode, after a push that emptied the queue and at most
//! every `[offline] lease_sync_secs`:
//!
//! 1. leases past their expiry with no open hold on them are closed: a `LeaseClosed`
//!    entry (what its committed sales spent) is written with the close, in one
//!    transaction, and pushed, so HQ returns the rest to the card;
//! 2. `POST /v1/sync/leases` reports the leases still held and asks for leases of the
//!    cards seen here within `lease_recent_days` (each up to the per-card daily cap,
//!    all together up to the per-till daily cap), with an epoch kept in the journal
//!    and raised before every request (HQ refuses an older one), and the journal's
//!    last seq (HQ refuses until it holds all of it: every draw is counted first);
//! 3. HQ's answer (every open lease of this till) is stored.
//!
//! Clock rule: a lease's `expires_at` is HQ's, read with this till's clock. A till
//! whose clock runs behind may draw on a lease a little after HQ's expiry; HQ reclaims
//! a lease only `lease_abandon_hours` (default 7 days) after it expires, so a skew
//! below that cannot make a draw land on reclaimed points.

use crate::journal::leases::OpenLease;
use crate::journal::{JournalError, Tx};
use protocol::journal::{EntryBody, LeaseClosedEntry};
use protocol::wire::{LeaseSyncRequest, LeaseWant, PROTOCOL_VERSION};
use protocol::{CardId, Points, Seq};
use time::OffsetDateTime;

/// Most cards asked for in one lease sync (the per-till cap bounds the points anyway).
pub const MAX_WANTED_CARDS: u32 = 2_000;

/// The `LeaseClosed` entries of the leases that end at `now`: expired (the till may
/// not draw on them any more) and with no open hold still counting on them. Pure.
pub fn leases_to_close(open: &[OpenLease], now_unix: i64) -> Vec<LeaseClosedEntry> {
    open.iter()
        .filter(|l| l.lease.expires_at <= now_unix && l.open_holds == 0)
        .map(|l| LeaseClosedEntry {
            lease_id: l.lease_id,
            card: l.card.clone(),
            spent: l.lease.spent(),
        })
        .collect()
}

/// Closes the leases that end at `now`, each with its entry, in the caller's
/// transaction; returns how many.
pub fn close_expired(tx: &Tx<'_>, now: OffsetDateTime) -> Result<usize, JournalError> {
    let closing = leases_to_close(&tx.open_leases()?, now.unix_timestamp());
    for entry in &closing {
        let id = entry.lease_id;
        let written = tx.append(EntryBody::LeaseClosed(entry.clone()), now, 0)?;
        tx.close_lease(id, written.seq)?;
    }
    Ok(closing.len())
}

/// What a till asks for in a lease sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseLimits {
    /// Most points in one card's lease.
    pub per_card: Points,
    /// Most points in all of this till's open leases.
    pub per_till: Points,
}

/// The lease sync request, read and numbered in the caller's (write) transaction:
/// cards seen since `seen_since_unix` without an open lease here are wanted.
pub fn request(
    tx: &Tx<'_>,
    limits: LeaseLimits,
    seen_since_unix: i64,
) -> Result<LeaseSyncRequest, JournalError> {
    let open = tx.open_leases()?;
    let recent = tx.recent_cards(seen_since_unix, MAX_WANTED_CARDS)?;
    Ok(build_request(
        tx.next_lease_epoch()?,
        tx.last_seq()?,
        &open,
        &recent,
        limits,
    ))
}

/// The request from what the journal holds. Pure.
pub fn build_request(
    epoch: u64,
    through_seq: Seq,
    open: &[OpenLease],
    recent: &[CardId],
    limits: LeaseLimits,
) -> LeaseSyncRequest {
    let want = recent
        .iter()
        .filter(|card| !open.iter().any(|l| &l.card == *card))
        .map(|card| LeaseWant {
            card: card.clone(),
            max_points: limits.per_card,
        })
        .collect();
    LeaseSyncRequest {
        protocol: PROTOCOL_VERSION,
        epoch,
        through_seq,
        held: open.iter().map(|l| l.lease_id).collect(),
        max_total: limits.per_till,
        want,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::escrow::TillLease;
    use uuid::Uuid;

    fn card(n: &str) -> CardId {
        CardId::parse(n).unwrap()
    }

    fn lease(id: u128, card_no: &str, expires_at: i64, open_holds: u32) -> OpenLease {
        OpenLease {
            lease_id: Uuid::from_u128(id),
            card: card(card_no),
            lease: TillLease {
                points: Points(100),
                drawn_committed: Points(40),
                drawn_held: Points(if open_holds > 0 { 10 } else { 0 }),
                expires_at,
            },
            open_holds,
        }
    }

    #[test]
    fn only_expired_leases_without_open_holds_close_reporting_what_was_spent() {
        let open = [
            lease(1, "4006381333931", 1_000, 0),
            lease(2, "12345678", 1_000, 1),
            lease(3, "96385074", 2_000, 0),
        ];
        let closing = leases_to_close(&open, 1_000);
        assert_eq!(closing.len(), 1);
        assert_eq!(closing[0].lease_id, Uuid::from_u128(1));
        assert_eq!(closing[0].spent, Points(40));
        assert!(leases_to_close(&open, 999).is_empty());
    }

    #[test]
    fn the_request_lists_held_leases_and_wants_only_cards_without_one() {
        let open = [lease(1, "4006381333931", 1_000, 0)];
        let recent = [card("4006381333931"), card("12345678")];
        let limits = LeaseLimits {
            per_card: Points(1_000),
            per_till: Points(20_000),
        };
        let req = build_request(7, Seq(42), &open, &recent, limits);
        assert_eq!((req.epoch, req.through_seq), (7, Seq(42)));
        assert_eq!(req.held, vec![Uuid::from_u128(1)]);
        assert_eq!(req.max_total, Points(20_000));
        assert_eq!(
            req.want,
            vec![LeaseWant {
                card: card("12345678"),
                max_points: Points(1_000)
            }]
        );
    }
}
