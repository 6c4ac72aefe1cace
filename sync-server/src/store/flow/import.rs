//! What a history import asks before it pushes: which of its entries HQ holds already
//! (so a second run of the same file only adds what is new).

use super::done;
use crate::store::Result;
use crate::store::backend::{Access, Attempt, Op};
use crate::store::statements::Statements;
use std::collections::HashSet;
use uuid::Uuid;

/// Ids asked per statement: keeps each statement's parameter list small.
const CHUNK: usize = 1_000;

/// See [`crate::store::Store::held_entry_ids`].
pub struct HeldIds(pub Vec<Uuid>);

impl Op for HeldIds {
    type Out = HashSet<Uuid>;
    const ACCESS: Access = Access::Read;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<HashSet<Uuid>>> {
        let mut held = HashSet::new();
        for ids in self.0.chunks(CHUNK) {
            held.extend(c.entry_holders(ids).await?.into_iter().map(|h| h.id));
        }
        done(Ok(held))
    }
}
