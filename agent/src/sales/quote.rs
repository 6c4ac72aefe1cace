//! Quoting a receipt: what it would accrue and the most points it may redeem, and
//! what bounds that (the rules, the balance, an offline cap, a blocked card). Nothing
//! is written.

use super::{SaleContext, SaleError, read_card};
use crate::cards::CardView;
use crate::journal::Tx;
use crate::policy::{self, OfflineLimit, OfflineUsage, Refusal};
use crate::redemption::{Funding, Mode};
use config::agent::{OfflineRedemption, OfflineSection};
use protocol::escrow::{TillLease, offline_draw};
use protocol::evaluate::{CardState, EvalError, Quote, quote as evaluate};
use protocol::receipt::Line;
use protocol::rules::ProgramRules;
use protocol::{CardId, Points, ReceiptId};
use serde::{Deserialize, Serialize, Serializer};
use time::Date;

/// `POST /v1/quote` body: a receipt.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    // The till may send its sale body as is: the receipt id and the points it means
    // to redeem are checked like a sale's (an id, points not negative) but play no
    // part in a quote.
    #[serde(default, rename = "receipt_id")]
    _receipt_id: Option<ReceiptId>,
    /// The card, if the customer showed one.
    #[serde(default)]
    pub card: Option<CardId>,
    /// Receipt lines.
    #[schema(min_items = 1, max_items = 1000)]
    pub lines: Vec<Line>,
    #[serde(default, rename = "redeem_points")]
    #[schema(value_type = i64, minimum = 0)]
    redeem_points: Points,
}

/// What bounds a quote's `max_redeem_points`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedBy {
    /// The program rules (share of the receipt, excluded lines, minimum receipt).
    Rules,
    /// The card's available points.
    Balance,
    /// The offline caps' headroom.
    OfflineCaps,
    /// Escrow mode offline: what is left of this till's allowance of the card.
    OfflineAllowance,
    /// An offline limit that allows nothing at all now.
    Offline(OfflineLimit),
    /// HQ blocked the card.
    CardBlocked,
}

impl LimitedBy {
    /// The wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rules => "rules",
            Self::Balance => "balance",
            Self::OfflineCaps => "offline_caps",
            Self::OfflineAllowance => "offline_allowance",
            Self::Offline(limit) => limit.as_str(),
            Self::CardBlocked => "card_blocked",
        }
    }
}

impl Serialize for LimitedBy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// `POST /v1/quote` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QuoteResponse {
    /// The rules' evaluation, capped as `limited_by` says.
    #[serde(flatten)]
    pub quote: Quote,
    /// What bounds `max_redeem_points`.
    pub limited_by: LimitedBy,
    /// True when HQ is unreachable and the offline caps apply.
    pub offline: bool,
    /// The card, if one was given.
    pub card: Option<CardView>,
}

/// Quotes `req`, reading the card in the caller's (read) transaction. When HQ is
/// unreachable the offline rules of the till's mode bound the redemption.
pub fn quote(
    tx: &Tx<'_>,
    req: &QuoteRequest,
    ctx: &SaleContext,
) -> Result<QuoteResponse, SaleError> {
    let offline = ctx.mode == Mode::Offline;
    let caps = ctx.funding.capped();
    let (view, usage) = read_card(tx, req.card.as_ref(), caps, ctx)?;
    let bound = match (&req.card, ctx.funding) {
        (None, _) => None,
        (Some(_), Funding::Offline(OfflineRedemption::Caps)) => usage.map(OfflineBound::Caps),
        (Some(card), Funding::Offline(OfflineRedemption::Escrow)) => {
            Some(OfflineBound::Allowance {
                lease: tx.open_lease_of(card)?.map(|l| l.lease),
                hold_expires_at: ctx.hold_expires_at_unix(),
            })
        }
        (Some(_), Funding::Offline(OfflineRedemption::None)) => Some(OfflineBound::Off),
        (Some(_), Funding::Local | Funding::Online { .. }) => None,
    };
    let (quote, limited_by) = decide_request(req, view.as_ref(), bound.as_ref(), ctx)?;
    Ok(QuoteResponse {
        quote,
        limited_by,
        offline,
        card: view.map(|v| CardView { offline, ..v }),
    })
}

/// What bounds a redemption while HQ is unreachable, by `[offline] redemption` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineBound {
    /// Caps mode: what the caps count for the card.
    Caps(OfflineUsage),
    /// Escrow mode: this till's lease of the card, if any, and when a hold opened now
    /// would expire (a lease expiring before it cannot fund it).
    Allowance {
        /// The lease.
        lease: Option<TillLease>,
        /// Unix seconds, till clock.
        hold_expires_at: i64,
    },
    /// `redemption = "none"`.
    Off,
}

impl OfflineBound {
    /// The most points the mode allows on one receipt, or the refusal that allows
    /// none: the same rules a hold is decided by.
    fn headroom(&self, limits: &OfflineSection) -> Result<(Points, LimitedBy), Refusal> {
        match self {
            Self::Caps(usage) => {
                policy::offline_headroom(usage, limits).map(|p| (p, LimitedBy::OfflineCaps))
            }
            Self::Allowance {
                lease,
                hold_expires_at,
            } => {
                let left = lease.map_or(Points::ZERO, |l| l.remaining());
                offline_draw(lease.as_ref(), left, *hold_expires_at)
                    .map(|p| (p, LimitedBy::OfflineAllowance))
                    .map_err(Refusal::from)
            }
            Self::Off => Err(policy::redemption_off()),
        }
    }
}

/// Decides a quote of `req`: the `[limits]` of its figures first, then [`decide`].
pub fn decide_request(
    req: &QuoteRequest,
    view: Option<&CardView>,
    offline: Option<&OfflineBound>,
    ctx: &SaleContext,
) -> Result<(Quote, LimitedBy), SaleError> {
    if req.redeem_points.is_negative() {
        return Err(SaleError::Invalid(EvalError::NegativeRedeem));
    }
    ctx.figure_limits
        .check_lines(&req.lines)
        .map_err(SaleError::Limit)?;
    decide(&ctx.rules, &req.lines, view, offline, &ctx.limits, ctx.day)
}

/// The rules' quote, capped by the card's balance, the offline rules of the till's
/// mode (when `offline` is given) and a blocked card, with what bounds it.
pub fn decide(
    rules: &ProgramRules,
    lines: &[Line],
    view: Option<&CardView>,
    offline: Option<&OfflineBound>,
    limits: &OfflineSection,
    day: Date,
) -> Result<(Quote, LimitedBy), SaleError> {
    let state = view.map(CardView::rule_state);
    let mut q = evaluate(rules, lines, state.as_ref(), day).map_err(SaleError::Invalid)?;
    // The rules' cap in points: the redeemable amount in whole points.
    let rule_cap = Points(
        q.redeemable_minor
            .get()
            .checked_div(rules.point_value_minor.get())
            .unwrap_or(0),
    );
    let mut limited_by = if view.is_some() && q.max_redeem_points < rule_cap {
        LimitedBy::Balance
    } else {
        LimitedBy::Rules
    };
    // A cap below what the rules and the balance allow: the offline headroom of the
    // till's mode, or nothing for a blocked card.
    let mut cap = None;
    if let Some(bound) = offline {
        let (offline_cap, by) = match bound.headroom(limits) {
            Ok(headroom) => headroom,
            Err(refusal) => (Points::ZERO, LimitedBy::Offline(refusal.limit)),
        };
        if offline_cap < q.max_redeem_points {
            cap = Some(offline_cap);
            limited_by = by;
        }
    }
    if view.is_some_and(|v| v.blocked) {
        cap = Some(Points::ZERO);
        limited_by = LimitedBy::CardBlocked;
    }
    if let (Some(cap), Some(state)) = (cap, state) {
        // Evaluated again as if the card had only `cap` points, so that
        // `accrual_with_max_redeem_points` is what a sale redeeming the capped
        // maximum accrues.
        let capped = CardState {
            available: cap,
            ..state
        };
        q = evaluate(rules, lines, Some(&capped), day).map_err(SaleError::Invalid)?;
    }
    Ok((q, limited_by))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sales::fixtures::card_view as view;
    use protocol::Money;
    use time::macros::date;

    fn lines() -> Vec<Line> {
        vec![
            Line {
                sku: "milk".into(),
                category: "dairy".into(),
                amount_minor: Money(5_000),
                qty: 2,
            },
            Line {
                sku: "cig".into(),
                category: "tobacco".into(),
                amount_minor: Money(9_000),
                qty: 1,
            },
        ]
    }

    fn limits() -> OfflineSection {
        OfflineSection {
            max_redeem_per_card_per_day: Points(10),
            max_redeem_per_terminal_per_day: Points(1_000),
            max_redeem_per_receipt: Points(500),
            max_consecutive_per_card: 3,
            max_offline_hours: 24,
            ..OfflineSection::default()
        }
    }

    fn quote_with(view: Option<&CardView>, usage: Option<&OfflineUsage>) -> (Points, &'static str) {
        quote_bound(view, usage.map(|u| OfflineBound::Caps(*u)).as_ref())
    }

    fn quote_bound(
        view: Option<&CardView>,
        bound: Option<&OfflineBound>,
    ) -> (Points, &'static str) {
        let (q, by) = decide(
            &ProgramRules::default(),
            &lines(),
            view,
            bound,
            &limits(),
            date!(2026 - 11 - 24),
        )
        .unwrap();
        (q.max_redeem_points, by.as_str())
    }

    #[test]
    fn the_tightest_bound_names_itself() {
        // Points may pay the 50.00 of milk (tobacco is excluded; half the receipt
        // would be 70.00): 50 points.
        assert_eq!(quote_with(None, None), (Points::ZERO, "rules"));
        assert_eq!(
            quote_with(Some(&view(100, false)), None),
            (Points(50), "rules")
        );
        assert_eq!(
            quote_with(Some(&view(7, false)), None),
            (Points(7), "balance")
        );
        let usage = OfflineUsage {
            secs_since_contact: Some(60),
            ..OfflineUsage::default()
        };
        assert_eq!(
            quote_with(Some(&view(100, false)), Some(&usage)),
            (Points(10), "offline_caps")
        );
        assert_eq!(
            quote_with(Some(&view(100, false)), Some(&OfflineUsage::default())),
            (Points::ZERO, "offline_never_synced")
        );
        assert_eq!(
            quote_with(Some(&view(100, true)), None),
            (Points::ZERO, "card_blocked")
        );
    }

    #[test]
    fn the_accrual_with_max_redeem_is_that_of_the_capped_maximum() {
        let day = date!(2026 - 11 - 24);
        let rules = ProgramRules::default();
        let accrual = |usage: Option<&OfflineUsage>, blocked: bool| {
            let (q, _) = decide(
                &rules,
                &lines(),
                Some(&view(100, blocked)),
                usage.map(|u| OfflineBound::Caps(*u)).as_ref(),
                &limits(),
                day,
            )
            .unwrap();
            (q.max_redeem_points, q.accrual_with_max_redeem_points)
        };
        let priced = |redeem: i64| {
            protocol::evaluate::price_sale(&rules, &lines(), Points(redeem), None, day)
                .unwrap()
                .accrued_points
        };
        // Nothing may be redeemed (never synced, blocked): the accrual of a plain sale.
        let never_synced = OfflineUsage::default();
        assert_eq!(
            accrual(Some(&never_synced), false),
            (Points::ZERO, priced(0))
        );
        assert_eq!(accrual(None, true), (Points::ZERO, priced(0)));
        // Capped at 10 offline: the accrual of a sale redeeming 10, not 50.
        let usage = OfflineUsage {
            secs_since_contact: Some(60),
            ..OfflineUsage::default()
        };
        assert_eq!(accrual(Some(&usage), false), (Points(10), priced(10)));
        assert_ne!(priced(10), priced(50));
    }

    #[test]
    fn offline_in_escrow_mode_the_allowance_bounds_the_quote() {
        let lease = |points: i64, drawn: i64, expires_at: i64| OfflineBound::Allowance {
            lease: Some(TillLease {
                points: Points(points),
                drawn_committed: Points(drawn),
                drawn_held: Points::ZERO,
                expires_at,
            }),
            hold_expires_at: 1_000,
        };
        let card = view(100, false);
        assert_eq!(
            quote_bound(Some(&card), Some(&lease(30, 10, 5_000))),
            (Points(20), "offline_allowance")
        );
        // An allowance above what the rules and balance allow bounds nothing.
        assert_eq!(
            quote_bound(Some(&card), Some(&lease(90, 0, 5_000))),
            (Points(50), "rules")
        );
        assert_eq!(
            quote_bound(
                Some(&card),
                Some(&OfflineBound::Allowance {
                    lease: None,
                    hold_expires_at: 1_000
                })
            ),
            (Points::ZERO, "offline_no_allowance")
        );
        assert_eq!(
            quote_bound(Some(&card), Some(&lease(30, 0, 500))),
            (Points::ZERO, "offline_allowance_expiring")
        );
        assert_eq!(
            quote_bound(Some(&card), Some(&OfflineBound::Off)),
            (Points::ZERO, "offline_redemption_off")
        );
    }
}
