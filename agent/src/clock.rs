//! The agent's notion of "now".
//!
//! Everything that depends on time (store days for the offline caps, hold timeouts,
//! token expiry, how long HQ has been unreachable) reads it here. The offset from the
//! environment variable `LOYALTY_CLOCK_OFFSET_SECS` exists so end-to-end tests can
//! start the real binary "tomorrow" without sleeping; it is 0 in production.

use time::{Date, OffsetDateTime, UtcOffset};

/// Name of the environment variable holding the clock offset in seconds.
pub const OFFSET_ENV: &str = "LOYALTY_CLOCK_OFFSET_SECS";

/// System time plus a fixed offset, and the store's UTC offset for day boundaries.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset_secs: i64,
    store_offset: UtcOffset,
}

impl Clock {
    /// A clock reading the offset from the environment and the store's UTC offset in
    /// minutes.
    pub fn from_env(store_offset_minutes: i32) -> Self {
        let offset_secs = std::env::var(OFFSET_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        Self::new(offset_secs, store_offset_minutes)
    }

    /// A clock with an explicit offset.
    pub fn new(offset_secs: i64, store_offset_minutes: i32) -> Self {
        let store_offset = UtcOffset::from_whole_seconds(store_offset_minutes.saturating_mul(60))
            .unwrap_or(UtcOffset::UTC);
        Self {
            offset_secs,
            store_offset,
        }
    }

    /// The current instant (UTC), truncated to whole microseconds so it survives a
    /// round trip through JSON and SQLite unchanged.
    pub fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc() + time::Duration::seconds(self.offset_secs);
        now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
            .unwrap_or(now)
    }

    /// The store's calendar day of an instant.
    pub fn store_day(&self, at: OffsetDateTime) -> Date {
        at.to_offset(self.store_offset).date()
    }

    /// Unix time of the start of the store day containing `at`.
    pub fn store_day_start_unix(&self, at: OffsetDateTime) -> i64 {
        let local = at.to_offset(self.store_offset);
        local.replace_time(time::Time::MIDNIGHT).unix_timestamp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn store_day_follows_the_store_offset() {
        let clock = Clock::new(0, 180);
        let at = datetime!(2026-11-24 22:30 UTC);
        assert_eq!(clock.store_day(at), time::macros::date!(2026 - 11 - 25));
        assert_eq!(
            clock.store_day_start_unix(at),
            datetime!(2026-11-24 21:00 UTC).unix_timestamp()
        );
    }

    #[test]
    fn offset_moves_now() {
        let a = Clock::new(0, 0).now();
        let b = Clock::new(86_400, 0).now();
        assert!(b - a >= time::Duration::hours(23));
    }
}
