//! Throwaway PostgreSQL databases for tests and benchmarks: each gets its own
//! `t_<random>` database, created through the maintenance database and dropped
//! (`WITH (FORCE)`, closing any connection a test left open) when the guard goes away,
//! also when the test failed.
//!
//! The maintenance URL is `$LOYALTY_PG_ADMIN_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/postgres`. With `SKIP_PG_TESTS=1` no database
//! is created and callers skip their PostgreSQL variant; without it, an unreachable
//! server is an error that says how to start one.

use std::time::Duration;
use tokio_postgres::NoTls;

/// The maintenance database when `LOYALTY_PG_ADMIN_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Why a test database could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum TestDbError {
    /// The server does not answer.
    #[error(
        "PostgreSQL is not reachable at {url}: {reason}. Start it \
         (`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`) or set \
         SKIP_PG_TESTS=1 to skip the PostgreSQL variants of the tests"
    )]
    Unreachable {
        /// The maintenance URL.
        url: String,
        /// Why, with its causes.
        reason: String,
    },
    /// A statement failed.
    #[error("{sql}: {source}")]
    Sql {
        /// The statement.
        sql: String,
        /// The server's refusal.
        source: tokio_postgres::Error,
    },
    /// No runtime for a blocking call.
    #[error("starting a runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// True when `SKIP_PG_TESTS=1`.
pub fn skipped() -> bool {
    std::env::var("SKIP_PG_TESTS").is_ok_and(|v| v == "1")
}

fn admin_url() -> String {
    std::env::var("LOYALTY_PG_ADMIN_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, TestDbError> {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| TestDbError::Unreachable {
                url: url.to_owned(),
                reason: describe(&e),
            })?;
    tokio::spawn(async move {
        // The connection ends with an error when the database is dropped under it;
        // the client's next call reports that.
        let _ = connection.await;
    });
    Ok(client)
}

/// An error with its causes (tokio-postgres puts why a connection failed in its
/// source only).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(e.source(), |cause| cause.source())
        .fold(e.to_string(), |text, cause| format!("{text}: {cause}"))
}

/// A database that exists until this guard is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates a fresh, empty database; `None` when `SKIP_PG_TESTS=1`.
    pub async fn create() -> Result<Option<Self>, TestDbError> {
        if skipped() {
            return Ok(None);
        }
        let admin_url = admin_url();
        let admin = connect(&admin_url).await?;
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let sql = format!("CREATE DATABASE {name}");
        admin
            .batch_execute(&sql)
            .await
            .map_err(|source| TestDbError::Sql { sql, source })?;
        Ok(Some(Self {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        }))
    }

    /// [`Self::create`] for code that is not async (it runs on its own thread).
    pub fn create_blocking() -> Result<Option<Self>, TestDbError> {
        on_own_runtime(Self::create())
    }

    /// The database's `postgres://` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` (one or more statements, no parameters) on the database, as a test
    /// that tampers with the data would.
    pub async fn execute(&self, sql: &str) -> Result<(), TestDbError> {
        let client = connect(&self.url).await?;
        client
            .batch_execute(sql)
            .await
            .map_err(|source| TestDbError::Sql {
                sql: sql.to_owned(),
                source,
            })
    }

    /// [`Self::execute`] for code that is not async.
    pub fn execute_blocking(&self, sql: &str) -> Result<(), TestDbError> {
        on_own_runtime(self.execute(sql))
    }

    /// Runs `sql` on the maintenance database, with `{db}` replaced by this
    /// database's name (tests that take the database away: `ALTER DATABASE {db}
    /// ALLOW_CONNECTIONS false`).
    pub async fn admin_execute(&self, sql: &str) -> Result<(), TestDbError> {
        let sql = sql.replace("{db}", &self.name);
        let admin = connect(&self.admin_url).await?;
        admin
            .batch_execute(&sql)
            .await
            .map_err(|source| TestDbError::Sql { sql, source })
    }

    /// A client on the database, for tests that hold a transaction open themselves.
    pub async fn client(&self) -> Result<tokio_postgres::Client, TestDbError> {
        connect(&self.url).await
    }

    /// Waits until a pull can answer every change committed so far. A pull answers
    /// only changes below its snapshot's xmin, which any transaction on the cluster
    /// (another test's `CREATE DATABASE`) holds back for a moment; agents simply get
    /// such a change at their next pull, tests that pull once wait here first.
    pub async fn settle(&self) -> Result<(), TestDbError> {
        const SQL: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint >
                                  GREATEST((SELECT MAX(change_xid) FROM cards),
                                           (SELECT MAX(xid) FROM block_events), 0)";
        let client = connect(&self.url).await?;
        for _ in 0..3000 {
            let caught_up: bool = client
                .query_one(SQL, &[])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(|source| TestDbError::Sql {
                    sql: SQL.to_owned(),
                    source,
                })?;
            if caught_up {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(TestDbError::Runtime(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the change feed did not catch up within 30 s: a transaction stays open on the cluster",
        )))
    }

    /// [`Self::settle`] for code that is not async.
    pub fn settle_blocking(&self) -> Result<(), TestDbError> {
        on_own_runtime(self.settle())
    }

    async fn drop_database(admin_url: String, name: String) -> Result<(), TestDbError> {
        let admin = connect(&admin_url).await?;
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        admin
            .batch_execute(&sql)
            .await
            .map_err(|source| TestDbError::Sql { sql, source })
    }
}

/// Runs `future` to completion on a new thread with its own runtime, so that it works
/// from plain code and from inside another runtime (a `Drop` in an async test).
fn on_own_runtime<T: Send>(
    future: impl std::future::Future<Output = Result<T, TestDbError>> + Send,
) -> Result<T, TestDbError> {
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                tokio::time::timeout(Duration::from_secs(60), future)
                    .await
                    .unwrap_or_else(|_| {
                        Err(TestDbError::Runtime(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "PostgreSQL did not answer within 60 s",
                        )))
                    })
            })
        });
        worker.join().unwrap_or_else(|_| {
            Err(TestDbError::Runtime(std::io::Error::other(
                "the PostgreSQL helper thread panicked",
            )))
        })
    })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        if let Err(e) = on_own_runtime(Self::drop_database(admin_url, name)) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_and_parameters_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t_1"),
            "postgres://postgres@127.0.0.1:5432/t_1"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "t_2"),
            "postgresql://u:p@h/t_2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t_3"), "postgres://h/t_3");
    }
}
