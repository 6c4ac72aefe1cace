//! HQ's ledger semantics as pure functions: which pushed entries are new, what each
//! one does to its card (ledger rows, lots, flags, welcome bonus, tier), what the
//! periodic job matures and expires, and what `verify` checks.
//!
//! Nothing here touches a database. A backend loads the rows a decision needs, calls
//! these functions, writes what they return and commits; so the SQLite backend and a
//! later PostgreSQL backend share every business rule.

pub mod apply;
pub mod batch;
pub mod escrow;
pub mod jobs;
pub mod kpi;
pub mod lots;
pub mod quarantine;
pub mod sequence;
pub mod verify;

use protocol::money::AmountError;
use protocol::rules::ProgramRules;
use protocol::{CardId, Money, Points};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Length of the rolling window over which tiers count spend.
pub const SPEND_WINDOW: Duration = Duration::days(365);

/// What a ledger row records. The text form is what the database stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerKind {
    /// Points accrued by a sale.
    Accrual,
    /// Points redeemed by a sale.
    Redemption,
    /// Redeemed points given back by a return.
    ReturnRestore,
    /// Accrued points taken back by a return.
    ReturnReversal,
    /// The welcome bonus (HQ's own, or a standalone till's welcome entry).
    Welcome,
    /// Pending points became spendable.
    Maturation,
    /// Unspent points expired.
    Expiry,
}

impl LedgerKind {
    /// Every kind, for parsing.
    pub const ALL: [Self; 7] = [
        Self::Accrual,
        Self::Redemption,
        Self::ReturnRestore,
        Self::ReturnReversal,
        Self::Welcome,
        Self::Maturation,
        Self::Expiry,
    ];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accrual => "accrual",
            Self::Redemption => "redemption",
            Self::ReturnRestore => "return_restore",
            Self::ReturnReversal => "return_reversal",
            Self::Welcome => "welcome",
            Self::Maturation => "maturation",
            Self::Expiry => "expiry",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for LedgerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule an applied entry broke. HQ applies such entries anyway (the sale happened at
/// the till) and flags them for review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlagKind {
    /// The entry redeemed points on a card HQ had blocked.
    BlockedCard,
    /// The card's balance went below zero with this entry.
    Overdraft,
    /// A welcome entry for a card that already got its welcome (applied with no effect).
    DuplicateWelcome,
}

impl FlagKind {
    /// Every kind, for parsing.
    pub const ALL: [Self; 3] = [Self::BlockedCard, Self::Overdraft, Self::DuplicateWelcome];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BlockedCard => "blocked_card",
            Self::Overdraft => "overdraft",
            Self::DuplicateWelcome => "duplicate_welcome",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    const fn bit(self) -> u32 {
        match self {
            Self::BlockedCard => 1,
            Self::Overdraft => 2,
            Self::DuplicateWelcome => 4,
        }
    }
}

impl fmt::Display for FlagKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of flag a card has ever collected, stored as a small bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlagSet(u32);

impl FlagSet {
    /// From the stored bits (unknown bits are kept, so a newer server's flags survive).
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The stored bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Adds a kind.
    pub fn insert(&mut self, kind: FlagKind) {
        self.0 |= kind.bit();
    }

    /// True when `kind` is in the set.
    pub const fn contains(self, kind: FlagKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The kinds in the set.
    pub fn kinds(self) -> impl Iterator<Item = FlagKind> {
        FlagKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

impl fmt::Display for FlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.kinds().map(FlagKind::as_str).collect();
        if names.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// What a journal entry is. The text form is what the database stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A sale (with or without a card).
    Sale,
    /// A return of some or all of a sale's lines.
    Return,
    /// A standalone till's welcome bonus.
    Welcome,
    /// A released reservation (a hold cancelled or timed out).
    Release,
    /// A lease the till closed.
    LeaseClosed,
}

impl EntryKind {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sale => "sale",
            Self::Return => "return",
            Self::Welcome => "welcome",
            Self::Release => "release",
            Self::LeaseClosed => "lease_closed",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why HQ refused a push as a whole, as `report anomalies` lists it. The text form
/// is what the database stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnomalyKind {
    /// The batch started after the next expected seq.
    Gap,
    /// A seq HQ holds came again with another id or content: the journal was
    /// rewound or rewritten.
    Rewind,
    /// An entry id HQ holds under another `(terminal, seq)`.
    IdReuse,
    /// The body named another store or terminal than the token.
    TerminalMismatch,
    /// A lease draw or close that does not add up (applied anyway).
    LeaseMismatch,
}

impl AnomalyKind {
    /// Every kind, for parsing.
    pub const ALL: [Self; 5] = [
        Self::Gap,
        Self::Rewind,
        Self::IdReuse,
        Self::TerminalMismatch,
        Self::LeaseMismatch,
    ];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Gap => "gap",
            Self::Rewind => "rewind",
            Self::IdReuse => "id_reuse",
            Self::TerminalMismatch => "terminal_mismatch",
            Self::LeaseMismatch => "lease_mismatch",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A card as HQ holds it: the cached totals the ledger rows add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRecord {
    /// The card.
    pub card: CardId,
    /// Every point the card holds, pending included; negative is debt.
    pub balance: Points,
    /// Points not yet spendable.
    pub pending: Points,
    /// Tier name, if any.
    pub tier: Option<String>,
    /// Spend over the rolling window, in minor units.
    pub spend_12m: Money,
    /// When the oldest entry counted in `spend_12m` leaves the window, so the job
    /// knows which cards' spend drops without rescanning every entry.
    pub spend_drops_at: Option<OffsetDateTime>,
    /// True once the welcome bonus was given (by HQ or by a standalone till).
    pub welcome_given: bool,
    /// True once an entry mentioned the card (a card blocked before any sale is not
    /// yet seen, so its first sale still earns the welcome bonus).
    pub seen: bool,
    /// Blocked by HQ.
    pub blocked: bool,
    /// Every kind of flag its entries collected.
    pub flags: FlagSet,
    /// Points held by open reservations, over all terminals.
    pub reserved: Points,
    /// Points in open leases not yet charged, over all terminals.
    pub leased: Points,
}

impl CardRecord {
    /// A card HQ has never held a row for.
    pub fn new(card: CardId) -> Self {
        Self {
            card,
            balance: Points::ZERO,
            pending: Points::ZERO,
            tier: None,
            spend_12m: Money::ZERO,
            spend_drops_at: None,
            welcome_given: false,
            seen: false,
            blocked: false,
            flags: FlagSet::default(),
            reserved: Points::ZERO,
            leased: Points::ZERO,
        }
    }

    /// Points spendable now anywhere: the balance less what is still pending, held
    /// by reservations or in leases, never below zero.
    pub fn available(&self) -> Points {
        escrow::figures(Some(self)).spendable()
    }
}

/// Where a lot's points came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LotKind {
    /// Accrued by a sale.
    Accrual,
    /// A welcome bonus.
    Welcome,
    /// Redeemed points given back by a return.
    Restore,
}

impl LotKind {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accrual => "accrual",
            Self::Welcome => "welcome",
            Self::Restore => "restore",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Accrual, Self::Welcome, Self::Restore]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Identifies a lot: one the database holds, or one this plan creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LotKey {
    /// The database row id.
    Stored(i64),
    /// Index into the plan's new lots.
    New(usize),
}

/// A parcel of points with its own maturity and expiry, so that pending points and
/// oldest-first expiry can be computed exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lot {
    /// Which lot.
    pub key: LotKey,
    /// Its card.
    pub card: CardId,
    /// Where it came from.
    pub kind: LotKind,
    /// The entry that created it; `None` for HQ's own welcome bonus.
    pub source_entry: Option<Uuid>,
    /// When the points were earned (the entry's time).
    pub earned_at: OffsetDateTime,
    /// When they become spendable; `None`: at once.
    pub matures_at: Option<OffsetDateTime>,
    /// True once spendable.
    pub matured: bool,
    /// When what is left of it expires; `None`: never.
    pub expires_at: Option<OffsetDateTime>,
    /// Points it was created with.
    pub amount: Points,
    /// Points not yet consumed, expired or used to pay debt.
    pub remaining: Points,
}

/// One append-only ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// The card.
    pub card: CardId,
    /// What happened.
    pub kind: LedgerKind,
    /// Change of the balance.
    pub delta_balance: Points,
    /// Change of the pending points.
    pub delta_pending: Points,
    /// When (the entry's time, or the job's time for maturation and expiry).
    pub at: OffsetDateTime,
    /// The entry that caused it; `None` for rows HQ generated itself.
    pub entry_id: Option<Uuid>,
}

/// A flagged entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRow {
    /// The entry.
    pub entry_id: Uuid,
    /// Its card.
    pub card: CardId,
    /// The broken rule.
    pub kind: FlagKind,
    /// Human-readable context (balance after, points redeemed, …).
    pub detail: String,
}

/// The program rules a decision may need: the current version and the versions that
/// pushed entries name (an entry's lots expire by the rules it was made under).
#[derive(Debug, Clone)]
pub struct RulesBook {
    current: Arc<ProgramRules>,
    versions: HashMap<u64, Arc<ProgramRules>>,
}

impl RulesBook {
    /// A book holding the current rules and any older versions.
    pub fn new(
        current: Arc<ProgramRules>,
        versions: impl IntoIterator<Item = Arc<ProgramRules>>,
    ) -> Self {
        let mut map: HashMap<u64, Arc<ProgramRules>> =
            versions.into_iter().map(|r| (r.version, r)).collect();
        map.insert(current.version, Arc::clone(&current));
        Self {
            current,
            versions: map,
        }
    }

    /// The current rules.
    pub fn current(&self) -> &ProgramRules {
        &self.current
    }

    /// The rules of `version`, or the current rules when HQ does not know that
    /// version (a standalone till's local rules are version 0).
    pub fn for_version(&self, version: u64) -> &ProgramRules {
        self.versions.get(&version).map_or(&self.current, |r| r)
    }
}

/// When points earned at `earned_at` under `rules` expire.
pub fn expiry_of(rules: &ProgramRules, earned_at: OffsetDateTime) -> Option<OffsetDateTime> {
    if rules.expiry_days == 0 {
        None
    } else {
        earned_at.checked_add(Duration::days(i64::from(rules.expiry_days)))
    }
}

/// The start of the spend window that ends at `now`. The window excludes its start:
/// an entry counts while `at > now - 365 days`, so it stops counting exactly at
/// [`Spend::drops_at`].
pub fn spend_window_start(now: OffsetDateTime) -> OffsetDateTime {
    now.checked_sub(SPEND_WINDOW)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A card's spend over the window: the sum, and the time of the oldest entry in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spend {
    /// Σ paid on sales − Σ refunded on returns, in minor units.
    pub total: Money,
    /// The oldest entry counted (`None`: none).
    pub earliest: Option<OffsetDateTime>,
}

impl Spend {
    /// Counts one more entry of `at` and `amount`; on overflow nothing is counted.
    pub fn add(&mut self, at: OffsetDateTime, amount: Money) -> Result<(), AmountError> {
        self.total = self.total.checked_add(amount)?;
        self.earliest = Some(self.earliest.map_or(at, |e| e.min(at)));
        Ok(())
    }

    /// When the oldest counted entry leaves the window (and the spend may drop).
    pub fn drops_at(&self) -> Option<OffsetDateTime> {
        self.earliest.and_then(|e| e.checked_add(SPEND_WINDOW))
    }
}

/// The spend of each of `cards` over the window ending at `now` that its cached
/// `spend_12m` gives exactly, and the cards whose spend must be summed from their
/// entries instead.
///
/// A cached spend is exact until the card's `spend_drops_at`: until then no entry it
/// counts has left the window, and an entry outside the window when it was applied
/// never enters it again. (The ledger job relies on the same fact to recompute only
/// the cards whose moment has come.)
pub fn cached_spend(
    cards: &HashMap<CardId, CardRecord>,
    now: OffsetDateTime,
) -> (HashMap<CardId, Spend>, Vec<&CardId>) {
    let mut spend = HashMap::with_capacity(cards.len());
    let mut stale = Vec::new();
    for (id, card) in cards {
        match card.spend_drops_at {
            Some(drops) if drops <= now => stale.push(id),
            drops => {
                let earliest = drops.and_then(|d| d.checked_sub(SPEND_WINDOW));
                spend.insert(
                    id.clone(),
                    Spend {
                        total: card.spend_12m,
                        earliest,
                    },
                );
            }
        }
    }
    (spend, stale)
}

/// The tier name of a card with `spend` in the window.
pub fn tier_name(rules: &ProgramRules, spend: Money) -> Option<String> {
    rules.tier_for_spend(spend).map(|t| t.name.clone())
}

/// Why `rules set` refused a version number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("version {requested} is not newer than current {current}")]
pub struct RulesVersionError {
    /// The version in the file.
    pub requested: u64,
    /// HQ's current version.
    pub current: u64,
}

/// The version a newly set rules file gets: the file's own when it is newer than
/// `current`; `current + 1` when the file says 0 ("next") or the current version
/// itself (the file `rules show` printed, edited: it becomes the next version). An
/// older version is refused: it is most likely an old file.
pub fn next_rules_version(current: u64, requested: u64) -> Result<u64, RulesVersionError> {
    if requested == 0 || requested == current {
        Ok(current.saturating_add(1))
    } else if requested > current {
        Ok(requested)
    } else {
        Err(RulesVersionError { requested, current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_zero_or_the_current_one_means_next_and_older_versions_are_refused() {
        assert_eq!(next_rules_version(4, 0), Ok(5));
        assert_eq!(next_rules_version(4, 9), Ok(9));
        assert_eq!(next_rules_version(4, 4), Ok(5));
        assert_eq!(
            next_rules_version(4, 3).unwrap_err().to_string(),
            "version 3 is not newer than current 4"
        );
    }

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        for k in LedgerKind::ALL {
            assert_eq!(LedgerKind::parse(k.as_str()), Some(k));
        }
        for k in FlagKind::ALL {
            assert_eq!(FlagKind::parse(k.as_str()), Some(k));
        }
        for k in AnomalyKind::ALL {
            assert_eq!(AnomalyKind::parse(k.as_str()), Some(k));
        }
        let mut set = FlagSet::default();
        set.insert(FlagKind::Overdraft);
        set.insert(FlagKind::BlockedCard);
        assert_eq!(set.to_string(), "blocked_card,overdraft");
    }

    #[test]
    fn unknown_rules_versions_fall_back_to_the_current_rules() {
        let current = Arc::new(ProgramRules {
            version: 7,
            expiry_days: 100,
            ..ProgramRules::default()
        });
        let old = Arc::new(ProgramRules {
            version: 3,
            expiry_days: 30,
            ..ProgramRules::default()
        });
        let book = RulesBook::new(current, [old]);
        assert_eq!(book.for_version(3).expiry_days, 30);
        assert_eq!(book.for_version(0).expiry_days, 100);
        assert_eq!(book.for_version(7).expiry_days, 100);
    }
}
