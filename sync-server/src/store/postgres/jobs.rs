//! What the periodic job looks for and what `verify` sums, on PostgreSQL.

use super::session::PgSession;
use super::sql;
use crate::ledger::CardRecord;
use crate::ledger::verify::TerminalAudit;
use crate::store::Result;
use crate::store::encode::{signed, to_db};
use crate::store::rows::{self, CARD_COLUMNS, Columns};
use crate::store::statements::{AuditRows, JobRows};
use protocol::{CardId, Points};
use time::OffsetDateTime;

impl JobRows for PgSession<'_> {
    async fn due_lots(&mut self, now: OffsetDateTime) -> Result<Vec<(CardId, i64)>> {
        sql::all(
            self.client(),
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
            self.client(),
            "SELECT card FROM cards WHERE spend_drops_at IS NOT NULL AND spend_drops_at <= $1",
            &[&to_db(now)],
            |r| r.card(0),
        )
        .await
    }

    async fn tiers_version(&mut self) -> Result<u64> {
        sql::one(
            self.client(),
            "SELECT tiers_rules_version FROM job_state WHERE id = 1",
            &[],
            |r| r.counter(0),
        )
        .await
    }

    async fn cards_with_spend_or_tier(&mut self, zero_tier: Option<&str>) -> Result<Vec<CardId>> {
        sql::all(
            self.client(),
            "SELECT card FROM cards WHERE spend_12m <> 0 OR tier IS DISTINCT FROM $1",
            &[&zero_tier],
            |r| r.card(0),
        )
        .await
    }

    async fn mark_tiers(&mut self, version: u64) -> Result<()> {
        sql::execute(
            self.client(),
            "UPDATE job_state SET tiers_rules_version = $1
             WHERE id = 1 AND tiers_rules_version < $1",
            &[&signed(version)?],
        )
        .await?;
        Ok(())
    }
}

impl AuditRows for PgSession<'_> {
    async fn all_cards(&mut self) -> Result<Vec<CardRecord>> {
        sql::all(
            self.client(),
            &format!("SELECT {CARD_COLUMNS} FROM cards"),
            &[],
            |r| rows::card_record(r, 0),
        )
        .await
    }

    async fn ledger_sums(&mut self) -> Result<Vec<(CardId, Points, Points)>> {
        sql::all(
            self.client(),
            "SELECT card, SUM(delta_balance)::bigint, SUM(delta_pending)::bigint
             FROM ledger GROUP BY card",
            &[],
            rows::card_sums,
        )
        .await
    }

    async fn lot_sums(&mut self) -> Result<Vec<(CardId, Points, Points)>> {
        sql::all(
            self.client(),
            "SELECT card, SUM(remaining)::bigint,
                    SUM(CASE WHEN NOT matured THEN remaining ELSE 0 END)::bigint
             FROM lots GROUP BY card",
            &[],
            rows::card_sums,
        )
        .await
    }

    async fn terminal_audits(&mut self) -> Result<Vec<TerminalAudit>> {
        sql::all(
            self.client(),
            "SELECT t.store, t.terminal, t.acked_through, COUNT(e.seq), MIN(e.seq), MAX(e.seq)
             FROM terminals t LEFT JOIN entries e ON e.terminal_ref = t.id
             GROUP BY t.id ORDER BY t.store, t.terminal",
            &[],
            rows::terminal_audit,
        )
        .await
    }
}
