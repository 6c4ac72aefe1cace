//! Signing keys, anomalies, reports and HQ's blocks on PostgreSQL.

use super::session::PgSession;
use super::sql;
use crate::store::Result;
use crate::store::encode::to_db;
use crate::store::rows::{self, CARD_COLUMNS, Columns};
use crate::store::statements::{AdminRows, Blocking, CardDetail, KeyRows, NewKey};
use crate::store::{Anomaly, FlaggedEntry, KeyInfo, LedgerView};
use deadpool_postgres::GenericClient;
use protocol::{CardId, Points};
use time::OffsetDateTime;

impl KeyRows for PgSession<'_> {
    async fn lock_keys(&mut self) -> Result<()> {
        self.conn()
            .await?
            .batch_execute("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
            .await?;
        Ok(())
    }

    async fn end_current_key(&mut self, until: OffsetDateTime) -> Result<()> {
        sql::execute(
            self.conn().await?,
            "UPDATE signing_keys SET valid_until = $1 WHERE valid_until IS NULL",
            &[&to_db(until)],
        )
        .await?;
        Ok(())
    }

    async fn next_key_id(&mut self) -> Result<i64> {
        sql::one(
            self.conn().await?,
            "SELECT COALESCE(MAX(key_id), 0) + 1 FROM signing_keys",
            &[],
            |r| r.int(0),
        )
        .await
    }

    async fn insert_key(&mut self, key: &NewKey<'_>) -> Result<()> {
        sql::execute(
            self.conn().await?,
            "INSERT INTO signing_keys (key_id, secret_hex, public_key, created_at, valid_until)
             VALUES ($1, $2, $3, $4, NULL)",
            &[
                &key.id,
                &key.secret_hex,
                &key.public_key,
                &to_db(key.created_at),
            ],
        )
        .await?;
        Ok(())
    }

    async fn list_keys(&mut self) -> Result<Vec<KeyInfo>> {
        sql::all(
            self.conn().await?,
            "SELECT key_id, public_key, created_at, valid_until FROM signing_keys ORDER BY key_id",
            &[],
            rows::key_info,
        )
        .await
    }

    async fn current_key(&mut self) -> Result<Option<(i64, String)>> {
        sql::first(
            self.conn().await?,
            "SELECT key_id, secret_hex FROM signing_keys
             WHERE valid_until IS NULL ORDER BY key_id DESC LIMIT 1",
            &[],
            |r| Ok((r.int(0)?, r.text(1)?)),
        )
        .await
    }
}

impl AdminRows for PgSession<'_> {
    async fn insert_anomaly(&mut self, a: &Anomaly) -> Result<()> {
        sql::execute(
            self.conn().await?,
            "INSERT INTO anomalies (at, store, terminal, kind, detail) VALUES ($1, $2, $3, $4, $5)",
            &[
                &to_db(a.at),
                &a.store.as_str(),
                &a.terminal.as_str(),
                &a.kind.as_str(),
                &a.detail.as_str(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn anomalies(&mut self) -> Result<Vec<Anomaly>> {
        sql::all(
            self.conn().await?,
            "SELECT at, store, terminal, kind, detail FROM anomalies ORDER BY id",
            &[],
            rows::anomaly,
        )
        .await
    }

    async fn flagged_entries(&mut self, card: Option<&CardId>) -> Result<Vec<FlaggedEntry>> {
        sql::all(
            self.conn().await?,
            "SELECT e.at, t.store, t.terminal, e.seq, f.entry_id, f.card, f.kind, f.detail
             FROM flags f
             JOIN entries e ON e.id = f.entry_id
             JOIN terminals t ON t.id = e.terminal_ref
             WHERE $1::text IS NULL OR f.card = $1
             ORDER BY f.id",
            &[&card.map(CardId::as_str)],
            rows::flagged_entry,
        )
        .await
    }

    async fn overdrawn_cards(&mut self) -> Result<Vec<(CardId, Points)>> {
        sql::all(
            self.conn().await?,
            "SELECT card, balance FROM cards WHERE balance < 0 ORDER BY balance, card",
            &[],
            |r| Ok((r.card(0)?, r.points(1)?)),
        )
        .await
    }

    async fn card_detail(&mut self, card: &CardId) -> Result<Option<CardDetail>> {
        sql::first(
            self.conn().await?,
            &format!("SELECT {CARD_COLUMNS}, block_reason, updated_at FROM cards WHERE card = $1"),
            &[&card.as_str()],
            rows::card_detail,
        )
        .await
    }

    async fn recent_ledger(&mut self, card: &CardId, n: u32) -> Result<Vec<LedgerView>> {
        sql::all(
            self.conn().await?,
            "SELECT kind, delta_balance, delta_pending, at, entry_id FROM ledger
             WHERE card = $1 ORDER BY id DESC LIMIT $2",
            &[&card.as_str(), &i64::from(n)],
            rows::ledger_view,
        )
        .await
    }

    /// At this transaction's feed position. The card row exists (locked, or
    /// created blank, by this transaction), so the event's id, drawn now, orders the
    /// events of one card.
    async fn store_block(&mut self, block: &Blocking<'_>) -> Result<()> {
        let card = block.card;
        sql::execute(
            self.conn().await?,
            "INSERT INTO block_events (xid, card, blocked, reason, at)
             VALUES (loyalty_xid(), $1, $2, $3, $4)",
            &[
                &card.card.as_str(),
                &card.blocked,
                &block.reason,
                &to_db(block.at),
            ],
        )
        .await?;
        sql::execute(
            self.conn().await?,
            "UPDATE cards SET blocked = $2, block_reason = $3, change_xid = loyalty_xid(),
                              updated_at = $4
             WHERE card = $1",
            &[
                &card.card.as_str(),
                &card.blocked,
                &block.reason.filter(|_| card.blocked),
                &to_db(block.at),
            ],
        )
        .await?;
        Ok(())
    }
}

/// The parameters of [`INSERT_ANOMALIES`]: anomalies, in order, one statement for
/// them all.
pub(super) fn anomaly_rows(anomalies: &[Anomaly]) -> sql::Owned<'_> {
    let at: Vec<i64> = anomalies.iter().map(|a| to_db(a.at)).collect();
    let store: Vec<&str> = anomalies.iter().map(|a| a.store.as_str()).collect();
    let terminal: Vec<&str> = anomalies.iter().map(|a| a.terminal.as_str()).collect();
    let kind: Vec<&str> = anomalies.iter().map(|a| a.kind.as_str()).collect();
    let detail: Vec<&str> = anomalies.iter().map(|a| a.detail.as_str()).collect();
    vec![
        Box::new(at),
        Box::new(store),
        Box::new(terminal),
        Box::new(kind),
        Box::new(detail),
    ]
}

/// The statement of [`insert_anomalies`].
pub(super) const INSERT_ANOMALIES: &str =
    "INSERT INTO anomalies (at, store, terminal, kind, detail)
     SELECT at, store, terminal, kind, detail
     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
          WITH ORDINALITY AS u(at, store, terminal, kind, detail, n)
     ORDER BY n";
