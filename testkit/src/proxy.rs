//! A TCP proxy that injects network faults between the agent and HQ.
//!
//! Every connection is piped to the upstream server; the current [`Fault`] decides
//! what happens to it. Faults can be switched while connections are open.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass everything.
    Pass,
    /// Refuse: close new connections at once (HQ down).
    Refuse,
    /// Accept and forward nothing, never answer (a black hole).
    Blackhole,
    /// Forward the request; when HQ's answer starts, close both sides without
    /// forwarding it (HQ committed, the agent never learns it).
    DropResponse,
    /// Forward only the first `n` bytes of HQ's answer, then close.
    TruncateResponse(usize),
    /// Forward the first `n` bytes of the request, then reset (RST) the connection.
    ResetRequest(usize),
    /// Delay every chunk by this many milliseconds.
    Delay(u64),
}

/// A running proxy.
pub struct Proxy {
    /// The address agents should use.
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    responses_dropped: Arc<AtomicU64>,
    swallowed: Arc<AtomicU64>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (host:port).
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let dropped = Arc::new(AtomicU64::new(0));
        let swallowed = Arc::new(AtomicU64::new(0));
        let upstream = upstream.to_owned();
        let counters = Counters {
            dropped: dropped.clone(),
            swallowed: swallowed.clone(),
        };
        let f = fault.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (f, c, up) = (f.clone(), counters.clone(), upstream.clone());
                std::thread::spawn(move || handle(client, &up, &f, &c));
            }
        });
        Self {
            addr,
            fault,
            responses_dropped: dropped,
            swallowed,
        }
    }

    /// `http://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the fault for new traffic.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// How many answers `DropResponse`/`TruncateResponse` swallowed so far.
    pub fn responses_dropped(&self) -> u64 {
        self.responses_dropped.load(Ordering::SeqCst)
    }

    /// How many connections and chunks of traffic `Blackhole` swallowed so far: a
    /// client request is held by the black hole once this moves.
    pub fn swallowed(&self) -> u64 {
        self.swallowed.load(Ordering::SeqCst)
    }
}

/// What the connection threads count.
#[derive(Clone)]
struct Counters {
    dropped: Arc<AtomicU64>,
    swallowed: Arc<AtomicU64>,
}

fn current(fault: &Mutex<Fault>) -> Fault {
    *fault.lock().unwrap()
}

fn handle(client: TcpStream, upstream: &str, fault: &Arc<Mutex<Fault>>, counters: &Counters) {
    match current(fault) {
        Fault::Refuse => {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Fault::Blackhole => {
            counters.swallowed.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(120));
            return;
        }
        _ => {}
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (f_up, swallowed) = (fault.clone(), counters.swallowed.clone());
    let up = std::thread::spawn(move || pipe_request(c2, s2, &f_up, &swallowed));
    pipe_response(server, client, fault, counters);
    let _ = up.join();
}

/// Client -> server.
fn pipe_request(
    mut from: TcpStream,
    mut to: TcpStream,
    fault: &Mutex<Fault>,
    swallowed: &AtomicU64,
) {
    let peer = from.try_clone().ok();
    let mut buf = [0u8; 16 * 1024];
    let mut sent = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match current(fault) {
            // HQ going down also breaks connections that were already open.
            Fault::Refuse => break,
            Fault::Blackhole => {
                swallowed.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            Fault::ResetRequest(limit) => {
                let take = limit.saturating_sub(sent).min(n);
                let _ = to.write_all(&buf[..take]);
                // SO_LINGER 0 makes close send RST instead of FIN.
                let _ = socket2::SockRef::from(&from).set_linger(Some(Duration::ZERO));
                let _ = socket2::SockRef::from(&to).set_linger(Some(Duration::ZERO));
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
            Fault::Delay(ms) => std::thread::sleep(Duration::from_millis(ms)),
            _ => {}
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let _ = to.shutdown(Shutdown::Both);
    if let Some(p) = peer {
        let _ = p.shutdown(Shutdown::Both);
    }
}

/// Server -> client.
fn pipe_response(
    mut from: TcpStream,
    mut to: TcpStream,
    fault: &Mutex<Fault>,
    counters: &Counters,
) {
    let mut buf = [0u8; 16 * 1024];
    let mut forwarded = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match current(fault) {
            Fault::Refuse => break,
            Fault::Blackhole => {
                counters.swallowed.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            Fault::DropResponse => {
                counters.dropped.fetch_add(1, Ordering::SeqCst);
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
            Fault::TruncateResponse(limit) => {
                let take = limit.saturating_sub(forwarded).min(n);
                let _ = to.write_all(&buf[..take]);
                counters.dropped.fetch_add(1, Ordering::SeqCst);
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
            Fault::Delay(ms) => std::thread::sleep(Duration::from_millis(ms)),
            _ => {}
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        forwarded += n;
    }
    let _ = to.shutdown(Shutdown::Both);
}
