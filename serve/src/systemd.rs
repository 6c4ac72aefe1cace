//! Telling systemd how the server is doing (`Type=notify` units with `WatchdogSec=`):
//! `READY=1` once the listener is bound, `WATCHDOG=1` at half the watchdog period
//! while the runtime keeps scheduling tasks, `STOPPING=1` at shutdown.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing, so tests and a
//! server started by hand are unaffected. A failed notification is logged, never
//! fatal: the service manager then restarts us, which is its job.

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// Says the server is ready (listening, journal or database open).
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// Says the server is shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Pings systemd's watchdog at half its period until `cancel` fires. A runtime whose
/// workers are stuck stops pinging, and systemd restarts the service. Does nothing
/// when the unit sets no `WatchdogSec=`.
pub fn spawn_watchdog(cancel: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period / 2);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => send(&[NotifyState::Watchdog]),
            }
        }
    });
}

fn send(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
