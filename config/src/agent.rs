//! `agent.toml`: the configuration of `pos-agent`.

use crate::server::TlsSection;
use protocol::limits::Limits;
use protocol::rules::ProgramRules;
use protocol::{Points, StoreId, TerminalId};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole agent configuration. Every table is optional; an empty file (or no file
/// at all) runs a standalone till on loopback with built-in rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Which store and till this agent is.
    pub store: StoreSection,
    /// The HTTP API the till calls.
    pub till_api: TillApiSection,
    /// The local SQLite journal.
    pub journal: JournalSection,
    /// HQ sync; absent for a standalone store.
    pub sync: Option<SyncSection>,
    /// Limits on redemptions while HQ is unreachable.
    pub offline: OfflineSection,
    /// Maximums of money and points a sale may carry (`[limits]`; each at most its
    /// hard ceiling, [`Limits::CEILING`]).
    pub limits: Limits,
    /// Serial scanners (`[[scanner]]`).
    #[serde(rename = "scanner")]
    pub scanners: Vec<ScannerSection>,
    /// Rules for a standalone store (HQ's rules replace them once pulled).
    pub program: Option<ProgramRules>,
    /// `[log]`: level and format of the agent's log lines.
    pub log: LogSection,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Store id as HQ knows it. Default `standalone`.
    pub store_id: StoreId,
    /// Till id within the store. Default `till-1`.
    pub terminal_id: TerminalId,
    /// The store's offset from UTC (`+03:00`), for day boundaries of the daily
    /// offline caps and promotion dates. Default `+00:00`.
    pub utc_offset: UtcOffsetText,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            store_id: StoreId::parse("standalone").expect("literal is a valid store id"),
            terminal_id: TerminalId::parse("till-1").expect("literal is a valid terminal id"),
            utc_offset: UtcOffsetText::default(),
        }
    }
}

/// A UTC offset written `+HH:MM` or `-HH:MM`, as minutes east of UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UtcOffsetText {
    /// Minutes east of UTC (-1080..=1080, i.e. at most 18 hours).
    pub minutes: i32,
}

impl<'de> Deserialize<'de> for UtcOffsetText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_utc_offset(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses `+HH:MM` / `-HH:MM`.
pub fn parse_utc_offset(s: &str) -> Result<UtcOffsetText, String> {
    let err = || format!("'{s}' is not a UTC offset like +03:00 or -05:30");
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(err()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(err)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(err());
    }
    let h: i32 = h.parse().map_err(|_| err())?;
    let m: i32 = m.parse().map_err(|_| err())?;
    if h > 18 || m > 59 || (h == 18 && m > 0) {
        return Err(err());
    }
    Ok(UtcOffsetText {
        minutes: sign * (h * 60 + m),
    })
}

/// `[till_api]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TillApiSection {
    /// Listen address. Default `127.0.0.1:7070`.
    #[serde(deserialize_with = "crate::address::deserialize_listen")]
    pub listen: SocketAddr,
    /// HTTPS for the till API (`[till_api.tls]`); required beyond loopback.
    pub tls: Option<TlsSection>,
    /// File holding the SHA-256 of the till token (`pos-agent till-token rotate`
    /// writes it); when set, every request needs `Authorization: Bearer TOKEN`.
    /// Required beyond loopback.
    pub token_hash_file: Option<PathBuf>,
    /// Holds not committed within this many seconds are released. Default 900.
    pub hold_timeout_secs: u64,
    /// Largest request body accepted, in bytes. Default 262144.
    pub max_body_bytes: usize,
    /// Connections open at once; more are answered 503 `too_many_connections` and
    /// closed. Default 4096.
    pub max_connections: usize,
    /// Seconds a connection has to send a request's headers, from its start or its
    /// previous answer (also how long an idle connection stays open). Default 30.
    pub header_timeout_secs: u64,
}

impl Default for TillApiSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            tls: None,
            token_hash_file: None,
            hold_timeout_secs: 900,
            max_body_bytes: 256 * 1024,
            max_connections: 4096,
            header_timeout_secs: 30,
        }
    }
}

impl TillApiSection {
    /// Why the till API may not listen on `listen` with these settings, or `None`.
    /// Loopback needs nothing (the till runs on this machine); beyond it, anyone on
    /// the store network could read balances and redeem points, so the API must be
    /// encrypted (TLS) and callers must present the till token.
    pub fn exposure_problem(&self, listen: SocketAddr) -> Option<String> {
        if listen.ip().is_loopback() {
            return None;
        }
        let missing = match (&self.tls, &self.token_hash_file) {
            (Some(_), Some(_)) => return None,
            (None, None) => "[till_api.tls] cert_file/key_file and token_hash_file",
            (None, Some(_)) => "[till_api.tls] cert_file/key_file",
            (Some(_), None) => "token_hash_file",
        };
        Some(format!(
            "{listen} is not a loopback address: a till API reachable from the store network \
             needs TLS and a till token; set {missing} in [till_api], create the token with \
             `pos-agent till-token rotate --config FILE`, or listen on 127.0.0.1"
        ))
    }
}

/// `[journal]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSection {
    /// SQLite file. Default: `journal.db` in the platform data directory. A relative
    /// path is relative to the config file's directory.
    pub path: Option<PathBuf>,
}

/// `[sync]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSection {
    /// HQ's base URL (`https://hq.example:8443`). `http://` only for loopback.
    pub url: String,
    /// File holding the token `sync-server terminal add` printed. Relative to the
    /// config file's directory.
    pub token_file: PathBuf,
    /// Trust this CA (PEM) instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Push at least this often, in seconds (entries are pushed at once anyway).
    /// Default 5.
    #[serde(default = "defaults::interval_secs")]
    pub interval_secs: u64,
    /// Most entries per push. Default 500.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: u32,
    /// Cap of the retry backoff while HQ is unreachable, in seconds. Default 60.
    #[serde(default = "defaults::max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// How long a redemption waits for HQ's live balance before using the cache, in
    /// milliseconds. Default 800.
    #[serde(default = "defaults::live_balance_timeout_ms")]
    pub live_balance_timeout_ms: u64,
    /// Timeout of one push or pull, in seconds. Default 30.
    #[serde(default = "defaults::request_timeout_secs")]
    pub request_timeout_secs: u64,
}

/// `[offline]`: how points are redeemed while HQ is unreachable, and the limits on
/// it. Accrual is never limited.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineSection {
    /// How offline redemptions are decided. Default escrow.
    pub redemption: OfflineRedemption,
    /// Cards seen at this till within this many days get leases (escrow mode).
    /// Default 30.
    pub lease_recent_days: u32,
    /// Seconds between lease syncs with HQ (escrow mode). Default 300.
    pub lease_sync_secs: u64,
    /// Points one card may redeem offline per store day at this till. Default 1000.
    pub max_redeem_per_card_per_day: Points,
    /// Points this till may redeem offline per store day, all cards. Default 20000.
    pub max_redeem_per_terminal_per_day: Points,
    /// Points one receipt may redeem offline. Default 500.
    pub max_redeem_per_receipt: Points,
    /// Offline redemptions in a row one card may make before HQ is reached again.
    /// Default 3.
    pub max_consecutive_per_card: u32,
    /// No offline redemption at all once HQ has been unreachable this long. Default 24.
    pub max_offline_hours: u64,
}

impl Default for OfflineSection {
    fn default() -> Self {
        Self {
            redemption: OfflineRedemption::Escrow,
            lease_recent_days: 30,
            lease_sync_secs: 300,
            max_redeem_per_card_per_day: Points(1_000),
            max_redeem_per_terminal_per_day: Points(20_000),
            max_redeem_per_receipt: Points(500),
            max_consecutive_per_card: 3,
            max_offline_hours: 24,
        }
    }
}

/// How a till redeems points while HQ is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OfflineRedemption {
    /// Only points HQ leased to this till in advance (they are out of the card's
    /// spendable balance everywhere else): offline redemption cannot overdraw.
    Escrow,
    /// The cached balance within the stacked caps: bounded loss, but a card may be
    /// overdrawn when several stores spend it offline.
    Caps,
    /// No redemption while HQ is unreachable.
    None,
}

/// How a scanner ends each code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Terminator {
    /// Carriage return (0x0D).
    Cr,
    /// Line feed (0x0A).
    Lf,
    /// CR then LF.
    Crlf,
    /// STX (0x02) before and ETX (0x03) after each code.
    StxEtx,
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity bit.
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
}

/// Serial flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    /// No flow control.
    None,
    /// XON/XOFF.
    Software,
    /// RTS/CTS.
    Hardware,
}

/// `[[scanner]]`: one serial scanner (RS-232 or USB-CDC).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerSection {
    /// Name shown in `/v1/health` and scan events.
    pub name: String,
    /// Device path (`/dev/ttyACM0`, `/dev/serial/by-id/...`).
    pub port: PathBuf,
    /// Baud rate. Default 9600.
    #[serde(default = "defaults::baud")]
    pub baud: u32,
    /// Data bits, 5 to 8. Default 8.
    #[serde(default = "defaults::data_bits")]
    pub data_bits: u8,
    /// Parity. Default none.
    #[serde(default = "defaults::parity")]
    pub parity: Parity,
    /// Stop bits, 1 or 2. Default 1.
    #[serde(default = "defaults::stop_bits")]
    pub stop_bits: u8,
    /// Flow control. Default none.
    #[serde(default = "defaults::flow_control")]
    pub flow_control: FlowControl,
    /// Frame terminator. Default cr.
    #[serde(default = "defaults::terminator")]
    pub terminator: Terminator,
    /// Codes start with an AIM symbology identifier (`]E0`). Default false.
    #[serde(default)]
    pub aim_prefix: bool,
    /// The same code from this scanner within this many ms is one scan. Default 1000.
    #[serde(default = "defaults::debounce_ms")]
    pub debounce_ms: u64,
    /// Longest frame accepted, in bytes. Default 512.
    #[serde(default = "defaults::max_frame_len")]
    pub max_frame_len: usize,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `human` or `json`. Default human.
    pub format: LogFormat,
    /// A tracing filter (`info`, `agent=debug`). Default `info`.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".to_owned(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

mod defaults {
    use super::{FlowControl, Parity, Terminator};
    pub fn interval_secs() -> u64 {
        5
    }
    pub fn batch_size() -> u32 {
        500
    }
    pub fn max_backoff_secs() -> u64 {
        60
    }
    pub fn live_balance_timeout_ms() -> u64 {
        800
    }
    pub fn request_timeout_secs() -> u64 {
        30
    }
    pub fn baud() -> u32 {
        9600
    }
    pub fn data_bits() -> u8 {
        8
    }
    pub fn parity() -> Parity {
        Parity::None
    }
    pub fn stop_bits() -> u8 {
        1
    }
    pub fn flow_control() -> FlowControl {
        FlowControl::None
    }
    pub fn terminator() -> Terminator {
        Terminator::Cr
    }
    pub fn debounce_ms() -> u64 {
        1000
    }
    pub fn max_frame_len() -> usize {
        512
    }
}
