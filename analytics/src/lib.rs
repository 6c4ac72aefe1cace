//! Customer lifetime value of loyalty members, from their purchase histories.
//!
//! This crate owns the statistics behind HQ's CLV report: the per-member RFM summary
//! ([`summary`]), the BG/NBD model of how often members buy and whether they are still
//! members ([`bgnbd`]), the Gamma-Gamma model of what their purchases are worth
//! ([`gamma_gamma`]), the lifetime value and per-member forecast combining both ([`clv`]),
//! and the "members at risk" list ([`at_risk`]). Their numerical parts are a
//! hypergeometric series ([`hypergeometric`]), a Nelder–Mead minimiser, a log-space
//! maximum-likelihood driver and the customer grouping both likelihoods share.
//!
//! It does no I/O and knows no database: purchases come in as values, fitted parameters
//! and forecasts go out. Loading purchases from the ledger and printing the report is the
//! server's job.
//!
//! Money stays integer minor units at the edges: purchase amounts come in as `i64` minor
//! units and the summary's values are `i64` sums; forecast amounts go out rounded to
//! `i64` minor units. Inside, the models work in `f64`: these are statistical estimates
//! (an expected spend of 2,465.39 cents), not ledger amounts, and nothing here is ever
//! posted to a card. Every fallible step returns [`Error`] instead of panicking or
//! producing NaN.
//!
//! Typical use, with weeks as the time unit throughout:
//!
//! ```no_run
//! use analytics::{at_risk, clv, summary};
//! use time::macros::date;
//!
//! # fn main() -> Result<(), analytics::Error> {
//! # let purchases: Vec<summary::Purchase<u64>> = Vec::new();
//! // purchases: Vec<Purchase<CardKey>>, one per sale or refund, read by the caller.
//! let summaries = summary::summarise(&purchases, date!(2024 - 06 - 30))?;
//! let model = clv::CustomerValueModel::fit(&summaries)?;
//! let forecasts = model.forecast(&summaries, &clv::ForecastOptions::default())?;
//! let at_risk = at_risk::members_at_risk(&forecasts, &at_risk::AtRiskRule::default())?;
//! # let _ = at_risk;
//! # Ok(())
//! # }
//! ```

pub mod at_risk;
pub mod bgnbd;
pub mod clv;
mod error;
mod frequency_groups;
pub mod gamma_gamma;
pub mod hypergeometric;
mod mle;
mod nelder_mead;
pub mod summary;

pub use error::{Error, Model};
