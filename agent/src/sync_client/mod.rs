//! The sync client: pushes this terminal's journal to HQ and pulls HQ's changes.
//!
//! One background task. It pushes as soon as there is something to push (a commit
//! wakes it), at least every `interval_secs`, at start-up, and after every failure
//! with exponential backoff and jitter. Entries are marked acknowledged only with the
//! `acked_through` HQ answers after its commit, in one local transaction; nothing is
//! ever deleted, so a lost answer just means the same entries are pushed again and
//! HQ recognises them. A conflict that retrying cannot fix (HQ holds different
//! entries under this terminal's sequence numbers) halts syncing and shows in
//! `/v1/health` for a human to resolve.

pub mod apply;
pub mod backoff;

use crate::hq_client::{HqClient, HqError};
use crate::journal::sync_state::{self, AckOutcome};
use crate::journal::{JournalError, entries};
use crate::keyring;
use crate::till_api::AppState;
use backoff::Backoff;
use protocol::Seq;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Why a sync round stopped.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Hq(#[from] HqError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Needs a human: syncing stops.
    #[error("{0}")]
    Halt(String),
}

/// Runs the sync loop until `cancel` fires.
pub async fn run(state: AppState, hq: HqClient, cancel: CancellationToken) {
    let Some(cfg) = state.config.sync.clone() else {
        return;
    };
    let interval = Duration::from_secs(cfg.interval_secs);
    let batch = cfg.batch_size;
    let mut backoff = Backoff::new(
        Duration::from_millis(500),
        Duration::from_secs(cfg.max_backoff_secs),
    );
    let mut last_pull: Option<Instant> = None;
    loop {
        let halted = state
            .journal
            .call(|conn| sync_state::halted_reason(conn))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let wait = if let Some(reason) = halted {
            tracing::error!(reason = %reason, "sync halted; fix the conflict and clear it (see README)");
            interval.max(Duration::from_secs(60))
        } else {
            let pull_due = last_pull.is_none_or(|t| t.elapsed() >= interval);
            match sync_round(&state, &hq, batch, pull_due).await {
                Ok(pulled) => {
                    if pulled {
                        last_pull = Some(Instant::now());
                    }
                    state.link.mark_online();
                    state.metrics.online.set(1);
                    backoff.reset();
                    interval
                }
                Err(SyncError::Halt(reason)) => {
                    tracing::error!(reason = %reason, "sync halted");
                    let r = reason.clone();
                    let _ = state
                        .journal
                        .write(move |tx| sync_state::set_halted(tx, Some(&r)))
                        .await;
                    state.link.mark_offline(reason);
                    continue;
                }
                Err(e) => {
                    state.metrics.sync_failures.inc();
                    state.metrics.online.set(0);
                    state.link.mark_offline(e.to_string());
                    let delay = backoff.next_delay();
                    if backoff.failures() == 1 || backoff.failures().is_multiple_of(10) {
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, failures = backoff.failures(), "sync failed");
                    }
                    // While HQ is away, new sales do not cut the backoff short.
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = state.link.woken() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One round: push everything unacknowledged, then pull if due. Returns whether it
/// pulled. A push alone does not trigger a pull: the till's view already counts its own
/// entries, and thousands of tills pulling after every sale would load HQ for nothing.
async fn sync_round(
    state: &AppState,
    hq: &HqClient,
    batch: u32,
    pull_due: bool,
) -> Result<bool, SyncError> {
    push_all(state, hq, batch).await?;
    if pull_due {
        pull_all(state, hq).await?;
        return Ok(true);
    }
    Ok(false)
}

/// Pushes batches until HQ holds every entry.
async fn push_all(state: &AppState, hq: &HqClient, batch: u32) -> Result<(), SyncError> {
    let mut gap_retries = 0;
    loop {
        let pending = state
            .journal
            .call(move |conn| -> Result<_, JournalError> {
                let acked = sync_state::acked_through(conn)?;
                Ok((acked, entries::read_after(conn, acked, batch)?))
            })
            .await??;
        let (acked, batch_entries) = pending;
        if batch_entries.is_empty() {
            return Ok(());
        }
        let last = batch_entries.last().map_or(acked, |e| e.seq);
        match hq.push(&batch_entries).await {
            Ok(resp) => {
                let now = state.clock.now();
                let outcome = state
                    .journal
                    .write(move |tx| sync_state::record_ack(tx, resp.acked_through, now))
                    .await??;
                if let AckOutcome::AheadOfJournal { hq, local } = outcome {
                    return Err(SyncError::Halt(format!(
                        "HQ holds entries up to seq {hq} for this terminal but this journal ends at {local}: \
                         this is not the journal HQ knows (restored from a backup or copied?)"
                    )));
                }
                let newly = resp.acked_through.get().saturating_sub(acked.get());
                state.metrics.synced_entries.inc_by(newly);
                if resp.acked_through < last {
                    return Err(SyncError::Halt(format!(
                        "HQ acknowledged only through seq {} of a batch ending at {last}",
                        resp.acked_through
                    )));
                }
                gap_retries = 0;
            }
            // HQ holds less than we thought (its acked_through is authoritative): resend from there.
            Err(HqError::Refused {
                code,
                acked_through: Some(hq_acked),
                ..
            }) if code == "seq_gap" && gap_retries < 3 => {
                gap_retries += 1;
                tracing::warn!(hq_acked = %hq_acked, local_acked = %acked, "HQ is missing entries; resending from its position");
                let now = state.clock.now();
                state
                    .journal
                    .write(move |tx| sync_state::record_ack(tx, Seq(hq_acked.get()), now))
                    .await??;
            }
            Err(HqError::Refused { code, message, .. })
                if matches!(
                    code.as_str(),
                    "seq_conflict" | "id_conflict" | "terminal_mismatch" | "seq_gap"
                ) =>
            {
                return Err(SyncError::Halt(format!(
                    "HQ refused this terminal's entries ({code}): {message}"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Pulls pages until HQ has nothing more.
async fn pull_all(state: &AppState, hq: &HqClient) -> Result<(), SyncError> {
    loop {
        let cursor = state
            .journal
            .call(|conn| sync_state::pull_cursor(conn))
            .await??;
        let rules_version = state.rules.current().version;
        let page = hq.pull(&cursor, rules_version).await?;
        let more = page.more;
        let now = state.clock.now();
        let applied = state
            .journal
            .write(move |tx| apply::apply_page(tx, &page, now))
            .await??;
        if let Some(rules) = applied.rules {
            tracing::info!(version = rules.version, "new program rules from HQ");
            state.rules.replace(rules);
        }
        if applied.keys_changed {
            let ring = state.journal.call(|conn| keyring::load(conn)).await??;
            state.keys.replace(ring);
        }
        if !more {
            return Ok(());
        }
    }
}
