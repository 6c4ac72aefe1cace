//! Serial scanners (RS-232 and USB-CDC): from bytes on a wire to scan events for the
//! till.
//!
//! The path of one code: [`reader`] (a thread per `[[scanner]]`: open, read, reopen
//! after unplug) → [`framing`] (bytes to frames, garbage dropped with a reason) →
//! [`decode`] (frame to card via `protocol::codes`; refused codes counted and logged
//! masked) → a bounded channel → [`gate`] (one task: [`debounce`], then [`replay`] of
//! app tokens) → [`ScanBus`] (SSE listeners and `/v1/scans/last`). Scanner states go
//! to [`ScannerStates`] for `/v1/health`.
//!
//! [`ScannerSet`] starts all of it and stops it on shutdown.

pub mod debounce;
pub mod decode;
pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod reader;
pub mod replay;
mod stop;

use crate::clock::Clock;
use crate::journal::Journal;
use crate::keyring::KeyRingHandle;
use crate::metrics::Metrics;
use crate::scan_bus::{ScanBus, ScannerState, ScannerStates};
use config::agent::ScannerSection;
use gate::Gate;
use reader::Reader;
use replay::{UsedToken, UsedTokens};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use stop::StopSignal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Decoded scans waiting for the gate. The gate never waits on the till, so this only
/// fills if the runtime itself is stuck.
const GATE_QUEUE: usize = 64;

/// What the scanners need from the rest of the agent.
#[derive(Clone)]
pub struct ScanContext {
    /// Where accepted scans go.
    pub bus: ScanBus,
    /// Connection states for `/v1/health`.
    pub states: ScannerStates,
    /// HQ keys for app tokens.
    pub keys: KeyRingHandle,
    /// Where frames are counted by result.
    pub metrics: Arc<Metrics>,
    /// The journal (used app tokens).
    pub journal: Journal,
    /// The time a scan was read at, and token expiry.
    pub clock: Clock,
    /// HQ, which records app token uses across tills (`None`: a standalone store).
    pub token_uses: Option<gate::TokenUses>,
}

/// The running scanners: one thread per port plus the gate task.
pub struct ScannerSet {
    stop: Arc<StopSignal>,
    threads: Vec<(String, JoinHandle<()>)>,
    gate: tokio::task::JoinHandle<()>,
    watcher: tokio::task::JoinHandle<()>,
    bus: ScanBus,
}

impl ScannerSet {
    /// Registers every scanner in `/v1/health` and starts reading. A port that cannot
    /// be opened is not an error: it shows as disconnected and is retried. When
    /// `cancel` fires the scanners stop and open scan streams end (an SSE stream
    /// never ends by itself and would hold up the server's graceful shutdown).
    pub async fn start(
        configs: &[ScannerSection],
        ctx: ScanContext,
        cancel: CancellationToken,
    ) -> Self {
        let state_indexes: Vec<usize> = configs
            .iter()
            .map(|c| ctx.states.register(&c.name, &c.port.display().to_string()))
            .collect();
        let now = ctx.clock.now().unix_timestamp();
        let used = ctx
            .journal
            .write(move |tx| tx.used_tokens(UsedToken::expired_by(now)))
            .await;
        let used = match used {
            Ok(used) => used,
            Err(e) => {
                tracing::warn!(error = %e, "cannot load used app tokens; replays before this start are not refused");
                Vec::new()
            }
        };
        let gate = Gate::new(
            configs.iter().map(|c| Duration::from_millis(c.debounce_ms)),
            UsedTokens::new(used),
        );
        let (to_gate, from_readers) = mpsc::channel(GATE_QUEUE);
        let gate = tokio::spawn(gate::run(
            from_readers,
            configs.iter().map(|c| c.name.clone()).collect(),
            gate,
            ctx.bus.clone(),
            ctx.metrics.clone(),
            ctx.journal.clone(),
            ctx.token_uses.clone(),
        ));
        let stop = Arc::new(StopSignal::default());
        let mut threads = Vec::with_capacity(configs.len());
        for (slot, (config, state_index)) in configs.iter().zip(state_indexes).enumerate() {
            let reader = Reader {
                slot,
                state_index,
                config: config.clone(),
                states: ctx.states.clone(),
                keys: ctx.keys.clone(),
                metrics: ctx.metrics.clone(),
                clock: ctx.clock,
                to_gate: to_gate.clone(),
                stop: stop.clone(),
            };
            match reader.spawn() {
                Ok(handle) => threads.push((config.name.clone(), handle)),
                Err(e) => {
                    tracing::error!(scanner = config.name, error = %e, "cannot start scanner thread");
                    ctx.states.set(
                        state_index,
                        ScannerState::Disconnected,
                        Some(format!("cannot start reader thread: {e}")),
                    );
                }
            }
        }
        // The readers hold the only senders: the gate ends when the last reader does.
        drop(to_gate);
        let watcher = tokio::spawn({
            let (stop, bus) = (stop.clone(), ctx.bus.clone());
            async move {
                cancel.cancelled().await;
                stop.stop();
                bus.close();
            }
        });
        Self {
            stop,
            threads,
            gate,
            watcher,
            bus: ctx.bus,
        }
    }

    /// Stops the readers (each within one read timeout), lets the gate finish the
    /// scans in flight and waits until used tokens are written to the journal.
    pub async fn shutdown(self) {
        self.stop.stop();
        self.bus.close();
        self.watcher.abort();
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || {
            for (name, handle) in threads {
                if handle.join().is_err() {
                    tracing::error!(scanner = name, "scanner thread panicked");
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::error!("joining scanner threads failed");
        }
        if self.gate.await.is_err() {
            tracing::error!("scan gate task failed");
        }
    }
}
