//! HTTPS with rustls (ring provider, no OpenSSL, no aws-lc): certificate loading and
//! a TLS listener whose connections pass through a [`Gate`], for either server.
//!
//! The gate is checked on the bare TCP connection, before any handshake work, and the
//! place is held through the handshake: a flood of connections that never finish
//! their handshake fills the cap, not the file descriptors. Handshakes run in their
//! own tasks under a deadline, so a slow or hostile client never holds up the accept
//! loop; finished connections are handed to the server through a channel.

use crate::gate::{Admitted, Gate, PATIENT_REFUSALS, refuse_over_cap, request_start};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// How long an over-cap client may take over the handshake of its refusal and the
/// start of its request.
const REFUSAL_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no certificate.
    #[error("TLS certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key file could not be read or holds no private key.
    #[error("TLS private key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the pair (key does not match the certificate, …).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Builds the server configuration from PEM files: HTTP/1.1, TLS 1.2 and 1.3.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate {
            path: cert_file.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate {
            path: cert_file.to_owned(),
            reason: "no certificate in the file".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::Key {
        path: key_file.to_owned(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A connection that passed the gate and finished its handshake.
pub type TlsConnection = TlsStream<Admitted<TcpStream>>;

/// A listener that yields gated connections whose TLS handshake succeeded.
#[derive(Debug)]
pub struct GatedTlsListener {
    connections: mpsc::Receiver<(TlsConnection, SocketAddr)>,
    local: SocketAddr,
}

impl GatedTlsListener {
    /// Starts accepting on `tcp` through `gate`; a client must finish its handshake
    /// within `handshake_timeout`. Stops when `shutdown` is cancelled or the listener
    /// is dropped.
    pub fn new(
        tcp: TcpListener,
        gate: Gate,
        config: Arc<ServerConfig>,
        handshake_timeout: Duration,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let refusals = Arc::new(Semaphore::new(PATIENT_REFUSALS));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tx.closed() => break,
                    accepted = tcp.accept() => accepted,
                };
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly
                        // instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let admitted = match gate.admit(stream) {
                    Ok(admitted) => admitted,
                    Err(stream) => {
                        tokio::spawn(refuse_over_cap_tls(
                            stream,
                            acceptor.clone(),
                            Arc::clone(&refusals),
                        ));
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(admitted)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            connections: rx,
            local,
        })
    }
}

/// Tells an over-cap HTTPS client `too_many_connections` when a refusal handshake is
/// free, or closes it at once when many are refused together (a flood).
async fn refuse_over_cap_tls(stream: TcpStream, acceptor: TlsAcceptor, refusals: Arc<Semaphore>) {
    let Ok(_refusing) = refusals.try_acquire_owned() else {
        return;
    };
    let handshake = async {
        let mut tls = acceptor.accept(stream).await.ok()?;
        request_start(&mut tls).await;
        Some(tls)
    };
    if let Ok(Some(tls)) = tokio::time::timeout(REFUSAL_HANDSHAKE_TIMEOUT, handshake).await {
        refuse_over_cap(tls).await;
    }
}

impl axum::serve::Listener for GatedTlsListener {
    type Io = TlsConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(conn) => conn,
            // The accept loop ended (shutdown): no more connections, ever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
