//! Runs the ledger's housekeeping (maturation, expiry, tiers; see
//! [`crate::ledger::jobs`]) every `[ledger] job_interval_secs` while the server runs,
//! and once on demand (`sync-server jobs run --now …`).
//!
//! The job takes the same card locks as pushes (SQLite: one write transaction;
//! PostgreSQL: one transaction per chunk of cards, locked in card-id order), so it
//! interleaves safely with them, and it is idempotent at a given `now`, so every
//! server instance may run it: a second run finds the due lots already handled.

use crate::ledger::jobs::JobReport;
use crate::store::{Store, StoreError};
use config::clock::Clock;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Runs the job once at `now`.
pub async fn run_once(store: &dyn Store, now: OffsetDateTime) -> Result<JobReport, StoreError> {
    store.run_jobs(now).await
}

/// Runs the job at start and then every `every` until `shutdown`.
pub async fn run_periodically(
    store: Arc<dyn Store>,
    clock: Clock,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match run_once(store.as_ref(), clock.now()).await {
            Ok(report) if report == JobReport::default() => {
                tracing::debug!("ledger job: nothing to do");
            }
            Ok(report) => tracing::info!(%report, "ledger job"),
            // The next tick tries again; a failed run changed nothing.
            Err(e) => tracing::error!(error = %e, "ledger job failed"),
        }
    }
}
