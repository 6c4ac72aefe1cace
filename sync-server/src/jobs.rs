//! Runs the ledger's housekeeping (maturation, expiry, tiers; see
//! [`crate::ledger::jobs`]) every `[ledger] job_interval_secs` while the server runs,
//! and once on demand (`sync-server jobs run --now …`).
//!
//! The job takes the same card locks as pushes (SQLite: one write transaction;
//! PostgreSQL: one transaction per chunk of cards, locked in card-id order), so it
//! interleaves safely with them, and it is idempotent at a given `now`, so every
//! server instance may run it: a second run finds the due lots already handled.

use crate::ledger::jobs::JobReport;
use crate::store::flow::escrow::{AbandonAfter, AbandonReport};
use crate::store::{Store, StoreError};
use config::clock::Clock;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// What one run of the job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Maturation, expiry, tiers.
    pub ledger: JobReport,
    /// Abandoned reservations and leases, old token uses.
    pub abandoned: AbandonReport,
}

impl std::fmt::Display for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.ledger, self.abandoned)
    }
}

/// Runs the job once at `now`: the ledger's housekeeping, then the release of what
/// tills abandoned (reservations and leases long past their deadline, `after`).
pub async fn run_once(
    store: &dyn Store,
    now: OffsetDateTime,
    after: AbandonAfter,
) -> Result<RunReport, StoreError> {
    Ok(RunReport {
        ledger: store.run_jobs(now).await?,
        abandoned: store.release_abandoned(now, after).await?,
    })
}

/// Runs the job at start and then every `every` until `shutdown`.
pub async fn run_periodically(
    store: Arc<dyn Store>,
    clock: Clock,
    every: Duration,
    after: AbandonAfter,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match run_once(store.as_ref(), clock.now(), after).await {
            Ok(report) if report == RunReport::default() => {
                tracing::debug!("ledger job: nothing to do");
            }
            Ok(report) => tracing::info!(%report, "ledger job"),
            // The next tick tries again; a failed run changed nothing.
            Err(e) => tracing::error!(error = %e, "ledger job failed"),
        }
    }
}
