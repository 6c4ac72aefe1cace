//! Documented maximums for money and points, and the pure check of a receipt, a priced
//! sale or a journal entry against them.
//!
//! A figure the till accepts must be one HQ can apply, so every bound has a hard
//! [`Limits::CEILING`] that no configuration may exceed, and HQ checks entries against
//! the ceiling (a till may be configured lower, never higher). The ceilings are chosen
//! so that the arithmetic on them fits in `i64` with room to spare
//! (`i64::MAX` ≈ 9.22 × 10^18):
//!
//! - a line is at most 10^12 minor units (10 000 000 000.00 with two decimals, enough
//!   for currencies with large nominal values); a receipt has at most
//!   [`crate::receipt::MAX_LINES`] = 1 000 lines, so the sum of its lines before it is
//!   compared with the receipt ceiling is at most 10^15;
//! - a receipt is at most 10^12 minor units;
//! - accrual is `paid × rate_bp × multiplier_percent / (10 000 × 100 × point_value)`
//!   with `rate_bp ≤ 10 000`, `multiplier_percent ≤ 10 000` and `point_value ≥ 1`
//!   (`rules.rs`), so a receipt accrues at most `10^12 × 100 = 10^14` points: the
//!   points-per-entry ceiling is 10^14, so every receipt within the ceilings prices to
//!   an entry within them (redemption is at most `total / point_value ≤ 10^12`);
//! - a card's balance is at most 10^15 points: a balance plus one entry
//!   (`10^15 + 10^14`) fits, and so does the sum of 90 000 entries at the entry
//!   ceiling (`9 × 10^18`).
//!
//! Sums over an unbounded number of rows (a card's lifetime spend, `verify`'s sum of
//! every ledger row) cannot be bounded by per-entry ceilings; those are computed
//! checked or in 128 bits by whoever sums them.

use crate::evaluate::{PricedReturn, PricedSale};
use crate::journal::{EntryBody, JournalEntry};
use crate::money::{Money, Points};
use crate::receipt::Line;
use serde::Deserialize;
use std::fmt;

/// Which maximum a figure broke. Its [`Limit::key`] is the `[limits]` key in
/// `agent.toml` and the name a refusal carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Money on one receipt line.
    LineMinor,
    /// Money on one receipt (or one return).
    ReceiptMinor,
    /// Points one entry may accrue, redeem, restore, reverse or grant.
    EntryPoints,
    /// Points one card may hold.
    CardBalancePoints,
}

impl Limit {
    /// Every limit, in the order of the README's table.
    pub const ALL: [Self; 4] = [
        Self::LineMinor,
        Self::ReceiptMinor,
        Self::EntryPoints,
        Self::CardBalancePoints,
    ];

    /// The configuration key and the name in refusals.
    pub const fn key(self) -> &'static str {
        match self {
            Self::LineMinor => "max_line_minor",
            Self::ReceiptMinor => "max_receipt_minor",
            Self::EntryPoints => "max_entry_points",
            Self::CardBalancePoints => "max_card_balance_points",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Why a figure was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A figure is above its maximum.
    #[error("{field} is {value}, above {limit} ({max})")]
    Above {
        /// The maximum broken.
        limit: Limit,
        /// The figure, e.g. `lines[2].amount_minor`.
        field: String,
        /// Its value (128 bits: a sum of `i64` figures may not fit in 64).
        value: i128,
        /// The maximum.
        max: i64,
    },
    /// A figure that cannot be negative is.
    #[error("{field} must not be negative, not {value}")]
    Negative {
        /// The figure.
        field: String,
        /// Its value.
        value: i64,
    },
}

impl LimitError {
    /// The maximum broken, if the figure was too large.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            Self::Above { limit, .. } => Some(*limit),
            Self::Negative { .. } => None,
        }
    }
}

/// A bad `[limits]` value: its key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct LimitsConfigError {
    /// The key, e.g. `max_line_minor`.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// The maximums in force: `[limits]` of `agent.toml` at a till (each optional, at most
/// its ceiling), [`Limits::CEILING`] at HQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most money on one receipt line, in minor units.
    pub max_line_minor: Money,
    /// Most money on one receipt or return, in minor units.
    pub max_receipt_minor: Money,
    /// Most points one entry may accrue, redeem, restore, reverse or grant.
    pub max_entry_points: Points,
    /// Most points one card may hold.
    pub max_card_balance_points: Points,
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Limits {
    /// The hard ceilings (see the module documentation for the arithmetic).
    pub const CEILING: Self = Self {
        max_line_minor: Money(1_000_000_000_000),
        max_receipt_minor: Money(1_000_000_000_000),
        max_entry_points: Points(100_000_000_000_000),
        max_card_balance_points: Points(1_000_000_000_000_000),
    };

    /// The defaults of a till: 10 000 000.00 a line, 100 000 000.00 a receipt, and
    /// points to match (the most a default receipt can accrue at the highest rate).
    pub const DEFAULT: Self = Self {
        max_line_minor: Money(1_000_000_000),
        max_receipt_minor: Money(10_000_000_000),
        max_entry_points: Points(1_000_000_000_000),
        max_card_balance_points: Points(10_000_000_000_000),
    };

    /// The maximum of `limit`.
    pub const fn max(&self, limit: Limit) -> i64 {
        match limit {
            Limit::LineMinor => self.max_line_minor.get(),
            Limit::ReceiptMinor => self.max_receipt_minor.get(),
            Limit::EntryPoints => self.max_entry_points.get(),
            Limit::CardBalancePoints => self.max_card_balance_points.get(),
        }
    }

    /// Checks configured limits: each from 1 to its ceiling.
    pub fn check(&self) -> Result<(), LimitsConfigError> {
        for limit in Limit::ALL {
            let (value, ceiling) = (self.max(limit), Self::CEILING.max(limit));
            if !(1..=ceiling).contains(&value) {
                return Err(LimitsConfigError {
                    key: limit.key(),
                    reason: format!("must be from 1 to {ceiling} (the hard ceiling), not {value}"),
                });
            }
        }
        Ok(())
    }

    /// Checks a receipt's lines as the till sent them: each line and their sum.
    pub fn check_lines(&self, lines: &[Line]) -> Result<(), LimitError> {
        for (i, line) in lines.iter().enumerate() {
            self.money(
                Limit::LineMinor,
                || format!("lines[{i}].amount_minor"),
                line.amount_minor,
            )?;
        }
        self.total(
            Limit::ReceiptMinor,
            "total_minor",
            lines.iter().map(|l| l.amount_minor.get()),
        )
    }

    /// Checks a priced sale: its lines, totals and points.
    pub fn check_sale(&self, sale: &PricedSale) -> Result<(), LimitError> {
        for (i, line) in sale.lines.iter().enumerate() {
            let at = |name: &str| format!("sale.lines[{i}].{name}");
            self.money(Limit::LineMinor, || at("amount_minor"), line.amount_minor)?;
            self.money(
                Limit::LineMinor,
                || at("discount_minor"),
                line.discount_minor,
            )?;
            self.money(Limit::LineMinor, || at("paid_minor"), line.paid_minor)?;
            self.points(|| at("redeemed_points"), line.redeemed_points)?;
            self.points(|| at("accrued_points"), line.accrued_points)?;
        }
        self.total(
            Limit::ReceiptMinor,
            "sale.lines (sum of amount_minor)",
            sale.lines.iter().map(|l| l.amount_minor.get()),
        )?;
        for (name, m) in [
            ("total_minor", sale.total_minor),
            ("discount_minor", sale.discount_minor),
            ("paid_minor", sale.paid_minor),
        ] {
            self.money(Limit::ReceiptMinor, || format!("sale.{name}"), m)?;
        }
        self.points(|| "sale.redeemed_points".into(), sale.redeemed_points)?;
        self.points(|| "sale.accrued_points".into(), sale.accrued_points)
    }

    /// Checks a priced return: its lines and totals.
    pub fn check_return(&self, ret: &PricedReturn) -> Result<(), LimitError> {
        for (i, line) in ret.lines.iter().enumerate() {
            let at = |name: &str| format!("returned.lines[{i}].{name}");
            self.money(Limit::LineMinor, || at("refund_minor"), line.refund_minor)?;
            self.points(
                || at("reversed_accrual_points"),
                line.reversed_accrual_points,
            )?;
            self.points(|| at("restored_points"), line.restored_points)?;
        }
        self.money(
            Limit::ReceiptMinor,
            || "returned.refund_minor".into(),
            ret.refund_minor,
        )?;
        self.points(
            || "returned.reversed_accrual_points".into(),
            ret.reversed_accrual_points,
        )?;
        self.points(|| "returned.restored_points".into(), ret.restored_points)
    }

    /// Checks a card's balance after an entry: at most `max_card_balance_points`.
    /// Balances may be negative (overlapping offline redemptions), so only the
    /// maximum is checked.
    pub fn check_balance(&self, balance: i128) -> Result<(), LimitError> {
        self.at_most(Limit::CardBalancePoints, || "balance".into(), balance)
    }

    fn money(
        &self,
        limit: Limit,
        field: impl Fn() -> String,
        value: Money,
    ) -> Result<(), LimitError> {
        non_negative(&field, value.get())?;
        self.at_most(limit, field, i128::from(value.get()))
    }

    fn points(&self, field: impl Fn() -> String, value: Points) -> Result<(), LimitError> {
        non_negative(&field, value.get())?;
        self.at_most(Limit::EntryPoints, field, i128::from(value.get()))
    }

    /// A sum of figures, in 128 bits so that the sum itself cannot overflow (each
    /// figure is an `i64`; fewer than 2^64 of them always fit).
    fn total(
        &self,
        limit: Limit,
        field: &str,
        values: impl Iterator<Item = i64>,
    ) -> Result<(), LimitError> {
        let sum: i128 = values.map(i128::from).sum();
        self.at_most(limit, || field.to_owned(), sum)
    }

    fn at_most(
        &self,
        limit: Limit,
        field: impl Fn() -> String,
        value: i128,
    ) -> Result<(), LimitError> {
        let max = self.max(limit);
        if value > i128::from(max) {
            return Err(LimitError::Above {
                limit,
                field: field(),
                value,
                max,
            });
        }
        Ok(())
    }
}

fn non_negative(field: impl Fn() -> String, value: i64) -> Result<(), LimitError> {
    if value < 0 {
        return Err(LimitError::Negative {
            field: field(),
            value,
        });
    }
    Ok(())
}

/// Checks every figure of a journal entry against `limits`: HQ calls it with
/// [`Limits::CEILING`] on each entry it receives, the till with its own limits before
/// writing one. The card's balance is not in the entry; see [`Limits::check_balance`].
pub fn validate(entry: &JournalEntry, limits: &Limits) -> Result<(), LimitError> {
    match &entry.body {
        EntryBody::Sale(s) => {
            limits.check_sale(&s.sale)?;
            if let Some(draw) = &s.lease {
                limits.points(|| "lease.points".into(), draw.points)?;
            }
            Ok(())
        }
        EntryBody::Return(r) => limits.check_return(&r.returned),
        EntryBody::Welcome(w) => limits.points(|| "points".into(), w.points),
        EntryBody::Release(r) => limits.points(|| "points".into(), r.points),
        EntryBody::LeaseClosed(l) => limits.points(|| "spent".into(), l.spent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{price_return, price_sale};
    use crate::ids::{CardId, ReceiptId, Seq};
    use crate::journal::{SaleEntry, WelcomeEntry};
    use crate::money::BasisPoints;
    use crate::rules::{ProgramRules, Promotion};
    use proptest::prelude::*;
    use time::macros::{date, datetime};
    use uuid::Uuid;

    fn line(amount: i64) -> Line {
        Line {
            sku: "sku".into(),
            category: "food".into(),
            amount_minor: Money(amount),
            qty: 1,
        }
    }

    fn entry(body: EntryBody) -> JournalEntry {
        JournalEntry {
            id: Uuid::from_u128(1),
            seq: Seq(1),
            at: datetime!(2026-11-24 10:00:00 UTC),
            rules_version: 1,
            body,
        }
    }

    fn sale_entry(sale: PricedSale) -> JournalEntry {
        entry(EntryBody::Sale(SaleEntry {
            receipt_id: ReceiptId::parse("R-1").expect("valid receipt id"),
            card: Some(CardId::parse("4006381333931").expect("valid card")),
            sale,
            matures_at: None,
            offline: false,
            lease: None,
        }))
    }

    /// The most generous rules there are: every point of value 1 minor unit, 100 %
    /// accrual, a 100x promotion on every line.
    fn richest_rules() -> ProgramRules {
        ProgramRules {
            point_value_minor: Money(1),
            accrual_bp: BasisPoints(10_000),
            max_redeem_share_bp: BasisPoints(10_000),
            promotions: vec![Promotion {
                name: "all".into(),
                skus: vec![],
                categories: vec!["food".into()],
                multiplier_percent: 10_000,
                starts: date!(2026 - 01 - 01),
                ends: date!(2026 - 12 - 31),
            }],
            ..ProgramRules::default()
        }
    }

    #[test]
    fn the_defaults_are_within_the_ceilings() {
        assert_eq!(Limits::DEFAULT.check(), Ok(()));
        assert_eq!(Limits::CEILING.check(), Ok(()));
    }

    #[test]
    fn a_limit_above_its_ceiling_or_below_one_is_refused_by_name() {
        let mut l = Limits::DEFAULT;
        l.max_line_minor = Money(Limits::CEILING.max_line_minor.get() + 1);
        assert_eq!(l.check().map_err(|e| e.key), Err("max_line_minor"));
        let mut l = Limits::DEFAULT;
        l.max_card_balance_points = Points(0);
        assert_eq!(l.check().map_err(|e| e.key), Err("max_card_balance_points"));
    }

    #[test]
    fn a_line_near_i64_max_is_refused_naming_the_line_limit() {
        let err = Limits::DEFAULT
            .check_lines(&[line(100), line(i64::MAX / 2)])
            .unwrap_err();
        assert_eq!(err.limit(), Some(Limit::LineMinor));
        assert!(err.to_string().contains("lines[1].amount_minor"), "{err}");
        assert!(err.to_string().contains("max_line_minor"), "{err}");
    }

    #[test]
    fn lines_each_within_their_limit_may_still_break_the_receipt_limit() {
        let l = Limits::DEFAULT;
        let lines = vec![line(l.max_line_minor.get()); 11];
        assert_eq!(
            l.check_lines(&lines).unwrap_err().limit(),
            Some(Limit::ReceiptMinor)
        );
        assert_eq!(l.check_lines(&lines[..10]), Ok(()));
    }

    #[test]
    fn lines_at_i64_max_sum_without_overflow() {
        let lines = vec![line(i64::MAX); 1_000];
        let err = Limits::CEILING.check_lines(&lines).unwrap_err();
        assert_eq!(err.limit(), Some(Limit::LineMinor));
    }

    #[test]
    fn a_hostile_entry_with_i64_max_points_is_refused_by_name() {
        let card = CardId::parse("4006381333931").expect("valid card");
        let e = entry(EntryBody::Welcome(WelcomeEntry {
            card,
            points: Points(i64::MAX),
        }));
        let err = validate(&e, &Limits::CEILING).unwrap_err();
        assert_eq!(err.limit(), Some(Limit::EntryPoints));
    }

    #[test]
    fn negative_figures_are_refused() {
        let rules = ProgramRules::default();
        let mut sale = price_sale(
            &rules,
            &[line(10_000)],
            Points(0),
            None,
            date!(2026 - 11 - 24),
        )
        .expect("a small sale prices");
        sale.accrued_points = Points(-5);
        let err = validate(&sale_entry(sale), &Limits::CEILING).unwrap_err();
        assert!(matches!(err, LimitError::Negative { .. }), "{err}");
    }

    #[test]
    fn a_balance_above_the_card_limit_is_refused() {
        let l = Limits::DEFAULT;
        let max = i128::from(l.max_card_balance_points.get());
        assert_eq!(l.check_balance(max), Ok(()));
        assert_eq!(l.check_balance(-max * 2), Ok(()));
        assert_eq!(
            l.check_balance(max + 1).unwrap_err().limit(),
            Some(Limit::CardBalancePoints)
        );
    }

    proptest! {
        /// Whatever a till accepts within the ceilings prices to an entry HQ accepts:
        /// no figure the till takes is one HQ cannot apply.
        #[test]
        fn every_receipt_within_the_ceilings_prices_to_an_entry_within_them(
            // One line up to half the receipt ceiling, up to 39 more of 1/80 each: the
            // sum reaches the ceiling but never passes it.
            first in 0i64..=Limits::CEILING.max_receipt_minor.get() / 2,
            rest in proptest::collection::vec(0i64..=Limits::CEILING.max_receipt_minor.get() / 80, 0..40),
            redeem_share in 0u32..=1_000,
            returned in 0u32..=1,
        ) {
            let amounts: Vec<i64> = std::iter::once(first).chain(rest).collect();
            let lines: Vec<Line> = amounts.iter().map(|&a| line(a)).collect();
            prop_assert_eq!(Limits::CEILING.check_lines(&lines), Ok(()));
            let rules = richest_rules();
            let total: i64 = amounts.iter().sum();
            let redeem = Points(total / 1_000 * i64::from(redeem_share));
            let sale = price_sale(&rules, &lines, redeem, None, date!(2026 - 11 - 24))
                .expect("a receipt within the ceilings prices");
            prop_assert_eq!(validate(&sale_entry(sale.clone()), &Limits::CEILING), Ok(()));
            let before = vec![returned; sale.lines.len()];
            if let Ok(ret) = price_return(&sale, &before, &[]) {
                prop_assert_eq!(Limits::CEILING.check_return(&ret), Ok(()));
            }
        }

        #[test]
        fn a_figure_is_refused_exactly_when_it_is_above_its_limit(amount in any::<i64>()) {
            let l = Limits::DEFAULT;
            let result = l.check_lines(&[line(amount)]);
            let ok = (0..=l.max_line_minor.get()).contains(&amount);
            prop_assert_eq!(result.is_ok(), ok);
        }
    }
}
