//! Where decoded scans go: a broadcast to every listening till (SSE) plus the latest
//! scan. Publishing never waits for a listener, so a slow client cannot hold up a
//! scanner; a listener that falls behind skips the scans it missed. Closing the bus
//! (on shutdown) ends every listener's stream.

use protocol::CardId;
use protocol::codes::Symbology;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// One accepted card scan, as `/v1/scans` and `/v1/scans/last` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScanEvent {
    /// Scanner name from the config.
    pub scanner: String,
    /// Barcode family.
    pub symbology: Symbology,
    /// The card.
    pub card: CardId,
    /// When the frame was read.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Fan-out of scans to listeners.
#[derive(Clone, Debug)]
pub struct ScanBus {
    tx: broadcast::Sender<Arc<ScanEvent>>,
    last: Arc<Mutex<Option<Arc<ScanEvent>>>>,
    closed: CancellationToken,
}

impl ScanBus {
    /// A bus keeping up to `capacity` scans for slow listeners.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            tx,
            last: Arc::new(Mutex::new(None)),
            closed: CancellationToken::new(),
        }
    }

    /// Ends every listener's stream: the agent is stopping.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Fires once the bus is closed.
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Publishes a scan to every listener (never blocks).
    pub fn publish(&self, event: ScanEvent) {
        let event = Arc::new(event);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(event.clone());
        // No listener is fine: the scan is still kept as the latest.
        let _ = self.tx.send(event);
    }

    /// A new listener, receiving scans published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ScanEvent>> {
        self.tx.subscribe()
    }

    /// The latest scan, if any.
    pub fn last(&self) -> Option<Arc<ScanEvent>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Connection state of one scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScannerState {
    /// The port is open.
    Connected,
    /// The port is gone or could not be opened; being retried.
    Disconnected,
}

/// One scanner's entry in `/v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScannerStatus {
    /// Scanner name.
    pub name: String,
    /// Connected or not.
    pub state: ScannerState,
    /// Device path.
    pub port: String,
    /// Why it is disconnected, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The states of all scanners, shared between the scanner threads and the API.
#[derive(Clone, Debug, Default)]
pub struct ScannerStates(Arc<Mutex<Vec<ScannerStatus>>>);

impl ScannerStates {
    /// Registers a scanner (initially disconnected) and returns its index.
    pub fn register(&self, name: &str, port: &str) -> usize {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        v.push(ScannerStatus {
            name: name.to_owned(),
            state: ScannerState::Disconnected,
            port: port.to_owned(),
            error: None,
        });
        v.len() - 1
    }

    /// Updates scanner `index`.
    pub fn set(&self, index: usize, state: ScannerState, error: Option<String>) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = v.get_mut(index) {
            s.state = state;
            s.error = error;
        }
    }

    /// A snapshot of every scanner.
    pub fn snapshot(&self) -> Vec<ScannerStatus> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
