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
    insert_flags, insert_ledger, insert_lots, load_open_lots, load_spend, lock_cards, update_lots,
    write_cards,
};
use super::{rules, sql};
use crate::ledger::apply::{BatchInput, apply_batch, cards_that_consume, entry_kind, spend_of};
use crate::ledger::batch::Batch;
use crate::ledger::sequence::{Refusal, StoredEntry, classify, held_range};
use crate::ledger::{CardState, spend_window_start};
use crate::store::encode::{RulesCache, entry_body_and_hash, signed, to_db, unsigned};
use crate::store::{PushOutcome, StoreError, TerminalIdentity};
use deadpool_postgres::{Client, Transaction};
use protocol::journal::JournalEntry;
use protocol::{CardId, Seq};
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;
use uuid::Uuid;

/// Applies a batch or refuses it; see [`crate::store::Store::push`].
pub async fn push(
    client: &mut Client,
    cache: &RulesCache,
    terminal: &TerminalIdentity,
    batch: &Batch,
    now: OffsetDateTime,
) -> Result<PushOutcome, StoreError> {
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
    if !new.is_empty() {
        apply_new(&tx, cache, terminal, batch, new, acked, now).await?;
    }
    sql::execute(
        &tx,
        "UPDATE terminals SET acked_through = $2, last_push_at = $3 WHERE id = $1",
        &[&terminal.key, &signed(acked_after.get())?, &to_db(now)],
    )
    .await?;
    tx.commit().await?;
    Ok(PushOutcome {
        acked_through: acked_after,
        applied: u32::try_from(new.len()).unwrap_or(u32::MAX),
        duplicates: classified.duplicates,
    })
}

async fn apply_new(
    tx: &Transaction<'_>,
    cache: &RulesCache,
    terminal: &TerminalIdentity,
    batch: &Batch,
    new: &[JournalEntry],
    acked: Seq,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let book = rules::book(tx, cache, batch.rules_versions()).await?;
    let mut seen = HashSet::new();
    let touched: Vec<&CardId> = new
        .iter()
        .filter_map(JournalEntry::card)
        .filter(|c| seen.insert(*c))
        .collect();
    let locked = lock_cards(tx, &touched, now).await?;
    let consuming = cards_that_consume(new);
    let open_lots = load_open_lots(tx, &consuming).await?;
    let spend_before = load_spend(
        tx,
        touched.iter().map(|c| c.as_str()),
        spend_window_start(now),
    )
    .await?;
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
    insert_entries(tx, terminal, new, acked, now).await?;
    let states: Vec<&CardState> = plan.cards.iter().map(|c| &c.state).collect();
    write_cards(tx, &states, now).await?;
    insert_lots(tx, &plan.new_lots).await?;
    update_lots(tx, &plan.changed_lots).await?;
    insert_ledger(tx, &plan.ledger).await?;
    insert_flags(tx, &plan.flags).await?;
    let keys: Vec<&str> = touched.iter().map(|c| c.as_str()).collect();
    sql::execute(
        tx,
        "INSERT INTO store_cards (store, card) SELECT $1, unnest($2::text[])
         ON CONFLICT DO NOTHING",
        &[&terminal.store.as_str(), &keys],
    )
    .await?;
    Ok(())
}

/// Inserts the new entries. `ON CONFLICT DO NOTHING` turns a reused id into a short
/// count instead of an aborted statement, so the owner can be named in the same
/// transaction.
async fn insert_entries(
    tx: &Transaction<'_>,
    terminal: &TerminalIdentity,
    entries: &[JournalEntry],
    acked: Seq,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
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
    for e in entries {
        let (b, h) = entry_body_and_hash(e)?;
        id.push(e.id);
        seq.push(signed(e.seq.get())?);
        at.push(to_db(e.at));
        kind.push(entry_kind(e));
        card.push(e.card().map(CardId::as_str));
        spend.push(spend_of(e).get());
        rules_version.push(signed(e.rules_version)?);
        hash.push(h);
        body.push(b);
    }
    let inserted = sql::execute(
        tx,
        "INSERT INTO entries (id, terminal_ref, seq, at, kind, card, spend_minor,
                              rules_version, content_hash, body, received_at)
         SELECT u.id, $1, u.seq, u.at, u.kind, u.card, u.spend, u.rv, u.hash, u.body, $2
         FROM unnest($3::uuid[], $4::bigint[], $5::bigint[], $6::text[], $7::text[],
                     $8::bigint[], $9::bigint[], $10::text[], $11::text[])
              AS u(id, seq, at, kind, card, spend, rv, hash, body)
         ON CONFLICT DO NOTHING",
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
    .await?;
    if inserted == n as u64 {
        return Ok(());
    }
    // Some entry collided. The terminal's row lock rules out a concurrent push of the
    // same seq, so it is an id HQ holds elsewhere (this terminal's own rows from this
    // batch have a seq past `acked`).
    let first_new = entries.first().map_or(0, |e| e.seq.get());
    let owner = sql::query_opt(
        tx,
        "SELECT e.id, t.store, t.terminal, e.seq FROM entries e
         JOIN terminals t ON t.id = e.terminal_ref
         WHERE e.id = ANY($1) AND NOT (e.terminal_ref = $2 AND e.seq >= $3)
         LIMIT 1",
        &[&id, &terminal.key, &signed(first_new)?],
    )
    .await?;
    match owner {
        Some(r) => {
            let (id, store, term, seq): (Uuid, String, String, i64) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
            Err(Refusal::IdConflict {
                id,
                owner: format!("{store}/{term} seq {seq}"),
                acked_through: acked,
            }
            .into())
        }
        None => Err(Refusal::Conflict {
            seq: Seq(first_new),
            detail: "HQ already holds this seq (written concurrently)".to_owned(),
            acked_through: acked,
        }
        .into()),
    }
}
