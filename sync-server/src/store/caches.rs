//! What a store keeps in memory between requests: immutable facts only, so that any
//! instance may serve any request and a second instance on the same database never
//! reads a stale value from its own cache.
//!
//! * [`RulesCache`]: a rules version never changes once stored;
//! * [`Associations`]: a `(store, card)` pair of the balance feed is never deleted.

use crate::store::Result;
use crate::store::StoreError;
use protocol::rules::ProgramRules;
use protocol::{CardId, StoreId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

/// Everything a store caches.
#[derive(Default)]
pub struct Caches {
    /// Parsed rules versions.
    pub rules: RulesCache,
    /// Known `(store, card)` feed associations.
    pub associations: Associations,
}

/// Rules versions already read, so a push does not re-parse its rules.
#[derive(Default)]
pub struct RulesCache {
    versions: Mutex<HashMap<u64, Arc<ProgramRules>>>,
}

impl RulesCache {
    /// The cached rules of `version`.
    pub fn get(&self, version: u64) -> Option<Arc<ProgramRules>> {
        self.versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&version)
            .cloned()
    }

    /// Parses the stored JSON of `version` and keeps it.
    pub fn insert_stored(&self, version: u64, body: &str) -> Result<Arc<ProgramRules>> {
        let rules: ProgramRules = serde_json::from_str(body)
            .map_err(|e| StoreError::corrupt(format!("rules version {version}: {e}")))?;
        let rules = Arc::new(rules);
        self.versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(version, Arc::clone(&rules));
        Ok(rules)
    }
}

/// `(store, card)` pairs known to be in `store_cards`. A pair seen after a commit
/// needs no insert ever again; the cache saves a statement per push once a store's
/// regular cards are known. Bounded: emptied when full.
#[derive(Default)]
pub struct Associations {
    known: Mutex<HashSet<(String, String)>>,
}

/// Pairs kept before the cache starts over.
const MAX_ASSOCIATIONS: usize = 1_000_000;

impl Associations {
    /// The cards among `cards` not known to be in `store`'s feed.
    pub fn unknown(&self, store: &StoreId, cards: &[&CardId]) -> Vec<String> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        cards
            .iter()
            .filter(|c| !known.contains(&(store.as_str().to_owned(), c.as_str().to_owned())))
            .map(|c| c.as_str().to_owned())
            .collect()
    }

    /// Records pairs a committed transaction made sure of.
    pub fn remember(&self, store: &StoreId, cards: Vec<String>) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() + cards.len() > MAX_ASSOCIATIONS {
            known.clear();
        }
        known.extend(cards.into_iter().map(|c| (store.as_str().to_owned(), c)));
    }
}
