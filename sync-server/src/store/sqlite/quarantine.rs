//! Quarantined entries in SQLite. The one writer thread already runs retries one
//! after the other (`group`), so locking a record is reading it.

use super::session::{SqliteSession, int, opt_text, owned_text, text};
use crate::ledger::quarantine::QuarantineRow;
use crate::store::QuarantinedEntry;
use crate::store::Result;
use crate::store::encode::to_db;
use crate::store::rows::{self, QUARANTINE_COLUMNS};
use crate::store::statements::{HeldInQuarantine, QuarantineRows};
use protocol::{CardId, Money};
use time::OffsetDateTime;
use uuid::Uuid;

impl QuarantineRows for SqliteSession<'_> {
    async fn insert_quarantine(&mut self, q: &[QuarantineRow], now: OffsetDateTime) -> Result<()> {
        let rows: Vec<_> = q
            .iter()
            .map(|r| {
                [
                    owned_text(r.entry_id.to_string()),
                    opt_text(r.card.as_ref().map(CardId::as_str)),
                    text(r.kind.as_str()),
                    text(&r.reason),
                    int(to_db(now)),
                ]
            })
            .collect();
        self.insert_many(
            "INSERT INTO quarantine (entry_id, card, kind, reason, quarantined_at)",
            "",
            &rows,
        )
    }

    async fn quarantined(&mut self) -> Result<Vec<QuarantinedEntry>> {
        self.all(
            &format!(
                "SELECT {QUARANTINE_COLUMNS} FROM quarantine q
                 JOIN entries e ON e.id = q.entry_id
                 JOIN terminals t ON t.id = e.terminal_ref
                 ORDER BY q.id"
            ),
            [],
            |r| rows::quarantined_entry(r),
        )
    }

    async fn lock_quarantined(&mut self, id: i64) -> Result<Option<HeldInQuarantine>> {
        self.first(
            "SELECT e.body, t.store, q.released_at IS NOT NULL FROM quarantine q
             JOIN entries e ON e.id = q.entry_id
             JOIN terminals t ON t.id = e.terminal_ref
             WHERE q.id = ?1",
            [id],
            |r| rows::held_in_quarantine(r),
        )
    }

    async fn release_quarantined(&mut self, id: i64, now: OffsetDateTime) -> Result<()> {
        self.execute(
            "UPDATE quarantine SET released_at = ?2 WHERE id = ?1",
            (id, to_db(now)),
        )?;
        Ok(())
    }

    async fn set_entry_spend(&mut self, entry: Uuid, spend: Money) -> Result<()> {
        self.execute(
            "UPDATE entries SET spend_minor = ?2 WHERE id = ?1",
            (entry.to_string(), spend.get()),
        )?;
        Ok(())
    }
}
