//! Checks on values that parsed but may still be wrong: ports, ranges, loopback-only
//! addresses, baud rates, program rules. Every check runs, so one pass reports every
//! problem of a file. The checks see only typed values; [`crate::load::locate`] finds
//! the line of each problem's key afterwards.

mod agent;
mod server;

pub(crate) use agent::check_agent;
pub(crate) use server::check_server;

use crate::agent::LogSection;
use crate::locate::KeyPath;
use protocol::rules::ProgramRules;
use std::fmt::Display;
use std::path::Path;

/// One bad value: its key path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Where the value is, e.g. `scanner[1].baud`.
    pub(crate) key: KeyPath,
    /// What is wrong, without the key.
    pub(crate) message: String,
}

/// The problems found so far, and the checks that add to them.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    /// Records that `key` is wrong.
    pub(crate) fn add(&mut self, key: impl AsRef<str>, message: impl Into<String>) {
        self.0.push(Problem {
            key: KeyPath::parse(key.as_ref()),
            message: message.into(),
        });
    }

    /// Records a problem unless `lo <= value <= hi`; `unit` follows the numbers
    /// (" seconds").
    pub(crate) fn range<T: PartialOrd + Display>(
        &mut self,
        key: impl AsRef<str>,
        value: T,
        lo: T,
        hi: T,
        unit: &str,
    ) {
        if value < lo || value > hi {
            self.add(key, format!("must be from {lo} to {hi}{unit}, not {value}"));
        }
    }

    /// Records a problem when a path that is present is empty.
    pub(crate) fn non_empty_path(&mut self, key: impl AsRef<str>, path: &Path) {
        if path.as_os_str().is_empty() {
            self.add(key, "must not be empty");
        }
    }

    /// Checks program rules, with `prefix` (`program.` in `agent.toml`, nothing in
    /// a rules file) before the field that [`ProgramRules::validate`] names.
    pub(crate) fn rules(&mut self, prefix: &str, rules: &ProgramRules) {
        if let Err(e) = rules.validate() {
            self.add(format!("{prefix}{}", e.field), e.reason);
        }
    }

    /// Checks a server's connection limits (`prefix` is the table, with its dot).
    pub(crate) fn connections(
        &mut self,
        prefix: &str,
        max_connections: usize,
        header_timeout_secs: u64,
    ) {
        self.range(
            format!("{prefix}max_connections"),
            max_connections,
            16,
            1_000_000,
            " connections",
        );
        self.range(
            format!("{prefix}header_timeout_secs"),
            header_timeout_secs,
            1,
            600,
            " seconds",
        );
    }

    /// Checks `[log]`.
    pub(crate) fn log(&mut self, log: &LogSection) {
        if log.level.trim().is_empty() {
            self.add(
                "log.level",
                "must not be empty; use a level such as info or debug",
            );
        }
    }

    /// Records a problem when the port of a listen address is 0 (which would mean
    /// "any free port", so nobody would know where to connect).
    pub(crate) fn listen_port(&mut self, key: &str, listen: std::net::SocketAddr) {
        if listen.port() == 0 {
            self.add(
                key,
                format!("port 0 is not allowed in {listen}: give the port clients connect to"),
            );
        }
    }
}

/// Bytes in a KiB.
pub(crate) const KIB: usize = 1024;
/// Bytes in a MiB.
pub(crate) const MIB: usize = 1024 * KIB;
