//! Hold expiry: holds the till never committed are released after
//! `[till_api] hold_timeout_secs`, so their points become available again (at HQ too:
//! each writes a `Release` entry when HQ reserved points for it, see
//! [`super::cancel::release`]). A background task checks a few times per timeout,
//! and once at start (holds that timed out while the agent was down are released
//! before the first till request).

use super::CancelReason;
use super::cancel::release;
use crate::clock::Clock;
use crate::journal::{Journal, JournalError, Tx};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// The task that releases expired holds.
pub struct HoldExpiry {
    /// The journal holding the sales.
    pub journal: Journal,
    /// Time, for the cutoff.
    pub clock: Clock,
    /// Where released holds are counted.
    pub metrics: Arc<Metrics>,
    /// Seconds a hold lives.
    pub timeout_secs: u64,
}

impl HoldExpiry {
    /// Releases expired holds until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let every = check_interval(self.timeout_secs);
        loop {
            let now = self.clock.now();
            let timeout = self.timeout_secs;
            match self.journal.write(move |tx| expire(tx, now, timeout)).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(released = n, "released expired holds");
                    self.metrics.holds_expired(n);
                }
                Err(e) => tracing::warn!(error = %e, "releasing expired holds"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// Releases every hold older than `timeout_secs` at `now`, in the caller's
/// transaction; returns how many.
pub fn expire(tx: &Tx<'_>, now: OffsetDateTime, timeout_secs: u64) -> Result<usize, JournalError> {
    let expired = tx.expired_holds(cutoff_unix(now, timeout_secs))?;
    for hold in &expired {
        release(tx, hold, CancelReason::HoldTimeout, now)?;
    }
    Ok(expired.len())
}

/// Holds opened before this unix time have expired at `now`.
pub fn cutoff_unix(now: OffsetDateTime, timeout_secs: u64) -> i64 {
    now.unix_timestamp() - i64::try_from(timeout_secs).unwrap_or(i64::MAX / 2)
}

/// How often to look: a quarter of the timeout, between 1 s and a minute.
pub fn check_interval(timeout_secs: u64) -> Duration {
    Duration::from_secs((timeout_secs / 4).clamp(1, 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_hold_expires_once_it_is_older_than_the_timeout() {
        let now = datetime!(2026-11-24 10:00 UTC);
        assert_eq!(
            cutoff_unix(now, 600),
            datetime!(2026-11-24 09:50 UTC).unix_timestamp()
        );
        // A timeout beyond any clock does not overflow: nothing expires.
        assert!(cutoff_unix(now, u64::MAX) < 0);
    }

    #[test]
    fn the_check_runs_a_few_times_per_timeout_within_bounds() {
        assert_eq!(check_interval(600), Duration::from_secs(60));
        assert_eq!(check_interval(60), Duration::from_secs(15));
        assert_eq!(check_interval(2), Duration::from_secs(1));
    }
}
