//! `pos-agent`: the loyalty daemon beside each till.
//!
//! It owns the till's side of the loyalty program: it reads card codes from serial
//! scanners, answers the till API on loopback, records every operation in a local
//! SQLite journal before answering (so the store keeps selling offline), and syncs
//! that journal with HQ exactly once when the network allows.
//!
//! Map: [`daemon`] is the composition root and owns shutdown; [`till_api`] is the
//! HTTP surface; [`sales`] and [`cards`] are the till operations; [`redemption`]
//! decides how a redemption is checked and [`policy`] holds the offline caps;
//! [`journal`] is the storage and the only module with SQL; [`program`] the rules in
//! force; [`scanner`] reads the serial scanners and [`scan_bus`] fans their scans
//! out; [`ports`] lists serial ports; [`hq_client`] and [`hq_link`] talk to HQ and
//! [`sync_client`] syncs with it; [`backoff`] paces retries. Business arithmetic lives
//! in the `protocol` crate, shared with HQ. The demonstration is another program
//! (`loyalty-demo`, in `demo/`); [`demo_launcher`] starts it.

pub mod backoff;
pub mod cards;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod demo_launcher;
pub mod hq_client;
pub mod hq_link;
pub mod hq_tls;
pub mod journal;
pub mod keyring;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod ports;
pub mod program;
pub mod redemption;
pub mod sales;
pub mod scan_bus;
pub mod scanner;
pub mod sync_client;
pub mod till_api;
