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
pub mod command_line;
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
use serde::de::DeserializeOwned;
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
    let mut config = parse_checked(text, file_name, |c| validate::check_agent(c).0)?;
    resolve::agent_paths(&mut config, base_dir);
    Ok(config)
}

/// [`load_agent`], and the files the config names (token, CA) must be in place: what
/// `pos-agent run` and `check-config` use, so that a missing file is named before
/// anything is created.
pub fn load_agent_ready(path: &Path) -> Result<AgentConfig, ConfigErrors> {
    ready(load_agent(path)?, path, check_files)
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
    let mut config = parse_checked(text, file_name, |c| validate::check_server(c).0)?;
    resolve::server_paths(&mut config, base_dir);
    Ok(config)
}

/// [`load_server`], and the TLS files the config names must be in place (`run`,
/// `check-config`).
pub fn load_server_ready(path: &Path) -> Result<ServerConfig, ConfigErrors> {
    ready(load_server(path)?, path, check_server_files)
}

/// `config`, or the files `missing` finds absent.
fn ready<T>(
    config: T,
    path: &Path,
    missing: fn(&T, &str) -> Vec<ConfigError>,
) -> Result<T, ConfigErrors> {
    let absent = missing(&config, &path.display().to_string());
    if absent.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(absent))
    }
}

/// What `check-config` of both binaries prints: `ok`, or every problem of the file,
/// one per line in line order. Returns whether the file is fine.
pub fn print_check<T>(
    checked: &Result<T, ConfigErrors>,
    out: &mut dyn std::io::Write,
) -> std::io::Result<bool> {
    match checked {
        Ok(_) => writeln!(out, "ok").map(|()| true),
        Err(errors) => writeln!(out, "{errors}").map(|()| false),
    }
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
    parse_checked(text, file_name, |rules| {
        let mut problems = validate::Problems::default();
        problems.rules("", rules);
        problems.0
    })
}

/// Parses `text` as a `T` and validates it with `check`: every problem of the file
/// (refused keys and invalid values), in line order.
fn parse_checked<T: DeserializeOwned>(
    text: &str,
    file_name: &str,
    check: impl FnOnce(&T) -> Vec<validate::Problem>,
) -> Result<T, ConfigErrors> {
    let (value, map, mut errors) = load::parse::<T>(text, file_name)?;
    errors.extend(load::locate(check(&value), &map, file_name));
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(load::in_line_order(errors))
    }
}
