//! Rule evaluation as pure functions: quote a receipt, price a sale (redemption and
//! accrual), price a return. The agent and HQ call the same code, so they agree to the
//! point.
//!
//! Rounding is explicit:
//! - the redemption discount is `points x point_value`, spread over the eligible
//!   lines in proportion to their amounts (largest remainder), never more than a line;
//! - accrual is computed exactly per line (paid x rate x multiplier) and rounded down
//!   once for the receipt; the total is then spread over the lines the same way;
//! - a return of `q` of a line's `n` units reverses `floor(x * returned_after / n) -
//!   floor(x * returned_before / n)` of each of the line's amounts `x`, so returning
//!   every unit, in any number of returns, reverses exactly `x` and never more.

use crate::money::{AmountError, Money, Points, allocate_proportionally, mul_div_floor};
use crate::receipt::{Line, ReceiptError, validate_lines};
use crate::rules::ProgramRules;
use serde::{Deserialize, Serialize};
use time::Date;

/// What evaluation needs to know about a card.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardState {
    /// Points spendable now.
    pub available: Points,
    /// The card's tier name, if any.
    pub tier: Option<String>,
}

/// Why a sale or return cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The receipt lines are bad.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    /// Negative points to redeem.
    #[error("redeem_points must not be negative")]
    NegativeRedeem,
    /// More points than the rules allow on this receipt.
    #[error("the rules allow at most {max} points on this receipt")]
    RedeemAboveRuleCap {
        /// The rules' maximum for this receipt.
        max: Points,
    },
    /// A return names a line the sale does not have.
    #[error("line {0} is not on the sale")]
    UnknownLine(usize),
    /// A return names the same line twice.
    #[error("line {0} is named twice")]
    DuplicateLine(usize),
    /// A return of zero units.
    #[error("line {0}: qty must be at least 1")]
    ZeroQty(usize),
    /// A return of more units than remain unreturned.
    #[error("line {line}: only {remaining} units remain to return")]
    QtyExceeds {
        /// Line index.
        line: usize,
        /// Units not yet returned.
        remaining: u32,
    },
    /// Everything has been returned already.
    #[error("nothing left to return on this sale")]
    NothingToReturn,
    /// An amount does not fit in 64 bits.
    #[error("amount overflows")]
    Overflow,
}

impl From<AmountError> for EvalError {
    fn from(_: AmountError) -> Self {
        Self::Overflow
    }
}

/// A receipt priced without writing anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Quote {
    /// Receipt total.
    pub total_minor: Money,
    /// Amount of the receipt that points may pay, by the rules (eligible lines,
    /// share cap, minimum receipt).
    pub redeemable_minor: Money,
    /// Most points that may be redeemed: the rules' cap and the card's available points.
    pub max_redeem_points: Points,
    /// Points the receipt accrues when nothing is redeemed.
    pub accrual_preview_points: Points,
    /// Points the receipt accrues when `max_redeem_points` are redeemed.
    pub accrual_with_max_redeem_points: Points,
}

/// One line of a priced sale: the till's line and what points did to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PricedLine {
    /// Stock-keeping unit.
    pub sku: String,
    /// Product category, which category multipliers match.
    pub category: String,
    /// Line total before points.
    pub amount_minor: Money,
    /// Units on the line (`amount_minor` is for the whole line).
    pub qty: u32,
    /// Part of the line paid with points.
    pub discount_minor: Money,
    /// Part of the line paid in money: `amount - discount`.
    pub paid_minor: Money,
    /// Points redeemed on this line (`discount = redeemed x point value` summed over
    /// the receipt).
    pub redeemed_points: Points,
    /// Points accrued on this line.
    pub accrued_points: Points,
}

/// A priced sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PricedSale {
    /// The lines.
    pub lines: Vec<PricedLine>,
    /// Receipt total.
    pub total_minor: Money,
    /// Paid with points.
    pub discount_minor: Money,
    /// Paid in money.
    pub paid_minor: Money,
    /// Points redeemed.
    pub redeemed_points: Points,
    /// Points accrued.
    pub accrued_points: Points,
}

/// One line of a return request: `qty` units of sale line `line` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnLineRequest {
    /// Index of the line on the sale.
    #[schema(maximum = 999)]
    pub line: usize,
    /// Units returned.
    #[schema(minimum = 1, maximum = 4_294_967_295_i64, format = Int64)]
    pub qty: u32,
}

/// One line of a priced return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnedLine {
    /// Index of the line on the sale.
    pub line: usize,
    /// Units returned.
    pub qty: u32,
    /// Money given back.
    pub refund_minor: Money,
    /// Accrued points taken back.
    pub reversed_accrual_points: Points,
    /// Redeemed points given back.
    pub restored_points: Points,
}

/// A priced return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PricedReturn {
    /// The lines.
    pub lines: Vec<ReturnedLine>,
    /// Money given back.
    pub refund_minor: Money,
    /// Accrued points taken back.
    pub reversed_accrual_points: Points,
    /// Redeemed points given back.
    pub restored_points: Points,
}

/// The rules' cap for a receipt, in money and in points, ignoring the card's balance.
fn rule_cap(
    rules: &ProgramRules,
    lines: &[Line],
    total: Money,
) -> Result<(Money, Points), EvalError> {
    if total < rules.min_receipt_for_redeem_minor {
        return Ok((Money::ZERO, Points::ZERO));
    }
    let eligible = Money::checked_sum(
        lines
            .iter()
            .filter(|l| rules.redeemable(&l.category))
            .map(|l| l.amount_minor),
    )?;
    let share = mul_div_floor(
        total.get(),
        i128::from(rules.max_redeem_share_bp.get()),
        10_000,
    )?;
    let cap_money = Money(eligible.get().min(share));
    let cap_points = Points(cap_money.get() / rules.point_value_minor.get());
    Ok((cap_money, cap_points))
}

/// Quotes a receipt for a card (or for no card): what may be redeemed and what it
/// accrues. Writes nothing.
pub fn quote(
    rules: &ProgramRules,
    lines: &[Line],
    card: Option<&CardState>,
    day: Date,
) -> Result<Quote, EvalError> {
    let total = validate_lines(lines)?;
    let (redeemable, cap_points) = rule_cap(rules, lines, total)?;
    let max_redeem = match card {
        Some(c) => Points(cap_points.get().min(c.available.get().max(0))),
        None => Points::ZERO,
    };
    let tier = card.and_then(|c| c.tier.as_deref());
    let plain = price_sale(rules, lines, Points::ZERO, tier, day)?;
    let with_max = price_sale(rules, lines, max_redeem, tier, day)?;
    Ok(Quote {
        total_minor: total,
        redeemable_minor: redeemable,
        max_redeem_points: max_redeem,
        accrual_preview_points: if card.is_some() {
            plain.accrued_points
        } else {
            Points::ZERO
        },
        accrual_with_max_redeem_points: if card.is_some() {
            with_max.accrued_points
        } else {
            Points::ZERO
        },
    })
}

/// Prices a sale: redeems `redeem` points (within the rules' cap; the caller checks
/// the card's balance) and accrues on the money paid, at the rate of `tier`.
pub fn price_sale(
    rules: &ProgramRules,
    lines: &[Line],
    redeem: Points,
    tier: Option<&str>,
    day: Date,
) -> Result<PricedSale, EvalError> {
    let total = validate_lines(lines)?;
    if redeem.is_negative() {
        return Err(EvalError::NegativeRedeem);
    }
    let (_, cap_points) = rule_cap(rules, lines, total)?;
    if redeem > cap_points {
        return Err(EvalError::RedeemAboveRuleCap { max: cap_points });
    }
    let discount = Money(
        redeem
            .get()
            .checked_mul(rules.point_value_minor.get())
            .ok_or(EvalError::Overflow)?,
    );
    // Redemption is spread over the lines points may pay for, by amount.
    let weights: Vec<i128> = lines
        .iter()
        .map(|l| {
            if rules.redeemable(&l.category) {
                i128::from(l.amount_minor.get())
            } else {
                0
            }
        })
        .collect();
    let line_discount = spread(discount.get(), &weights)?;
    let line_points = spread(redeem.get(), &weights)?;

    let rate = i128::from(rules.accrual_rate(tier).get());
    let mut numerators = Vec::with_capacity(lines.len());
    for (line, &d) in lines.iter().zip(&line_discount) {
        let paid = line.amount_minor.get() - d;
        let n = if rules.accrues(&line.category) {
            i128::from(paid)
                .checked_mul(rate)
                .and_then(|x| {
                    x.checked_mul(i128::from(rules.multiplier_percent(
                        &line.sku,
                        &line.category,
                        day,
                    )))
                })
                .ok_or(EvalError::Overflow)?
        } else {
            0
        };
        numerators.push(n);
    }
    let denominator = 10_000i128 * 100 * i128::from(rules.point_value_minor.get());
    let numerator_sum = numerators
        .iter()
        .try_fold(0i128, |acc, &n| acc.checked_add(n))
        .ok_or(EvalError::Overflow)?;
    let accrued_total =
        i64::try_from(numerator_sum / denominator).map_err(|_| EvalError::Overflow)?;
    let line_accrual = allocate_proportionally(accrued_total, &numerators)?;

    let priced: Vec<PricedLine> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| PricedLine {
            sku: l.sku.clone(),
            category: l.category.clone(),
            amount_minor: l.amount_minor,
            qty: l.qty,
            discount_minor: Money(line_discount[i]),
            paid_minor: Money(l.amount_minor.get() - line_discount[i]),
            redeemed_points: Points(line_points[i]),
            accrued_points: Points(line_accrual[i]),
        })
        .collect();
    Ok(PricedSale {
        lines: priced,
        total_minor: total,
        discount_minor: discount,
        paid_minor: total.checked_sub(discount)?,
        redeemed_points: redeem,
        accrued_points: Points(accrued_total),
    })
}

/// `allocate_proportionally` where an all-zero weight set can only carry zero.
fn spread(total: i64, weights: &[i128]) -> Result<Vec<i64>, EvalError> {
    if total == 0 {
        return Ok(vec![0; weights.len()]);
    }
    Ok(allocate_proportionally(total, weights)?)
}

/// Prices a return against a sale. `returned_before[i]` is how many units of line `i`
/// earlier returns took back; `request` empty means "everything not yet returned".
pub fn price_return(
    sale: &PricedSale,
    returned_before: &[u32],
    request: &[ReturnLineRequest],
) -> Result<PricedReturn, EvalError> {
    let remaining = |i: usize| {
        sale.lines[i]
            .qty
            .saturating_sub(returned_before.get(i).copied().unwrap_or(0))
    };
    let wanted: Vec<ReturnLineRequest> = if request.is_empty() {
        (0..sale.lines.len())
            .filter(|&i| remaining(i) > 0)
            .map(|i| ReturnLineRequest {
                line: i,
                qty: remaining(i),
            })
            .collect()
    } else {
        for (k, r) in request.iter().enumerate() {
            if r.line >= sale.lines.len() {
                return Err(EvalError::UnknownLine(r.line));
            }
            if request[..k].iter().any(|o| o.line == r.line) {
                return Err(EvalError::DuplicateLine(r.line));
            }
            if r.qty == 0 {
                return Err(EvalError::ZeroQty(r.line));
            }
            if r.qty > remaining(r.line) {
                return Err(EvalError::QtyExceeds {
                    line: r.line,
                    remaining: remaining(r.line),
                });
            }
        }
        request.to_vec()
    };
    if wanted.is_empty() {
        return Err(EvalError::NothingToReturn);
    }
    let mut lines = Vec::with_capacity(wanted.len());
    for r in &wanted {
        let sold = &sale.lines[r.line];
        let before = returned_before.get(r.line).copied().unwrap_or(0);
        let after = before + r.qty;
        let part = |x: i64| -> Result<i64, EvalError> {
            let n = i128::from(sold.qty);
            Ok(mul_div_floor(x, i128::from(after), n)? - mul_div_floor(x, i128::from(before), n)?)
        };
        lines.push(ReturnedLine {
            line: r.line,
            qty: r.qty,
            refund_minor: Money(part(sold.paid_minor.get())?),
            reversed_accrual_points: Points(part(sold.accrued_points.get())?),
            restored_points: Points(part(sold.redeemed_points.get())?),
        });
    }
    Ok(PricedReturn {
        refund_minor: Money::checked_sum(lines.iter().map(|l| l.refund_minor))?,
        reversed_accrual_points: Points::checked_sum(
            lines.iter().map(|l| l.reversed_accrual_points),
        )?,
        restored_points: Points::checked_sum(lines.iter().map(|l| l.restored_points))?,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::BasisPoints;
    use crate::rules::{Promotion, Tier};
    use proptest::prelude::*;
    use time::macros::date;

    const DAY: Date = date!(2026 - 11 - 24);

    fn line(sku: &str, category: &str, amount: i64, qty: u32) -> Line {
        Line {
            sku: sku.into(),
            category: category.into(),
            amount_minor: Money(amount),
            qty,
        }
    }

    fn rules() -> ProgramRules {
        ProgramRules::default()
    }

    fn card(available: i64) -> CardState {
        CardState {
            available: Points(available),
            tier: None,
        }
    }

    #[test]
    fn accrual_is_five_percent_of_the_paid_amount_rounded_down() {
        // 5 % of 199.99 = 9.9995 -> 9 points of 1.00.
        let sale = price_sale(
            &rules(),
            &[line("a", "food", 19_999, 1)],
            Points(0),
            None,
            DAY,
        )
        .unwrap();
        assert_eq!(sale.accrued_points, Points(9));
        assert_eq!(sale.paid_minor, Money(19_999));
    }

    #[test]
    fn fractions_of_lines_add_up_before_rounding_down_once() {
        // Three lines of 5 % x 30.00 = 1.50 each: 4.50 in all, so 4 points, not 3.
        let lines = [
            line("a", "f", 3_000, 1),
            line("b", "f", 3_000, 1),
            line("c", "f", 3_000, 1),
        ];
        let sale = price_sale(&rules(), &lines, Points(0), None, DAY).unwrap();
        assert_eq!(sale.accrued_points, Points(4));
        assert_eq!(
            sale.lines
                .iter()
                .map(|l| l.accrued_points.get())
                .sum::<i64>(),
            4
        );
    }

    #[test]
    fn excluded_categories_neither_accrue_nor_take_points() {
        let lines = [
            line("cig", "tobacco", 10_000, 1),
            line("milk", "dairy", 10_000, 1),
        ];
        let q = quote(&rules(), &lines, Some(&card(1_000)), DAY).unwrap();
        // Half the receipt is 100.00, but only the 100.00 of dairy is eligible.
        assert_eq!(q.redeemable_minor, Money(10_000));
        assert_eq!(q.max_redeem_points, Points(100));
        let sale = price_sale(&rules(), &lines, Points(100), None, DAY).unwrap();
        assert_eq!(sale.lines[0].discount_minor, Money(0));
        assert_eq!(sale.lines[1].discount_minor, Money(10_000));
        assert_eq!(sale.accrued_points, Points(0));
    }

    #[test]
    fn points_pay_at_most_the_configured_share_of_a_receipt() {
        let lines = [line("a", "food", 10_050, 1)];
        let q = quote(&rules(), &lines, Some(&card(1_000)), DAY).unwrap();
        // 50 % of 100.50 = 50.25 -> 50 whole points.
        assert_eq!(q.max_redeem_points, Points(50));
        assert_eq!(
            price_sale(&rules(), &lines, Points(51), None, DAY),
            Err(EvalError::RedeemAboveRuleCap { max: Points(50) })
        );
    }

    #[test]
    fn quote_never_offers_more_than_the_card_has() {
        let q = quote(
            &rules(),
            &[line("a", "food", 100_000, 1)],
            Some(&card(7)),
            DAY,
        )
        .unwrap();
        assert_eq!(q.max_redeem_points, Points(7));
        let q = quote(
            &rules(),
            &[line("a", "food", 100_000, 1)],
            Some(&card(-5)),
            DAY,
        )
        .unwrap();
        assert_eq!(q.max_redeem_points, Points(0));
    }

    #[test]
    fn below_the_minimum_receipt_nothing_may_be_redeemed() {
        let r = ProgramRules {
            min_receipt_for_redeem_minor: Money(5_000),
            ..rules()
        };
        let q = quote(&r, &[line("a", "food", 4_999, 1)], Some(&card(1_000)), DAY).unwrap();
        assert_eq!(q.max_redeem_points, Points(0));
    }

    #[test]
    fn anonymous_quotes_accrue_and_redeem_nothing() {
        let q = quote(&rules(), &[line("a", "food", 10_000, 1)], None, DAY).unwrap();
        assert_eq!(q.max_redeem_points, Points(0));
        assert_eq!(q.accrual_preview_points, Points(0));
    }

    #[test]
    fn accrual_is_on_money_paid_not_on_the_points_discount() {
        let sale = price_sale(
            &rules(),
            &[line("a", "food", 10_000, 1)],
            Points(50),
            None,
            DAY,
        )
        .unwrap();
        assert_eq!(sale.discount_minor, Money(5_000));
        assert_eq!(sale.paid_minor, Money(5_000));
        assert_eq!(sale.accrued_points, Points(2)); // 5 % of 50.00 = 2.50
    }

    #[test]
    fn tier_rate_replaces_the_base_rate() {
        let r = ProgramRules {
            tiers: vec![Tier {
                name: "gold".into(),
                min_spend_minor: Money(0),
                accrual_bp: BasisPoints(1_000),
            }],
            ..rules()
        };
        let sale = price_sale(
            &r,
            &[line("a", "food", 10_000, 1)],
            Points(0),
            Some("gold"),
            DAY,
        )
        .unwrap();
        assert_eq!(sale.accrued_points, Points(10));
    }

    #[test]
    fn promotion_multiplies_accrual_on_its_lines_only() {
        let r = ProgramRules {
            promotions: vec![Promotion {
                name: "double dairy".into(),
                multiplier_percent: 200,
                categories: vec!["dairy".into()],
                skus: vec![],
                starts: date!(2026 - 11 - 01),
                ends: date!(2026 - 11 - 30),
            }],
            ..rules()
        };
        let lines = [
            line("milk", "dairy", 10_000, 1),
            line("bread", "bakery", 10_000, 1),
        ];
        let sale = price_sale(&r, &lines, Points(0), None, DAY).unwrap();
        assert_eq!(sale.lines[0].accrued_points, Points(10));
        assert_eq!(sale.lines[1].accrued_points, Points(5));
        let later = price_sale(&r, &lines, Points(0), None, date!(2026 - 12 - 01)).unwrap();
        assert_eq!(later.accrued_points, Points(10));
    }

    #[test]
    fn a_full_return_reverses_exactly_what_the_sale_did() {
        let lines = [line("a", "food", 3_333, 3), line("b", "food", 6_667, 1)];
        let sale = price_sale(&rules(), &lines, Points(33), None, DAY).unwrap();
        let ret = price_return(&sale, &[], &[]).unwrap();
        assert_eq!(ret.refund_minor, sale.paid_minor);
        assert_eq!(ret.reversed_accrual_points, sale.accrued_points);
        assert_eq!(ret.restored_points, sale.redeemed_points);
    }

    #[test]
    fn return_of_half_the_units_reverses_half_the_line_rounded_down() {
        let sale = price_sale(
            &rules(),
            &[line("a", "food", 30_000, 2)],
            Points(0),
            None,
            DAY,
        )
        .unwrap();
        assert_eq!(sale.accrued_points, Points(15));
        let first = price_return(&sale, &[0], &[ReturnLineRequest { line: 0, qty: 1 }]).unwrap();
        assert_eq!(first.reversed_accrual_points, Points(7));
        let second = price_return(&sale, &[1], &[ReturnLineRequest { line: 0, qty: 1 }]).unwrap();
        assert_eq!(second.reversed_accrual_points, Points(8));
    }

    #[test]
    fn returns_refuse_unknown_duplicate_zero_and_excess_lines() {
        let sale = price_sale(
            &rules(),
            &[line("a", "food", 1_000, 2)],
            Points(0),
            None,
            DAY,
        )
        .unwrap();
        let req = |line, qty| ReturnLineRequest { line, qty };
        assert_eq!(
            price_return(&sale, &[0], &[req(1, 1)]),
            Err(EvalError::UnknownLine(1))
        );
        assert_eq!(
            price_return(&sale, &[0], &[req(0, 1), req(0, 1)]),
            Err(EvalError::DuplicateLine(0))
        );
        assert_eq!(
            price_return(&sale, &[0], &[req(0, 0)]),
            Err(EvalError::ZeroQty(0))
        );
        assert_eq!(
            price_return(&sale, &[1], &[req(0, 2)]),
            Err(EvalError::QtyExceeds {
                line: 0,
                remaining: 1
            })
        );
        assert_eq!(
            price_return(&sale, &[2], &[]),
            Err(EvalError::NothingToReturn)
        );
    }

    #[test]
    fn huge_amounts_report_overflow_instead_of_wrapping() {
        let lines = [line("a", "food", i64::MAX, 1)];
        let r = ProgramRules {
            point_value_minor: Money(1),
            max_redeem_share_bp: BasisPoints(10_000),
            ..rules()
        };
        assert!(price_sale(&r, &lines, Points(i64::MAX), None, DAY).is_ok());
        assert!(matches!(
            price_sale(
                &r,
                &[line("a", "f", i64::MAX, 1), line("b", "f", 1, 1)],
                Points(0),
                None,
                DAY
            ),
            Err(EvalError::Receipt(ReceiptError::Overflow))
        ));
    }

    fn arb_lines() -> impl Strategy<Value = Vec<Line>> {
        proptest::collection::vec(
            (
                0i64..5_000_000,
                1u32..20,
                prop_oneof![Just("food"), Just("tobacco"), Just("dairy")],
            ),
            1..12,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (amount, qty, cat))| line(&format!("sku{i}"), cat, amount, qty))
                .collect()
        })
    }

    fn arb_rules() -> impl Strategy<Value = ProgramRules> {
        (1i64..1_000, 0u32..=10_000, 0u32..=10_000).prop_map(|(value, accrual, share)| {
            ProgramRules {
                point_value_minor: Money(value),
                accrual_bp: BasisPoints(accrual),
                max_redeem_share_bp: BasisPoints(share),
                ..ProgramRules::default()
            }
        })
    }

    proptest! {
        #[test]
        fn redemption_never_exceeds_the_share_or_a_line_and_sums_exactly(
            rules in arb_rules(), lines in arb_lines(), pick in 0i64..=1_000,
        ) {
            let q = quote(&rules, &lines, Some(&card(i64::MAX / 4)), DAY).unwrap();
            let redeem = Points(mul_div_floor(q.max_redeem_points.get(), i128::from(pick), 1_000).unwrap());
            let sale = price_sale(&rules, &lines, redeem, None, DAY).unwrap();
            prop_assert_eq!(sale.discount_minor.get(), redeem.get() * rules.point_value_minor.get());
            prop_assert!(sale.discount_minor.get() * 10_000
                <= sale.total_minor.get() * i64::from(rules.max_redeem_share_bp.get()));
            prop_assert_eq!(sale.lines.iter().map(|l| l.discount_minor.get()).sum::<i64>(), sale.discount_minor.get());
            prop_assert_eq!(sale.lines.iter().map(|l| l.redeemed_points.get()).sum::<i64>(), redeem.get());
            for l in &sale.lines {
                prop_assert!(l.discount_minor.get() >= 0 && l.discount_minor <= l.amount_minor);
                prop_assert!(rules.redeemable(&l.category) || l.discount_minor.get() == 0);
            }
        }

        #[test]
        fn accrual_rounds_down_and_never_exceeds_the_exact_amount(
            rules in arb_rules(), lines in arb_lines(),
        ) {
            let sale = price_sale(&rules, &lines, Points(0), None, DAY).unwrap();
            let eligible: i128 = lines.iter().filter(|l| rules.accrues(&l.category))
                .map(|l| i128::from(l.amount_minor.get())).sum();
            let exact_num = eligible * i128::from(rules.accrual_bp.get());
            let denom = 10_000 * i128::from(rules.point_value_minor.get());
            prop_assert_eq!(i128::from(sale.accrued_points.get()), exact_num / denom);
            prop_assert_eq!(sale.lines.iter().map(|l| l.accrued_points.get()).sum::<i64>(), sale.accrued_points.get());
        }

        #[test]
        fn any_sequence_of_partial_returns_never_reverses_more_than_the_sale_and_all_of_it_reverses_exactly(
            rules in arb_rules(), lines in arb_lines(), seed in proptest::collection::vec(1u32..5, 1..30),
        ) {
            let q = quote(&rules, &lines, Some(&card(i64::MAX / 4)), DAY).unwrap();
            let sale = price_sale(&rules, &lines, q.max_redeem_points, None, DAY).unwrap();
            let mut returned = vec![0u32; sale.lines.len()];
            let (mut refund, mut reversed, mut restored) = (0i64, 0i64, 0i64);
            let mut step = 0;
            while returned.iter().zip(&sale.lines).any(|(r, l)| *r < l.qty) {
                let s = seed[step % seed.len()];
                step += 1;
                // Start at a seed-chosen line and take the next one with units left.
                let n = sale.lines.len();
                let start = (s as usize + step) % n;
                let Some(i) = (0..n).map(|k| (start + k) % n).find(|&i| returned[i] < sale.lines[i].qty) else {
                    break;
                };
                let left = sale.lines[i].qty - returned[i];
                let qty = s.min(left);
                let ret = price_return(&sale, &returned, &[ReturnLineRequest { line: i, qty }]).unwrap();
                returned[i] += qty;
                refund += ret.refund_minor.get();
                reversed += ret.reversed_accrual_points.get();
                restored += ret.restored_points.get();
                prop_assert!(refund <= sale.paid_minor.get());
                prop_assert!(reversed <= sale.accrued_points.get());
                prop_assert!(restored <= sale.redeemed_points.get());
                prop_assert!(ret.refund_minor.get() >= 0 && ret.reversed_accrual_points.get() >= 0);
            }
            prop_assert_eq!(refund, sale.paid_minor.get());
            prop_assert_eq!(reversed, sale.accrued_points.get());
            prop_assert_eq!(restored, sale.redeemed_points.get());
        }

        #[test]
        fn a_full_return_restores_exactly_for_any_sale(
            rules in arb_rules(), lines in arb_lines(),
        ) {
            let q = quote(&rules, &lines, Some(&card(1_000_000)), DAY).unwrap();
            let sale = price_sale(&rules, &lines, q.max_redeem_points, None, DAY).unwrap();
            let ret = price_return(&sale, &[], &[]).unwrap();
            prop_assert_eq!(ret.refund_minor, sale.paid_minor);
            prop_assert_eq!(ret.reversed_accrual_points, sale.accrued_points);
            prop_assert_eq!(ret.restored_points, sale.redeemed_points);
        }
    }
}
