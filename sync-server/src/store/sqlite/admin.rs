//! Signing keys, anomalies, reports and HQ's blocks in SQLite. `BEGIN IMMEDIATE`
//! already keeps a second key rotation out, so locking the keys is nothing here.

use super::session::SqliteSession;
use crate::store::Result;
use crate::store::encode::to_db;
use crate::store::rows::{self, CARD_COLUMNS, Columns};
use crate::store::statements::{AdminRows, Blocking, CardDetail, CardRows, KeyRows, NewKey};
use crate::store::{Anomaly, FlaggedEntry, KeyInfo, LedgerView};
use protocol::{CardId, Points};
use time::OffsetDateTime;

impl KeyRows for SqliteSession<'_> {
    async fn lock_keys(&mut self) -> Result<()> {
        Ok(())
    }

    async fn end_current_key(&mut self, until: OffsetDateTime) -> Result<()> {
        self.execute(
            "UPDATE signing_keys SET valid_until = ?1 WHERE valid_until IS NULL",
            [to_db(until)],
        )?;
        Ok(())
    }

    async fn next_key_id(&mut self) -> Result<i64> {
        self.one(
            "SELECT COALESCE(MAX(key_id), 0) + 1 FROM signing_keys",
            [],
            |r| r.int(0),
        )
    }

    async fn insert_key(&mut self, key: &NewKey<'_>) -> Result<()> {
        self.execute(
            "INSERT INTO signing_keys (key_id, secret_hex, public_key, created_at, valid_until)
             VALUES (?1, ?2, ?3, ?4, NULL)",
            (
                key.id,
                key.secret_hex,
                key.public_key,
                to_db(key.created_at),
            ),
        )?;
        Ok(())
    }

    async fn list_keys(&mut self) -> Result<Vec<KeyInfo>> {
        self.all(
            "SELECT key_id, public_key, created_at, valid_until FROM signing_keys ORDER BY key_id",
            [],
            |r| rows::key_info(r),
        )
    }

    async fn current_key(&mut self) -> Result<Option<(i64, String)>> {
        self.first(
            "SELECT key_id, secret_hex FROM signing_keys
             WHERE valid_until IS NULL ORDER BY key_id DESC LIMIT 1",
            [],
            |r| Ok((r.int(0)?, r.text(1)?)),
        )
    }
}

impl AdminRows for SqliteSession<'_> {
    async fn insert_anomaly(&mut self, a: &Anomaly) -> Result<()> {
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

    async fn anomalies(&mut self) -> Result<Vec<Anomaly>> {
        self.all(
            "SELECT at, store, terminal, kind, detail FROM anomalies ORDER BY id",
            [],
            |r| rows::anomaly(r),
        )
    }

    async fn flagged_entries(&mut self, card: Option<&CardId>) -> Result<Vec<FlaggedEntry>> {
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

    async fn overdrawn_cards(&mut self) -> Result<Vec<(CardId, Points)>> {
        self.all(
            "SELECT card, balance FROM cards WHERE balance < 0 ORDER BY balance, card",
            [],
            |r| Ok((r.card(0)?, r.points(1)?)),
        )
    }

    async fn card_detail(&mut self, card: &CardId) -> Result<Option<CardDetail>> {
        self.first(
            &format!("SELECT {CARD_COLUMNS}, block_reason, updated_at FROM cards WHERE card = ?1"),
            [card.as_str()],
            |r| rows::card_detail(r),
        )
    }

    async fn recent_ledger(&mut self, card: &CardId, n: u32) -> Result<Vec<LedgerView>> {
        self.all(
            "SELECT kind, delta_balance, delta_pending, at, entry_id FROM ledger
             WHERE card = ?1 ORDER BY id DESC LIMIT ?2",
            (card.as_str(), i64::from(n)),
            |r| rows::ledger_view(r),
        )
    }

    /// The event takes the next change position; the card row is then written
    /// whole (taking another, and inserting a card HQ never held), and `blocked` set
    /// on its own, as `write_cards` never changes it.
    async fn store_block(&mut self, block: &Blocking<'_>) -> Result<()> {
        let card = block.card;
        let pos: i64 = self.one(
            "UPDATE change_counter SET pos = pos + 1 WHERE id = 1 RETURNING pos",
            [],
            |r| r.int(0),
        )?;
        self.execute(
            "INSERT INTO block_events (pos, card, blocked, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            (
                pos,
                card.card.as_str(),
                card.blocked,
                block.reason,
                to_db(block.at),
            ),
        )?;
        self.write_cards(&[card], block.at).await?;
        self.execute(
            "UPDATE cards SET blocked = ?2, block_reason = ?3 WHERE card = ?1",
            (
                card.card.as_str(),
                card.blocked,
                block.reason.filter(|_| card.blocked),
            ),
        )?;
        Ok(())
    }
}
