//! Exactly-once: which entries of a batch HQ already holds, which are new, and when a
//! batch must be refused because the terminal's sequence went wrong (gap, rewind).

use super::AnomalyKind;
use super::batch::Batch;
use protocol::Seq;
use protocol::journal::JournalEntry;
use std::collections::HashMap;
use uuid::Uuid;

/// What HQ holds for one `(terminal, seq)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The entry id.
    pub id: Uuid,
    /// [`JournalEntry::content_hash_hex`] of what was stored.
    pub content_hash: String,
}

/// Why a push is refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The batch starts after the next expected number.
    #[error("seq gap: HQ holds through {acked_through}, the batch starts at {first}")]
    Gap {
        /// What HQ holds.
        acked_through: Seq,
        /// Where the batch starts.
        first: Seq,
    },
    /// A number HQ already holds arrives with another id or another content: the
    /// terminal rewound or rewrote its journal.
    #[error("seq conflict at seq {seq}: {detail}")]
    Conflict {
        /// The number.
        seq: Seq,
        /// What differs.
        detail: String,
        /// What HQ holds.
        acked_through: Seq,
    },
    /// An entry id HQ already holds under another `(terminal, seq)`.
    #[error("entry id {id} is already used by {owner}")]
    IdConflict {
        /// The id.
        id: Uuid,
        /// Who holds it (`store/terminal seq N`), as far as known.
        owner: String,
        /// What HQ holds for the pushing terminal.
        acked_through: Seq,
    },
}

impl Refusal {
    /// The anomaly it is, as `report anomalies` shows it.
    pub fn anomaly_kind(&self) -> AnomalyKind {
        match self {
            Self::Gap { .. } => AnomalyKind::Gap,
            Self::Conflict { .. } => AnomalyKind::Rewind,
            Self::IdConflict { .. } => AnomalyKind::IdReuse,
        }
    }

    /// What HQ holds for the pushing terminal.
    pub fn acked_through(&self) -> Seq {
        match self {
            Self::Gap { acked_through, .. }
            | Self::Conflict { acked_through, .. }
            | Self::IdConflict { acked_through, .. } => *acked_through,
        }
    }
}

/// The verdict on a batch HQ may apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    /// Entries HQ already holds unchanged.
    pub duplicates: u32,
    /// Index of the first new entry in the batch (the batch length when none is new).
    pub new_from: usize,
}

impl Classified {
    /// The entries to apply.
    pub fn new_entries<'b>(&self, batch: &'b Batch) -> &'b [JournalEntry] {
        &batch.entries()[self.new_from..]
    }
}

/// The `seq` range of `batch` that HQ already holds, given `acked_through`: the
/// backend loads these rows and passes them to [`classify`].
pub fn held_range(batch: &Batch, acked_through: Seq) -> Option<(Seq, Seq)> {
    let (first, last) = batch.seq_range()?;
    let upto = last.min(acked_through);
    (first <= upto).then_some((first, upto))
}

/// Splits a batch into duplicates and new entries, or refuses it. `held` maps the
/// numbers in [`held_range`] to what HQ stored for them.
pub fn classify(
    batch: &Batch,
    acked_through: Seq,
    held: &HashMap<u64, StoredEntry>,
) -> Result<Classified, Refusal> {
    let Some((first, _)) = batch.seq_range() else {
        return Ok(Classified {
            duplicates: 0,
            new_from: 0,
        });
    };
    if first.get() > acked_through.get().saturating_add(1) {
        return Err(Refusal::Gap {
            acked_through,
            first,
        });
    }
    let mut duplicates = 0u32;
    let mut new_from = batch.entries().len();
    for (i, entry) in batch.entries().iter().enumerate() {
        if entry.seq > acked_through {
            new_from = i;
            break;
        }
        let conflict = |detail: String| Refusal::Conflict {
            seq: entry.seq,
            detail,
            acked_through,
        };
        let stored = held
            .get(&entry.seq.get())
            .ok_or_else(|| conflict("HQ acknowledged it but holds no entry".to_owned()))?;
        if stored.id != entry.id {
            return Err(conflict(format!(
                "HQ holds entry {} there, the batch sends {}",
                stored.id, entry.id
            )));
        }
        if stored.content_hash != entry.content_hash_hex() {
            return Err(conflict(format!(
                "entry {} arrives with a different content",
                entry.id
            )));
        }
        duplicates += 1;
    }
    Ok(Classified {
        duplicates,
        new_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::apply::tests::sale;

    fn held_of(entries: &[JournalEntry]) -> HashMap<u64, StoredEntry> {
        entries
            .iter()
            .map(|e| {
                (
                    e.seq.get(),
                    StoredEntry {
                        id: e.id,
                        content_hash: e.content_hash_hex(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn an_overlapping_batch_counts_held_entries_as_duplicates() {
        let entries: Vec<_> = (1..=4).map(|s| sale(s, "4006381333931", 0, 5)).collect();
        let held = held_of(&entries[..2]);
        let batch = Batch::new(entries).unwrap();
        assert_eq!(held_range(&batch, Seq(2)), Some((Seq(1), Seq(2))));
        let c = classify(&batch, Seq(2), &held).unwrap();
        assert_eq!(c.duplicates, 2);
        assert_eq!(c.new_entries(&batch).len(), 2);
    }

    #[test]
    fn a_batch_after_the_next_number_is_a_gap() {
        let batch = Batch::new(vec![sale(5, "4006381333931", 0, 5)]).unwrap();
        assert_eq!(
            classify(&batch, Seq(3), &HashMap::new()),
            Err(Refusal::Gap {
                acked_through: Seq(3),
                first: Seq(5)
            })
        );
    }

    #[test]
    fn a_held_number_with_other_content_is_a_rewind() {
        let original = sale(1, "4006381333931", 0, 5);
        let held = held_of(std::slice::from_ref(&original));
        let mut changed = original.clone();
        changed.rules_version += 1;
        let err = classify(&Batch::new(vec![changed]).unwrap(), Seq(1), &held).unwrap_err();
        assert!(matches!(err, Refusal::Conflict { seq: Seq(1), .. }));
        assert_eq!(err.anomaly_kind().as_str(), "rewind");
        let mut other_id = original;
        other_id.id = Uuid::from_u128(999);
        let err = classify(&Batch::new(vec![other_id]).unwrap(), Seq(1), &held).unwrap_err();
        assert!(err.to_string().contains("HQ holds entry"));
    }
}
