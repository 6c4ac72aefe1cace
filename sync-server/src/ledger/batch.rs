//! A pushed batch, checked once at the edge: consecutive `seq` numbers, no repeated
//! entry id, no negative amounts. The rest of the server only sees a [`Batch`].

use protocol::Points;
use protocol::journal::{EntryBody, JournalEntry};
use protocol::wire::PushRequest;
use protocol::{Seq, StoreId, TerminalId};
use std::collections::HashSet;
use uuid::Uuid;

/// Why a batch is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Sequence numbers start at 1 and fit the database's 63 bits.
    #[error("entry {index}: seq {seq} is out of range (1 to 2^63-1)")]
    SeqOutOfRange {
        /// Position in the batch.
        index: usize,
        /// The number.
        seq: Seq,
    },
    /// The batch must hold consecutive numbers.
    #[error("entry {index}: seq {got} does not follow {previous}")]
    NotConsecutive {
        /// Position in the batch.
        index: usize,
        /// The previous entry's number.
        previous: Seq,
        /// This entry's number.
        got: Seq,
    },
    /// The same id twice in one batch.
    #[error("entry id {id} appears twice in the batch (seq {first} and {second})")]
    RepeatedId {
        /// The id.
        id: Uuid,
        /// First use.
        first: Seq,
        /// Second use.
        second: Seq,
    },
    /// Points are never negative inside an entry; its kind says the direction.
    #[error("entry seq {seq}: {field} must not be negative")]
    NegativeAmount {
        /// The entry.
        seq: Seq,
        /// Which amount.
        field: &'static str,
    },
}

/// Entries of one terminal, consecutive and well-formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    entries: Vec<JournalEntry>,
}

impl Batch {
    /// Checks a batch.
    pub fn new(entries: Vec<JournalEntry>) -> Result<Self, BatchError> {
        let mut ids = std::collections::HashMap::with_capacity(entries.len());
        for (index, e) in entries.iter().enumerate() {
            if e.seq.get() == 0 || i64::try_from(e.seq.get()).is_err() {
                return Err(BatchError::SeqOutOfRange { index, seq: e.seq });
            }
            if index > 0 {
                let previous = entries[index - 1].seq;
                if e.seq.get() != previous.get().saturating_add(1) {
                    return Err(BatchError::NotConsecutive {
                        index,
                        previous,
                        got: e.seq,
                    });
                }
            }
            if let Some(first) = ids.insert(e.id, e.seq) {
                return Err(BatchError::RepeatedId {
                    id: e.id,
                    first,
                    second: e.seq,
                });
            }
            check_amounts(e)?;
        }
        Ok(Self { entries })
    }

    /// The entries, in `seq` order.
    pub fn entries(&self) -> &[JournalEntry] {
        &self.entries
    }

    /// True for an empty batch (a probe for `acked_through`).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first and last `seq`, if any.
    pub fn seq_range(&self) -> Option<(Seq, Seq)> {
        Some((self.entries.first()?.seq, self.entries.last()?.seq))
    }

    /// The distinct rules versions the entries name.
    pub fn rules_versions(&self) -> HashSet<u64> {
        self.entries.iter().map(|e| e.rules_version).collect()
    }
}

fn check_amounts(e: &JournalEntry) -> Result<(), BatchError> {
    let negative = |field: &'static str, p: Points| {
        if p.is_negative() {
            Err(BatchError::NegativeAmount { seq: e.seq, field })
        } else {
            Ok(())
        }
    };
    match &e.body {
        EntryBody::Sale(s) => {
            negative("sale.accrued_points", s.sale.accrued_points)?;
            negative("sale.redeemed_points", s.sale.redeemed_points)?;
            if s.sale.paid_minor.is_negative() {
                return Err(BatchError::NegativeAmount {
                    seq: e.seq,
                    field: "sale.paid_minor",
                });
            }
        }
        EntryBody::Return(r) => {
            negative(
                "returned.reversed_accrual_points",
                r.returned.reversed_accrual_points,
            )?;
            negative("returned.restored_points", r.returned.restored_points)?;
            if r.returned.refund_minor.is_negative() {
                return Err(BatchError::NegativeAmount {
                    seq: e.seq,
                    field: "returned.refund_minor",
                });
            }
        }
        EntryBody::Welcome(w) => negative("points", w.points)?,
        EntryBody::Release(r) => negative("release.points", r.points)?,
        EntryBody::LeaseClosed(l) => negative("lease_closed.spent", l.spent)?,
    }
    Ok(())
}

/// The claimed identity of a push differs from its token's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the token belongs to {token_store}/{token_terminal}, the body claims {claimed_store}/{claimed_terminal}"
)]
pub struct IdentityMismatch {
    /// From the token.
    pub token_store: StoreId,
    /// From the token.
    pub token_terminal: TerminalId,
    /// From the body.
    pub claimed_store: StoreId,
    /// From the body.
    pub claimed_terminal: TerminalId,
}

/// Checks that a push body names the terminal its token belongs to.
pub fn check_identity(
    request: &PushRequest,
    store: &StoreId,
    terminal: &TerminalId,
) -> Result<(), IdentityMismatch> {
    if &request.store_id == store && &request.terminal_id == terminal {
        Ok(())
    } else {
        Err(IdentityMismatch {
            token_store: store.clone(),
            token_terminal: terminal.clone(),
            claimed_store: request.store_id.clone(),
            claimed_terminal: request.terminal_id.clone(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ledger::apply::tests::{sale, welcome};

    #[test]
    fn consecutive_batches_are_accepted_and_empty_is_a_probe() {
        let b = Batch::new(vec![
            sale(3, "4006381333931", 0, 5),
            sale(4, "4006381333931", 0, 5),
        ])
        .unwrap();
        assert_eq!(b.seq_range(), Some((Seq(3), Seq(4))));
        assert!(Batch::new(vec![]).unwrap().is_empty());
    }

    #[test]
    fn holes_zero_seq_and_repeated_ids_are_refused() {
        let err = Batch::new(vec![
            sale(3, "4006381333931", 0, 5),
            sale(5, "4006381333931", 0, 5),
        ])
        .unwrap_err();
        assert!(matches!(err, BatchError::NotConsecutive { index: 1, .. }));
        assert!(matches!(
            Batch::new(vec![sale(0, "4006381333931", 0, 5)]).unwrap_err(),
            BatchError::SeqOutOfRange { .. }
        ));
        let mut twice = sale(2, "4006381333931", 0, 5);
        twice.id = sale(1, "4006381333931", 0, 5).id;
        assert!(matches!(
            Batch::new(vec![sale(1, "4006381333931", 0, 5), twice]).unwrap_err(),
            BatchError::RepeatedId { .. }
        ));
    }

    #[test]
    fn negative_points_are_malformed() {
        let e = welcome(1, "4006381333931", -5);
        assert!(matches!(
            Batch::new(vec![e]).unwrap_err(),
            BatchError::NegativeAmount {
                field: "points",
                ..
            }
        ));
    }
}
