//! Program rules versions in SQLite, with an in-memory cache (a version never
//! changes once stored).

use super::Inner;
use super::rows::{signed, to_db, unsigned};
use crate::ledger::{RulesBook, next_rules_version};
use crate::store::StoreError;
use crate::store::encode::rules_to_db;
use protocol::rules::ProgramRules;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashSet;
use std::sync::Arc;
use time::OffsetDateTime;

/// The highest stored version, 0 before any `rules set`.
pub fn current_version(conn: &Connection) -> Result<u64, StoreError> {
    let v: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(version), 0) FROM rules")?
        .query_row([], |r| r.get(0))?;
    unsigned(v)
}

/// The rules of `version`, if stored.
pub fn version(
    conn: &Connection,
    inner: &Inner,
    version: u64,
) -> Result<Option<Arc<ProgramRules>>, StoreError> {
    if let Some(r) = inner.rules_cache.get(version) {
        return Ok(Some(r));
    }
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM rules WHERE version = ?1")?
        .query_row([signed(version)?], |r| r.get(0))
        .optional()?;
    body.map(|body| inner.rules_cache.insert_stored(version, &body))
        .transpose()
}

/// The current rules; the built-in defaults (version 0) before any `rules set`.
pub fn current(conn: &Connection, inner: &Inner) -> Result<Arc<ProgramRules>, StoreError> {
    let v = current_version(conn)?;
    Ok(version(conn, inner, v)?.unwrap_or_else(|| Arc::new(ProgramRules::default())))
}

/// The current rules and the stored versions among `wanted`.
pub fn book(
    conn: &Connection,
    inner: &Inner,
    wanted: HashSet<u64>,
) -> Result<RulesBook, StoreError> {
    let current = current(conn, inner)?;
    let mut versions = Vec::new();
    for v in wanted {
        if v != current.version
            && let Some(r) = version(conn, inner, v)?
        {
            versions.push(r);
        }
    }
    Ok(RulesBook::new(current, versions))
}

/// Stores new rules; see [`next_rules_version`].
pub fn set(
    conn: &mut Connection,
    mut rules: ProgramRules,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version = next_rules_version(current_version(&tx)?, rules.version)?;
    rules.version = version;
    let body = rules_to_db(&rules)?;
    tx.execute(
        "INSERT INTO rules (version, body, set_at) VALUES (?1, ?2, ?3)",
        (signed(version)?, body, to_db(now)),
    )?;
    tx.commit()?;
    Ok(version)
}
