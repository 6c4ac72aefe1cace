//! Exponential backoff between retries: `base`, doubling after each failure, never
//! above `cap`, back to `base` after a success.
//!
//! Two users, one rule: a scanner reopening its port waits exactly that long (it
//! competes with nobody), while the sync client waits a random part of it (full
//! jitter), so thousands of tills coming back after an HQ outage do not all retry in
//! the same second.

use std::time::Duration;

/// Retry pauses of one retrying loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `base`, never above `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The pause before the next attempt, `min(cap, base * 2^failures)`; counts the
    /// failure.
    pub fn next_pause(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(self.attempt.min(30)))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        ceiling
    }

    /// A random pause up to [`Self::next_pause`] (full jitter), at least a tenth of it
    /// so a retry never spins; counts the failure.
    pub fn next_jittered_pause(&mut self) -> Duration {
        let millis = u64::try_from(self.next_pause().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(rand::random_range(millis / 10..=millis))
    }

    /// Back to the first pause after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The doubling itself is tested with the scanners' figures in `scanner::reader`.

    #[test]
    fn jittered_pauses_stay_within_the_ceiling_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for _ in 0..20 {
            let d = b.next_jittered_pause();
            assert!(d <= Duration::from_secs(2));
            assert!(d >= Duration::from_millis(10));
        }
        assert_eq!(b.failures(), 20);
        b.reset();
        assert!(b.next_jittered_pause() <= Duration::from_millis(100));
    }
}
