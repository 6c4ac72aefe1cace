//! Shared harness of the end-to-end tests: start the real `pos-agent` (and
//! `sync-server`) binaries in temp dirs on free loopback ports, and talk to them.
//!
//! Binaries are found next to the test executable (`target/<profile>/`), where
//! `cargo test --workspace` builds them, or at `$POS_AGENT_BIN` / `$SYNC_SERVER_BIN`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod http;
pub mod proxy;
pub mod scanner;
pub mod server;
pub mod tls;

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
        let _ = dir.keep();
        return tempfile::Builder::new()
            .prefix("pos-e2e-")
            .tempdir()
            .expect("temp dir");
    }
    dir
}
