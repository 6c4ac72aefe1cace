//! History import: a chain moving to this product brings its members' past purchases
//! and opening balances (`sync-server import purchases|balances FILE`).
//!
//! The file is parsed and checked whole first ([`rows`]); a bad row refuses the file
//! and nothing is written. Rows become journal entries ([`entries`]) with ids derived
//! from the rows, the ones HQ already holds are skipped (so the import is
//! idempotent), and the rest are pushed, oldest first, through the ordinary push flow
//! under each store's `import` terminal, in batches: the ledger, `verify` and the
//! reports treat them exactly like entries from a till.

pub mod entries;
pub mod rows;

use crate::keys::{RandomError, TerminalToken};
use crate::ledger::batch::{Batch, BatchError};
use crate::store::{Store, StoreError, TerminalIdentity};
use entries::{IMPORT_TERMINAL, Pending};
use protocol::journal::JournalEntry;
use protocol::{Seq, StoreId, TerminalId};
use rows::RowsError;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use time::OffsetDateTime;

/// Entries per push: big enough to amortise a transaction, small enough that each
/// commit is quick and the progress line moves.
const BATCH: usize = 2_000;

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The file is malformed; nothing was written.
    #[error("{path}: {source}")]
    Rows {
        /// The file.
        path: String,
        /// What is wrong, with line numbers.
        source: RowsError,
    },
    /// The store failed or refused a batch (the batches before it are committed; a
    /// rerun skips them).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A batch the import built is malformed (a bug, not bad input).
    #[error("building a batch: {0}")]
    Batch(#[from] BatchError),
    /// No randomness for the import terminal's token.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Writing the progress or the summary failed.
    #[error("writing output: {0}")]
    Io(#[from] io::Error),
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Rows in the file.
    pub rows: usize,
    /// Entries written now.
    pub written: usize,
    /// Rows HQ already held (an earlier import of the same row).
    pub already_held: usize,
}

/// `import purchases FILE`.
pub async fn purchases(
    store: &dyn Store,
    file: &Path,
    default_store: &StoreId,
    now: OffsetDateTime,
    progress: &mut dyn Write,
) -> Result<ImportSummary, ImportError> {
    let parsed = rows::purchases(open(file)?).map_err(|source| rows_error(file, source))?;
    let version = store.health().await?;
    let pending = parsed
        .iter()
        .map(|row| entries::purchase(row, default_store, version))
        .collect();
    write(store, pending, now, progress).await
}

/// `import balances FILE`.
pub async fn balances(
    store: &dyn Store,
    file: &Path,
    default_store: &StoreId,
    now: OffsetDateTime,
    progress: &mut dyn Write,
) -> Result<ImportSummary, ImportError> {
    let parsed = rows::balances(open(file)?).map_err(|source| rows_error(file, source))?;
    let version = store.health().await?;
    let pending = parsed
        .iter()
        .map(|row| entries::opening_balance(row, default_store, now, version))
        .collect();
    write(store, pending, now, progress).await
}

fn open(file: &Path) -> Result<io::BufReader<std::fs::File>, ImportError> {
    std::fs::File::open(file)
        .map(io::BufReader::new)
        .map_err(|source| ImportError::Read {
            path: file.display().to_string(),
            source,
        })
}

fn rows_error(file: &Path, source: RowsError) -> ImportError {
    ImportError::Rows {
        path: file.display().to_string(),
        source,
    }
}

/// Skips what HQ holds, then pushes the rest per store, oldest first.
async fn write(
    store: &dyn Store,
    pending: Vec<Pending>,
    now: OffsetDateTime,
    progress: &mut dyn Write,
) -> Result<ImportSummary, ImportError> {
    let rows = pending.len();
    let held = store
        .held_entry_ids(pending.iter().map(|p| p.entry.id).collect())
        .await?;
    let mut by_store: BTreeMap<StoreId, Vec<JournalEntry>> = BTreeMap::new();
    for p in pending {
        if !held.contains(&p.entry.id) {
            by_store.entry(p.store).or_default().push(p.entry);
        }
    }
    let to_write: usize = by_store.values().map(Vec::len).sum();
    let mut summary = ImportSummary {
        rows,
        written: 0,
        already_held: rows - to_write,
    };
    writeln!(
        progress,
        "import: {rows} rows, {} already held, {to_write} to write",
        summary.already_held
    )?;
    for (store_id, mut entries) in by_store {
        // Oldest first, so lots, expiry and tier spend follow the history's order.
        entries.sort_by_key(|e| e.at);
        let (terminal, acked) = import_terminal(store, &store_id, now).await?;
        let mut seq = acked;
        for chunk in entries.chunks(BATCH) {
            let numbered = chunk
                .iter()
                .map(|e| {
                    seq = seq.next();
                    JournalEntry { seq, ..e.clone() }
                })
                .collect();
            store.push(&terminal, Batch::new(numbered)?, now).await?;
            summary.written += chunk.len();
            writeln!(
                progress,
                "import: {}/{to_write} written ({store_id})",
                summary.written
            )?;
        }
    }
    Ok(summary)
}

/// The store's import terminal with a fresh token (never shown: only this process
/// pushes under it), and the highest seq HQ holds for it.
async fn import_terminal(
    store: &dyn Store,
    store_id: &StoreId,
    now: OffsetDateTime,
) -> Result<(TerminalIdentity, Seq), ImportError> {
    let terminal = TerminalId::parse(IMPORT_TERMINAL).expect("a valid constant terminal id");
    let token = TerminalToken::generate()?;
    store
        .add_terminal(store_id, &terminal, &token.hash(), true, now)
        .await?;
    let identity = store
        .authenticate(&token.hash())
        .await?
        .ok_or_else(|| StoreError::corrupt("the import terminal vanished"))?;
    let acked = store
        .list_terminals()
        .await?
        .into_iter()
        .find(|t| t.store == *store_id && t.terminal == terminal)
        .map(|t| t.acked_through)
        .ok_or_else(|| StoreError::corrupt("the import terminal vanished"))?;
    Ok((identity, acked))
}
