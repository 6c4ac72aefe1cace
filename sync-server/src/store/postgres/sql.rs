//! Statements through each connection's prepared-statement cache, with driver errors
//! turned into [`StoreError`] and rows decoded by [`crate::store::rows`]. Every
//! helper takes a connection or a transaction.

use crate::store::{Result, StoreError};
use deadpool_postgres::{Client, GenericClient};
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

/// Statement parameters.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A statement's parameters, owned: the array columns built from rows apart from
/// running the statement, so that several statements' parameters can also be sent
/// as one statement's (`push::write`).
pub type Owned<'a> = Vec<Box<dyn ToSql + Sync + Send + 'a>>;

/// `owned` as the driver takes parameters.
pub fn refs<'p>(owned: &'p Owned<'_>) -> Vec<&'p (dyn ToSql + Sync)> {
    owned
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// Every row of a cached statement.
pub async fn query(c: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, params).await?)
}

/// Every row of a cached statement, decoded.
pub async fn all<T>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    decode: impl Fn(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    query(c, sql, params).await?.iter().map(decode).collect()
}

/// Every row of a statement planned for its parameters each time it runs (an unnamed
/// statement, parsed, bound and run in one burst of messages: no extra round trip, and
/// it keeps its place in a [`flight`]), decoded. For reads whose right plan depends
/// on how big the table is now: a cached statement keeps the generic plan it made
/// after its first few runs, and when the table was small then, that plan scans it
/// whole for as long as the connection lives.
pub async fn all_planned<T>(
    c: &Client,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
    decode: impl Fn(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    c.query_typed(sql, params)
        .await?
        .iter()
        .map(decode)
        .collect()
}

/// How a read whose right plan depends on how big its tables are now is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// For its parameters at each run ([`all_planned`]): the only safe way outside
    /// a push, where nothing keeps a cached generic plan from scanning.
    EachRun,
    /// Cached with the connection's statements, like any other: only inside a push
    /// transaction, whose settings (`push::KEYS_ONLY`) rule out the scans, so that any
    /// plan PostgreSQL caches for it, generic ones included, finds its rows by key
    /// however small the tables were when it was made. Saves the parse and the
    /// planning of each run.
    InPush,
}

/// Every row of a read planned as `plan` says, decoded; `params` with their types
/// (used by [`Plan::EachRun`] only: a cached statement has them from its SQL).
pub async fn all_as<T>(
    c: &Client,
    plan: Plan,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
    decode: impl Fn(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    match plan {
        Plan::EachRun => all_planned(c, sql, params, decode).await,
        Plan::InPush => {
            let untyped: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(p, _)| *p).collect();
            all(c, sql, &untyped, decode).await
        }
    }
}

/// Runs a statement planned for its parameters each time it runs (see
/// [`all_planned`]); returns the rows it changed.
pub async fn execute_planned(
    c: &Client,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<u64> {
    Ok(c.execute_typed(sql, params).await?)
}

/// The one row of a cached statement, decoded.
pub async fn one<T>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    decode: impl FnOnce(&Row) -> Result<T>,
) -> Result<T> {
    let stmt = c.prepare_cached(sql).await?;
    decode(&c.query_one(&stmt, params).await?)
}

/// The row of a cached statement, decoded, if any.
pub async fn first<T>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    decode: impl FnOnce(&Row) -> Result<T>,
) -> Result<Option<T>> {
    let stmt = c.prepare_cached(sql).await?;
    c.query_opt(&stmt, params)
        .await?
        .as_ref()
        .map(decode)
        .transpose()
}

/// Runs a cached statement; returns the rows it changed.
pub async fn execute(c: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<u64> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}

/// Runs `flight`, statements whose futures are polled together (`tokio::join!`), so
/// that tokio-postgres pipelines them: all are sent before the first answer is
/// awaited, one round trip for them all, and the server runs them in the order sent.
///
/// That order holds only if no statement of the flight has to be prepared first (a
/// future waiting for its `Parse` would let the next ones overtake it), so `sqls`,
/// every statement of the flight, are prepared before (on a new connection only; a
/// round trip each). A statement prepared during the flight anyway (missing from
/// `sqls`) is a bug, and fails the transaction rather than let it commit what may have
/// run out of order; in a flight that ends with its `COMMIT` it is found only after it,
/// but on the first run on every new connection, so any test of the flight finds it.
pub async fn flight<T>(
    c: &Client,
    sqls: &[&str],
    flight: impl std::future::Future<Output = T>,
) -> Result<T> {
    for sql in sqls {
        c.prepare_cached(sql).await?;
    }
    let prepared = c.statement_cache.size();
    let out = flight.await;
    if c.statement_cache.size() != prepared {
        return Err(StoreError::corrupt(
            "a pipelined statement was prepared inside its flight: its order is not \
             guaranteed"
                .to_owned(),
        ));
    }
    Ok(out)
}
