//! Program rules: versioned data owned by HQ, evaluated identically by the agent and
//! the server (see [`crate::evaluate`]).
//!
//! The serde field names are the TOML keys of the agent's `[program]` table and of
//! the rules file that `sync-server rules set` loads (`[[tier]]`, `[[promotion]]`).

use crate::card_numbers::CardNumberRules;
use crate::money::{BasisPoints, Money, Points};
use serde::{Deserialize, Serialize};
use time::Date;

/// The whole program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProgramRules {
    /// Version number; HQ increases it with every `rules set`. 0 = local rules.
    pub version: u64,
    /// Money value of one point, in minor units (100 = one point pays 1.00).
    pub point_value_minor: Money,
    /// Base accrual rate, in basis points of the amount paid in money.
    pub accrual_bp: BasisPoints,
    /// Largest share of a receipt that points may pay, in basis points.
    pub max_redeem_share_bp: BasisPoints,
    /// Smallest receipt total on which points may be redeemed.
    pub min_receipt_for_redeem_minor: Money,
    /// Days before accrued points become spendable (0 = at once).
    pub pending_days: u32,
    /// Days after which unspent points expire, oldest first (0 = never).
    pub expiry_days: u32,
    /// Points granted once, the first time HQ sees a card.
    pub welcome_bonus_points: Points,
    /// Categories that neither accrue nor may be paid with points (e.g. tobacco).
    pub excluded_categories: Vec<String>,
    /// Categories that may be paid with points but do not accrue.
    pub no_accrual_categories: Vec<String>,
    /// Categories that accrue but may not be paid with points.
    pub no_redeem_categories: Vec<String>,
    /// Tiers by rolling 12-month spend, each with its own accrual rate.
    #[serde(rename = "tier")]
    pub tiers: Vec<Tier>,
    /// Promotions that multiply accrual on categories or SKUs within dates.
    #[serde(rename = "promotion")]
    pub promotions: Vec<Promotion>,
    /// What a valid card number is (`[card_numbers]`); default: any digits.
    pub card_numbers: CardNumberRules,
}

/// A tier: cards whose rolling 12-month spend reaches `min_spend_minor` accrue at
/// `accrual_bp` instead of the base rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Tier name shown to the till (`silver`, `gold`).
    pub name: String,
    /// Rolling 12-month spend that reaches this tier, in minor units.
    pub min_spend_minor: Money,
    /// Accrual rate of the tier, in basis points.
    pub accrual_bp: BasisPoints,
}

/// A promotion: lines whose SKU or category is listed accrue `multiplier_percent`
/// of the normal points (200 = double points) from `starts` to `ends` inclusive.
/// With both lists empty it applies to every line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    /// Name, for reports.
    pub name: String,
    /// Accrual multiplier in percent (100 = no change, 300 = triple points).
    pub multiplier_percent: u32,
    /// Categories it applies to.
    #[serde(default)]
    pub categories: Vec<String>,
    /// SKUs it applies to.
    #[serde(default)]
    pub skus: Vec<String>,
    /// First day (inclusive).
    pub starts: Date,
    /// Last day (inclusive).
    pub ends: Date,
}

impl Default for ProgramRules {
    /// The example program of the design: 1 point = 1.00, 5 % accrual, points pay
    /// at most half a receipt, points expire after a year, tobacco excluded.
    fn default() -> Self {
        Self {
            version: 0,
            point_value_minor: Money(100),
            accrual_bp: BasisPoints(500),
            max_redeem_share_bp: BasisPoints(5_000),
            min_receipt_for_redeem_minor: Money(0),
            pending_days: 0,
            expiry_days: 365,
            welcome_bonus_points: Points(0),
            excluded_categories: vec!["tobacco".to_owned()],
            no_accrual_categories: Vec::new(),
            no_redeem_categories: Vec::new(),
            tiers: Vec::new(),
            promotions: Vec::new(),
            card_numbers: CardNumberRules::default(),
        }
    }
}

/// A rule value out of bounds; `field` is the key path (`tier[1].accrual_bp`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RulesError {
    /// Key path of the bad value, as written in the rules file.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> RulesError {
    RulesError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Largest point value accepted: 10 000.00 per point is far beyond any real program.
const MAX_POINT_VALUE_MINOR: i64 = 1_000_000;
/// Accrual above 100 % of the price is refused: it would be a typo, not a program.
const MAX_ACCRUAL_BP: u32 = 10_000;
const MAX_DAYS: u32 = 36_500;
const MAX_MULTIPLIER_PERCENT: u32 = 10_000;
const MAX_WELCOME_POINTS: i64 = 1_000_000;

impl ProgramRules {
    /// Checks every value and names the first bad one.
    pub fn validate(&self) -> Result<(), RulesError> {
        if !(1..=MAX_POINT_VALUE_MINOR).contains(&self.point_value_minor.get()) {
            return Err(bad(
                "point_value_minor",
                format!("must be 1 to {MAX_POINT_VALUE_MINOR}"),
            ));
        }
        check_bp("accrual_bp", self.accrual_bp, MAX_ACCRUAL_BP)?;
        check_bp("max_redeem_share_bp", self.max_redeem_share_bp, 10_000)?;
        if self.min_receipt_for_redeem_minor.is_negative() {
            return Err(bad("min_receipt_for_redeem_minor", "must not be negative"));
        }
        if self.pending_days > MAX_DAYS {
            return Err(bad("pending_days", format!("must be at most {MAX_DAYS}")));
        }
        if self.expiry_days > MAX_DAYS {
            return Err(bad("expiry_days", format!("must be at most {MAX_DAYS}")));
        }
        if self.expiry_days != 0 && self.expiry_days <= self.pending_days {
            return Err(bad(
                "expiry_days",
                "must be longer than pending_days (or 0 for never)",
            ));
        }
        if !(0..=MAX_WELCOME_POINTS).contains(&self.welcome_bonus_points.get()) {
            return Err(bad(
                "welcome_bonus_points",
                format!("must be 0 to {MAX_WELCOME_POINTS}"),
            ));
        }
        for (key, list) in [
            ("excluded_categories", &self.excluded_categories),
            ("no_accrual_categories", &self.no_accrual_categories),
            ("no_redeem_categories", &self.no_redeem_categories),
        ] {
            check_names(key, list)?;
        }
        self.validate_tiers()?;
        self.validate_promotions()
    }

    fn validate_tiers(&self) -> Result<(), RulesError> {
        let mut previous: Option<&Tier> = None;
        for (i, tier) in self.tiers.iter().enumerate() {
            let at = |key: &str| format!("tier[{i}].{key}");
            if tier.name.trim().is_empty() || tier.name.len() > 64 {
                return Err(bad(at("name"), "must be 1 to 64 characters"));
            }
            if tier.min_spend_minor.is_negative() {
                return Err(bad(at("min_spend_minor"), "must not be negative"));
            }
            check_bp(&at("accrual_bp"), tier.accrual_bp, MAX_ACCRUAL_BP)?;
            if let Some(prev) = previous {
                if tier.min_spend_minor <= prev.min_spend_minor {
                    return Err(bad(
                        at("min_spend_minor"),
                        "tiers must be listed by strictly increasing min_spend_minor",
                    ));
                }
                if self.tiers[..i].iter().any(|t| t.name == tier.name) {
                    return Err(bad(at("name"), format!("duplicate tier '{}'", tier.name)));
                }
            }
            previous = Some(tier);
        }
        Ok(())
    }

    fn validate_promotions(&self) -> Result<(), RulesError> {
        for (i, promo) in self.promotions.iter().enumerate() {
            let at = |key: &str| format!("promotion[{i}].{key}");
            if promo.name.trim().is_empty() {
                return Err(bad(at("name"), "must not be empty"));
            }
            if !(100..=MAX_MULTIPLIER_PERCENT).contains(&promo.multiplier_percent) {
                return Err(bad(
                    at("multiplier_percent"),
                    format!("must be 100 to {MAX_MULTIPLIER_PERCENT}"),
                ));
            }
            if promo.ends < promo.starts {
                return Err(bad(at("ends"), "must not be before starts"));
            }
            check_names(&at("categories"), &promo.categories)?;
            check_names(&at("skus"), &promo.skus)?;
        }
        Ok(())
    }

    /// The tier a card with `spend` over the last 12 months belongs to: the highest
    /// tier whose threshold it reaches, or none.
    pub fn tier_for_spend(&self, spend: Money) -> Option<&Tier> {
        self.tiers.iter().rev().find(|t| spend >= t.min_spend_minor)
    }

    /// The accrual rate for a card in tier `tier` (base rate when the tier is unknown
    /// to these rules, e.g. after HQ renamed it).
    pub fn accrual_rate(&self, tier: Option<&str>) -> BasisPoints {
        tier.and_then(|name| self.tiers.iter().find(|t| t.name == name))
            .map_or(self.accrual_bp, |t| t.accrual_bp)
    }

    /// True when lines of `category` accrue points.
    pub fn accrues(&self, category: &str) -> bool {
        !contains(&self.excluded_categories, category)
            && !contains(&self.no_accrual_categories, category)
    }

    /// True when lines of `category` may be paid with points.
    pub fn redeemable(&self, category: &str) -> bool {
        !contains(&self.excluded_categories, category)
            && !contains(&self.no_redeem_categories, category)
    }

    /// Multiplier in percent for a line on `day`: the largest of the promotions that
    /// apply (promotions do not stack), 100 when none does.
    pub fn multiplier_percent(&self, sku: &str, category: &str, day: Date) -> u32 {
        self.promotions
            .iter()
            .filter(|p| p.starts <= day && day <= p.ends)
            .filter(|p| {
                (p.categories.is_empty() && p.skus.is_empty())
                    || contains(&p.categories, category)
                    || contains(&p.skus, sku)
            })
            .map(|p| p.multiplier_percent)
            .max()
            .unwrap_or(100)
    }
}

fn contains(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x == item)
}

fn check_bp(field: &str, value: BasisPoints, max: u32) -> Result<(), RulesError> {
    if value.get() > max {
        return Err(bad(field, format!("must be at most {max} basis points")));
    }
    Ok(())
}

fn check_names(field: &str, list: &[String]) -> Result<(), RulesError> {
    for (i, name) in list.iter().enumerate() {
        if name.trim().is_empty() || name.len() > 64 {
            return Err(bad(format!("{field}[{i}]"), "must be 1 to 64 characters"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn tier(name: &str, min: i64, bp: u32) -> Tier {
        Tier {
            name: name.into(),
            min_spend_minor: Money(min),
            accrual_bp: BasisPoints(bp),
        }
    }

    #[test]
    fn default_rules_are_valid() {
        assert_eq!(ProgramRules::default().validate(), Ok(()));
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut r = ProgramRules {
            accrual_bp: BasisPoints(20_000),
            ..ProgramRules::default()
        };
        assert_eq!(r.validate().unwrap_err().field, "accrual_bp");
        r.accrual_bp = BasisPoints(500);
        r.point_value_minor = Money(0);
        assert_eq!(r.validate().unwrap_err().field, "point_value_minor");
        r.point_value_minor = Money(100);
        r.tiers = vec![tier("silver", 1000, 700), tier("gold", 500, 900)];
        assert_eq!(r.validate().unwrap_err().field, "tier[1].min_spend_minor");
    }

    #[test]
    fn promotion_bounds_are_checked() {
        let r = ProgramRules {
            promotions: vec![Promotion {
                name: "x".into(),
                multiplier_percent: 50,
                categories: vec![],
                skus: vec![],
                starts: date!(2026 - 01 - 01),
                ends: date!(2026 - 01 - 31),
            }],
            ..ProgramRules::default()
        };
        assert_eq!(
            r.validate().unwrap_err().field,
            "promotion[0].multiplier_percent"
        );
    }

    #[test]
    fn highest_reached_tier_wins() {
        let r = ProgramRules {
            tiers: vec![tier("silver", 10_000, 700), tier("gold", 50_000, 1000)],
            ..ProgramRules::default()
        };
        assert_eq!(r.tier_for_spend(Money(9_999)), None);
        assert_eq!(r.tier_for_spend(Money(10_000)).unwrap().name, "silver");
        assert_eq!(r.tier_for_spend(Money(80_000)).unwrap().name, "gold");
        assert_eq!(r.accrual_rate(Some("gold")), BasisPoints(1000));
        assert_eq!(r.accrual_rate(Some("platinum")), BasisPoints(500));
    }

    #[test]
    fn promotions_apply_within_their_dates_and_do_not_stack() {
        let promo = |m, cats: &[&str]| Promotion {
            name: "p".into(),
            multiplier_percent: m,
            categories: cats.iter().map(|s| s.to_string()).collect(),
            skus: vec![],
            starts: date!(2026 - 11 - 01),
            ends: date!(2026 - 11 - 30),
        };
        let r = ProgramRules {
            promotions: vec![promo(200, &["dairy"]), promo(300, &["dairy"])],
            ..ProgramRules::default()
        };
        assert_eq!(
            r.multiplier_percent("m1", "dairy", date!(2026 - 11 - 30)),
            300
        );
        assert_eq!(
            r.multiplier_percent("m1", "dairy", date!(2026 - 12 - 01)),
            100
        );
        assert_eq!(
            r.multiplier_percent("m1", "bread", date!(2026 - 11 - 15)),
            100
        );
    }

    #[test]
    fn rules_round_trip_through_json() {
        let r = ProgramRules {
            tiers: vec![tier("gold", 1, 900)],
            ..ProgramRules::default()
        };
        let back: ProgramRules = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
