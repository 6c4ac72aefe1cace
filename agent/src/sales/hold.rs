//! Opening a sale: price it and reserve the points it redeems.

use super::idempotency::{self, IdempotencyKey};
use super::{Answer, SaleContext, SaleError, SaleRequest, SaleState, read_card};
use crate::cards::CardView;
use crate::journal::Tx;
use crate::journal::leases::OpenLease;
use crate::journal::sales::NewHold;
use crate::policy::{self, OfflineUsage};
use crate::redemption::{Funding, SettleRefusal, Settled, settle};
use protocol::evaluate::{EvalError, PricedLine, PricedSale, price_sale};
use protocol::limits::Limits;
use protocol::rules::ProgramRules;
use protocol::{CardId, Money, Points};
use serde::Serialize;
use time::{Date, OffsetDateTime};

/// The answer to `POST /v1/sales`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HoldResponse {
    /// Receipt number.
    pub receipt_id: String,
    /// Always `held`.
    pub state: SaleState,
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
    /// True when HQ could not be asked and the offline rules applied.
    pub offline: bool,
    /// The hold is released if not committed by then.
    #[serde(with = "time::serde::rfc3339")]
    pub hold_expires_at: OffsetDateTime,
    /// The priced lines.
    pub lines: Vec<PricedLine>,
}

/// A hold as decided: the answer, and what is recorded with it.
#[derive(Debug, Clone)]
pub struct DecidedHold {
    /// The till's answer.
    pub response: HoldResponse,
    /// The priced receipt.
    pub priced: PricedSale,
    /// When the accrued points become spendable, if there is a pending period.
    pub matures_at: Option<OffsetDateTime>,
    /// What the redeemed points are drawn from.
    pub settled: Settled,
}

/// Prices `req` under `rules`, refusing what the rules or the figure limits forbid.
fn price(
    rules: &ProgramRules,
    req: &SaleRequest,
    tier: Option<&str>,
    day: Date,
    limits: &Limits,
) -> Result<PricedSale, SaleError> {
    let priced =
        price_sale(rules, &req.lines, req.redeem_points, tier, day).map_err(|e| match e {
            EvalError::RedeemAboveRuleCap { max } => SaleError::RedeemAboveRuleCap { max },
            other => SaleError::Invalid(other),
        })?;
    limits.check_sale(&priced).map_err(SaleError::Limit)?;
    Ok(priced)
}

/// What the till refuses on the face of a new request, whatever the card holds: a card
/// number the program does not issue (a typo), bad lines, points above the rules' cap,
/// figures above the limits. Checked in the hold's transaction once the receipt is
/// known to be new (a receipt opened before keeps its card whatever the rules say
/// now), and before HQ is asked to reserve points: a reservation for a receipt the
/// till then refuses is released at HQ, which settles the receipt, so the corrected
/// ask under the same receipt would be refused. The rules' cap does not depend on the
/// card's tier.
pub fn refused_on_its_face(
    req: &SaleRequest,
    rules: &ProgramRules,
    day: Date,
    limits: &Limits,
) -> Result<(), SaleError> {
    if let Some(card) = &req.card {
        rules
            .card_numbers
            .check(card)
            .map_err(SaleError::BadCardNumber)?;
    }
    if req.redeem_points > Points::ZERO {
        price(rules, req, None, day, limits)?;
    }
    Ok(())
}

/// Opens a sale for `req` (idempotent on `receipt_id`).
pub fn hold(
    tx: &Tx<'_>,
    req: &SaleRequest,
    hash: &str,
    ctx: &SaleContext,
) -> Result<Answer, SaleError> {
    let stored = tx.hold_request(&req.receipt_id)?;
    let key = || IdempotencyKey::Receipt(req.receipt_id.clone());
    if let Some(answer) = idempotency::replay(stored, hash, key)? {
        return Ok(answer);
    }
    refused_on_its_face(req, &ctx.rules, ctx.day, &ctx.figure_limits)?;
    if let Some(live) = &ctx.live {
        live.record(tx, ctx.now)?;
    }
    let capped = req.redeem_points > Points::ZERO && ctx.funding.capped();
    let (view, usage) = read_card(tx, req.card.as_ref(), capped, ctx)?;
    let lease = match &req.card {
        Some(card) if req.redeem_points > Points::ZERO => tx.open_lease_of(card)?,
        _ => None,
    };
    let decided = decide(req, view.as_ref(), usage.as_ref(), lease.as_ref(), ctx)?;
    let answer = Answer::fresh(&decided.response)?;
    tx.insert_hold(&NewHold {
        receipt_id: &req.receipt_id,
        request_hash: hash,
        card: req.card.as_ref(),
        redeem_points: req.redeem_points,
        offline: decided.response.offline,
        reserved_points: decided.settled.reserved,
        lease: decided.settled.lease,
        held_at: ctx.now,
        rules_version: ctx.rules.version,
        matures_at: decided.matures_at,
        priced: &decided.priced,
        answer: &answer.json,
    })?;
    Ok(answer)
}

/// True when a redemption of `redeem` points is decided by the offline rules.
fn redeems_offline(redeem: Points, funding: Funding) -> bool {
    redeem > Points::ZERO && matches!(funding, Funding::Offline(_))
}

/// Decides a hold: refusals in the order the till sees them (blocked card, bad
/// request, balance, offline rules, program rules), then the price. `view` is the
/// card's view when the request names a card; `usage` is what the offline caps count,
/// needed when the caps decide the redemption (without it, nothing is allowed);
/// `lease` is this till's open lease of the card, if any.
pub fn decide(
    req: &SaleRequest,
    view: Option<&CardView>,
    usage: Option<&OfflineUsage>,
    lease: Option<&OpenLease>,
    ctx: &SaleContext,
) -> Result<DecidedHold, SaleError> {
    if let Some(v) = view
        && v.blocked
    {
        return Err(SaleError::CardBlocked {
            card: v.card.masked().to_string(),
        });
    }
    let redeem = req.redeem_points;
    if redeem.is_negative() {
        return Err(SaleError::Invalid(EvalError::NegativeRedeem));
    }
    ctx.figure_limits
        .check_lines(&req.lines)
        .map_err(SaleError::Limit)?;
    let offline = redeems_offline(redeem, ctx.funding);
    let hold_expires_at = ctx.hold_expires_at();
    let mut settled = Settled::default();
    if redeem > Points::ZERO {
        let Some(v) = view else {
            return Err(SaleError::CardRequired);
        };
        if redeem > v.available {
            return Err(SaleError::InsufficientPoints {
                card: v.card.masked().to_string(),
                available: v.available,
                requested: redeem,
            });
        }
        if ctx.funding.capped() {
            policy::check_offline(redeem, &usage.copied().unwrap_or_default(), &ctx.limits)
                .map_err(SaleError::Offline)?;
        }
        settled =
            settle(ctx.funding, lease, redeem, hold_expires_at.unix_timestamp()).map_err(|r| {
                match r {
                    SettleRefusal::Offline(refusal) => SaleError::Offline(refusal),
                    SettleRefusal::LeaseTaken => SaleError::InsufficientPoints {
                        card: v.card.masked().to_string(),
                        available: v.available,
                        requested: redeem,
                    },
                }
            })?;
    }
    let tier = view.and_then(|v| v.tier.as_deref());
    let priced = price(&ctx.rules, req, tier, ctx.day, &ctx.figure_limits)?;
    if let Some(v) = view {
        check_card_balance(v, &priced, &ctx.figure_limits)?;
    }
    let with_card = req.card.is_some();
    let matures_at = (ctx.rules.pending_days > 0 && with_card)
        .then(|| ctx.now + time::Duration::days(i64::from(ctx.rules.pending_days)));
    let response = HoldResponse {
        receipt_id: req.receipt_id.to_string(),
        state: SaleState::Held,
        card: req.card.clone(),
        redeem_points: redeem,
        total_minor: priced.total_minor,
        discount_minor: priced.discount_minor,
        to_pay_minor: priced.paid_minor,
        accrual_points: if with_card {
            priced.accrued_points
        } else {
            Points::ZERO
        },
        offline,
        hold_expires_at,
        lines: priced.lines.clone(),
    };
    Ok(DecidedHold {
        response,
        priced,
        matures_at,
        settled,
    })
}

/// Refuses a sale that would leave the card above `max_card_balance_points` (summed
/// in 128 bits: every figure is an `i64`, so the sum cannot overflow).
fn check_card_balance(
    view: &CardView,
    sale: &PricedSale,
    limits: &Limits,
) -> Result<(), SaleError> {
    let after = i128::from(view.balance.get()) + i128::from(sale.accrued_points.get())
        - i128::from(sale.redeemed_points.get());
    limits
        .check_balance(after)
        .map_err(|source| SaleError::CardBalanceLimit {
            card: view.card.masked().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::OfflineLimit;
    use crate::redemption::Mode;
    use crate::sales::fixtures::{CARD, card_view as view};
    use config::agent::OfflineRedemption;
    use config::agent::OfflineSection;
    use protocol::ReceiptId;
    use protocol::limits::{Limit, Limits};
    use protocol::receipt::Line;
    use protocol::rules::ProgramRules;
    use std::sync::Arc;
    use time::macros::datetime;

    fn ctx(mode: Mode) -> SaleContext {
        let now = datetime!(2026-11-24 10:00 UTC);
        SaleContext {
            now,
            day: now.date(),
            day_start_unix: datetime!(2026-11-24 00:00 UTC).unix_timestamp(),
            rules: Arc::new(ProgramRules::default()),
            mode,
            funding: match mode {
                Mode::Offline => Funding::Offline(OfflineRedemption::Caps),
                Mode::Online | Mode::Standalone => Funding::Local,
            },
            live: None,
            limits: OfflineSection {
                max_redeem_per_card_per_day: Points(100),
                max_redeem_per_terminal_per_day: Points(1_000),
                max_redeem_per_receipt: Points(50),
                max_consecutive_per_card: 3,
                max_offline_hours: 24,
                ..OfflineSection::default()
            },
            figure_limits: Limits::DEFAULT,
            hold_timeout_secs: 600,
        }
    }

    fn request(card: bool, redeem: i64) -> SaleRequest {
        SaleRequest {
            receipt_id: ReceiptId::parse("R-1").unwrap(),
            card: card.then(|| CardId::parse(CARD).unwrap()),
            lines: vec![Line {
                sku: "milk".into(),
                category: "dairy".into(),
                amount_minor: Money(10_000),
                qty: 1,
            }],
            redeem_points: Points(redeem),
        }
    }

    fn usage(card_today: i64) -> OfflineUsage {
        OfflineUsage {
            card_today: Points(card_today),
            secs_since_contact: Some(60),
            ..OfflineUsage::default()
        }
    }

    /// Decides a hold of `redeem` points, with the card (`available` points, or blocked)
    /// when `available` is given.
    fn hold(
        redeem: i64,
        card: Option<(i64, bool)>,
        usage: Option<&OfflineUsage>,
        mode: Mode,
    ) -> Result<DecidedHold, SaleError> {
        let view = card.map(|(available, blocked)| view(available, blocked));
        decide(
            &request(card.is_some(), redeem),
            view.as_ref(),
            usage,
            None,
            &ctx(mode),
        )
    }

    #[test]
    fn a_hold_prices_the_receipt_and_reserves_the_points() {
        let d = hold(20, Some((100, false)), None, Mode::Online).unwrap();
        assert_eq!(d.response.state, SaleState::Held);
        assert_eq!(d.response.discount_minor, Money(2_000));
        assert_eq!(d.response.to_pay_minor, Money(8_000));
        assert_eq!(d.response.accrual_points, Points(4));
        assert!(!d.response.offline);
        assert_eq!(d.response.hold_expires_at, datetime!(2026-11-24 10:10 UTC));
        assert_eq!(d.matures_at, None);
    }

    #[test]
    fn a_sale_without_a_card_accrues_nothing_and_cannot_redeem() {
        let d = hold(0, None, None, Mode::Standalone).unwrap();
        assert_eq!(d.response.accrual_points, Points::ZERO);
        assert!(matches!(
            hold(5, None, None, Mode::Standalone),
            Err(SaleError::CardRequired)
        ));
    }

    #[test]
    fn a_blocked_card_is_refused_even_without_a_redemption() {
        let e = hold(0, Some((100, true)), None, Mode::Online).unwrap_err();
        assert!(matches!(e, SaleError::CardBlocked { .. }));
        assert_eq!(e.to_string(), "card ****3931 is blocked by HQ");
    }

    #[test]
    fn a_line_near_i64_max_is_refused_naming_the_line_limit() {
        let mut req = request(true, 0);
        req.lines[0].amount_minor = Money(i64::MAX - 1);
        let v = view(0, false);
        let e = decide(&req, Some(&v), None, None, &ctx(Mode::Online)).unwrap_err();
        assert!(
            matches!(&e, SaleError::Limit(l) if l.limit() == Some(Limit::LineMinor)),
            "{e}"
        );
        assert!(e.to_string().contains("max_line_minor"), "{e}");
    }

    #[test]
    fn a_sale_that_would_take_the_card_above_its_balance_limit_is_refused() {
        let mut c = ctx(Mode::Online);
        // The sale accrues 5 points (5 % of 100.00).
        c.figure_limits.max_card_balance_points = Points(104);
        let req = request(true, 0);
        assert!(decide(&req, Some(&view(99, false)), None, None, &c).is_ok());
        let e = decide(&req, Some(&view(100, false)), None, None, &c).unwrap_err();
        assert!(matches!(e, SaleError::CardBalanceLimit { .. }), "{e}");
        assert!(e.to_string().contains("****3931"), "{e}");
        assert!(!e.to_string().contains(CARD), "{e}");
    }

    #[test]
    fn more_points_than_available_are_refused() {
        assert!(matches!(
            hold(30, Some((20, false)), None, Mode::Online),
            Err(SaleError::InsufficientPoints { .. })
        ));
    }

    #[test]
    fn offline_the_caps_apply_and_online_they_do_not() {
        let card = Some((100, false));
        let e = hold(20, card, Some(&usage(90)), Mode::Offline).unwrap_err();
        assert!(matches!(
            e,
            SaleError::Offline(ref r) if r.limit == OfflineLimit::CardDailyCap
        ));
        let d = hold(20, card, Some(&usage(0)), Mode::Offline).unwrap();
        assert!(d.response.offline);
        assert!(hold(20, card, None, Mode::Online).is_ok());
    }

    #[test]
    fn offline_without_what_the_caps_count_nothing_is_allowed() {
        let e = hold(1, Some((100, false)), None, Mode::Offline).unwrap_err();
        assert!(matches!(
            e,
            SaleError::Offline(ref r) if r.limit == OfflineLimit::NeverSynced
        ));
    }

    #[test]
    fn offline_in_escrow_mode_the_hold_draws_on_the_lease_and_records_it() {
        let lease = crate::journal::leases::OpenLease {
            lease_id: uuid::Uuid::from_u128(9),
            card: CardId::parse(CARD).unwrap(),
            lease: protocol::escrow::TillLease {
                points: Points(30),
                drawn_committed: Points(5),
                drawn_held: Points::ZERO,
                expires_at: datetime!(2026-11-25 10:00 UTC).unix_timestamp(),
            },
            open_holds: 0,
        };
        let mut c = ctx(Mode::Offline);
        c.funding = Funding::Offline(OfflineRedemption::Escrow);
        let req = request(true, 25);
        let d = decide(&req, Some(&view(100, false)), None, Some(&lease), &c).unwrap();
        assert!(d.response.offline);
        assert_eq!(d.settled.reserved, Points::ZERO);
        assert_eq!(
            d.settled.lease.map(|l| (l.lease_id, l.points)),
            Some((lease.lease_id, Points(25)))
        );
        // The caps do not apply in escrow mode; the lease bounds the redemption.
        let e = decide(
            &request(true, 26),
            Some(&view(100, false)),
            None,
            Some(&lease),
            &c,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            SaleError::Offline(ref r) if r.limit == OfflineLimit::AllowanceShort
        ));
        let e = decide(&req, Some(&view(100, false)), None, None, &c).unwrap_err();
        assert!(matches!(
            e,
            SaleError::Offline(ref r) if r.limit == OfflineLimit::NoAllowance
        ));
    }

    #[test]
    fn more_than_the_rules_allow_is_refused_with_the_cap() {
        // Points pay at most half of 100.00: 50 points.
        assert!(matches!(
            hold(60, Some((100, false)), None, Mode::Online),
            Err(SaleError::RedeemAboveRuleCap { max }) if max == Points(50)
        ));
    }

    #[test]
    fn a_pending_period_sets_when_the_points_mature() {
        let mut c = ctx(Mode::Standalone);
        c.rules = Arc::new(ProgramRules {
            pending_days: 14,
            ..ProgramRules::default()
        });
        let d = decide(&request(true, 0), Some(&view(0, false)), None, None, &c).unwrap();
        assert_eq!(d.matures_at, Some(datetime!(2026-12-08 10:00 UTC)));
        let d = decide(&request(false, 0), None, None, None, &c).unwrap();
        assert_eq!(d.matures_at, None);
    }
}
