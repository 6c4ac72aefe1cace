//! Appending journal entries with a gap-free `seq`.

use super::JournalError;
use protocol::Seq;
use protocol::journal::{EntryBody, JournalEntry};
use rusqlite::{Connection, params};
use time::OffsetDateTime;
use uuid::Uuid;

/// Appends an entry inside the caller's transaction (see [`super::Journal::write`])
/// and returns it.
///
/// `seq` is `max(seq) + 1` read inside the same `BEGIN IMMEDIATE` transaction, so
/// sequence numbers have no gaps and no duplicates: a rolled-back operation leaves
/// no number behind.
pub fn append(
    tx: &Connection,
    body: EntryBody,
    at: OffsetDateTime,
    rules_version: u64,
) -> Result<JournalEntry, JournalError> {
    let last: u64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM entries", [], |r| {
        r.get(0)
    })?;
    let entry = JournalEntry {
        id: Uuid::now_v7(),
        seq: Seq(last + 1),
        at,
        rules_version,
        body,
    };
    let effect = entry.effect();
    let (kind, offline, matures_at) = match &entry.body {
        EntryBody::Sale(s) => ("sale", s.offline, s.matures_at.map(|t| t.unix_timestamp())),
        EntryBody::Return(_) => ("return", false, None),
        EntryBody::Welcome(_) => ("welcome", false, None),
    };
    let body = serde_json::to_string(&entry).map_err(JournalError::data)?;
    tx.prepare_cached(
        "INSERT INTO entries (seq, id, kind, card, at_unix, offline, redeemed, delta_balance, delta_pending, matures_at_unix, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        entry.seq.get(),
        entry.id.to_string(),
        kind,
        entry.card().map(|c| c.as_str().to_owned()),
        entry.at.unix_timestamp(),
        offline,
        effect.redeemed.get(),
        effect.balance.get(),
        effect.pending.get(),
        matures_at,
        body,
    ])?;
    if let Some(card) = entry.card() {
        tx.prepare_cached(
            "INSERT INTO card_running (card, seq, running)
             VALUES (?1, ?2, ?3 + COALESCE((SELECT running FROM card_running WHERE card = ?1 ORDER BY seq DESC LIMIT 1), 0))",
        )?
        .execute(params![card.as_str(), entry.seq.get(), effect.balance.get()])?;
    }
    Ok(entry)
}

/// Entries as stored: `seq` and the entry's JSON, exactly as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Sequence number.
    pub seq: Seq,
    /// The `JournalEntry` JSON.
    pub json: String,
}

/// Reads entries with `seq > after`, oldest first, at most `limit`, as stored: the
/// sync client sends them as they are, without parsing and re-encoding each one.
pub fn read_after(
    conn: &Connection,
    after: Seq,
    limit: u32,
) -> Result<Vec<StoredEntry>, JournalError> {
    let mut stmt =
        conn.prepare_cached("SELECT seq, body FROM entries WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    let rows = stmt.query_map(params![after.get(), limit], |r| {
        Ok(StoredEntry {
            seq: Seq(r.get(0)?),
            json: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The highest `seq` written (0 for an empty journal).
pub fn last_seq(conn: &Connection) -> Result<Seq, JournalError> {
    Ok(Seq(conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM entries",
        [],
        |r| r.get(0),
    )?))
}
