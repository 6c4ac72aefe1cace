//! How far HQ has acknowledged this terminal's entries, when HQ was last reached,
//! and the pull cursor.

use super::JournalError;
use super::entries::last_seq;
use protocol::Seq;
use rusqlite::{Connection, params};
use time::OffsetDateTime;

/// The sync queue as `/v1/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStatus {
    /// Entries HQ has not acknowledged.
    pub depth: u64,
    /// Age of the oldest of them, in seconds (0 when none).
    pub oldest_unsynced_secs: i64,
    /// Highest acknowledged seq.
    pub acked_through: Seq,
    /// Highest written seq.
    pub last_seq: Seq,
    /// Unix time HQ last answered, if ever.
    pub last_contact_unix: Option<i64>,
}

/// The highest seq HQ holds, as far as this terminal knows.
pub fn acked_through(conn: &Connection) -> Result<Seq, JournalError> {
    Ok(Seq(conn.query_row(
        "SELECT acked_through FROM sync_state WHERE id = 1",
        [],
        |r| r.get(0),
    )?))
}

/// Unix time of the last successful exchange with HQ.
pub fn last_contact(conn: &Connection) -> Result<Option<i64>, JournalError> {
    Ok(conn.query_row(
        "SELECT last_contact_unix FROM sync_state WHERE id = 1",
        [],
        |r| r.get(0),
    )?)
}

/// Queue depth and age.
pub fn queue_status(conn: &Connection, now: OffsetDateTime) -> Result<QueueStatus, JournalError> {
    let acked = acked_through(conn)?;
    let last = last_seq(conn)?;
    let oldest: Option<i64> = conn
        .prepare_cached("SELECT at_unix FROM entries WHERE seq > ?1 ORDER BY seq LIMIT 1")?
        .query_row([acked.get()], |r| r.get(0))
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    Ok(QueueStatus {
        depth: last.get().saturating_sub(acked.get()),
        oldest_unsynced_secs: oldest.map_or(0, |at| (now.unix_timestamp() - at).max(0)),
        acked_through: acked,
        last_seq: last,
        last_contact_unix: last_contact(conn)?,
    })
}

/// What an acknowledgement from HQ did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Recorded.
    Recorded,
    /// HQ claims entries this journal never wrote: it is not the journal HQ knows for
    /// this terminal (restored from an old backup, or copied). Syncing stops.
    AheadOfJournal {
        /// What HQ acknowledged.
        hq: Seq,
        /// What this journal holds.
        local: Seq,
    },
}

/// Records HQ's `acked_through` (the highest contiguous seq it holds). HQ's word is
/// authoritative: a lower value than recorded (HQ restored from a backup) moves the
/// pointer back so those entries are pushed again — nothing is deleted locally, so
/// they can always be resent.
pub fn record_ack(
    conn: &Connection,
    hq: Seq,
    now: OffsetDateTime,
) -> Result<AckOutcome, JournalError> {
    let local = last_seq(conn)?;
    if hq > local {
        return Ok(AckOutcome::AheadOfJournal { hq, local });
    }
    conn.prepare_cached(
        "UPDATE sync_state SET acked_through = ?1, last_contact_unix = ?2 WHERE id = 1",
    )?
    .execute(params![hq.get(), now.unix_timestamp()])?;
    Ok(AckOutcome::Recorded)
}

/// Records that HQ answered.
pub fn record_contact(conn: &Connection, now: OffsetDateTime) -> Result<(), JournalError> {
    conn.prepare_cached("UPDATE sync_state SET last_contact_unix = ?1 WHERE id = 1")?
        .execute([now.unix_timestamp()])?;
    Ok(())
}

/// The pull cursor (empty before the first pull).
pub fn pull_cursor(conn: &Connection) -> Result<String, JournalError> {
    Ok(
        conn.query_row("SELECT pull_cursor FROM sync_state WHERE id = 1", [], |r| {
            r.get(0)
        })?,
    )
}

/// Stores the pull cursor.
pub fn set_pull_cursor(conn: &Connection, cursor: &str) -> Result<(), JournalError> {
    conn.execute(
        "UPDATE sync_state SET pull_cursor = ?1 WHERE id = 1",
        [cursor],
    )?;
    Ok(())
}

/// Why syncing stopped, if it did (a conflict a human must look at).
pub fn halted_reason(conn: &Connection) -> Result<Option<String>, JournalError> {
    Ok(conn.query_row(
        "SELECT halted_reason FROM sync_state WHERE id = 1",
        [],
        |r| r.get(0),
    )?)
}

/// Stops (or, with `None`, resumes) syncing, with the reason shown in `/v1/health`.
pub fn set_halted(conn: &Connection, reason: Option<&str>) -> Result<(), JournalError> {
    conn.execute(
        "UPDATE sync_state SET halted_reason = ?1 WHERE id = 1",
        [reason],
    )?;
    Ok(())
}
