//! How domain values are stored, the same for every backend: times as microseconds
//! since the epoch, counters as signed 64-bit integers, ids as their text, an entry
//! as its canonical JSON with the protocol's content hash, rules as their JSON. Rows
//! are read back with these in [`super::rows`].

use crate::ledger::CardRecord;
use crate::store::Result;
use crate::store::StoreError;
use data_encoding::HEXLOWER;
use protocol::journal::JournalEntry;
use protocol::rules::ProgramRules;
use protocol::wire::CardBalance;
use protocol::{CardId, Points, ReceiptId, StoreId, TerminalId};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// A time as stored: microseconds since the epoch.
pub fn to_db(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// An optional time as stored.
pub fn opt_to_db(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(to_db)
}

/// A stored time.
pub fn from_db(micros: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .map_err(|_| StoreError::corrupt(format!("time {micros} out of range")))
}

/// A stored optional time.
pub fn opt_from_db(micros: Option<i64>) -> Result<Option<OffsetDateTime>> {
    micros.map(from_db).transpose()
}

/// A stored card id.
pub fn card(s: &str) -> Result<CardId> {
    CardId::parse(s).map_err(|_| StoreError::corrupt(format!("card id {s:?}")))
}

/// A stored receipt id.
pub fn receipt_id(s: &str) -> Result<ReceiptId> {
    ReceiptId::parse(s).map_err(|_| StoreError::corrupt(format!("receipt id {s:?}")))
}

/// A stored store id.
pub fn store_id(s: &str) -> Result<StoreId> {
    StoreId::parse(s).map_err(|_| StoreError::corrupt(format!("store id {s:?}")))
}

/// A stored terminal id.
pub fn terminal_id(s: &str) -> Result<TerminalId> {
    TerminalId::parse(s).map_err(|_| StoreError::corrupt(format!("terminal id {s:?}")))
}

/// A stored entry id.
pub fn uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| StoreError::corrupt(format!("entry id {s:?}")))
}

/// A stored non-negative counter (seq, version).
pub fn unsigned(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::corrupt(format!("negative counter {n}")))
}

/// A counter as stored.
pub fn signed(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::corrupt(format!("counter {n} exceeds 2^63")))
}

/// The entry's canonical JSON and its [`JournalEntry::content_hash_hex`], from one
/// serialization (the protocol defines the hash as SHA-256 of exactly that JSON; a
/// test holds the two together).
pub fn entry_body_and_hash(e: &JournalEntry) -> Result<(String, String)> {
    let body = serde_json::to_vec(e)
        .map_err(|err| StoreError::corrupt(format!("entry does not serialize: {err}")))?;
    let hash = HEXLOWER.encode(&Sha256::digest(&body));
    let body = String::from_utf8(body)
        .map_err(|err| StoreError::corrupt(format!("entry JSON is not UTF-8: {err}")))?;
    Ok((body, hash))
}

/// Rules as stored: their JSON.
pub fn rules_to_db(rules: &ProgramRules) -> Result<String> {
    serde_json::to_string(rules)
        .map_err(|e| StoreError::corrupt(format!("rules do not serialize: {e}")))
}

/// What HQ tells a terminal about a card, as of `as_of`.
pub fn card_balance(state: CardRecord, own: Holds, as_of: OffsetDateTime) -> CardBalance {
    CardBalance {
        card: state.card,
        balance: state.balance,
        pending: state.pending,
        tier: state.tier,
        blocked: state.blocked,
        reserved: Points((state.reserved.get() - own.reserved.get()).max(0)),
        leased: Points((state.leased.get() - own.leased.get()).max(0)),
        as_of,
    }
}

/// What one terminal's own open reservations and leases hold of a card: taken out of
/// the card's figures in what that terminal is told (it counts its own holds itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holds {
    /// Points of the terminal's open reservations.
    pub reserved: Points,
    /// Points of its open leases, less what was charged.
    pub leased: Points,
}

/// A card HQ has never seen: zero everywhere, not blocked.
pub fn unseen_card_balance(card: &CardId, as_of: OffsetDateTime) -> CardBalance {
    CardBalance {
        card: card.clone(),
        balance: Points::ZERO,
        pending: Points::ZERO,
        tier: None,
        blocked: false,
        reserved: Points::ZERO,
        leased: Points::ZERO,
        as_of,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::apply::tests::{CARD, return_of, sale, welcome};
    use time::macros::datetime;

    #[test]
    fn times_round_trip_at_microsecond_precision() {
        let t = datetime!(2026-03-01 10:00:00.123456 UTC);
        assert_eq!(from_db(to_db(t)).unwrap(), t);
    }

    #[test]
    fn the_stored_hash_is_the_protocol_content_hash() {
        for e in [
            sale(1, CARD, 3, 5),
            return_of(2, CARD, 1, 1, 1),
            welcome(3, CARD, 9),
        ] {
            let (body, hash) = entry_body_and_hash(&e).unwrap();
            assert_eq!(hash, e.content_hash_hex());
            assert_eq!(serde_json::from_str::<JournalEntry>(&body).unwrap(), e);
        }
    }
}
