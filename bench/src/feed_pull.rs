//! A quiet store's pull while the rest of the chain changes cards: the balance feed
//! at chain scale (`feed_quiet_pull_*`).
//!
//! Every till pulls its store's feed every few seconds (`sync.interval_secs`), so
//! what one pull reads is multiplied by every till of the chain. Store `store-q`
//! (one till, 50 members) has pulled to the head; then another store changes
//! `behind` cards of its own (the rest of the chain, pushed in batches of 500) and
//! `store-q` changes 10 of its members. The measured pull is `store-q`'s from its
//! cursor: it must answer those 10 cards. Beside it, the limit: the same till's pull
//! from the head, which answers nothing (rules, keys and `acked_through` only). A
//! feed that reads the chain's changes to find the store's costs in proportion to
//! `behind`; one that reads the store's own positions costs about the empty pull.
//!
//! Measured through the store (the library `sync-server` runs), not HTTP: the figure
//! is the database's work, which a pull's HTTP hop does not change.

use crate::latency::quantile_ms;
use crate::store_load::{BenchError, Target, enroll};
use protocol::journal::JournalEntry;
use std::time::{Duration, Instant};
use sync_server::ledger::batch::Batch;
use sync_server::store::{PullRequest, Store, TerminalIdentity};
use testkit::entries::sale;
use time::OffsetDateTime;

/// Members of the quiet store.
const QUIET_CARDS: u64 = 50;
/// Of them, changed after its cursor.
const QUIET_CHANGED: u64 = 10;
/// Entries per push of the rest of the chain.
const BATCH: u64 = 500;

/// What [`measure`] found.
pub struct FeedFigures {
    /// Cards the rest of the chain changed after the quiet store's cursor.
    pub behind: u64,
    /// The quiet store's pull from its cursor (its 10 changed cards), p50 and p99.
    pub quiet_p50_ms: f64,
    /// See `quiet_p50_ms`.
    pub quiet_p99_ms: f64,
    /// The same till's pull from the head (nothing to answer), p50.
    pub empty_p50_ms: f64,
}

/// Card `n` of a store: `prefix` keeps the stores' cards apart.
fn card(prefix: u64, n: u64) -> String {
    format!("{:013}", 4_000_000_000_000 + prefix * 1_000_000_000 + n)
}

/// Sales `first..` of one terminal, one per card of `cards`.
fn sales(first: u64, cards: impl Iterator<Item = String>) -> Vec<JournalEntry> {
    cards
        .zip(first..)
        .map(|(c, seq)| sale(seq, &c, 0))
        .collect()
}

/// Pushes `entries` in batches of [`BATCH`].
async fn push_all(
    store: &dyn Store,
    terminal: &TerminalIdentity,
    entries: Vec<JournalEntry>,
) -> Result<(), BenchError> {
    let now = OffsetDateTime::now_utc();
    let size = usize::try_from(BATCH).unwrap_or(500);
    for chunk in entries.chunks(size) {
        store
            .push(terminal, Batch::new(chunk.to_vec())?, now)
            .await?;
    }
    Ok(())
}

/// One pull: the cursor it answers and how many balances.
async fn pull(
    store: &dyn Store,
    terminal: &TerminalIdentity,
    cursor: Option<&str>,
) -> Result<(String, usize, bool), BenchError> {
    let request = PullRequest {
        cursor,
        rules_version: 0,
        page_size: 100,
    };
    let answer = store
        .pull(terminal, request, OffsetDateTime::now_utc())
        .await?;
    Ok((answer.cursor, answer.balances.len(), answer.more))
}

/// The quiet store's cursor at the head of its feed.
async fn pull_to_head(
    store: &dyn Store,
    terminal: &TerminalIdentity,
) -> Result<String, BenchError> {
    let mut cursor: Option<String> = None;
    loop {
        let (next, _, more) = pull(store, terminal, cursor.as_deref()).await?;
        cursor = Some(next);
        if !more {
            return Ok(cursor.unwrap_or_default());
        }
    }
}

/// `pulls` pulls of `terminal` from `cursor`, each answering `expect` balances.
async fn timed_pulls(
    store: &dyn Store,
    terminal: &TerminalIdentity,
    cursor: &str,
    expect: usize,
    pulls: usize,
) -> Result<Vec<Duration>, BenchError> {
    let mut times = Vec::with_capacity(pulls);
    for _ in 0..pulls {
        let started = Instant::now();
        let (_, balances, more) = pull(store, terminal, Some(cursor)).await?;
        times.push(started.elapsed());
        if balances != expect || more {
            return Err(BenchError::Workload(format!(
                "the quiet store's pull answered {balances} balances (more: {more}), not {expect}"
            )));
        }
    }
    times.sort();
    Ok(times)
}

/// Fills `target` (empty) and measures the quiet store's pulls with `behind` of the
/// chain's changes after its cursor.
pub fn measure(target: &Target, behind: u64, pulls: usize) -> anyhow::Result<FeedFigures> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let figures = rt.block_on(async {
        let store = target.open().await?;
        let store = store.as_ref();
        let quiet = enroll(store, "store-q", "till-1").await?;
        let chain = enroll(store, "store-c", "till-1").await?;
        // The quiet store's members, and the chain's cards before the cursor.
        push_all(
            store,
            &quiet,
            sales(1, (0..QUIET_CARDS).map(|n| card(1, n))),
        )
        .await?;
        push_all(store, &chain, sales(1, (0..BATCH).map(|n| card(2, n)))).await?;
        let cursor = pull_to_head(store, &quiet).await?;
        // After it: the chain's changes, then the quiet store's own few.
        let chain_cards = (BATCH..BATCH + behind).map(|n| card(2, n));
        push_all(store, &chain, sales(BATCH + 1, chain_cards)).await?;
        let changed = (0..QUIET_CHANGED).map(|n| card(1, n));
        push_all(store, &quiet, sales(QUIET_CARDS + 1, changed)).await?;
        target.checkpoint().await;
        let expect = usize::try_from(QUIET_CHANGED).unwrap_or(usize::MAX);
        // One untimed pull each, so both are measured with warm statements.
        timed_pulls(store, &quiet, &cursor, expect, 1).await?;
        let head = pull_to_head(store, &quiet).await?;
        let quiet_times = timed_pulls(store, &quiet, &cursor, expect, pulls).await?;
        let empty_times = timed_pulls(store, &quiet, &head, 0, pulls).await?;
        Ok::<_, BenchError>(FeedFigures {
            behind,
            quiet_p50_ms: quantile_ms(&quiet_times, 0.5),
            quiet_p99_ms: quantile_ms(&quiet_times, 0.99),
            empty_p50_ms: quantile_ms(&empty_times, 0.5),
        })
    })?;
    Ok(figures)
}
