//! The BG/NBD log-likelihood of many customers, arranged so that a fit evaluates it fast.
//!
//! Identical histories are counted once with a weight, and the ln Γ terms, which depend
//! on x alone, are computed once per distinct x: on CDNOW's 23,570 customers that leaves
//! a few hundred ln Γ calls and a few logarithms per distinct repeat buyer per evaluation.
//! The formula is in the parent module's doc.

use libm::lgamma;

use super::{Activity, BgNbdParams};

/// Customers grouped by frequency, identical histories merged.
pub(super) struct Histories {
    groups: Vec<SameFrequency>,
}

struct SameFrequency {
    frequency: f64,
    customers: f64,
    histories: Vec<Weighted>,
}

struct Weighted {
    recency: f64,
    age: f64,
    customers: f64,
}

impl Histories {
    pub(super) fn new(activities: &[Activity]) -> Self {
        let mut sorted: Vec<&Activity> = activities.iter().collect();
        sorted.sort_by(|x, y| {
            x.frequency
                .cmp(&y.frequency)
                .then(x.recency.total_cmp(&y.recency))
                .then(x.age.total_cmp(&y.age))
        });
        let groups = sorted
            .chunk_by(|x, y| x.frequency == y.frequency)
            .map(|same| SameFrequency {
                frequency: f64::from(same[0].frequency),
                customers: same.len() as f64,
                histories: same
                    .chunk_by(|x, y| x == y)
                    .map(|identical| Weighted {
                        recency: identical[0].recency,
                        age: identical[0].age,
                        customers: identical.len() as f64,
                    })
                    .collect(),
            })
            .collect();
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
            for history in &group.histories {
                let ln_alpha_age = (alpha + history.age).ln();
                let a3 = -(r + x) * ln_alpha_age;
                let per_customer = if x == 0.0 {
                    a3
                } else {
                    let log_odds =
                        params.dropout_log_odds(x, ln_alpha_age, (alpha + history.recency).ln());
                    // ln(e^{A₃} + e^{A₄}) = A₃ + ln(1 + e^{A₄ − A₃}), without overflow.
                    a3 + log_odds.max(0.0) + (-log_odds.abs()).exp().ln_1p()
                };
                total += history.customers * per_customer;
            }
        }
        total
    }
}
