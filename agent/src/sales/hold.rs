//! Opening a sale: price it and reserve the points it redeems.

use super::{Answer, SaleError, SaleRequest, to_json};
use crate::cards::{self, CardView};
use crate::journal::{JournalError, sync_state};
use crate::policy::{self, Mode, OfflineUsage};
use config::agent::OfflineSection;
use protocol::evaluate::{CardState, EvalError, PricedLine, price_sale};
use protocol::rules::ProgramRules;
use protocol::wire::CardBalance;
use protocol::{CardId, Money, Points, Seq};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::sync::Arc;
use time::{Date, OffsetDateTime};

/// A balance HQ returned just now, with the terminal's `acked_through` read with it.
#[derive(Debug, Clone)]
pub struct LiveBalance {
    /// HQ's figures.
    pub balance: CardBalance,
    /// This terminal's entries HQ's figures include.
    pub acked_through: Seq,
}

/// Everything a hold needs besides the request.
#[derive(Debug, Clone)]
pub struct HoldContext {
    /// Now.
    pub now: OffsetDateTime,
    /// The store's calendar day (promotions).
    pub day: Date,
    /// Unix time the store day started (daily caps).
    pub day_start_unix: i64,
    /// The rules in force.
    pub rules: Arc<ProgramRules>,
    /// How redemptions are decided.
    pub mode: Mode,
    /// HQ's live balance of the card, when `mode` is `Online`.
    pub live: Option<LiveBalance>,
    /// Offline caps.
    pub limits: OfflineSection,
    /// Seconds before an uncommitted hold is released.
    pub hold_timeout_secs: u64,
}

/// The answer to `POST /v1/sales`.
#[derive(Debug, Clone, Serialize)]
pub struct HoldResponse {
    /// Receipt number.
    pub receipt_id: String,
    /// Always `held`.
    pub state: &'static str,
    /// The card, if any.
    pub card: Option<CardId>,
    /// Points reserved.
    pub redeem_points: Points,
    /// Receipt total.
    pub total_minor: Money,
    /// Paid with points.
    pub discount_minor: Money,
    /// Left to pay in money.
    pub to_pay_minor: Money,
    /// Points the sale accrues when committed.
    pub accrual_points: Points,
    /// True when HQ could not be asked and the offline caps applied.
    pub offline: bool,
    /// The hold is released if not committed by then.
    #[serde(with = "time::serde::rfc3339")]
    pub hold_expires_at: OffsetDateTime,
    /// The priced lines.
    pub lines: Vec<PricedLine>,
}

/// Opens a sale for `req` (idempotent on `receipt_id`).
pub fn hold(
    conn: &Connection,
    req: &SaleRequest,
    hash: &str,
    ctx: &HoldContext,
) -> Result<Answer, SaleError> {
    if let Some(answer) = replay(conn, req, hash)? {
        return Ok(answer);
    }
    if let Some(live) = &ctx.live {
        cards::apply_hq_balance(conn, &live.balance, live.acked_through)?;
        sync_state::record_contact(conn, ctx.now)?;
    }
    let view = match &req.card {
        Some(card) => Some(cards::view(conn, card, ctx.now)?),
        None => None,
    };
    if let Some(v) = &view
        && v.blocked
    {
        return Err(SaleError::refused(
            "card_blocked",
            format!("card {} is blocked by HQ", v.card.masked()),
        ));
    }
    let redeem = req.redeem_points;
    if redeem.is_negative() {
        return Err(SaleError::bad(
            "bad_request",
            "redeem_points must not be negative",
        ));
    }
    let offline = redeem > Points::ZERO && ctx.mode == Mode::Offline;
    if redeem > Points::ZERO {
        let Some(v) = &view else {
            return Err(SaleError::bad(
                "card_required",
                "redeem_points needs a card",
            ));
        };
        check_balance(v, redeem)?;
        if offline {
            let usage = offline_usage(conn, &v.card, ctx)?;
            policy::check_offline(redeem, &usage, &ctx.limits)
                .map_err(|r| SaleError::refused(r.code, r.message))?;
        }
    }
    let tier = view.as_ref().and_then(|v| v.tier.clone());
    let priced =
        price_sale(&ctx.rules, &req.lines, redeem, tier.as_deref(), ctx.day).map_err(eval_error)?;
    let matures_at = (ctx.rules.pending_days > 0 && req.card.is_some())
        .then(|| ctx.now + time::Duration::days(i64::from(ctx.rules.pending_days)));
    let response = HoldResponse {
        receipt_id: req.receipt_id.to_string(),
        state: "held",
        card: req.card.clone(),
        redeem_points: redeem,
        total_minor: priced.total_minor,
        discount_minor: priced.discount_minor,
        to_pay_minor: priced.paid_minor,
        accrual_points: if req.card.is_some() {
            priced.accrued_points
        } else {
            Points::ZERO
        },
        offline,
        hold_expires_at: ctx.now
            + time::Duration::seconds(i64::try_from(ctx.hold_timeout_secs).unwrap_or(i64::MAX / 2)),
        lines: priced.lines.clone(),
    };
    let json = to_json(&response)?;
    conn.prepare_cached(
        "INSERT INTO sales (receipt_id, request_hash, state, card, redeem_points, offline, held_at_unix,
                            rules_version, matures_at_unix, priced, hold_response)
         VALUES (?1, ?2, 'held', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .map_err(JournalError::from)?
    .execute(params![
        req.receipt_id.as_str(),
        hash,
        req.card.as_ref().map(CardId::as_str),
        redeem.get(),
        offline,
        ctx.now.unix_timestamp(),
        ctx.rules.version,
        matures_at.map(OffsetDateTime::unix_timestamp),
        to_json(&priced)?,
        json,
    ])
    .map_err(JournalError::from)?;
    Ok(Answer {
        json,
        replayed: false,
    })
}

/// The stored answer when the receipt was opened before with the same body.
fn replay(conn: &Connection, req: &SaleRequest, hash: &str) -> Result<Option<Answer>, SaleError> {
    let existing: Option<(String, String)> = conn
        .prepare_cached("SELECT request_hash, hold_response FROM sales WHERE receipt_id = ?1")
        .map_err(JournalError::from)?
        .query_row([req.receipt_id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(JournalError::from)?;
    match existing {
        None => Ok(None),
        Some((stored, json)) if stored == hash => Ok(Some(Answer {
            json,
            replayed: true,
        })),
        Some(_) => Err(SaleError::conflict(
            "idempotency_conflict",
            format!(
                "receipt {} was already opened with a different body",
                req.receipt_id
            ),
        )),
    }
}

fn check_balance(view: &CardView, redeem: Points) -> Result<(), SaleError> {
    if redeem > view.available {
        return Err(SaleError::refused(
            "insufficient_points",
            format!(
                "card {} has {} points available, {} requested",
                view.card.masked(),
                view.available,
                redeem
            ),
        ));
    }
    Ok(())
}

fn eval_error(e: EvalError) -> SaleError {
    match e {
        EvalError::RedeemAboveRuleCap { max } => SaleError::refused(
            "redeem_above_rule_cap",
            format!("the program allows at most {max} points on this receipt"),
        ),
        other => SaleError::bad("bad_request", other.to_string()),
    }
}

/// What this terminal redeemed offline, as the caps count it (committed entries and
/// open holds alike).
pub fn offline_usage(
    conn: &Connection,
    card: &CardId,
    ctx: &HoldContext,
) -> Result<OfflineUsage, JournalError> {
    let last_contact = sync_state::last_contact(conn)?;
    let since_contact = last_contact.unwrap_or(i64::MIN);
    let sum = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Result<i64, JournalError> {
        Ok(conn.prepare_cached(sql)?.query_row(args, |r| r.get(0))?)
    };
    let card_today = sum(
        "SELECT COALESCE(SUM(redeemed), 0) FROM entries WHERE offline = 1 AND redeemed > 0 AND card = ?1 AND at_unix >= ?2",
        &[&card.as_str(), &ctx.day_start_unix],
    )? + sum(
        "SELECT COALESCE(SUM(redeem_points), 0) FROM sales WHERE state = 'held' AND offline = 1 AND card = ?1",
        &[&card.as_str()],
    )?;
    let terminal_today = sum(
        "SELECT COALESCE(SUM(redeemed), 0) FROM entries WHERE offline = 1 AND redeemed > 0 AND at_unix >= ?1",
        &[&ctx.day_start_unix],
    )? + sum(
        "SELECT COALESCE(SUM(redeem_points), 0) FROM sales WHERE state = 'held' AND offline = 1",
        &[],
    )?;
    let consecutive = sum(
        "SELECT COUNT(*) FROM entries WHERE offline = 1 AND redeemed > 0 AND card = ?1 AND at_unix > ?2",
        &[&card.as_str(), &since_contact],
    )? + sum(
        "SELECT COUNT(*) FROM sales WHERE state = 'held' AND offline = 1 AND card = ?1",
        &[&card.as_str()],
    )?;
    Ok(OfflineUsage {
        card_today: Points(card_today),
        terminal_today: Points(terminal_today),
        consecutive_for_card: u32::try_from(consecutive).unwrap_or(u32::MAX),
        secs_since_contact: last_contact.map(|t| ctx.now.unix_timestamp() - t),
    })
}

/// The card state rule evaluation needs, from a view.
pub fn card_state(view: &CardView) -> CardState {
    CardState {
        available: view.available,
        tier: view.tier.clone(),
    }
}
