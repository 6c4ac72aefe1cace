//! Applying new journal entries to their cards: ledger rows, lots, welcome bonus,
//! flags and tier. HQ never refuses what already happened at a till: an entry that
//! breaks a rule is applied and flagged; an entry it cannot apply is quarantined
//! whole ([`super::quarantine`]), and the entries after it apply as if it were not
//! there.
//!
//! Every entry is checked against the protocol's limits first (at HQ, the hard
//! ceilings), and every addition to a card's points or spend is checked: a figure
//! beyond its limit, a balance pushed beyond the card maximum, or a sum that would
//! overflow quarantines the entry instead of wrapping or saturating a balance.

use super::lots::{remaining_after_debt, take};
use super::quarantine::{QuarantineRow, Unappliable};
use super::{
    CardRecord, EntryKind, FlagKind, FlagRow, LedgerKind, LedgerRow, Lot, LotKey, LotKind,
    RulesBook, Spend, expiry_of, spend_window_start, tier_name,
};
use protocol::journal::{EntryBody, JournalEntry};
use protocol::limits::{Limits, validate};
use protocol::{CardId, Money, Points};
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;
use uuid::Uuid;

/// What applying a batch needs, loaded by the backend inside its write transaction.
#[derive(Debug)]
pub struct BatchInput<'a> {
    /// The new entries, in `seq` order (duplicates already removed).
    pub entries: &'a [JournalEntry],
    /// Stored state of every card the entries mention that HQ holds a row for.
    pub cards: HashMap<CardId, CardRecord>,
    /// Open lots (points remaining) of the cards [`cards_that_consume`] names; other
    /// cards only gain lots, which needs their balance, not their lots.
    pub open_lots: Vec<Lot>,
    /// Spend of each card over the window, from entries stored before this batch.
    pub spend_before: HashMap<CardId, Spend>,
    /// Program rules.
    pub rules: &'a RulesBook,
    /// The maximums each entry and each card's balance must stay within.
    pub limits: &'a Limits,
    /// The server's time.
    pub now: OffsetDateTime,
}

/// A touched card's final state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardPlan {
    /// The state to store.
    pub state: CardRecord,
    /// True when HQ held no row for the card before.
    pub is_new: bool,
}

/// Everything a batch writes, besides the entries themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchPlan {
    /// Every card the entries mention, in order of first mention. Each gets a new
    /// change position, so agents pull it.
    pub cards: Vec<CardPlan>,
    /// Lots created, in their final state (`LotKey::New(i)` is `new_lots[i]`).
    pub new_lots: Vec<Lot>,
    /// Stored lots that changed, in their final state.
    pub changed_lots: Vec<Lot>,
    /// Ledger rows to append, in order.
    pub ledger: Vec<LedgerRow>,
    /// Flagged entries.
    pub flags: Vec<FlagRow>,
    /// Entries stored without effect, in batch order.
    pub quarantined: Vec<QuarantineRow>,
}

/// The money an entry adds to its card's spend (sales) or takes off (returns); zero
/// for anonymous entries and welcome bonuses.
pub fn spend_of(entry: &JournalEntry) -> Money {
    match &entry.body {
        EntryBody::Sale(s) if s.card.is_some() => s.sale.paid_minor,
        EntryBody::Return(r) if r.card.is_some() => Money(-r.returned.refund_minor.get()),
        _ => Money::ZERO,
    }
}

/// The distinct cards whose entries take points out of lots (redemptions, return
/// reversals): the only cards whose open lots a batch needs loaded.
pub fn cards_that_consume(entries: &[JournalEntry]) -> Vec<&CardId> {
    let mut seen = HashSet::new();
    entries
        .iter()
        .filter(|e| match &e.body {
            EntryBody::Sale(s) => s.sale.redeemed_points.get() > 0,
            EntryBody::Return(r) => r.returned.reversed_accrual_points.get() > 0,
            EntryBody::Welcome(_) | EntryBody::Release(_) | EntryBody::LeaseClosed(_) => false,
        })
        .filter_map(JournalEntry::card)
        .filter(|c| seen.insert(*c))
        .collect()
}

/// What an entry is.
pub fn entry_kind(entry: &JournalEntry) -> EntryKind {
    match &entry.body {
        EntryBody::Sale(_) => EntryKind::Sale,
        EntryBody::Return(_) => EntryKind::Return,
        EntryBody::Welcome(_) => EntryKind::Welcome,
        EntryBody::Release(_) => EntryKind::Release,
        EntryBody::LeaseClosed(_) => EntryKind::LeaseClosed,
    }
}

struct Work {
    state: CardRecord,
    is_new: bool,
    lots: Vec<Lot>,
    spend: Spend,
}

/// What applying one entry may change, saved before it so that an entry that turns
/// out unappliable halfway (a redemption applied, then its accrual overflows) leaves
/// nothing behind.
struct Checkpoint {
    state: CardRecord,
    spend: Spend,
    lots_len: usize,
    remaining: Vec<Points>,
    next_new_lot: usize,
    ledger_len: usize,
    flags_len: usize,
}

fn overflow(what: &'static str) -> impl Fn(protocol::money::AmountError) -> Unappliable {
    move |_| Unappliable::Overflow(what)
}

struct Planner<'a> {
    rules: &'a RulesBook,
    limits: &'a Limits,
    now: OffsetDateTime,
    window_start: OffsetDateTime,
    cards: Vec<Work>,
    index: HashMap<CardId, usize>,
    next_new_lot: usize,
    touched_lots: HashSet<LotKey>,
    ledger: Vec<LedgerRow>,
    flags: Vec<FlagRow>,
    quarantined: Vec<QuarantineRow>,
}

/// Applies `input.entries` in order and returns the writes.
pub fn apply_batch(input: BatchInput<'_>) -> BatchPlan {
    let BatchInput {
        entries,
        mut cards,
        open_lots,
        spend_before,
        rules,
        limits,
        now,
    } = input;
    let mut lots_by_card: HashMap<CardId, Vec<Lot>> = HashMap::new();
    for lot in open_lots {
        lots_by_card.entry(lot.card.clone()).or_default().push(lot);
    }
    let mut p = Planner {
        rules,
        limits,
        now,
        window_start: spend_window_start(now),
        cards: Vec::new(),
        index: HashMap::new(),
        next_new_lot: 0,
        touched_lots: HashSet::new(),
        ledger: Vec::new(),
        flags: Vec::new(),
        quarantined: Vec::new(),
    };
    for entry in entries {
        let refused = |e: protocol::limits::LimitError| {
            QuarantineRow::new(entry, &Unappliable::OutOfLimits(e.to_string()))
        };
        let Some(card) = entry.card() else {
            if let Err(e) = validate(entry, limits) {
                p.quarantined.push(refused(e));
            }
            continue;
        };
        let i = match p.index.get(card) {
            Some(&i) => i,
            None => {
                let (state, is_new) = match cards.remove(card) {
                    Some(s) => (s, false),
                    None => (CardRecord::new(card.clone()), true),
                };
                p.cards.push(Work {
                    state,
                    is_new,
                    lots: lots_by_card.remove(card).unwrap_or_default(),
                    spend: spend_before.get(card).copied().unwrap_or_default(),
                });
                p.index.insert(card.clone(), p.cards.len() - 1);
                p.cards.len() - 1
            }
        };
        // The card is planned even when its entry is refused: the push locked (or
        // created) its row and makes sure of its feed membership.
        if let Err(e) = validate(entry, limits) {
            p.quarantined.push(refused(e));
            continue;
        }
        let saved = p.checkpoint(i);
        if let Err(why) = p.apply(i, entry) {
            p.restore(i, saved);
            p.quarantined.push(QuarantineRow::new(entry, &why));
        }
    }
    p.finish()
}

impl Planner<'_> {
    fn checkpoint(&self, i: usize) -> Checkpoint {
        let w = &self.cards[i];
        Checkpoint {
            state: w.state.clone(),
            spend: w.spend,
            lots_len: w.lots.len(),
            remaining: w.lots.iter().map(|l| l.remaining).collect(),
            next_new_lot: self.next_new_lot,
            ledger_len: self.ledger.len(),
            flags_len: self.flags.len(),
        }
    }

    /// Undoes everything applied to card `i` since `saved`. Stored lots the entry
    /// touched may stay in `touched_lots`: they are written back unchanged.
    fn restore(&mut self, i: usize, saved: Checkpoint) {
        let w = &mut self.cards[i];
        w.state = saved.state;
        w.spend = saved.spend;
        w.lots.truncate(saved.lots_len);
        for (lot, remaining) in w.lots.iter_mut().zip(saved.remaining) {
            lot.remaining = remaining;
        }
        self.next_new_lot = saved.next_new_lot;
        self.ledger.truncate(saved.ledger_len);
        self.flags.truncate(saved.flags_len);
    }

    fn apply(&mut self, i: usize, entry: &JournalEntry) -> Result<(), Unappliable> {
        self.first_sight(i, entry)?;
        let before = self.cards[i].state.balance;
        let entry_rules = self.rules.for_version(entry.rules_version);
        let expires_at = expiry_of(entry_rules, entry.at);
        match &entry.body {
            EntryBody::Sale(s) => {
                let redeemed = s.sale.redeemed_points;
                if redeemed.get() > 0 {
                    if self.cards[i].state.blocked {
                        self.flag(
                            i,
                            entry,
                            FlagKind::BlockedCard,
                            format!("redeemed {redeemed} points on a card blocked at HQ"),
                        );
                    }
                    self.take_points(i, entry, LedgerKind::Redemption, redeemed, None)?;
                }
                let accrued = s.sale.accrued_points;
                if accrued.get() > 0 {
                    self.add_lot(
                        i,
                        NewLot {
                            kind: LotKind::Accrual,
                            ledger: LedgerKind::Accrual,
                            entry: Some(entry.id),
                            earned_at: entry.at,
                            matures_at: s.matures_at,
                            expires_at,
                            amount: accrued,
                        },
                    )?;
                }
            }
            EntryBody::Return(r) => {
                let reversed = r.returned.reversed_accrual_points;
                if reversed.get() > 0 {
                    self.take_points(
                        i,
                        entry,
                        LedgerKind::ReturnReversal,
                        reversed,
                        Some(r.sale_entry),
                    )?;
                }
                let restored = r.returned.restored_points;
                if restored.get() > 0 {
                    self.add_lot(
                        i,
                        NewLot {
                            kind: LotKind::Restore,
                            ledger: LedgerKind::ReturnRestore,
                            entry: Some(entry.id),
                            earned_at: entry.at,
                            matures_at: None,
                            expires_at,
                            amount: restored,
                        },
                    )?;
                }
            }
            EntryBody::Welcome(w) => {
                if self.cards[i].state.welcome_given {
                    self.flag(
                        i,
                        entry,
                        FlagKind::DuplicateWelcome,
                        format!(
                            "welcome of {} points for a card that already got its welcome; applied with no effect",
                            w.points
                        ),
                    );
                } else {
                    self.cards[i].state.welcome_given = true;
                    if w.points.get() > 0 {
                        self.add_lot(
                            i,
                            NewLot {
                                kind: LotKind::Welcome,
                                ledger: LedgerKind::Welcome,
                                entry: Some(entry.id),
                                earned_at: entry.at,
                                matures_at: None,
                                expires_at,
                                amount: w.points,
                            },
                        )?;
                    }
                }
            }
            // Settlement of reservations and leases; no effect on points.
            EntryBody::Release(_) | EntryBody::LeaseClosed(_) => {}
        }
        let after = self.cards[i].state.balance;
        if after > before {
            (self.limits)
                .check_balance(i128::from(after.get()))
                .map_err(|e| Unappliable::OutOfLimits(format!("the card's {e}")))?;
        }
        // Only an entry that pushed the balance further down is an overdraft; an
        // accrual that merely reduces an existing debt is not.
        if after.is_negative() && after < before {
            self.flag(
                i,
                entry,
                FlagKind::Overdraft,
                format!("balance {before} -> {after}"),
            );
        }
        if entry.at > self.window_start {
            self.cards[i]
                .spend
                .add(entry.at, spend_of(entry))
                .map_err(overflow("the card's spend over the window"))?;
        }
        Ok(())
    }

    /// The first entry HQ sees for a card earns HQ's welcome bonus, unless that entry
    /// is itself a standalone till's welcome.
    fn first_sight(&mut self, i: usize, entry: &JournalEntry) -> Result<(), Unappliable> {
        if self.cards[i].state.seen {
            return Ok(());
        }
        self.cards[i].state.seen = true;
        let is_welcome_entry = matches!(entry.body, EntryBody::Welcome(_));
        if self.cards[i].state.welcome_given || is_welcome_entry {
            return Ok(());
        }
        let current = self.rules.current();
        let bonus = current.welcome_bonus_points;
        if bonus.get() > 0 {
            self.cards[i].state.welcome_given = true;
            self.add_lot(
                i,
                NewLot {
                    kind: LotKind::Welcome,
                    ledger: LedgerKind::Welcome,
                    entry: None,
                    earned_at: entry.at,
                    matures_at: None,
                    expires_at: expiry_of(current, entry.at),
                    amount: bonus,
                },
            )?;
        }
        Ok(())
    }

    fn add_lot(&mut self, i: usize, new: NewLot) -> Result<(), Unappliable> {
        let now = self.now;
        let w = &mut self.cards[i];
        let remaining = remaining_after_debt(w.state.balance, new.amount);
        // Points whose maturity already passed (a late push) are spendable at once;
        // a lot that went entirely to debt has nothing left to mature.
        let matured = remaining.get() == 0 || new.matures_at.is_none_or(|m| m <= now);
        let delta_pending = if matured { Points::ZERO } else { remaining };
        // Both sums before either is stored: a failure leaves the card as it was.
        let balance = (w.state.balance)
            .checked_add(new.amount)
            .map_err(overflow("the card's balance"))?;
        let pending = (w.state.pending)
            .checked_add(delta_pending)
            .map_err(overflow("the card's pending points"))?;
        w.state.balance = balance;
        w.state.pending = pending;
        let key = LotKey::New(self.next_new_lot);
        self.next_new_lot += 1;
        w.lots.push(Lot {
            key,
            card: w.state.card.clone(),
            kind: new.kind,
            source_entry: new.entry,
            earned_at: new.earned_at,
            matures_at: new.matures_at,
            matured,
            expires_at: new.expires_at,
            amount: new.amount,
            remaining,
        });
        self.ledger.push(LedgerRow {
            card: w.state.card.clone(),
            kind: new.ledger,
            delta_balance: new.amount,
            delta_pending,
            at: new.earned_at,
            entry_id: new.entry,
        });
        Ok(())
    }

    fn take_points(
        &mut self,
        i: usize,
        entry: &JournalEntry,
        kind: LedgerKind,
        amount: Points,
        prefer: Option<Uuid>,
    ) -> Result<(), Unappliable> {
        let w = &mut self.cards[i];
        let balance = (w.state.balance)
            .checked_sub(amount)
            .map_err(overflow("the card's balance"))?;
        let delta_balance = Points::ZERO
            .checked_sub(amount)
            .map_err(overflow("the points taken"))?;
        let touched_lots = &mut self.touched_lots;
        let keys: Vec<LotKey> = w.lots.iter().map(|l| l.key).collect();
        let taken = take(&mut w.lots, amount, prefer, &mut |idx| {
            touched_lots.insert(keys[idx]);
        });
        // What was taken from pending lots is part of the card's pending points.
        let pending = (w.state.pending)
            .checked_sub(taken.from_pending)
            .map_err(overflow("the card's pending points"))?;
        let delta_pending = Points::ZERO
            .checked_sub(taken.from_pending)
            .map_err(overflow("the pending points taken"))?;
        w.state.balance = balance;
        w.state.pending = pending;
        self.ledger.push(LedgerRow {
            card: w.state.card.clone(),
            kind,
            delta_balance,
            delta_pending,
            at: entry.at,
            entry_id: Some(entry.id),
        });
        Ok(())
    }

    fn flag(&mut self, i: usize, entry: &JournalEntry, kind: FlagKind, detail: String) {
        let w = &mut self.cards[i];
        w.state.flags.insert(kind);
        self.flags.push(FlagRow {
            entry_id: entry.id,
            card: w.state.card.clone(),
            kind,
            detail,
        });
    }

    fn finish(self) -> BatchPlan {
        let current = self.rules.current();
        let mut plan = BatchPlan {
            ledger: self.ledger,
            flags: self.flags,
            quarantined: self.quarantined,
            ..BatchPlan::default()
        };
        let mut new_lots: Vec<Lot> = Vec::with_capacity(self.next_new_lot);
        for w in self.cards {
            for lot in w.lots {
                match lot.key {
                    LotKey::New(_) => new_lots.push(lot),
                    LotKey::Stored(_) if self.touched_lots.contains(&lot.key) => {
                        plan.changed_lots.push(lot);
                    }
                    LotKey::Stored(_) => {}
                }
            }
            let mut state = w.state;
            state.spend_12m = w.spend.total;
            state.spend_drops_at = w.spend.drops_at();
            state.tier = tier_name(current, w.spend.total);
            plan.cards.push(CardPlan {
                state,
                is_new: w.is_new,
            });
        }
        new_lots.sort_by_key(|l| l.key);
        plan.new_lots = new_lots;
        plan
    }
}

struct NewLot {
    kind: LotKind,
    ledger: LedgerKind,
    entry: Option<Uuid>,
    earned_at: OffsetDateTime,
    matures_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    amount: Points,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use protocol::evaluate::{PricedReturn, ReturnedLine};
    use protocol::journal::ReturnEntry;
    use protocol::rules::{ProgramRules, Tier};
    use protocol::{BasisPoints, ReceiptId, ReturnId, Seq};
    use std::sync::Arc;
    use testkit::entries::{Entry, figures};
    use time::Duration;

    pub const CARD: &str = "4006381333931";
    pub use testkit::entries::{T0, entry_id};

    /// A sale at T0 + seq minutes that pays 100.00 and redeems/accrues as given.
    pub fn sale(seq: u64, card: &str, redeemed: i64, accrued: i64) -> JournalEntry {
        Entry::fixed(seq).sale(Some(card), figures(redeemed, accrued))
    }

    /// [`sale`] accruing `accrued` points that stay pending until `matures_at`.
    pub fn pending_sale(
        seq: u64,
        card: &str,
        accrued: i64,
        matures_at: OffsetDateTime,
    ) -> JournalEntry {
        Entry::fixed(seq)
            .matures_at(Some(matures_at))
            .sale(Some(card), figures(0, accrued))
    }

    pub fn return_of(
        seq: u64,
        card: &str,
        sale_seq: u64,
        reversed: i64,
        restored: i64,
    ) -> JournalEntry {
        Entry::fixed(seq).body(EntryBody::Return(ReturnEntry {
            return_id: ReturnId::parse(&format!("X-{seq}")).unwrap(),
            receipt_id: ReceiptId::parse(&format!("R-{sale_seq}")).unwrap(),
            sale_entry: entry_id(sale_seq),
            card: Some(CardId::parse(card).unwrap()),
            returned: PricedReturn {
                lines: vec![ReturnedLine {
                    line: 0,
                    qty: 1,
                    refund_minor: Money(5_000),
                    reversed_accrual_points: Points(reversed),
                    restored_points: Points(restored),
                }],
                refund_minor: Money(5_000),
                reversed_accrual_points: Points(reversed),
                restored_points: Points(restored),
            },
        }))
    }

    /// A standalone till's welcome entry at T0 + seq minutes.
    pub fn welcome(seq: u64, card: &str, points: i64) -> JournalEntry {
        Entry::fixed(seq).rules_version(0).welcome(card, points)
    }

    pub fn rules(welcome: i64) -> RulesBook {
        RulesBook::new(
            Arc::new(ProgramRules {
                version: 1,
                welcome_bonus_points: Points(welcome),
                expiry_days: 30,
                tiers: vec![Tier {
                    name: "silver".into(),
                    min_spend_minor: Money(15_000),
                    accrual_bp: BasisPoints(700),
                }],
                ..ProgramRules::default()
            }),
            [],
        )
    }

    /// What a database would sum for a card: the replay keeps no entries, so the
    /// card's own totals stand in for them.
    pub fn replay_spend(s: &CardRecord) -> Spend {
        Spend {
            total: s.spend_12m,
            earliest: s.spend_drops_at.map(|d| d - crate::ledger::SPEND_WINDOW),
        }
    }

    /// Applies entries one batch after another, carrying state like a database would.
    pub struct Replay {
        pub rules: RulesBook,
        pub limits: Limits,
        pub cards: HashMap<CardId, CardRecord>,
        pub lots: Vec<Lot>,
        pub ledger: Vec<LedgerRow>,
        pub flags: Vec<FlagRow>,
        next_id: i64,
    }

    impl Replay {
        pub fn new(rules: RulesBook) -> Self {
            Self {
                rules,
                limits: Limits::CEILING,
                cards: HashMap::new(),
                lots: Vec::new(),
                ledger: Vec::new(),
                flags: Vec::new(),
                next_id: 1,
            }
        }

        pub fn push(&mut self, entries: &[JournalEntry]) -> BatchPlan {
            let now = entries.last().map_or(T0, |e| e.at);
            let consuming = cards_that_consume(entries);
            let plan = apply_batch(BatchInput {
                entries,
                cards: self.cards.clone(),
                open_lots: self
                    .lots
                    .iter()
                    .filter(|l| l.remaining.get() > 0 && consuming.contains(&&l.card))
                    .cloned()
                    .collect(),
                spend_before: self
                    .cards
                    .iter()
                    .map(|(c, s)| (c.clone(), replay_spend(s)))
                    .collect(),
                rules: &self.rules,
                limits: &self.limits,
                now,
            });
            self.absorb(
                &plan.cards,
                &plan.new_lots,
                &plan.changed_lots,
                &plan.ledger,
            );
            self.flags.extend(plan.flags.iter().cloned());
            plan
        }

        pub fn absorb(
            &mut self,
            cards: &[CardPlan],
            new_lots: &[Lot],
            changed: &[Lot],
            ledger: &[LedgerRow],
        ) {
            for c in cards {
                self.cards.insert(c.state.card.clone(), c.state.clone());
            }
            for l in changed {
                let slot = self.lots.iter_mut().find(|x| x.key == l.key).unwrap();
                *slot = l.clone();
            }
            for l in new_lots {
                let mut l = l.clone();
                l.key = LotKey::Stored(self.next_id);
                self.next_id += 1;
                self.lots.push(l);
            }
            self.ledger.extend(ledger.iter().cloned());
        }

        pub fn card(&self, card: &str) -> &CardRecord {
            &self.cards[&CardId::parse(card).unwrap()]
        }

        /// Checks every per-card invariant `verify` checks.
        pub fn assert_consistent(&self) {
            for (id, c) in &self.cards {
                let rows = self.ledger.iter().filter(|r| &r.card == id);
                let (b, p) = rows.fold((0, 0), |(b, p), r| {
                    (b + r.delta_balance.get(), p + r.delta_pending.get())
                });
                let lots = self.lots.iter().filter(|l| &l.card == id);
                let all: i64 = lots.clone().map(|l| l.remaining.get()).sum();
                let pending: i64 = lots.filter(|l| !l.matured).map(|l| l.remaining.get()).sum();
                assert_eq!(c.balance.get(), b, "balance of {id}");
                assert_eq!(c.pending.get(), p, "pending of {id}");
                assert_eq!(c.pending.get(), pending, "pending lots of {id}");
                assert_eq!(c.balance.get().max(0), all, "lots of {id}");
            }
        }
    }

    #[test]
    fn the_first_sight_of_a_card_earns_the_welcome_bonus_once() {
        let mut r = Replay::new(rules(50));
        r.push(&[sale(1, CARD, 0, 5), sale(2, CARD, 0, 5)]);
        r.push(&[sale(3, CARD, 0, 5)]);
        let welcomes = r.ledger.iter().filter(|l| l.kind == LedgerKind::Welcome);
        assert_eq!(welcomes.clone().count(), 1);
        assert_eq!(welcomes.clone().next().unwrap().entry_id, None);
        assert_eq!(r.card(CARD).balance, Points(65));
        assert!(r.card(CARD).welcome_given);
        r.assert_consistent();
    }

    #[test]
    fn no_welcome_row_when_the_rules_grant_none() {
        let mut r = Replay::new(rules(0));
        r.push(&[sale(1, CARD, 0, 5)]);
        assert!(r.ledger.iter().all(|l| l.kind != LedgerKind::Welcome));
        assert!(!r.card(CARD).welcome_given);
    }

    #[test]
    fn a_standalone_welcome_entry_counts_as_the_welcome_and_a_second_is_flagged() {
        let mut r = Replay::new(rules(50));
        r.push(&[welcome(1, CARD, 20), sale(2, CARD, 0, 5)]);
        assert_eq!(r.card(CARD).balance, Points(25));
        r.push(&[welcome(3, CARD, 20)]);
        assert_eq!(r.card(CARD).balance, Points(25));
        assert_eq!(r.flags.len(), 1);
        assert_eq!(r.flags[0].kind, FlagKind::DuplicateWelcome);
        assert_eq!(r.flags[0].entry_id, entry_id(3));
        r.assert_consistent();
    }

    #[test]
    fn a_welcome_entry_after_hqs_own_welcome_is_a_duplicate() {
        let mut r = Replay::new(rules(50));
        r.push(&[sale(1, CARD, 0, 5), welcome(2, CARD, 20)]);
        assert_eq!(r.card(CARD).balance, Points(55));
        assert_eq!(r.flags[0].kind, FlagKind::DuplicateWelcome);
    }

    #[test]
    fn redemption_consumes_the_lot_that_expires_first() {
        let mut r = Replay::new(rules(0));
        r.push(&[sale(1, CARD, 0, 10)]);
        r.push(&[sale(2, CARD, 0, 10)]);
        r.push(&[sale(3, CARD, 15, 0)]);
        let left: Vec<i64> = r.lots.iter().map(|l| l.remaining.get()).collect();
        assert_eq!(left, vec![0, 5]);
        assert_eq!(r.card(CARD).balance, Points(5));
        r.assert_consistent();
    }

    #[test]
    fn an_overdraft_is_applied_flagged_and_repaid_by_the_next_lot() {
        let mut r = Replay::new(rules(0));
        r.push(&[sale(1, CARD, 0, 10), sale(2, CARD, 14, 0)]);
        assert_eq!(r.card(CARD).balance, Points(-4));
        assert_eq!(r.flags.len(), 1);
        assert_eq!(r.flags[0].kind, FlagKind::Overdraft);
        assert!(r.card(CARD).flags.contains(FlagKind::Overdraft));
        r.push(&[sale(3, CARD, 0, 10)]);
        assert_eq!(r.card(CARD).balance, Points(6));
        let new_lot = r.lots.last().unwrap();
        assert_eq!((new_lot.amount, new_lot.remaining), (Points(10), Points(6)));
        // Accrual that only reduces a debt is not another overdraft.
        r.push(&[sale(4, CARD, 16, 0), sale(5, CARD, 0, 3)]);
        assert_eq!(r.card(CARD).balance, Points(-7));
        assert_eq!(r.flags.len(), 2);
        r.assert_consistent();
    }

    #[test]
    fn redeeming_on_a_blocked_card_is_applied_and_flagged() {
        let mut r = Replay::new(rules(0));
        r.push(&[sale(1, CARD, 0, 10)]);
        r.cards
            .get_mut(&CardId::parse(CARD).unwrap())
            .unwrap()
            .blocked = true;
        r.push(&[sale(2, CARD, 4, 0), sale(3, CARD, 0, 2)]);
        assert_eq!(r.card(CARD).balance, Points(8));
        assert_eq!(r.flags.len(), 1);
        assert_eq!(r.flags[0].kind, FlagKind::BlockedCard);
        assert_eq!(r.flags[0].entry_id, entry_id(2));
    }

    #[test]
    fn consuming_pending_points_lowers_pending() {
        let mut r = Replay::new(rules(0));
        let later = T0 + Duration::days(10);
        r.push(&[sale(1, CARD, 0, 10)]);
        r.push(&[pending_sale(2, CARD, 20, later)]);
        assert_eq!(r.card(CARD).pending, Points(20));
        assert_eq!(r.card(CARD).available(), Points(10));
        r.push(&[sale(3, CARD, 15, 0)]);
        assert_eq!(r.card(CARD).balance, Points(15));
        assert_eq!(r.card(CARD).pending, Points(15));
        let redemption = r.ledger.last().unwrap();
        assert_eq!(redemption.kind, LedgerKind::Redemption);
        assert_eq!(redemption.delta_pending, Points(-5));
        r.assert_consistent();
    }

    #[test]
    fn a_return_reverses_from_its_own_sale_first_and_restores_a_new_lot() {
        let mut r = Replay::new(rules(0));
        r.push(&[sale(1, CARD, 0, 10), sale(2, CARD, 0, 10)]);
        r.push(&[return_of(3, CARD, 2, 4, 3)]);
        let left: Vec<i64> = r.lots.iter().map(|l| l.remaining.get()).collect();
        assert_eq!(left, vec![10, 6, 3]);
        assert_eq!(r.card(CARD).balance, Points(19));
        r.assert_consistent();
    }

    #[test]
    fn lots_expire_by_the_rules_version_the_entry_names() {
        let current = Arc::new(ProgramRules {
            version: 2,
            expiry_days: 30,
            ..ProgramRules::default()
        });
        let old = Arc::new(ProgramRules {
            version: 1,
            expiry_days: 10,
            ..ProgramRules::default()
        });
        let mut r = Replay::new(RulesBook::new(current, [old]));
        let mut e = sale(1, CARD, 0, 10);
        r.push(std::slice::from_ref(&e));
        e = sale(2, CARD, 0, 10);
        e.rules_version = 2;
        r.push(&[e]);
        assert_eq!(
            r.lots[0].expires_at,
            Some(sale(1, CARD, 0, 0).at + Duration::days(10))
        );
        assert_eq!(
            r.lots[1].expires_at,
            Some(sale(2, CARD, 0, 0).at + Duration::days(30))
        );
    }

    #[test]
    fn spend_over_the_window_sets_the_tier() {
        let mut r = Replay::new(rules(0));
        r.push(&[sale(1, CARD, 0, 5)]);
        assert_eq!(r.card(CARD).tier, None);
        r.push(&[sale(2, CARD, 0, 5)]);
        assert_eq!(r.card(CARD).spend_12m, Money(20_000));
        assert_eq!(r.card(CARD).tier.as_deref(), Some("silver"));
        let first = sale(1, CARD, 0, 0).at;
        assert_eq!(
            r.card(CARD).spend_drops_at,
            Some(first + Duration::days(365))
        );
        r.push(&[return_of(3, CARD, 2, 0, 0)]);
        assert_eq!(r.card(CARD).spend_12m, Money(15_000));
        assert_eq!(r.card(CARD).tier.as_deref(), Some("silver"));
    }

    /// Limits as wide as `i64`, to reach the arithmetic the ceilings keep HQ from.
    const UNBOUNDED: Limits = Limits {
        max_line_minor: Money(i64::MAX),
        max_receipt_minor: Money(i64::MAX),
        max_entry_points: Points(i64::MAX),
        max_card_balance_points: Points(i64::MAX),
    };

    #[test]
    fn an_entry_beyond_the_limits_is_quarantined_and_changes_nothing() {
        let mut r = Replay::new(rules(50));
        let plan = r.push(&[
            sale(1, CARD, 0, 5),
            sale(2, CARD, 0, Limits::CEILING.max_entry_points.get() + 1),
            sale(3, CARD, 0, 5),
        ]);
        assert_eq!(plan.quarantined.len(), 1);
        assert_eq!(plan.quarantined[0].seq, Seq(2));
        assert_eq!(
            plan.quarantined[0].kind,
            crate::ledger::quarantine::QuarantineKind::OutOfLimits
        );
        assert!(plan.quarantined[0].reason.contains("max_entry_points"));
        assert_eq!(r.card(CARD).balance, Points(60));
        r.assert_consistent();
    }

    #[test]
    fn an_entry_that_would_lift_a_balance_past_the_card_maximum_is_quarantined() {
        let mut r = Replay::new(rules(0));
        let most = Limits::CEILING.max_entry_points.get();
        let entries: Vec<JournalEntry> = (1..=11).map(|seq| sale(seq, CARD, 0, most)).collect();
        let plan = r.push(&entries);
        assert_eq!(plan.quarantined.len(), 1);
        assert_eq!(plan.quarantined[0].seq, Seq(11));
        assert!(
            plan.quarantined[0]
                .reason
                .contains("max_card_balance_points")
        );
        assert_eq!(
            r.card(CARD).balance,
            Limits::CEILING.max_card_balance_points
        );
        // Spending makes room again.
        r.push(&[sale(12, CARD, 1, 0), sale(13, CARD, 0, 1)]);
        assert_eq!(
            r.card(CARD).balance,
            Limits::CEILING.max_card_balance_points
        );
        r.assert_consistent();
    }

    #[test]
    fn an_entry_whose_sums_overflow_is_undone_whole_and_the_next_applies() {
        let mut r = Replay::new(rules(0));
        r.limits = UNBOUNDED;
        let later = T0 + Duration::days(10);
        r.push(&[
            sale(1, CARD, 0, 100),
            pending_sale(2, CARD, i64::MAX - 200, later),
        ]);
        // Redeems 50 (applied to the lots), then accrues past i64::MAX: all undone.
        let plan = r.push(&[sale(3, CARD, 50, i64::MAX), sale(4, CARD, 0, 7)]);
        assert_eq!(plan.quarantined.len(), 1);
        assert_eq!(plan.quarantined[0].seq, Seq(3));
        assert!(
            plan.quarantined[0]
                .reason
                .contains("balance would overflow")
        );
        assert_eq!(r.card(CARD).balance, Points(i64::MAX - 100 + 7));
        assert_eq!(r.card(CARD).pending, Points(i64::MAX - 200));
        assert!(r.ledger.iter().all(|l| l.entry_id != Some(entry_id(3))));
        let left: Vec<i64> = r.lots.iter().map(|l| l.remaining.get()).collect();
        assert_eq!(left, vec![100, i64::MAX - 200, 7]);
        r.assert_consistent();
    }

    #[test]
    fn anonymous_sales_touch_no_card() {
        let mut e = sale(1, CARD, 0, 5);
        if let EntryBody::Sale(s) = &mut e.body {
            s.card = None;
        }
        let mut r = Replay::new(rules(50));
        let plan = r.push(&[e]);
        assert!(plan.cards.is_empty() && plan.ledger.is_empty());
    }
}
