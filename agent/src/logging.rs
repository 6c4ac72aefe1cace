//! Log output: human-readable lines by default, JSON with `[log] format = "json"` or
//! `--log-json`. `RUST_LOG` overrides the configured level. Logs go to stderr.
//!
//! Card numbers are masked where they are logged (`CardId::masked`); tokens and keys
//! are never logged.

use config::agent::{LogFormat, LogSection};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call once per process.
pub fn init(log: &LogSection, force_json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second init (tests, demo) fails harmlessly.
    let _ = if force_json || log.format == LogFormat::Json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.try_init()
    };
}
