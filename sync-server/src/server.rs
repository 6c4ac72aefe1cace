//! `sync-server run`: binds the listener (HTTPS, or plain HTTP only where allowed),
//! serves the API, runs the periodic job, and shuts down gracefully when the
//! cancellation token fires (SIGINT/SIGTERM), finishing requests under way.

use crate::dashboard::session::{BadHash, Password};
use crate::dashboard::{self, Dashboard};
use crate::http::metrics::MetricsAccess;
use crate::http::{self, AppState};
use crate::jobs;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::flow::escrow::AbandonAfter;
use config::clock::Clock;
use config::server::{AdminSection, ServerConfig, TlsSection};
use http_serve::tls::{self, GatedTlsListener, TlsError};
use http_serve::{ConnectionLimits, Gate, GatedListener};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

/// What `run` needs besides the store.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to bind (port 0: any free port; the bound address is printed).
    pub listen: SocketAddr,
    /// Certificate and key; `None`: plain HTTP.
    pub tls: Option<TlsSection>,
    /// Plain HTTP on a non-loopback address is allowed (TLS terminated in front).
    pub allow_plain_http: bool,
    /// Largest request body after decompression.
    pub max_body_bytes: usize,
    /// Connection cap and header (and idle, and TLS handshake) timeout.
    pub connections: ConnectionLimits,
    /// Most balances per pull.
    pub pull_page_size: u32,
    /// Period of the ledger job.
    pub job_interval: Duration,
    /// The dashboard's login; `None`: no dashboard.
    pub admin: Option<AdminSection>,
    /// How long a lease HQ grants lives.
    pub lease_duration: time::Duration,
    /// When the job takes back what tills abandoned.
    pub abandon_after: AbandonAfter,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Terminal tokens and balances must not cross a network in clear text.
    #[error(
        "refusing plain HTTP on non-loopback address {0}: configure [tls] cert_file/key_file, \
         or set allow_plain_http = true if a TLS-terminating proxy sits in front"
    )]
    PlainHttpRefused(SocketAddr),
    /// TLS files are bad.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's refusal.
        source: std::io::Error,
    },
    /// The server loop failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    /// `[admin]` is unusable.
    #[error(transparent)]
    Admin(#[from] BadHash),
}

/// The connection limits `sync-server.toml` sets.
pub fn connection_limits(config: &ServerConfig) -> ConnectionLimits {
    ConnectionLimits {
        max_connections: config.max_connections,
        header_timeout: Duration::from_secs(config.header_timeout_secs),
    }
}

/// Checks that the listen address may be served without TLS.
pub fn check_plain_http(options: &ServeOptions) -> Result<(), ServeError> {
    if options.tls.is_none() && !options.listen.ip().is_loopback() && !options.allow_plain_http {
        return Err(ServeError::PlainHttpRefused(options.listen));
    }
    Ok(())
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    store: Arc<dyn Store>,
    clock: Clock,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    check_plain_http(&options)?;
    let tls_config = options
        .tls
        .as_ref()
        .map(|t| tls::server_config(&t.cert_file, &t.key_file))
        .transpose()?;
    let tcp = listen(options.listen).map_err(|source| ServeError::Bind {
        addr: options.listen,
        source,
    })?;
    let local = tcp.local_addr()?;
    let metrics_access = MetricsAccess {
        trust_loopback: !options.allow_plain_http,
        password: options
            .admin
            .as_ref()
            .map(|a| Password::new(&a.password_hash))
            .transpose()?,
    };
    let mut app = http::router(AppState {
        store: Arc::clone(&store),
        clock,
        pull_page_size: options.pull_page_size,
        max_body_bytes: options.max_body_bytes,
        lease_duration: options.lease_duration,
        metrics: Arc::new(Metrics::new(store.pool_metrics())),
        metrics_access: Arc::new(metrics_access),
        known_tokens: Arc::default(),
    });
    if let Some(admin) = &options.admin {
        // Browsers reach the dashboard over TLS here, or at a proxy in front when
        // plain HTTP is allowed off loopback: the cookies are then Secure.
        let secure = tls_config.is_some() || options.allow_plain_http;
        let dashboard = Dashboard::new(Arc::clone(&store), clock, admin, secure)?;
        app = app.merge(dashboard::router(Arc::new(dashboard)));
    }
    let job = tokio::spawn(jobs::run_periodically(
        Arc::clone(&store),
        clock,
        options.job_interval,
        options.abandon_after,
        shutdown.child_token(),
    ));
    let scheme = if tls_config.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(address = %local, scheme, "sync-server listening");
    // Scripts and tests read the bound address (port 0 picks a free one) from stdout.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "sync-server listening on {scheme}://{local}");
    let _ = stdout.flush();
    http_serve::systemd::ready();
    http_serve::systemd::spawn_watchdog(shutdown.clone());
    let limits = options.connections.fitted_to_fd_limit();
    let gate = Gate::new(limits.max_connections);
    match tls_config {
        Some(config) => {
            let listener =
                GatedTlsListener::new(tcp, gate, config, limits.header_timeout, shutdown.clone())?;
            http_serve::serve(listener, app, limits, shutdown.clone()).await;
        }
        None => {
            let listener = GatedListener::new(tcp, gate);
            http_serve::serve(listener, app, limits, shutdown.clone()).await;
        }
    }
    shutdown.cancel();
    http_serve::systemd::stopping();
    let _ = job.await;
    tracing::info!("sync-server stopped");
    Ok(())
}

/// Connections the kernel queues for HQ before it accepts them (capped by the
/// kernel's `net.core.somaxconn`). With the usual 128, a burst of tills connecting at
/// once (every till of a chain after an outage or a restart; the benchmark's 500)
/// overflowed the queue while HQ's threads were busy, and each dropped SYN cost its
/// till a one-second retransmission: seconds-long pushes in the benchmark's tails.
const ACCEPT_BACKLOG: u32 = 4096;

/// A listener on `addr` with [`ACCEPT_BACKLOG`] (address reuse as `TcpListener::bind`).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(listen: &str, allow: bool) -> ServeOptions {
        ServeOptions {
            listen: listen.parse().unwrap(),
            tls: None,
            allow_plain_http: allow,
            max_body_bytes: 1024,
            connections: ConnectionLimits {
                max_connections: 16,
                header_timeout: Duration::from_secs(30),
            },
            pull_page_size: 10,
            job_interval: Duration::from_secs(60),
            admin: None,
            lease_duration: crate::store::flow::escrow::DEFAULT_LEASE_DURATION,
            abandon_after: AbandonAfter::default(),
        }
    }

    /// 300 tills connecting while HQ accepts none all get their connection from the
    /// kernel's queue; with a backlog of 128 the 130th SYN is dropped and its
    /// `connect` never completes (the timeout is only the test's bound).
    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_queue_instead_of_being_dropped() {
        // The kernel caps every backlog at `somaxconn` (128 before Linux 5.4).
        let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if cap.is_some_and(|cap| cap < 300) {
            eprintln!("skipped: net.core.somaxconn is {cap:?}, below the burst");
            return;
        }
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for i in 0..300 {
            let connected = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::net::TcpStream::connect(addr),
            )
            .await;
            assert!(
                matches!(connected, Ok(Ok(_))),
                "connection {i} was not queued"
            );
            held.push(connected);
        }
        drop(listener);
    }

    #[test]
    fn plain_http_is_refused_off_loopback_unless_allowed() {
        assert!(check_plain_http(&options("127.0.0.1:8080", false)).is_ok());
        assert!(check_plain_http(&options("[::1]:8080", false)).is_ok());
        let err = check_plain_http(&options("0.0.0.0:8080", false)).unwrap_err();
        assert!(err.to_string().contains("allow_plain_http"));
        assert!(check_plain_http(&options("0.0.0.0:8080", true)).is_ok());
    }
}
