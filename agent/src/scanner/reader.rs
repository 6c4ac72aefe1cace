//! One scanner's serial port, on its own thread.
//!
//! The thread opens the configured path (exclusively: a second program reading the
//! same scanner would steal codes), reads with a timeout, cuts the bytes into frames,
//! decodes them and hands cards to the gate. Blocking reads on a dedicated thread
//! keep serial I/O off the async runtime; the read timeout (not a busy loop) is what
//! lets the thread notice a shutdown, so an idle scanner costs two wake-ups a second.
//!
//! Hot-plug: any read error, end of file or hang-up marks the scanner disconnected in
//! `/v1/health`, closes the port and reopens the same path with exponential backoff
//! (100 ms doubling to 2 s) until it is back. The path is opened afresh each time, so
//! a `/dev/serial/by-id/...` symlink is re-resolved to wherever the device reappears.
//! What a hang-up looks like: serialport's read polls first and reports POLLHUP as
//! `BrokenPipe` at once, on every call (a PTY whose master side closed does exactly
//! that; the slave node disappears with it); a USB-CDC device pulled out gives EIO.
//! Retrying such a read would spin, so every error other than a timeout ends the
//! connection and goes through the backoff.

use super::decode;
use super::framing::{DEFAULT_IDLE_TIMEOUT, Dropped, FrameEvent, Framer};
use super::gate::Decoded;
use super::stop::StopSignal;
use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::keyring::KeyRingHandle;
use crate::metrics::{Metrics, ScanResult};
use crate::scan_bus::{ScannerState, ScannerStates};
use config::agent::{FlowControl, Parity, ScannerSection};
use serialport::SerialPort;
use std::io::{self, ErrorKind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long one read waits for bytes before checking for shutdown.
pub const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// First pause before reopening a port.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest pause between attempts to reopen a port.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A connection that lasted this long was a real one: the next failure starts the
/// backoff afresh. (A port that opens and hangs up at once keeps backing off.)
const STABLE_CONNECTION: Duration = Duration::from_secs(5);

/// Everything one scanner thread needs.
pub struct Reader {
    /// Position in the config (the gate's index).
    pub slot: usize,
    /// Index in [`ScannerStates`].
    pub state_index: usize,
    /// The scanner's config.
    pub config: ScannerSection,
    /// Where connection states are reported.
    pub states: ScannerStates,
    /// HQ keys for app tokens.
    pub keys: KeyRingHandle,
    /// Where dropped and refused frames are counted.
    pub metrics: Arc<Metrics>,
    /// The time each frame was read at.
    pub clock: Clock,
    /// To the gate.
    pub to_gate: mpsc::Sender<Decoded>,
    /// Set once when the agent stops.
    pub stop: Arc<StopSignal>,
}

/// Why a connection ended.
enum End {
    Stopped,
    Gone(String),
}

impl Reader {
    /// Starts the thread.
    pub fn spawn(self) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("scanner {}", self.config.name))
            .spawn(move || self.run())
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn run(self) {
        let mut framer = Framer::new(
            self.config.terminator,
            self.config.max_frame_len,
            DEFAULT_IDLE_TIMEOUT,
        );
        let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
        let mut last_error: Option<String> = None;
        let port_path = self.config.port.display().to_string();
        while !self.stop.is_stopped() {
            match self.open() {
                Ok(mut port) => {
                    let target = std::fs::canonicalize(&self.config.port)
                        .map_or_else(|_| port_path.clone(), |p| p.display().to_string());
                    tracing::info!(
                        scanner = self.name(),
                        port = port_path,
                        device = target,
                        "scanner connected"
                    );
                    self.states
                        .set(self.state_index, ScannerState::Connected, None);
                    last_error = None;
                    let opened = Instant::now();
                    let end = self.read_until_gone(port.as_mut(), &mut framer);
                    drop(port);
                    if let Some(dropped) = framer.reset() {
                        self.dropped(dropped);
                    }
                    match end {
                        End::Stopped => break,
                        End::Gone(reason) => {
                            tracing::warn!(
                                scanner = self.name(),
                                port = port_path,
                                reason,
                                "scanner disconnected; reopening"
                            );
                            self.states.set(
                                self.state_index,
                                ScannerState::Disconnected,
                                Some(reason),
                            );
                        }
                    }
                    if opened.elapsed() >= STABLE_CONNECTION {
                        backoff.reset();
                    }
                }
                Err(e) => {
                    let reason = e.to_string();
                    // Logged once per distinct error, not at every retry.
                    if last_error.as_deref() != Some(reason.as_str()) {
                        tracing::warn!(
                            scanner = self.name(),
                            port = port_path,
                            error = reason,
                            "cannot open scanner port; retrying"
                        );
                    }
                    self.states.set(
                        self.state_index,
                        ScannerState::Disconnected,
                        Some(reason.clone()),
                    );
                    last_error = Some(reason);
                }
            }
            if self.stop.sleep(backoff.next_pause()) {
                break;
            }
        }
        tracing::debug!(scanner = self.name(), "scanner thread stopped");
    }

    fn open(&self) -> serialport::Result<Box<dyn SerialPort>> {
        let c = &self.config;
        let path = c.port.to_str().ok_or_else(|| {
            serialport::Error::new(
                serialport::ErrorKind::InvalidInput,
                "port path is not valid UTF-8",
            )
        })?;
        let builder = serialport::new(path, c.baud)
            .data_bits(data_bits(c.data_bits))
            .parity(match c.parity {
                Parity::None => serialport::Parity::None,
                Parity::Odd => serialport::Parity::Odd,
                Parity::Even => serialport::Parity::Even,
            })
            .stop_bits(if c.stop_bits == 2 {
                serialport::StopBits::Two
            } else {
                serialport::StopBits::One
            })
            .flow_control(match c.flow_control {
                FlowControl::None => serialport::FlowControl::None,
                FlowControl::Software => serialport::FlowControl::Software,
                FlowControl::Hardware => serialport::FlowControl::Hardware,
            })
            .timeout(READ_TIMEOUT);
        // TIOCEXCL plus an exclusive flock: another agent (or a stray terminal
        // program) cannot open the scanner while we hold it.
        #[cfg(unix)]
        let builder = builder.exclusive(true);
        builder.open()
    }

    fn read_until_gone(&self, port: &mut dyn SerialPort, framer: &mut Framer) -> End {
        let mut buf = [0u8; 512];
        let mut events = Vec::new();
        loop {
            if self.stop.is_stopped() {
                return End::Stopped;
            }
            match port.read(&mut buf) {
                Ok(0) => return End::Gone("end of file: the device hung up".to_owned()),
                Ok(n) => {
                    framer.push(&buf[..n], Instant::now(), &mut events);
                    for event in events.drain(..) {
                        self.frame_event(event);
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                    return End::Gone("the device hung up (unplugged?)".to_owned());
                }
                Err(e) => return End::Gone(format!("read failed: {e}")),
            }
        }
    }

    fn frame_event(&self, event: FrameEvent) {
        match event {
            FrameEvent::Frame(frame) => self.frame(&frame),
            FrameEvent::Dropped(dropped) => self.dropped(dropped),
        }
    }

    fn frame(&self, frame: &[u8]) {
        let at = self.clock.now();
        let read_at = Instant::now();
        let keys = self.keys.current();
        let Some(scan) = decode::decode(
            self.name(),
            frame,
            self.config.aim_prefix,
            &keys,
            at.unix_timestamp(),
            &self.metrics,
        ) else {
            return;
        };
        // Waits only if the gate is behind by a whole channel of scans; the gate never
        // waits for the till, so this is back-pressure into the serial buffer, not a
        // stall. An error means the gate is gone: the agent is stopping.
        let _ = self.to_gate.blocking_send(Decoded {
            scanner: self.slot,
            scan,
            at,
            read_at,
        });
    }

    fn dropped(&self, dropped: Dropped) {
        self.metrics.scan(self.name(), ScanResult::Dropped);
        tracing::warn!(
            scanner = self.name(),
            reason = %dropped.reason,
            len = dropped.len,
            "scanner bytes dropped"
        );
    }
}

fn data_bits(bits: u8) -> serialport::DataBits {
    match bits {
        5 => serialport::DataBits::Five,
        6 => serialport::DataBits::Six,
        7 => serialport::DataBits::Seven,
        // The config allows 5 to 8 only.
        _ => serialport::DataBits::Eight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan_bus::ScannerStatus;
    use serialport::TTYPort;
    use std::io::Write;
    use std::path::Path;

    fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn config(port: &Path) -> ScannerSection {
        ScannerSection {
            name: "front".into(),
            port: port.to_path_buf(),
            baud: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow_control: FlowControl::None,
            terminator: config::agent::Terminator::Cr,
            aim_prefix: false,
            debounce_ms: 0,
            max_frame_len: 64,
        }
    }

    fn state(states: &ScannerStates) -> ScannerStatus {
        states.snapshot().remove(0)
    }

    /// A PTY pair (a kernel TTY, as a USB-CDC scanner is) behind a symlink, as udev
    /// makes `/dev/serial/by-id` links.
    fn plug(link: &Path) -> (TTYPort, TTYPort) {
        let (master, slave) = TTYPort::pair().unwrap();
        // `pair` opens without close-on-exec; a process spawned meanwhile would keep
        // the master open and the unplug would never hang up. The clones have it.
        let (master, slave) = (
            master.try_clone_native().unwrap(),
            slave.try_clone_native().unwrap(),
        );
        std::os::unix::fs::symlink(slave.name().unwrap(), link).unwrap();
        (master, slave)
    }

    #[test]
    fn reads_a_pty_and_reopens_the_same_symlink_after_a_hang_up() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("scanner");
        let states = ScannerStates::default();
        let state_index = states.register("front", &link.display().to_string());
        let (to_gate, mut from_reader) = mpsc::channel(8);
        let stop = Arc::new(StopSignal::default());
        let reader = Reader {
            slot: 0,
            state_index,
            config: config(&link),
            states: states.clone(),
            keys: KeyRingHandle::default(),
            metrics: Arc::new(Metrics::new()),
            clock: Clock::new(0, 0),
            to_gate,
            stop: stop.clone(),
        };
        let thread = reader.spawn().unwrap();
        // Not plugged in at start: retried, not fatal.
        wait_until("an open error", || state(&states).error);
        assert_eq!(state(&states).state, ScannerState::Disconnected);

        let (mut master, slave) = plug(&link);
        wait_until("connected", || {
            (state(&states).state == ScannerState::Connected).then_some(())
        });
        master.write_all(b"1234").unwrap();
        master.write_all(b"5678\r").unwrap();
        let got = wait_until("a scan", || from_reader.try_recv().ok());
        assert_eq!(got.scan.card.as_str(), "12345678");

        // Unplug: the link goes first so the PTY number, once free, cannot be reached
        // through it (another test may get it).
        std::fs::remove_file(&link).unwrap();
        drop((master, slave));
        let down = wait_until("disconnected", || {
            let s = state(&states);
            (s.state == ScannerState::Disconnected).then_some(s)
        });
        assert!(down.error.is_some());

        let (mut master, _slave) = plug(&link);
        wait_until("reconnected", || {
            (state(&states).state == ScannerState::Connected).then_some(())
        });
        master.write_all(b"87654321\r").unwrap();
        let got = wait_until("a scan after replug", || from_reader.try_recv().ok());
        assert_eq!(got.scan.card.as_str(), "87654321");

        stop.stop();
        thread.join().unwrap();
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(BACKOFF_START, BACKOFF_MAX);
        let pauses: Vec<u128> = (0..7).map(|_| b.next_pause().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_pause(), BACKOFF_START);
    }
}
