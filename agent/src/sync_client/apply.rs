//! Applying HQ's change feed to the journal's cache, in one transaction per page.

use crate::cards;
use crate::journal::{JournalError, sync_state};
use crate::keyring;
use crate::program;
use protocol::rules::ProgramRules;
use protocol::wire::PullResponse;
use rusqlite::Connection;
use time::OffsetDateTime;

/// What a page changed, for the in-memory handles.
#[derive(Debug, Default)]
pub struct Applied {
    /// New rules to put in force.
    pub rules: Option<ProgramRules>,
    /// True when the key list changed.
    pub keys_changed: bool,
    /// Balances stored.
    pub balances: usize,
}

/// Applies one pull page: rules, blocked cards, keys, balances, cursor.
pub fn apply_page(
    conn: &Connection,
    page: &PullResponse,
    now: OffsetDateTime,
) -> Result<Applied, JournalError> {
    let mut applied = Applied::default();
    if let Some(rules) = &page.rules {
        // HQ validated them too; a build that disagrees keeps the rules it has rather
        // than evaluate sales with values it considers out of bounds.
        match rules.validate() {
            Ok(()) => {
                program::store_hq_rules(conn, rules, now.unix_timestamp())?;
                applied.rules = Some(rules.clone());
            }
            Err(e) => {
                tracing::error!(version = rules.version, error = %e, "HQ sent rules this agent refuses; keeping the current ones")
            }
        }
    }
    for change in &page.blocked {
        cards::set_blocked(conn, &change.card, change.blocked, now)?;
    }
    if !page.keys.is_empty() {
        keyring::store(conn, &page.keys)?;
        applied.keys_changed = true;
    }
    for balance in &page.balances {
        cards::apply_hq_balance(conn, balance, page.acked_through)?;
    }
    applied.balances = page.balances.len();
    sync_state::set_pull_cursor(conn, &page.cursor)?;
    sync_state::record_contact(conn, now)?;
    Ok(applied)
}
