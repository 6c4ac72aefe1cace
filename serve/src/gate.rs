//! The connection cap: a permit per open connection, held by the connection's I/O
//! object and returned when it is dropped.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a connection beyond the cap is told before it is closed.
const OVER_CAP_ANSWER: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\n",
    "Content-Type: application/json\r\n",
    "Retry-After: 1\r\n",
    "Connection: close\r\n",
    "Content-Length: 98\r\n",
    "\r\n",
    r#"{"error":{"code":"too_many_connections","message":"too many open connections; retry in a moment"}}"#
);

/// How long a refused connection may take to receive its answer.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Over-cap connections that may be refused patiently at once: waited for until their
/// request starts (over TLS, given a handshake first), so an HTTP client reads the
/// refusal as the answer to its request; an answer that arrives before the request
/// is written looks like a broken connection to it. Beyond this many, a connection is
/// answered at once: refusing must stay cheaper than serving.
pub(crate) const PATIENT_REFUSALS: usize = 32;

/// How long a patient refusal waits for the request to start.
const REQUEST_START_TIMEOUT: Duration = Duration::from_secs(1);

/// Waits until the peer has sent something (the start of its request), or a short
/// while.
pub(crate) async fn request_start<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut start = [0u8; 1024];
    let _ = tokio::time::timeout(REQUEST_START_TIMEOUT, stream.read(&mut start)).await;
}

/// The cap on connections open at once. Cheap to clone; clones share the cap.
#[derive(Debug, Clone)]
pub struct Gate {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Gate {
    /// A gate letting `max_connections` connections through at once.
    pub fn new(max_connections: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_connections)),
            max: max_connections,
        }
    }

    /// Lets `io` through, holding a permit until it is dropped, or gives it back when
    /// the cap is reached.
    pub fn admit<S>(&self, io: S) -> Result<Admitted<S>, S> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Ok(Admitted {
                io,
                _permit: permit,
            }),
            Err(_) => Err(io),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }
}

/// A connection's I/O, holding its place under the cap.
#[derive(Debug)]
pub struct Admitted<S> {
    io: S,
    _permit: OwnedSemaphorePermit,
}

impl<S> Admitted<S> {
    /// The connection.
    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Admitted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Admitted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Answers a connection beyond the cap (plain, or after its TLS handshake) with a
/// JSON 503 and closes it, without reading its request (the answer is the same
/// whatever it asked).
pub async fn refuse_over_cap<S: AsyncWrite + Unpin>(mut stream: S) {
    let answer = async {
        stream.write_all(OVER_CAP_ANSWER.as_bytes()).await?;
        stream.shutdown().await
    };
    // A peer that does not even read its refusal is simply dropped.
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, answer).await;
}

/// A plain TCP listener whose connections pass through a [`Gate`]; those beyond the
/// cap are refused by [`refuse_over_cap`] on their own task.
#[derive(Debug)]
pub struct GatedListener {
    tcp: TcpListener,
    gate: Gate,
    refusals: Arc<Semaphore>,
}

impl GatedListener {
    /// Gates `tcp`'s connections with `gate`.
    pub fn new(tcp: TcpListener, gate: Gate) -> Self {
        Self {
            tcp,
            gate,
            refusals: Arc::new(Semaphore::new(PATIENT_REFUSALS)),
        }
    }
}

/// Refuses a plain-HTTP connection beyond the cap, patiently when a place for that is
/// free (see [`PATIENT_REFUSALS`]).
async fn refuse_plain(mut stream: TcpStream, refusals: Arc<Semaphore>) {
    let _patient = match refusals.try_acquire_owned() {
        Ok(permit) => {
            request_start(&mut stream).await;
            Some(permit)
        }
        Err(_) => None,
    };
    refuse_over_cap(stream).await;
}

impl axum::serve::Listener for GatedListener {
    type Io = Admitted<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.tcp.accept().await {
                Ok((stream, peer)) => {
                    // Answers are small and latency matters more than packet count.
                    let _ = stream.set_nodelay(true);
                    match self.gate.admit(stream) {
                        Ok(admitted) => return (admitted, peer),
                        Err(stream) => {
                            tokio::spawn(refuse_plain(stream, Arc::clone(&self.refusals)));
                        }
                    }
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_one_complete_json_answer() {
        let (head, body) = OVER_CAP_ANSWER.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("\"too_many_connections\""));
        assert!(body.starts_with('{') && body.ends_with('}'));
    }

    #[test]
    fn the_gate_admits_up_to_its_cap_and_frees_a_place_when_a_connection_drops() {
        let gate = Gate::new(2);
        let a = gate.admit(1).unwrap();
        let _b = gate.admit(2).unwrap();
        assert_eq!(gate.admit(3).unwrap_err(), 3);
        assert_eq!(gate.open(), 2);
        drop(a);
        assert_eq!(gate.open(), 1);
        assert!(gate.admit(4).is_ok());
    }
}
