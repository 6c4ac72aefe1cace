//! Where a sale stands. A sale is opened `Held` (its points reserved), then either
//! `Committed` (its journal entry written) or `Cancelled` (by the till, or by the hold
//! timeout); a committed sale whose every unit came back is `Returned`.
//!
//! The text of each state (journal column, JSON answers, metrics) is written once, in
//! the journal's schema mapping (`crate::journal::sales`).

use serde::{Serialize, Serializer};

/// Where a sale stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleState {
    /// Opened; its points are reserved until it is committed or cancelled.
    Held,
    /// Captured: the sale's journal entry is written.
    Committed,
    /// Released without an entry.
    Cancelled(CancelReason),
    /// Committed, then every unit returned.
    Returned,
}

/// Who released a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The till cancelled the sale.
    Till,
    /// The till never committed it within `[till_api] hold_timeout_secs`.
    HoldTimeout,
}

impl SaleState {
    /// True once the sale's journal entry is written (returns included).
    pub fn is_committed(self) -> bool {
        matches!(self, Self::Committed | Self::Returned)
    }
}

impl std::fmt::Display for SaleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SaleState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}
