//! The push's statements grouped by round trip ([`PushRows`]): what it reads before
//! it classifies its batch, what it locks and reads of the touched cards, and every
//! write. The default methods run the single statements one after the other, in the
//! order the flow needs (SQLite: no network, so nothing to save); PostgreSQL sends
//! each group as one pipelined flight, in the same order (`postgres::push`).

use super::{
    AdminRows, AnalyticsRows, CardRows, Clash, EntryRows, EscrowRows, Fut, Locked, Missing,
    NewEntries, QuarantineRows, RulesRows, TerminalRows, TerminalState,
};
use crate::ledger::escrow::{LeaseRow, ReservationRow};
use crate::ledger::kpi::KpiDelta;
use crate::ledger::quarantine::QuarantineRow;
use crate::ledger::sequence::StoredEntry;
use crate::ledger::{CardRecord, FlagRow, LedgerRow, Lot};
use crate::store::Anomaly;
use protocol::{CardId, ReceiptId, Seq, StoreId};
use time::OffsetDateTime;
use uuid::Uuid;

/// What a push reads first.
#[derive(Debug, Clone, Copy)]
pub struct HeadReads<'a> {
    /// The backend's key of the pushing terminal, whose row is locked first.
    pub terminal: i64,
    /// The batch's whole seq range (what HQ holds of it), if not empty.
    pub range: Option<(Seq, Seq)>,
    /// Rules versions whose stored JSON to read (those the cache lacks).
    pub rules: &'a [u64],
    /// The card locks and reads of the whole batch, for a backend that can take
    /// them in the same round trip, after the terminal's lock (PostgreSQL): on the
    /// bet, true but for a retried batch, that every entry of the batch is new. The
    /// flow uses them only when it is; a backend may ignore them ([`Head::cards`]).
    pub cards: CardReads<'a>,
}

/// What [`PushRows::push_head`] read.
#[derive(Debug, Clone)]
pub struct Head {
    /// The terminal's row, locked (`None`: gone).
    pub terminal: Option<TerminalState>,
    /// What HQ holds of the range: `(seq, entry)`.
    pub held: Vec<(u64, StoredEntry)>,
    /// The current rules version (0 before any `rules set`).
    pub rules_version: u64,
    /// `(version, JSON)` of the stored versions among those asked for.
    pub rules: Vec<(u64, String)>,
    /// What [`HeadReads::cards`] locked and read, if the backend took them.
    pub cards: Option<CardState>,
}

/// What a push locks and reads of its cards ([`CardReads::of`]).
#[derive(Debug, Clone, Copy)]
pub struct CardReads<'a> {
    /// The touched cards, locked in card-id order; those HQ holds no row for are
    /// left out ([`Missing::Leave`]) and written as new rows.
    pub cards: &'a [&'a CardId],
    /// The pushing terminal's key (its reservations).
    pub terminal: i64,
    /// Receipts whose reservations the batch settles, whatever their status.
    pub receipts: &'a [ReceiptId],
    /// Receipts whose open reservations alone the batch settles
    /// ([`crate::ledger::escrow::SettlementKeys::open_receipts`]).
    pub open_receipts: &'a [ReceiptId],
    /// Leases the batch settles.
    pub leases: &'a [Uuid],
    /// Cards whose open lots the batch consumes.
    pub consuming: &'a [&'a CardId],
}

/// What [`PushRows::lock_and_read_cards`] read, after the card locks.
#[derive(Debug, Clone, Default)]
pub struct CardState {
    /// The locked cards.
    pub locked: Locked,
    /// The terminal's reservations for the receipts, and its open ones for the open
    /// receipts (a store may also answer settled rows of those: they change nothing).
    pub reservations: Vec<ReservationRow>,
    /// The leases.
    pub leases: Vec<LeaseRow>,
    /// The open lots of the consuming cards.
    pub open_lots: Vec<Lot>,
}

/// Everything a push writes, in the order it is written.
#[derive(Debug, Clone)]
pub struct PushWrites<'a> {
    /// The entry rows (a clash with the uniqueness constraints refuses the batch).
    pub entries: NewEntries<'a>,
    /// States of cards that were locked.
    pub cards: Vec<&'a CardRecord>,
    /// States of cards HQ held no row for when they were locked, inserted with
    /// their figures (one row version, where a blank row and its update were two).
    pub new_cards: Vec<&'a CardRecord>,
    /// New lots.
    pub new_lots: &'a [Lot],
    /// Stored lots that changed.
    pub changed_lots: &'a [Lot],
    /// Ledger rows, in order.
    pub ledger: &'a [LedgerRow],
    /// Flagged entries, in order.
    pub flags: &'a [FlagRow],
    /// Entries stored without effect.
    pub quarantine: &'a [QuarantineRow],
    /// Settled reservations.
    pub reservations: &'a [ReservationRow],
    /// Settled leases.
    pub leases: &'a [LeaseRow],
    /// Lease settlements that do not add up.
    pub anomalies: &'a [Anomaly],
    /// What the applied entries add to the KPI aggregates.
    pub kpi: &'a KpiDelta,
    /// The store, and the cards to add to its feed.
    pub associate: (&'a StoreId, &'a [String]),
    /// The terminal's new `acked_through`.
    pub acked_through: Seq,
    /// The server's time.
    pub now: OffsetDateTime,
}

/// How [`PushRows::write_push`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Everything is written.
    Done,
    /// The entry rows clashed with the uniqueness constraints: the batch is refused
    /// (the transaction is unusable: the caller rolls it back).
    Refused(Clash),
    /// Another transaction inserted one of the new cards since the locks: the
    /// caller rolls back and starts over, and then locks that card's row.
    CardTaken,
}

/// The push's statements by round trip; see the module documentation.
pub trait PushRows:
    TerminalRows
    + EntryRows
    + CardRows
    + RulesRows
    + EscrowRows
    + AdminRows
    + AnalyticsRows
    + QuarantineRows
{
    /// Locks the terminal's row, then reads what HQ holds of the range and the rules.
    /// The default takes no card locks ([`Head::cards`] is `None`): one statement
    /// after another, it has no round trip to save.
    fn push_head(&mut self, reads: HeadReads<'_>) -> impl Fut<Head> {
        async move {
            let terminal = self.lock_terminal(reads.terminal).await?;
            let held = match reads.range {
                Some((from, to)) => self.held(reads.terminal, from, to).await?,
                None => Vec::new(),
            };
            let rules_version = self.rules_version().await?;
            let mut rules = Vec::new();
            for &v in reads.rules {
                if let Some(body) = self.rules_body(v).await? {
                    rules.push((v, body));
                }
            }
            Ok(Head {
                terminal,
                held,
                rules_version,
                rules,
                cards: None,
            })
        }
    }

    /// Locks the cards that have a row ([`CardRows::lock_cards`] with
    /// [`Missing::Leave`]), then reads the reservations (the open ones alone of the
    /// open receipts), leases and open lots.
    fn lock_and_read_cards(&mut self, reads: CardReads<'_>) -> impl Fut<CardState> {
        async move {
            let locked = self.lock_cards(reads.cards, Missing::Leave).await?;
            let mut reservations = self.reservations(reads.terminal, reads.receipts).await?;
            if !reads.open_receipts.is_empty() {
                reservations.extend(
                    self.open_reservations_among(reads.terminal, reads.open_receipts)
                        .await?,
                );
            }
            Ok(CardState {
                locked,
                reservations,
                leases: self.leases(reads.leases).await?,
                open_lots: self.open_lots(reads.consuming).await?,
            })
        }
    }

    /// Writes everything, the terminal's ack last, or answers why not.
    ///
    /// The default has one writer at a time (SQLite), so no other transaction can
    /// insert a card meanwhile, and its `write_push_cards` inserts the absent cards.
    fn write_push(&mut self, w: &PushWrites<'_>) -> impl Fut<Written> {
        async move {
            if let Some(clash) = self.insert_entries(&w.entries).await? {
                return Ok(Written::Refused(clash));
            }
            self.write_push_cards(&w.cards, &w.new_cards, w.now).await?;
            self.insert_lots(w.new_lots).await?;
            self.update_lots(w.changed_lots).await?;
            self.insert_ledger(w.ledger).await?;
            self.insert_flags(w.flags).await?;
            self.insert_quarantine(w.quarantine, w.now).await?;
            self.write_reservations(w.reservations).await?;
            self.write_leases(w.leases).await?;
            for a in w.anomalies {
                self.insert_anomaly(a).await?;
            }
            if !w.kpi.is_empty() {
                self.add_kpi(w.kpi).await?;
            }
            let (store, cards) = w.associate;
            if !cards.is_empty() {
                self.associate(store, cards).await?;
            }
            self.ack(w.entries.terminal, w.acked_through, w.now).await?;
            Ok(Written::Done)
        }
    }
}
