//! A TCP proxy between a PostgreSQL client and the server that counts round trips on
//! the wire: a round trip (a "flight") begins when the client sends a message while
//! nothing it sent before is still unanswered. Statements a client pipelines (sends
//! before the first answer) are one flight; a statement sent after waiting for an
//! answer is another.
//!
//! "Unanswered" is read from the protocol itself: every `Sync` and simple `Query` the
//! client sends (and its startup message) is answered by exactly one `ReadyForQuery`
//! from the server, so the proxy counts both and a flight ends when they are even.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The SSL and GSSAPI encryption requests: untyped, answered by one byte.
const ENCRYPTION_REQUESTS: [u32; 2] = [80_877_103, 80_877_104];

/// A running counting proxy.
pub struct FlightCounter {
    /// Where clients connect.
    pub addr: SocketAddr,
    flights: Arc<AtomicU64>,
    /// `Execute` messages: statements of the extended protocol.
    executes: Arc<AtomicU64>,
}

impl FlightCounter {
    /// Starts a proxy to the server at `upstream` (`host:port`).
    pub fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let flights = Arc::new(AtomicU64::new(0));
        let executes = Arc::new(AtomicU64::new(0));
        let counted = Counts {
            flights: flights.clone(),
            executes: executes.clone(),
        };
        let upstream = upstream.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (counted, upstream) = (counted.clone(), upstream.clone());
                std::thread::spawn(move || {
                    if let Ok(server) = TcpStream::connect(&upstream) {
                        pipe(client, server, &counted);
                    }
                });
            }
        });
        Ok(Self {
            addr,
            flights,
            executes,
        })
    }

    /// Starts a proxy to the server of the `postgres://` URL `url`, and answers it
    /// with `url` rewritten to go through the proxy.
    pub fn for_url(url: &str) -> std::io::Result<(Self, String)> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
        let (auth, hostpath) = rest.rsplit_once('@').map_or(("", rest), |(a, h)| (a, h));
        let end = hostpath.find(['/', '?']).unwrap_or(hostpath.len());
        let proxy = Self::start(&hostpath[..end])?;
        let at = if auth.is_empty() { "" } else { "@" };
        let url = format!("{scheme}://{auth}{at}{}{}", proxy.addr, &hostpath[end..]);
        Ok((proxy, url))
    }

    /// Flights since the start or the last [`Self::reset`], over every connection.
    pub fn flights(&self) -> u64 {
        self.flights.load(Ordering::SeqCst)
    }

    /// Statements run through the extended protocol (`Execute` messages) since the
    /// start or the last [`Self::reset`], over every connection. A simple `Query`
    /// (`START TRANSACTION`, `COMMIT`) is not one of them.
    pub fn executes(&self) -> u64 {
        self.executes.load(Ordering::SeqCst)
    }

    /// Starts counting from zero.
    pub fn reset(&self) {
        self.flights.store(0, Ordering::SeqCst);
        self.executes.store(0, Ordering::SeqCst);
    }
}

/// The counters every connection adds to.
#[derive(Clone)]
struct Counts {
    flights: Arc<AtomicU64>,
    executes: Arc<AtomicU64>,
}

/// What one connection has in flight.
#[derive(Default)]
struct InFlight {
    /// `Sync`, `Query` and startup messages sent, minus `ReadyForQuery` received.
    unanswered: u64,
    /// A flight is open (counted, not yet fully answered).
    open: bool,
    /// The server's next answer is the single byte of an encryption request's.
    single_byte: bool,
}

fn pipe(client: TcpStream, server: TcpStream, counts: &Counts) {
    let state = Arc::new(Mutex::new(InFlight::default()));
    let (Ok(client_in), Ok(server_in)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let (s, f) = (state.clone(), counts.clone());
    let upstream = std::thread::spawn(move || {
        let mut parser = Parser::client();
        copy(client_in, server, |chunk| {
            parser.feed(chunk, |kind, body| {
                let mut st = s.lock().unwrap_or_else(PoisonError::into_inner);
                from_client(&mut st, kind, body, &f);
            });
        });
    });
    let mut parser = Parser::server();
    copy(server_in, client, |chunk| {
        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.single_byte && !chunk.is_empty() {
            st.single_byte = false;
            parser.skip = 1;
        }
        drop(st);
        parser.feed(chunk, |kind, _| {
            if kind == Some(b'Z') {
                let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
                st.unanswered = st.unanswered.saturating_sub(1);
                if st.unanswered == 0 {
                    st.open = false;
                }
            }
        });
    });
    let _ = upstream.join();
}

fn from_client(st: &mut InFlight, kind: Option<u8>, body: &[u8], counts: &Counts) {
    let flights = &counts.flights;
    if kind == Some(b'X') {
        return; // Terminate: never answered.
    }
    if kind == Some(b'E') {
        counts.executes.fetch_add(1, Ordering::SeqCst);
    }
    if kind.is_none() {
        let code = body
            .get(..4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if ENCRYPTION_REQUESTS.contains(&code) {
            st.single_byte = true;
            flights.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
    if !st.open {
        st.open = true;
        flights.fetch_add(1, Ordering::SeqCst);
    }
    if matches!(kind, None | Some(b'S' | b'Q')) {
        st.unanswered += 1;
    }
}

/// Forwards `from` to `to`, showing each chunk to `seen` before it is forwarded (so
/// what the proxy counts always precedes what the other side can answer).
fn copy(mut from: TcpStream, mut to: TcpStream, mut seen: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Splits a protocol stream into messages: a type byte (none for the client's
/// startup-phase messages) and a big-endian length that counts itself.
struct Parser {
    pending: Vec<u8>,
    /// The client's messages are untyped until its startup message.
    untyped: bool,
    /// Raw bytes to pass over first (the answer to an encryption request).
    skip: usize,
}

impl Parser {
    fn client() -> Self {
        Self {
            pending: Vec::new(),
            untyped: true,
            skip: 0,
        }
    }

    fn server() -> Self {
        Self {
            pending: Vec::new(),
            untyped: false,
            skip: 0,
        }
    }

    fn feed(&mut self, chunk: &[u8], mut message: impl FnMut(Option<u8>, &[u8])) {
        let skipped = self.skip.min(chunk.len());
        self.skip -= skipped;
        self.pending.extend_from_slice(&chunk[skipped..]);
        loop {
            let header = if self.untyped { 4 } else { 5 };
            let Some(len) = self
                .pending
                .get(header - 4..header)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            else {
                return;
            };
            let total = header - 4 + len.max(4);
            if self.pending.len() < total {
                return;
            }
            let kind = (!self.untyped).then(|| self.pending[0]);
            message(kind, &self.pending[header..total]);
            if self.untyped {
                let code = self
                    .pending
                    .get(4..8)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                // After the startup message (not an encryption request) every
                // message is typed.
                self.untyped = ENCRYPTION_REQUESTS.contains(&code);
            }
            self.pending.drain(..total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_split_across_chunks_and_the_startup_is_untyped() {
        let mut p = Parser::client();
        let mut seen = Vec::new();
        // Startup: length 8, protocol 3.0.
        let startup = [0, 0, 0, 8, 0, 3, 0, 0];
        // Parse (len 6: 2 bytes body), then Sync.
        let parse = [b'P', 0, 0, 0, 6, 1, 2];
        let sync = [b'S', 0, 0, 0, 4];
        let stream: Vec<u8> = [&startup[..], &parse, &sync].concat();
        for chunk in stream.chunks(3) {
            p.feed(chunk, |k, body| seen.push((k, body.len())));
        }
        assert_eq!(seen, vec![(None, 4), (Some(b'P'), 2), (Some(b'S'), 0)]);
    }

    #[test]
    fn a_pipelined_flight_counts_once_and_a_wait_starts_another() {
        let counts = Counts {
            flights: Arc::new(AtomicU64::new(0)),
            executes: Arc::new(AtomicU64::new(0)),
        };
        let mut st = InFlight::default();
        for kind in [b'P', b'B', b'E', b'S', b'B', b'E', b'S'] {
            from_client(&mut st, Some(kind), &[], &counts);
        }
        let flights = || counts.flights.load(Ordering::SeqCst);
        assert_eq!((flights(), st.unanswered), (1, 2));
        // Two statements; a simple query is not counted as one.
        assert_eq!(counts.executes.load(Ordering::SeqCst), 2);
        // Both answered: the next message is a new flight.
        st.unanswered = 0;
        st.open = false;
        from_client(&mut st, Some(b'Q'), &[], &counts);
        assert_eq!(flights(), 2);
        assert_eq!(counts.executes.load(Ordering::SeqCst), 2);
    }
}
