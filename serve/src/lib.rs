//! Serving an axum router over HTTP/1.1 with connection limits, for both servers (the
//! agent's till API and HQ's sync API).
//!
//! `axum::serve` keeps every connection for as long as the peer likes: idle or
//! half-sent requests pile up until the process runs out of file descriptors and
//! nobody is answered. Here:
//!
//! - a [`Gate`] caps the connections open at once; one beyond the cap is answered at
//!   once with `503 {"error":{"code":"too_many_connections",…}}` and closed (over TLS,
//!   closed before any handshake work), so a flood cannot take the descriptors the
//!   journal and the well-behaved clients need;
//! - a connection must send a request's complete headers within the header timeout
//!   of being accepted or of its previous answer (hyper's header read timeout), so
//!   idle keep-alive connections and slowloris senders are closed;
//! - shutdown stops accepting, lets requests under way finish and closes idle
//!   connections.
//!
//! [`systemd`] tells the service manager when the server is ready and that it is
//! alive (`Type=notify`, `WatchdogSec=`).
//!
//! It owns no routes: the caller passes a router and an [`axum::serve::Listener`]
//! whose connections went through the gate, a [`GatedListener`] for plain HTTP or a
//! [`tls::GatedTlsListener`] for HTTPS.

mod bearer;
mod gate;
pub mod systemd;
pub mod tls;

pub use bearer::bearer_token;
pub use gate::{Admitted, Gate, GatedListener, refuse_over_cap};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tower::Layer;

/// The limits of one server, from its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; more are refused.
    pub max_connections: usize,
    /// Time for a request's headers to arrive, counted from the connection's start or
    /// its previous answer: also how long an idle keep-alive connection stays open.
    pub header_timeout: Duration,
}

/// File descriptors kept free beyond the connection cap: the journal or database,
/// logs, outgoing connections to HQ, scanners.
const RESERVED_FDS: u64 = 64;

impl ConnectionLimits {
    /// Raises this process's soft limit of open files as far as the hard limit
    /// allows, and returns the limits with `max_connections` lowered if the
    /// descriptors still cannot hold that many connections (with a warning): a cap
    /// above the descriptor limit would let a flood exhaust descriptors first.
    pub fn fitted_to_fd_limit(self) -> Self {
        let available = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(soft) => soft.saturating_sub(RESERVED_FDS),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the open file limit; keeping max_connections");
                return self;
            }
        };
        let fitted = usize::try_from(available)
            .map_or(self.max_connections, |a| self.max_connections.min(a.max(1)));
        if fitted < self.max_connections {
            tracing::warn!(
                configured = self.max_connections,
                used = fitted,
                "the open file limit is too low for max_connections; using fewer"
            );
        }
        Self {
            max_connections: fitted,
            ..self
        }
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then lets requests under
/// way finish. Each connection gets the header (and idle) timeout of `limits`; the
/// cap is the listener's [`Gate`].
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) where
    L: axum::serve::Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    L::Addr: Clone + Send + Sync + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let (io, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        // Handlers may ask who is calling (axum's `ConnectInfo`), as under `axum::serve`
        // with `into_make_service_with_connect_info`.
        let service = axum::Extension(ConnectInfo(peer)).layer(router.clone());
        let service = TowerToHyperService::new(service);
        let conn = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            // A peer that went away or timed out is routine, not an error to report.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
