//! Reservations, leases and app-token uses in PostgreSQL. Every write that changes a
//! card's `reserved`/`leased` runs in a transaction holding the card's row lock
//! (`SELECT … FOR UPDATE`, taken by the flow first), so two instances sharing the
//! database cannot both grant the same points; token uses rely on the primary key
//! (`ON CONFLICT DO NOTHING` waits for a concurrent insert of the same token and then
//! reads the row that won).

use super::session::{self, PgSession};
use super::{push, sql, terminals};
use crate::keys::TokenHash;
use crate::ledger::CardRecord;
use crate::ledger::escrow::{LeaseRow, ReservationRow, ReservationStatus, TokenUse};
use crate::ledger::verify::WideSum;
use crate::store::Result;
use crate::store::encode::{signed, to_db};
use crate::store::rows::{
    self, CARD_COLUMNS, LEASE_COLUMNS, RESERVATION_COLUMNS, TOKEN_USE_COLUMNS, split_sum,
};
use crate::store::statements::{EscrowRows, ReserveReads};
use deadpool_postgres::Client;
use protocol::{CardId, Points, ReceiptId};
use std::collections::HashMap;
use std::sync::LazyLock;
use time::OffsetDateTime;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

/// `(card, reserved, leased)` of open rows, summed per card in overflow-free halves
/// ([`split_sum`]); `filter` narrows the rows (`AND …` clauses of the caller).
fn holds_sql(filter: &str) -> String {
    format!(
        "SELECT card, {}, {} FROM (
             SELECT card, points AS r, 0::bigint AS l FROM reservations
             WHERE status = 'open' {filter}
             UNION ALL
             SELECT card, 0::bigint, points - charged FROM leases
             WHERE status = 'open' {filter}
         ) AS h GROUP BY card",
        split_sum("r", "::bigint"),
        split_sum("l", "::bigint"),
    )
}

impl EscrowRows for PgSession<'_> {
    async fn reservations(
        &mut self,
        terminal: i64,
        receipts: &[ReceiptId],
    ) -> Result<Vec<ReservationRow>> {
        reservations(self.conn().await?, terminal, receipts, sql::Plan::EachRun).await
    }

    async fn open_reservations_among(
        &mut self,
        terminal: i64,
        receipts: &[ReceiptId],
    ) -> Result<Vec<ReservationRow>> {
        let mut rows = self.reservations(terminal, receipts).await?;
        rows.retain(|r| r.status == ReservationStatus::Open);
        Ok(rows)
    }

    async fn write_reservations(&mut self, rows: &[ReservationRow]) -> Result<()> {
        write_reservations(self.conn().await?, rows).await
    }

    async fn leases(&mut self, ids: &[Uuid]) -> Result<Vec<LeaseRow>> {
        leases(self.conn().await?, ids).await
    }

    async fn open_leases(&mut self, terminal: i64) -> Result<Vec<LeaseRow>> {
        sql::all(
            self.conn().await?,
            &format!(
                "SELECT {LEASE_COLUMNS} FROM leases
                 WHERE terminal_ref = $1 AND status = 'open' ORDER BY granted_at, id"
            ),
            &[&terminal],
            rows::lease,
        )
        .await
    }

    async fn write_leases(&mut self, rows: &[LeaseRow]) -> Result<()> {
        write_leases(self.conn().await?, rows).await
    }

    async fn own_holds(
        &mut self,
        terminal: i64,
        cards: &[&CardId],
    ) -> Result<Vec<(CardId, Points, Points)>> {
        if cards.is_empty() {
            return Ok(Vec::new());
        }
        own_holds(self.conn().await?, terminal, cards).await
    }

    async fn set_lease_epoch(&mut self, terminal: i64, epoch: u64) -> Result<()> {
        sql::execute(
            self.conn().await?,
            "UPDATE terminals SET lease_epoch = $2 WHERE id = $1",
            &[&terminal, &signed(epoch)?],
        )
        .await?;
        Ok(())
    }

    async fn claim_token(&mut self, token: &TokenUse) -> Result<Option<TokenUse>> {
        sql::execute(
            self.conn().await?,
            &format!(
                "INSERT INTO token_uses ({TOKEN_USE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (token_id) DO NOTHING"
            ),
            &[
                &token.token_id,
                &token.terminal,
                &token.scan_id,
                &token.card.as_str(),
                &to_db(token.expires_at),
                &to_db(token.used_at),
            ],
        )
        .await?;
        sql::first(
            self.conn().await?,
            &format!("SELECT {TOKEN_USE_COLUMNS} FROM token_uses WHERE token_id = $1"),
            &[&token.token_id],
            rows::token_use,
        )
        .await
    }

    async fn open_reservations_before(
        &mut self,
        before: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<ReservationRow>> {
        sql::all(
            self.conn().await?,
            &format!(
                "SELECT {RESERVATION_COLUMNS} FROM reservations
                 WHERE status = 'open' AND expires_at < $1 ORDER BY expires_at LIMIT $2"
            ),
            &[&to_db(before), &limit],
            rows::reservation,
        )
        .await
    }

    async fn open_leases_before(
        &mut self,
        before: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<LeaseRow>> {
        sql::all(
            self.conn().await?,
            &format!(
                "SELECT {LEASE_COLUMNS} FROM leases
                 WHERE status = 'open' AND expires_at < $1 ORDER BY expires_at LIMIT $2"
            ),
            &[&to_db(before), &limit],
            rows::lease,
        )
        .await
    }

    async fn forget_token_uses(&mut self, before: OffsetDateTime) -> Result<u64> {
        sql::execute(
            self.conn().await?,
            "DELETE FROM token_uses WHERE expires_at < $1",
            &[&to_db(before)],
        )
        .await
    }

    async fn hold_sums(&mut self) -> Result<Vec<(String, WideSum, WideSum)>> {
        sql::all(self.conn().await?, &holds_sql(""), &[], rows::card_sums).await
    }

    /// One flight: the held-back `START TRANSACTION`, the terminal of the token, the
    /// card locks, then the reservation read again. The server runs them in the
    /// order sent, so the read comes after the locks; each is keyed by the token, so
    /// an unknown or revoked one locks and reads nothing.
    async fn reserve_reads(
        &mut self,
        token: &TokenHash,
        receipt: &ReceiptId,
        card: &CardId,
        also: Option<&CardId>,
    ) -> Result<Option<ReserveReads>> {
        let start = self.take_begin();
        let c = self.client();
        // The card locks and the reservation are planned on each run (unnamed
        // statements), so they are not prepared here.
        let statements = [terminals::TOKEN_ACKED.as_str()];
        let (began, terminal, locked, existing) = sql::flight(c, &statements, async {
            tokio::join!(
                push::begin(c, start),
                terminals::token_acked_through(c, token),
                lock_reserved_cards(c, token, receipt, card, also),
                token_reservation(c, token, receipt),
            )
        })
        .await?;
        began?;
        let Some((terminal, acked_through)) = terminal? else {
            return Ok(None);
        };
        Ok(Some(ReserveReads {
            terminal,
            acked_through,
            cards: locked?,
            existing: existing?,
        }))
    }

    /// One flight: the writes, the holds read after them, and the `COMMIT`, so the
    /// card locks are held for this one round trip.
    async fn finish_reservation(
        &mut self,
        cards: &[&CardRecord],
        row: &ReservationRow,
        now: OffsetDateTime,
    ) -> Result<Vec<(CardId, Points, Points)>> {
        let c = self.conn().await?;
        let rows = std::slice::from_ref(row);
        let held = [&row.card];
        let statements = [WRITE_RESERVATIONS.as_str(), &OWN_HOLDS];
        let (written_cards, written, holds, committed) = sql::flight(c, &statements, async {
            tokio::join!(
                super::cards::write_cards(c, cards, now),
                write_reservations(c, rows),
                own_holds(c, row.terminal, &held),
                session::commit_in_flight(c, true),
            )
        })
        .await?;
        // Answered: the transaction is over, committed or (after a failed
        // statement) rolled back by that `COMMIT`.
        committed?;
        self.ended();
        written_cards?;
        written?;
        holds
    }
}

/// Locks the cards a reservation of `receipt` on `card` changes, for the active
/// terminal of `token` only: `card`, `also`, and the card of the receipt's reservation
/// as this statement reads it, in card-id order ([`LOCK_RESERVED_CARDS`]).
async fn lock_reserved_cards(
    c: &Client,
    token: &TokenHash,
    receipt: &ReceiptId,
    card: &CardId,
    also: Option<&CardId>,
) -> Result<HashMap<CardId, CardRecord>> {
    // Planned each time, as every card lock: a plan cached while `cards` was small
    // scans it whole for as long as the connection lives.
    let cards = sql::all_planned(
        c,
        &LOCK_RESERVED_CARDS,
        &[
            (&token.as_str(), Type::TEXT),
            (&card.as_str(), Type::TEXT),
            (&receipt.as_str(), Type::TEXT),
            (&also.map(CardId::as_str), Type::TEXT),
        ],
        |r| rows::card_record(r, 0),
    )
    .await?;
    Ok(rows::by_card(cards))
}

/// The statement of [`lock_reserved_cards`]: `$1` the token hash, `$2` the card asked
/// for, `$3` the receipt, `$4` another card or NULL. ORDER BY below the locking step,
/// so rows are locked in card-id order, as every other card lock. Not prepared: see
/// [`lock_reserved_cards`].
static LOCK_RESERVED_CARDS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {CARD_COLUMNS} FROM cards WHERE card IN (
             SELECT u.card FROM terminals, unnest(ARRAY[$2::text, $4::text]) AS u(card)
             WHERE {}
             UNION ALL
             SELECT r.card FROM reservations r
             WHERE r.terminal_ref = {} AND r.receipt_id = $3)
         ORDER BY card FOR UPDATE",
        terminals::ACTIVE_TOKEN,
        *terminals::TOKEN_TERMINAL
    )
});

/// The reservation of `receipt` of the active terminal of `token`.
async fn token_reservation(
    c: &Client,
    token: &TokenHash,
    receipt: &ReceiptId,
) -> Result<Option<ReservationRow>> {
    // Planned each time, as every read of reservations outside a push
    // ([`reservations`]).
    let mut found = sql::all_planned(
        c,
        &TOKEN_RESERVATION,
        &[
            (&token.as_str(), Type::TEXT),
            (&receipt.as_str(), Type::TEXT),
        ],
        rows::reservation,
    )
    .await?;
    Ok(found.pop())
}

/// The statement of [`token_reservation`]; not prepared.
static TOKEN_RESERVATION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations
         WHERE terminal_ref = {} AND receipt_id = $2",
        *terminals::TOKEN_TERMINAL
    )
});

pub(super) async fn reservations(
    c: &Client,
    terminal: i64,
    receipts: &[ReceiptId],
    plan: sql::Plan,
) -> Result<Vec<ReservationRow>> {
    if receipts.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = receipts.iter().map(ReceiptId::as_str).collect();
    // Outside a push planned each time: the generic plan made while the terminal had
    // few reservations scanned all of them (settled rows stay) against every receipt
    // of the batch, 25 ms for a 500-entry push after 20,000 receipts, and growing.
    sql::all_as(
        c,
        plan,
        &RESERVATIONS,
        &[(&terminal, Type::INT8), (&keys, Type::TEXT_ARRAY)],
        rows::reservation,
    )
    .await
}

pub(super) async fn write_reservations(c: &Client, rows: &[ReservationRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    sql::execute(c, &WRITE_RESERVATIONS, &sql::refs(&reservation_rows(rows))).await?;
    Ok(())
}

/// The parameters of [`WRITE_RESERVATIONS`].
pub(super) fn reservation_rows(rows: &[ReservationRow]) -> sql::Owned<'_> {
    let terminal: Vec<i64> = rows.iter().map(|r| r.terminal).collect();
    let receipt: Vec<&str> = rows.iter().map(|r| r.receipt_id.as_str()).collect();
    let card: Vec<&str> = rows.iter().map(|r| r.card.as_str()).collect();
    let points: Vec<i64> = rows.iter().map(|r| r.points.get()).collect();
    let status: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    let expires: Vec<i64> = rows.iter().map(|r| to_db(r.expires_at)).collect();
    let updated: Vec<i64> = rows.iter().map(|r| to_db(r.updated_at)).collect();
    vec![
        Box::new(terminal),
        Box::new(receipt),
        Box::new(card),
        Box::new(points),
        Box::new(status),
        Box::new(expires),
        Box::new(updated),
    ]
}

pub(super) async fn leases(c: &Client, ids: &[Uuid]) -> Result<Vec<LeaseRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sql::all(c, &LEASES, &[&ids], rows::lease).await
}

pub(super) async fn write_leases(c: &Client, rows: &[LeaseRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    sql::execute(c, &WRITE_LEASES, &sql::refs(&lease_rows(rows))).await?;
    Ok(())
}

/// The parameters of [`WRITE_LEASES`].
pub(super) fn lease_rows(rows: &[LeaseRow]) -> sql::Owned<'_> {
    let id: Vec<Uuid> = rows.iter().map(|l| l.id).collect();
    let terminal: Vec<i64> = rows.iter().map(|l| l.terminal).collect();
    let card: Vec<&str> = rows.iter().map(|l| l.card.as_str()).collect();
    let points: Vec<i64> = rows.iter().map(|l| l.points.get()).collect();
    let charged: Vec<i64> = rows.iter().map(|l| l.charged.get()).collect();
    let status: Vec<&str> = rows.iter().map(|l| l.status.as_str()).collect();
    let expires: Vec<i64> = rows.iter().map(|l| to_db(l.expires_at)).collect();
    let granted: Vec<i64> = rows.iter().map(|l| to_db(l.granted_at)).collect();
    vec![
        Box::new(id),
        Box::new(terminal),
        Box::new(card),
        Box::new(points),
        Box::new(charged),
        Box::new(status),
        Box::new(expires),
        Box::new(granted),
    ]
}

/// The statement of [`reservations`]: one probe of the key per receipt. With
/// `receipt_id = ANY($2)` instead, the generic plan made on a table whose statistics
/// say it is tiny reads the key by `terminal_ref` alone and filters every reservation
/// the terminal ever had, even with sequential scans ruled out; the subquery (kept
/// apart by `OFFSET 0`) compares the whole key with one receipt, so every plan of it
/// is a lookup.
pub(super) static RESERVATIONS: LazyLock<String> = LazyLock::new(|| {
    let columns = RESERVATION_COLUMNS;
    format!(
        "SELECT r.* FROM unnest($2::text[]) AS k(receipt_id)
             CROSS JOIN LATERAL (SELECT {columns} FROM reservations
                                 WHERE terminal_ref = $1 AND receipt_id = k.receipt_id
                                 OFFSET 0) AS r"
    )
});

/// The statement of [`write_reservations`].
pub(super) static WRITE_RESERVATIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO reservations ({RESERVATION_COLUMNS})
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[],
                                  $5::text[], $6::bigint[], $7::bigint[])
             ON CONFLICT (terminal_ref, receipt_id) DO UPDATE SET
                card = excluded.card, points = excluded.points, status = excluded.status,
                expires_at = excluded.expires_at, updated_at = excluded.updated_at"
    )
});

/// The statement of [`leases`].
pub(super) static LEASES: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {LEASE_COLUMNS} FROM leases WHERE id = ANY($1)"));

/// The statement of [`write_leases`].
pub(super) static WRITE_LEASES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO leases ({LEASE_COLUMNS})
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bigint[],
                                  $5::bigint[], $6::text[], $7::bigint[], $8::bigint[])
             ON CONFLICT (id) DO UPDATE SET
                charged = excluded.charged, status = excluded.status,
                expires_at = excluded.expires_at"
    )
});

/// `(card, reserved, leased)` of the open holds of `terminal` on `cards`.
pub(super) async fn own_holds(
    c: &Client,
    terminal: i64,
    cards: &[&CardId],
) -> Result<Vec<(CardId, Points, Points)>> {
    holds_of(c, &OWN_HOLDS, &terminal, cards).await
}

/// [`own_holds`] of the active terminal of a token hash: none for an unknown or
/// revoked token.
pub(super) async fn token_own_holds(
    c: &Client,
    token: &TokenHash,
    cards: &[&CardId],
) -> Result<Vec<(CardId, Points, Points)>> {
    holds_of(c, &TOKEN_OWN_HOLDS, &token.as_str(), cards).await
}

/// The holds `sql` reads for the terminal `who` names (`$1`) on `cards` (`$2`).
async fn holds_of(
    c: &Client,
    sql: &str,
    who: &(dyn ToSql + Sync),
    cards: &[&CardId],
) -> Result<Vec<(CardId, Points, Points)>> {
    let keys: Vec<&str> = cards.iter().map(|c| c.as_str()).collect();
    sql::all(c, sql, &[who, &keys], rows::holds).await
}

/// The statement of [`own_holds`].
pub(super) static OWN_HOLDS: LazyLock<String> =
    LazyLock::new(|| holds_sql("AND terminal_ref = $1 AND card = ANY($2)"));

/// The statement of [`token_own_holds`].
pub(super) static TOKEN_OWN_HOLDS: LazyLock<String> = LazyLock::new(|| {
    holds_sql(&format!(
        "AND terminal_ref = {} AND card = ANY($2)",
        *terminals::TOKEN_TERMINAL
    ))
});
