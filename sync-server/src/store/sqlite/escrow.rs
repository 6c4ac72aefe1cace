//! Reservations, leases and app-token uses in SQLite. The one writer connection
//! serializes every transaction that changes them, so a card's reservations are
//! decided one at a time, exactly like its pushes.

use super::session::{CHUNK, Param, SqliteSession, int, owned_text, text};
use crate::keys::TokenHash;
use crate::ledger::CardRecord;
use crate::ledger::escrow::{LeaseRow, ReservationRow, TokenUse};
use crate::ledger::verify::WideSum;
use crate::store::Result;
use crate::store::encode::{signed, to_db};
use crate::store::rows::{self, LEASE_COLUMNS, RESERVATION_COLUMNS, TOKEN_USE_COLUMNS, split_sum};
use crate::store::statements::{CardRows, EscrowRows, ReserveReads, TerminalRows};
use protocol::{CardId, Points, ReceiptId};
use std::collections::HashSet;
use time::OffsetDateTime;
use uuid::Uuid;

impl EscrowRows for SqliteSession<'_> {
    async fn reservations(
        &mut self,
        terminal: i64,
        receipts: &[ReceiptId],
    ) -> Result<Vec<ReservationRow>> {
        let keys: Vec<Param<'_>> = receipts.iter().map(|r| text(r.as_str())).collect();
        self.query_in(
            &format!(
                "SELECT {RESERVATION_COLUMNS} FROM reservations
                 WHERE receipt_id IN ({{keys}}) AND terminal_ref = ?{}",
                CHUNK + 1
            ),
            &keys,
            &[int(terminal)],
            |r| rows::reservation(r),
        )
    }

    async fn open_reservations_among(
        &mut self,
        terminal: i64,
        receipts: &[ReceiptId],
    ) -> Result<Vec<ReservationRow>> {
        // The terminal's open reservations, through their own index (migration 12): a
        // till holds a few at a time, and usually none, where looking each receipt up
        // by key was a descent of the key's index, which holds every reservation ever
        // written (settled rows stay), for each sale of a push. `INDEXED BY` fails loudly rather than let the
        // key's prefix read all of the terminal's rows.
        let mut open = self.all(
            &format!(
                "SELECT {RESERVATION_COLUMNS} FROM reservations
                 INDEXED BY reservations_open_terminal
                 WHERE terminal_ref = ?1 AND status = 'open'"
            ),
            [terminal],
            |r| rows::reservation(r),
        )?;
        if !open.is_empty() {
            let wanted: HashSet<&str> = receipts.iter().map(ReceiptId::as_str).collect();
            open.retain(|r| wanted.contains(r.receipt_id.as_str()));
        }
        Ok(open)
    }

    async fn write_reservations(&mut self, rows: &[ReservationRow]) -> Result<()> {
        let values: Vec<_> = rows
            .iter()
            .map(|r| {
                [
                    int(r.terminal),
                    text(r.receipt_id.as_str()),
                    text(r.card.as_str()),
                    int(r.points.get()),
                    text(r.status.as_str()),
                    int(to_db(r.expires_at)),
                    int(to_db(r.updated_at)),
                ]
            })
            .collect();
        self.insert_many(
            &format!("INSERT INTO reservations ({RESERVATION_COLUMNS})"),
            "ON CONFLICT (terminal_ref, receipt_id) DO UPDATE SET
                card = excluded.card, points = excluded.points, status = excluded.status,
                expires_at = excluded.expires_at, updated_at = excluded.updated_at",
            &values,
        )
    }

    async fn leases(&mut self, ids: &[Uuid]) -> Result<Vec<LeaseRow>> {
        let keys: Vec<Param<'_>> = ids.iter().map(|id| owned_text(id.to_string())).collect();
        self.query_in(
            &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE id IN ({{keys}})"),
            &keys,
            &[],
            |r| rows::lease(r),
        )
    }

    async fn open_leases(&mut self, terminal: i64) -> Result<Vec<LeaseRow>> {
        self.all(
            &format!(
                "SELECT {LEASE_COLUMNS} FROM leases
                 WHERE terminal_ref = ?1 AND status = 'open' ORDER BY granted_at, id"
            ),
            [terminal],
            |r| rows::lease(r),
        )
    }

    async fn write_leases(&mut self, rows: &[LeaseRow]) -> Result<()> {
        let values: Vec<_> = rows
            .iter()
            .map(|l| {
                [
                    owned_text(l.id.to_string()),
                    int(l.terminal),
                    text(l.card.as_str()),
                    int(l.points.get()),
                    int(l.charged.get()),
                    text(l.status.as_str()),
                    int(to_db(l.expires_at)),
                    int(to_db(l.granted_at)),
                ]
            })
            .collect();
        self.insert_many(
            &format!("INSERT INTO leases ({LEASE_COLUMNS})"),
            "ON CONFLICT (id) DO UPDATE SET
                charged = excluded.charged, status = excluded.status,
                expires_at = excluded.expires_at",
            &values,
        )
    }

    async fn own_holds(
        &mut self,
        terminal: i64,
        cards: &[&CardId],
    ) -> Result<Vec<(CardId, Points, Points)>> {
        let keys: Vec<Param<'_>> = cards.iter().map(|c| text(c.as_str())).collect();
        let t = CHUNK + 1;
        self.query_in(
            &format!(
                "SELECT card, {}, {} FROM (
                     SELECT card, points AS r, 0 AS l FROM reservations
                     WHERE card IN ({{keys}}) AND terminal_ref = ?{t} AND status = 'open'
                     UNION ALL
                     SELECT card, 0, points - charged FROM leases
                     WHERE card IN ({{keys}}) AND terminal_ref = ?{t} AND status = 'open'
                 ) GROUP BY card",
                split_sum("r", ""),
                split_sum("l", ""),
            ),
            &keys,
            &[int(terminal)],
            |r| rows::holds(r),
        )
    }

    async fn set_lease_epoch(&mut self, terminal: i64, epoch: u64) -> Result<()> {
        self.execute(
            "UPDATE terminals SET lease_epoch = ?2 WHERE id = ?1",
            (terminal, signed(epoch)?),
        )?;
        Ok(())
    }

    async fn claim_token(&mut self, token: &TokenUse) -> Result<Option<TokenUse>> {
        self.execute(
            &format!(
                "INSERT INTO token_uses ({TOKEN_USE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (token_id) DO NOTHING"
            ),
            (
                token.token_id.as_str(),
                token.terminal,
                token.scan_id.to_string(),
                token.card.as_str(),
                to_db(token.expires_at),
                to_db(token.used_at),
            ),
        )?;
        self.first(
            &format!("SELECT {TOKEN_USE_COLUMNS} FROM token_uses WHERE token_id = ?1"),
            [token.token_id.as_str()],
            |r| rows::token_use(r),
        )
    }

    async fn open_reservations_before(
        &mut self,
        before: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<ReservationRow>> {
        self.all(
            &format!(
                "SELECT {RESERVATION_COLUMNS} FROM reservations
                 WHERE status = 'open' AND expires_at < ?1 ORDER BY expires_at LIMIT ?2"
            ),
            (to_db(before), limit),
            |r| rows::reservation(r),
        )
    }

    async fn open_leases_before(
        &mut self,
        before: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<LeaseRow>> {
        self.all(
            &format!(
                "SELECT {LEASE_COLUMNS} FROM leases
                 WHERE status = 'open' AND expires_at < ?1 ORDER BY expires_at LIMIT ?2"
            ),
            (to_db(before), limit),
            |r| rows::lease(r),
        )
    }

    async fn forget_token_uses(&mut self, before: OffsetDateTime) -> Result<u64> {
        let n = self.execute(
            "DELETE FROM token_uses WHERE expires_at < ?1",
            [to_db(before)],
        )?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    async fn hold_sums(&mut self) -> Result<Vec<(String, WideSum, WideSum)>> {
        self.all(
            &format!(
                "SELECT card, {}, {} FROM (
                     SELECT card, points AS r, 0 AS l FROM reservations WHERE status = 'open'
                     UNION ALL
                     SELECT card, 0, points - charged FROM leases WHERE status = 'open'
                 ) GROUP BY card",
                split_sum("r", ""),
                split_sum("l", ""),
            ),
            [],
            |r| rows::card_sums(r),
        )
    }

    /// One after the other: on SQLite a statement costs no round trip, and the single
    /// writer keeps the reservation as it was read before the locks.
    async fn reserve_reads(
        &mut self,
        token: &TokenHash,
        receipt: &ReceiptId,
        card: &CardId,
        also: Option<&CardId>,
    ) -> Result<Option<ReserveReads>> {
        let Some(terminal) = self.authenticate(token).await? else {
            return Ok(None);
        };
        let Some(acked_through) = self.active_acked_through(terminal.key).await? else {
            return Ok(None);
        };
        let existing = self
            .reservations(terminal.key, std::slice::from_ref(receipt))
            .await?
            .pop();
        let ids: Vec<&CardId> = std::iter::once(card)
            .chain(also)
            .chain(existing.as_ref().map(|r| &r.card))
            .collect();
        Ok(Some(ReserveReads {
            terminal: terminal.key,
            acked_through,
            cards: self.lock_existing_cards(&ids).await?,
            existing,
        }))
    }

    async fn finish_reservation(
        &mut self,
        cards: &[&CardRecord],
        row: &ReservationRow,
        now: OffsetDateTime,
    ) -> Result<Vec<(CardId, Points, Points)>> {
        self.write_cards(cards, now).await?;
        self.write_reservations(std::slice::from_ref(row)).await?;
        self.own_holds(row.terminal, &[&row.card]).await
    }
}
