//! Typed configuration of both binaries: `agent.toml` ([`agent::AgentConfig`]),
//! `sync-server.toml` ([`server::ServerConfig`]) and HQ's program rules file
//! ([`protocol::rules::ProgramRules`]).
//!
//! Loading parses TOML into these types (unknown keys refused), fills defaults,
//! validates values and reports every problem as `file:line: key: message`, so a store
//! manager can fix a file without reading code. This crate reads files but starts
//! nothing.

pub mod agent;
pub mod server;

pub use agent::AgentConfig;
pub use server::{DatabaseUrl, ServerConfig};
