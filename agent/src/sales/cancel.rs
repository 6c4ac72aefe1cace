//! Cancelling a held sale: its points are released. When HQ reserved points for it, a
//! `Release` entry is written in the same transaction, so HQ learns it durably through
//! the push (and releases the reservation even if this till never asks again).

use super::{Answer, CancelReason, SaleError, SaleState};
use crate::journal::sales::{HoldToRelease, SaleRecord};
use crate::journal::{JournalError, Tx};
use protocol::journal::{EntryBody, ReleaseEntry, ReleaseReason};
use protocol::{CardId, Points, ReceiptId};
use serde::Serialize;
use time::OffsetDateTime;

/// The answer to a cancel.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CancelResponse {
    /// Receipt number.
    pub receipt_id: String,
    /// Always `cancelled`.
    pub state: SaleState,
    /// Points the hold released.
    pub released_points: Points,
}

/// What a cancel does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelPlan {
    /// Release the hold now.
    Release,
    /// Cancelled before (by the till or the hold timeout): answer the same again.
    AlreadyCancelled,
}

/// Cancels a held sale, releasing its points (idempotent).
pub fn cancel(tx: &Tx<'_>, receipt: &ReceiptId, now: OffsetDateTime) -> Result<Answer, SaleError> {
    let sale = tx
        .sale(receipt)?
        .ok_or_else(|| SaleError::UnknownReceipt(receipt.clone()))?;
    let plan = decide(receipt, &sale)?;
    if plan == CancelPlan::Release {
        let hold = HoldToRelease {
            receipt_id: receipt.clone(),
            card: sale.card.clone(),
            reserved_points: sale.reserved_points,
            rules_version: sale.rules_version,
        };
        release(tx, &hold, CancelReason::Till, now)?;
    }
    let answer = Answer::fresh(&CancelResponse {
        receipt_id: receipt.to_string(),
        state: SaleState::Cancelled(CancelReason::Till),
        released_points: sale.redeem_points,
    })?;
    Ok(Answer {
        replayed: plan == CancelPlan::AlreadyCancelled,
        ..answer
    })
}

/// Cancels the hold of `receipt` for `reason` and, when HQ reserved points for it,
/// writes the `Release` entry that tells HQ (the cancel and the hold timeout alike).
pub fn release(
    tx: &Tx<'_>,
    hold: &HoldToRelease,
    reason: CancelReason,
    now: OffsetDateTime,
) -> Result<(), JournalError> {
    tx.cancel_hold(&hold.receipt_id, reason)?;
    if let Some(entry) = release_entry(
        &hold.receipt_id,
        hold.card.as_ref(),
        hold.reserved_points,
        reason,
    ) {
        tx.append(EntryBody::Release(entry), now, hold.rules_version)?;
    }
    Ok(())
}

/// Writes the `Release` entry of a reservation HQ granted for a hold the till then
/// refused (no sale was opened): HQ releases it when the entry arrives.
pub fn release_unheld(
    tx: &Tx<'_>,
    receipt: &ReceiptId,
    card: &CardId,
    reserved: Points,
    now: OffsetDateTime,
    rules_version: u64,
) -> Result<(), JournalError> {
    if let Some(entry) = release_entry(receipt, Some(card), reserved, CancelReason::Till) {
        // The version the refused hold was decided under, like any release's.
        tx.append(EntryBody::Release(entry), now, rules_version)?;
    }
    Ok(())
}

/// The `Release` entry of a hold that ends uncommitted: one when HQ reserved points
/// for it, none otherwise (nothing at HQ to release).
pub fn release_entry(
    receipt: &ReceiptId,
    card: Option<&CardId>,
    reserved: Points,
    reason: CancelReason,
) -> Option<ReleaseEntry> {
    let card = card.filter(|_| reserved > Points::ZERO)?;
    Some(ReleaseEntry {
        receipt_id: receipt.clone(),
        card: card.clone(),
        points: reserved,
        reason: match reason {
            CancelReason::Till => ReleaseReason::Cancelled,
            CancelReason::HoldTimeout => ReleaseReason::Expired,
        },
    })
}

/// Decides a cancel of `sale`: a committed sale can only be returned.
pub fn decide(receipt: &ReceiptId, sale: &SaleRecord) -> Result<CancelPlan, SaleError> {
    match sale.state {
        SaleState::Held => Ok(CancelPlan::Release),
        SaleState::Cancelled(_) => Ok(CancelPlan::AlreadyCancelled),
        SaleState::Committed | SaleState::Returned => {
            Err(SaleError::SaleCommitted(receipt.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sales::fixtures::{CARD, sale_record};

    #[test]
    fn only_a_held_sale_is_released_and_a_cancelled_one_answers_again() {
        let r = ReceiptId::parse("R-1").unwrap();
        let plan = |state| decide(&r, &sale_record(state, true));
        assert_eq!(plan(SaleState::Held).unwrap(), CancelPlan::Release);
        for reason in [CancelReason::Till, CancelReason::HoldTimeout] {
            assert_eq!(
                plan(SaleState::Cancelled(reason)).unwrap(),
                CancelPlan::AlreadyCancelled
            );
        }
        for state in [SaleState::Committed, SaleState::Returned] {
            assert!(matches!(plan(state), Err(SaleError::SaleCommitted(_))));
        }
    }

    #[test]
    fn a_hold_hq_reserved_for_is_released_at_hq_with_its_reason() {
        let r = ReceiptId::parse("R-1").unwrap();
        let card = CardId::parse(CARD).unwrap();
        let entry = release_entry(&r, Some(&card), Points(30), CancelReason::HoldTimeout)
            .expect("reserved points are released");
        assert_eq!(
            (entry.points, entry.reason, &entry.card),
            (Points(30), ReleaseReason::Expired, &card)
        );
        assert_eq!(
            release_entry(&r, Some(&card), Points(5), CancelReason::Till).map(|e| e.reason),
            Some(ReleaseReason::Cancelled)
        );
        // Nothing reserved at HQ (lease draw, offline, standalone, no card): no entry.
        assert_eq!(
            release_entry(&r, Some(&card), Points::ZERO, CancelReason::Till),
            None
        );
        assert_eq!(release_entry(&r, None, Points(5), CancelReason::Till), None);
    }
}
