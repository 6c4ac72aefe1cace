//! What the periodic job looks for and what `verify` sums, in SQLite.

use super::session::SqliteSession;
use crate::ledger::verify::{TerminalAudit, WideSum};
use crate::store::Result;
use crate::store::encode::{signed, to_db};
use crate::store::rows::{self, CARD_COLUMNS, Columns, split_sum};
use crate::store::statements::{AuditRows, AuditedCard, JobRows};
use protocol::CardId;
use time::OffsetDateTime;

impl JobRows for SqliteSession<'_> {
    async fn due_lots(&mut self, now: OffsetDateTime) -> Result<Vec<(CardId, i64)>> {
        self.all(
            "SELECT card, id FROM lots WHERE matured = 0 AND matures_at <= ?1
             UNION
             SELECT card, id FROM lots
             WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= ?1",
            [to_db(now)],
            |r| Ok((r.card(0)?, r.int(1)?)),
        )
    }

    async fn cards_with_spend_dropping(&mut self, now: OffsetDateTime) -> Result<Vec<CardId>> {
        self.all(
            "SELECT card FROM cards WHERE spend_drops_at IS NOT NULL AND spend_drops_at <= ?1",
            [to_db(now)],
            |r| r.card(0),
        )
    }

    async fn tiers_version(&mut self) -> Result<u64> {
        self.one(
            "SELECT tiers_rules_version FROM job_state WHERE id = 1",
            [],
            |r| r.counter(0),
        )
    }

    async fn cards_with_spend_or_tier(&mut self, zero_tier: Option<&str>) -> Result<Vec<CardId>> {
        self.all(
            "SELECT card FROM cards WHERE spend_12m != 0 OR tier IS NOT ?1",
            [zero_tier],
            |r| r.card(0),
        )
    }

    async fn mark_tiers(&mut self, version: u64) -> Result<()> {
        self.execute(
            "UPDATE job_state SET tiers_rules_version = ?1
             WHERE id = 1 AND tiers_rules_version < ?1",
            [signed(version)?],
        )?;
        Ok(())
    }
}

impl AuditRows for SqliteSession<'_> {
    async fn all_cards(&mut self) -> Result<Vec<AuditedCard>> {
        self.all(&format!("SELECT {CARD_COLUMNS} FROM cards"), [], |r| {
            rows::audited_card(r)
        })
    }

    async fn ledger_sums(&mut self) -> Result<Vec<(String, WideSum, WideSum)>> {
        self.all(
            &format!(
                "SELECT card, {}, {} FROM ledger GROUP BY card",
                split_sum("delta_balance", ""),
                split_sum("delta_pending", "")
            ),
            [],
            |r| rows::card_sums(r),
        )
    }

    async fn lot_sums(&mut self) -> Result<Vec<(String, WideSum, WideSum)>> {
        self.all(
            &format!(
                "SELECT card, {}, {} FROM lots GROUP BY card",
                split_sum("remaining", ""),
                split_sum("CASE WHEN matured = 0 THEN remaining ELSE 0 END", "")
            ),
            [],
            |r| rows::card_sums(r),
        )
    }

    async fn members_without_card(&mut self) -> Result<Vec<String>> {
        self.all(rows::MEMBERS_WITHOUT_CARD, [], |r| r.text(0))
    }

    async fn terminal_audits(&mut self) -> Result<Vec<TerminalAudit>> {
        self.all(
            "SELECT t.store, t.terminal, t.acked_through, COUNT(e.seq), MIN(e.seq), MAX(e.seq)
             FROM terminals t LEFT JOIN entries e ON e.terminal_ref = t.id
             GROUP BY t.id ORDER BY t.store, t.terminal",
            [],
            |r| rows::terminal_audit(r),
        )
    }
}
