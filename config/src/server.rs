//! `sync-server.toml`: the configuration of `sync-server`.

use crate::agent::LogSection;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address. Default `127.0.0.1:8080`.
    #[serde(deserialize_with = "crate::address::deserialize_listen")]
    pub listen: SocketAddr,
    /// `sqlite:PATH` or `postgres://…`. Default: `sqlite:` + `hq.db` in the platform
    /// data directory. A relative SQLite path is relative to the config file.
    pub database: Option<String>,
    /// Without `[tls]` the server speaks plain HTTP, which it does only on a loopback
    /// address unless this is true (e.g. behind a TLS-terminating load balancer).
    pub allow_plain_http: bool,
    /// TLS certificate and key (rustls). Absent: plain HTTP.
    pub tls: Option<TlsSection>,
    /// Largest request body, in bytes, after gzip decompression. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Connections open at once; more are answered 503 `too_many_connections` and
    /// closed. Default 4096.
    pub max_connections: usize,
    /// Seconds a connection has to finish its TLS handshake and send a request's
    /// headers, from its start or its previous answer (also how long an idle
    /// connection stays open). Default 30.
    pub header_timeout_secs: u64,
    /// Ledger housekeeping.
    pub ledger: LedgerSection,
    /// `[log]`: level and format of the server's log lines.
    pub log: LogSection,
    /// The HQ dashboard's admin login. Absent: no dashboard, no admin API.
    pub admin: Option<AdminSection>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: None,
            allow_plain_http: false,
            tls: None,
            max_body_bytes: 16 * 1024 * 1024,
            max_connections: 4096,
            header_timeout_secs: 30,
            ledger: LedgerSection::default(),
            log: LogSection::default(),
            admin: None,
        }
    }
}

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// `[admin]`: who may open the dashboard (`/admin/`) and the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Argon2 hash (PHC string, `$argon2id$…`) of the admin password, as
    /// `sync-server admin hash-password` prints it. REQUIRED in the table.
    pub password_hash: String,
    /// How long a login lasts without activity, in minutes. Default 480.
    #[serde(default = "default_session_minutes")]
    pub session_minutes: u32,
}

fn default_session_minutes() -> u32 {
    480
}

/// `[ledger]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    /// How often the maturation/expiry/tier job runs, in seconds. Default 300.
    pub job_interval_secs: u64,
    /// How long a rotated-out signing key still verifies app tokens, in days.
    /// Default 30.
    pub key_grace_days: u32,
    /// Most balance changes in one pull answer. Default 1000.
    pub pull_page_size: u32,
    /// How long a lease HQ grants a till lives, in hours. Default 24.
    pub lease_hours: u32,
    /// How long after its hold deadline HQ releases a reservation no till settled,
    /// in hours. Default 168 (7 days).
    pub reservation_abandon_hours: u32,
    /// How long after its expiry HQ reclaims a lease no till closed, in hours.
    /// Default 168 (7 days).
    pub lease_abandon_hours: u32,
}

impl Default for LedgerSection {
    fn default() -> Self {
        Self {
            job_interval_secs: 300,
            key_grace_days: 30,
            pull_page_size: 1000,
            lease_hours: 24,
            reservation_abandon_hours: 168,
            lease_abandon_hours: 168,
        }
    }
}

/// Where a database URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string, as given.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses `sqlite:PATH` or `postgres://…` / `postgresql://…`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err("sqlite: needs a file path (sqlite:/var/lib/hq/hq.db)".to_owned());
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Self::Postgres(s.to_owned()))
        } else {
            Err(format!(
                "'{s}' is not a database URL: use sqlite:PATH or postgres://user@host/db"
            ))
        }
    }
}
