//! What `sync-server verify` proves: every cached card total equals what its ledger
//! rows and lots add up to, and every terminal's `acked_through` is the top of a
//! gap-free run of stored entries.
//!
//! The sums are 128-bit ([`WideSum`]): the database adds each column in two halves
//! that cannot overflow, so a card whose rows add up beyond 64 bits is named as a
//! difference like any other, instead of failing the whole run. A card row that no
//! longer reads is named too ([`Difference::Unreadable`]).

use super::CardRecord;
use protocol::CardId;
use std::fmt;

/// A sum of 64-bit values, exact whatever the values: 128 bits hold the sum of 2^64
/// of them.
pub type WideSum = i128;

/// A card as stored, with the sums recomputed from its ledger rows and lots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardAudit {
    /// The cached card row (`None`: ledger rows, lots or store memberships exist
    /// without a card row).
    pub card: CardId,
    /// The cached state, if a card row exists.
    pub cached: Option<CardRecord>,
    /// Σ ledger.delta_balance.
    pub ledger_balance: WideSum,
    /// Σ ledger.delta_pending.
    pub ledger_pending: WideSum,
    /// Σ remaining of lots not yet matured.
    pub unmatured_remaining: WideSum,
    /// Σ remaining of all lots.
    pub lots_remaining: WideSum,
    /// Σ points of the card's open reservations.
    pub open_reserved: WideSum,
    /// Σ points − charged of the card's open leases.
    pub open_leased: WideSum,
}

/// A terminal's acknowledgement with what its stored entries really are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalAudit {
    /// `store/terminal`.
    pub name: String,
    /// What the terminal row says.
    pub acked_through: u64,
    /// How many entries are stored.
    pub count: u64,
    /// Lowest stored `seq`.
    pub min_seq: Option<u64>,
    /// Highest stored `seq`.
    pub max_seq: Option<u64>,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// A card's cached value differs from its recomputation.
    Card {
        /// The card.
        card: CardId,
        /// Which value.
        what: &'static str,
        /// What is stored.
        stored: i64,
        /// What it should be (beyond 64 bits when the rows overflow a balance).
        recomputed: WideSum,
    },
    /// A card whose stored row or id does not read.
    Unreadable {
        /// The card as stored.
        card: String,
        /// Why it does not read.
        detail: String,
    },
    /// Ledger rows, lots or store memberships of a card HQ holds no row for.
    MissingCard {
        /// The card.
        card: CardId,
    },
    /// A terminal's entries are not a gap-free run up to `acked_through`.
    Terminal {
        /// `store/terminal`.
        name: String,
        /// What is wrong.
        detail: String,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Card {
                card,
                what,
                stored,
                recomputed,
            } => write!(
                f,
                "card {}: {what} is {stored}, recomputed {recomputed}",
                card.masked()
            ),
            Self::Unreadable { card, detail } => write!(
                f,
                "card {}: its row is unreadable: {detail}",
                protocol::ids::masked(card)
            ),
            Self::MissingCard { card } => write!(
                f,
                "card {}: ledger rows, lots or store memberships without a card row",
                card.masked()
            ),
            Self::Terminal { name, detail } => write!(f, "terminal {name}: {detail}"),
        }
    }
}

/// The differences of one card.
pub fn check_card(a: &CardAudit) -> Vec<Difference> {
    let Some(cached) = &a.cached else {
        return vec![Difference::MissingCard {
            card: a.card.clone(),
        }];
    };
    let mut out = Vec::new();
    let mut compare = |what: &'static str, stored: i64, recomputed: WideSum| {
        if WideSum::from(stored) != recomputed {
            out.push(Difference::Card {
                card: a.card.clone(),
                what,
                stored,
                recomputed,
            });
        }
    };
    compare(
        "balance (vs ledger)",
        cached.balance.get(),
        a.ledger_balance,
    );
    compare(
        "pending (vs ledger)",
        cached.pending.get(),
        a.ledger_pending,
    );
    compare(
        "pending (vs unmatured lots)",
        cached.pending.get(),
        a.unmatured_remaining,
    );
    compare(
        "max(balance, 0) (vs lots)",
        cached.balance.clamp_non_negative().get(),
        a.lots_remaining,
    );
    compare(
        "reserved (vs open reservations)",
        cached.reserved.get(),
        a.open_reserved,
    );
    compare(
        "leased (vs open leases)",
        cached.leased.get(),
        a.open_leased,
    );
    out
}

/// A card that has promised more than it holds: its open reservations and leases
/// exceed balance − pending. HQ never grants such a hold, so this follows only from
/// points that left the card while held (expiry, a return's reversal, an offline
/// redemption in caps mode): a warning for review, not a broken invariant.
pub fn overcommitted(a: &CardAudit) -> Option<String> {
    let cached = a.cached.as_ref()?;
    let promised = i128::from(cached.reserved.get()) + i128::from(cached.leased.get());
    let holds = i128::from(cached.balance.get()) - i128::from(cached.pending.get());
    (promised > 0 && promised > holds).then(|| {
        format!(
            "card {}: reserved {} + leased {} exceed balance {} - pending {}",
            a.card.masked(),
            cached.reserved,
            cached.leased,
            cached.balance,
            cached.pending
        )
    })
}

/// The differences of one terminal.
pub fn check_terminal(t: &TerminalAudit) -> Vec<Difference> {
    let bad = |detail: String| {
        vec![Difference::Terminal {
            name: t.name.clone(),
            detail,
        }]
    };
    match (t.min_seq, t.max_seq) {
        (None, _) | (_, None) if t.acked_through != 0 => bad(format!(
            "acked_through is {} but no entry is stored",
            t.acked_through
        )),
        (None, _) | (_, None) => Vec::new(),
        (Some(min), Some(max)) => {
            if min != 1 || t.count != max {
                bad(format!(
                    "stored seq {min}..={max} holds {} entries: the run has a gap",
                    t.count
                ))
            } else if t.acked_through != max {
                bad(format!(
                    "acked_through is {} but entries are stored through {max}",
                    t.acked_through
                ))
            } else {
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Points;

    fn audit(balance: i64, ledger: i64) -> CardAudit {
        let card = CardId::parse("4006381333931").unwrap();
        let mut cached = CardRecord::new(card.clone());
        cached.balance = Points(balance);
        CardAudit {
            card,
            cached: Some(cached),
            ledger_balance: ledger.into(),
            ledger_pending: 0,
            unmatured_remaining: 0,
            lots_remaining: ledger.max(0).into(),
            open_reserved: 0,
            open_leased: 0,
        }
    }

    #[test]
    fn cached_holds_are_compared_with_the_rows_and_overcommitment_is_a_warning() {
        let mut a = audit(10, 10);
        if let Some(c) = a.cached.as_mut() {
            c.reserved = Points(4);
            c.leased = Points(5);
        }
        a.open_reserved = 4;
        assert_eq!(check_card(&a).len(), 1);
        a.open_leased = 5;
        assert!(check_card(&a).is_empty());
        assert_eq!(overcommitted(&a), None);
        if let Some(c) = a.cached.as_mut() {
            c.balance = Points(8);
        }
        assert_eq!(
            overcommitted(&a).as_deref(),
            Some("card ****3931: reserved 4 + leased 5 exceed balance 8 - pending 0")
        );
    }

    #[test]
    fn a_consistent_card_has_no_difference_and_a_tampered_one_does() {
        assert!(check_card(&audit(5, 5)).is_empty());
        assert!(check_card(&audit(-3, -3)).is_empty());
        let diffs = check_card(&audit(6, 5));
        assert_eq!(diffs.len(), 2);
        assert!(
            diffs[0]
                .to_string()
                .contains("balance (vs ledger) is 6, recomputed 5")
        );
    }

    #[test]
    fn a_ledger_that_adds_up_beyond_64_bits_is_a_difference_not_a_failure() {
        let mut a = audit(i64::MAX, i64::MAX);
        a.ledger_balance = WideSum::from(i64::MAX) * 2;
        let diffs = check_card(&a);
        assert_eq!(diffs.len(), 1);
        assert!(
            diffs[0]
                .to_string()
                .contains("recomputed 18446744073709551614")
        );
    }

    #[test]
    fn terminals_must_hold_a_gap_free_run_up_to_their_ack() {
        let t = |acked, count, min, max| TerminalAudit {
            name: "s/t".into(),
            acked_through: acked,
            count,
            min_seq: min,
            max_seq: max,
        };
        assert!(check_terminal(&t(0, 0, None, None)).is_empty());
        assert!(check_terminal(&t(3, 3, Some(1), Some(3))).is_empty());
        assert_eq!(check_terminal(&t(3, 2, Some(1), Some(3))).len(), 1);
        assert_eq!(check_terminal(&t(2, 3, Some(1), Some(3))).len(), 1);
        assert_eq!(check_terminal(&t(1, 0, None, None)).len(), 1);
    }
}
