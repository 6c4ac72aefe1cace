//! How domain values are stored, the same for every backend: times as microseconds
//! since the epoch, counters as signed 64-bit integers, ids as their text, an entry
//! as its canonical JSON with the protocol's content hash, and the raw card and lot
//! columns turned back into [`CardState`] and [`Lot`].
//!
//! Each backend reads its own driver's rows into [`CardRow`] / [`LotRow`]; what the
//! columns mean is decided once, here.

use crate::ledger::{CardState, FlagSet, Lot, LotKey, LotKind};
use crate::store::StoreError;
use data_encoding::HEXLOWER;
use protocol::journal::JournalEntry;
use protocol::rules::ProgramRules;
use protocol::wire::CardBalance;
use protocol::{CardId, Money, Points, StoreId, TerminalId};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
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

/// The entry's canonical JSON and its [`JournalEntry::content_hash_hex`], from one
/// serialization (the protocol defines the hash as SHA-256 of exactly that JSON; a
/// test holds the two together).
pub fn entry_body_and_hash(e: &JournalEntry) -> Result<(String, String), StoreError> {
    let body = serde_json::to_vec(e)
        .map_err(|err| StoreError::Corrupt(format!("entry does not serialize: {err}")))?;
    let hash = HEXLOWER.encode(&Sha256::digest(&body));
    let body = String::from_utf8(body)
        .map_err(|err| StoreError::Corrupt(format!("entry JSON is not UTF-8: {err}")))?;
    Ok((body, hash))
}

/// Columns [`CardRow`] holds, in order.
pub const CARD_COLUMNS: &str =
    "card, balance, pending, tier, spend_12m, spend_drops_at, welcome_given, seen, blocked, flags";

/// Raw card columns, as a backend's driver read them.
pub struct CardRow {
    /// `card`.
    pub card: String,
    /// `balance`.
    pub balance: i64,
    /// `pending`.
    pub pending: i64,
    /// `tier`.
    pub tier: Option<String>,
    /// `spend_12m`.
    pub spend_12m: i64,
    /// `spend_drops_at`.
    pub spend_drops_at: Option<i64>,
    /// `welcome_given`.
    pub welcome_given: bool,
    /// `seen`.
    pub seen: bool,
    /// `blocked`.
    pub blocked: bool,
    /// `flags`.
    pub flags: i64,
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

/// Columns [`LotRow`] holds, in order.
pub const LOT_COLUMNS: &str =
    "id, card, kind, source_entry, earned_at, matures_at, matured, expires_at, amount, remaining";

/// Raw lot columns, as a backend's driver read them.
pub struct LotRow {
    /// `id`.
    pub id: i64,
    /// `card`.
    pub card: String,
    /// `kind`.
    pub kind: String,
    /// `source_entry`.
    pub source_entry: Option<Uuid>,
    /// `earned_at`.
    pub earned_at: i64,
    /// `matures_at`.
    pub matures_at: Option<i64>,
    /// `matured`.
    pub matured: bool,
    /// `expires_at`.
    pub expires_at: Option<i64>,
    /// `amount`.
    pub amount: i64,
    /// `remaining`.
    pub remaining: i64,
}

impl LotRow {
    /// The domain lot.
    pub fn into_lot(self) -> Result<Lot, StoreError> {
        Ok(Lot {
            key: LotKey::Stored(self.id),
            card: card(&self.card)?,
            kind: LotKind::parse(&self.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("lot kind {:?}", self.kind)))?,
            source_entry: self.source_entry,
            earned_at: from_db(self.earned_at)?,
            matures_at: opt_from_db(self.matures_at)?,
            matured: self.matured,
            expires_at: opt_from_db(self.expires_at)?,
            amount: Points(self.amount),
            remaining: Points(self.remaining),
        })
    }
}

/// Rules as stored: their JSON.
pub fn rules_to_db(rules: &ProgramRules) -> Result<String, StoreError> {
    serde_json::to_string(rules)
        .map_err(|e| StoreError::Corrupt(format!("rules do not serialize: {e}")))
}

/// Rules versions already read. A version never changes once stored, so an entry is
/// never stale; every backend keeps one so a push does not re-parse its rules.
#[derive(Default)]
pub struct RulesCache {
    versions: Mutex<HashMap<u64, Arc<ProgramRules>>>,
}

impl RulesCache {
    /// The cached rules of `version`.
    pub fn get(&self, version: u64) -> Option<Arc<ProgramRules>> {
        self.versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&version)
            .cloned()
    }

    /// Parses the stored JSON of `version` and keeps it.
    pub fn insert_stored(&self, version: u64, body: &str) -> Result<Arc<ProgramRules>, StoreError> {
        let rules: ProgramRules = serde_json::from_str(body)
            .map_err(|e| StoreError::Corrupt(format!("rules version {version}: {e}")))?;
        let rules = Arc::new(rules);
        self.versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(version, Arc::clone(&rules));
        Ok(rules)
    }
}

/// What HQ tells a terminal about a card, as of `as_of`.
pub fn card_balance(state: CardState, as_of: OffsetDateTime) -> CardBalance {
    CardBalance {
        card: state.card,
        balance: state.balance,
        pending: state.pending,
        tier: state.tier,
        blocked: state.blocked,
        reserved: Points::ZERO,
        leased: Points::ZERO,
        as_of,
    }
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
