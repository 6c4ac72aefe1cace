//! The `entries` table (append-only, gap-free `seq`) and `card_running`, the running
//! total of each card's points effects that is written with every entry.

use super::{JournalError, Tx};
use protocol::journal::{EntryBody, JournalEntry};
use protocol::{CardId, Seq};
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;
use uuid::Uuid;

/// Entries as stored: `seq` and the entry's JSON, exactly as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Sequence number.
    pub seq: Seq,
    /// The `JournalEntry` JSON.
    pub json: String,
}

impl Tx<'_> {
    /// Appends an entry and returns it.
    ///
    /// `seq` is `max(seq) + 1` read inside the same `BEGIN IMMEDIATE` transaction, so
    /// sequence numbers have no gaps and no duplicates: a rolled-back operation leaves
    /// no number behind.
    pub fn append(
        &self,
        body: EntryBody,
        at: OffsetDateTime,
        rules_version: u64,
    ) -> Result<JournalEntry, JournalError> {
        let last = self.last_seq()?;
        let entry = JournalEntry {
            id: Uuid::now_v7(),
            seq: Seq(last.get() + 1),
            at,
            rules_version,
            body,
        };
        let effect = entry.effect();
        let (kind, offline, matures_at) = match &entry.body {
            EntryBody::Sale(s) => ("sale", s.offline, s.matures_at.map(|t| t.unix_timestamp())),
            EntryBody::Return(_) => ("return", false, None),
            EntryBody::Welcome(_) => ("welcome", false, None),
            EntryBody::Release(_) => ("release", false, None),
            EntryBody::LeaseClosed(_) => ("lease_closed", false, None),
        };
        let body = serde_json::to_string(&entry).map_err(JournalError::data)?;
        self.inner
            .prepare_cached(
                "INSERT INTO entries (seq, id, kind, card, at_unix, offline, redeemed, delta_balance, delta_pending, matures_at_unix, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                entry.seq.get(),
                entry.id.to_string(),
                kind,
                entry.card().map(CardId::as_str),
                entry.at.unix_timestamp(),
                offline,
                effect.redeemed.get(),
                effect.balance.get(),
                effect.pending.get(),
                matures_at,
                body,
            ])?;
        if let Some(card) = entry.card() {
            // Added in Rust, checked: SQLite's `+` turns an overflowing integer sum into
            // a REAL, which the INTEGER column then refuses with an opaque error.
            let previous: i64 = self
                .inner
                .prepare_cached(
                    "SELECT running FROM card_running WHERE card = ?1 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row([card.as_str()], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let running = previous.checked_add(effect.balance.get()).ok_or_else(|| {
                JournalError::RunningTotalOverflow {
                    card: card.masked().to_string(),
                }
            })?;
            self.inner
                .prepare_cached(
                    "INSERT INTO card_running (card, seq, running) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![card.as_str(), entry.seq.get(), running])?;
        }
        Ok(entry)
    }

    /// Entries with `seq > after`, oldest first, at most `limit`, as stored: the sync
    /// client sends them as they are, without parsing and re-encoding each one.
    pub fn entries_after(&self, after: Seq, limit: u32) -> Result<Vec<StoredEntry>, JournalError> {
        let mut stmt = self
            .inner
            .prepare_cached("SELECT seq, body FROM entries WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let rows = stmt.query_map(params![after.get(), limit], |r| {
            Ok(StoredEntry {
                seq: Seq(r.get(0)?),
                json: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The highest `seq` written (0 for an empty journal).
    pub fn last_seq(&self) -> Result<Seq, JournalError> {
        Ok(Seq(self
            .inner
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM entries")?
            .query_row([], |r| r.get(0))?))
    }

    /// The id of the entry at `seq`, if there is one.
    pub fn entry_id(&self, seq: Seq) -> Result<Option<Uuid>, JournalError> {
        let id: Option<String> = self
            .inner
            .prepare_cached("SELECT id FROM entries WHERE seq = ?1")?
            .query_row([seq.get()], |r| r.get(0))
            .optional()?;
        id.map(|id| Uuid::parse_str(&id).map_err(JournalError::data))
            .transpose()
    }

    /// True when this terminal has written any entry for `card`.
    pub fn card_has_entries(&self, card: &CardId) -> Result<bool, JournalError> {
        Ok(self
            .inner
            .prepare_cached("SELECT 1 FROM card_running WHERE card = ?1 LIMIT 1")?
            .exists([card.as_str()])?)
    }
}

#[cfg(test)]
mod tests {
    use crate::journal::{JournalError, JournalFile};
    use protocol::journal::{EntryBody, WelcomeEntry};
    use protocol::{CardId, Points, StoreId, TerminalId};
    use time::macros::datetime;

    #[test]
    fn a_running_total_that_would_overflow_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = JournalFile::open(
            &dir.path().join("j.db"),
            &StoreId::parse("s").unwrap(),
            &TerminalId::parse("t").unwrap(),
        )
        .unwrap();
        let card = CardId::parse("4006381333931").unwrap();
        let add = |file: &mut JournalFile| {
            let body = EntryBody::Welcome(WelcomeEntry {
                card: card.clone(),
                points: Points(i64::MAX - 1),
            });
            file.write(|tx| tx.append(body, datetime!(2026-11-24 10:00 UTC), 0))
        };
        add(&mut file).unwrap();
        let err = add(&mut file).unwrap_err();
        assert!(
            matches!(&err, JournalError::RunningTotalOverflow { card } if card == "****3931"),
            "{err}"
        );
        let last = file.read(|tx| tx.last_seq()).unwrap();
        assert_eq!(last.get(), 1, "the refused entry left no seq behind");
    }
}
