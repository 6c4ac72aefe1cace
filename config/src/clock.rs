//! "Now" for both binaries: the system clock plus an offset that tests may set.
//!
//! `LOYALTY_CLOCK_OFFSET_SECS` (whole seconds, may be negative, default 0) is a testing
//! aid: end-to-end tests start the real binaries "tomorrow" to see holds time out,
//! caps reset or points mature without waiting. Production leaves it unset. This is
//! the only place that reads it, so the agent and HQ agree on what a value means, and
//! a value that is not a whole number is an error rather than silently zero.

use time::{Duration, OffsetDateTime};

/// Environment variable that shifts the clock, in seconds (may be negative).
pub const CLOCK_OFFSET_ENV: &str = "LOYALTY_CLOCK_OFFSET_SECS";

/// Why the clock offset could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{CLOCK_OFFSET_ENV}={value:?} is not a whole number of seconds")]
pub struct ClockError {
    /// The offending value.
    pub value: String,
}

/// The system clock plus a fixed offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset: Duration,
}

impl Clock {
    /// The system clock with the offset from `LOYALTY_CLOCK_OFFSET_SECS`.
    pub fn from_env() -> Result<Self, ClockError> {
        match std::env::var(CLOCK_OFFSET_ENV) {
            Ok(v) => Self::with_offset_text(&v),
            Err(_) => Ok(Self::default()),
        }
    }

    /// The system clock shifted by `text` seconds (empty: no shift).
    pub fn with_offset_text(text: &str) -> Result<Self, ClockError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::default());
        }
        let secs: i64 = text.parse().map_err(|_| ClockError {
            value: text.to_owned(),
        })?;
        Ok(Self::with_offset(Duration::seconds(secs)))
    }

    /// The system clock shifted by `offset`.
    pub const fn with_offset(offset: Duration) -> Self {
        Self { offset }
    }

    /// Now, shifted, truncated to whole microseconds: every instant the binaries
    /// store survives a round trip through JSON, SQLite and PostgreSQL unchanged.
    pub fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        let now = now.checked_add(self.offset).unwrap_or(now);
        now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_moves_now_by_whole_seconds() {
        let clock = Clock::with_offset_text("86400").unwrap();
        let diff = clock.now() - OffsetDateTime::now_utc();
        assert!((diff - Duration::days(1)).abs() < Duration::seconds(5));
        assert_eq!(Clock::with_offset_text(" ").unwrap(), Clock::default());
    }

    #[test]
    fn an_offset_that_is_not_whole_seconds_is_an_error() {
        assert!(Clock::with_offset_text("tomorrow").is_err());
        assert!(Clock::with_offset_text("1.5").is_err());
    }

    #[test]
    fn now_has_whole_microseconds() {
        assert_eq!(Clock::default().now().nanosecond() % 1_000, 0);
    }
}
