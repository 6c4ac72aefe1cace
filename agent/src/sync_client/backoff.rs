//! Exponential backoff with full jitter, so thousands of tills coming back after an
//! HQ outage do not all retry in the same second.

use std::time::Duration;

/// Retry delays: `random(0, min(cap, base * 2^attempt))`.
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

    /// The next delay (and counts the failure).
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(self.attempt.min(30)))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        // At least a tenth of the ceiling, so a retry never spins.
        Duration::from_millis(rand::random_range(millis / 10..=millis))
    }

    /// Back to the first delay after a success.
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

    #[test]
    fn delays_grow_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(2));
            assert!(d >= Duration::from_millis(10));
        }
        assert_eq!(b.failures(), 20);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
