//! The push hot path: one `BEGIN IMMEDIATE` transaction per batch. Each touched card,
//! its open lots and its spend are loaded once per batch (chunked `IN` lists), the
//! ledger module decides, and the writes go through cached prepared statements.

use super::Inner;
use super::rows::{
    CARD_COLUMNS, LOT_COLUMNS, card_row, from_db, lot_row, opt_to_db, placeholders, signed, to_db,
    unsigned, uuid,
};
use super::rules;
use crate::ledger::apply::{BatchInput, apply_batch, cards_that_consume, entry_kind, spend_of};
use crate::ledger::batch::Batch;
use crate::ledger::sequence::{Refusal, StoredEntry, classify, held_range};
use crate::ledger::{CardState, FlagRow, LedgerRow, Lot, Spend, spend_window_start};
use crate::store::encode::entry_body_and_hash;
use crate::store::{PushOutcome, StoreError, TerminalIdentity};
use protocol::journal::JournalEntry;
use protocol::{CardId, Money, Seq};
use rusqlite::types::Value;
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params_from_iter,
};
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;

/// Keys per chunked `IN (…)` query; short chunks are padded with NULL so that one
/// cached statement serves every chunk.
const CHUNK: usize = 64;

/// Applies a batch or refuses it; see [`crate::store::Store::push`].
pub fn push(
    conn: &mut Connection,
    inner: &Inner,
    terminal: &TerminalIdentity,
    batch: &Batch,
    now: OffsetDateTime,
) -> Result<PushOutcome, StoreError> {
    match apply(conn, inner, terminal, batch, now) {
        // The transaction is rolled back by now; name the owner for the anomaly report.
        Err(StoreError::Refused(Refusal::IdConflict {
            id, acked_through, ..
        })) => {
            let owner: Option<(String, String, i64)> = conn
                .prepare_cached(
                    "SELECT t.store, t.terminal, e.seq FROM entries e
                     JOIN terminals t ON t.id = e.terminal_ref WHERE e.id = ?1",
                )?
                .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let owner = owner.map_or_else(
                || "another entry".to_owned(),
                |(s, t, seq)| format!("{s}/{t} seq {seq}"),
            );
            Err(Refusal::IdConflict {
                id,
                owner,
                acked_through,
            }
            .into())
        }
        other => other,
    }
}

fn apply(
    conn: &mut Connection,
    inner: &Inner,
    terminal: &TerminalIdentity,
    batch: &Batch,
    now: OffsetDateTime,
) -> Result<PushOutcome, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row: Option<(i64, bool)> = tx
        .prepare_cached(
            "SELECT acked_through, revoked_at IS NOT NULL FROM terminals WHERE id = ?1",
        )?
        .query_row([terminal.key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let acked = match row {
        Some((acked, false)) => Seq(unsigned(acked)?),
        _ => return Err(StoreError::Revoked(terminal.to_string())),
    };
    let mut held = HashMap::new();
    if let Some((from, to)) = held_range(batch, acked) {
        let mut stmt = tx.prepare_cached(
            "SELECT seq, id, content_hash FROM entries
             WHERE terminal_ref = ?1 AND seq BETWEEN ?2 AND ?3",
        )?;
        let mut rows = stmt.query((terminal.key, signed(from.get())?, signed(to.get())?))?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let id: String = r.get(1)?;
            held.insert(
                unsigned(seq)?,
                StoredEntry {
                    id: uuid(&id)?,
                    content_hash: r.get(2)?,
                },
            );
        }
    }
    let classified = classify(batch, acked, &held)?;
    let new = classified.new_entries(batch);
    let acked_after = new.last().map_or(acked, |e| e.seq);
    if !new.is_empty() {
        apply_new(&tx, inner, terminal, batch, new, acked, now)?;
    }
    tx.prepare_cached("UPDATE terminals SET acked_through = ?2, last_push_at = ?3 WHERE id = ?1")?
        .execute((terminal.key, signed(acked_after.get())?, to_db(now)))?;
    tx.commit()?;
    Ok(PushOutcome {
        acked_through: acked_after,
        applied: u32::try_from(new.len()).unwrap_or(u32::MAX),
        duplicates: classified.duplicates,
    })
}

fn apply_new(
    tx: &Connection,
    inner: &Inner,
    terminal: &TerminalIdentity,
    batch: &Batch,
    new: &[JournalEntry],
    acked: Seq,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let book = rules::book(tx, inner, batch.rules_versions())?;
    let mut seen = HashSet::new();
    let touched: Vec<&CardId> = new
        .iter()
        .filter_map(JournalEntry::card)
        .filter(|c| seen.insert(*c))
        .collect();
    let plan = apply_batch(BatchInput {
        entries: new,
        cards: load_cards(tx, &touched)?,
        open_lots: load_open_lots(tx, &cards_that_consume(new))?,
        spend_before: load_spend(tx, &touched, spend_window_start(now))?,
        rules: &book,
        now,
    });
    let states: Vec<&CardState> = plan.cards.iter().map(|c| &c.state).collect();
    write_cards(tx, &states, now)?;
    insert_entries(tx, terminal, new, acked, now)?;
    insert_lots(tx, &plan.new_lots)?;
    update_lots(tx, &plan.changed_lots)?;
    insert_ledger(tx, &plan.ledger)?;
    insert_flags(tx, &plan.flags)?;
    let store = Value::Text(terminal.store.as_str().to_owned());
    let known: HashSet<CardId> = query_in(
        tx,
        &format!(
            "SELECT card FROM store_cards WHERE store = ?{} AND card IN ({{keys}})",
            CHUNK + 1
        ),
        &touched,
        std::slice::from_ref(&store),
        |r| super::rows::card(&r.get::<_, String>(0)?),
    )?
    .into_iter()
    .collect();
    let missing: Vec<Vec<Value>> = touched
        .iter()
        .filter(|c| !known.contains(**c))
        .map(|c| vec![store.clone(), text(c.as_str())])
        .collect();
    insert_many(
        tx,
        "INSERT INTO store_cards (store, card)",
        "ON CONFLICT DO NOTHING",
        &missing,
    )
}

/// Rows per multi-row `INSERT`: one statement spreads SQLite's per-statement setup
/// (a cursor on the table and on each index, foreign-key checks) over many rows.
const ROWS_PER_INSERT: usize = 32;

/// `head VALUES (…), (…) tail` for `rows` rows of `cols` columns.
fn multi_insert_sql(head: &str, tail: &str, cols: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * cols * 6);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&placeholders(r * cols + 1, cols));
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// Inserts `rows` (each the same number of values) in multi-row statements.
fn insert_many(
    tx: &Connection,
    head: &str,
    tail: &str,
    rows: &[Vec<Value>],
) -> Result<(), StoreError> {
    let Some(cols) = rows.first().map(Vec::len) else {
        return Ok(());
    };
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = multi_insert_sql(head, tail, cols, chunk.len());
        let params = params_from_iter(chunk.iter().flatten());
        // Full chunks reuse one cached statement; the one short tail per call is
        // prepared afresh so its odd sizes do not evict hot statements.
        if chunk.len() == ROWS_PER_INSERT {
            tx.prepare_cached(&sql)?.execute(params)?;
        } else {
            tx.prepare(&sql)?.execute(params)?;
        }
    }
    Ok(())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn opt_text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, text)
}

fn int(n: i64) -> Value {
    Value::Integer(n)
}

fn opt_int(n: Option<i64>) -> Value {
    n.map_or(Value::Null, Value::Integer)
}

fn boolean(b: bool) -> Value {
    Value::Integer(i64::from(b))
}

/// Runs `template` (whose `{keys}` becomes `?1 … ?64` and whose further parameters
/// are `?65 …`) once per chunk of `keys`.
fn query_in<T>(
    conn: &Connection,
    template: &str,
    keys: &[&CardId],
    extra: &[Value],
    mut map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let sql = template.replace("{keys}", &placeholders(1, CHUNK));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut out = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let mut params: Vec<Value> = chunk
            .iter()
            .map(|k| Value::Text(k.as_str().to_owned()))
            .collect();
        params.resize(CHUNK, Value::Null);
        params.extend(extra.iter().cloned());
        let mut rows = stmt.query(params_from_iter(params))?;
        while let Some(r) = rows.next()? {
            out.push(map(r)?);
        }
    }
    Ok(out)
}

/// The stored states of `cards` (absent cards are left out).
pub fn load_cards(
    conn: &Connection,
    cards: &[&CardId],
) -> Result<HashMap<CardId, CardState>, StoreError> {
    let states = query_in(
        conn,
        &format!("SELECT {CARD_COLUMNS} FROM cards WHERE card IN ({{keys}})"),
        cards,
        &[],
        |r| card_row(r, 0)?.into_state(),
    )?;
    Ok(states.into_iter().map(|s| (s.card.clone(), s)).collect())
}

/// The lots of `cards` with points remaining.
pub fn load_open_lots(conn: &Connection, cards: &[&CardId]) -> Result<Vec<Lot>, StoreError> {
    query_in(
        conn,
        &format!("SELECT {LOT_COLUMNS} FROM lots WHERE card IN ({{keys}}) AND remaining > 0"),
        cards,
        &[],
        |r| lot_row(r)?.into_lot(),
    )
}

/// Spend of `cards` from stored entries after `since` (the window excludes its start).
pub fn load_spend(
    conn: &Connection,
    cards: &[&CardId],
    since: OffsetDateTime,
) -> Result<HashMap<CardId, Spend>, StoreError> {
    let sums = query_in(
        conn,
        &format!(
            "SELECT card, SUM(spend_minor), MIN(at) FROM entries
             WHERE card IN ({{keys}}) AND at > ?{} GROUP BY card",
            CHUNK + 1
        ),
        cards,
        &[Value::Integer(to_db(since))],
        |r| {
            let card: String = r.get(0)?;
            let spend = Spend {
                total: Money(r.get(1)?),
                earliest: Some(from_db(r.get(2)?)?),
            };
            Ok((super::rows::card(&card)?, spend))
        },
    )?;
    Ok(sums.into_iter().collect())
}

/// Stores card states, each under a fresh change position (reserved in one
/// statement), inserting cards HQ did not hold. `blocked` belongs to the admin
/// commands and is never overwritten here.
pub fn write_cards(
    tx: &Connection,
    states: &[&CardState],
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    if states.is_empty() {
        return Ok(());
    }
    let n = i64::try_from(states.len()).unwrap_or(i64::MAX);
    let last: i64 = tx
        .prepare_cached("UPDATE change_counter SET pos = pos + ?1 WHERE id = 1 RETURNING pos")?
        .query_row([n], |r| r.get(0))?;
    let first = last - n + 1;
    let rows: Vec<Vec<Value>> = states
        .iter()
        .zip(first..)
        .map(|(s, pos)| {
            vec![
                text(s.card.as_str()),
                int(s.balance.get()),
                int(s.pending.get()),
                opt_text(s.tier.as_deref()),
                int(s.spend_12m.get()),
                opt_int(opt_to_db(s.spend_drops_at)),
                boolean(s.welcome_given),
                boolean(s.seen),
                boolean(s.blocked),
                int(i64::from(s.flags.bits())),
                int(pos),
                int(to_db(now)),
            ]
        })
        .collect();
    insert_many(
        tx,
        "INSERT INTO cards (card, balance, pending, tier, spend_12m, spend_drops_at,
                            welcome_given, seen, blocked, flags, change_pos, updated_at)",
        "ON CONFLICT (card) DO UPDATE SET
            balance = excluded.balance, pending = excluded.pending, tier = excluded.tier,
            spend_12m = excluded.spend_12m, spend_drops_at = excluded.spend_drops_at,
            welcome_given = excluded.welcome_given,
            seen = excluded.seen, flags = excluded.flags, change_pos = excluded.change_pos,
            updated_at = excluded.updated_at",
        &rows,
    )
}

fn is_unique_violation(e: &rusqlite::Error, column: &str) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, Some(msg))
        if f.code == ErrorCode::ConstraintViolation && msg.contains(column))
}

fn insert_entries(
    tx: &Connection,
    terminal: &TerminalIdentity,
    entries: &[JournalEntry],
    acked: Seq,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO entries (id, terminal_ref, seq, at, kind, card, spend_minor,
                              rules_version, content_hash, body, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for e in entries {
        let (body, content_hash) = entry_body_and_hash(e)?;
        let result = stmt.execute((
            e.id.to_string(),
            terminal.key,
            signed(e.seq.get())?,
            to_db(e.at),
            entry_kind(e),
            e.card().map(CardId::as_str),
            spend_of(e).get(),
            signed(e.rules_version)?,
            content_hash,
            body,
            to_db(now),
        ));
        match result {
            Ok(_) => {}
            // The database's own uniqueness is the last word on exactly-once: the id
            // check costs no extra query on the hot path.
            Err(err) if is_unique_violation(&err, "entries.id") => {
                return Err(Refusal::IdConflict {
                    id: e.id,
                    owner: String::new(),
                    acked_through: acked,
                }
                .into());
            }
            Err(err) if is_unique_violation(&err, "entries.terminal_ref") => {
                return Err(Refusal::Conflict {
                    seq: e.seq,
                    detail: "HQ already holds this seq (written concurrently)".to_owned(),
                    acked_through: acked,
                }
                .into());
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Inserts new lots.
pub fn insert_lots(tx: &Connection, lots: &[Lot]) -> Result<(), StoreError> {
    let rows: Vec<Vec<Value>> = lots
        .iter()
        .map(|l| {
            vec![
                text(l.card.as_str()),
                text(l.kind.as_str()),
                opt_text(l.source_entry.map(|u| u.to_string()).as_deref()),
                int(to_db(l.earned_at)),
                opt_int(opt_to_db(l.matures_at)),
                boolean(l.matured),
                opt_int(opt_to_db(l.expires_at)),
                int(l.amount.get()),
                int(l.remaining.get()),
            ]
        })
        .collect();
    insert_many(
        tx,
        "INSERT INTO lots (card, kind, source_entry, earned_at, matures_at, matured,
                           expires_at, amount, remaining)",
        "",
        &rows,
    )
}

/// Stores the new remaining points and maturity of stored lots.
pub fn update_lots(tx: &Connection, lots: &[Lot]) -> Result<(), StoreError> {
    let mut stmt =
        tx.prepare_cached("UPDATE lots SET remaining = ?2, matured = ?3 WHERE id = ?1")?;
    for l in lots {
        if let crate::ledger::LotKey::Stored(id) = l.key {
            stmt.execute((id, l.remaining.get(), l.matured))?;
        }
    }
    Ok(())
}

/// Appends ledger rows.
pub fn insert_ledger(tx: &Connection, rows: &[LedgerRow]) -> Result<(), StoreError> {
    let rows: Vec<Vec<Value>> = rows
        .iter()
        .map(|r| {
            vec![
                text(r.card.as_str()),
                text(r.kind.as_str()),
                int(r.delta_balance.get()),
                int(r.delta_pending.get()),
                int(to_db(r.at)),
                opt_text(r.entry_id.map(|u| u.to_string()).as_deref()),
            ]
        })
        .collect();
    insert_many(
        tx,
        "INSERT INTO ledger (card, kind, delta_balance, delta_pending, at, entry_id)",
        "",
        &rows,
    )
}

fn insert_flags(tx: &Connection, flags: &[FlagRow]) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO flags (entry_id, card, kind, detail) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for f in flags {
        stmt.execute((
            f.entry_id.to_string(),
            f.card.as_str(),
            f.kind.as_str(),
            f.detail.as_str(),
        ))?;
    }
    Ok(())
}
