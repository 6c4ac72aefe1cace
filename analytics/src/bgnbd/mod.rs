//! The BG/NBD model of repeat purchasing: who is still a customer, and how often they buy.
//!
//! Source: Fader, Hardie & Lee (2005), "Counting your customers the easy way: an
//! alternative to the Pareto/NBD model", Marketing Science 24(2), 275–284, and the note
//! Fader, Hardie & Lee (2008), "Computing P(alive) using the BG/NBD model"
//! (brucehardie.com/notes/021).
//!
//! Story: while active, a customer buys at a Poisson rate λ; after each purchase they
//! drop out for good with probability p. Across customers λ ~ Gamma(r, α) (shape r,
//! rate α) and p ~ Beta(a, b). A customer's history is (x, tₓ, T): repeat purchases,
//! time of the last one and time since the first, all in one time unit (weeks here).
//!
//! Formulas implemented (section 3 of the 2005 paper unless said otherwise):
//! - log-likelihood of one customer, as ln L = A₁ + A₂ + ln(e^{A₃} + δ e^{A₄})
//!   with A₁ = ln Γ(r+x) − ln Γ(r) + r ln α, A₂ = ln Γ(a+b) + ln Γ(b+x) − ln Γ(b) −
//!   ln Γ(a+b+x), A₃ = −(r+x) ln(α+T), A₄ = ln a − ln(b+x−1) − (r+x) ln(α+tₓ), δ = [x>0]
//!   ([`likelihood`]);
//! - P(alive | x, tₓ, T) = 1 / (1 + δ · a/(b+x−1) · ((α+T)/(α+tₓ))^{r+x}) (the 2008
//!   note). A customer with no repeat purchase is alive with probability 1: in this
//!   model drop-out can only happen right after a purchase;
//! - expected purchases of a new customer in (0, t]:
//!   E[X(t)] = (a+b−1)/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b; a+b−1; t/(α+t))];
//! - expected purchases in the next t given the history:
//!   E[Y(t) | x, tₓ, T] = P(alive) · (a+b+x−1)/(a−1) ·
//!   [1 − ((α+T)/(α+T+t))^{r+x} ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))].
//!   The first is the second at x = tₓ = T = 0, so both go through one function.
//!
//! Both expectations divide by a − 1, and a fitted a is often close to 1 (0.79 on
//! CDNOW). With z = t/(α+T+t), ε = a − 1, c = a+b+x−1 and L = ln(1 − z), Euler's
//! transformation ₂F₁(r+x, b+x; c; z) = (1−z)^{ε−r−x} ₂F₁(c−r−x, ε; c; z) turns the
//! bracketed factor into
//!
//! ```text
//! c/(a−1) · [1 − (1−z)^{r+x} ₂F₁(…)] = c · (−L) · exprel(εL) − e^{εL} · E(a+b−1−r, ε; c; z)
//! ```
//!
//! where exprel(y) = (e^y − 1)/y and E is the scaled excess of
//! [`crate::hypergeometric::scaled_excess`]; neither term is singular at a = 1, so there is
//! no 0/0 and no cancellation of two large numbers near it.
//!
//! The fit maximises the summed log-likelihood over (r, α, a, b) > 0 in log space
//! ([`crate::mle`]), starting from r = a = b = 1 and α = ΣT / Σx (so the start's mean
//! purchase rate r/α matches the data's, whatever the time unit).

mod likelihood;

use crate::error::{Error, Model};
use crate::hypergeometric::scaled_excess;
use crate::mle;

use likelihood::Histories;

/// One customer's repeat-purchase history: (x, tₓ, T) in one time unit (weeks from
/// [`crate::summary`]). Valid by construction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Activity {
    frequency: u32,
    recency: f64,
    age: f64,
}

impl Activity {
    /// Checks and builds a history: 0 ≤ recency ≤ age, all finite, and recency > 0
    /// exactly when there are repeat purchases (they come after the first one).
    pub fn new(frequency: u32, recency: f64, age: f64) -> Result<Self, Error> {
        if !(recency.is_finite() && recency >= 0.0) {
            return Err(invalid("recency", "finite and >= 0", recency));
        }
        if !(age.is_finite() && age >= recency) {
            return Err(invalid("age (T)", "finite and >= recency", age));
        }
        if (frequency > 0) != (recency > 0.0) {
            return Err(invalid(
                "recency",
                "> 0 exactly when frequency > 0",
                recency,
            ));
        }
        Ok(Activity {
            frequency,
            recency,
            age,
        })
    }

    /// From whole days, converted to weeks. The summary's day counts satisfy
    /// [`Activity::new`]'s rules by construction (repeat days come after the first day,
    /// the last purchase day is not after the calibration end).
    pub(crate) fn from_days(frequency: u32, recency_days: u32, age_days: u32) -> Self {
        Activity {
            frequency,
            recency: f64::from(recency_days) / 7.0,
            age: f64::from(age_days) / 7.0,
        }
    }

    /// Repeat purchases (x).
    pub fn frequency(&self) -> u32 {
        self.frequency
    }

    /// Time from the first to the last purchase (tₓ).
    pub fn recency(&self) -> f64 {
        self.recency
    }

    /// Time from the first purchase to the end of the history (T).
    pub fn age(&self) -> f64 {
        self.age
    }
}

fn invalid(what: &'static str, expected: &'static str, value: f64) -> Error {
    Error::InvalidInput {
        what,
        expected,
        value,
    }
}

/// BG/NBD parameters: purchase rates ~ Gamma(r, α), drop-out probability ~ Beta(a, b).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbdParams {
    pub(crate) r: f64,
    pub(crate) alpha: f64,
    pub(crate) a: f64,
    pub(crate) b: f64,
}

/// The outcome of [`fit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbdFit {
    /// Maximum-likelihood parameters.
    pub params: BgNbdParams,
    /// The summed log-likelihood they reach.
    pub log_likelihood: f64,
    /// Standard errors of ln r, ln α, ln a, ln b from the observed information: roughly
    /// the relative standard error of each parameter (0.05 = ±5 %).
    pub log_standard_errors: [f64; 4],
    /// Customers fitted.
    pub customers: usize,
    /// Likelihood evaluations the optimiser used.
    pub evaluations: usize,
}

impl BgNbdParams {
    /// Checks that every parameter is finite and > 0.
    pub fn new(r: f64, alpha: f64, a: f64, b: f64) -> Result<Self, Error> {
        for (what, value) in [("r", r), ("alpha", alpha), ("a", a), ("b", b)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(invalid(what, "finite and > 0", value));
            }
        }
        Ok(BgNbdParams { r, alpha, a, b })
    }

    /// Shape of the purchase-rate distribution.
    pub fn r(&self) -> f64 {
        self.r
    }

    /// Rate (inverse time scale) of the purchase-rate distribution.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// First shape of the drop-out probability distribution.
    pub fn a(&self) -> f64 {
        self.a
    }

    /// Second shape of the drop-out probability distribution.
    pub fn b(&self) -> f64 {
        self.b
    }

    /// Summed log-likelihood of the histories.
    pub fn log_likelihood(&self, activities: &[Activity]) -> f64 {
        Histories::new(activities).log_likelihood(self)
    }

    /// Probability that the customer has not dropped out by the end of their history.
    pub fn p_alive(&self, activity: &Activity) -> f64 {
        if activity.frequency == 0 {
            return 1.0;
        }
        let x = f64::from(activity.frequency);
        let log_odds = self.dropout_log_odds(
            x,
            (self.alpha + activity.age).ln(),
            (self.alpha + activity.recency).ln(),
        );
        // 1 / (1 + e^d), written so that neither branch overflows.
        if log_odds > 0.0 {
            let e = (-log_odds).exp();
            e / (1.0 + e)
        } else {
            1.0 / (1.0 + log_odds.exp())
        }
    }

    /// ln of P(dropped out) / P(alive) for a customer with x > 0 repeat purchases, given
    /// ln(α+T) and ln(α+tₓ): A₄ − A₃ of the likelihood. One rule for the likelihood and
    /// for P(alive).
    pub(crate) fn dropout_log_odds(&self, x: f64, ln_alpha_age: f64, ln_alpha_recency: f64) -> f64 {
        (self.a / (self.b + x - 1.0)).ln() + (self.r + x) * (ln_alpha_age - ln_alpha_recency)
    }

    /// Expected purchases in the next `t` time units of a customer with this history.
    /// `t` must be finite and ≥ 0.
    pub fn expected_purchases(&self, activity: &Activity, t: f64) -> Result<f64, Error> {
        Ok(
            self.p_alive(activity)
                * self.purchases_if_alive(activity.frequency, activity.age, t)?,
        )
    }

    /// Expected purchases in (0, t] of a customer who has just made their first purchase.
    pub fn expected_purchases_new_customer(&self, t: f64) -> Result<f64, Error> {
        self.purchases_if_alive(0, 0.0, t)
    }

    /// The conditional expectation without its P(alive) factor, in the form without a 0/0 at a = 1 (module doc).
    fn purchases_if_alive(&self, frequency: u32, age: f64, t: f64) -> Result<f64, Error> {
        if !(t.is_finite() && t >= 0.0) {
            return Err(invalid("forecast horizon t", "finite and >= 0", t));
        }
        if t == 0.0 {
            return Ok(0.0);
        }
        let x = f64::from(frequency);
        let base = self.alpha + age;
        let z = t / (base + t);
        let ln_one_minus_z = -(t / base).ln_1p();
        let epsilon = self.a - 1.0;
        let c = self.a + self.b + x - 1.0;
        let excess = scaled_excess(self.a + self.b - 1.0 - self.r, epsilon, c, z)?;
        let y = epsilon * ln_one_minus_z;
        let expected = c * (-ln_one_minus_z) * exprel(y) - y.exp() * excess;
        if !expected.is_finite() {
            return Err(Error::NonFinite {
                what: "expected number of purchases",
            });
        }
        // The exact value is positive; a last-digit negative can only be rounding.
        Ok(expected.max(0.0))
    }
}

/// (e^y − 1) / y, accurate near y = 0 where the quotient is 0/0.
fn exprel(y: f64) -> f64 {
    if y.abs() < 1e-5 {
        // Taylor series; the first omitted term, y⁴/120, is below 10⁻²² here.
        1.0 + y / 2.0 * (1.0 + y / 3.0 * (1.0 + y / 4.0))
    } else {
        y.exp_m1() / y
    }
}

/// Fits (r, α, a, b) by maximum likelihood.
///
/// Needs at least one customer and at least one repeat buyer; fails with
/// [`Error::NotConverged`] or [`Error::Degenerate`] rather than returning parameters that
/// are not a maximum.
pub fn fit(activities: &[Activity]) -> Result<BgNbdFit, Error> {
    let model = Model::BgNbd;
    if activities.is_empty() {
        return Err(Error::NoCustomers { model });
    }
    let repeat_purchases: f64 = activities.iter().map(|h| f64::from(h.frequency)).sum();
    if repeat_purchases == 0.0 {
        return Err(Error::NoRepeatBuyers { model });
    }
    // A repeat buyer has T ≥ tₓ > 0, so the total age is positive.
    let total_age: f64 = activities.iter().map(|h| h.age).sum();
    let histories = Histories::new(activities);
    let estimate = mle::maximise(
        model,
        ["r", "alpha", "a", "b"],
        [1.0, total_age / repeat_purchases, 1.0, 1.0],
        activities.len() as f64,
        |&[r, alpha, a, b]| histories.log_likelihood(&BgNbdParams { r, alpha, a, b }),
    )?;
    let [r, alpha, a, b] = estimate.params;
    Ok(BgNbdFit {
        params: BgNbdParams::new(r, alpha, a, b)?,
        log_likelihood: estimate.log_likelihood,
        log_standard_errors: estimate.log_standard_errors,
        customers: activities.len(),
        evaluations: estimate.evaluations,
    })
}

#[cfg(test)]
mod tests;
