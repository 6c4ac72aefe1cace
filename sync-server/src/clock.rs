//! The server's notion of "now".
//!
//! Everything that reads the time goes through [`Clock`], so tests can move it:
//! `LOYALTY_CLOCK_OFFSET_SECS` (an integer, default 0) is added to the system clock.
//! It is a testing aid, for end-to-end tests that must see points mature or expire
//! without waiting; production leaves it unset. `jobs run --now` is the other way in.

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
        Ok(Self {
            offset: Duration::seconds(secs),
        })
    }

    /// Now, shifted.
    pub fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.checked_add(self.offset).unwrap_or(now)
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
        assert!(Clock::with_offset_text("tomorrow").is_err());
        assert_eq!(Clock::with_offset_text(" ").unwrap(), Clock::default());
    }
}
