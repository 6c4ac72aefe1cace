//! The agent's notion of "now": the shared [`config::clock::Clock`] (system time plus
//! the test offset `LOYALTY_CLOCK_OFFSET_SECS`, read in one place for both binaries)
//! and the store's UTC offset for day boundaries.
//!
//! Everything that depends on time (store days for the offline caps, hold timeouts,
//! token expiry, how long HQ has been unreachable) reads it here.

use time::{Date, OffsetDateTime, UtcOffset};

/// The shared clock and the store's UTC offset for day boundaries.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: config::clock::Clock,
    store_offset: UtcOffset,
}

impl Clock {
    /// A clock reading the offset from the environment, with the store's UTC offset in
    /// minutes.
    pub fn from_env(store_offset_minutes: i32) -> Result<Self, config::clock::ClockError> {
        Ok(Self::with_base(
            config::clock::Clock::from_env()?,
            store_offset_minutes,
        ))
    }

    /// A clock with an explicit offset in seconds.
    pub fn new(offset_secs: i64, store_offset_minutes: i32) -> Self {
        Self::with_base(
            config::clock::Clock::with_offset(time::Duration::seconds(offset_secs)),
            store_offset_minutes,
        )
    }

    fn with_base(base: config::clock::Clock, store_offset_minutes: i32) -> Self {
        let store_offset = UtcOffset::from_whole_seconds(store_offset_minutes.saturating_mul(60))
            .unwrap_or(UtcOffset::UTC);
        Self { base, store_offset }
    }

    /// The current instant (UTC), in whole microseconds.
    pub fn now(&self) -> OffsetDateTime {
        self.base.now()
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
