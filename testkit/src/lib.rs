//! Test support shared by every test suite of the workspace and by `pos-bench`: the
//! real `pos-agent` ([`agent`]) and `sync-server` ([`hq`]) binaries started in temp
//! dirs on free loopback ports, throwaway PostgreSQL databases ([`pg`]), tests written
//! once and run on every HQ backend ([`on_every_backend!`]), one journal-entry builder
//! ([`entries`]), HTTP clients ([`http`] blocking, [`hq_http`] async), a fault-injecting
//! TCP proxy ([`proxy`]), a scanner on a pseudo-terminal ([`scanner`]) and a test PKI
//! ([`tls`]).
//!
//! Binaries are found next to the test executable (`target/<profile>/`), where
//! `cargo test` builds them, or at `$POS_AGENT_BIN` / `$SYNC_SERVER_BIN`.
//!
//! Nothing here is linked by a production crate: it is a dev-dependency only.

// A panic is how test support reports a broken fixture; clippy's allow-unwrap-in-tests
// does not cover a library, so it is allowed here once for the whole crate.
#![allow(clippy::unwrap_used)]

pub mod agent;
mod backends;
pub mod browser;
pub mod entries;
pub mod hq;
pub mod hq_http;
pub mod http;
pub mod pg;
pub mod pg_flights;
pub mod proxy;
pub mod scanner;
pub mod tls;

pub use backends::Backend;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Path of a workspace binary.
pub fn bin(name: &str) -> PathBuf {
    let env = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Ok(p) = std::env::var(&env) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps/, the benchmark from target/<profile>/.
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(name))
        .collect();
    candidates.iter().find(|p| p.exists()).cloned().unwrap_or_else(|| {
        panic!(
            "{name} not found in {candidates:?}: run `cargo build --workspace` (or `cargo test --workspace`) first, or set {env}"
        )
    })
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temp directory kept on failure when `E2E_KEEP=1` (for post-mortems).
pub fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pos-e2e-")
        .tempdir()
        .expect("temp dir");
    if std::env::var_os("E2E_KEEP").is_some() {
        eprintln!("keeping {}", dir.path().display());
        // `keep` hands back the path, already printed above.
        let _ = dir.keep();
        return tempfile::Builder::new()
            .prefix("pos-e2e-")
            .tempdir()
            .expect("temp dir");
    }
    dir
}
