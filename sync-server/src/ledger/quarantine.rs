//! Entries HQ cannot apply, and why.
//!
//! A till's journal is append-only and its `seq` gap-free, so an entry HQ cannot apply
//! must not stop the entries behind it: it is stored and acknowledged like any other
//! (the sequence stays contiguous, exactly-once still holds), but nothing of it reaches
//! a balance, a lot, a ledger row or a card's spend. It is recorded with its reason
//! instead, listed by `sync-server report quarantine`, and applied later by
//! `sync-server quarantine retry ID` once the cause is fixed.

use protocol::journal::JournalEntry;
use protocol::{CardId, Seq};
use std::fmt;
use uuid::Uuid;

/// Why HQ cannot apply an entry. The text form of the kind is what the database
/// stores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unappliable {
    /// A sum on the entry's card would not fit in 64 bits (its balance, its pending
    /// points, its spend over the window).
    #[error("{0} would overflow")]
    Overflow(&'static str),
    /// A figure of the entry is beyond what the protocol's limits allow.
    #[error("{0}")]
    OutOfLimits(String),
    /// Applying the entry failed inside HQ (a stored row it needs is unreadable, the
    /// database refused a write); the message names what failed.
    #[error("{0}")]
    Internal(String),
}

/// The kinds of [`Unappliable`], as stored and listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuarantineKind {
    /// See [`Unappliable::Overflow`].
    Overflow,
    /// See [`Unappliable::OutOfLimits`].
    OutOfLimits,
    /// See [`Unappliable::Internal`].
    Internal,
}

impl QuarantineKind {
    /// Every kind, for parsing.
    pub const ALL: [Self; 3] = [Self::Overflow, Self::OutOfLimits, Self::Internal];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Overflow => "overflow",
            Self::OutOfLimits => "out_of_limits",
            Self::Internal => "internal",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for QuarantineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Unappliable {
    /// Its kind.
    pub const fn kind(&self) -> QuarantineKind {
        match self {
            Self::Overflow(_) => QuarantineKind::Overflow,
            Self::OutOfLimits(_) => QuarantineKind::OutOfLimits,
            Self::Internal(_) => QuarantineKind::Internal,
        }
    }
}

/// An entry a push stores without applying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRow {
    /// The entry.
    pub entry_id: Uuid,
    /// Its number at its terminal.
    pub seq: Seq,
    /// Its card (`None`: an anonymous sale).
    pub card: Option<CardId>,
    /// What kind of reason.
    pub kind: QuarantineKind,
    /// The reason, for the operator (never a full card number: HQ's reports name the
    /// card in their own column).
    pub reason: String,
}

impl QuarantineRow {
    /// The row for an entry HQ cannot apply because of `why`.
    pub fn new(entry: &JournalEntry, why: &Unappliable) -> Self {
        Self {
            entry_id: entry.id,
            seq: entry.seq,
            card: entry.card().cloned(),
            kind: why.kind(),
            reason: why.to_string(),
        }
    }
}

/// What `quarantine retry` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The entry is applied now.
    Applied,
    /// A retry applied it before; nothing was done again.
    AlreadyApplied,
    /// It still cannot be applied (why); nothing was applied.
    StillQuarantined(String),
}

impl fmt::Display for RetryOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Applied => f.write_str("applied"),
            Self::AlreadyApplied => f.write_str("already applied by an earlier retry"),
            Self::StillQuarantined(why) => write!(f, "still quarantined: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        for k in QuarantineKind::ALL {
            assert_eq!(QuarantineKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(
            Unappliable::Overflow("the card's balance").to_string(),
            "the card's balance would overflow"
        );
    }
}
