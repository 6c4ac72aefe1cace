//! SQLite rows into the shared column types of [`crate::store::encode`], and the
//! SQLite-only helpers (error conversion, `?N` placeholders).

use crate::store::StoreError;
pub use crate::store::encode::{
    CARD_COLUMNS, CardRow, LOT_COLUMNS, LotRow, card, from_db, opt_from_db, opt_to_db, signed,
    store_id, terminal_id, to_db, unsigned, uuid,
};
use rusqlite::Row;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Backend(Box::new(e))
    }
}

impl From<rusqlite_migration::Error> for StoreError {
    fn from(e: rusqlite_migration::Error) -> Self {
        Self::Backend(Box::new(e))
    }
}

/// Reads [`CARD_COLUMNS`] starting at column `at`.
pub fn card_row(row: &Row<'_>, at: usize) -> rusqlite::Result<CardRow> {
    Ok(CardRow {
        card: row.get(at)?,
        balance: row.get(at + 1)?,
        pending: row.get(at + 2)?,
        tier: row.get(at + 3)?,
        spend_12m: row.get(at + 4)?,
        spend_drops_at: row.get(at + 5)?,
        welcome_given: row.get(at + 6)?,
        seen: row.get(at + 7)?,
        blocked: row.get(at + 8)?,
        flags: row.get(at + 9)?,
    })
}

/// Reads [`LOT_COLUMNS`] (SQLite keeps entry ids as text).
pub fn lot_row(row: &Row<'_>) -> Result<LotRow, StoreError> {
    let source_entry: Option<String> = row.get(3)?;
    Ok(LotRow {
        id: row.get(0)?,
        card: row.get(1)?,
        kind: row.get(2)?,
        source_entry: source_entry.as_deref().map(uuid).transpose()?,
        earned_at: row.get(4)?,
        matures_at: row.get(5)?,
        matured: row.get(6)?,
        expires_at: row.get(7)?,
        amount: row.get(8)?,
        remaining: row.get(9)?,
    })
}

/// `?1, ?2, …, ?n` starting at `?first`.
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_count_from_the_first() {
        assert_eq!(placeholders(2, 3), "?2, ?3, ?4");
    }
}
