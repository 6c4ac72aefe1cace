//! Signing keys, anomalies, reports and HQ's blocks in SQLite. `BEGIN IMMEDIATE`
//! already keeps a second key rotation out, so locking the keys is nothing here.

use super::session::SqliteSession;
use crate::ledger::CardRecord;
use crate::store::encode::to_db;
use crate::store::rows::{self, CARD_COLUMNS, Columns};
use crate::store::statements::{AdminRows, CardDetail, CardRows, KeyRows};
use crate::store::{Anomaly, FlaggedEntry, KeyInfo, LedgerView, StoreError};
use protocol::{CardId, Points};
use time::OffsetDateTime;

impl KeyRows for SqliteSession<'_> {
    async fn lock_keys(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn end_current_key(&mut self, until: OffsetDateTime) -> Result<(), StoreError> {
        self.execute(
            "UPDATE signing_keys SET valid_until = ?1 WHERE valid_until IS NULL",
            [to_db(until)],
        )?;
        Ok(())
    }

    async fn next_key_id(&mut self) -> Result<i64, StoreError> {
        self.one(
            "SELECT COALESCE(MAX(key_id), 0) + 1 FROM signing_keys",
            [],
            |r| r.int(0),
        )
    }

    async fn insert_key(
        &mut self,
        id: i64,
        secret_hex: &str,
        public_key: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO signing_keys (key_id, secret_hex, public_key, created_at, valid_until)
             VALUES (?1, ?2, ?3, ?4, NULL)",
            (id, secret_hex, public_key, to_db(now)),
        )?;
        Ok(())
    }

    async fn list_keys(&mut self) -> Result<Vec<KeyInfo>, StoreError> {
        self.all(
            "SELECT key_id, public_key, created_at, valid_until FROM signing_keys ORDER BY key_id",
            [],
            |r| rows::key_info(r),
        )
    }

    async fn current_key(&mut self) -> Result<Option<(i64, String)>, StoreError> {
        self.first(
            "SELECT key_id, secret_hex FROM signing_keys
             WHERE valid_until IS NULL ORDER BY key_id DESC LIMIT 1",
            [],
            |r| Ok((r.int(0)?, r.text(1)?)),
        )
    }
}

impl AdminRows for SqliteSession<'_> {
    async fn insert_anomaly(&mut self, a: &Anomaly) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO anomalies (at, store, terminal, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            (
                to_db(a.at),
                a.store.as_str(),
                a.terminal.as_str(),
                a.kind.as_str(),
                a.detail.as_str(),
            ),
        )?;
        Ok(())
    }

    async fn anomalies(&mut self) -> Result<Vec<Anomaly>, StoreError> {
        self.all(
            "SELECT at, store, terminal, kind, detail FROM anomalies ORDER BY id",
            [],
            |r| rows::anomaly(r),
        )
    }

    async fn flagged_entries(
        &mut self,
        card: Option<&CardId>,
    ) -> Result<Vec<FlaggedEntry>, StoreError> {
        self.all(
            "SELECT e.at, t.store, t.terminal, e.seq, f.entry_id, f.card, f.kind, f.detail
             FROM flags f
             JOIN entries e ON e.id = f.entry_id
             JOIN terminals t ON t.id = e.terminal_ref
             WHERE ?1 IS NULL OR f.card = ?1
             ORDER BY f.id",
            [card.map(CardId::as_str)],
            |r| rows::flagged_entry(r),
        )
    }

    async fn overdrawn_cards(&mut self) -> Result<Vec<(CardId, Points)>, StoreError> {
        self.all(
            "SELECT card, balance FROM cards WHERE balance < 0 ORDER BY balance, card",
            [],
            |r| Ok((r.card(0)?, r.points(1)?)),
        )
    }

    async fn card_detail(&mut self, card: &CardId) -> Result<Option<CardDetail>, StoreError> {
        self.first(
            &format!("SELECT {CARD_COLUMNS}, block_reason, updated_at FROM cards WHERE card = ?1"),
            [card.as_str()],
            |r| rows::card_detail(r),
        )
    }

    async fn recent_ledger(
        &mut self,
        card: &CardId,
        n: u32,
    ) -> Result<Vec<LedgerView>, StoreError> {
        self.all(
            "SELECT kind, delta_balance, delta_pending, at, entry_id FROM ledger
             WHERE card = ?1 ORDER BY id DESC LIMIT ?2",
            (card.as_str(), i64::from(n)),
            |r| rows::ledger_view(r),
        )
    }

    /// The event takes the next change position.
    async fn record_block(
        &mut self,
        card: &CardId,
        blocked: bool,
        reason: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let pos: i64 = self.one(
            "UPDATE change_counter SET pos = pos + 1 WHERE id = 1 RETURNING pos",
            [],
            |r| r.int(0),
        )?;
        self.execute(
            "INSERT INTO block_events (pos, card, blocked, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            (pos, card.as_str(), blocked, reason, to_db(now)),
        )?;
        Ok(())
    }

    /// The card row is written whole (taking a change position, inserting a card HQ
    /// never held); `blocked` is then set on its own, as `write_cards` never changes
    /// it.
    async fn set_card_blocked(
        &mut self,
        card: &CardRecord,
        reason: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.write_cards(&[card], now).await?;
        self.execute(
            "UPDATE cards SET blocked = ?2, block_reason = ?3 WHERE card = ?1",
            (
                card.card.as_str(),
                card.blocked,
                if card.blocked { reason } else { None },
            ),
        )?;
        Ok(())
    }
}
