//! Program rules versions in PostgreSQL, through the shared [`RulesCache`] (a version
//! never changes once stored).

use super::sql;
use crate::ledger::{RulesBook, next_rules_version};
use crate::store::StoreError;
use crate::store::encode::{RulesCache, rules_to_db, signed, to_db, unsigned};
use deadpool_postgres::{Client, GenericClient};
use protocol::rules::ProgramRules;
use std::collections::HashSet;
use std::sync::Arc;
use time::OffsetDateTime;

/// The highest stored version, 0 before any `rules set`.
pub async fn current_version(c: &impl GenericClient) -> Result<u64, StoreError> {
    let v: i64 = sql::query_one(c, "SELECT COALESCE(MAX(version), 0) FROM rules", &[])
        .await?
        .try_get(0)?;
    unsigned(v)
}

/// The rules of `version`, if stored.
pub async fn version(
    c: &impl GenericClient,
    cache: &RulesCache,
    version: u64,
) -> Result<Option<Arc<ProgramRules>>, StoreError> {
    if let Some(r) = cache.get(version) {
        return Ok(Some(r));
    }
    let row = sql::query_opt(
        c,
        "SELECT body FROM rules WHERE version = $1",
        &[&signed(version)?],
    )
    .await?;
    match row {
        Some(row) => {
            let body: String = row.try_get(0)?;
            cache.insert_stored(version, &body).map(Some)
        }
        None => Ok(None),
    }
}

/// The current rules; the built-in defaults (version 0) before any `rules set`.
pub async fn current(
    c: &impl GenericClient,
    cache: &RulesCache,
) -> Result<Arc<ProgramRules>, StoreError> {
    let v = current_version(c).await?;
    if v == 0 {
        return Ok(Arc::new(ProgramRules::default()));
    }
    Ok(version(c, cache, v)
        .await?
        .unwrap_or_else(|| Arc::new(ProgramRules::default())))
}

/// The current rules and the stored versions among `wanted`.
pub async fn book(
    c: &impl GenericClient,
    cache: &RulesCache,
    wanted: HashSet<u64>,
) -> Result<RulesBook, StoreError> {
    let current = current(c, cache).await?;
    let mut versions = Vec::new();
    for v in wanted {
        if v != current.version
            && let Some(r) = version(c, cache, v).await?
        {
            versions.push(r);
        }
    }
    Ok(RulesBook::new(current, versions))
}

/// Stores new rules; see [`next_rules_version`].
pub async fn set(
    client: &mut Client,
    mut rules: ProgramRules,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let tx = client.transaction().await?;
    // Two `rules set` at once must not both pick "current + 1"; readers are not
    // blocked by this mode.
    tx.batch_execute("LOCK TABLE rules IN SHARE ROW EXCLUSIVE MODE")
        .await?;
    let version = next_rules_version(current_version(&tx).await?, rules.version)?;
    rules.version = version;
    let body = rules_to_db(&rules)?;
    sql::execute(
        &tx,
        "INSERT INTO rules (version, body, set_at) VALUES ($1, $2, $3)",
        &[&signed(version)?, &body, &to_db(now)],
    )
    .await?;
    tx.commit().await?;
    Ok(version)
}
