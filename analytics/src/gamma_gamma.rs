//! The Gamma-Gamma model of spend per purchase: what a customer's future baskets are worth.
//!
//! Sources: Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves for customer
//! base analysis", Journal of Marketing Research 42(4), 415–430 (the model, after Colombo
//! & Jiang 1999), and Fader & Hardie (2013), "The Gamma-Gamma model of monetary value"
//! (brucehardie.com/notes/025), whose formulas are the ones below; the `lifetimes`
//! package's `GammaGammaFitter` implements the same.
//!
//! Story: the value of each of a customer's purchases is Gamma(p, ν) (shape p, rate ν),
//! so their mean purchase is p/ν; across customers ν ~ Gamma(q, γ). Given x repeat
//! purchases with mean value m̄, the density of m̄ is
//!
//! ```text
//! f(m̄ | p, q, γ, x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q · m̄^(px−1) · x^(px) / (γ + m̄x)^(px+q)
//! ```
//!
//! and the fit maximises Σ ln f over the repeat buyers, in log space ([`crate::mle`]),
//! starting from p = 1, q = 2, γ = the mean of the m̄ (so the start's population mean
//! pγ/(q−1) is the data's, in whatever currency unit). γ carries the currency unit: in
//! minor units it is 100× the dollar figure of the literature; p and q have no unit.
//!
//! The expected value of the customer's future purchases is the posterior mean
//!
//! ```text
//! E[M | x, m̄] = p (γ + x m̄) / (px + q − 1)
//!             = (q−1)/(px+q−1) · pγ/(q−1) + px/(px+q−1) · m̄
//! ```
//!
//! a weighted average of the population mean pγ/(q−1) and the customer's own mean m̄, with
//! more weight on m̄ the more purchases it rests on. It exists only when q > 1. A customer
//! without repeat purchases (x = 0) gets the population mean.
//!
//! Assumption worth checking on new data: spend per purchase is independent of how often
//! a customer buys (on CDNOW the correlation is about 0.11).
//!
//! The lifetime value combining this with the BG/NBD purchase forecast is in
//! [`crate::clv`].
//!
//! Only customers with at least one repeat purchase and a positive mean enter the fit
//! (ln m̄ must exist). A repeat buyer whose refunds leave a mean ≤ 0 is forecast with
//! m̄ = 0, which the posterior mean handles: it pulls them below the population mean.

use libm::lgamma;

use crate::error::{Error, Model};
use crate::frequency_groups::{FrequencyGroup, group_by_frequency};
use crate::mle;

/// A repeat buyer's spend: x ≥ 1 repeat purchases with mean value m̄ > 0 (minor units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepeatSpend {
    frequency: u32,
    mean_value: f64,
}

impl RepeatSpend {
    /// Checks x ≥ 1 and a finite m̄ > 0.
    pub fn new(frequency: u32, mean_value: f64) -> Result<Self, Error> {
        if frequency == 0 {
            return Err(Error::InvalidInput {
                what: "frequency of a repeat buyer",
                expected: ">= 1",
                value: 0.0,
            });
        }
        if !(mean_value.is_finite() && mean_value > 0.0) {
            return Err(Error::InvalidInput {
                what: "mean repeat purchase value",
                expected: "finite and > 0",
                value: mean_value,
            });
        }
        Ok(RepeatSpend {
            frequency,
            mean_value,
        })
    }

    /// Repeat purchases (x).
    pub fn frequency(&self) -> u32 {
        self.frequency
    }

    /// Their mean value (m̄), minor units.
    pub fn mean_value(&self) -> f64 {
        self.mean_value
    }
}

/// Gamma-Gamma parameters: purchase value ~ Gamma(p, ν), ν ~ Gamma(q, γ).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGammaParams {
    p: f64,
    q: f64,
    gamma: f64,
}

/// The outcome of [`fit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGammaFit {
    /// Maximum-likelihood parameters.
    pub params: GammaGammaParams,
    /// The summed log-likelihood they reach.
    pub log_likelihood: f64,
    /// Standard errors of ln p, ln q, ln γ from the observed information: roughly the
    /// relative standard error of each parameter.
    pub log_standard_errors: [f64; 3],
    /// Repeat buyers fitted.
    pub customers: usize,
    /// Likelihood evaluations the optimiser used.
    pub evaluations: usize,
}

impl GammaGammaParams {
    /// Checks that every parameter is finite and > 0.
    pub fn new(p: f64, q: f64, gamma: f64) -> Result<Self, Error> {
        for (what, value) in [("p", p), ("q", q), ("gamma", gamma)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::InvalidInput {
                    what,
                    expected: "finite and > 0",
                    value,
                });
            }
        }
        Ok(GammaGammaParams { p, q, gamma })
    }

    /// Shape of a purchase's value.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Shape of the distribution of the value's rate across customers.
    pub fn q(&self) -> f64 {
        self.q
    }

    /// Scale of the distribution of the value's rate across customers (minor units).
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// Summed log-likelihood Σ ln f(m̄ | p, q, γ, x) of the repeat buyers.
    pub fn log_likelihood(&self, spends: &[RepeatSpend]) -> f64 {
        Spends::new(spends).log_likelihood(self)
    }

    /// Mean value of a purchase across all customers, pγ/(q − 1); needs q > 1.
    pub fn mean_spend(&self) -> Result<f64, Error> {
        self.expected_spend(0, 0.0)
    }

    /// Expected value of a future purchase of a customer with `frequency` repeat
    /// purchases of mean value `mean_value` (finite, ≥ 0; ignored when frequency = 0).
    pub fn expected_spend(&self, frequency: u32, mean_value: f64) -> Result<f64, Error> {
        if !(mean_value.is_finite() && mean_value >= 0.0) {
            return Err(Error::InvalidInput {
                what: "mean repeat purchase value",
                expected: "finite and >= 0",
                value: mean_value,
            });
        }
        if self.q <= 1.0 {
            return Err(Error::UndefinedMeanSpend { q: self.q });
        }
        let x = f64::from(frequency);
        let spend = self.p * (self.gamma + x * mean_value) / (self.p * x + self.q - 1.0);
        if spend.is_finite() {
            Ok(spend)
        } else {
            Err(Error::NonFinite {
                what: "expected spend per purchase",
            })
        }
    }
}

/// Fits (p, q, γ) by maximum likelihood on the repeat buyers' spends.
pub fn fit(spends: &[RepeatSpend]) -> Result<GammaGammaFit, Error> {
    let model = Model::GammaGamma;
    if spends.is_empty() {
        return Err(Error::NoRepeatBuyers { model });
    }
    let customers = spends.len() as f64;
    let mean = spends.iter().map(|s| s.mean_value).sum::<f64>() / customers;
    let grouped = Spends::new(spends);
    let estimate = mle::maximise(
        model,
        ["p", "q", "gamma"],
        [1.0, 2.0, mean],
        customers,
        |&[p, q, gamma]| grouped.log_likelihood(&GammaGammaParams { p, q, gamma }),
    )?;
    let [p, q, gamma] = estimate.params;
    Ok(GammaGammaFit {
        params: GammaGammaParams::new(p, q, gamma)?,
        log_likelihood: estimate.log_likelihood,
        log_standard_errors: estimate.log_standard_errors,
        customers: spends.len(),
        evaluations: estimate.evaluations,
    })
}

/// Repeat buyers grouped by frequency ([`crate::frequency_groups`]), with Σ ln m̄ of each
/// group precomputed: one logarithm per distinct buyer per evaluation.
struct Spends {
    groups: Vec<FrequencyGroup<f64>>,
    sum_ln_mean: Vec<f64>,
}

impl Spends {
    fn new(spends: &[RepeatSpend]) -> Self {
        let rows = spends.iter().map(|s| (s.frequency, s.mean_value)).collect();
        let groups = group_by_frequency(rows, f64::total_cmp);
        let sum_ln_mean = groups
            .iter()
            .map(|g| {
                g.distinct
                    .iter()
                    .map(|(m, customers)| customers * m.ln())
                    .sum()
            })
            .collect();
        Spends {
            groups,
            sum_ln_mean,
        }
    }

    fn log_likelihood(&self, params: &GammaGammaParams) -> f64 {
        let &GammaGammaParams { p, q, gamma } = params;
        let common = q * gamma.ln() - lgamma(q);
        let mut total = 0.0;
        for (group, sum_ln_mean) in self.groups.iter().zip(&self.sum_ln_mean) {
            let x = group.frequency;
            let px = p * x;
            total += group.customers * (common + lgamma(px + q) - lgamma(px) + px * x.ln())
                + (px - 1.0) * sum_ln_mean;
            for &(mean, customers) in &group.distinct {
                total -= customers * (px + q) * (gamma + mean * x).ln();
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spend(x: u32, m: f64) -> RepeatSpend {
        RepeatSpend::new(x, m).unwrap()
    }

    /// The density of the module doc typed in directly.
    fn textbook_log_density(params: &GammaGammaParams, s: &RepeatSpend) -> f64 {
        let GammaGammaParams { p, q, gamma } = *params;
        let (x, m) = (f64::from(s.frequency), s.mean_value);
        lgamma(p * x + q) - lgamma(p * x) - lgamma(q)
            + q * gamma.ln()
            + (p * x - 1.0) * m.ln()
            + p * x * x.ln()
            - (p * x + q) * (gamma + m * x).ln()
    }

    #[test]
    fn the_likelihood_is_the_density_summed_over_buyers() {
        let spends = [
            spend(1, 1177.0),
            spend(1, 1177.0),
            spend(2, 2234.5),
            spend(5, 4410.2),
        ];
        let params = GammaGammaParams::new(6.25, 3.74, 1544.0).unwrap();
        let want: f64 = spends
            .iter()
            .map(|s| textbook_log_density(&params, s))
            .sum();
        let got = params.log_likelihood(&spends);
        assert!((got - want).abs() <= 1e-12 * want.abs(), "{got} vs {want}");
    }

    #[test]
    fn expected_spend_agrees_with_lifetimes() {
        // lifetimes 0.11.3 conditional_expected_average_profit with its CDNOW fit
        // (p, q, v) = (6.249572, 3.744225, 15.443521) in dollars, for customers
        // 00004 (x = 2, m̄ = 22.345) and 00021 (x = 1, m̄ = 11.77).
        let params = GammaGammaParams::new(6.249572, 3.744225, 15.443521).unwrap();
        let customer_4 = params.expected_spend(2, 22.345).unwrap();
        assert!((customer_4 - 24.653_919).abs() < 1e-5, "{customer_4}");
        let customer_21 = params.expected_spend(1, 11.77).unwrap();
        assert!((customer_21 - 18.910_018).abs() < 1e-5, "{customer_21}");
    }

    #[test]
    fn expected_spend_moves_from_the_population_mean_towards_the_own_mean() {
        let params = GammaGammaParams::new(6.0, 4.0, 1500.0).unwrap();
        let population = params.mean_spend().unwrap();
        assert_eq!(population, 6.0 * 1500.0 / 3.0);
        assert_eq!(params.expected_spend(0, 99_999.0).unwrap(), population);
        let big_spender = 10_000.0;
        let mut previous = population;
        for x in [1, 2, 5, 20, 100] {
            let e = params.expected_spend(x, big_spender).unwrap();
            assert!(e > previous && e < big_spender);
            previous = e;
        }
        // A refund-heavy repeat buyer (mean clipped to 0) is pulled below the population.
        assert!(params.expected_spend(3, 0.0).unwrap() < population);
    }

    #[test]
    fn no_mean_spend_exists_when_q_is_at_most_one() {
        let params = GammaGammaParams::new(2.0, 0.9, 100.0).unwrap();
        assert_eq!(
            params.expected_spend(3, 50.0),
            Err(Error::UndefinedMeanSpend { q: 0.9 })
        );
    }

    #[test]
    fn refuses_spends_outside_the_model() {
        assert!(RepeatSpend::new(0, 10.0).is_err());
        assert!(RepeatSpend::new(2, 0.0).is_err());
        assert!(RepeatSpend::new(2, -5.0).is_err());
        assert!(RepeatSpend::new(2, f64::NAN).is_err());
        let params = GammaGammaParams::new(6.0, 4.0, 1500.0).unwrap();
        assert!(params.expected_spend(2, -1.0).is_err());
        assert!(GammaGammaParams::new(1.0, 0.0, 1.0).is_err());
    }

    #[test]
    fn a_fit_needs_repeat_buyers_and_differences_between_them() {
        assert_eq!(
            fit(&[]),
            Err(Error::NoRepeatBuyers {
                model: Model::GammaGamma
            })
        );
        // Everybody spends exactly the same: no heterogeneity to estimate.
        let identical: Vec<RepeatSpend> = (1..40).map(|x| spend(x, 2500.0)).collect();
        assert!(matches!(
            fit(&identical),
            Err(Error::Degenerate { .. } | Error::NotConverged { .. })
        ));
    }

    /// Mean values of `count` repeat buyers simulated from the model with p = 6, q = 4,
    /// γ = 1500 (integer shapes, so each Gamma draw is a sum of exponentials).
    fn simulated(count: usize) -> Vec<RepeatSpend> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(20050401);
        let mut gamma_draw = |shape: u32, rate: f64| -> f64 {
            (0..shape)
                .map(|_| -(1.0 - rng.random::<f64>()).ln())
                .sum::<f64>()
                / rate
        };
        (0..count)
            .map(|i| {
                let nu = gamma_draw(4, 1500.0);
                let x = 1 + (i % 8) as u32;
                let total: f64 = (0..x).map(|_| gamma_draw(6, nu)).sum();
                spend(x, total / f64::from(x))
            })
            .collect()
    }

    #[test]
    fn a_fit_recovers_the_parameters_it_was_simulated_from() {
        let fitted = fit(&simulated(3000)).unwrap();
        let p = fitted.params;
        // Within three of the fit's own standard errors of the truth.
        for ((got, truth), se) in [p.p, p.q, p.gamma]
            .into_iter()
            .zip([6.0f64, 4.0, 1500.0])
            .zip(fitted.log_standard_errors)
        {
            assert!(
                (got / truth).ln().abs() < 3.0 * se,
                "{got} vs {truth} (se {se})"
            );
            assert!(se < 0.2, "{se}");
        }
    }

    #[test]
    fn a_fit_is_unit_free_except_for_gamma() {
        let spends = simulated(500);
        let in_cents: Vec<RepeatSpend> = spends
            .iter()
            .map(|s| spend(s.frequency, s.mean_value * 100.0))
            .collect();
        let dollars = fit(&spends).unwrap().params;
        let cents = fit(&in_cents).unwrap().params;
        assert!((dollars.p / cents.p - 1.0).abs() < 1e-5);
        assert!((dollars.q / cents.q - 1.0).abs() < 1e-5);
        assert!((cents.gamma / (100.0 * dollars.gamma) - 1.0).abs() < 1e-5);
    }

    proptest! {
        #[test]
        fn fits_of_small_spend_histories_give_parameters_or_an_error_never_nan(
            rows in proptest::collection::vec((1u32..20, 1.0f64..100_000.0), 0..25),
        ) {
            let spends: Vec<RepeatSpend> = rows.iter().map(|&(x, m)| spend(x, m)).collect();
            match fit(&spends) {
                Ok(fitted) => {
                    let p = fitted.params;
                    prop_assert!([p.p, p.q, p.gamma].iter().all(|v| v.is_finite() && *v > 0.0));
                    prop_assert!(fitted.log_likelihood.is_finite());
                    prop_assert!(p.log_likelihood(&spends).is_finite());
                }
                Err(error) => prop_assert!(!matches!(error, Error::NonFinite { .. }), "{error}"),
            }
        }
    }
}
