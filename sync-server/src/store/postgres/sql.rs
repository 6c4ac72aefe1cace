//! Statements through each connection's prepared-statement cache, with driver errors
//! turned into [`StoreError`] and rows decoded by [`crate::store::rows`]. Every
//! helper takes a connection or a transaction.

use crate::store::StoreError;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// Statement parameters.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Every row of a cached statement.
pub async fn query(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, params).await?)
}

/// Every row of a cached statement, decoded.
pub async fn all<T>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    decode: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    query(c, sql, params).await?.iter().map(decode).collect()
}

/// The one row of a cached statement, decoded.
pub async fn one<T>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    decode: impl FnOnce(&Row) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    decode(&c.query_one(&stmt, params).await?)
}

/// The row of a cached statement, decoded, if any.
pub async fn first<T>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    decode: impl FnOnce(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    c.query_opt(&stmt, params)
        .await?
        .as_ref()
        .map(decode)
        .transpose()
}

/// Runs a cached statement; returns the rows it changed.
pub async fn execute(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}
