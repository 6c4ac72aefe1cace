//! The program rules in force at this till.
//!
//! HQ's latest rules (kept in the journal) win; before the first pull, or in a
//! standalone store, the config's `[program]` table or the built-in defaults apply.
//! Readers take a cheap snapshot (`Arc`) so a rules update never blocks a sale.

use protocol::rules::ProgramRules;
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
