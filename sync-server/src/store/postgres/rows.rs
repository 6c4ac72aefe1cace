//! PostgreSQL rows into the shared column types of [`crate::store::encode`].

use crate::store::StoreError;
use crate::store::encode::{CardRow, LotRow};
use tokio_postgres::Row;

/// Reads `encode::CARD_COLUMNS` starting at column `at`.
pub fn card_row(row: &Row, at: usize) -> Result<CardRow, StoreError> {
    Ok(CardRow {
        card: row.try_get(at)?,
        balance: row.try_get(at + 1)?,
        pending: row.try_get(at + 2)?,
        tier: row.try_get(at + 3)?,
        spend_12m: row.try_get(at + 4)?,
        spend_drops_at: row.try_get(at + 5)?,
        welcome_given: row.try_get(at + 6)?,
        seen: row.try_get(at + 7)?,
        blocked: row.try_get(at + 8)?,
        flags: row.try_get(at + 9)?,
    })
}

/// Reads `encode::LOT_COLUMNS`.
pub fn lot_row(row: &Row) -> Result<LotRow, StoreError> {
    Ok(LotRow {
        id: row.try_get(0)?,
        card: row.try_get(1)?,
        kind: row.try_get(2)?,
        source_entry: row.try_get(3)?,
        earned_at: row.try_get(4)?,
        matures_at: row.try_get(5)?,
        matured: row.try_get(6)?,
        expires_at: row.try_get(7)?,
        amount: row.try_get(8)?,
        remaining: row.try_get(9)?,
    })
}
