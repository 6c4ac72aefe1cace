//! The push: one write transaction per batch, on every backend.
//!
//! 1. Lock the terminal's row (PostgreSQL: `SELECT … FOR UPDATE`, so a second push of
//!    the same terminal, on this instance or another, waits and then reads what the
//!    first one committed; SQLite: its single writer already serializes pushes),
//!    and check it still admits the token the push came with (not revoked, not
//!    rotated since): HTTP may have taken the terminal from tokens it remembers.
//! 2. Read what HQ holds of the batch's seq range and classify the entries
//!    ([`crate::ledger::sequence`]): duplicates, new, or a refusal of the whole batch.
//! 3. Lock the touched cards that have a row in card-id order
//!    ([`CardRows::lock_cards`] with [`Missing::Leave`]); a card HQ never held is
//!    planned as new and inserted with its figures in step 5. Two first sights of a
//!    card still cannot both write a "new" card: the second one's insert waits for
//!    the first transaction, fails on the card's key and makes its push start over
//!    ([`Written::CardTaken`]), which then locks the row like any other.
//! 4. After the locks, read the consuming cards' open lots and the spend of cards
//!    whose cached spend is stale ([`crate::ledger::cached_spend`]), so each batch
//!    computes from the state the previous writer committed.
//! 5. Let [`apply_batch`] decide, then write: entries (the database's uniqueness is
//!    the last word on exactly-once: a clash refuses the batch), cards, lots, ledger,
//!    flags, the KPI aggregates ([`crate::ledger::kpi`]), and the store's feed
//!    membership of cards not known to be in it.
//!    Settle reservations and leases first ([`settle`]: capture, release, lease
//!    charge and close, on the cards' `reserved`/`leased`), reading their rows after
//!    the card locks; a lease settlement that does not add up is recorded as an
//!    anomaly, never a refusal.
//! 6. Record `acked_through`; after commit the caches learn the new associations.
//!
//! The statements are asked for in groups ([`PushRows`]), shaped like round trips:
//! steps 1–2 with the rules and, where the backend can take them in the same round
//! trip, step 3–4's locks and reads (but the spend) of the whole batch (`push_head`);
//! those locks and reads again for the new entries only when they are not the whole
//! batch or were not taken (`lock_and_read_cards`); and every write of steps 5–6
//! (`write_push`). PostgreSQL sends each group as one pipelined flight (the
//! `START TRANSACTION` in the first, the `COMMIT` at the end of the last), so a push
//! costs two round trips whatever its size, cards HQ never held included; a retried
//! batch (some entries held) and a stale cached spend add one each. A write flight that failed committed nothing (its
//! `COMMIT` rolled back), so a refusal or [`Written::CardTaken`] leaves the database
//! as it was, and a start-over begins a new transaction.
//!
//! The entries' canonical JSON and hashes ([`Encoded`]) are computed from the moment
//! the push arrives, before the push reaches the writer: a large batch's on a
//! blocking thread, so the hashing overlaps with the transaction's first statements
//! instead of adding to them; a small batch's at once, where the push arrived, since
//! handing a few microseconds of work to another thread and back costs more than the
//! work.
//!
//! [`CardRows::lock_cards`]: crate::store::statements::CardRows::lock_cards
//! [`Missing::Leave`]: crate::store::statements::Missing::Leave
//! [`Written::CardTaken`]: crate::store::statements::Written::CardTaken
//! [`PushRows`]: crate::store::statements::PushRows

use super::done;
use super::rules;
use crate::ledger::apply::{BatchInput, BatchPlan, apply_batch, cards_that_consume};
use crate::ledger::batch::Batch;
use crate::ledger::escrow::{Settlement, SettlementKeys, settle, settlement_keys};
use crate::ledger::kpi;
use crate::ledger::sequence::{Refusal, StoredEntry, classify};
use crate::ledger::{AnomalyKind, CardRecord, Lot, RulesBook, cached_spend, spend_window_start};
use crate::store::Result;
use crate::store::backend::{Access, Attempt, Op};
use crate::store::caches::Caches;
use crate::store::encode::entry_body_and_hash;
use crate::store::statements::{
    CardReads, CardState, Clash, HeadReads, NewEntries, PushWrites, Statements, Written,
};
use crate::store::{Anomaly, PushOutcome, StoreError, TerminalIdentity};
use protocol::journal::JournalEntry;
use protocol::limits::Limits;
use protocol::{CardId, Seq, StoreId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Batches of up to this many entries are encoded at once, where the push arrives
/// (a few microseconds per entry); larger ones on a blocking thread. A hand-off to
/// that thread and back costs two thread wake-ups, more than encoding a till's usual
/// batch of a few sales.
const ENCODE_IN_PLACE_UP_TO: usize = 32;

/// The entries' canonical JSON and content hashes, in batch order.
pub enum Encoded {
    /// Still being computed on a blocking thread.
    Pending(JoinHandle<Result<Vec<(String, String)>>>),
    /// Computed, in batch order.
    Ready(Vec<(String, String)>),
    /// Failed (the error is handed out once: the push fails with it).
    Failed(Option<StoreError>),
}

impl Encoded {
    /// Starts encoding `batch`: at once when it is small, else on a blocking thread.
    pub fn start(batch: &Arc<Batch>) -> Self {
        if batch.entries().len() <= ENCODE_IN_PLACE_UP_TO {
            return match encode(batch) {
                Ok(done) => Self::Ready(done),
                Err(e) => Self::Failed(Some(e)),
            };
        }
        let batch = Arc::clone(batch);
        Self::Pending(tokio::task::spawn_blocking(move || encode(&batch)))
    }

    /// The encodings (waiting for them the first time).
    async fn get(&mut self) -> Result<&[(String, String)]> {
        if let Self::Pending(handle) = self {
            *self = match handle.await {
                Ok(Ok(done)) => Self::Ready(done),
                Ok(Err(e)) => Self::Failed(Some(e)),
                Err(e) => Self::Failed(Some(StoreError::Backend(Box::new(e)))),
            };
        }
        match self {
            Self::Ready(v) => Ok(v),
            Self::Failed(e) => Err(e
                .take()
                .unwrap_or_else(|| StoreError::corrupt("the entries' encoding failed"))),
            Self::Pending(_) => Err(StoreError::corrupt("entry encoding vanished")),
        }
    }
}

/// Every entry's canonical JSON and content hash, in batch order.
fn encode(batch: &Batch) -> Result<Vec<(String, String)>> {
    batch.entries().iter().map(entry_body_and_hash).collect()
}

/// Applies a batch or refuses it; see [`crate::store::Store::push`].
pub struct Push {
    terminal: TerminalIdentity,
    batch: Arc<Batch>,
    encoded: Encoded,
    now: OffsetDateTime,
    /// Attempts that found one of their new cards inserted meanwhile. Each one
    /// leaves at least one more of the batch's cards with a row (rows are never
    /// deleted), so there are no more than the batch has entries.
    cards_taken: usize,
    /// Cards whose feed membership the committed attempt made sure of.
    associated: Vec<String>,
}

impl Push {
    /// A push of `batch` (whose encoding starts now).
    pub fn new(terminal: TerminalIdentity, batch: Arc<Batch>, now: OffsetDateTime) -> Self {
        Self {
            encoded: Encoded::start(&batch),
            terminal,
            batch,
            now,
            cards_taken: 0,
            associated: Vec::new(),
        }
    }
}

impl Op for Push {
    type Out = PushOutcome;
    const ACCESS: Access = Access::Write;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<PushOutcome>> {
        let Self {
            terminal,
            batch,
            encoded,
            now,
            cards_taken,
            associated,
        } = self;
        let uncached: Vec<u64> = batch
            .rules_versions()
            .into_iter()
            .filter(|v| *v != 0 && c.caches().rules.get(*v).is_none())
            .collect();
        // The whole batch's card locks and reads go with the first round trip where
        // the backend can (PostgreSQL): used only if every entry is new.
        let whole = CardKeys::of(batch.entries());
        let head = c
            .push_head(HeadReads {
                terminal: terminal.key,
                range: batch.seq_range(),
                rules: &uncached,
                cards: whole.reads(terminal.key),
            })
            .await?;
        let acked = match head.terminal {
            Some(t) if t.admits(terminal) => t.acked_through,
            _ => return Err(revoked(terminal)),
        };
        // What HQ holds of the batch's range is its history only through `acked`
        // (the same rows `held_range` names).
        let held: HashMap<u64, StoredEntry> = head
            .held
            .into_iter()
            .filter(|(seq, _)| *seq <= acked.get())
            .collect();
        let classified = classify(batch, acked, &held)?;
        let new = classified.new_entries(batch);
        associated.clear();
        let Some(last) = new.last() else {
            c.ack(terminal.key, acked, *now).await?;
            return done(Ok(PushOutcome {
                acked_through: acked,
                applied: 0,
                duplicates: classified.duplicates,
                quarantined: Vec::new(),
            }));
        };
        let every_entry_new = new.len() == batch.entries().len();
        let mut to_apply = New {
            entries: new,
            from: classified.new_from,
            acked,
            acked_after: last.seq,
            // The whole batch's keys and what the first flight took for them serve
            // when every entry is new; else the new entries' own.
            keys: if every_entry_new {
                whole
            } else {
                CardKeys::of(new)
            },
            locked: head.cards.filter(|_| every_entry_new),
        };
        let rules = Rules {
            current: head.rules_version,
            asked: uncached,
            read: head.rules,
        };
        let Some(applied) =
            apply_new(c, terminal, batch, encoded, &mut to_apply, rules, *now).await?
        else {
            *cards_taken += 1;
            if *cards_taken > batch.entries().len() {
                return Err(StoreError::corrupt(
                    "a push kept finding its new cards inserted by others".to_owned(),
                ));
            }
            return Ok(Attempt::StartOver);
        };
        *associated = applied.associated;
        let applied_count = new.len().saturating_sub(applied.quarantined.len());
        done(Ok(PushOutcome {
            acked_through: to_apply.acked_after,
            applied: u32::try_from(applied_count).unwrap_or(u32::MAX),
            duplicates: classified.duplicates,
            quarantined: applied.quarantined,
        }))
    }

    fn committed(&mut self, caches: &Caches) {
        caches
            .associations
            .remember(&self.terminal.store, std::mem::take(&mut self.associated));
    }
}

/// The revocation of a terminal whose request was under way.
pub fn revoked(terminal: &TerminalIdentity) -> StoreError {
    StoreError::Revoked(terminal.to_string())
}

/// The entries a push applies.
struct New<'a> {
    entries: &'a [JournalEntry],
    /// Index of the first in the batch.
    from: usize,
    /// What HQ held before.
    acked: Seq,
    /// The last entry's seq: what HQ holds once they are stored.
    acked_after: Seq,
    /// The keys of their card locks and reads.
    keys: CardKeys<'a>,
    /// Their card locks and reads, if taken already.
    locked: Option<CardState>,
}

/// What the push's first flight read of the rules.
struct Rules {
    /// The current version.
    current: u64,
    /// The versions the cache lacked.
    asked: Vec<u64>,
    /// Their stored JSON (a version not stored is missing).
    read: Vec<(u64, String)>,
}

/// What [`apply_new`] wrote.
struct Applied {
    /// The cards whose feed membership it made sure of.
    associated: Vec<String>,
    /// The entries it stored without effect.
    quarantined: Vec<Seq>,
}

/// The keys of what a push locks and reads of its cards, for some entries.
struct CardKeys<'e> {
    /// The cards the entries touch, each once, in entry order.
    touched: Vec<&'e CardId>,
    /// The reservations and leases they settle.
    settlement: SettlementKeys,
    /// The cards whose open lots they consume.
    consuming: Vec<&'e CardId>,
}

impl<'e> CardKeys<'e> {
    fn of(entries: &'e [JournalEntry]) -> Self {
        let mut seen = HashSet::new();
        Self {
            touched: entries
                .iter()
                .filter_map(JournalEntry::card)
                .filter(|card| seen.insert(*card))
                .collect(),
            settlement: settlement_keys(entries),
            consuming: cards_that_consume(entries),
        }
    }

    /// The reads of the pushing terminal (`terminal`, its key).
    fn reads(&self, terminal: i64) -> CardReads<'_> {
        CardReads {
            cards: &self.touched,
            terminal,
            receipts: &self.settlement.receipts,
            open_receipts: &self.settlement.open_receipts,
            leases: &self.settlement.leases,
            consuming: &self.consuming,
        }
    }
}

/// Writes the new entries, their effects and the terminal's ack, or answers `None`
/// when another transaction inserted one of the cards this one found without a row
/// (the attempt must start over).
async fn apply_new<C: Statements>(
    c: &mut C,
    terminal: &TerminalIdentity,
    batch: &Batch,
    encoded: &mut Encoded,
    new: &mut New<'_>,
    rules: Rules,
    now: OffsetDateTime,
) -> Result<Option<Applied>> {
    let book = rules::book_at(
        c,
        rules.current,
        &rules.asked,
        rules.read,
        batch.rules_versions(),
    )
    .await?;
    // Reservations, leases and lots are read after the card locks: every writer of
    // them holds the card's lock. Every stored entry settles them once, a
    // quarantined one included: HQ holds it, so the till's hold has ended (its
    // points move when a retry applies it).
    let touched = &new.keys.touched;
    let state = match new.locked.take() {
        Some(state) => state,
        None => c.lock_and_read_cards(new.keys.reads(terminal.key)).await?,
    };
    let mut cards = state.locked.cards;
    // Absent from the locked rows: the plan starts them from `CardRecord::new`.
    let stored: HashSet<CardId> = cards.keys().cloned().collect();
    let settlement = settle(
        terminal.key,
        new.entries,
        state.reservations,
        state.leases,
        &mut cards,
        now,
    );
    let plan = plan_with(c, new.entries, cards, state.open_lots, &book, now).await?;
    // After the spend was read: it must not count this batch, the ledger adds each
    // entry as it applies it.
    let encoded = &encoded.get().await?[new.from..];
    // The KPI aggregates move with the applied entries, in the same transaction; a
    // quarantined entry counts when a retry applies it.
    let quarantined: HashSet<Seq> = plan.quarantined.iter().map(|q| q.seq).collect();
    let applied = new.entries.iter().filter(|e| !quarantined.contains(&e.seq));
    let kpi = kpi::delta(applied, &terminal.store);
    let anomalies = mismatches(terminal, &settlement, now);
    let unknown = c.caches().associations.unknown(&terminal.store, touched);
    let states: (Vec<&CardRecord>, Vec<&CardRecord>) = plan
        .cards
        .iter()
        .map(|p| &p.state)
        .partition(|s| stored.contains(&s.card));
    let writes = PushWrites {
        entries: NewEntries {
            terminal: terminal.key,
            entries: new.entries,
            encoded,
            received_at: now,
            quarantined: &plan.quarantined,
        },
        cards: states.0,
        new_cards: states.1,
        new_lots: &plan.new_lots,
        changed_lots: &plan.changed_lots,
        ledger: &plan.ledger,
        flags: &plan.flags,
        quarantine: &plan.quarantined,
        reservations: &settlement.reservations,
        leases: &settlement.leases,
        anomalies: &anomalies,
        kpi: &kpi,
        associate: (&terminal.store, &unknown),
        acked_through: new.acked_after,
        now,
    };
    match c.write_push(&writes).await? {
        Written::Done => {}
        Written::Refused(clash) => return Err(refusal(clash, new.acked)),
        Written::CardTaken => return Ok(None),
    }
    Ok(Some(Applied {
        associated: unknown,
        quarantined: plan.quarantined.iter().map(|q| q.seq).collect(),
    }))
}

/// Reads what applying `entries` to their locked `cards` needs and lets
/// [`apply_batch`] decide. Only after the cards' locks: each plan computes from the
/// state the previous writer committed.
pub(super) async fn plan<C: Statements>(
    c: &mut C,
    entries: &[JournalEntry],
    cards: HashMap<CardId, CardRecord>,
    rules: &RulesBook,
    now: OffsetDateTime,
) -> Result<BatchPlan> {
    let open_lots = c.open_lots(&cards_that_consume(entries)).await?;
    plan_with(c, entries, cards, open_lots, rules, now).await
}

/// [`plan`] with the open lots of the consuming cards read already (after the
/// locks). The spend of cards whose cached spend is stale is read here (rare: the
/// ledger job recomputes it when an entry leaves the window).
async fn plan_with<C: Statements>(
    c: &mut C,
    entries: &[JournalEntry],
    cards: HashMap<CardId, CardRecord>,
    open_lots: Vec<Lot>,
    rules: &RulesBook,
    now: OffsetDateTime,
) -> Result<BatchPlan> {
    let (mut spend_before, stale) = cached_spend(&cards, now);
    if !stale.is_empty() {
        spend_before.extend(c.spend_since(&stale, spend_window_start(now)).await?);
    }
    Ok(apply_batch(BatchInput {
        entries,
        cards,
        open_lots,
        spend_before,
        rules,
        // HQ holds every till to the hard ceilings: a till may be configured lower,
        // never higher, so what a till accepted is within them.
        limits: &Limits::CEILING,
        now,
    }))
}

/// Writes what a plan changes besides the entry rows (which exist by now).
pub(super) async fn write_effects<C: Statements>(
    c: &mut C,
    plan: &BatchPlan,
    now: OffsetDateTime,
) -> Result<()> {
    let cards: Vec<&CardRecord> = plan.cards.iter().map(|p| &p.state).collect();
    c.write_cards(&cards, now).await?;
    c.insert_lots(&plan.new_lots).await?;
    c.update_lots(&plan.changed_lots).await?;
    c.insert_ledger(&plan.ledger).await?;
    c.insert_flags(&plan.flags).await?;
    Ok(())
}

/// Adds what applied entries contribute to the KPI aggregates
/// ([`crate::ledger::kpi`]).
pub(super) async fn add_kpi<'a, C: Statements>(
    c: &mut C,
    applied: impl IntoIterator<Item = &'a JournalEntry>,
    store: &StoreId,
) -> Result<()> {
    let delta = kpi::delta(applied, store);
    if !delta.is_empty() {
        c.add_kpi(&delta).await?;
    }
    Ok(())
}

/// The anomalies of a settlement: a lease settlement that does not add up is
/// recorded, never a refusal.
fn mismatches(
    terminal: &TerminalIdentity,
    settlement: &Settlement,
    now: OffsetDateTime,
) -> Vec<Anomaly> {
    settlement
        .mismatches
        .iter()
        .map(|mismatch| {
            tracing::warn!(%terminal, "lease settlement does not add up: {mismatch}");
            Anomaly {
                at: now,
                store: terminal.store.clone(),
                terminal: terminal.terminal.clone(),
                kind: AnomalyKind::LeaseMismatch,
                detail: mismatch.to_string(),
            }
        })
        .collect()
}

/// The refusal a clash with the database's uniqueness means; the owner of a reused
/// id is named after the rollback ([`IdOwner`]).
pub(super) fn refusal(clash: Clash, acked_through: Seq) -> StoreError {
    match clash {
        Clash::Id(id) => Refusal::IdConflict {
            id: id.unwrap_or_else(Uuid::nil),
            owner: String::new(),
            acked_through,
        },
        Clash::Seq(seq) => Refusal::Conflict {
            seq,
            detail: "HQ already holds this seq (written concurrently)".to_owned(),
            acked_through,
        },
    }
    .into()
}

/// Names who holds an entry id a refused push reused: the id that clashed when the
/// backend knows it, else the first of the batch's ids HQ holds under another
/// `(terminal, seq)` (the batch's own duplicates do not count).
pub struct IdOwner {
    terminal: TerminalIdentity,
    batch: Arc<Batch>,
    clashed: Uuid,
}

impl IdOwner {
    /// For a push of `batch` that clashed on `clashed` (nil: not known).
    pub fn new(terminal: TerminalIdentity, batch: Arc<Batch>, clashed: Uuid) -> Self {
        Self {
            terminal,
            batch,
            clashed,
        }
    }
}

impl Op for IdOwner {
    /// The id and `store/terminal seq N`, or `"another entry"`.
    type Out = (Uuid, String);
    const ACCESS: Access = Access::Read;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<(Uuid, String)>> {
        let own: HashMap<Uuid, Seq> = self.batch.entries().iter().map(|e| (e.id, e.seq)).collect();
        let ids: Vec<Uuid> = if self.clashed.is_nil() {
            own.keys().copied().collect()
        } else {
            vec![self.clashed]
        };
        for h in c.entry_holders(&ids).await? {
            if h.terminal_key == self.terminal.key && own.get(&h.id) == Some(&h.seq) {
                continue;
            }
            return done(Ok((h.id, format!("{} seq {}", h.name, h.seq))));
        }
        done(Ok((self.clashed, "another entry".to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(entries: u64) -> Arc<Batch> {
        let sales = (1..=entries)
            .map(|seq| testkit::entries::sale(seq, "4000000000001", 0))
            .collect();
        Arc::new(Batch::new(sales).unwrap())
    }

    fn expected(batch: &Batch) -> Vec<(String, String)> {
        batch
            .entries()
            .iter()
            .map(|e| entry_body_and_hash(e).unwrap())
            .collect()
    }

    #[test]
    fn a_small_batch_is_encoded_in_place_without_a_blocking_thread() {
        // No runtime here: a hand-off to a blocking thread would panic.
        let small = batch(ENCODE_IN_PLACE_UP_TO as u64);
        let Encoded::Ready(done) = Encoded::start(&small) else {
            panic!("a batch of {ENCODE_IN_PLACE_UP_TO} entries was not encoded at once");
        };
        assert_eq!(done, expected(&small));
    }

    #[tokio::test]
    async fn a_large_batch_is_encoded_on_a_blocking_thread_to_the_same_result() {
        let large = batch(ENCODE_IN_PLACE_UP_TO as u64 + 1);
        let mut encoded = Encoded::start(&large);
        assert!(matches!(encoded, Encoded::Pending(_)));
        assert_eq!(encoded.get().await.unwrap(), expected(&large).as_slice());
        // A second attempt of the push reads the same encodings.
        assert_eq!(encoded.get().await.unwrap(), expected(&large).as_slice());
    }
}
