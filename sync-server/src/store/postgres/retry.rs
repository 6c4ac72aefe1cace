//! Which PostgreSQL failures are worth another attempt, and how long to wait.
//!
//! A serialization failure (40001) or a deadlock (40P01) rolls the whole transaction
//! back, so running it again from the start is safe. Attempts are bounded: when the
//! conflict persists the caller gets [`StoreError::Unavailable`] (HTTP 503, which
//! agents retry later) instead of an ever longer wait.

use crate::store::StoreError;
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// Attempts of one operation, the first included.
pub const MAX_ATTEMPTS: u32 = 5;
/// Delay before the second attempt; it doubles each time, with jitter.
const BASE_DELAY: Duration = Duration::from_millis(5);

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // A lost connection or a server that is shutting down or starting up is not a
        // broken database: the request may succeed a moment later.
        let unavailable = e.is_closed()
            || e.code().is_some_and(|c| {
                *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CRASH_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
                    || *c == SqlState::TOO_MANY_CONNECTIONS
            });
        if unavailable {
            Self::Unavailable(describe(&e).into())
        } else {
            Self::Backend(Box::new(e))
        }
    }
}

/// An error with its chain of causes (`error connecting to server: Connection
/// refused`), each message once.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The driver's error behind `e`, if it is one.
pub fn driver_error(e: &StoreError) -> Option<&tokio_postgres::Error> {
    match e {
        StoreError::Backend(source) => source.downcast_ref::<tokio_postgres::Error>(),
        _ => None,
    }
}

/// True for the failures a rerun of the transaction can cure.
pub fn is_transient(e: &StoreError) -> bool {
    driver_error(e)
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        })
}

/// What to do after a failed attempt.
#[derive(Debug)]
pub enum Next {
    /// Wait, then run the transaction again.
    Again(Duration),
    /// Give up with this error.
    Fail(StoreError),
}

/// The attempts of one operation.
#[derive(Debug, Default)]
pub struct Retry {
    failed: u32,
}

impl Retry {
    /// Decides after attempt number `self.failed + 1` failed with `e`.
    pub fn after(&mut self, e: StoreError) -> Next {
        if !is_transient(&e) {
            return Next::Fail(e);
        }
        self.failed += 1;
        if self.failed >= MAX_ATTEMPTS {
            tracing::warn!(attempts = self.failed, error = %e, "transaction still conflicting; giving up");
            return Next::Fail(StoreError::Unavailable(
                format!("{e} (still conflicting after {} attempts)", self.failed).into(),
            ));
        }
        tracing::debug!(attempt = self.failed, error = %e, "transaction conflicted; retrying");
        Next::Again(delay(self.failed))
    }
}

/// `BASE_DELAY · 2^(n-1)`, plus up to as much again at random so that the
/// transactions that just collided do not collide again.
fn delay(n: u32) -> Duration {
    let base = BASE_DELAY.saturating_mul(1 << n.saturating_sub(1).min(10));
    let jitter =
        getrandom::u32().unwrap_or(0) % (u32::try_from(base.as_micros()).unwrap_or(1).max(1));
    base + Duration::from_micros(u64::from(jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_conflicts_are_retried_and_only_a_few_times() {
        let mut r = Retry::default();
        assert!(matches!(
            r.after(StoreError::corrupt("x")),
            Next::Fail(StoreError::Corrupt(_))
        ));
        assert!(delay(1) >= BASE_DELAY && delay(1) < BASE_DELAY * 2);
        assert!(delay(4) >= BASE_DELAY * 8);
    }
}
