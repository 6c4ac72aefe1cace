//! The sync-server tests' harness is the workspace's `testkit`; this keeps their
//! `common::…` paths and the unqualified `on_every_backend!`.

// Each test file uses a different part of the harness.
#![allow(unused_imports, dead_code)]

pub use testkit::Backend;
pub use testkit::entries::{sale, sale_at, welcome};
pub use testkit::hq::*;
pub use testkit::hq_http::*;

/// The binary under test (built by Cargo for these tests).
pub const BIN: &str = env!("CARGO_BIN_EXE_sync-server");

/// [`testkit::on_every_backend!`], callable unqualified from each test file's root.
#[macro_export]
macro_rules! on_every_backend {
    ($($t:tt)*) => { testkit::on_every_backend!($($t)*); };
}
