//! The BG/NBD log-likelihood of many customers, arranged so that a fit evaluates it fast
//! ([`crate::frequency_groups`]). The formula is in the parent module's doc.

use libm::lgamma;

use super::{Activity, BgNbdParams};
use crate::frequency_groups::{FrequencyGroup, group_by_frequency};

/// Customers grouped by frequency; the datum is (recency, age).
pub(super) struct Histories {
    groups: Vec<FrequencyGroup<(f64, f64)>>,
}

impl Histories {
    pub(super) fn new(activities: &[Activity]) -> Self {
        let rows = activities
            .iter()
            .map(|h| (h.frequency, (h.recency, h.age)))
            .collect();
        let groups = group_by_frequency(rows, |x, y| x.0.total_cmp(&y.0).then(x.1.total_cmp(&y.1)));
        Histories { groups }
    }

    /// Σ ln L over all customers: A₁ + A₂ + ln(e^{A₃} + δ e^{A₄}) each.
    pub(super) fn log_likelihood(&self, params: &BgNbdParams) -> f64 {
        let &BgNbdParams { r, alpha, a, b } = params;
        // The parts of A₁ + A₂ that do not depend on x.
        let common = r * alpha.ln() + lgamma(a + b) - lgamma(b) - lgamma(r);
        let mut total = 0.0;
        for group in &self.groups {
            let x = group.frequency;
            let by_frequency = lgamma(r + x) + lgamma(b + x) - lgamma(a + b + x);
            total += group.customers * (common + by_frequency);
            for &((recency, age), customers) in &group.distinct {
                let ln_alpha_age = (alpha + age).ln();
                let a3 = -(r + x) * ln_alpha_age;
                let per_customer = if x == 0.0 {
                    a3
                } else {
                    let log_odds = params.dropout_log_odds(x, ln_alpha_age, (alpha + recency).ln());
                    // ln(e^{A₃} + e^{A₄}) = A₃ + ln(1 + e^{A₄ − A₃}), without overflow.
                    a3 + log_odds.max(0.0) + (-log_odds.abs()).exp().ln_1p()
                };
                total += customers * per_customer;
            }
        }
        total
    }
}
