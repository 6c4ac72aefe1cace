//! The program rules in force at this till.
//!
//! HQ's latest rules (kept in the journal) win; before the first pull, or in a
//! standalone store, the config's `[program]` table or the built-in defaults apply.
//! Readers take a cheap snapshot (`Arc`) so a rules update never blocks a sale.

use crate::journal::JournalError;
use protocol::rules::ProgramRules;
use rusqlite::{Connection, OptionalExtension};
use std::sync::{Arc, RwLock};

/// Shared handle to the rules in force.
#[derive(Clone, Debug)]
pub struct RulesHandle(Arc<RwLock<Arc<ProgramRules>>>);

impl RulesHandle {
    /// A handle holding `rules`.
    pub fn new(rules: ProgramRules) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(rules))))
    }

    /// The rules in force now.
    pub fn current(&self) -> Arc<ProgramRules> {
        // A poisoned lock still holds a complete Arc: writers only swap it.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the rules (after HQ sent a newer version).
    pub fn replace(&self, rules: ProgramRules) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
    }
}

/// HQ's latest rules stored in the journal, if any.
pub fn stored_hq_rules(conn: &Connection) -> Result<Option<ProgramRules>, JournalError> {
    let body: Option<String> = conn
        .query_row(
            "SELECT body FROM rules ORDER BY version DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    body.map(|b| serde_json::from_str(&b).map_err(JournalError::data))
        .transpose()
}

/// Stores HQ's rules.
pub fn store_hq_rules(
    conn: &Connection,
    rules: &ProgramRules,
    now_unix: i64,
) -> Result<(), JournalError> {
    let body = serde_json::to_string(rules).map_err(JournalError::data)?;
    conn.execute(
        "INSERT OR REPLACE INTO rules (version, body, received_unix) VALUES (?1, ?2, ?3)",
        rusqlite::params![rules.version, body, now_unix],
    )?;
    Ok(())
}
