//! `sync-server`: HQ's side of the loyalty system. It receives every till's journal
//! exactly once over HTTPS, keeps the points ledger (SQLite by default, or PostgreSQL
//! shared by several stateless instances), serves the change feed and live balances
//! to agents, and gives HQ IT its admin commands and reports.
//!
//! Business rules live in [`ledger`] (pure, no I/O); [`store`] only loads and writes
//! rows; [`http`] turns requests into store calls; `main.rs` only parses arguments
//! and calls [`cli::run`].

pub mod admin;
pub mod cli;
pub mod dashboard;
pub mod http;
pub mod import;
pub mod jobs;
pub mod keys;
pub mod ledger;
pub mod metrics;
pub mod pki;
pub mod reports;
pub mod server;
pub mod store;
