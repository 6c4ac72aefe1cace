//! Fits both models on a CDNOW file and prints the parameters, the hold-out check and
//! how long each step took (the figures quoted in analytics/README.md):
//!
//! ```sh
//! cargo run --release -p analytics --example cdnow_fit                 # CDNOW_master.txt
//! cargo run --release -p analytics --example cdnow_fit CDNOW_sample.txt
//! ```

#[path = "../tests/common/cdnow.rs"]
mod cdnow;

use std::time::Instant;

use analytics::at_risk::{AtRiskRule, members_at_risk};
use analytics::bgnbd::{self, Activity};
use analytics::clv::{CustomerValueModel, ForecastOptions};
use analytics::summary::{CustomerSummary, summarise};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "CDNOW_master.txt".to_owned());
    let purchases = cdnow::load(&file)?;
    let end = cdnow::date(cdnow::CALIBRATION_END);

    let clock = Instant::now();
    let summaries = summarise(&purchases, end)?;
    let summary_time = clock.elapsed();
    let repeat_buyers = summaries.iter().filter(|s| s.frequency() > 0).count();
    println!(
        "{file}: {} purchases, {} customers ({repeat_buyers} repeat buyers) by {end}; summary {summary_time:.1?}",
        purchases.len(),
        summaries.len()
    );

    let activities: Vec<Activity> = summaries.iter().map(CustomerSummary::activity).collect();
    let clock = Instant::now();
    let model = CustomerValueModel::fit(&summaries)?;
    let fit_time = clock.elapsed();
    let clock = Instant::now();
    let bgnbd_only = bgnbd::fit(&activities)?;
    let bgnbd_time = clock.elapsed();
    let (bg, gg) = (model.purchases.params, model.spend.params);
    println!(
        "BG/NBD: r {:.4} alpha {:.4} a {:.4} b {:.4}, LL {:.2}, {} evaluations, {bgnbd_time:.1?}",
        bg.r(),
        bg.alpha(),
        bg.a(),
        bg.b(),
        bgnbd_only.log_likelihood,
        bgnbd_only.evaluations
    );
    println!(
        "  log standard errors {:.4?}",
        model.purchases.log_standard_errors
    );
    println!(
        "Gamma-Gamma: p {:.4} q {:.4} gamma {:.2} (cents), {} buyers, {} evaluations",
        gg.p(),
        gg.q(),
        gg.gamma(),
        model.spend.customers,
        model.spend.evaluations
    );
    println!(
        "  log standard errors {:.4?}",
        model.spend.log_standard_errors
    );
    println!("both fits {fit_time:.1?}");

    let holdout_weeks = (cdnow::date(cdnow::DATA_END) - end).whole_days() as f64 / 7.0;
    let clock = Instant::now();
    let mut predicted = 0.0;
    for activity in &activities {
        predicted += bg.expected_purchases(activity, holdout_weeks)?;
    }
    let actual: u32 = summaries.iter().map(|s| s.holdout_frequency()).sum();
    println!(
        "hold-out {holdout_weeks} weeks: predicted {predicted:.1} repeat purchase days, actual {actual} ({:+.1} %), {:.1?}",
        (predicted / f64::from(actual) - 1.0) * 100.0,
        clock.elapsed()
    );

    let clock = Instant::now();
    let forecasts = model.forecast(&summaries, &ForecastOptions::default())?;
    let forecast_time = clock.elapsed();
    let at_risk = members_at_risk(&forecasts, &AtRiskRule::default())?;
    let total_value: i64 = forecasts.iter().map(|f| f.lifetime_value_minor).sum();
    println!(
        "forecast of {} members (52-week purchases, 12-month value at 1 %/month) {forecast_time:.1?}: total 12-month value ${:.2}, {} members at risk",
        forecasts.len(),
        total_value as f64 / 100.0,
        at_risk.len()
    );
    Ok(())
}
