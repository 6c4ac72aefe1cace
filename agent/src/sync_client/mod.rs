//! The sync client: pushes this terminal's journal to HQ and pulls HQ's changes.
//!
//! One background task. It pushes as soon as there is something to push (a commit
//! wakes it), at least every `interval_secs`, at start-up, and after every failure
//! with exponential backoff and jitter. Entries are marked acknowledged only with the
//! `acked_through` HQ answers after its commit, in one local transaction; nothing is
//! ever deleted, so a lost answer just means the same entries are pushed again and
//! HQ recognises them. A conflict that retrying cannot fix (HQ holds different
//! entries under this terminal's sequence numbers) halts syncing and shows in
//! `/v1/health` for a human to resolve. In escrow mode the task also runs the lease
//! cycle ([`leases`]) after a push that emptied the queue.

pub mod apply;
pub mod leases;

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::hq_client::{HqClient, HqError, PushPayload, RefusalCode, Scrubbed};
use crate::hq_link::HqLink;
use crate::journal::sync_state::AckOutcome;
use crate::journal::{Journal, JournalError};
use crate::keyring::{self, KeyRingHandle};
use crate::metrics::Metrics;
use crate::program::RulesHandle;
use config::agent::{OfflineRedemption, OfflineSection, SyncSection};
use protocol::Seq;
use protocol::wire::{PushResponse, SyncErrorCode};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often a seq gap is resent from HQ's position before syncing halts.
const GAP_RETRIES: u32 = 3;

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

/// A batch read from the journal and encoded for HQ.
struct Outgoing {
    /// The seq it follows.
    after: Seq,
    /// Its last seq.
    last: Seq,
    payload: PushPayload,
}

/// HQ's answer to a push, not yet recorded in the journal.
struct Answer {
    resp: PushResponse,
    /// The seq the batch followed.
    after: Seq,
    /// The batch's last seq.
    last: Seq,
}

/// A push on its own task, so that the sync task reads and writes the journal
/// meanwhile. Dropped unanswered (the sync round failed), it is cancelled: no push
/// of this terminal outlives its round.
struct InFlight(tokio::task::JoinHandle<Result<PushResponse, HqError>>);

impl InFlight {
    /// HQ's answer, or a failure to retry when the task itself failed (a panic).
    async fn answer(mut self) -> Result<PushResponse, HqError> {
        (&mut self.0).await.unwrap_or_else(|e| {
            Err(HqError::Unreachable(Scrubbed::new(format_args!(
                "the push task failed: {e}"
            ))))
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Everything the sync task works with.
pub struct SyncClient {
    /// The journal pushed from and pulled into.
    pub journal: Journal,
    /// The client of HQ's sync API.
    pub hq: HqClient,
    /// HQ's reachability (updated here; a commit wakes the task through it).
    pub link: Arc<HqLink>,
    /// The rules in force, replaced when HQ sends new ones.
    pub rules: RulesHandle,
    /// The app-token keys, replaced when HQ sends new ones.
    pub keys: KeyRingHandle,
    /// Sync counters.
    pub metrics: Arc<Metrics>,
    /// The time acks and contacts are recorded at.
    pub clock: Clock,
    /// `[sync]`.
    pub config: SyncSection,
    /// `[offline]`: the redemption mode, lease sizes and lease sync period.
    pub offline: OfflineSection,
}

impl SyncClient {
    /// Runs the sync loop until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let interval = Duration::from_secs(self.config.interval_secs);
        let mut backoff = Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(self.config.max_backoff_secs),
        );
        let mut last_pull: Option<Instant> = None;
        let mut last_lease_sync: Option<Instant> = None;
        let lease_every = Duration::from_secs(self.offline.lease_sync_secs);
        loop {
            let wait = if let Some(reason) = self.halted_reason().await {
                tracing::error!(reason = %reason, "sync halted; fix the conflict and clear it (see README)");
                interval.max(Duration::from_secs(60))
            } else {
                let pull_due = last_pull.is_none_or(|t| t.elapsed() >= interval);
                match self.round(pull_due).await {
                    Ok(pulled) => {
                        if pulled {
                            last_pull = Some(Instant::now());
                        }
                        let lease_due = self.offline.redemption == OfflineRedemption::Escrow
                            && last_lease_sync.is_none_or(|t| t.elapsed() >= lease_every);
                        if lease_due {
                            match self.lease_cycle().await {
                                Ok(held) => {
                                    last_lease_sync = Some(Instant::now());
                                    tracing::debug!(leases = held, "lease sync done");
                                }
                                // Retried at the next round; redemption online is unaffected.
                                Err(e) => tracing::warn!(error = %e, "lease sync failed"),
                            }
                        }
                        self.link.mark_online();
                        self.metrics.online.set(1);
                        backoff.reset();
                        interval
                    }
                    Err(SyncError::Halt(reason)) => {
                        tracing::error!(reason = %reason, "sync halted");
                        let recorded = reason.clone();
                        if let Err(e) = self
                            .journal
                            .write(move |tx| tx.set_halted(Some(&recorded)))
                            .await
                        {
                            // The halt holds for this run; after a restart the
                            // conflict is found again and recorded then.
                            tracing::error!(error = %e, "cannot record the sync halt in the journal");
                        }
                        self.link.mark_offline(reason);
                        continue;
                    }
                    Err(e) => {
                        self.metrics.sync_failures.inc();
                        self.metrics.online.set(0);
                        self.link.mark_offline(e.to_string());
                        let delay = backoff.next_jittered_pause();
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
                _ = self.link.woken() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Why syncing is halted, if it is. A journal that cannot say is taken as not
    /// halted: the next round finds the conflict again.
    async fn halted_reason(&self) -> Option<String> {
        match self.journal.read(|tx| tx.halted_reason()).await {
            Ok(reason) => reason,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read whether sync is halted");
                None
            }
        }
    }

    /// One round: push everything unacknowledged, then pull if due. Returns whether it
    /// pulled. A push alone does not trigger a pull: the till's view already counts
    /// its own entries, and thousands of tills pulling after every sale would load HQ
    /// for nothing.
    async fn round(&self, pull_due: bool) -> Result<bool, SyncError> {
        self.push_all().await?;
        if pull_due {
            self.pull_all().await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Pushes batches until HQ holds every entry.
    ///
    /// One push is in flight at a time: HQ applies a terminal's batches in `seq`
    /// order and refuses one that does not follow what it holds. The till's own work
    /// overlaps HQ's instead of adding to it: while HQ applies a batch, the answer to
    /// the previous one is recorded in the journal and the next batch is read and
    /// encoded. That batch is sent only if HQ's answer is that it holds exactly the
    /// one before; any other answer, and every failure, starts again from what the
    /// journal has recorded. An answer is recorded before the journal is read for
    /// what to push next, so a batch HQ acknowledged is never read as unacknowledged.
    async fn push_all(&self) -> Result<(), SyncError> {
        let mut gap_retries = 0;
        let mut next: Option<Outgoing> = None;
        let mut unrecorded: Option<Answer> = None;
        loop {
            let out = match next.take() {
                Some(out) => out,
                None => {
                    if let Some(answer) = unrecorded.take() {
                        self.record_answer(answer).await?;
                    }
                    let acked = self.journal.read(|tx| tx.acked_through()).await?;
                    match self.outgoing(acked).await? {
                        Some(out) => out,
                        None => return Ok(()),
                    }
                }
            };
            let (after, last) = (out.after, out.last);
            let hq = self.hq.clone();
            let in_flight = InFlight(tokio::spawn(async move { hq.send_push(out.payload).await }));
            if let Some(answer) = unrecorded.take() {
                self.record_answer(answer).await?;
            }
            let following = self.outgoing(last).await?;
            match in_flight.answer().await {
                Ok(resp) if resp.acked_through == last => {
                    unrecorded = Some(Answer { resp, after, last });
                    next = following;
                    gap_retries = 0;
                }
                // HQ holds more or less than this batch: record what it says (or halt),
                // then go on from there.
                Ok(resp) => {
                    self.record_answer(Answer { resp, after, last }).await?;
                    gap_retries = 0;
                }
                // HQ holds less than we thought (its acked_through is authoritative):
                // resend from there.
                Err(HqError::Refused {
                    code: RefusalCode::Known(SyncErrorCode::SeqGap),
                    acked_through: Some(hq_acked),
                    ..
                }) if gap_retries < GAP_RETRIES => {
                    gap_retries += 1;
                    tracing::warn!(hq_acked = %hq_acked, local_acked = %after, "HQ is missing entries; resending from its position");
                    let now = self.clock.now();
                    self.journal
                        .write(move |tx| tx.record_ack(hq_acked, now))
                        .await?;
                }
                Err(HqError::Refused {
                    code:
                        code @ RefusalCode::Known(
                            SyncErrorCode::SeqConflict
                            | SyncErrorCode::IdConflict
                            | SyncErrorCode::TerminalMismatch
                            | SyncErrorCode::SeqGap,
                        ),
                    message,
                    ..
                }) => {
                    return Err(SyncError::Halt(format!(
                        "HQ refused this terminal's entries ({code}): {message}"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The batch of entries after `after`, read and encoded; `None` when there is none.
    async fn outgoing(&self, after: Seq) -> Result<Option<Outgoing>, SyncError> {
        let batch = self.config.batch_size;
        let entries = self
            .journal
            .read(move |tx| tx.entries_after(after, batch))
            .await?;
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Ok(None);
        };
        Ok(Some(Outgoing {
            after,
            last,
            payload: self.hq.encode_push(&entries)?,
        }))
    }

    /// Records HQ's answer to a push in the journal, or halts when it cannot be
    /// this journal's (HQ holds more than it) or HQ stopped inside the batch.
    async fn record_answer(&self, answer: Answer) -> Result<(), SyncError> {
        let Answer { resp, after, last } = answer;
        let now = self.clock.now();
        let acked_through = resp.acked_through;
        let quarantined = resp.quarantined;
        let logged = quarantined.clone();
        let outcome = self
            .journal
            .write(move |tx| -> Result<_, JournalError> {
                let outcome = tx.record_ack(acked_through, now)?;
                if outcome == AckOutcome::Recorded {
                    tx.record_hq_quarantine(&quarantined)?;
                }
                Ok(outcome)
            })
            .await?;
        if !logged.is_empty() {
            // Seqs only: the store manager finds the receipts by seq.
            tracing::warn!(seqs = ?logged,
                "HQ stored these entries but could not apply them (its quarantine); their points are missing at HQ until it retries them");
        }
        if let AckOutcome::AheadOfJournal { hq, local } = outcome {
            return Err(SyncError::Halt(format!(
                "HQ holds entries up to seq {hq} for this terminal but this journal ends at {local}: \
                 this is not the journal HQ knows (restored from a backup or copied?)"
            )));
        }
        let newly = acked_through.get().saturating_sub(after.get());
        self.metrics.synced_entries.inc_by(newly);
        if acked_through < last {
            return Err(SyncError::Halt(format!(
                "HQ acknowledged only through seq {acked_through} of a batch ending at {last}"
            )));
        }
        Ok(())
    }

    /// The lease cycle: close expired leases, push their entries, then sync leases
    /// with HQ and store its answer. Returns how many open leases HQ lists.
    async fn lease_cycle(&self) -> Result<usize, SyncError> {
        let now = self.clock.now();
        let closed = self
            .journal
            .write(move |tx| leases::close_expired(tx, now))
            .await?;
        if closed > 0 {
            tracing::info!(closed, "closed expired leases");
            self.push_all().await?;
        }
        let limits = leases::LeaseLimits {
            per_card: self.offline.max_redeem_per_card_per_day,
            per_till: self.offline.max_redeem_per_terminal_per_day,
        };
        let since =
            now.unix_timestamp() - i64::from(self.offline.lease_recent_days).saturating_mul(86_400);
        let req = self
            .journal
            .write(move |tx| leases::request(tx, limits, since))
            .await?;
        let resp = self.hq.sync_leases(&req).await?;
        let held = resp.leases.len();
        self.journal
            .write(move |tx| tx.store_leases(&resp.leases))
            .await?;
        Ok(held)
    }

    /// Pulls pages until HQ has nothing more.
    async fn pull_all(&self) -> Result<(), SyncError> {
        loop {
            let cursor = self.journal.read(|tx| tx.pull_cursor()).await?;
            let rules_version = self.rules.current().version;
            let page = self.hq.pull(&cursor, rules_version).await?;
            let more = page.more;
            let now = self.clock.now();
            let applied = self
                .journal
                .refresh(move |tx| apply::apply_page(tx, &page, now))
                .await?;
            if let Some(rules) = applied.rules {
                tracing::info!(version = rules.version, "new program rules from HQ");
                self.rules.replace(rules);
            }
            if let Some(keys) = applied.keys {
                self.keys.replace(keyring::ring(&keys));
            }
            if !more {
                return Ok(());
            }
        }
    }
}
