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

/// This terminal's entries HQ stored but could not apply, as its push answers said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HqQuarantine {
    /// How many.
    pub count: u64,
    /// The highest seq among them.
    pub last_seq: Option<Seq>,
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
        Ok(Seq(self
            .inner
            .prepare_cached("SELECT acked_through FROM sync_state WHERE id = 1")?
            .query_row([], |r| r.get(0))?))
    }

    /// Unix time of the last successful exchange with HQ.
    pub fn last_contact(&self) -> Result<Option<i64>, JournalError> {
        Ok(self
            .inner
            .prepare_cached("SELECT last_contact_unix FROM sync_state WHERE id = 1")?
            .query_row([], |r| r.get(0))?)
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

    /// Records the seqs a push answer says HQ quarantined. A seq at or below the
    /// highest already recorded is not counted again (an answer repeated after a
    /// lost one lists the same seqs). Returns the totals.
    pub fn record_hq_quarantine(&self, seqs: &[Seq]) -> Result<HqQuarantine, JournalError> {
        let before = self.hq_quarantine()?;
        let new: Vec<Seq> = seqs
            .iter()
            .copied()
            .filter(|s| before.last_seq.is_none_or(|last| *s > last))
            .collect();
        let Some(&last) = new.iter().max() else {
            return Ok(before);
        };
        let after = HqQuarantine {
            count: before.count.saturating_add(new.len() as u64),
            last_seq: Some(last),
        };
        self.inner
            .prepare_cached(
                "UPDATE sync_state SET hq_quarantined = ?1, hq_quarantined_last_seq = ?2 WHERE id = 1",
            )?
            .execute(params![
                i64::try_from(after.count).unwrap_or(i64::MAX),
                last.get()
            ])?;
        Ok(after)
    }

    /// The entries HQ quarantined so far.
    pub fn hq_quarantine(&self) -> Result<HqQuarantine, JournalError> {
        let (count, last): (i64, Option<u64>) = self.inner.query_row(
            "SELECT hq_quarantined, hq_quarantined_last_seq FROM sync_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(HqQuarantine {
            count: u64::try_from(count).unwrap_or(0),
            last_seq: last.map(Seq),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalFile;
    use protocol::{StoreId, TerminalId};

    #[test]
    fn hq_quarantined_entries_are_counted_once_each_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let (store, terminal) = (
            StoreId::parse("s").unwrap(),
            TerminalId::parse("t").unwrap(),
        );
        let mut file = JournalFile::open(&path, &store, &terminal).unwrap();
        let none = file.write(|tx| tx.hq_quarantine()).unwrap();
        assert_eq!(none, HqQuarantine::default());

        let first = file
            .write(|tx| tx.record_hq_quarantine(&[Seq(3), Seq(5)]))
            .unwrap();
        assert_eq!((first.count, first.last_seq), (2, Some(Seq(5))));
        // The same answer again (its first copy was lost), then a later one.
        let again = file
            .write(|tx| tx.record_hq_quarantine(&[Seq(3), Seq(5)]))
            .unwrap();
        assert_eq!(again, first);
        let later = file
            .write(|tx| tx.record_hq_quarantine(&[Seq(5), Seq(9)]))
            .unwrap();
        assert_eq!((later.count, later.last_seq), (3, Some(Seq(9))));
        drop(file);

        let mut file = JournalFile::open(&path, &store, &terminal).unwrap();
        assert_eq!(file.write(|tx| tx.hq_quarantine()).unwrap(), later);
    }
}
