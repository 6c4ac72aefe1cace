//! The loads and writes a backend provides: one method per statement (or per bulk
//! statement), in the backend's own SQL dialect, answering domain values (decoded
//! with [`super::rows`]). Which of them run, in which order and in which transaction
//! is decided once, by the flows in [`super::flow`]; a backend only knows how to run
//! its SQL.
//!
//! The traits are grouped by what they touch; [`Statements`] is all of them, what a
//! flow is given. Every method returns a `Send` future ([`Fut`]) so that one flow
//! serves both backends: PostgreSQL's methods await the driver, SQLite's never wait
//! (they run on the store's blocking thread; see `sqlite::session`).

mod push;

pub use push::{CardReads, CardState, Head, HeadReads, PushRows, PushWrites, Written};

use super::caches::Caches;
use super::{Anomaly, FlaggedEntry, KeyInfo, LedgerView, QuarantinedEntry};
use super::{TerminalIdentity, TerminalInfo};
use crate::keys::TokenHash;
use crate::ledger::apply::spend_of;
use crate::ledger::escrow::{LeaseRow, ReservationRow, TokenUse};
use crate::ledger::kpi::{DailyTotals, KpiDelta, MemberActivity, MemberWindows};
use crate::ledger::quarantine::QuarantineRow;
use crate::ledger::sequence::StoredEntry;
use crate::ledger::verify::{TerminalAudit, WideSum};
use crate::ledger::{CardRecord, FlagRow, LedgerRow, Lot, Spend};
use crate::store::Result;
use protocol::journal::JournalEntry;
use protocol::wire::BlockChange;
use protocol::{CardId, Money, Points, ReceiptId, Seq, StoreId, TerminalId};
use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use time::OffsetDateTime;
use uuid::Uuid;

/// The future of a statement: `Send`, failing with a [`StoreError`](super::StoreError).
pub trait Fut<T>: Future<Output = Result<T>> + Send {}

impl<T, F: Future<Output = Result<T>> + Send> Fut<T> for F {}

/// A terminal's row as a push finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalState {
    /// Highest contiguous `seq` HQ holds.
    pub acked_through: Seq,
    /// True once revoked.
    pub revoked: bool,
    /// The last lease-sync epoch HQ answered for it.
    pub lease_epoch: u64,
    /// The hash of its current token.
    pub token: TokenHash,
}

impl TerminalState {
    /// True when the row still admits `who`: not revoked, and still under the token
    /// `who` was authenticated by (a rotation since then ends that token at once,
    /// however the request came by its identity).
    pub fn admits(&self, who: &TerminalIdentity) -> bool {
        !self.revoked && self.token == who.token
    }
}

/// Why the database refused new entry rows: its uniqueness constraints, the last word
/// on exactly-once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clash {
    /// An entry id HQ already holds (the id when the backend knows which).
    Id(Option<Uuid>),
    /// A `(terminal, seq)` HQ already holds, written concurrently.
    Seq(Seq),
}

/// A terminal as the admin commands name it.
#[derive(Debug, Clone, Copy)]
pub struct TerminalName<'a> {
    /// Its store.
    pub store: &'a StoreId,
    /// Its name in the store.
    pub terminal: &'a TerminalId,
}

/// A terminal `terminal add` creates.
#[derive(Debug, Clone, Copy)]
pub struct NewTerminal<'a> {
    /// Its name.
    pub name: TerminalName<'a>,
    /// Its token's hash.
    pub hash: &'a TokenHash,
    /// The server's time.
    pub created_at: OffsetDateTime,
}

/// A signing key `keys rotate` stores as the current one.
#[derive(Debug, Clone, Copy)]
pub struct NewKey<'a> {
    /// Its id, the highest so far plus one.
    pub id: i64,
    /// The secret half, hex.
    pub secret_hex: &'a str,
    /// The public half, as agents get it.
    pub public_key: &'a str,
    /// The server's time.
    pub created_at: OffsetDateTime,
}

/// The entry rows a push inserts.
#[derive(Debug, Clone, Copy)]
pub struct NewEntries<'a> {
    /// The backend's key of the pushing terminal.
    pub terminal: i64,
    /// The entries, in seq order.
    pub entries: &'a [JournalEntry],
    /// Their canonical JSON and content hash, in the same order.
    pub encoded: &'a [(String, String)],
    /// When HQ received them.
    pub received_at: OffsetDateTime,
    /// Those of them stored without effect.
    pub quarantined: &'a [QuarantineRow],
}

impl NewEntries<'_> {
    /// The spend an entry row counts (`entries.spend_minor`, what tiers and reports
    /// sum): none for a quarantined entry until a retry applies it.
    pub fn spend(&self, entry: &JournalEntry) -> Money {
        if self.quarantined.iter().any(|q| q.entry_id == entry.id) {
            Money::ZERO
        } else {
            spend_of(entry)
        }
    }
}

/// A quarantined entry as `quarantine retry` finds it, locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldInQuarantine {
    /// The entry's stored canonical JSON.
    pub body: String,
    /// The store of the terminal that pushed it.
    pub store: StoreId,
    /// True once a retry applied it.
    pub released: bool,
}

/// HQ blocking or unblocking a card.
#[derive(Debug, Clone, Copy)]
pub struct Blocking<'a> {
    /// The card's state with `blocked` set as it is to be: the state
    /// [`CardRows::lock_cards`] gave, or a blank one for a card HQ never held.
    pub card: &'a CardRecord,
    /// Why, kept only while blocked.
    pub reason: Option<&'a str>,
    /// The server's time.
    pub at: OffsetDateTime,
}

/// An entry HQ holds, with the terminal that pushed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHolder {
    /// The entry id.
    pub id: Uuid,
    /// The backend's key of the terminal.
    pub terminal_key: i64,
    /// Its number at that terminal.
    pub seq: Seq,
    /// `store/terminal`.
    pub name: String,
}

/// What [`CardRows::lock_cards`] does about cards HQ holds no row for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Lock the cards that have a row and leave the others out: the caller writes
    /// those as new rows (a push: [`PushWrites::new_cards`]), and one that another
    /// transaction inserted meanwhile makes it start over ([`Written::CardTaken`]).
    Leave,
    /// Create blank rows for them first, updated at this time.
    Create(OffsetDateTime),
}

/// Cards a transaction holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locked {
    /// The stored state of every card that has a row.
    pub cards: HashMap<CardId, CardRecord>,
    /// Cards whose (blank) row this transaction created.
    pub created: HashSet<String>,
}

/// A card with what only `card show` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardDetail {
    /// The card.
    pub record: CardRecord,
    /// Why HQ blocked it.
    pub block_reason: Option<String>,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// A position in a backend's change feed, as the pull cursor carries it.
pub trait FeedPosition: Clone + Display + Send + Sync + Sized {
    /// The start of the feed.
    fn start() -> Self;
    /// Parses a cursor this backend issued (`None` or empty: the start).
    fn parse(cursor: Option<&str>) -> Result<Self>;
    /// True when this position lies beyond `head`: a cursor from the future (HQ
    /// restored from a backup), which cannot be trusted.
    fn is_past(&self, head: &Self) -> bool;
}

/// Terminals: authentication, the push's lock and ack, the admin commands.
pub trait TerminalRows: Send {
    /// The active terminal whose token hashes to `hash`.
    fn authenticate(&mut self, hash: &TokenHash) -> impl Fut<Option<TerminalIdentity>>;
    /// The terminal's row, locked for the rest of the transaction (PostgreSQL:
    /// `FOR UPDATE`, so pushes of one terminal are serialized across instances).
    fn lock_terminal(&mut self, key: i64) -> impl Fut<Option<TerminalState>>;
    /// `acked_through` of an active terminal (`None`: revoked or gone).
    fn active_acked_through(&mut self, key: i64) -> impl Fut<Option<Seq>>;
    /// Records a push: `acked_through` and the time.
    fn ack(&mut self, key: i64, acked_through: Seq, now: OffsetDateTime) -> impl Fut<()>;
    /// Inserts a terminal unless one of that name exists; true when inserted.
    fn insert_terminal(&mut self, new: &NewTerminal<'_>) -> impl Fut<bool>;
    /// The key of a named terminal and whether it is revoked, locked.
    fn lock_named_terminal(&mut self, name: TerminalName<'_>) -> impl Fut<(i64, bool)>;
    /// Gives a terminal a new token and makes it active.
    fn set_token(&mut self, key: i64, hash: &TokenHash) -> impl Fut<()>;
    /// Revokes a named terminal (keeping an earlier revocation time); the rows changed.
    fn revoke(&mut self, name: TerminalName<'_>, now: OffsetDateTime) -> impl Fut<u64>;
    /// Every terminal, by store and name.
    fn list_terminals(&mut self) -> impl Fut<Vec<TerminalInfo>>;
}

/// Journal entries as HQ holds them.
pub trait EntryRows: Send {
    /// What a terminal holds for `from..=to`: `(seq, entry)`.
    fn held(&mut self, key: i64, from: Seq, to: Seq) -> impl Fut<Vec<(u64, StoredEntry)>>;
    /// Inserts new entries. A clash with the uniqueness constraints is answered, not
    /// failed: the transaction is then unusable and the caller rolls it back.
    fn insert_entries(&mut self, new: &NewEntries<'_>) -> impl Fut<Option<Clash>>;
    /// The entries among `ids` HQ holds, ordered by seq.
    fn entry_holders(&mut self, ids: &[Uuid]) -> impl Fut<Vec<EntryHolder>>;
}

/// Cards and what hangs off them: lots, ledger rows, flags, spend, feed membership.
pub trait CardRows: Send {
    /// The stored states of `cards`, locked for the rest of the transaction in card-id
    /// order where the backend has row locks; see [`Missing`] for absent cards.
    fn lock_cards(&mut self, cards: &[&CardId], missing: Missing) -> impl Fut<Locked>;
    /// The stored states of the existing cards among `cards`, locked likewise.
    fn lock_existing_cards(&mut self, cards: &[&CardId]) -> impl Fut<HashMap<CardId, CardRecord>>;
    /// Spend of `cards` from stored entries after `since` (the window excludes its
    /// start); cards without an entry in it are left out.
    fn spend_since(
        &mut self,
        cards: &[&CardId],
        since: OffsetDateTime,
    ) -> impl Fut<Vec<(CardId, Spend)>>;
    /// The lots of `cards` with points remaining.
    fn open_lots(&mut self, cards: &[&CardId]) -> impl Fut<Vec<Lot>>;
    /// The lots with these ids.
    fn lots(&mut self, ids: &[i64]) -> impl Fut<Vec<Lot>>;
    /// Stores card states under a fresh feed position, inserting cards HQ did not
    /// hold. `blocked` belongs to the admin commands and is never written here.
    fn write_cards(&mut self, cards: &[&CardRecord], now: OffsetDateTime) -> impl Fut<()>;
    /// [`Self::write_cards`] of a push's cards, `existing` then `new`: `existing`
    /// have a row (read in this transaction), `new` had none. By default
    /// [`Self::write_cards`] of both; a backend that can write each kind cheaper
    /// on its own does.
    fn write_push_cards(
        &mut self,
        existing: &[&CardRecord],
        new: &[&CardRecord],
        now: OffsetDateTime,
    ) -> impl Fut<()> {
        async move {
            let cards: Vec<&CardRecord> = existing.iter().chain(new).copied().collect();
            self.write_cards(&cards, now).await
        }
    }
    /// Inserts new lots.
    fn insert_lots(&mut self, lots: &[Lot]) -> impl Fut<()>;
    /// Stores the remaining points and maturity of stored lots.
    fn update_lots(&mut self, lots: &[Lot]) -> impl Fut<()>;
    /// Appends ledger rows, in order (`card show` lists them in id order).
    fn insert_ledger(&mut self, rows: &[LedgerRow]) -> impl Fut<()>;
    /// Inserts flagged entries, in order.
    fn insert_flags(&mut self, flags: &[FlagRow]) -> impl Fut<()>;
    /// Adds cards to a store's balance feed, leaving pairs that exist.
    fn associate(&mut self, store: &StoreId, cards: &[String]) -> impl Fut<()>;
}

/// Program rules versions.
pub trait RulesRows: Send {
    /// The highest stored version, 0 before any `rules set`.
    fn rules_version(&mut self) -> impl Fut<u64>;
    /// The stored JSON of `version`.
    fn rules_body(&mut self, version: u64) -> impl Fut<Option<String>>;
    /// Keeps other `rules set` out until commit, so two cannot pick one version.
    fn lock_rules(&mut self) -> impl Fut<()>;
    /// Stores a version.
    fn insert_rules(&mut self, version: u64, body: &str, now: OffsetDateTime) -> impl Fut<()>;
}

/// The change feed agents pull.
pub trait FeedRows: Send {
    /// A position in this backend's feed.
    type Position: FeedPosition;
    /// Everything committed that a pull from `after` may answer now. On PostgreSQL
    /// this is the first statement of the pull's snapshot, whose bound bounds the
    /// page; a cursor a previous pull left past that bound (it looked past a
    /// transaction this one did not) is the head itself.
    fn feed_head(&mut self, after: &Self::Position) -> impl Fut<Self::Position>;
    /// Up to `page` cards of `store`'s feed changed after `after` and not after
    /// `head`, in feed order, each with its position.
    fn changed_cards(
        &mut self,
        store: &StoreId,
        after: &Self::Position,
        head: &Self::Position,
        page: i64,
    ) -> impl Fut<Vec<(Self::Position, CardRecord)>>;
    /// Block and unblock events after `after` up to `upto`, in feed order.
    fn block_changes(
        &mut self,
        after: &Self::Position,
        upto: &Self::Position,
    ) -> impl Fut<Vec<BlockChange>>;
    /// What a live balance reads for the active terminal the token hash belongs to,
    /// all in the snapshot it runs in, authentication included; `None`, and nothing
    /// read, when the token belongs to no active terminal. PostgreSQL sends the
    /// snapshot's `START TRANSACTION`, the reads and its `COMMIT` in one flight,
    /// every read keyed by the token, so that an unknown or revoked one reads nothing.
    fn live_reads(&mut self, token: &TokenHash, card: &CardId) -> impl Fut<Option<LiveReads>>;
}

/// The reads of [`FeedRows::live_reads`].
#[derive(Debug, Clone)]
pub struct LiveReads {
    /// The terminal's `acked_through`.
    pub acked_through: Seq,
    /// The card's stored state; `None` for a card HQ never held.
    pub card: Option<CardRecord>,
    /// `(card, reserved, leased)` of the terminal's own open holds of the card, if any.
    pub own_holds: Vec<(CardId, Points, Points)>,
}

/// App-token signing keys.
pub trait KeyRows: Send {
    /// Keeps other rotations out until commit, so two cannot pick one key id.
    fn lock_keys(&mut self) -> impl Fut<()>;
    /// Ends the validity of the current key at `until`.
    fn end_current_key(&mut self, until: OffsetDateTime) -> impl Fut<()>;
    /// The highest key id plus one.
    fn next_key_id(&mut self) -> impl Fut<i64>;
    /// Stores a new current key.
    fn insert_key(&mut self, key: &NewKey<'_>) -> impl Fut<()>;
    /// Every key's public half, oldest first.
    fn list_keys(&mut self) -> impl Fut<Vec<KeyInfo>>;
    /// The current key's id and hex secret.
    fn current_key(&mut self) -> impl Fut<Option<(i64, String)>>;
}

/// What the admin commands and reports read and write besides terminals and keys.
pub trait AdminRows: Send {
    /// Appends an anomaly.
    fn insert_anomaly(&mut self, anomaly: &Anomaly) -> impl Fut<()>;
    /// Every anomaly, oldest first.
    fn anomalies(&mut self) -> impl Fut<Vec<Anomaly>>;
    /// Flagged entries, oldest first; of one card when `card` is given.
    fn flagged_entries(&mut self, card: Option<&CardId>) -> impl Fut<Vec<FlaggedEntry>>;
    /// Cards with a negative balance, most negative first.
    fn overdrawn_cards(&mut self) -> impl Fut<Vec<(CardId, Points)>>;
    /// A card with its block reason and last change.
    fn card_detail(&mut self, card: &CardId) -> impl Fut<Option<CardDetail>>;
    /// A card's latest `n` ledger rows, newest first.
    fn recent_ledger(&mut self, card: &CardId, n: u32) -> impl Fut<Vec<LedgerView>>;
    /// Stores a block or unblock: an event in the change feed, and the card row
    /// (`blocked`, the reason) under a fresh feed position, so agents see both.
    fn store_block(&mut self, block: &Blocking<'_>) -> impl Fut<()>;
}

/// What the periodic job looks for.
pub trait JobRows: Send {
    /// `(card, lot id)` of every lot due at `now`: to mature, or to expire.
    fn due_lots(&mut self, now: OffsetDateTime) -> impl Fut<Vec<(CardId, i64)>>;
    /// Cards whose oldest counted entry leaves the spend window by `now`.
    fn cards_with_spend_dropping(&mut self, now: OffsetDateTime) -> impl Fut<Vec<CardId>>;
    /// The rules version every tier follows.
    fn tiers_version(&mut self) -> impl Fut<u64>;
    /// Cards with a spend, or with a tier other than `zero_tier`.
    fn cards_with_spend_or_tier(&mut self, zero_tier: Option<&str>) -> impl Fut<Vec<CardId>>;
    /// Records that every tier follows `version` (never going back, should an
    /// instance with older rules finish later).
    fn mark_tiers(&mut self, version: u64) -> impl Fut<()>;
}

/// A card as `verify` reads it: its id as stored, and its row decoded, or why it
/// does not decode (one bad row must not stop the others from being checked).
pub type AuditedCard = (String, Result<CardRecord>);

/// What `verify` sums, card by card, each sum exact ([`WideSum`]).
pub trait AuditRows: Send {
    /// Every card.
    fn all_cards(&mut self) -> impl Fut<Vec<AuditedCard>>;
    /// Per card (as stored): the sums of its ledger's balance and pending deltas.
    fn ledger_sums(&mut self) -> impl Fut<Vec<(String, WideSum, WideSum)>>;
    /// Per card (as stored): the points left in its lots, and in its unmatured lots.
    fn lot_sums(&mut self) -> impl Fut<Vec<(String, WideSum, WideSum)>>;
    /// The cards (as stored) that store memberships name and no card row holds
    /// ([`crate::store::rows::MEMBERS_WITHOUT_CARD`]).
    fn members_without_card(&mut self) -> impl Fut<Vec<String>>;
    /// Every terminal with the count and range of the seqs HQ holds.
    fn terminal_audits(&mut self) -> impl Fut<Vec<TerminalAudit>>;
}

/// Which aggregate rows a KPI figure reads: days `from..=to` (Julian day numbers of
/// UTC dates), of one store or of all.
#[derive(Debug, Clone, Copy)]
pub struct KpiScope<'a> {
    /// First day.
    pub from: i32,
    /// Last day.
    pub to: i32,
    /// One store, or the chain.
    pub store: Option<&'a StoreId>,
}

/// The KPI aggregates (written by each push) and what the marketing reports read.
pub trait AnalyticsRows: Send {
    /// Every purchase and refund of a member, as the CLV models see them: sale
    /// entries with at least one line (an opening balance has none) and returns, each
    /// as `(card, at, money paid or refunded)`, ordered by card and time; an entry
    /// in quarantine is not applied, so not a purchase until a retry applies it.
    fn member_purchases(&mut self) -> impl Fut<Vec<(CardId, OffsetDateTime, Money)>>;
    /// Adds a push's KPI delta to the aggregates (rows in key order, so concurrent
    /// pushes lock them in one order).
    fn add_kpi(&mut self, delta: &KpiDelta) -> impl Fut<()>;
    /// The scope's aggregate rows summed per day and member flag, by day.
    fn kpi_days(&mut self, scope: KpiScope<'_>) -> impl Fut<Vec<(i32, bool, DailyTotals)>>;
    /// Distinct members with a receipt in each window (in `store`, or anywhere in
    /// the chain), from one pass over the members' days.
    fn member_activity(
        &mut self,
        windows: &MemberWindows,
        store: Option<&StoreId>,
    ) -> impl Fut<MemberActivity>;
    /// Members whose first receipt day is in the scope (for a store: who also bought
    /// there in it).
    fn new_members(&mut self, scope: KpiScope<'_>) -> impl Fut<i64>;
    /// Enrolment cohorts: members whose first receipt day is in the scope's days,
    /// counted per (month of that first day, month of a receipt of theirs in the
    /// scope), distinct per pair, by cohort and month. Months are `year * 12 + month
    /// - 1`.
    fn cohort_activity(&mut self, scope: KpiScope<'_>) -> impl Fut<Vec<(i32, i32, i64)>>;
    /// Points the ledger job expired at times in `from..to`.
    fn points_expired(&mut self, from: OffsetDateTime, to: OffsetDateTime) -> impl Fut<i64>;
    /// Points left in lots that expire at times in `from..to`.
    fn points_expiring(&mut self, from: OffsetDateTime, to: OffsetDateTime) -> impl Fut<i64>;
    /// Revenue of the sale lines of `categories` (every category when empty) in the
    /// scope: `(members, non-members)`.
    fn category_revenue(
        &mut self,
        scope: KpiScope<'_>,
        categories: &[String],
    ) -> impl Fut<(i64, i64)>;
    /// Per tier now (`None`: no tier), by tier: its cards, and their positive
    /// balances and pending points summed. One pass over the cards answers the
    /// tier figures and the points outstanding.
    fn cards_per_tier(&mut self) -> impl Fut<Vec<TierCards>>;
    /// Tier changes dated in days `from..=to`, counted per `(from tier, to tier)`.
    fn tier_moves(&mut self, from: i32, to: i32) -> impl Fut<Vec<TierMoveCount>>;
}

/// A tier's cards now (`None`: no tier): how many, their positive balances and
/// their pending points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierCards {
    /// The tier.
    pub tier: Option<String>,
    /// Cards in it.
    pub cards: i64,
    /// Their positive balances, summed.
    pub outstanding: i64,
    /// Their pending points, summed.
    pub pending: i64,
}

/// Tier changes from one tier to another (`None`: no tier), and how many.
pub type TierMoveCount = (Option<String>, Option<String>, i64);

/// Entries stored without effect, and their retries.
pub trait QuarantineRows: Send {
    /// Records quarantined entries (their entry rows are inserted first).
    fn insert_quarantine(&mut self, rows: &[QuarantineRow], now: OffsetDateTime) -> impl Fut<()>;
    /// Every quarantined entry, oldest first, released ones included.
    fn quarantined(&mut self) -> impl Fut<Vec<QuarantinedEntry>>;
    /// Quarantine record `id`, locked for the rest of the transaction (so two retries
    /// of one entry queue up and the second finds it released).
    fn lock_quarantined(&mut self, id: i64) -> impl Fut<Option<HeldInQuarantine>>;
    /// Marks record `id` applied.
    fn release_quarantined(&mut self, id: i64, now: OffsetDateTime) -> impl Fut<()>;
    /// Sets the spend an applied entry's row counts.
    fn set_entry_spend(&mut self, entry: Uuid, spend: Money) -> impl Fut<()>;
}

/// Reservations, leases and app-token uses (points never spent twice). Rows that
/// change a card's `reserved`/`leased` are written in the transaction that holds the
/// card's lock, together with the card.
pub trait EscrowRows: Send {
    /// The reservations of `terminal` for these receipts.
    fn reservations(
        &mut self,
        terminal: i64,
        receipts: &[ReceiptId],
    ) -> impl Fut<Vec<ReservationRow>>;
    /// The open reservations of `terminal` among these receipts (what a push's sales
    /// that redeemed nothing settle: [`crate::ledger::escrow::SettlementKeys`]).
    fn open_reservations_among(
        &mut self,
        terminal: i64,
        receipts: &[ReceiptId],
    ) -> impl Fut<Vec<ReservationRow>>;
    /// Inserts reservation rows, or updates those of the same (terminal, receipt).
    fn write_reservations(&mut self, rows: &[ReservationRow]) -> impl Fut<()>;
    /// The leases with these ids.
    fn leases(&mut self, ids: &[Uuid]) -> impl Fut<Vec<LeaseRow>>;
    /// The open leases of a terminal, oldest first.
    fn open_leases(&mut self, terminal: i64) -> impl Fut<Vec<LeaseRow>>;
    /// Inserts lease rows, or updates those of the same id.
    fn write_leases(&mut self, rows: &[LeaseRow]) -> impl Fut<()>;
    /// Per card among `cards` that has any: `(card, reserved, leased)` of the
    /// terminal's own open reservations and leases.
    fn own_holds(
        &mut self,
        terminal: i64,
        cards: &[&CardId],
    ) -> impl Fut<Vec<(CardId, Points, Points)>>;
    /// Records the lease-sync epoch HQ answered (the terminal's row is locked).
    fn set_lease_epoch(&mut self, terminal: i64, epoch: u64) -> impl Fut<()>;
    /// Records a token use unless the token's use is recorded already; answers the
    /// recorded use (this one, or the earlier one).
    fn claim_token(&mut self, token: &TokenUse) -> impl Fut<Option<TokenUse>>;
    /// Up to `limit` open reservations whose deadline is before `before`.
    fn open_reservations_before(
        &mut self,
        before: OffsetDateTime,
        limit: i64,
    ) -> impl Fut<Vec<ReservationRow>>;
    /// Up to `limit` open leases that expire before `before`.
    fn open_leases_before(&mut self, before: OffsetDateTime, limit: i64)
    -> impl Fut<Vec<LeaseRow>>;
    /// Forgets the uses of tokens that expired before `before`; the rows deleted.
    fn forget_token_uses(&mut self, before: OffsetDateTime) -> impl Fut<u64>;
    /// Per card with any: `(card, reserved, leased)` summed exactly from the open
    /// rows, with the card as stored (`verify` names a card it cannot parse).
    fn hold_sums(&mut self) -> impl Fut<Vec<(String, WideSum, WideSum)>>;
    /// What a reservation of `receipt` on `card` decides from, for the active terminal
    /// the token hash belongs to, authentication included; `None`, and nothing locked
    /// or read, when the token belongs to no active terminal. The cards locked are
    /// `card` and the card of the receipt's reservation as read just before the locks
    /// (plus `also`); the reservation is read again after them. PostgreSQL sends the
    /// write transaction's `START TRANSACTION` and all of it in one flight, every
    /// statement keyed by the token.
    fn reserve_reads(
        &mut self,
        token: &TokenHash,
        receipt: &ReceiptId,
        card: &CardId,
        also: Option<&CardId>,
    ) -> impl Fut<Option<ReserveReads>>;
    /// The last statements of a reservation's transaction: writes the changed cards and
    /// the reservation row, then answers the terminal's own holds of `row.card` with
    /// them (`(card, reserved, leased)`, none when it holds nothing). PostgreSQL sends
    /// them and the `COMMIT` in one flight (a failed write turns that `COMMIT` into a
    /// rollback), so nothing may follow them in the transaction.
    fn finish_reservation(
        &mut self,
        cards: &[&CardRecord],
        row: &ReservationRow,
        now: OffsetDateTime,
    ) -> impl Fut<Vec<(CardId, Points, Points)>>;
}

/// The reads of [`EscrowRows::reserve_reads`].
#[derive(Debug, Clone)]
pub struct ReserveReads {
    /// The terminal's key.
    pub terminal: i64,
    /// The terminal's `acked_through`.
    pub acked_through: Seq,
    /// The locked cards that have a row.
    pub cards: HashMap<CardId, CardRecord>,
    /// The receipt's reservation, read after the locks.
    pub existing: Option<ReservationRow>,
}

/// Every statement of a backend, on one connection (inside a transaction or not, as
/// the flow's [`super::backend::Access`] says), with the store's caches.
pub trait Statements:
    TerminalRows
    + EntryRows
    + CardRows
    + RulesRows
    + FeedRows
    + KeyRows
    + AdminRows
    + JobRows
    + AuditRows
    + AnalyticsRows
    + QuarantineRows
    + EscrowRows
    + PushRows
{
    /// The store's caches.
    fn caches(&self) -> &Caches;
}
