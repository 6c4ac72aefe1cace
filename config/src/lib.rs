//! Typed configuration of both binaries: `agent.toml` ([`agent::AgentConfig`]),
//! `sync-server.toml` ([`server::ServerConfig`]) and HQ's program rules file
//! ([`protocol::rules::ProgramRules`]).
//!
//! Loading parses TOML into these types (unknown keys refused), fills defaults,
//! validates values and reports every problem as `file:line: key: message`, so a store
//! manager can fix a file without reading code. Relative paths in a file are resolved
//! against the file's directory. This crate reads files but starts nothing.
//!
//! ```text
//! agent.toml:3: unknown key 'terminal_idd' in [store], did you mean 'terminal_id'?
//! agent.toml:17: scanner[1].baud: 12345 is not a standard baud rate; use one of 1200, …
//! ```

#![warn(missing_docs)]

mod address;
pub mod agent;
pub mod clock;
mod error;
mod explain;
mod files;
mod load;
mod locate;
mod resolve;
pub mod server;
mod validate;

pub use agent::AgentConfig;
pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use files::{check_files, check_server_files};
pub use server::{DatabaseUrl, ServerConfig};

use protocol::rules::ProgramRules;
use std::path::Path;

/// Reads and checks an `agent.toml`. Errors name the file as `path` is written.
pub fn load_agent(path: &Path) -> Result<AgentConfig, ConfigErrors> {
    let (text, base_dir) = load::read(path)?;
    parse_agent(&text, &path.display().to_string(), &base_dir)
}

/// Parses and checks the text of an `agent.toml`. `file_name` is used in error
/// messages; relative paths are resolved against `base_dir`. An empty text gives
/// the defaults (a standalone till on `127.0.0.1:7070`).
pub fn parse_agent(
    text: &str,
    file_name: &str,
    base_dir: &Path,
) -> Result<AgentConfig, ConfigErrors> {
    let (mut config, map) = load::parse::<AgentConfig>(text, file_name)?;
    let problems = validate::check_agent(&config);
    if !problems.0.is_empty() {
        return Err(load::locate(problems.0, &map, file_name));
    }
    resolve::agent_paths(&mut config, base_dir);
    Ok(config)
}

/// Reads and checks a `sync-server.toml`. Errors name the file as `path` is written.
pub fn load_server(path: &Path) -> Result<ServerConfig, ConfigErrors> {
    let (text, base_dir) = load::read(path)?;
    parse_server(&text, &path.display().to_string(), &base_dir)
}

/// Parses and checks the text of a `sync-server.toml`; see [`parse_agent`] for the
/// arguments.
pub fn parse_server(
    text: &str,
    file_name: &str,
    base_dir: &Path,
) -> Result<ServerConfig, ConfigErrors> {
    let (mut config, map) = load::parse::<ServerConfig>(text, file_name)?;
    let problems = validate::check_server(&config);
    if !problems.0.is_empty() {
        return Err(load::locate(problems.0, &map, file_name));
    }
    resolve::server_paths(&mut config, base_dir);
    Ok(config)
}

/// Reads and checks an HQ program rules file (the file `sync-server rules set`
/// loads): the keys of the agent's `[program]` table plus `version`, `[[tier]]` and
/// `[[promotion]]`. Errors name the file as `path` is written.
pub fn load_rules(path: &Path) -> Result<ProgramRules, ConfigErrors> {
    let (text, _) = load::read(path)?;
    parse_rules(&text, &path.display().to_string())
}

/// Parses and checks the text of a program rules file. Promotion dates may be
/// strings (`"2026-11-01"`) or TOML dates (`2026-11-01`). `file_name` is used in
/// error messages.
pub fn parse_rules(text: &str, file_name: &str) -> Result<ProgramRules, ConfigErrors> {
    let (rules, map) = load::parse::<ProgramRules>(text, file_name)?;
    let mut problems = validate::Problems::default();
    problems.rules("", &rules);
    if !problems.0.is_empty() {
        return Err(load::locate(problems.0, &map, file_name));
    }
    Ok(rules)
}
