//! Applying HQ's change feed to the journal's cache, in one transaction per page.

use crate::journal::{JournalError, Tx};
use protocol::rules::ProgramRules;
use protocol::wire::{PublicKeyInfo, PullResponse};
use time::OffsetDateTime;

/// What a page changed, for the in-memory handles.
#[derive(Debug, Default)]
pub struct Applied {
    /// New rules to put in force.
    pub rules: Option<ProgramRules>,
    /// HQ's new key list, when it changed.
    pub keys: Option<Vec<PublicKeyInfo>>,
    /// Balances stored.
    pub balances: usize,
}

/// Applies one pull page: rules, blocked cards, keys, balances, cursor. It writes
/// only HQ's news and where the feed stands, which a pull from the previous cursor
/// brings again, so it runs in a `Journal::refresh` (a commit without an fsync); it
/// must never write a till operation or an entry.
pub fn apply_page(
    tx: &Tx<'_>,
    page: &PullResponse,
    now: OffsetDateTime,
) -> Result<Applied, JournalError> {
    let mut applied = Applied::default();
    if let Some(rules) = &page.rules {
        // HQ validated them too; a build that disagrees keeps the rules it has rather
        // than evaluate sales with values it considers out of bounds.
        match rules.validate() {
            Ok(()) => {
                tx.store_rules(rules, now.unix_timestamp())?;
                applied.rules = Some(rules.clone());
            }
            Err(e) => {
                tracing::error!(version = rules.version, error = %e, "HQ sent rules this agent refuses; keeping the current ones")
            }
        }
    }
    for change in &page.blocked {
        tx.set_blocked(&change.card, change.blocked, now)?;
    }
    if !page.keys.is_empty() {
        tx.replace_signing_keys(&page.keys)?;
        applied.keys = Some(page.keys.clone());
    }
    for balance in &page.balances {
        tx.apply_hq_balance(balance, page.acked_through)?;
    }
    applied.balances = page.balances.len();
    tx.set_pull_cursor(&page.cursor)?;
    tx.record_contact(now)?;
    Ok(applied)
}
