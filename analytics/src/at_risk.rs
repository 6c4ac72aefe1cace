//! "Members at risk": valuable members the model thinks have probably lapsed.
//!
//! The rule (defaults in [`AtRiskRule::default`]):
//! - **valuable**: historical value in the top third of the customer base, i.e. at least
//!   the value of the member ranked ⌈n/3⌉ by historical value (ties at that value are
//!   all in), and above zero;
//! - **probably lapsed**: P(alive) < 0.5, i.e. the model thinks it more likely than not
//!   that they have stopped buying.
//!
//! Members who pass both are listed by **value at stake** = historical value ×
//! (1 − P(alive)), highest first (then by historical value, then by key): the members
//! whose loss costs most and is likeliest, where a win-back offer pays best.
//!
//! In BG/NBD a member who bought once and never returned has P(alive) = 1 (drop-out
//! happens only right after a purchase), so one-time buyers never appear here; their
//! outlook is in their expected purchases instead.

use std::cmp::Reverse;

use crate::clv::MemberForecast;
use crate::error::Error;

/// Thresholds of the at-risk list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AtRiskRule {
    /// Listed only if P(alive) is below this, in (0, 1].
    pub p_alive_below: f64,
    /// Listed only if in this top share by historical value, in (0, 1].
    pub top_value_share: f64,
}

impl Default for AtRiskRule {
    /// P(alive) < 0.5 and the top third by historical value.
    fn default() -> Self {
        AtRiskRule {
            p_alive_below: 0.5,
            top_value_share: 1.0 / 3.0,
        }
    }
}

/// A listed member and what is at stake.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberAtRisk<'a, K> {
    /// The member's forecast.
    pub member: &'a MemberForecast<K>,
    /// Historical value × (1 − P(alive)), minor units.
    pub value_at_stake_minor: i64,
}

/// The members at risk among `forecasts`, most value at stake first.
pub fn members_at_risk<'a, K: Ord>(
    forecasts: &'a [MemberForecast<K>],
    rule: &AtRiskRule,
) -> Result<Vec<MemberAtRisk<'a, K>>, Error> {
    for (what, value) in [
        ("p_alive_below", rule.p_alive_below),
        ("top_value_share", rule.top_value_share),
    ] {
        if !(value > 0.0 && value <= 1.0) {
            return Err(Error::InvalidInput {
                what,
                expected: "in (0, 1]",
                value,
            });
        }
    }
    let Some(threshold) = top_share_threshold(forecasts, rule.top_value_share) else {
        return Ok(Vec::new());
    };
    let mut listed: Vec<MemberAtRisk<'a, K>> = forecasts
        .iter()
        .filter(|m| {
            m.historical_value_minor >= threshold
                && m.historical_value_minor > 0
                && m.p_alive < rule.p_alive_below
        })
        .map(|member| MemberAtRisk {
            member,
            // ≤ the historical value, which is an i64: the cast cannot overflow.
            value_at_stake_minor: (member.historical_value_minor as f64 * (1.0 - member.p_alive))
                .round() as i64,
        })
        .collect();
    listed.sort_by_key(|m| {
        (
            Reverse(m.value_at_stake_minor),
            Reverse(m.member.historical_value_minor),
            &m.member.customer,
        )
    });
    Ok(listed)
}

/// The historical value of the member ranked ⌈n · share⌉ from the top; `None` if empty.
fn top_share_threshold<K>(forecasts: &[MemberForecast<K>], share: f64) -> Option<i64> {
    let mut values: Vec<i64> = forecasts.iter().map(|m| m.historical_value_minor).collect();
    values.sort_unstable_by_key(|v| Reverse(*v));
    let rank = ((values.len() as f64 * share).ceil() as usize).clamp(1, values.len().max(1));
    values.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(customer: u32, historical_value_minor: i64, p_alive: f64) -> MemberForecast<u32> {
        MemberForecast {
            customer,
            historical_value_minor,
            p_alive,
            expected_purchases: 0.0,
            expected_spend_minor: 0,
            lifetime_value_minor: 0,
        }
    }

    fn listed(forecasts: &[MemberForecast<u32>], rule: &AtRiskRule) -> Vec<u32> {
        members_at_risk(forecasts, rule)
            .unwrap()
            .iter()
            .map(|m| m.member.customer)
            .collect()
    }

    #[test]
    fn lists_valuable_members_who_have_probably_lapsed_by_value_at_stake() {
        let forecasts = [
            member(1, 90_000, 0.9), // valuable, alive
            member(2, 80_000, 0.2), // valuable, lapsed: 64,000 at stake
            member(3, 70_000, 0.1), // valuable, lapsed: 63,000 at stake
            member(4, 10_000, 0.0), // lapsed but not in the top third
            member(5, 5_000, 0.1),
            member(6, 1_000, 0.05),
            member(7, 900, 0.3),
            member(8, 800, 0.3),
            member(9, 700, 0.3),
        ];
        assert_eq!(listed(&forecasts, &AtRiskRule::default()), vec![2, 3]);
        let at_risk = members_at_risk(&forecasts, &AtRiskRule::default()).unwrap();
        assert_eq!(at_risk[0].value_at_stake_minor, 64_000);
    }

    #[test]
    fn ties_at_the_threshold_are_all_in_and_exactly_half_alive_is_not_at_risk() {
        let forecasts = [
            member(1, 500, 0.1),
            member(2, 500, 0.4),
            member(3, 500, 0.5),
            member(4, 100, 0.1),
        ];
        // ⌈4/3⌉ = 2nd value is 500: all three at 500 are valuable; P(alive) = 0.5 is not < 0.5.
        assert_eq!(listed(&forecasts, &AtRiskRule::default()), vec![1, 2]);
    }

    #[test]
    fn members_without_positive_value_are_never_at_risk() {
        let forecasts = [member(1, 0, 0.0), member(2, -300, 0.0)];
        assert!(listed(&forecasts, &AtRiskRule::default()).is_empty());
        assert!(listed(&[], &AtRiskRule::default()).is_empty());
    }

    #[test]
    fn a_rule_outside_its_range_is_refused() {
        for rule in [
            AtRiskRule {
                p_alive_below: 0.0,
                top_value_share: 0.3,
            },
            AtRiskRule {
                p_alive_below: 0.5,
                top_value_share: 1.5,
            },
            AtRiskRule {
                p_alive_below: f64::NAN,
                top_value_share: 0.3,
            },
        ] {
            assert!(members_at_risk(&[member(1, 10, 0.1)], &rule).is_err());
        }
    }
}
