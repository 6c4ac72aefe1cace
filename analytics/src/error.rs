//! The crate's one error type: every way a summary, a fit or a forecast can refuse.
//!
//! Every public function that can meet bad input or a numerical dead end returns
//! [`Error`] instead of panicking or producing NaN, so a report built on this crate can
//! show the cause to an operator.

use std::fmt;

/// Which model a fit error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// The BG/NBD purchase-count model ([`crate::bgnbd`]).
    BgNbd,
    /// The Gamma-Gamma spend model ([`crate::gamma_gamma`]).
    GammaGamma,
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Model::BgNbd => "BG/NBD",
            Model::GammaGamma => "Gamma-Gamma",
        })
    }
}

/// Why a summary, fit or forecast could not be produced.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A customer's summed amounts leave the range of `i64` minor units.
    #[error("the summed purchase amounts of one customer overflow 64-bit minor units")]
    ValueOverflow,
    /// A number given to a model is outside its domain (negative, NaN, recency after age...).
    #[error("{what} must be {expected}, got {value}")]
    InvalidInput {
        /// The argument or field at fault.
        what: &'static str,
        /// The domain it must lie in.
        expected: &'static str,
        /// The value that was given.
        value: f64,
    },
    /// A fit was asked for with no customers.
    #[error("the {model} fit needs at least one customer, got none")]
    NoCustomers {
        /// The model being fitted.
        model: Model,
    },
    /// No customer made a repeat purchase, so purchase rates and drop-out cannot be told apart.
    #[error(
        "no customer made a repeat purchase: the {model} model cannot be fitted on this history"
    )]
    NoRepeatBuyers {
        /// The model being fitted.
        model: Model,
    },
    /// The optimiser did not settle within its evaluation budget.
    #[error(
        "the {model} fit did not converge within {evaluations} likelihood evaluations (the likelihood may have no maximum on this history)"
    )]
    NotConverged {
        /// The model being fitted.
        model: Model,
        /// Evaluations spent.
        evaluations: usize,
    },
    /// The likelihood has no clear maximum: it keeps improving, or stays flat, as a
    /// parameter runs towards 0 or infinity, so the data cannot identify the model (for
    /// example nobody ever lapses, or repeat buyers' baskets show no spread).
    #[error(
        "the {model} fit cannot pin down {parameter} (it drifted to {value:e}): this history cannot identify the model"
    )]
    Degenerate {
        /// The model being fitted.
        model: Model,
        /// The parameter that is not identified.
        parameter: &'static str,
        /// Where the search left it.
        value: f64,
    },
    /// The hypergeometric series behind an expected purchase count did not converge or
    /// lost too many digits (a horizon far beyond the history, or extreme parameters).
    #[error("the hypergeometric series for z = {z} did not give an accurate sum ({reason})")]
    Series {
        /// The series argument.
        z: f64,
        /// What went wrong.
        reason: &'static str,
    },
    /// The spend model's q ≤ 1: the fitted spend distribution has no finite mean.
    #[error("the fitted spend model has q = {q} <= 1, so expected spend is undefined")]
    UndefinedMeanSpend {
        /// The fitted q.
        q: f64,
    },
    /// A computed figure is not finite or does not fit in `i64` minor units.
    #[error("the computed {what} is not a finite amount")]
    NonFinite {
        /// The figure at fault.
        what: &'static str,
    },
}
