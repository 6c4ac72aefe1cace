//! Returns: full, or chosen lines and quantities, of a committed sale.

use super::{Answer, ReturnRequest, SaleError, from_json, to_json};
use crate::cards::{self, CardView};
use crate::journal::{JournalError, entries};
use protocol::evaluate::{EvalError, PricedSale, ReturnedLine, price_return};
use protocol::journal::{EntryBody, ReturnEntry};
use protocol::{CardId, Money, Points};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// The answer to `POST /v1/returns`.
#[derive(Debug, Clone, Serialize)]
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
    pub sale_state: &'static str,
    /// The card right after the return.
    pub card: Option<CardView>,
}

/// The columns of the sale a return needs.
struct SoldRow {
    state: String,
    card: Option<String>,
    priced: String,
    returned_qty: String,
    entry_seq: Option<i64>,
    rules_version: u64,
}

/// Records a return (idempotent on `return_id`).
pub fn record_return(
    conn: &Connection,
    req: &ReturnRequest,
    hash: &str,
    now: OffsetDateTime,
) -> Result<Answer, SaleError> {
    let existing: Option<(String, String)> = conn
        .prepare_cached("SELECT request_hash, response FROM returns WHERE return_id = ?1")
        .map_err(JournalError::from)?
        .query_row([req.return_id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(JournalError::from)?;
    match existing {
        Some((stored, json)) if stored == hash => {
            return Ok(Answer {
                json,
                replayed: true,
            });
        }
        Some(_) => {
            return Err(SaleError::conflict(
                "idempotency_conflict",
                format!(
                    "return {} was already recorded with a different body",
                    req.return_id
                ),
            ));
        }
        None => {}
    }
    let sale = conn
        .prepare_cached(
            "SELECT state, card, priced, returned_qty, entry_seq, rules_version FROM sales WHERE receipt_id = ?1",
        )
        .map_err(JournalError::from)?
        .query_row([req.receipt_id.as_str()], |r| {
            Ok(SoldRow {
                state: r.get(0)?,
                card: r.get(1)?,
                priced: r.get(2)?,
                returned_qty: r.get(3)?,
                entry_seq: r.get(4)?,
                rules_version: r.get(5)?,
            })
        })
        .optional()
        .map_err(JournalError::from)?;
    let Some(SoldRow {
        state,
        card,
        priced,
        returned_qty,
        entry_seq,
        rules_version,
    }) = sale
    else {
        return Err(SaleError::not_found(
            "unknown_receipt",
            format!("no sale for receipt {}", req.receipt_id),
        ));
    };
    let entry_seq = match (state.as_str(), entry_seq) {
        ("committed" | "returned", Some(seq)) => seq,
        _ => {
            return Err(SaleError::conflict(
                "sale_not_committed",
                format!(
                    "receipt {} is {state}; only committed sales can be returned",
                    req.receipt_id
                ),
            ));
        }
    };
    let priced: PricedSale = from_json(&priced)?;
    let mut returned: Vec<u32> = from_json(&returned_qty)?;
    returned.resize(priced.lines.len(), 0);
    let outcome = price_return(&priced, &returned, &req.lines).map_err(return_error)?;
    let sale_entry: String = conn
        .prepare_cached("SELECT id FROM entries WHERE seq = ?1")
        .map_err(JournalError::from)?
        .query_row([entry_seq], |r| r.get(0))
        .map_err(JournalError::from)?;
    let sale_entry =
        Uuid::parse_str(&sale_entry).map_err(|e| SaleError::Journal(JournalError::data(e)))?;
    let card = card
        .as_deref()
        .map(CardId::parse)
        .transpose()
        .map_err(|e| SaleError::Journal(JournalError::data(e)))?;
    let entry = entries::append(
        conn,
        EntryBody::Return(ReturnEntry {
            return_id: req.return_id.clone(),
            receipt_id: req.receipt_id.clone(),
            sale_entry,
            card: card.clone(),
            returned: outcome.clone(),
        }),
        now,
        rules_version,
    )?;
    for line in &outcome.lines {
        returned[line.line] += line.qty;
    }
    let all_back = returned.iter().zip(&priced.lines).all(|(r, l)| *r >= l.qty);
    let sale_state = if all_back { "returned" } else { "committed" };
    conn.prepare_cached("UPDATE sales SET returned_qty = ?2, state = ?3 WHERE receipt_id = ?1")
        .map_err(JournalError::from)?
        .execute(params![
            req.receipt_id.as_str(),
            to_json(&returned)?,
            sale_state
        ])
        .map_err(JournalError::from)?;
    let view = card
        .as_ref()
        .map(|c| cards::view(conn, c, now))
        .transpose()?;
    let response = ReturnResponse {
        return_id: req.return_id.to_string(),
        receipt_id: req.receipt_id.to_string(),
        entry_seq: entry.seq.get(),
        entry_id: entry.id.to_string(),
        refund_minor: outcome.refund_minor,
        reversed_accrual_points: if card.is_some() {
            outcome.reversed_accrual_points
        } else {
            Points::ZERO
        },
        restored_points: outcome.restored_points,
        lines: outcome.lines,
        sale_state,
        card: view,
    };
    let json = to_json(&response)?;
    conn.prepare_cached("INSERT INTO returns (return_id, receipt_id, request_hash, entry_seq, response) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(JournalError::from)?
        .execute(params![req.return_id.as_str(), req.receipt_id.as_str(), hash, entry.seq.get(), json])
        .map_err(JournalError::from)?;
    Ok(Answer {
        json,
        replayed: false,
    })
}

fn return_error(e: EvalError) -> SaleError {
    match e {
        EvalError::NothingToReturn => SaleError::conflict("already_returned", e.to_string()),
        EvalError::QtyExceeds { .. } => SaleError::refused("return_exceeds_sale", e.to_string()),
        other => SaleError::bad("bad_request", other.to_string()),
    }
}
