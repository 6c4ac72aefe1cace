//! The `sync_state` row: how far HQ has acknowledged this terminal's entries, when HQ
//! was last reached, the pull cursor, and whether syncing is halted.

use super::{JournalError, Tx};
use protocol::Seq;
use rusqlite::params;
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

/// What an acknowledgement from HQ did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// HQ's position is recorded, with the contact.
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

impl Tx<'_> {
    /// The highest seq HQ holds, as far as this terminal knows.
    pub fn acked_through(&self) -> Result<Seq, JournalError> {
        Ok(Seq(self.inner.query_row(
            "SELECT acked_through FROM sync_state WHERE id = 1",
            [],
            |r| r.get(0),
        )?))
    }

    /// Unix time of the last successful exchange with HQ.
    pub fn last_contact(&self) -> Result<Option<i64>, JournalError> {
        Ok(self.inner.query_row(
            "SELECT last_contact_unix FROM sync_state WHERE id = 1",
            [],
            |r| r.get(0),
        )?)
    }

    /// Queue depth and age.
    pub fn queue_status(&self, now: OffsetDateTime) -> Result<QueueStatus, JournalError> {
        let acked = self.acked_through()?;
        let last = self.last_seq()?;
        let oldest: Option<i64> = self
            .inner
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
            last_contact_unix: self.last_contact()?,
        })
    }

    /// Records HQ's `acked_through` (the highest contiguous seq it holds). HQ's word is
    /// authoritative: a lower value than recorded (HQ restored from a backup) moves the
    /// pointer back so those entries are pushed again — nothing is deleted locally, so
    /// they can always be resent.
    pub fn record_ack(&self, hq: Seq, now: OffsetDateTime) -> Result<AckOutcome, JournalError> {
        let local = self.last_seq()?;
        if hq > local {
            return Ok(AckOutcome::AheadOfJournal { hq, local });
        }
        self.inner
            .prepare_cached(
                "UPDATE sync_state SET acked_through = ?1, last_contact_unix = ?2 WHERE id = 1",
            )?
            .execute(params![hq.get(), now.unix_timestamp()])?;
        Ok(AckOutcome::Recorded)
    }

    /// Records that HQ answered.
    pub fn record_contact(&self, now: OffsetDateTime) -> Result<(), JournalError> {
        self.inner
            .prepare_cached("UPDATE sync_state SET last_contact_unix = ?1 WHERE id = 1")?
            .execute([now.unix_timestamp()])?;
        Ok(())
    }

    /// The pull cursor (empty before the first pull).
    pub fn pull_cursor(&self) -> Result<String, JournalError> {
        Ok(self
            .inner
            .query_row("SELECT pull_cursor FROM sync_state WHERE id = 1", [], |r| {
                r.get(0)
            })?)
    }

    /// Stores the pull cursor.
    pub fn set_pull_cursor(&self, cursor: &str) -> Result<(), JournalError> {
        self.inner.execute(
            "UPDATE sync_state SET pull_cursor = ?1 WHERE id = 1",
            [cursor],
        )?;
        Ok(())
    }

    /// Why syncing stopped, if it did (a conflict a human must look at).
    pub fn halted_reason(&self) -> Result<Option<String>, JournalError> {
        Ok(self.inner.query_row(
            "SELECT halted_reason FROM sync_state WHERE id = 1",
            [],
            |r| r.get(0),
        )?)
    }

    /// Stops (or, with `None`, resumes) syncing, with the reason shown in `/v1/health`.
    pub fn set_halted(&self, reason: Option<&str>) -> Result<(), JournalError> {
        self.inner.execute(
            "UPDATE sync_state SET halted_reason = ?1 WHERE id = 1",
            [reason],
        )?;
        Ok(())
    }
}
