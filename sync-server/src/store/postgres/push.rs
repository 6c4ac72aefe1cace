//! The push path on PostgreSQL: one READ COMMITTED transaction per batch.
//!
//! Exactly-once across instances: the transaction first locks the terminal's row
//! (`SELECT … FOR UPDATE`), so a second push of the same terminal, on this instance or
//! another, waits and then reads the `acked_through` and entries the first one
//! committed; only then are the entries classified. The unique `(terminal, seq)` and
//! entry-id constraints back this up inside the database.
//!
//! Balances under concurrency: the touched cards are locked next, in card-id order
//! (see [`super::cards`]); lots and spend are read after the locks, so each batch
//! computes from the state the previous writer committed, and a card's balance stays
//! the sum of its ledger rows however many terminals sell on it at once.

use super::cards::{
    Associations, Missing, insert_flags, insert_ledger, insert_lots, load_open_lots, lock_cards,
    spend_of_locked, update_lots, write_cards,
};
use super::{rules, sql};
use crate::ledger::CardState;
use crate::ledger::apply::{BatchInput, apply_batch, cards_that_consume, entry_kind, spend_of};
use crate::ledger::batch::Batch;
use crate::ledger::sequence::{Refusal, StoredEntry, classify, held_range};
use crate::store::encode::{RulesCache, entry_body_and_hash, signed, to_db, unsigned};
use crate::store::{PushOutcome, StoreError, TerminalIdentity};
use deadpool_postgres::{Client, Transaction};
use protocol::journal::JournalEntry;
use protocol::{CardId, Seq};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// What the push path keeps between requests: immutable facts only (rules versions,
/// store associations), so any instance may serve any push.
pub struct PushCaches<'a> {
    /// Rules versions.
    pub rules: &'a RulesCache,
    /// Known `(store, card)` feed associations.
    pub associations: &'a Associations,
}

/// The entries' canonical JSON and content hashes, in batch order. They are computed
/// on a blocking thread from the moment the push arrives, so the hashing overlaps
/// with the transaction's first statements instead of adding to them.
pub enum Encoded {
    /// Still being computed.
    Pending(JoinHandle<Result<Vec<(String, String)>, StoreError>>),
    /// Done.
    Ready(Vec<(String, String)>),
}

impl Encoded {
    /// Starts encoding `batch`.
    pub fn start(batch: &Arc<Batch>) -> Self {
        let batch = Arc::clone(batch);
        Self::Pending(tokio::task::spawn_blocking(move || {
            batch.entries().iter().map(entry_body_and_hash).collect()
        }))
    }

    /// The encodings (waiting for them the first time).
    async fn get(&mut self) -> Result<&[(String, String)], StoreError> {
        if let Self::Pending(handle) = self {
            let done = handle
                .await
                .map_err(|e| StoreError::Backend(Box::new(e)))??;
            *self = Self::Ready(done);
        }
        match self {
            Self::Ready(v) => Ok(v),
            Self::Pending(_) => Err(StoreError::Corrupt("entry encoding vanished".to_owned())),
        }
    }
}

/// Applies a batch or refuses it; see [`crate::store::Store::push`].
pub async fn push(
    client: &mut Client,
    caches: &PushCaches<'_>,
    terminal: &TerminalIdentity,
    batch: &Batch,
    encoded: &mut Encoded,
    now: OffsetDateTime,
) -> Result<PushOutcome, StoreError> {
    // Almost always every card is known and one attempt locks them; a batch with a
    // card HQ never saw is run again with blank rows created first.
    let mut result = apply(
        client,
        caches,
        terminal,
        batch,
        encoded,
        Missing::Report,
        now,
    )
    .await;
    if matches!(result, Ok(None)) {
        result = apply(
            client,
            caches,
            terminal,
            batch,
            encoded,
            Missing::Create,
            now,
        )
        .await;
    }
    match result {
        Ok(Some(outcome)) => Ok(outcome),
        Ok(None) => Err(StoreError::Corrupt(
            "cards created for a push were not there to lock".to_owned(),
        )),
        // The transaction is rolled back by now; name the owner for the anomaly report.
        Err(StoreError::Refused(Refusal::IdConflict { acked_through, .. })) => {
            let (id, owner) = id_owner(client, terminal, batch).await?;
            Err(Refusal::IdConflict {
                id,
                owner,
                acked_through,
            }
            .into())
        }
        Err(e) => Err(e),
    }
}

/// The entry id of `batch` that HQ holds under another `(terminal, seq)`, and who
/// holds it (`store/terminal seq N`). Rows that are the batch's own duplicates (this
/// terminal, the same seq) do not count.
async fn id_owner(
    client: &Client,
    terminal: &TerminalIdentity,
    batch: &Batch,
) -> Result<(Uuid, String), StoreError> {
    let own: HashMap<Uuid, i64> = batch
        .entries()
        .iter()
        .map(|e| Ok((e.id, signed(e.seq.get())?)))
        .collect::<Result<_, StoreError>>()?;
    let ids: Vec<Uuid> = own.keys().copied().collect();
    let rows = sql::query(
        client,
        "SELECT e.id, e.terminal_ref, e.seq, t.store, t.terminal FROM entries e
         JOIN terminals t ON t.id = e.terminal_ref
         WHERE e.id = ANY($1) ORDER BY e.seq",
        &[&ids],
    )
    .await?;
    for r in &rows {
        let (id, terminal_ref, seq): (Uuid, i64, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        if terminal_ref == terminal.key && own.get(&id) == Some(&seq) {
            continue;
        }
        let (store, term): (String, String) = (r.try_get(3)?, r.try_get(4)?);
        return Ok((id, format!("{store}/{term} seq {seq}")));
    }
    Ok((Uuid::nil(), "another entry".to_owned()))
}

/// One attempt; `None` when a card has no row and `missing` is `Report` (rolled
/// back, nothing written).
async fn apply(
    client: &mut Client,
    caches: &PushCaches<'_>,
    terminal: &TerminalIdentity,
    batch: &Batch,
    encoded: &mut Encoded,
    missing: Missing,
    now: OffsetDateTime,
) -> Result<Option<PushOutcome>, StoreError> {
    let tx = client.transaction().await?;
    let row = sql::query_opt(
        &tx,
        "SELECT acked_through, revoked_at IS NOT NULL FROM terminals WHERE id = $1 FOR UPDATE",
        &[&terminal.key],
    )
    .await?;
    let acked = match row {
        Some(r) if !r.try_get::<_, bool>(1)? => Seq(unsigned(r.try_get(0)?)?),
        _ => return Err(StoreError::Revoked(terminal.to_string())),
    };
    let mut held = HashMap::new();
    if let Some((from, to)) = held_range(batch, acked) {
        let rows = sql::query(
            &tx,
            "SELECT seq, id, content_hash FROM entries
             WHERE terminal_ref = $1 AND seq BETWEEN $2 AND $3",
            &[&terminal.key, &signed(from.get())?, &signed(to.get())?],
        )
        .await?;
        for r in rows {
            held.insert(
                unsigned(r.try_get(0)?)?,
                StoredEntry {
                    id: r.try_get(1)?,
                    content_hash: r.try_get(2)?,
                },
            );
        }
    }
    let classified = classify(batch, acked, &held)?;
    let new = classified.new_entries(batch);
    let acked_after = new.last().map_or(acked, |e| e.seq);
    let mut associated = Vec::new();
    if !new.is_empty() {
        let encoded = &encoded.get().await?[classified.new_from..];
        let new = New {
            entries: new,
            encoded,
            acked,
        };
        match apply_new(&tx, caches, terminal, batch, &new, missing, now).await? {
            Some(cards) => associated = cards,
            None => return Ok(None),
        }
    }
    sql::execute(
        &tx,
        "UPDATE terminals SET acked_through = $2, last_push_at = $3 WHERE id = $1",
        &[&terminal.key, &signed(acked_after.get())?, &to_db(now)],
    )
    .await?;
    tx.commit().await?;
    caches
        .associations
        .remember(terminal.store.as_str(), associated);
    Ok(Some(PushOutcome {
        acked_through: acked_after,
        applied: u32::try_from(new.len()).unwrap_or(u32::MAX),
        duplicates: classified.duplicates,
    }))
}

/// The entries a push applies, with their encodings.
struct New<'a> {
    entries: &'a [JournalEntry],
    encoded: &'a [(String, String)],
    /// What HQ held before.
    acked: Seq,
}

/// Writes the new entries and their effects; answers the store associations it
/// made sure of, or `None` when a card has no row and `missing` is `Report`.
async fn apply_new(
    tx: &Transaction<'_>,
    caches: &PushCaches<'_>,
    terminal: &TerminalIdentity,
    batch: &Batch,
    to_apply: &New<'_>,
    missing: Missing,
    now: OffsetDateTime,
) -> Result<Option<Vec<String>>, StoreError> {
    let new = to_apply.entries;
    let book = rules::book(tx, caches.rules, batch.rules_versions()).await?;
    let mut seen = HashSet::new();
    let touched: Vec<&CardId> = new
        .iter()
        .filter_map(JournalEntry::card)
        .filter(|c| seen.insert(*c))
        .collect();
    let Some(locked) = lock_cards(tx, &touched, missing, now).await? else {
        return Ok(None);
    };
    let consuming = cards_that_consume(new);
    let open_lots = load_open_lots(tx, &consuming).await?;
    let spend_before = spend_of_locked(tx, &locked.states, now).await?;
    let plan = apply_batch(BatchInput {
        entries: new,
        cards: locked.states,
        open_lots,
        spend_before,
        rules: &book,
        now,
    });
    // After the spend was read: it must not count this batch, the ledger adds each
    // entry as it applies it.
    insert_entries(tx, terminal, to_apply, now).await?;
    let states: Vec<&CardState> = plan.cards.iter().map(|c| &c.state).collect();
    write_cards(tx, &states, now).await?;
    insert_lots(tx, &plan.new_lots).await?;
    update_lots(tx, &plan.changed_lots).await?;
    insert_ledger(tx, &plan.ledger).await?;
    insert_flags(tx, &plan.flags).await?;
    let unknown = caches
        .associations
        .unknown(terminal.store.as_str(), &touched);
    associate(tx, terminal.store.as_str(), &unknown).await?;
    Ok(Some(unknown))
}

/// Adds cards to a store's balance feed. `ON CONFLICT`: most are there already (the
/// cache only knows what this instance saw), or another terminal of the store
/// associated one concurrently.
async fn associate(tx: &Transaction<'_>, store: &str, cards: &[String]) -> Result<(), StoreError> {
    if cards.is_empty() {
        return Ok(());
    }
    sql::execute(
        tx,
        "INSERT INTO store_cards (store, card) SELECT $1, unnest($2::text[])
         ON CONFLICT DO NOTHING",
        &[&store, &cards],
    )
    .await?;
    Ok(())
}

/// Inserts the new entries. A plain INSERT (no `ON CONFLICT`, whose speculative
/// insertion costs as much again): the unique constraints abort the transaction on
/// a reused id or seq, and [`push`] names the owner after the rollback.
async fn insert_entries(
    tx: &Transaction<'_>,
    terminal: &TerminalIdentity,
    new: &New<'_>,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let (entries, acked) = (new.entries, new.acked);
    let n = entries.len();
    let mut id = Vec::with_capacity(n);
    let mut seq = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut card = Vec::with_capacity(n);
    let mut spend = Vec::with_capacity(n);
    let mut rules_version = Vec::with_capacity(n);
    let mut hash = Vec::with_capacity(n);
    let mut body = Vec::with_capacity(n);
    for (e, (b, h)) in entries.iter().zip(new.encoded) {
        id.push(e.id);
        seq.push(signed(e.seq.get())?);
        at.push(to_db(e.at));
        kind.push(entry_kind(e));
        card.push(e.card().map(CardId::as_str));
        spend.push(spend_of(e).get());
        rules_version.push(signed(e.rules_version)?);
        hash.push(h.as_str());
        body.push(b.as_str());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO entries (id, terminal_ref, seq, at, kind, card, spend_minor,
                                  rules_version, content_hash, body, received_at)
             SELECT u.id, $1, u.seq, u.at, u.kind, u.card, u.spend, u.rv, u.hash, u.body, $2
             FROM unnest($3::uuid[], $4::bigint[], $5::bigint[], $6::text[], $7::text[],
                         $8::bigint[], $9::bigint[], $10::text[], $11::text[])
                  AS u(id, seq, at, kind, card, spend, rv, hash, body)",
        )
        .await?;
    let result = tx
        .execute(
            &stmt,
            &[
                &terminal.key,
                &to_db(now),
                &id,
                &seq,
                &at,
                &kind,
                &card,
                &spend,
                &rules_version,
                &hash,
                &body,
            ],
        )
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            match e.as_db_error().and_then(|d| d.constraint()) {
                // The database's own uniqueness is the last word on exactly-once.
                Some("entries_pkey") => Err(Refusal::IdConflict {
                    id: Uuid::nil(),
                    owner: String::new(),
                    acked_through: acked,
                }
                .into()),
                // The terminal's row lock makes this unreachable; the constraint
                // holds anyway.
                Some("entries_terminal_seq") => Err(Refusal::Conflict {
                    seq: entries.first().map_or(Seq(0), |e| e.seq),
                    detail: "HQ already holds this seq (written concurrently)".to_owned(),
                    acked_through: acked,
                }
                .into()),
                _ => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}
