//! The models on real data: the CDNOW sample of Fader, Hardie & Lee (2005) must give
//! their published parameters, and the forecast must track the hold-out period.
//!
//! Reads `shared/data/cdnow/CDNOW_sample.txt`; without it these tests fail (they do not
//! skip), naming the path they looked at.

#[path = "common/cdnow.rs"]
mod cdnow;

use analytics::at_risk::{AtRiskRule, members_at_risk};
use analytics::bgnbd::{self, Activity};
use analytics::clv::{CustomerValueModel, ForecastOptions};
use analytics::gamma_gamma::{self, RepeatSpend};
use analytics::summary::{CustomerSummary, summarise};

fn sample() -> Vec<CustomerSummary<u32>> {
    let purchases = cdnow::load("CDNOW_sample.txt").unwrap_or_else(|e| panic!("{e}"));
    summarise(&purchases, cdnow::date(cdnow::CALIBRATION_END)).expect("summary of CDNOW")
}

fn activities(summaries: &[CustomerSummary<u32>]) -> Vec<Activity> {
    summaries.iter().map(CustomerSummary::activity).collect()
}

fn within(got: f64, published: f64, share: f64) -> bool {
    (got / published - 1.0).abs() <= share
}

#[test]
fn the_sample_is_the_papers_customer_base() {
    let summaries = sample();
    assert_eq!(summaries.len(), 2357);
    assert_eq!(summaries.iter().filter(|s| s.frequency() > 0).count(), 946);
}

#[test]
fn the_bgnbd_fit_reproduces_the_published_parameters() {
    let fitted = bgnbd::fit(&activities(&sample())).expect("BG/NBD fit of CDNOW");
    let p = fitted.params;
    // Fader, Hardie & Lee (2005), section 4: r = 0.243, α = 4.414, a = 0.793, b = 2.426,
    // LL = −9582.4.
    for (name, got, published) in [
        ("r", p.r(), 0.243),
        ("alpha", p.alpha(), 4.414),
        ("a", p.a(), 0.793),
        ("b", p.b(), 2.426),
    ] {
        assert!(
            within(got, published, 0.01),
            "{name} = {got}, published {published}"
        );
    }
    assert!(
        within(fitted.log_likelihood, -9582.4, 1e-5),
        "LL = {}",
        fitted.log_likelihood
    );
    println!(
        "BG/NBD on the CDNOW sample: {p:?}, LL {:.3}",
        fitted.log_likelihood
    );
}

#[test]
fn the_gamma_gamma_fit_reproduces_the_published_parameters() {
    let spends: Vec<RepeatSpend> = sample()
        .iter()
        .filter_map(|s| RepeatSpend::new(s.frequency(), s.mean_repeat_value_minor()?).ok())
        .collect();
    assert_eq!(spends.len(), 946);
    let p = gamma_gamma::fit(&spends)
        .expect("Gamma-Gamma fit of CDNOW")
        .params;
    // Published p = 6.25, q = 3.74, γ = 15.44 (dollars); our γ is in cents.
    for (name, got, published) in [
        ("p", p.p(), 6.25),
        ("q", p.q(), 3.74),
        ("gamma (dollars)", p.gamma() / 100.0, 15.44),
    ] {
        assert!(
            within(got, published, 0.01),
            "{name} = {got}, published {published}"
        );
    }
    println!("Gamma-Gamma on the CDNOW sample: {p:?}");
}

#[test]
fn one_time_buyers_are_alive_and_expected_purchases_grow_with_the_horizon() {
    let summaries = sample();
    let params = bgnbd::fit(&activities(&summaries)).expect("fit").params;
    for summary in &summaries {
        let activity = summary.activity();
        if summary.frequency() == 0 {
            assert_eq!(params.p_alive(&activity), 1.0);
        }
        let mut previous = 0.0;
        for weeks in [1.0, 4.0, 13.0, 26.0, 39.0, 52.0, 104.0] {
            let expected = params
                .expected_purchases(&activity, weeks)
                .expect("forecast");
            assert!(
                expected > previous,
                "customer {}: {expected} after {previous}",
                summary.customer()
            );
            previous = expected;
        }
    }
}

#[test]
fn the_holdout_forecast_tracks_what_customers_did() {
    let summaries = sample();
    let params = bgnbd::fit(&activities(&summaries)).expect("fit").params;
    let end = cdnow::date(cdnow::CALIBRATION_END);
    let holdout_weeks = (cdnow::date(cdnow::DATA_END) - end).whole_days() as f64 / 7.0;
    assert_eq!(holdout_weeks, 39.0);
    let predicted: f64 = summaries
        .iter()
        .map(|s| {
            params
                .expected_purchases(&s.activity(), holdout_weeks)
                .expect("forecast")
        })
        .sum();
    let actual: u32 = summaries.iter().map(|s| s.holdout_frequency()).sum();
    println!("weeks 40-78 repeat purchase days: predicted {predicted:.1}, actual {actual}");
    // Measured: 1,653 predicted vs 1,882 actual (−12 %), the same as `lifetimes` gets with
    // these parameters; the stationary model under-forecasts this cohort's second year.
    // Sampling noise alone is ≈ √1882 ≈ 2 %, so ±20 % does not test precision; it catches
    // a broken forecast (figures computed with `lifetimes`): the new-customer E[X(39)] for
    // everyone gives 2,817 (+50 %), leaving out P(alive) 2,565 (+36 %), and a horizon of
    // 273 days read as weeks 6,616 (×3.5).
    assert!(
        within(predicted, f64::from(actual), 0.20),
        "{predicted} vs {actual}"
    );
}

#[test]
fn every_member_gets_a_finite_forecast_and_the_at_risk_list_follows_its_rule() {
    let summaries = sample();
    let model = CustomerValueModel::fit(&summaries).expect("fit both models");
    let forecasts = model
        .forecast(&summaries, &ForecastOptions::default())
        .expect("forecast");
    assert_eq!(forecasts.len(), summaries.len());
    for f in &forecasts {
        assert!((0.0..=1.0).contains(&f.p_alive) && f.expected_purchases.is_finite());
        assert!(f.expected_spend_minor > 0 && f.lifetime_value_minor >= 0);
    }
    let rule = AtRiskRule::default();
    let at_risk = members_at_risk(&forecasts, &rule).expect("at-risk list");
    assert!(!at_risk.is_empty());
    let mut values: Vec<i64> = forecasts.iter().map(|f| f.historical_value_minor).collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    let threshold = values[values.len().div_ceil(3) - 1];
    for m in &at_risk {
        assert!(m.member.p_alive < 0.5 && m.member.historical_value_minor >= threshold);
    }
    assert!(
        at_risk
            .windows(2)
            .all(|w| w[0].value_at_stake_minor >= w[1].value_at_stake_minor)
    );
    println!(
        "{} of {} members at risk; most at stake: {:?}",
        at_risk.len(),
        forecasts.len(),
        at_risk
            .first()
            .map(|m| (m.member.customer, m.value_at_stake_minor))
    );
}

#[test]
fn a_missing_data_file_is_an_error_naming_where_it_looked() {
    let error = cdnow::load("no_such_file.txt").expect_err("file does not exist");
    assert!(
        error.contains("shared/data/cdnow/no_such_file.txt"),
        "{error}"
    );
}
