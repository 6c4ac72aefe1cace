//! Whether HQ is reachable right now, shared by the till API and the sync client.
//!
//! The sync client and the live-balance lookups both update it; `/v1/health` and the
//! metrics read it. A `Notify` lets a commit wake the sync client at once instead of
//! waiting for its timer.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// Shared HQ link state.
#[derive(Debug, Default)]
pub struct HqLink {
    online: AtomicBool,
    last_error: Mutex<Option<String>>,
    wake: Notify,
}

impl HqLink {
    /// True when HQ answered the last attempt.
    pub fn online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    /// Records a successful exchange with HQ.
    pub fn mark_online(&self) {
        self.online.store(true, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Records a failed exchange with HQ.
    pub fn mark_offline(&self, error: String) {
        self.online.store(false, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    /// The last error, if the last attempt failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Wakes the sync client (new entries to push).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until [`Self::wake`] is called (a wake before the wait is not lost).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}
