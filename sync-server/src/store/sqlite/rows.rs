//! Conversions between stored columns and domain types, and the column lists they
//! read.

use crate::ledger::{CardState, FlagSet, Lot, LotKey, LotKind};
use crate::store::StoreError;
use protocol::{CardId, Money, Points, StoreId, TerminalId};
use rusqlite::Row;
use time::OffsetDateTime;
use uuid::Uuid;

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

/// A time as stored: microseconds since the epoch.
pub fn to_db(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// An optional time as stored.
pub fn opt_to_db(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(to_db)
}

/// A stored time.
pub fn from_db(micros: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .map_err(|_| StoreError::Corrupt(format!("time {micros} out of range")))
}

/// A stored optional time.
pub fn opt_from_db(micros: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    micros.map(from_db).transpose()
}

/// A stored card id.
pub fn card(s: &str) -> Result<CardId, StoreError> {
    CardId::parse(s).map_err(|_| StoreError::Corrupt(format!("card id {s:?}")))
}

/// A stored store id.
pub fn store_id(s: &str) -> Result<StoreId, StoreError> {
    StoreId::parse(s).map_err(|_| StoreError::Corrupt(format!("store id {s:?}")))
}

/// A stored terminal id.
pub fn terminal_id(s: &str) -> Result<TerminalId, StoreError> {
    TerminalId::parse(s).map_err(|_| StoreError::Corrupt(format!("terminal id {s:?}")))
}

/// A stored entry id.
pub fn uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|_| StoreError::Corrupt(format!("entry id {s:?}")))
}

/// A stored non-negative counter (seq, version).
pub fn unsigned(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative counter {n}")))
}

/// A counter as stored.
pub fn signed(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt(format!("counter {n} exceeds 2^63")))
}

/// Columns [`card_state`] reads, in order.
pub const CARD_COLUMNS: &str =
    "card, balance, pending, tier, spend_12m, spend_drops_at, welcome_given, seen, blocked, flags";

/// Raw card columns, read inside a row callback.
pub struct CardRow {
    card: String,
    balance: i64,
    pending: i64,
    tier: Option<String>,
    spend_12m: i64,
    spend_drops_at: Option<i64>,
    welcome_given: bool,
    seen: bool,
    blocked: bool,
    flags: i64,
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

impl CardRow {
    /// The domain state.
    pub fn into_state(self) -> Result<CardState, StoreError> {
        Ok(CardState {
            card: card(&self.card)?,
            balance: Points(self.balance),
            pending: Points(self.pending),
            tier: self.tier,
            spend_12m: Money(self.spend_12m),
            spend_drops_at: opt_from_db(self.spend_drops_at)?,
            welcome_given: self.welcome_given,
            seen: self.seen,
            blocked: self.blocked,
            flags: FlagSet::from_bits(u32::try_from(self.flags).unwrap_or(u32::MAX)),
        })
    }
}

/// Columns [`lot_row`] reads, in order.
pub const LOT_COLUMNS: &str =
    "id, card, kind, source_entry, earned_at, matures_at, matured, expires_at, amount, remaining";

/// Raw lot columns.
pub struct LotRow {
    id: i64,
    card: String,
    kind: String,
    source_entry: Option<String>,
    earned_at: i64,
    matures_at: Option<i64>,
    matured: bool,
    expires_at: Option<i64>,
    amount: i64,
    remaining: i64,
}

/// Reads [`LOT_COLUMNS`].
pub fn lot_row(row: &Row<'_>) -> rusqlite::Result<LotRow> {
    Ok(LotRow {
        id: row.get(0)?,
        card: row.get(1)?,
        kind: row.get(2)?,
        source_entry: row.get(3)?,
        earned_at: row.get(4)?,
        matures_at: row.get(5)?,
        matured: row.get(6)?,
        expires_at: row.get(7)?,
        amount: row.get(8)?,
        remaining: row.get(9)?,
    })
}

impl LotRow {
    /// The domain lot.
    pub fn into_lot(self) -> Result<Lot, StoreError> {
        Ok(Lot {
            key: LotKey::Stored(self.id),
            card: card(&self.card)?,
            kind: LotKind::parse(&self.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("lot kind {:?}", self.kind)))?,
            source_entry: self.source_entry.as_deref().map(uuid).transpose()?,
            earned_at: from_db(self.earned_at)?,
            matures_at: opt_from_db(self.matures_at)?,
            matured: self.matured,
            expires_at: opt_from_db(self.expires_at)?,
            amount: Points(self.amount),
            remaining: Points(self.remaining),
        })
    }
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
    use time::macros::datetime;

    #[test]
    fn times_round_trip_at_microsecond_precision() {
        let t = datetime!(2026-03-01 10:00:00.123456 UTC);
        assert_eq!(from_db(to_db(t)).unwrap(), t);
        assert_eq!(placeholders(2, 3), "?2, ?3, ?4");
    }
}
