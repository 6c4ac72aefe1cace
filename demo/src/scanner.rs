//! The demo's virtual scanner: a kernel pseudo-terminal pair. The agent reads the
//! slave side exactly as it would read `/dev/ttyACM0`; the demo "scans" by writing
//! frames (AIM prefix, payload, CR) to the master side.

use anyhow::Context;
use serialport::{SerialPort, TTYPort};
use std::io::Write;

/// The master side of the pair, and the device path the agent opens.
pub struct VirtualScanner {
    master: TTYPort,
    // Kept open so the pseudo-terminal exists until the demo ends.
    _slave: TTYPort,
    /// The slave's device path (`/dev/pts/N`).
    pub path: String,
}

impl VirtualScanner {
    /// Creates the pair.
    pub fn open() -> anyhow::Result<Self> {
        let (master, slave) = TTYPort::pair().context("creating a pseudo-terminal pair")?;
        let path = slave.name().context("pseudo-terminal without a name")?;
        Ok(Self {
            master,
            _slave: slave,
            path,
        })
    }

    /// Sends one frame as a scanner configured with AIM prefixes and CR would.
    pub fn scan(&mut self, aim: &str, payload: &str) -> anyhow::Result<()> {
        let frame = format!("{aim}{payload}\r");
        self.master.write_all(frame.as_bytes())?;
        self.master.flush()?;
        Ok(())
    }
}
