//! `loyalty-demo`: the whole product in one process, for a newcomer with no config,
//! no hardware and no network (`cargo run --release -p loyalty-demo`, or
//! `pos-agent demo` where both programs are installed side by side).
//!
//! It runs a real HQ (the `sync-server` library on SQLite), a real agent
//! (`agent::daemon::run`) with a virtual scanner on a kernel pseudo-terminal, and a
//! till that calls the real till API, and tells the story on stdout ([`story`]).
//! It lives outside the `agent` crate so that the till binary carries no HQ and no
//! PostgreSQL driver.

mod hq;
mod scanner;
mod story;
mod till;

use std::process::ExitCode;

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (ring), as `pos-agent` installs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The story goes to stdout; only errors are logged.
    agent::logging::init(
        &config::agent::LogSection {
            level: "error".into(),
            ..Default::default()
        },
        false,
    );
    match story::run_blocking() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loyalty-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
