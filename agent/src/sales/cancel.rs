//! Cancelling a held sale: its points are released, nothing is journaled.

use super::{Answer, CancelReason, SaleError, SaleState};
use crate::journal::Tx;
use crate::journal::sales::SaleRecord;
use protocol::{Points, ReceiptId};
use serde::Serialize;

/// The answer to a cancel.
#[derive(Debug, Clone, Serialize)]
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
pub fn cancel(tx: &Tx<'_>, receipt: &ReceiptId) -> Result<Answer, SaleError> {
    let sale = tx
        .sale(receipt)?
        .ok_or_else(|| SaleError::UnknownReceipt(receipt.clone()))?;
    let plan = decide(receipt, &sale)?;
    if plan == CancelPlan::Release {
        tx.cancel_hold(receipt, CancelReason::Till)?;
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
    use crate::sales::fixtures::sale_record;

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
}
