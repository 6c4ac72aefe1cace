//! Storage: the [`Store`] contract and the backends behind it.
//!
//! Every operation is written once, in [`flow`]: which rows it loads and writes, in
//! which transaction, with every decision about what the rows mean taken by the pure
//! [`crate::ledger`]. A backend provides only its SQL ([`statements`]) and the way it
//! runs an operation ([`backend`]); rows are decoded once ([`rows`]), values encoded
//! once ([`encode`]). The SQLite backend ([`sqlite::SqliteStore`]) is the default;
//! [`postgres::PgStore`] lets several stateless instances share one PostgreSQL
//! database. Cursors are opaque strings because PostgreSQL's are snapshot-based
//! rather than a single counter.

pub mod backend;
pub mod caches;
pub mod encode;
pub mod flow;
pub mod postgres;
pub mod rows;
pub mod sqlite;
pub mod statements;

#[cfg(test)]
mod tests;

use crate::keys::TokenHash;
use crate::ledger::batch::Batch;
use crate::ledger::escrow::{EscrowRefusal, LeaseAsks, ReserveAsk, TokenUse};
use crate::ledger::jobs::JobReport;
use crate::ledger::kpi::{KpiInputs, Period};
use crate::ledger::quarantine::{QuarantineKind, RetryOutcome};
use crate::ledger::sequence::Refusal;
use crate::ledger::verify::{CardAudit, TerminalAudit};
use crate::ledger::{AnomalyKind, CardRecord, FlagKind, LedgerKind, RulesVersionError};
use crate::store::flow::escrow::{AbandonAfter, AbandonReport};
use async_trait::async_trait;
use ed25519_dalek::SigningKey;
use protocol::ids::Scrubbed;
use protocol::rules::ProgramRules;
use protocol::token::KeyId;
use protocol::wire::{Lease, LiveBalanceResponse, PullResponse, ReserveResponse};
use protocol::{CardId, Money, Points, Seq, StoreId, TerminalId};
use std::collections::HashSet;
use std::fmt;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// A storage operation's result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The push was refused (gap, rewind, id reuse); nothing was applied.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The pull cursor is not one this backend issued.
    #[error("bad cursor {0:?}")]
    BadCursor(String),
    /// `terminal add` for a terminal that is active, without `--rotate`.
    #[error(
        "terminal {store}/{terminal} already exists and is active; add --rotate to replace its token"
    )]
    TerminalActive {
        /// The terminal's store.
        store: StoreId,
        /// The terminal's name in its store.
        terminal: TerminalId,
    },
    /// No such terminal.
    #[error("no terminal {store}/{terminal}")]
    UnknownTerminal {
        /// The store named.
        store: StoreId,
        /// The terminal named.
        terminal: TerminalId,
    },
    /// `rules set` with a version that is not newer.
    #[error(transparent)]
    RulesVersion(#[from] RulesVersionError),
    /// A stored value no longer parses (hand-edited database, newer server). Made by
    /// [`StoreError::corrupt`], which masks card numbers.
    #[error("stored data is unreadable: {0}")]
    Corrupt(Scrubbed),
    /// The terminal (`store/terminal`) was revoked while its request was under way.
    #[error("terminal {0} is revoked")]
    Revoked(String),
    /// `quarantine retry` of a record that does not exist.
    #[error("no quarantined entry {0}")]
    UnknownQuarantine(i64),
    /// The database URL cannot be used.
    #[error("{0}")]
    InvalidUrl(String),
    /// The database cannot serve the request now (unreachable, or still conflicting
    /// after bounded retries); the client should try again later. Nothing was applied.
    /// The driver's words may quote a value (a card number): scrubbed.
    #[error("database unavailable: {0}")]
    Unavailable(Scrubbed),
    /// A reservation, lease sync or token use was refused; nothing was changed.
    #[error(transparent)]
    Escrow(#[from] EscrowRefusal),
    /// The database failed. Kept whole for the retry decision
    /// (`store::postgres::retry::is_transient`), but shown only scrubbed and not as the
    /// error's source: a driver's message may quote a value it refused (a card number),
    /// and an error chain printed with its sources would bypass the masking.
    #[error("database: {}", Scrubbed::new(.0))]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A [`StoreError::Corrupt`] saying what is unreadable. The text often quotes the
    /// stored value (a card column, a row that does not decode), and it reaches logs,
    /// `verify`'s lines and error answers: every card number in it is masked here,
    /// the one place such an error is made.
    pub fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(Scrubbed::new(what))
    }
}

/// The terminal a bearer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalIdentity {
    /// The backend's key of the terminal row.
    pub key: i64,
    /// The store the terminal sells for.
    pub store: StoreId,
    /// The terminal's name in its store.
    pub terminal: TerminalId,
    /// The hash of the token it was authenticated by. A push checks it again in its
    /// own transaction ([`crate::store::statements::TerminalState::admits`]), so an
    /// identity remembered from an earlier request cannot outlive a rotation.
    pub token: TokenHash,
}

impl fmt::Display for TerminalIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.store, self.terminal)
    }
}

/// What `terminal add` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminalAdded {
    /// A new terminal.
    Created,
    /// An active terminal got a new token (`--rotate`).
    Rotated,
    /// A revoked terminal is active again, with a new token and its journal position.
    Reactivated,
}

/// A terminal, for `terminal list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalInfo {
    /// The store the terminal sells for.
    pub store: StoreId,
    /// The terminal's name in its store.
    pub terminal: TerminalId,
    /// When it was added.
    pub created_at: OffsetDateTime,
    /// When it was revoked, if it is.
    pub revoked_at: Option<OffsetDateTime>,
    /// Highest contiguous `seq` HQ holds.
    pub acked_through: Seq,
    /// Last push HQ accepted.
    pub last_push_at: Option<OffsetDateTime>,
}

/// The answer to an accepted push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// Highest contiguous `seq` HQ holds, after commit.
    pub acked_through: Seq,
    /// Entries applied now.
    pub applied: u32,
    /// Entries HQ already held.
    pub duplicates: u32,
    /// Entries stored now without effect ([`crate::ledger::quarantine`]).
    pub quarantined: Vec<Seq>,
}

/// A pull's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullRequest<'a> {
    /// The cursor the agent got last time (`None`: from the beginning).
    pub cursor: Option<&'a str>,
    /// The rules version the agent holds.
    pub rules_version: u64,
    /// Most balances in the answer.
    pub page_size: u32,
}

/// A refused push or other protocol anomaly, for `report anomalies`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// When HQ saw it.
    pub at: OffsetDateTime,
    /// The authenticated store.
    pub store: StoreId,
    /// The authenticated terminal.
    pub terminal: TerminalId,
    /// What went wrong.
    pub kind: AnomalyKind,
    /// What happened.
    pub detail: String,
}

/// A public signing key, for `keys list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The id tokens name the key by.
    pub key_id: KeyId,
    /// Base32 public key.
    pub public_key: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// End of its validity after rotation (`None`: current).
    pub valid_until: Option<OffsetDateTime>,
}

/// A ledger row, for `card show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerView {
    /// What happened.
    pub kind: LedgerKind,
    /// Change of the balance.
    pub delta_balance: Points,
    /// Change of the pending points.
    pub delta_pending: Points,
    /// When it took effect (the entry's time, or the job's).
    pub at: OffsetDateTime,
    /// The entry that caused it; `None` for HQ's own rows.
    pub entry_id: Option<Uuid>,
}

/// A card, for `card show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardReport {
    /// Its cached totals.
    pub state: CardRecord,
    /// Why HQ blocked it.
    pub block_reason: Option<String>,
    /// Last change.
    pub updated_at: OffsetDateTime,
    /// Its latest ledger rows, newest first.
    pub recent: Vec<LedgerView>,
}

/// A flagged entry, for the reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlaggedEntry {
    /// When the entry was recorded at the till.
    pub at: OffsetDateTime,
    /// The store of the terminal that recorded it.
    pub store: StoreId,
    /// The terminal that recorded it.
    pub terminal: TerminalId,
    /// Its number at that terminal.
    pub seq: Seq,
    /// Its id.
    pub entry_id: Uuid,
    /// Its card.
    pub card: CardId,
    /// The broken rule.
    pub kind: FlagKind,
    /// What the rule saw (balance after, points redeemed, …).
    pub detail: String,
}

/// A quarantined entry, for `report quarantine`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedEntry {
    /// The record's id, what `quarantine retry` takes.
    pub id: i64,
    /// When HQ quarantined it.
    pub quarantined_at: OffsetDateTime,
    /// The store of the terminal that recorded it.
    pub store: StoreId,
    /// The terminal that recorded it.
    pub terminal: TerminalId,
    /// Its number at that terminal.
    pub seq: Seq,
    /// Its id.
    pub entry_id: Uuid,
    /// Its card (`None`: anonymous).
    pub card: Option<CardId>,
    /// What kind of reason.
    pub kind: QuarantineKind,
    /// Why HQ could not apply it.
    pub reason: String,
    /// When a retry applied it (`None`: still without effect).
    pub released_at: Option<OffsetDateTime>,
}

/// A card with a negative balance, for `report overdrafts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdraft {
    /// The card.
    pub card: CardId,
    /// Its balance.
    pub balance: Points,
    /// Its flagged entries.
    pub flagged: Vec<FlaggedEntry>,
}

/// Everything `verify` recomputes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// Every card and every card that has ledger rows or lots.
    pub cards: Vec<CardAudit>,
    /// Cards (as stored) whose row or id does not read, with the reason.
    pub unreadable: Vec<(String, String)>,
    /// Every terminal.
    pub terminals: Vec<TerminalAudit>,
}

/// HQ's storage. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync {
    /// The connection pool's metrics (zero for a store without a pool).
    fn pool_metrics(&self) -> crate::metrics::PoolMetrics;

    /// The current rules version when the database answers (health check).
    async fn health(&self) -> Result<u64, StoreError>;

    /// The active terminal whose token hashes to `hash`.
    async fn authenticate(&self, hash: &TokenHash) -> Result<Option<TerminalIdentity>, StoreError>;

    /// Adds a terminal, or replaces the token of an active one when `rotate`, or
    /// re-activates a revoked one.
    async fn add_terminal(
        &self,
        store: &StoreId,
        terminal: &TerminalId,
        hash: &TokenHash,
        rotate: bool,
        now: OffsetDateTime,
    ) -> Result<TerminalAdded, StoreError>;

    /// Revokes a terminal: its token stops working at once.
    async fn revoke_terminal(
        &self,
        store: &StoreId,
        terminal: &TerminalId,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Every terminal.
    async fn list_terminals(&self) -> Result<Vec<TerminalInfo>, StoreError>;

    /// Applies a batch in one transaction, or refuses all of it
    /// ([`StoreError::Refused`]). Returns only after commit.
    async fn push(
        &self,
        terminal: &TerminalIdentity,
        batch: Batch,
        now: OffsetDateTime,
    ) -> Result<PushOutcome, StoreError>;

    /// Records an anomaly in its own transaction.
    async fn record_anomaly(&self, anomaly: &Anomaly) -> Result<(), StoreError>;

    /// The change feed for a terminal, read in one snapshot.
    async fn pull(
        &self,
        terminal: &TerminalIdentity,
        request: PullRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<PullResponse, StoreError>;

    /// A card's balance with the `acked_through` of the active terminal the token
    /// hash belongs to, authenticated and read in one snapshot; `None` when the token
    /// belongs to no active terminal (nothing else is read then).
    async fn live_balance(
        &self,
        token: &TokenHash,
        card: &CardId,
        now: OffsetDateTime,
    ) -> Result<Option<LiveBalanceResponse>, StoreError>;

    /// The current rules (`ProgramRules::default()` before any `rules set`).
    async fn current_rules(&self) -> Result<ProgramRules, StoreError>;

    /// Stores new rules under [`crate::ledger::next_rules_version`]; returns the
    /// version.
    async fn set_rules(&self, rules: ProgramRules, now: OffsetDateTime) -> Result<u64, StoreError>;

    /// Blocks or unblocks a card; false when it already was in that state.
    async fn set_blocked(
        &self,
        card: &CardId,
        blocked: bool,
        reason: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// A card with its latest `recent` ledger rows; `None` for a card HQ never held.
    async fn card_report(
        &self,
        card: &CardId,
        recent: u32,
    ) -> Result<Option<CardReport>, StoreError>;

    /// Makes `key` the current signing key (id = highest + 1); the previous current
    /// key stays valid for `grace`.
    async fn rotate_keys(
        &self,
        key: &SigningKey,
        grace: Duration,
        now: OffsetDateTime,
    ) -> Result<KeyInfo, StoreError>;

    /// Every signing key's public half.
    async fn list_keys(&self) -> Result<Vec<KeyInfo>, StoreError>;

    /// The current signing key, if any.
    async fn current_signing_key(&self) -> Result<Option<(KeyId, SigningKey)>, StoreError>;

    /// Runs maturation, expiry and tiers at `now`.
    async fn run_jobs(&self, now: OffsetDateTime) -> Result<JobReport, StoreError>;

    /// Everything `verify` compares, read in one snapshot.
    async fn audit(&self) -> Result<Audit, StoreError>;

    /// Cards with a negative balance and their flagged entries.
    async fn overdrafts(&self) -> Result<Vec<Overdraft>, StoreError>;

    /// Every flagged entry, oldest first.
    async fn flagged_entries(&self) -> Result<Vec<FlaggedEntry>, StoreError>;

    /// Every anomaly, oldest first.
    async fn anomalies(&self) -> Result<Vec<Anomaly>, StoreError>;

    /// The entries among `ids` HQ holds (under any terminal).
    async fn held_entry_ids(&self, ids: Vec<Uuid>) -> Result<HashSet<Uuid>, StoreError>;

    /// Every member purchase and refund, `(card, at, money)`, ordered by card and
    /// time, from one snapshot (see [`statements::AnalyticsRows`]).
    async fn member_purchases(&self) -> Result<Vec<(CardId, OffsetDateTime, Money)>, StoreError>;

    /// Everything a KPI report of `period` reads (one store's, or the chain's), from
    /// one snapshot; `now` dates the liability and the points expiring soon.
    async fn kpi_inputs(
        &self,
        period: Period,
        store: Option<&StoreId>,
        now: OffsetDateTime,
    ) -> Result<KpiInputs, StoreError>;

    /// Every quarantined entry, oldest first.
    async fn quarantined(&self) -> Result<Vec<QuarantinedEntry>, StoreError>;

    /// Applies quarantined entry `id` now, exactly once, or says why it still
    /// cannot be applied (then nothing changes).
    async fn retry_quarantined(
        &self,
        id: i64,
        now: OffsetDateTime,
    ) -> Result<RetryOutcome, StoreError>;

    /// Holds points of a card for a receipt of the active terminal the token hash
    /// belongs to, under the card's lock, authenticated in the same transaction;
    /// idempotent per (terminal, receipt). `None` when the token belongs to no active
    /// terminal (nothing is changed then). Refusals: [`StoreError::Escrow`].
    async fn reserve(
        &self,
        token: &TokenHash,
        ask: ReserveAsk,
        now: OffsetDateTime,
    ) -> Result<Option<ReserveResponse>, StoreError>;

    /// Grants the leases a terminal asks for (epoch after the last one, every entry
    /// of the till held); answers every open lease of the terminal.
    async fn lease_sync(
        &self,
        terminal: &TerminalIdentity,
        epoch: u64,
        through_seq: Seq,
        asks: LeaseAsks,
        now: OffsetDateTime,
    ) -> Result<Vec<Lease>, StoreError>;

    /// Records an app token's use; refused when it was used at another terminal or
    /// in another scan.
    async fn use_token(&self, token: TokenUse) -> Result<(), StoreError>;

    /// Releases abandoned reservations, reclaims abandoned leases and forgets old
    /// token uses, in chunks until none is left.
    async fn release_abandoned(
        &self,
        now: OffsetDateTime,
        after: AbandonAfter,
    ) -> Result<AbandonReport, StoreError>;
}
