//! The quarantine ([`crate::ledger::quarantine`]): listing it, retrying an entry, and
//! isolating an entry whose application failed inside HQ.
//!
//! A push quarantines what the pure ledger cannot apply as part of its own
//! transaction ([`super::push`]). When applying a batch fails in HQ itself (a stored
//! row it needs is unreadable, the database refuses a write), the whole transaction
//! rolls back, so [`crate::store::Store::push`] pushes the entries again one by one and
//! quarantines the ones that fail alone ([`Isolate`]): the entries around a poisoned
//! one still apply, and the till's sync goes on.

use super::push::{Push, add_kpi, plan, refusal, revoked, write_effects};
use super::{done, rules};
use crate::ledger::apply::spend_of;
use crate::ledger::batch::Batch;
use crate::ledger::quarantine::{QuarantineRow, RetryOutcome, Unappliable};
use crate::store::backend::{Access, Attempt, Backend, Op};
use crate::store::encode::entry_body_and_hash;
use crate::store::statements::{Missing, NewEntries, Statements};
use crate::store::{PushOutcome, QuarantinedEntry, Result, StoreError, TerminalIdentity};
use protocol::journal::JournalEntry;
use protocol::{CardId, Seq};
use std::collections::HashSet;
use std::sync::Arc;
use time::OffsetDateTime;

/// True for a failure that is HQ's own (not a refusal of the batch, not a database
/// that is away for a moment): the one kind of failure an entry is quarantined for.
pub fn is_internal(e: &StoreError) -> bool {
    matches!(e, StoreError::Corrupt(_) | StoreError::Backend(_))
}

/// See [`crate::store::Store::quarantined`].
pub struct List;

impl Op for List {
    type Out = Vec<QuarantinedEntry>;
    const ACCESS: Access = Access::Read;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Vec<QuarantinedEntry>>> {
        done(c.quarantined().await)
    }
}

/// See [`crate::store::Store::retry_quarantined`]. The record's lock makes the retry
/// exactly once: a second retry waits, then finds the record released.
pub struct Retry {
    /// The quarantine record.
    pub id: i64,
    /// The server's time.
    pub now: OffsetDateTime,
}

impl Op for Retry {
    type Out = RetryOutcome;
    const ACCESS: Access = Access::Write;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<RetryOutcome>> {
        let Some(held) = c.lock_quarantined(self.id).await? else {
            return Err(StoreError::UnknownQuarantine(self.id));
        };
        if held.released {
            return done(Ok(RetryOutcome::AlreadyApplied));
        }
        let entry: JournalEntry = serde_json::from_str(&held.body).map_err(|e| {
            StoreError::corrupt(format!("quarantined entry {} does not parse: {e}", self.id))
        })?;
        let book = rules::book(c, HashSet::from([entry.rules_version])).await?;
        let touched: Vec<&CardId> = entry.card().into_iter().collect();
        let locked = c.lock_cards(&touched, Missing::Create(self.now)).await?;
        let plan = plan(
            c,
            std::slice::from_ref(&entry),
            locked.cards,
            &book,
            self.now,
        )
        .await?;
        if let Some(still) = plan.quarantined.first() {
            return done(Ok(RetryOutcome::StillQuarantined(still.reason.clone())));
        }
        write_effects(c, &plan, self.now).await?;
        add_kpi(c, std::slice::from_ref(&entry), &held.store).await?;
        c.set_entry_spend(entry.id, spend_of(&entry)).await?;
        c.release_quarantined(self.id, self.now).await?;
        let unknown = c.caches().associations.unknown(&held.store, &touched);
        if !unknown.is_empty() {
            c.associate(&held.store, &unknown).await?;
        }
        done(Ok(RetryOutcome::Applied))
    }
}

/// Stores the next entry of a terminal without applying it, because applying it
/// failed inside HQ (`why`), and acknowledges it.
pub struct Isolate {
    /// The pushing terminal.
    pub terminal: TerminalIdentity,
    /// The entry.
    pub entry: JournalEntry,
    /// Why it could not be applied.
    pub why: Unappliable,
    /// The server's time.
    pub now: OffsetDateTime,
}

impl Op for Isolate {
    type Out = PushOutcome;
    const ACCESS: Access = Access::Write;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<PushOutcome>> {
        let acked = match c.lock_terminal(self.terminal.key).await? {
            Some(t) if t.admits(&self.terminal) => t.acked_through,
            _ => return Err(revoked(&self.terminal)),
        };
        let seq = self.entry.seq;
        if seq <= acked {
            // Another push of the same entries got there first.
            return done(Ok(PushOutcome {
                acked_through: acked,
                applied: 0,
                duplicates: 1,
                quarantined: Vec::new(),
            }));
        }
        if Some(seq.get()) != acked.get().checked_add(1) {
            return Err(StoreError::corrupt(format!(
                "isolating seq {seq} while HQ holds through {acked}"
            )));
        }
        let row = QuarantineRow::new(&self.entry, &self.why);
        let encoded = [entry_body_and_hash(&self.entry)?];
        let rows = NewEntries {
            terminal: self.terminal.key,
            entries: std::slice::from_ref(&self.entry),
            encoded: &encoded,
            received_at: self.now,
            quarantined: std::slice::from_ref(&row),
        };
        if let Some(clash) = c.insert_entries(&rows).await? {
            return Err(refusal(clash, acked));
        }
        c.insert_quarantine(std::slice::from_ref(&row), self.now)
            .await?;
        c.ack(self.terminal.key, seq, self.now).await?;
        done(Ok(PushOutcome {
            acked_through: seq,
            applied: 0,
            duplicates: 0,
            quarantined: vec![seq],
        }))
    }
}

/// Pushes `batch` again entry by entry, after applying it whole failed inside HQ:
/// each entry that fails alone is isolated ([`Isolate`]), the others apply. Stops at
/// the first failure that is not HQ's own (a refusal, a database that went away),
/// answering it: what was committed before it stays, as after any partial sync.
pub async fn push_one_by_one<B: Backend>(
    backend: &B,
    terminal: &TerminalIdentity,
    batch: &Batch,
    now: OffsetDateTime,
) -> Result<PushOutcome> {
    let mut total = PushOutcome {
        acked_through: Seq(0),
        applied: 0,
        duplicates: 0,
        quarantined: Vec::new(),
    };
    for entry in batch.entries() {
        let single = Batch::new(vec![entry.clone()])
            .map_err(|e| StoreError::corrupt(format!("one entry of a valid batch: {e}")))?;
        let push = Push::new(terminal.clone(), Arc::new(single), now);
        let outcome = match backend.run(push).await {
            Ok(outcome) => outcome,
            Err(e) if is_internal(&e) => {
                // The seq only: the error may name a card, which stays out of logs.
                tracing::warn!(%terminal, seq = %entry.seq,
                    "applying an entry failed inside HQ; quarantined");
                let isolate = Isolate {
                    terminal: terminal.clone(),
                    entry: entry.clone(),
                    why: Unappliable::Internal(e.to_string()),
                    now,
                };
                backend.run(isolate).await?
            }
            Err(e) => return Err(e),
        };
        total.acked_through = outcome.acked_through;
        total.applied = total.applied.saturating_add(outcome.applied);
        total.duplicates = total.duplicates.saturating_add(outcome.duplicates);
        total.quarantined.extend(outcome.quarantined);
    }
    Ok(total)
}
