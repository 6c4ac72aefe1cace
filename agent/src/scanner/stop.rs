//! A stop flag that scanner threads can also sleep on, so a backoff pause ends the
//! moment the agent shuts down instead of when the pause would have ended.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Set once on shutdown; checked by the scanner threads between reads.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    /// Asks every thread to stop and wakes the sleeping ones.
    pub fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    /// True once [`StopSignal::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps for `pause` or until stopped; true when stopped.
    pub fn sleep(&self, pause: Duration) -> bool {
        let deadline = Instant::now() + pause;
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        while !*stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sleep_ends_early_when_stopped() {
        let signal = Arc::new(StopSignal::default());
        assert!(!signal.sleep(Duration::from_millis(1)));
        let other = signal.clone();
        let sleeper = std::thread::spawn(move || other.sleep(Duration::from_secs(60)));
        signal.stop();
        assert!(sleeper.join().unwrap());
        assert!(signal.is_stopped());
    }
}
