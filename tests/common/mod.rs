//! The end-to-end tests' harness is the workspace's `testkit`; this keeps their
//! `e2e::…` paths.

pub use testkit::*;

/// The HQ process under its older path `e2e::server::Server`.
pub mod server {
    pub use testkit::hq::Server;
}
