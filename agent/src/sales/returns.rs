//! Returns: full, or chosen lines and quantities, of a committed sale.

use super::idempotency::{self, IdempotencyKey};
use super::{Answer, ReturnRequest, SaleError, SaleState};
use crate::cards::CardView;
use crate::journal::returns::NewReturn;
use crate::journal::sales::SaleRecord;
use crate::journal::{JournalError, Tx};
use protocol::evaluate::{EvalError, ReturnedLine, price_return};
use protocol::journal::{EntryBody, ReturnEntry};
use protocol::{Money, Points};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// The answer to `POST /v1/returns`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReturnResponse {
    /// Return number.
    pub return_id: String,
    /// The sale's receipt number.
    pub receipt_id: String,
    /// Journal sequence number of the return entry.
    pub entry_seq: u64,
    /// Journal entry id.
    pub entry_id: String,
    /// Money to give back.
    pub refund_minor: Money,
    /// Accrued points taken back.
    pub reversed_accrual_points: Points,
    /// Redeemed points given back.
    pub restored_points: Points,
    /// Per line.
    pub lines: Vec<ReturnedLine>,
    /// `returned` when nothing is left to return, else `committed`.
    pub sale_state: SaleState,
    /// The card right after the return.
    pub card: Option<CardView>,
}

/// What a return does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnPlan {
    /// The return's journal entry.
    pub entry: ReturnEntry,
    /// Units returned per line of the sale, this return included.
    pub returned_qty: Vec<u32>,
    /// The sale's state after the return.
    pub sale_state: SaleState,
}

/// Records a return (idempotent on `return_id`).
pub fn record_return(
    tx: &Tx<'_>,
    req: &ReturnRequest,
    hash: &str,
    now: OffsetDateTime,
) -> Result<Answer, SaleError> {
    let stored = tx.return_request(&req.return_id)?;
    let key = || IdempotencyKey::Return(req.return_id.clone());
    if let Some(answer) = idempotency::replay(stored, hash, key)? {
        return Ok(answer);
    }
    let sale = tx
        .sale(&req.receipt_id)?
        .ok_or_else(|| SaleError::UnknownReceipt(req.receipt_id.clone()))?;
    let sale_entry = match sale.entry_seq {
        Some(seq) => Some(
            tx.entry_id(seq)?
                .ok_or_else(|| JournalError::data(format!("the sale's entry {seq} is missing")))?,
        ),
        None => None,
    };
    let plan = decide(req, &sale, sale_entry)?;
    let returned = plan.entry.returned.clone();
    let entry = tx.append(EntryBody::Return(plan.entry), now, sale.rules_version)?;
    tx.record_returned(&req.receipt_id, &plan.returned_qty, plan.sale_state)?;
    let view = sale
        .card
        .as_ref()
        .map(|card| CardView::read(tx, card, now))
        .transpose()?;
    let response = ReturnResponse {
        return_id: req.return_id.to_string(),
        receipt_id: req.receipt_id.to_string(),
        entry_seq: entry.seq.get(),
        entry_id: entry.id.to_string(),
        refund_minor: returned.refund_minor,
        reversed_accrual_points: if sale.card.is_some() {
            returned.reversed_accrual_points
        } else {
            Points::ZERO
        },
        restored_points: returned.restored_points,
        lines: returned.lines,
        sale_state: plan.sale_state,
        card: view,
    };
    let answer = Answer::fresh(&response)?;
    tx.insert_return(&NewReturn {
        return_id: &req.return_id,
        receipt_id: &req.receipt_id,
        request_hash: hash,
        entry_seq: entry.seq,
        answer: &answer.json,
    })?;
    Ok(answer)
}

/// Decides a return of `req` from `sale`, whose journal entry is `sale_entry` once
/// committed: only committed sales can be returned, and never more than was sold.
pub fn decide(
    req: &ReturnRequest,
    sale: &SaleRecord,
    sale_entry: Option<Uuid>,
) -> Result<ReturnPlan, SaleError> {
    let sale_entry = match sale_entry {
        Some(id) if sale.state.is_committed() => id,
        _ => {
            return Err(SaleError::SaleNotCommitted {
                receipt: req.receipt_id.clone(),
                state: sale.state,
            });
        }
    };
    let mut returned_qty = sale.returned_qty.clone();
    returned_qty.resize(sale.priced.lines.len(), 0);
    let returned = price_return(&sale.priced, &returned_qty, &req.lines).map_err(|e| match e {
        EvalError::NothingToReturn => SaleError::AlreadyReturned(e),
        EvalError::QtyExceeds { .. } => SaleError::ReturnExceedsSale(e),
        other => SaleError::Invalid(other),
    })?;
    for line in &returned.lines {
        if let Some(qty) = returned_qty.get_mut(line.line) {
            *qty += line.qty;
        }
    }
    let all_back = returned_qty
        .iter()
        .zip(&sale.priced.lines)
        .all(|(r, l)| *r >= l.qty);
    Ok(ReturnPlan {
        entry: ReturnEntry {
            return_id: req.return_id.clone(),
            receipt_id: req.receipt_id.clone(),
            sale_entry,
            card: sale.card.clone(),
            returned,
        },
        returned_qty,
        sale_state: if all_back {
            SaleState::Returned
        } else {
            SaleState::Committed
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sales::CancelReason;
    use crate::sales::fixtures::sale_record;
    use protocol::evaluate::ReturnLineRequest;
    use protocol::{ReceiptId, ReturnId};

    fn request(lines: &[(usize, u32)]) -> ReturnRequest {
        ReturnRequest {
            return_id: ReturnId::parse("X-1").unwrap(),
            receipt_id: ReceiptId::parse("R-1").unwrap(),
            lines: lines
                .iter()
                .map(|&(line, qty)| ReturnLineRequest { line, qty })
                .collect(),
        }
    }

    fn entry() -> Option<Uuid> {
        Some(Uuid::from_u128(7))
    }

    #[test]
    fn a_partial_return_keeps_the_sale_committed_and_counts_the_units() {
        let sale = sale_record(SaleState::Committed, true);
        let plan = decide(&request(&[(0, 1)]), &sale, entry()).unwrap();
        assert_eq!(plan.sale_state, SaleState::Committed);
        assert_eq!(plan.returned_qty, vec![1, 0]);
        assert_eq!(plan.entry.sale_entry, Uuid::from_u128(7));
        assert_eq!(plan.entry.card, sale.card);
    }

    #[test]
    fn returning_everything_left_makes_the_sale_returned() {
        let mut sale = sale_record(SaleState::Committed, true);
        sale.returned_qty = vec![1];
        let plan = decide(&request(&[]), &sale, entry()).unwrap();
        assert_eq!(plan.returned_qty, vec![2, 1]);
        assert_eq!(plan.sale_state, SaleState::Returned);
        let e = decide(
            &request(&[]),
            &sale_record(SaleState::Returned, true),
            entry(),
        );
        assert!(
            e.is_ok(),
            "a returned sale with units left to return: {e:?}"
        );
    }

    #[test]
    fn nothing_left_or_too_many_units_are_refused() {
        let mut sale = sale_record(SaleState::Returned, true);
        sale.returned_qty = vec![2, 1];
        assert!(matches!(
            decide(&request(&[]), &sale, entry()),
            Err(SaleError::AlreadyReturned(_))
        ));
        assert!(matches!(
            decide(
                &request(&[(1, 2)]),
                &sale_record(SaleState::Committed, true),
                entry()
            ),
            Err(SaleError::ReturnExceedsSale(_))
        ));
        assert!(matches!(
            decide(
                &request(&[(5, 1)]),
                &sale_record(SaleState::Committed, true),
                entry()
            ),
            Err(SaleError::Invalid(_))
        ));
    }

    #[test]
    fn only_committed_sales_can_be_returned() {
        for state in [SaleState::Held, SaleState::Cancelled(CancelReason::Till)] {
            let e = decide(&request(&[]), &sale_record(state, true), None).unwrap_err();
            assert!(matches!(e, SaleError::SaleNotCommitted { .. }));
        }
        let e = decide(&request(&[]), &sale_record(SaleState::Held, true), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "receipt R-1 is held; only committed sales can be returned"
        );
    }
}
