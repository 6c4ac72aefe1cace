//! The HQ backends a test runs on, and [`on_every_backend!`], which writes a test once
//! and instantiates it for each of them.

use crate::pg;

/// Which database a test's HQ uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the test's temp directory.
    Sqlite,
    /// A database of its own on the local PostgreSQL server, dropped afterwards.
    Postgres,
}

impl Backend {
    /// False for PostgreSQL when `SKIP_PG_TESTS=1`.
    pub fn enabled(self) -> bool {
        self == Self::Sqlite || !pg::skipped()
    }

    /// `Some(self)` when [`Self::enabled`]: the fixture of tests that take the backend
    /// itself (the default of [`on_every_backend!`]).
    pub async fn ready(self) -> Option<Self> {
        self.enabled().then_some(self)
    }
}

/// Instantiates each named test function once per backend, as `sqlite::NAME` and
/// `postgres::NAME`; the PostgreSQL variants are skipped with `SKIP_PG_TESTS=1`.
///
/// * `on_every_backend!(a, b)`: `async fn a(backend: Backend)`;
/// * `on_every_backend!(blocking: a, b)`: `fn a(backend: Backend)`;
/// * `on_every_backend!(open: Db::open; a, b)`: `async fn a(db: Db)`, where
///   `async fn Db::open(Backend) -> Option<Db>` makes the fixture (`None` skips).
///
/// Async tests run on a two-worker runtime, so that tests of concurrency (two HQ
/// instances, many terminals) really run in parallel.
#[macro_export]
macro_rules! on_every_backend {
    (blocking: $($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::Backend::Sqlite); } )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if $crate::Backend::Postgres.enabled() {
                        super::$name($crate::Backend::Postgres);
                    }
                }
            )*
        }
    };
    (open: $($open:ident)::+; $($name:ident),* $(,)?) => {
        $crate::on_every_backend!(@async [super::$($open)::+] $($name),*);
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_every_backend!(@async [$crate::Backend::ready] $($name),*);
    };
    (@async [$open:expr] $($name:ident),*) => {
        $crate::on_every_backend!(@module sqlite Sqlite [$open] $($name),*);
        $crate::on_every_backend!(@module postgres Postgres [$open] $($name),*);
    };
    (@module $module:ident $backend:ident [$open:expr] $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(fixture) = ($open)($crate::Backend::$backend).await {
                        super::$name(fixture).await;
                    }
                }
            )*
        }
    };
}
