//! Rows into domain values, once for every backend. A backend's driver reads a
//! column as one of a handful of raw values ([`Raw`]); what each query's columns
//! mean (their order, their encoding: see [`super::encode`]) is decided here, so the
//! two backends cannot drift apart in how they read a card, a lot or a report line.
//!
//! Each decoder names the columns it expects, in order; the backends' SQL selects
//! exactly those (the `*_COLUMNS` constants where a list is shared by several
//! queries).

use super::TerminalInfo;
use super::encode::{
    card, from_db, opt_from_db, receipt_id, store_id, terminal_id, unsigned, uuid,
};
use super::statements::{CardDetail, EntryHolder, HeldInQuarantine, TerminalState, TierCards};
use super::{
    Anomaly, FlaggedEntry, KeyInfo, LedgerView, QuarantinedEntry, StoreError, TerminalIdentity,
};
use crate::keys::TokenHash;
use crate::ledger::escrow::{LeaseRow, LeaseStatus, ReservationRow, ReservationStatus, TokenUse};
use crate::ledger::kpi::{DailyTotals, MemberActivity};
use crate::ledger::quarantine::QuarantineKind;
use crate::ledger::sequence::StoredEntry;
use crate::ledger::verify::{TerminalAudit, WideSum};
use crate::ledger::{
    AnomalyKind, CardRecord, FlagKind, FlagSet, LedgerKind, Lot, LotKey, LotKind, Spend,
};
use crate::store::Result;
use protocol::token::KeyId;
use protocol::wire::BlockChange;
use protocol::{CardId, Money, Points, Seq, StoreId, TerminalId};
use std::collections::HashMap;
use time::OffsetDateTime;
use uuid::Uuid;

/// A column as a driver read it: one of the few SQL types HQ's schemas use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// `NULL`.
    Null,
    /// An integer (SQLite also keeps booleans as 0/1).
    Int(i64),
    /// Text (SQLite also keeps entry ids as text).
    Text(String),
    /// A boolean (PostgreSQL).
    Bool(bool),
    /// A UUID (PostgreSQL's entry ids).
    Uuid(Uuid),
}

fn mismatch(i: usize, wanted: &str, got: &Raw) -> StoreError {
    StoreError::corrupt(format!("column {i}: expected {wanted}, found {got:?}"))
}

/// One row as a driver reads it. A backend only says how its driver reads a column
/// ([`Columns::raw`]); what the raw value stands for is decided here.
pub trait Columns {
    /// Column `i`.
    fn raw(&self, i: usize) -> Result<Raw>;

    /// A nullable integer column.
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.raw(i)? {
            Raw::Null => Ok(None),
            Raw::Int(n) => Ok(Some(n)),
            other => Err(mismatch(i, "an integer", &other)),
        }
    }
    /// An integer column.
    fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| mismatch(i, "an integer", &Raw::Null))
    }
    /// A nullable text column.
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.raw(i)? {
            Raw::Null => Ok(None),
            Raw::Text(s) => Ok(Some(s)),
            other => Err(mismatch(i, "text", &other)),
        }
    }
    /// A text column.
    fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| mismatch(i, "text", &Raw::Null))
    }
    /// A boolean column (stored as 0/1 where the database has no booleans).
    fn boolean(&self, i: usize) -> Result<bool> {
        match self.raw(i)? {
            Raw::Bool(b) => Ok(b),
            Raw::Int(n) => Ok(n != 0),
            other => Err(mismatch(i, "a boolean", &other)),
        }
    }
    /// A nullable entry id column (stored as text where the database has no UUIDs).
    fn opt_uuid(&self, i: usize) -> Result<Option<Uuid>> {
        match self.raw(i)? {
            Raw::Null => Ok(None),
            Raw::Uuid(u) => Ok(Some(u)),
            Raw::Text(s) => uuid(&s).map(Some),
            other => Err(mismatch(i, "an entry id", &other)),
        }
    }
    /// An entry id column.
    fn uuid(&self, i: usize) -> Result<Uuid> {
        self.opt_uuid(i)?
            .ok_or_else(|| mismatch(i, "an entry id", &Raw::Null))
    }
    /// A time column (microseconds since the epoch).
    fn time(&self, i: usize) -> Result<OffsetDateTime> {
        from_db(self.int(i)?)
    }
    /// A nullable time column.
    fn opt_time(&self, i: usize) -> Result<Option<OffsetDateTime>> {
        opt_from_db(self.opt_int(i)?)
    }
    /// A non-negative counter column (seq, version).
    fn counter(&self, i: usize) -> Result<u64> {
        unsigned(self.int(i)?)
    }
    /// A card id column.
    fn card(&self, i: usize) -> Result<CardId> {
        card(&self.text(i)?)
    }
    /// A store id column.
    fn store(&self, i: usize) -> Result<StoreId> {
        store_id(&self.text(i)?)
    }
    /// A terminal id column.
    fn terminal(&self, i: usize) -> Result<TerminalId> {
        terminal_id(&self.text(i)?)
    }
    /// A points column.
    fn points(&self, i: usize) -> Result<Points> {
        Ok(Points(self.int(i)?))
    }
}

/// Columns [`card_record`] reads, in order.
pub const CARD_COLUMNS: &str = "card, balance, pending, tier, spend_12m, spend_drops_at, welcome_given, seen, blocked, flags, \
     reserved, leased";

/// The cards that `store_cards` names and `cards` does not hold: no foreign key
/// keeps them out (a push writes both in one transaction), `verify` reports them.
pub const MEMBERS_WITHOUT_CARD: &str = "SELECT DISTINCT s.card FROM store_cards s
     WHERE NOT EXISTS (SELECT 1 FROM cards c WHERE c.card = s.card)";

/// Columns [`lot`] reads, in order.
pub const LOT_COLUMNS: &str =
    "id, card, kind, source_entry, earned_at, matures_at, matured, expires_at, amount, remaining";

/// A card from [`CARD_COLUMNS`] starting at column `at`.
pub fn card_record(r: &impl Columns, at: usize) -> Result<CardRecord> {
    Ok(CardRecord {
        card: r.card(at)?,
        balance: r.points(at + 1)?,
        pending: r.points(at + 2)?,
        tier: r.opt_text(at + 3)?,
        spend_12m: Money(r.int(at + 4)?),
        spend_drops_at: r.opt_time(at + 5)?,
        welcome_given: r.boolean(at + 6)?,
        seen: r.boolean(at + 7)?,
        blocked: r.boolean(at + 8)?,
        flags: FlagSet::from_bits(u32::try_from(r.int(at + 9)?).unwrap_or(u32::MAX)),
        reserved: r.points(at + 10)?,
        leased: r.points(at + 11)?,
    })
}

/// A card from [`CARD_COLUMNS`] for `verify`: its stored id, and the decoded row or
/// why it does not decode.
pub fn audited_card(r: &impl Columns) -> Result<(String, Result<CardRecord>)> {
    Ok((r.text(0)?, card_record(r, 0)))
}

/// Cards by their id.
pub fn by_card(cards: Vec<CardRecord>) -> HashMap<CardId, CardRecord> {
    cards.into_iter().map(|c| (c.card.clone(), c)).collect()
}

/// A lot from [`LOT_COLUMNS`].
pub fn lot(r: &impl Columns) -> Result<Lot> {
    let kind = r.text(2)?;
    Ok(Lot {
        key: LotKey::Stored(r.int(0)?),
        card: r.card(1)?,
        kind: LotKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt(format!("lot kind {kind:?}")))?,
        source_entry: r.opt_uuid(3)?,
        earned_at: r.time(4)?,
        matures_at: r.opt_time(5)?,
        matured: r.boolean(6)?,
        expires_at: r.opt_time(7)?,
        amount: r.points(8)?,
        remaining: r.points(9)?,
    })
}

/// `id, store, terminal, token_hash` of a terminal.
pub fn terminal_identity(r: &impl Columns) -> Result<TerminalIdentity> {
    Ok(TerminalIdentity {
        key: r.int(0)?,
        store: r.store(1)?,
        terminal: r.terminal(2)?,
        token: TokenHash::from_hex(r.text(3)?),
    })
}

/// `acked_through, revoked_at IS NOT NULL, lease_epoch, token_hash` of a terminal.
pub fn terminal_state(r: &impl Columns) -> Result<TerminalState> {
    Ok(TerminalState {
        acked_through: Seq(r.counter(0)?),
        revoked: r.boolean(1)?,
        lease_epoch: r.counter(2)?,
        token: TokenHash::from_hex(r.text(3)?),
    })
}

/// `store, terminal, created_at, revoked_at, acked_through, last_push_at`.
pub fn terminal_info(r: &impl Columns) -> Result<TerminalInfo> {
    Ok(TerminalInfo {
        store: r.store(0)?,
        terminal: r.terminal(1)?,
        created_at: r.time(2)?,
        revoked_at: r.opt_time(3)?,
        acked_through: Seq(r.counter(4)?),
        last_push_at: r.opt_time(5)?,
    })
}

/// `seq, id, content_hash` of a held entry.
pub fn stored_entry(r: &impl Columns) -> Result<(u64, StoredEntry)> {
    Ok((
        r.counter(0)?,
        StoredEntry {
            id: r.uuid(1)?,
            content_hash: r.text(2)?,
        },
    ))
}

/// `id, terminal_ref, seq, store, terminal` of an entry and its terminal.
pub fn entry_holder(r: &impl Columns) -> Result<EntryHolder> {
    Ok(EntryHolder {
        id: r.uuid(0)?,
        terminal_key: r.int(1)?,
        seq: Seq(r.counter(2)?),
        name: format!("{}/{}", r.text(3)?, r.text(4)?),
    })
}

/// `card, at, spend_minor` of a member's purchase or refund.
pub fn member_purchase(r: &impl Columns) -> Result<(CardId, OffsetDateTime, Money)> {
    Ok((r.card(0)?, r.time(1)?, Money(r.int(2)?)))
}

/// One cell of the cohort table: (cohort month, month, members).
pub fn cohort_cell(r: &impl Columns) -> Result<(i32, i32, i64)> {
    let month = |i: usize| -> Result<i32> {
        i32::try_from(r.int(i)?).map_err(|_| StoreError::corrupt("kpi cohort month out of range"))
    };
    Ok((month(0)?, month(1)?, r.int(2)?))
}

/// `tier, cards, outstanding, pending` of one tier's cards.
pub fn tier_cards(r: &impl Columns) -> Result<TierCards> {
    Ok(TierCards {
        tier: r.opt_text(0)?,
        cards: r.int(1)?,
        outstanding: r.int(2)?,
        pending: r.int(3)?,
    })
}

/// `active, active_30d, active_90d, churned` member counts.
pub fn member_activity(r: &impl Columns) -> Result<MemberActivity> {
    Ok(MemberActivity {
        active: r.int(0)?,
        active_30d: r.int(1)?,
        active_90d: r.int(2)?,
        churned: r.int(3)?,
    })
}

/// `day, member, receipts, revenue_minor, items, discount_minor, points_accrued,
/// points_redeemed` of summed KPI aggregate rows.
pub fn kpi_day(r: &impl Columns) -> Result<(i32, bool, DailyTotals)> {
    let day = i32::try_from(r.int(0)?).map_err(|_| StoreError::corrupt("kpi day out of range"))?;
    Ok((
        day,
        r.boolean(1)?,
        DailyTotals {
            receipts: r.int(2)?,
            revenue_minor: r.int(3)?,
            items: r.int(4)?,
            discount_minor: r.int(5)?,
            points_accrued: r.int(6)?,
            points_redeemed: r.int(7)?,
        },
    ))
}

/// `SUM(expr)` as two columns that cannot overflow, for [`wide_sum`]: the high 32
/// bits of each value (arithmetic shift, so in [-2^31, 2^31)) and the low 32 bits (in
/// [0, 2^32)), each summed on its own. Neither sum leaves 64 bits before 2^31 rows,
/// where SQLite's `SUM` of 64-bit values fails with "integer overflow" on the first
/// sum beyond it. `cast` is what the dialect needs to read the sums as 64-bit
/// integers (PostgreSQL sums `bigint` as `numeric`).
pub fn split_sum(expr: &str, cast: &str) -> String {
    format!("SUM(({expr}) >> 32){cast}, SUM(({expr}) & 4294967295){cast}")
}

/// The exact sum of the two [`split_sum`] columns at `i` and `i + 1` (`NULL`: no
/// rows, zero).
pub fn wide_sum(r: &impl Columns, i: usize) -> Result<WideSum> {
    let high = WideSum::from(r.opt_int(i)?.unwrap_or(0));
    let low = WideSum::from(r.opt_int(i + 1)?.unwrap_or(0));
    Ok(high * (1 << 32) + low)
}

/// `card, split_sum(spend_minor), MIN(at)` of a card's entries in the window. A sum
/// beyond 64 bits is an error naming no card (it may reach a log): applying the
/// batch fails, and the push quarantines the entry that needed it.
pub fn spend(r: &impl Columns) -> Result<(CardId, Spend)> {
    let total = i64::try_from(wide_sum(r, 1)?).map_err(|_| {
        StoreError::corrupt("a card's spend over the window does not fit in 64 bits")
    })?;
    Ok((
        r.card(0)?,
        Spend {
            total: Money(total),
            earliest: Some(r.time(3)?),
        },
    ))
}

/// `card, split_sum(a), split_sum(b)`: two exact sums per card, with the card as
/// stored (`verify` names a card it cannot parse rather than stopping).
pub fn card_sums(r: &impl Columns) -> Result<(String, WideSum, WideSum)> {
    Ok((r.text(0)?, wide_sum(r, 1)?, wide_sum(r, 3)?))
}

/// `store, terminal, acked_through, COUNT(seq), MIN(seq), MAX(seq)`.
pub fn terminal_audit(r: &impl Columns) -> Result<TerminalAudit> {
    Ok(TerminalAudit {
        name: format!("{}/{}", r.text(0)?, r.text(1)?),
        acked_through: r.counter(2)?,
        count: r.counter(3)?,
        min_seq: r.opt_int(4)?.map(unsigned).transpose()?,
        max_seq: r.opt_int(5)?.map(unsigned).transpose()?,
    })
}

/// `at, store, terminal, kind, detail`.
pub fn anomaly(r: &impl Columns) -> Result<Anomaly> {
    let kind = r.text(3)?;
    Ok(Anomaly {
        at: r.time(0)?,
        store: r.store(1)?,
        terminal: r.terminal(2)?,
        kind: AnomalyKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt(format!("anomaly kind {kind:?}")))?,
        detail: r.text(4)?,
    })
}

/// `e.at, t.store, t.terminal, e.seq, f.entry_id, f.card, f.kind, f.detail`.
pub fn flagged_entry(r: &impl Columns) -> Result<FlaggedEntry> {
    let kind = r.text(6)?;
    Ok(FlaggedEntry {
        at: r.time(0)?,
        store: r.store(1)?,
        terminal: r.terminal(2)?,
        seq: Seq(r.counter(3)?),
        entry_id: r.uuid(4)?,
        card: r.card(5)?,
        kind: FlagKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt(format!("flag kind {kind:?}")))?,
        detail: r.text(7)?,
    })
}

/// Columns [`quarantined_entry`] reads, in order (`q`: quarantine, `e`: entries,
/// `t`: terminals).
pub const QUARANTINE_COLUMNS: &str = "q.id, q.quarantined_at, t.store, t.terminal, e.seq, \
     q.entry_id, q.card, q.kind, q.reason, q.released_at";

/// A quarantined entry from [`QUARANTINE_COLUMNS`].
pub fn quarantined_entry(r: &impl Columns) -> Result<QuarantinedEntry> {
    let kind = r.text(7)?;
    Ok(QuarantinedEntry {
        id: r.int(0)?,
        quarantined_at: r.time(1)?,
        store: r.store(2)?,
        terminal: r.terminal(3)?,
        seq: Seq(r.counter(4)?),
        entry_id: r.uuid(5)?,
        card: r.opt_text(6)?.as_deref().map(card).transpose()?,
        kind: QuarantineKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt(format!("quarantine kind {kind:?}")))?,
        reason: r.text(8)?,
        released_at: r.opt_time(9)?,
    })
}

/// `e.body, t.store, q.released_at IS NOT NULL` of a quarantine record.
pub fn held_in_quarantine(r: &impl Columns) -> Result<HeldInQuarantine> {
    Ok(HeldInQuarantine {
        body: r.text(0)?,
        store: r.store(1)?,
        released: r.boolean(2)?,
    })
}

/// A key id as stored.
pub fn key_id(id: i64) -> Result<KeyId> {
    u32::try_from(id)
        .map(KeyId)
        .map_err(|_| StoreError::corrupt(format!("key id {id}")))
}

/// `key_id, public_key, created_at, valid_until`.
pub fn key_info(r: &impl Columns) -> Result<KeyInfo> {
    Ok(KeyInfo {
        key_id: key_id(r.int(0)?)?,
        public_key: r.text(1)?,
        created_at: r.time(2)?,
        valid_until: r.opt_time(3)?,
    })
}

/// `kind, delta_balance, delta_pending, at, entry_id` of a ledger row.
pub fn ledger_view(r: &impl Columns) -> Result<LedgerView> {
    let kind = r.text(0)?;
    Ok(LedgerView {
        kind: LedgerKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt(format!("ledger kind {kind:?}")))?,
        delta_balance: r.points(1)?,
        delta_pending: r.points(2)?,
        at: r.time(3)?,
        entry_id: r.opt_uuid(4)?,
    })
}

/// `card, blocked`: a block event with the card's blocked state.
pub fn block_change(r: &impl Columns) -> Result<BlockChange> {
    Ok(BlockChange {
        card: r.card(0)?,
        blocked: r.boolean(1)?,
    })
}

/// [`CARD_COLUMNS`], then `block_reason, updated_at`.
pub fn card_detail(r: &impl Columns) -> Result<CardDetail> {
    Ok(CardDetail {
        record: card_record(r, 0)?,
        block_reason: r.opt_text(12)?,
        updated_at: r.time(13)?,
    })
}

/// Columns [`reservation`] reads, in order.
pub const RESERVATION_COLUMNS: &str =
    "terminal_ref, receipt_id, card, points, status, expires_at, updated_at";

/// Columns [`lease`] reads, in order.
pub const LEASE_COLUMNS: &str =
    "id, terminal_ref, card, points, charged, status, expires_at, granted_at";

/// Columns [`token_use`] reads, in order.
pub const TOKEN_USE_COLUMNS: &str = "token_id, terminal_ref, scan_id, card, expires_at, used_at";

/// A reservation from [`RESERVATION_COLUMNS`].
pub fn reservation(r: &impl Columns) -> Result<ReservationRow> {
    let status = r.text(4)?;
    Ok(ReservationRow {
        terminal: r.int(0)?,
        receipt_id: receipt_id(&r.text(1)?)?,
        card: r.card(2)?,
        points: r.points(3)?,
        status: ReservationStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt(format!("reservation status {status:?}")))?,
        expires_at: r.time(5)?,
        updated_at: r.time(6)?,
    })
}

/// A lease from [`LEASE_COLUMNS`].
pub fn lease(r: &impl Columns) -> Result<LeaseRow> {
    let status = r.text(5)?;
    Ok(LeaseRow {
        id: r.uuid(0)?,
        terminal: r.int(1)?,
        card: r.card(2)?,
        points: r.points(3)?,
        charged: r.points(4)?,
        status: LeaseStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt(format!("lease status {status:?}")))?,
        expires_at: r.time(6)?,
        granted_at: r.time(7)?,
    })
}

/// A token use from [`TOKEN_USE_COLUMNS`].
pub fn token_use(r: &impl Columns) -> Result<TokenUse> {
    Ok(TokenUse {
        token_id: r.text(0)?,
        terminal: r.int(1)?,
        scan_id: r.uuid(2)?,
        card: r.card(3)?,
        expires_at: r.time(4)?,
        used_at: r.time(5)?,
    })
}

/// `card, split_sum(reserved), split_sum(leased)` of a terminal's open holds. A sum
/// beyond 64 bits is an error naming no card (it may reach a log).
pub fn holds(r: &impl Columns) -> Result<(CardId, Points, Points)> {
    let points = |sum: WideSum| {
        i64::try_from(sum)
            .map(Points)
            .map_err(|_| StoreError::corrupt("a card's open holds do not fit in 64 bits"))
    };
    Ok((
        r.card(0)?,
        points(wide_sum(r, 1)?)?,
        points(wide_sum(r, 3)?)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "4006381333931";

    /// A row as a driver would read it.
    struct Row(Vec<Raw>);

    impl Columns for Row {
        fn raw(&self, i: usize) -> Result<Raw> {
            self.0
                .get(i)
                .cloned()
                .ok_or_else(|| StoreError::corrupt(format!("no column {i}")))
        }
    }

    /// A card row whose columns are as they should be, but for `broken`.
    fn card_row(broken: (usize, Raw)) -> Row {
        let mut cols = vec![
            Raw::Text(CARD.to_owned()),
            Raw::Int(10),
            Raw::Int(0),
            Raw::Null,
            Raw::Int(0),
            Raw::Null,
            Raw::Int(0),
            Raw::Int(0),
            Raw::Int(0),
            Raw::Int(0),
            Raw::Int(0),
            Raw::Int(0),
        ];
        cols[broken.0] = broken.1;
        Row(cols)
    }

    fn assert_masked(e: &StoreError) {
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(CARD), "full card number: {text}");
            assert!(text.contains("****3931"), "masked card: {text}");
        }
    }

    #[test]
    fn a_row_that_reads_as_before_decodes() {
        let ok = card_record(&card_row((1, Raw::Int(10))), 0).unwrap();
        assert_eq!((ok.card.as_str(), ok.balance), (CARD, Points(10)));
    }

    #[test]
    fn a_card_column_that_no_longer_parses_is_reported_with_the_card_masked() {
        let e = card_record(&card_row((0, Raw::Text(format!("{CARD}x")))), 0).unwrap_err();
        assert_masked(&e);
    }

    #[test]
    fn a_column_of_the_wrong_type_is_reported_with_the_card_masked() {
        // A card number where a figure belongs (a hand-edit gone wrong).
        let e = card_record(&card_row((1, Raw::Text(CARD.to_owned()))), 0).unwrap_err();
        assert_masked(&e);
        // A card number stored as an integer where the card belongs.
        let e = card_record(&card_row((0, Raw::Int(4_006_381_333_931))), 0).unwrap_err();
        assert_masked(&e);
    }
}
