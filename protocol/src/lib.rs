//! Shared types of the loyalty agent and HQ.
//!
//! This crate owns the product's vocabulary and arithmetic: money and points
//! ([`money`]), identifiers ([`ids`]), scanner codes and app tokens ([`codes`],
//! [`token`]), program rules and their evaluation ([`rules`], [`receipt`],
//! [`evaluate`]), the rules that keep points from being spent twice ([`escrow`]), the maximums of money and points ([`limits`]), journal entries ([`journal`]) and the sync wire format ([`wire`]).
//!
//! It does no I/O and has no async runtime: the agent and the server call the same
//! pure functions, so they compute the same points, and property tests can hammer them.
//! Time comes in as arguments.

pub mod card_numbers;
pub mod codes;
pub mod escrow;
pub mod evaluate;
pub mod ids;
pub mod journal;
pub mod json;
pub mod limits;
pub mod money;
pub mod receipt;
pub mod rules;
pub mod schema;
pub mod token;
pub mod wire;

pub use ids::{CardId, ReceiptId, ReturnId, Seq, StoreId, TerminalId};
pub use money::{BasisPoints, Money, Points};
