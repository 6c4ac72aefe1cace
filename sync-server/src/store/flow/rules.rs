//! Program rules versions: read through the store's [`RulesCache`] (a version never
//! changes once stored), and `rules set`.
//!
//! [`RulesCache`]: crate::store::caches::RulesCache

use super::done;
use crate::ledger::{RulesBook, next_rules_version};
use crate::store::Result;
use crate::store::backend::{Access, Attempt, Op};
use crate::store::encode::rules_to_db;
use crate::store::statements::Statements;
use protocol::rules::ProgramRules;
use std::collections::HashSet;
use std::sync::Arc;
use time::OffsetDateTime;

/// The rules of `version`, if stored.
pub async fn version<C: Statements>(c: &mut C, version: u64) -> Result<Option<Arc<ProgramRules>>> {
    if let Some(r) = c.caches().rules.get(version) {
        return Ok(Some(r));
    }
    match c.rules_body(version).await? {
        Some(body) => c.caches().rules.insert_stored(version, &body).map(Some),
        None => Ok(None),
    }
}

/// The current rules; the built-in defaults (version 0) before any `rules set`.
pub async fn current<C: Statements>(c: &mut C) -> Result<Arc<ProgramRules>> {
    let v = c.rules_version().await?;
    at(c, v).await
}

/// The rules of `current`, the current version: the built-in defaults for 0.
async fn at<C: Statements>(c: &mut C, current: u64) -> Result<Arc<ProgramRules>> {
    if current == 0 {
        return Ok(Arc::new(ProgramRules::default()));
    }
    Ok(version(c, current)
        .await?
        .unwrap_or_else(|| Arc::new(ProgramRules::default())))
}

/// The current rules and the stored versions among `wanted`.
pub async fn book<C: Statements>(c: &mut C, wanted: HashSet<u64>) -> Result<RulesBook> {
    let v = c.rules_version().await?;
    book_at(c, v, &[], Vec::new(), wanted).await
}

/// [`book`] when the current version is known. `read` is what the caller read of
/// the versions `asked` (those the cache lacked): the cache gets it first, and a
/// version asked and not read is not stored, so it costs no statement of its own.
pub async fn book_at<C: Statements>(
    c: &mut C,
    current: u64,
    asked: &[u64],
    read: Vec<(u64, String)>,
    wanted: HashSet<u64>,
) -> Result<RulesBook> {
    for (v, body) in read {
        c.caches().rules.insert_stored(v, &body)?;
    }
    let current = at(c, current).await?;
    let mut versions = Vec::new();
    for v in wanted {
        if v == current.version {
            continue;
        }
        let stored = match c.caches().rules.get(v) {
            Some(r) => Some(r),
            None if asked.contains(&v) => None,
            None => version(c, v).await?,
        };
        versions.extend(stored);
    }
    Ok(RulesBook::new(current, versions))
}

/// The current rules version (the health check).
pub struct CurrentVersion;

impl Op for CurrentVersion {
    type Out = u64;
    const ACCESS: Access = Access::Read;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<u64>> {
        done(c.rules_version().await)
    }
}

/// The current rules.
pub struct Current;

impl Op for Current {
    type Out = Arc<ProgramRules>;
    const ACCESS: Access = Access::Read;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Arc<ProgramRules>>> {
        done(current(c).await)
    }
}

/// `rules set`: stores new rules under [`next_rules_version`].
pub struct Set {
    /// The rules; their version is replaced by the one they are stored under.
    pub rules: ProgramRules,
    /// The server's time.
    pub now: OffsetDateTime,
}

impl Op for Set {
    type Out = u64;
    const ACCESS: Access = Access::Write;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<u64>> {
        c.lock_rules().await?;
        let version = next_rules_version(c.rules_version().await?, self.rules.version)?;
        let mut rules = self.rules.clone();
        rules.version = version;
        c.insert_rules(version, &rules_to_db(&rules)?, self.now)
            .await?;
        done(Ok(version))
    }
}
