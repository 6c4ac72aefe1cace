//! `report clv`: customer lifetime value of the members, from their purchase
//! histories, through the `analytics` crate (BG/NBD for how often members buy and
//! whether they are still members, Gamma-Gamma for what a purchase is worth).
//!
//! Pure: the histories come in as `(card, at, money)` (what
//! [`crate::store::Store::member_purchases`] reads), the report goes out as a value
//! that renders as JSON or a table. Days are UTC calendar days; time is in weeks.

use analytics::at_risk::{AtRiskRule, members_at_risk};
use analytics::clv::{CustomerValueModel, ForecastOptions};
use analytics::summary::{Purchase, summarise};
use protocol::{CardId, Money};
use serde::Serialize;
use std::io::{self, Write};
use time::{Date, OffsetDateTime};

/// What to forecast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClvOptions {
    /// Last day of the calibration period (inclusive): the models see only purchases
    /// up to it; later ones are counted as the hold-out.
    pub calibration_end: Date,
    /// Horizon of the expected purchases, in weeks.
    pub horizon_weeks: u32,
    /// Rows of each list in the table (the JSON lists every member).
    pub table_rows: usize,
}

/// BG/NBD parameters (time unit: weeks).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BgNbd {
    /// Shape of the purchase-rate distribution.
    pub r: f64,
    /// Scale of the purchase-rate distribution (weeks).
    pub alpha: f64,
    /// Dropout-probability Beta parameter a.
    pub a: f64,
    /// Dropout-probability Beta parameter b.
    pub b: f64,
    /// Log-likelihood at the fit.
    pub log_likelihood: f64,
}

/// Gamma-Gamma parameters (γ in minor units).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GammaGamma {
    /// Shape of a member's spend distribution.
    pub p: f64,
    /// Shape of the distribution of members' spend scales.
    pub q: f64,
    /// Scale of the distribution of members' spend scales (minor units).
    pub gamma: f64,
}

/// One member's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberValue {
    /// The card.
    pub card: CardId,
    /// Repeat purchase days in the calibration period.
    pub frequency: u32,
    /// Weeks from the first to the last purchase day.
    pub recency_weeks: f64,
    /// Weeks from the first purchase to the calibration end.
    pub age_weeks: f64,
    /// Net money spent up to the calibration end.
    pub historical_value_minor: i64,
    /// Probability the member is still active.
    pub p_alive: f64,
    /// Expected purchase days over the horizon.
    pub expected_purchases: f64,
    /// Expected value of one future purchase.
    pub expected_spend_minor: i64,
    /// 12-month value, discounted at 1 % a month.
    pub lifetime_value_minor: i64,
    /// Purchase days after the calibration end (the hold-out, to check the forecast).
    pub holdout_purchases: u32,
}

/// A member at risk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtRisk {
    /// The card.
    pub card: CardId,
    /// Probability the member is still active.
    pub p_alive: f64,
    /// Net money spent up to the calibration end.
    pub historical_value_minor: i64,
    /// Historical value × (1 − P(alive)).
    pub value_at_stake_minor: i64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClvReport {
    /// Last day of the calibration period.
    pub calibration_end: String,
    /// Horizon of `expected_purchases`, weeks.
    pub horizon_weeks: u32,
    /// Members with a purchase up to the calibration end.
    pub member_count: usize,
    /// Of them, members with a repeat purchase.
    pub repeat_buyers: usize,
    /// The purchase model.
    pub bgnbd: BgNbd,
    /// The spend model.
    pub gamma_gamma: GammaGamma,
    /// Sum of the members' expected purchases over the horizon.
    pub expected_purchases_total: f64,
    /// Sum of the members' lifetime values.
    pub lifetime_value_total_minor: i64,
    /// Every member, by lifetime value, highest first.
    pub members: Vec<MemberValue>,
    /// Members likely gone among the top third by value (P(alive) < 0.5), most value at
    /// stake first.
    pub at_risk: Vec<AtRisk>,
}

/// Fits both models on the purchases up to the calibration end and forecasts every
/// member.
pub fn build(
    history: &[(CardId, OffsetDateTime, Money)],
    options: &ClvOptions,
) -> Result<ClvReport, analytics::Error> {
    let purchases: Vec<Purchase<CardId>> = history
        .iter()
        .map(|(card, at, money)| Purchase {
            customer: card.clone(),
            day: at.to_offset(time::UtcOffset::UTC).date(),
            amount_minor: money.get(),
        })
        .collect();
    let summaries = summarise(&purchases, options.calibration_end)?;
    let model = CustomerValueModel::fit(&summaries)?;
    let forecast_options = ForecastOptions {
        purchase_horizon_weeks: f64::from(options.horizon_weeks),
        ..ForecastOptions::default()
    };
    let forecasts = model.forecast(&summaries, &forecast_options)?;
    let at_risk = members_at_risk(&forecasts, &AtRiskRule::default())?
        .into_iter()
        .map(|m| AtRisk {
            card: m.member.customer.clone(),
            p_alive: m.member.p_alive,
            historical_value_minor: m.member.historical_value_minor,
            value_at_stake_minor: m.value_at_stake_minor,
        })
        .collect();
    let mut members: Vec<MemberValue> = summaries
        .iter()
        .zip(&forecasts)
        .map(|(s, f)| MemberValue {
            card: s.customer().clone(),
            frequency: s.frequency(),
            recency_weeks: s.recency_weeks(),
            age_weeks: s.age_weeks(),
            historical_value_minor: f.historical_value_minor,
            p_alive: f.p_alive,
            expected_purchases: f.expected_purchases,
            expected_spend_minor: f.expected_spend_minor,
            lifetime_value_minor: f.lifetime_value_minor,
            holdout_purchases: s.holdout_frequency(),
        })
        .collect();
    members.sort_by(|x, y| {
        y.lifetime_value_minor
            .cmp(&x.lifetime_value_minor)
            .then_with(|| x.card.cmp(&y.card))
    });
    let bg = model.purchases.params;
    let gg = model.spend.params;
    Ok(ClvReport {
        calibration_end: options.calibration_end.to_string(),
        horizon_weeks: options.horizon_weeks,
        member_count: summaries.len(),
        repeat_buyers: summaries.iter().filter(|s| s.frequency() > 0).count(),
        bgnbd: BgNbd {
            r: bg.r(),
            alpha: bg.alpha(),
            a: bg.a(),
            b: bg.b(),
            log_likelihood: model.purchases.log_likelihood,
        },
        gamma_gamma: GammaGamma {
            p: gg.p(),
            q: gg.q(),
            gamma: gg.gamma(),
        },
        expected_purchases_total: members.iter().map(|m| m.expected_purchases).sum(),
        lifetime_value_total_minor: members
            .iter()
            .fold(0i64, |sum, m| sum.saturating_add(m.lifetime_value_minor)),
        members,
        at_risk,
    })
}

/// The report for people: parameters, totals, the top members and those at risk
/// (card numbers masked: a table gets pasted into slides and mails).
pub fn write_table(report: &ClvReport, rows: usize, out: &mut dyn Write) -> io::Result<()> {
    let bg = &report.bgnbd;
    let gg = &report.gamma_gamma;
    writeln!(
        out,
        "calibration ends {}: {} members, {} repeat buyers",
        report.calibration_end, report.member_count, report.repeat_buyers
    )?;
    writeln!(
        out,
        "BG/NBD (weeks): r {:.4}  alpha {:.4}  a {:.4}  b {:.4}  (log-likelihood {:.1})",
        bg.r, bg.alpha, bg.a, bg.b, bg.log_likelihood
    )?;
    writeln!(
        out,
        "Gamma-Gamma:    p {:.4}  q {:.4}  gamma {:.2} (minor units)",
        gg.p, gg.q, gg.gamma
    )?;
    writeln!(
        out,
        "expected purchases in the next {} weeks: {:.1}; 12-month value of all members: {}",
        report.horizon_weeks,
        report.expected_purchases_total,
        Money(report.lifetime_value_total_minor)
    )?;
    writeln!(out, "\ntop members by 12-month value")?;
    writeln!(
        out,
        "{:<12} {:>5} {:>8} {:>10} {:>14} {:>14}",
        "card", "freq", "p_alive", "exp_purch", "hist_value", "value_12m"
    )?;
    for m in report.members.iter().take(rows) {
        writeln!(
            out,
            "{:<12} {:>5} {:>8.3} {:>10.2} {:>14} {:>14}",
            m.card.masked().to_string(),
            m.frequency,
            m.p_alive,
            m.expected_purchases,
            Money(m.historical_value_minor),
            Money(m.lifetime_value_minor)
        )?;
    }
    writeln!(
        out,
        "\nmembers at risk ({} in all; P(alive) < 0.5 among the top third by value)",
        report.at_risk.len()
    )?;
    writeln!(
        out,
        "{:<12} {:>8} {:>14} {:>14}",
        "card", "p_alive", "hist_value", "at_stake"
    )?;
    for m in report.at_risk.iter().take(rows) {
        writeln!(
            out,
            "{:<12} {:>8.3} {:>14} {:>14}",
            m.card.masked().to_string(),
            m.p_alive,
            Money(m.historical_value_minor),
            Money(m.value_at_stake_minor)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn card(n: u32) -> CardId {
        CardId::parse(&format!("97{n:010}")).expect("card")
    }

    /// A base of 300 members drawn from the BG/NBD story itself (a fixed
    /// pseudo-random sequence): each buys at their own rate, with exponential gaps,
    /// and after each purchase drops out with their own probability.
    fn history() -> Vec<(CardId, OffsetDateTime, Money)> {
        let start = datetime!(2024-01-01 12:00 UTC);
        let mut state: u64 = 42;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // 53 random bits into (0, 1).
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut out = Vec::new();
        for n in 0..300u32 {
            let mean_gap_days = 7.0 + 120.0 * uniform();
            let dropout = 0.05 + 0.5 * uniform();
            let basket = 1_000.0 + 4_000.0 * uniform();
            let mut day = 60.0 * uniform();
            while day < 400.0 {
                let amount = (basket * (0.5 + uniform())) as i64;
                out.push((
                    card(n),
                    start + time::Duration::days(day as i64),
                    Money(amount),
                ));
                if uniform() < dropout {
                    break;
                }
                day += -mean_gap_days * uniform().ln();
            }
        }
        out
    }

    fn options() -> ClvOptions {
        ClvOptions {
            calibration_end: date!(2024 - 06 - 30),
            horizon_weeks: 26,
            table_rows: 5,
        }
    }

    #[test]
    fn every_member_gets_a_forecast_and_lists_are_ordered() {
        let report = build(&history(), &options()).expect("report");
        assert_eq!(report.member_count, 300);
        assert_eq!(report.members.len(), 300);
        let repeat = report.members.iter().filter(|m| m.frequency > 0).count();
        assert_eq!(report.repeat_buyers, repeat);
        assert!(repeat > 100 && repeat < 300, "a mix of buyers: {repeat}");
        assert!(
            report
                .members
                .windows(2)
                .all(|w| w[0].lifetime_value_minor >= w[1].lifetime_value_minor)
        );
        assert!(
            report
                .at_risk
                .windows(2)
                .all(|w| w[0].value_at_stake_minor >= w[1].value_at_stake_minor)
        );
        for m in &report.members {
            assert!((0.0..=1.0).contains(&m.p_alive), "{m:?}");
            assert!(m.expected_purchases >= 0.0, "{m:?}");
        }
        if let Some(one_time) = report.members.iter().find(|m| m.frequency == 0) {
            assert_eq!(
                one_time.p_alive, 1.0,
                "BG/NBD: a one-time buyer has not dropped out"
            );
        }
    }

    #[test]
    fn purchases_after_the_calibration_end_are_only_the_holdout() {
        let mut h = history();
        h.push((card(1), datetime!(2025-03-01 10:00 UTC), Money(5_000)));
        let base = build(&history(), &options()).expect("report");
        let with_later = build(&h, &options()).expect("report");
        assert_eq!(base.bgnbd, with_later.bgnbd);
        let holdout = |r: &ClvReport| {
            r.members
                .iter()
                .find(|m| m.card == card(1))
                .expect("member")
                .holdout_purchases
        };
        assert_eq!(holdout(&with_later), holdout(&base) + 1);
    }

    #[test]
    fn the_table_masks_card_numbers() {
        let report = build(&history(), &options()).expect("report");
        let mut out = Vec::new();
        write_table(&report, 5, &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("BG/NBD (weeks): r "), "{text}");
        assert!(!text.contains(card(1).as_str()), "{text}");
        assert!(text.contains("****"), "{text}");
    }

    #[test]
    fn no_members_is_an_error_not_a_panic() {
        assert!(build(&[], &options()).is_err());
    }
}
