//! Scanners played by tests: PTY pairs (the agent opens the slave side as it would
//! open `/dev/ttyACM0`, the test writes to the master), and a till listening on
//! `GET /v1/scans`. Shared by the scanner tests and the benchmark.

use crate::agent::Agent;
use crate::wait_for;
use serde_json::Value;
use serialport::{SerialPort, TTYPort};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const WAIT: Duration = Duration::from_secs(30);

/// A spawned process inherits every descriptor without close-on-exec, and
/// `TTYPort::pair` opens both sides of a PTY without it: an agent started by a
/// parallel test would keep our PTY master open, and "unplugging" (closing it) would
/// not hang up. PTYs are made (and re-opened close-on-exec) under the write lock,
/// processes are spawned under the read lock.
pub static SPAWN_LOCK: RwLock<()> = RwLock::new(());

pub fn start_agent(dir: &Path, config: &str) -> Agent {
    let _spawning = SPAWN_LOCK.read().unwrap_or_else(PoisonError::into_inner);
    Agent::start(dir, config)
}

pub fn restart_agent(agent: &mut Agent) {
    let _spawning = SPAWN_LOCK.read().unwrap_or_else(PoisonError::into_inner);
    agent.restart();
}

/// A scanner played by the test: the master side of a PTY pair.
pub struct Scanner {
    /// The side the test writes to.
    pub master: TTYPort,
    /// Kept open so the slave side exists until the test unplugs the scanner.
    _slave: TTYPort,
    /// The device path the agent opens.
    pub path: PathBuf,
}

impl Scanner {
    pub fn plug() -> Self {
        let _creating = SPAWN_LOCK.write().unwrap_or_else(PoisonError::into_inner);
        let (master, slave) = TTYPort::pair().expect("a PTY pair");
        // Duplicates are made with F_DUPFD_CLOEXEC; the originals close on drop.
        let mut master = master.try_clone_native().unwrap();
        let slave = slave.try_clone_native().unwrap();
        // A slow agent must not make the test's writes time out.
        master.set_timeout(WAIT).unwrap();
        let path = PathBuf::from(slave.name().expect("PTY slave path"));
        Self {
            master,
            _slave: slave,
            path,
        }
    }

    /// Plugs in a scanner reachable through `link`, as udev's by-id links are.
    pub fn plug_at(link: &Path) -> Self {
        let scanner = Self::plug();
        std::os::unix::fs::symlink(&scanner.path, link).unwrap();
        scanner
    }

    /// Unplugs the scanner behind `link`. The link goes first, so that once the PTY
    /// number is free (another test may get it) the agent cannot reach it through it.
    pub fn unplug_at(self, link: &Path) {
        std::fs::remove_file(link).unwrap();
        drop(self);
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Sends one code ending in `\r`.
    pub fn scan(&mut self, code: &str) {
        self.send(format!("{code}\r").as_bytes());
    }
}

/// A till listening on `GET /v1/scans`: a raw HTTP/1.1 client that decodes the
/// chunked body and parses each `data:` line on its own thread.
pub struct Listener {
    events: mpsc::Receiver<Value>,
    stream: TcpStream,
}

impl Listener {
    /// Connects and returns once the response head arrived, i.e. once the agent has
    /// subscribed this listener: every scan published from then on reaches it.
    pub fn connect(agent: &Agent) -> Self {
        let stream = open_stream(agent);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut chunked = false;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let lower = line.to_ascii_lowercase();
            chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
            if lower.starts_with("content-type:") {
                assert!(lower.contains("text/event-stream"), "{line}");
            }
            if line == "\r\n" {
                break;
            }
        }
        assert!(chunked, "an endless SSE body is chunked");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || read_events(reader, &tx));
        Self { events, stream }
    }

    /// The next scan event.
    pub fn next(&self) -> Value {
        self.events
            .recv_timeout(WAIT)
            .expect("a scan event on /v1/scans")
    }

    /// True once the agent ended the stream.
    pub fn ended(&self) -> bool {
        loop {
            match self.events.recv_timeout(WAIT) {
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return true,
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A listener that reads the response head (so it is subscribed) and then nothing:
/// a till that hung.
pub fn connect_stalled(agent: &Agent) -> TcpStream {
    let stream = open_stream(agent);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            return stream;
        }
    }
}

fn open_stream(agent: &Agent) -> TcpStream {
    let addr = agent.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(
            format!("GET /v1/scans HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    stream
}

/// Decodes the chunked body and sends every `data:` line's JSON; returns at the end.
fn read_events(mut reader: BufReader<TcpStream>, tx: &mpsc::Sender<Value>) {
    let mut pending = Vec::new();
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            return;
        }
        let size = size.trim().split(';').next().unwrap_or("");
        let Ok(size) = usize::from_str_radix(size, 16) else {
            return;
        };
        if size == 0 {
            return;
        }
        let mut chunk = vec![0; size + 2];
        if reader.read_exact(&mut chunk).is_err() {
            return;
        }
        pending.extend_from_slice(&chunk[..size]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(data) = line.strip_prefix("data:") {
                let event = serde_json::from_str(data.trim()).expect("scan JSON");
                if tx.send(event).is_err() {
                    return;
                }
            }
        }
    }
}

/// One `[[scanner]]` table.
pub fn scanner_toml(name: &str, port: &Path, extra: &str) -> String {
    format!(
        "\n[[scanner]]\nname = \"{name}\"\nport = \"{}\"\n{extra}\n",
        port.display()
    )
}

pub fn config(scanners: &[String]) -> String {
    let mut config = Agent::standalone_config();
    for s in scanners {
        config.push_str(s);
    }
    config
}

pub fn scanner_states(agent: &Agent) -> Vec<(String, String)> {
    agent.health()["scanners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub fn wait_state(agent: &Agent, name: &str, state: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let health = agent.health();
        let found = health["scanners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name && s["state"] == state)
            .cloned();
        if let Some(found) = found {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for scanner {name} to be {state}: {health}\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_all_connected(agent: &Agent) {
    wait_for(WAIT, "every scanner to be connected", || {
        let states = scanner_states(agent);
        states
            .iter()
            .all(|(_, state)| state == "connected")
            .then_some(())
    });
}

/// `pos_agent_scans_total` for one scanner and result.
pub fn scans_counted(agent: &Agent, scanner: &str, result: &str) -> u64 {
    let metrics = agent.get("/metrics").text;
    let prefix = format!("pos_agent_scans_total{{scanner=\"{scanner}\",result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

pub fn assert_scan(event: &Value, scanner: &str, symbology: &str, card: &str) {
    assert_eq!(event["scanner"], scanner, "{event}");
    assert_eq!(event["symbology"], symbology, "{event}");
    assert_eq!(event["card"], card, "{event}");
    assert!(
        event["at"].as_str().is_some_and(|at| at.ends_with('Z')),
        "{event}"
    );
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// An EAN-13 with its check digit, from twelve digits.
pub fn ean13(first12: &str) -> String {
    let sum: u32 = first12
        .bytes()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    format!("{first12}{}", (10 - sum % 10) % 10)
}
