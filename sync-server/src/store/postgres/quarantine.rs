//! Quarantined entries on PostgreSQL. A retry locks its record (`FOR UPDATE`), so two
//! retries of one entry, on any instances, queue up and the second finds it released.

use super::session::PgSession;
use super::sql;
use crate::ledger::quarantine::QuarantineRow;
use crate::store::QuarantinedEntry;
use crate::store::Result;
use crate::store::encode::to_db;
use crate::store::rows::{self, QUARANTINE_COLUMNS};
use crate::store::statements::{HeldInQuarantine, QuarantineRows};
use deadpool_postgres::Client;
use protocol::{CardId, Money};
use time::OffsetDateTime;
use uuid::Uuid;

impl QuarantineRows for PgSession<'_> {
    async fn insert_quarantine(&mut self, q: &[QuarantineRow], now: OffsetDateTime) -> Result<()> {
        insert_quarantine(self.conn().await?, q, now).await
    }

    async fn quarantined(&mut self) -> Result<Vec<QuarantinedEntry>> {
        sql::all(
            self.conn().await?,
            &format!(
                "SELECT {QUARANTINE_COLUMNS} FROM quarantine q
                 JOIN entries e ON e.id = q.entry_id
                 JOIN terminals t ON t.id = e.terminal_ref
                 ORDER BY q.id"
            ),
            &[],
            rows::quarantined_entry,
        )
        .await
    }

    async fn lock_quarantined(&mut self, id: i64) -> Result<Option<HeldInQuarantine>> {
        sql::first(
            self.conn().await?,
            "SELECT e.body, t.store, q.released_at IS NOT NULL FROM quarantine q
             JOIN entries e ON e.id = q.entry_id
             JOIN terminals t ON t.id = e.terminal_ref
             WHERE q.id = $1
             FOR UPDATE OF q",
            &[&id],
            rows::held_in_quarantine,
        )
        .await
    }

    async fn release_quarantined(&mut self, id: i64, now: OffsetDateTime) -> Result<()> {
        sql::execute(
            self.conn().await?,
            "UPDATE quarantine SET released_at = $2 WHERE id = $1",
            &[&id, &to_db(now)],
        )
        .await?;
        Ok(())
    }

    async fn set_entry_spend(&mut self, entry: Uuid, spend: Money) -> Result<()> {
        sql::execute(
            self.conn().await?,
            "UPDATE entries SET spend_minor = $2 WHERE id = $1",
            &[&entry, &spend.get()],
        )
        .await?;
        Ok(())
    }
}

pub(super) async fn insert_quarantine(
    c: &Client,
    q: &[QuarantineRow],
    now: OffsetDateTime,
) -> Result<()> {
    if q.is_empty() {
        return Ok(());
    }
    sql::execute(c, INSERT_QUARANTINE, &sql::refs(&quarantine_rows(q, now))).await?;
    Ok(())
}

/// The parameters of [`INSERT_QUARANTINE`].
pub(super) fn quarantine_rows(q: &[QuarantineRow], now: OffsetDateTime) -> sql::Owned<'_> {
    let entry: Vec<Uuid> = q.iter().map(|r| r.entry_id).collect();
    let card: Vec<Option<&str>> = q
        .iter()
        .map(|r| r.card.as_ref().map(CardId::as_str))
        .collect();
    let kind: Vec<&str> = q.iter().map(|r| r.kind.as_str()).collect();
    let reason: Vec<&str> = q.iter().map(|r| r.reason.as_str()).collect();
    vec![
        Box::new(entry),
        Box::new(card),
        Box::new(kind),
        Box::new(reason),
        Box::new(to_db(now)),
    ]
}

/// The statement of [`insert_quarantine`]: one for the batch, records in its order.
pub(super) const INSERT_QUARANTINE: &str =
    "INSERT INTO quarantine (entry_id, card, kind, reason, quarantined_at)
     SELECT entry, card, kind, reason, $5
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
          WITH ORDINALITY AS u(entry, card, kind, reason, n)
     ORDER BY n";
