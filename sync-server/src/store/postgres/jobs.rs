//! What the periodic job looks for and what `verify` sums, on PostgreSQL.

use super::session::PgSession;
use super::sql;
use crate::ledger::verify::{TerminalAudit, WideSum};
use crate::store::Result;
use crate::store::encode::{signed, to_db};
use crate::store::rows::{self, CARD_COLUMNS, Columns, split_sum};
use crate::store::statements::{AuditRows, AuditedCard, JobRows};
use protocol::CardId;
use time::OffsetDateTime;

impl JobRows for PgSession<'_> {
    async fn due_lots(&mut self, now: OffsetDateTime) -> Result<Vec<(CardId, i64)>> {
        sql::all(
            self.conn().await?,
            "SELECT card, id FROM lots WHERE NOT matured AND matures_at <= $1
             UNION
             SELECT card, id FROM lots
             WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= $1",
            &[&to_db(now)],
            |r| Ok((r.card(0)?, r.int(1)?)),
        )
        .await
    }

    async fn cards_with_spend_dropping(&mut self, now: OffsetDateTime) -> Result<Vec<CardId>> {
        sql::all(
            self.conn().await?,
            "SELECT card FROM cards WHERE spend_drops_at IS NOT NULL AND spend_drops_at <= $1",
            &[&to_db(now)],
            |r| r.card(0),
        )
        .await
    }

    async fn tiers_version(&mut self) -> Result<u64> {
        sql::one(
            self.conn().await?,
            "SELECT tiers_rules_version FROM job_state WHERE id = 1",
            &[],
            |r| r.counter(0),
        )
        .await
    }

    async fn cards_with_spend_or_tier(&mut self, zero_tier: Option<&str>) -> Result<Vec<CardId>> {
        sql::all(
            self.conn().await?,
            "SELECT card FROM cards WHERE spend_12m <> 0 OR tier IS DISTINCT FROM $1",
            &[&zero_tier],
            |r| r.card(0),
        )
        .await
    }

    async fn mark_tiers(&mut self, version: u64) -> Result<()> {
        sql::execute(
            self.conn().await?,
            "UPDATE job_state SET tiers_rules_version = $1
             WHERE id = 1 AND tiers_rules_version < $1",
            &[&signed(version)?],
        )
        .await?;
        Ok(())
    }
}

impl AuditRows for PgSession<'_> {
    async fn all_cards(&mut self) -> Result<Vec<AuditedCard>> {
        sql::all(
            self.conn().await?,
            &format!("SELECT {CARD_COLUMNS} FROM cards"),
            &[],
            rows::audited_card,
        )
        .await
    }

    /// `SUM(bigint)` is `numeric` here and cannot overflow, but casting it back to
    /// `bigint` can: the split sums convert exactly, like SQLite's.
    async fn ledger_sums(&mut self) -> Result<Vec<(String, WideSum, WideSum)>> {
        sql::all(
            self.conn().await?,
            &format!(
                "SELECT card, {}, {} FROM ledger GROUP BY card",
                split_sum("delta_balance", "::bigint"),
                split_sum("delta_pending", "::bigint")
            ),
            &[],
            rows::card_sums,
        )
        .await
    }

    async fn lot_sums(&mut self) -> Result<Vec<(String, WideSum, WideSum)>> {
        sql::all(
            self.conn().await?,
            &format!(
                "SELECT card, {}, {} FROM lots GROUP BY card",
                split_sum("remaining", "::bigint"),
                split_sum(
                    "CASE WHEN NOT matured THEN remaining ELSE 0 END",
                    "::bigint"
                )
            ),
            &[],
            rows::card_sums,
        )
        .await
    }

    async fn members_without_card(&mut self) -> Result<Vec<String>> {
        sql::all(self.conn().await?, rows::MEMBERS_WITHOUT_CARD, &[], |r| {
            r.text(0)
        })
        .await
    }

    async fn terminal_audits(&mut self) -> Result<Vec<TerminalAudit>> {
        sql::all(
            self.conn().await?,
            "SELECT t.store, t.terminal, t.acked_through, COUNT(e.seq), MIN(e.seq), MAX(e.seq)
             FROM terminals t LEFT JOIN entries e ON e.terminal_ref = t.id
             GROUP BY t.id ORDER BY t.store, t.terminal",
            &[],
            rows::terminal_audit,
        )
        .await
    }
}
