//! Ending a hold: commit (the sale's journal entry), cancel, or release on timeout.

use super::{Answer, SaleError, from_json, to_json};
use crate::cards::{self, CardView};
use crate::journal::{JournalError, entries};
use protocol::evaluate::PricedSale;
use protocol::journal::{EntryBody, SaleEntry, WelcomeEntry};
use protocol::{CardId, Money, Points, ReceiptId};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;

/// The answer to a commit.
#[derive(Debug, Clone, Serialize)]
pub struct CommitResponse {
    /// Receipt number.
    pub receipt_id: String,
    /// Always `committed`.
    pub state: &'static str,
    /// Journal sequence number of the sale entry.
    pub entry_seq: u64,
    /// Journal entry id.
    pub entry_id: String,
    /// Points redeemed.
    pub redeemed_points: Points,
    /// Points accrued.
    pub accrued_points: Points,
    /// Paid with points.
    pub discount_minor: Money,
    /// Paid in money.
    pub paid_minor: Money,
    /// The card right after the sale (for the receipt printout).
    pub card: Option<CardView>,
}

/// The answer to a cancel.
#[derive(Debug, Clone, Serialize)]
pub struct CancelResponse {
    /// Receipt number.
    pub receipt_id: String,
    /// Always `cancelled`.
    pub state: &'static str,
    /// Points the hold released.
    pub released_points: Points,
}

struct SaleRow {
    state: String,
    cancel_reason: Option<String>,
    card: Option<String>,
    redeem_points: i64,
    offline: bool,
    rules_version: u64,
    matures_at_unix: Option<i64>,
    priced: String,
    commit_response: Option<String>,
}

fn load(conn: &Connection, receipt: &ReceiptId) -> Result<SaleRow, SaleError> {
    conn.prepare_cached(
        "SELECT state, cancel_reason, card, redeem_points, offline, rules_version, matures_at_unix, priced, commit_response
         FROM sales WHERE receipt_id = ?1",
    )
    .map_err(JournalError::from)?
    .query_row([receipt.as_str()], |r| {
        Ok(SaleRow {
            state: r.get(0)?,
            cancel_reason: r.get(1)?,
            card: r.get(2)?,
            redeem_points: r.get(3)?,
            offline: r.get(4)?,
            rules_version: r.get(5)?,
            matures_at_unix: r.get(6)?,
            priced: r.get(7)?,
            commit_response: r.get(8)?,
        })
    })
    .optional()
    .map_err(JournalError::from)?
    .ok_or_else(|| SaleError::not_found("unknown_receipt", format!("no sale was opened for receipt {receipt}")))
}

fn parse_card(card: Option<&str>) -> Result<Option<CardId>, SaleError> {
    card.map(|c| CardId::parse(c).map_err(|e| SaleError::Journal(JournalError::data(e))))
        .transpose()
}

/// Commits a held sale: writes its journal entry (idempotent).
///
/// `welcome_bonus` is set in a standalone store (no HQ to grant it): a card's first
/// committed sale is preceded by a welcome entry of that many points.
pub fn commit(
    conn: &Connection,
    receipt: &ReceiptId,
    now: OffsetDateTime,
    welcome_bonus: Option<Points>,
) -> Result<Answer, SaleError> {
    let row = load(conn, receipt)?;
    match row.state.as_str() {
        "committed" | "returned" => {
            let json = row.commit_response.ok_or_else(|| {
                SaleError::Journal(JournalError::data("committed sale without its answer"))
            })?;
            return Ok(Answer {
                json,
                replayed: true,
            });
        }
        "cancelled" => {
            let why = match row.cancel_reason.as_deref() {
                Some("hold_timeout") => "its hold expired",
                _ => "it was cancelled",
            };
            return Err(SaleError::conflict(
                "sale_cancelled",
                format!("receipt {receipt} cannot be committed: {why}; open a new sale"),
            ));
        }
        _ => {}
    }
    let card = parse_card(row.card.as_deref())?;
    let sale: PricedSale = from_json(&row.priced)?;
    let matures_at = row
        .matures_at_unix
        .map(OffsetDateTime::from_unix_timestamp)
        .transpose()
        .map_err(|e| SaleError::Journal(JournalError::data(e)))?;
    if let (Some(points), Some(card)) = (welcome_bonus, &card)
        && points > Points::ZERO
        && !card_has_entries(conn, card)?
    {
        entries::append(
            conn,
            EntryBody::Welcome(WelcomeEntry {
                card: card.clone(),
                points,
            }),
            now,
            row.rules_version,
        )?;
    }
    let entry = entries::append(
        conn,
        EntryBody::Sale(SaleEntry {
            receipt_id: receipt.clone(),
            card: card.clone(),
            sale: sale.clone(),
            matures_at,
            offline: row.offline,
        }),
        now,
        row.rules_version,
    )?;
    // The hold is captured before the card is read back, so it no longer counts as held.
    conn.prepare_cached(
        "UPDATE sales SET state = 'committed', entry_seq = ?2 WHERE receipt_id = ?1",
    )
    .map_err(JournalError::from)?
    .execute(params![receipt.as_str(), entry.seq.get()])
    .map_err(JournalError::from)?;
    let view = card
        .as_ref()
        .map(|c| cards::view(conn, c, now))
        .transpose()?;
    let response = CommitResponse {
        receipt_id: receipt.to_string(),
        state: "committed",
        entry_seq: entry.seq.get(),
        entry_id: entry.id.to_string(),
        redeemed_points: Points(row.redeem_points),
        accrued_points: if card.is_some() {
            sale.accrued_points
        } else {
            Points::ZERO
        },
        discount_minor: sale.discount_minor,
        paid_minor: sale.paid_minor,
        card: view,
    };
    let json = to_json(&response)?;
    conn.prepare_cached("UPDATE sales SET commit_response = ?2 WHERE receipt_id = ?1")
        .map_err(JournalError::from)?
        .execute(params![receipt.as_str(), json])
        .map_err(JournalError::from)?;
    Ok(Answer {
        json,
        replayed: false,
    })
}

fn card_has_entries(conn: &Connection, card: &CardId) -> Result<bool, SaleError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM card_running WHERE card = ?1 LIMIT 1")
        .map_err(JournalError::from)?
        .exists([card.as_str()])
        .map_err(JournalError::from)?)
}

/// Cancels a held sale, releasing its points (idempotent).
pub fn cancel(conn: &Connection, receipt: &ReceiptId) -> Result<Answer, SaleError> {
    let row = load(conn, receipt)?;
    let response = |released| CancelResponse {
        receipt_id: receipt.to_string(),
        state: "cancelled",
        released_points: Points(released),
    };
    match row.state.as_str() {
        "held" => {
            conn.prepare_cached("UPDATE sales SET state = 'cancelled', cancel_reason = 'till' WHERE receipt_id = ?1")
                .map_err(JournalError::from)?
                .execute([receipt.as_str()])
                .map_err(JournalError::from)?;
            Ok(Answer {
                json: to_json(&response(row.redeem_points))?,
                replayed: false,
            })
        }
        "cancelled" => Ok(Answer {
            json: to_json(&response(row.redeem_points))?,
            replayed: true,
        }),
        _ => Err(SaleError::conflict(
            "sale_committed",
            format!("receipt {receipt} is committed; use a return instead"),
        )),
    }
}

/// Releases holds opened before `cutoff_unix`; returns how many.
pub fn release_expired(conn: &Connection, cutoff_unix: i64) -> Result<usize, JournalError> {
    Ok(conn
        .prepare_cached(
            "UPDATE sales SET state = 'cancelled', cancel_reason = 'hold_timeout' WHERE state = 'held' AND held_at_unix < ?1",
        )?
        .execute([cutoff_unix])?)
}
