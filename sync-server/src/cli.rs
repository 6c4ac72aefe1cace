//! The command line: argument parsing (clap), settings (config file, `--database`
//! override, defaults), logging setup, and the dispatch of each command.

use crate::admin::{self, AdminError, RulesFormat};
use crate::import::{self, ImportError};
use crate::ledger::kpi::Period;
use crate::reports::clv::{self, ClvOptions};
use crate::reports::{self, kpi};
use crate::server::{self, ServeError, ServeOptions};
use crate::store::flow::escrow::AbandonAfter;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use clap::{Args, Parser, Subcommand};
use config::agent::{LogFormat, LogSection};
use config::clock::{Clock, ClockError};
use config::{DatabaseUrl, ServerConfig};
use protocol::{CardId, StoreId, TerminalId};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

/// HQ sync server of the loyalty program.
#[derive(Debug, Parser)]
#[command(name = "sync-server", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file (sync-server.toml). Default: built-in defaults.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Ledger database: sqlite:PATH or postgres://… (overrides the config file).
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the sync API until SIGINT/SIGTERM.
    Run {
        /// Address to listen on (overrides `listen`); port 0 picks a free port.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Print the sync API's OpenAPI 3.1 document (what `GET /v1/openapi.json`
    /// serves; committed as docs/openapi/sync-api.json).
    Openapi,
    /// Terminals and their tokens.
    #[command(subcommand)]
    Terminal(TerminalCommand),
    /// Program rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// One card.
    #[command(subcommand)]
    Card(CardCommand),
    /// App-token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Recompute every balance from the ledger and compare; exit 1 on any difference.
    Verify,
    /// Reports for review: overdrawn cards, flagged entries, refused pushes,
    /// quarantined entries.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Entries HQ stored without applying them (see `report quarantine`).
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// The ledger job (maturation, expiry, tiers).
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Check a config file: prints `ok` or every error with its line (the TLS files it
    /// names must exist); exit 1 on error. Opens no database.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Bring history from an earlier system: past purchases, opening balances.
    #[command(subcommand)]
    Import(ImportCommand),
    /// The dashboard's admin login.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// HTTPS for a pilot without a company CA.
    #[command(subcommand)]
    Tls(TlsCommand),
}

/// `tls …`.
#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Write a small CA (ca.pem: every agent's `[sync] ca_file`) and a server
    /// certificate and key signed by it (server.pem, server-key.pem: HQ's `[tls]`).
    /// Opens no database.
    Init {
        /// A name or IP address agents reach HQ by (the host of their `[sync] url`);
        /// repeat for several.
        #[arg(long = "host", value_name = "NAME", required = true)]
        hosts: Vec<String>,
        /// Directory to write the three files into (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Replace existing files (agents then need the new ca.pem).
        #[arg(long)]
        force: bool,
    },
}

/// `admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Read a password on stdin (one line) and print its Argon2 hash for
    /// `[admin] password_hash`.
    HashPassword,
}

/// `import …`.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Past purchases: CSV with a header naming card,at,receipt_id,amount_minor
    /// and optionally store and points.
    Purchases {
        /// The CSV file.
        file: PathBuf,
        /// Store of rows without a `store` column value.
        #[arg(long, default_value = "import")]
        store: StoreId,
    },
    /// Opening balances: CSV with a header naming card,balance and optionally at
    /// and store.
    Balances {
        /// The CSV file.
        file: PathBuf,
        /// Store of rows without a `store` column value.
        #[arg(long, default_value = "import")]
        store: StoreId,
    },
}

/// Output format of `report kpi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KpiFormat {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
    /// `figure,value` lines for spreadsheets.
    Csv,
}

/// Output format of the marketing reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// A store and one of its terminals.
#[derive(Debug, Args)]
pub struct TerminalName {
    /// Store id (store-042).
    #[arg(long = "store", value_name = "S")]
    pub store: StoreId,
    /// Terminal id (till-3).
    #[arg(long = "terminal", value_name = "T")]
    pub terminal: TerminalId,
}

/// `terminal …`.
#[derive(Debug, Subcommand)]
pub enum TerminalCommand {
    /// Add a terminal and print its token (once, alone on the last line).
    Add {
        /// Which terminal.
        #[command(flatten)]
        name: TerminalName,
        /// Replace the token of an existing active terminal.
        #[arg(long)]
        rotate: bool,
    },
    /// List terminals.
    List,
    /// Revoke a terminal's token.
    Revoke {
        /// Which terminal.
        #[command(flatten)]
        name: TerminalName,
    },
}

/// `rules …`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Load a rules file and make it current (version 0 in the file: next version).
    Set {
        /// The rules file (TOML).
        file: PathBuf,
    },
    /// Print the current rules.
    Show {
        /// Output format.
        #[arg(long, value_enum, default_value = "toml")]
        format: RulesFormat,
    },
}

/// `card …`.
#[derive(Debug, Subcommand)]
pub enum CardCommand {
    /// Refuse redemptions on a card at every terminal.
    Block {
        /// The card number.
        card: CardId,
        /// Why (kept for the record).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a block.
    Unblock {
        /// The card number.
        card: CardId,
    },
    /// Balance, pending, tier, flags and recent ledger rows.
    Show {
        /// The card number.
        card: CardId,
    },
    /// Print a signed app QR token for a card.
    Token {
        /// The card number.
        card: CardId,
        /// Validity in seconds, 1 to 300: offline, a till can only refuse a token
        /// it saw itself, so the validity bounds what a screenshot can do.
        #[arg(
            long = "ttl-secs",
            alias = "ttl",
            default_value_t = 60,
            value_parser = clap::value_parser!(u32).range(1..=300)
        )]
        ttl: u32,
    },
}

/// `keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a new current signing key; the previous one stays valid for
    /// `[ledger] key_grace_days`.
    Rotate,
    /// List keys.
    List,
}

/// `report …`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Cards with a negative balance and their flagged entries.
    Overdrafts,
    /// Every flagged entry.
    Flags,
    /// Refused pushes: gaps, rewinds, id reuse, terminal mismatches.
    Anomalies,
    /// The program's KPIs over a period (days inclusive, UTC), per store or chain-wide.
    Kpi {
        /// First day (YYYY-MM-DD).
        #[arg(long, value_parser = parse_date)]
        from: time::Date,
        /// Last day (YYYY-MM-DD), inclusive.
        #[arg(long, value_parser = parse_date)]
        to: time::Date,
        /// Only this store's receipts and members (points figures stay chain-wide).
        #[arg(long, value_name = "S")]
        store: Option<StoreId>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: KpiFormat,
    },
    /// Customer lifetime value: BG/NBD and Gamma-Gamma fits on the members'
    /// histories, each member's forecast, members at risk.
    Clv {
        /// Last day (YYYY-MM-DD, inclusive) of the history the models learn from.
        #[arg(long, value_parser = parse_date)]
        calibration_end: time::Date,
        /// Horizon of the expected purchases, in weeks.
        #[arg(long, default_value_t = 52, value_parser = clap::value_parser!(u32).range(1..=520))]
        weeks: u32,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        /// Rows of each list in the table.
        #[arg(long, default_value_t = 20)]
        rows: usize,
    },
    /// Entries HQ stored and acknowledged but could not apply, and their retries.
    Quarantine,
}

/// `quarantine …`.
#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Apply a quarantined entry now, after its cause was fixed; exactly once (a
    /// second retry does nothing). Exits 1 when it still cannot be applied.
    Retry {
        /// The id `report quarantine` lists.
        id: i64,
    },
}

/// `jobs …`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Run maturation, expiry and tiers once.
    Run {
        /// The job's time: RFC 3339 (2026-03-01T10:00:00Z) or a date (2026-03-01,
        /// midnight UTC); default now.
        #[arg(long, value_parser = parse_time)]
        now: Option<OffsetDateTime>,
    },
}

fn parse_date(s: &str) -> Result<time::Date, String> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|e| format!("{s:?} is not a date (YYYY-MM-DD): {e}"))
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    let date = time::macros::format_description!("[year]-[month]-[day]");
    OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| time::Date::parse(s, &date).map(|d| d.midnight().assume_utc()))
        .map_err(|_| {
            format!(
                "{s:?} is neither an RFC 3339 time (2026-03-01T10:00:00Z) nor a date (2026-03-01)"
            )
        })
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The config file is bad.
    #[error("{0}")]
    Config(String),
    /// The database URL is bad or its backend is missing.
    #[error("{0}")]
    Database(String),
    /// `LOYALTY_CLOCK_OFFSET_SECS` is bad.
    #[error(transparent)]
    Clock(#[from] ClockError),
    /// Opening the store failed.
    #[error("opening the database: {0}")]
    Store(#[from] StoreError),
    /// An admin command failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// An import failed.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// A report could not be computed or written.
    #[error("{0}")]
    Report(String),
    /// `tls init` wrote nothing.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
}

/// The effective settings of a command.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file's content (or defaults).
    pub config: ServerConfig,
    /// The database to use.
    pub database: DatabaseUrl,
    /// Where [`Self::database`] came from.
    pub database_from: DatabaseFrom,
}

/// Where the database of a command came from: a command without `--database` and
/// without a config file naming one uses a default, which it says (a forgotten
/// `--config` must not silently run against another ledger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseFrom {
    /// `--database`.
    Flag,
    /// The config file's `database` key.
    Config,
    /// Neither: `hq.db` in the platform data directory.
    Default,
}

/// Reads the config file and applies `--database`. For `run`, the TLS files the
/// config names must exist too, so that a missing one is named before the database
/// is created.
pub fn settings(cli: &Cli) -> Result<Settings, CliError> {
    let load = match cli.command {
        Command::Run { .. } => config::load_server_ready,
        _ => config::load_server,
    };
    let config = match &cli.config {
        Some(path) => load(path).map_err(|e| CliError::Config(e.to_string()))?,
        None => ServerConfig::default(),
    };
    let (text, database_from) = match (cli.database.as_deref(), config.database.as_deref()) {
        (Some(flag), _) => (Some(flag), DatabaseFrom::Flag),
        (None, Some(key)) => (Some(key), DatabaseFrom::Config),
        (None, None) => (None, DatabaseFrom::Default),
    };
    let database = match text {
        Some(text) => DatabaseUrl::parse(text.trim()).map_err(CliError::Database)?,
        None => DatabaseUrl::Sqlite(default_database()?),
    };
    Ok(Settings {
        config,
        database,
        database_from,
    })
}

/// The line a command prints on stderr before it opens a default database: which
/// one, and why.
pub fn default_database_notice(
    settings: &Settings,
    config: Option<&std::path::Path>,
) -> Option<String> {
    (settings.database_from == DatabaseFrom::Default).then(|| {
        let why = match config {
            Some(path) => format!("{} names no database", path.display()),
            None => "no --config".to_owned(),
        };
        format!(
            "sync-server: using the default database {} ({why}, no --database)",
            describe_database(&settings.database)
        )
    })
}

/// `hq.db` in the platform data directory, created if needed.
fn default_database() -> Result<PathBuf, CliError> {
    let dirs = directories::ProjectDirs::from("", "", "loyalty-sync-server").ok_or_else(|| {
        CliError::Database(
            "no home directory to put the default database in; pass --database sqlite:PATH"
                .to_owned(),
        )
    })?;
    let dir = dirs.data_dir();
    std::fs::create_dir_all(dir).map_err(|e| {
        CliError::Database(format!(
            "creating the data directory {}: {e}",
            dir.display()
        ))
    })?;
    Ok(dir.join("hq.db"))
}

/// Opens the store a database URL names.
pub async fn open_store(url: &DatabaseUrl) -> Result<Arc<dyn Store>, CliError> {
    match url {
        DatabaseUrl::Sqlite(path) => {
            let store = SqliteStore::open(path).await.map_err(|e| {
                CliError::Database(format!("opening SQLite database {}: {e}", path.display()))
            })?;
            Ok(Arc::new(store))
        }
        DatabaseUrl::Postgres(url) => {
            // The error names the URL (password hidden) itself.
            let store = PgStore::open(url)
                .await
                .map_err(|e| CliError::Database(format!("opening PostgreSQL database: {e}")))?;
            Ok(Arc::new(store))
        }
    }
}

/// The database for the log: a SQLite path, or a PostgreSQL URL without its password.
fn describe_database(url: &DatabaseUrl) -> String {
    match url {
        DatabaseUrl::Sqlite(path) => format!("sqlite:{}", path.display()),
        DatabaseUrl::Postgres(url) => crate::store::postgres::options::redact(url),
    }
}

/// Sets up logging to stderr: the config's level and format for `run`, warnings
/// only for the admin commands so their stdout stays clean.
pub fn init_logging(log: &LogSection, serving: bool) {
    let level = if serving { log.level.as_str() } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless; ignore it.
    let _ = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

async fn shutdown_signal(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested");
    token.cancel();
}

/// `report clv`: reads the members' histories in one snapshot, fits, prints.
async fn report_clv(
    store: &dyn Store,
    options: &ClvOptions,
    format: ReportFormat,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let history = store
        .member_purchases()
        .await
        .map_err(|e| CliError::Report(format!("reading the members' histories: {e}")))?;
    let report = clv::build(&history, options).map_err(|e| {
        CliError::Report(format!(
            "cannot fit the CLV models on the members' histories up to {}: {e}",
            options.calibration_end
        ))
    })?;
    let written = match format {
        ReportFormat::Json => serde_json::to_writer_pretty(&mut *out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        ReportFormat::Table => clv::write_table(&report, options.table_rows, out),
    };
    written.map_err(|e| CliError::Report(format!("writing output: {e}")))
}

/// `admin hash-password`: one line of stdin in, its Argon2 hash out.
fn hash_password_from_stdin(out: &mut dyn Write) -> Result<ExitCode, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Report(format!("reading the password: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.chars().count() < 8 {
        return Err(CliError::Report(
            "the admin password needs at least 8 characters".to_owned(),
        ));
    }
    let hash = crate::dashboard::session::hash_password(password).map_err(CliError::Report)?;
    writeln!(out, "{hash}").map_err(|e| CliError::Report(format!("writing output: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// When the job takes back what tills abandoned, from `[ledger]`.
fn abandon_after(ledger: &config::server::LedgerSection) -> AbandonAfter {
    AbandonAfter {
        reservation: time::Duration::hours(i64::from(ledger.reservation_abandon_hours)),
        lease: time::Duration::hours(i64::from(ledger.lease_abandon_hours)),
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    if let Command::CheckConfig { file } = &cli.command {
        let checked = config::load_server_ready(file);
        let fine = config::print_check(&checked, &mut std::io::stdout().lock())
            .map_err(|e| CliError::Admin(AdminError::Io(e)))?;
        return Ok(if fine {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if let Command::Tls(TlsCommand::Init { hosts, out, force }) = &cli.command {
        let files = crate::pki::init(hosts, out, *force, OffsetDateTime::now_utc())?;
        crate::pki::describe(&files, &mut std::io::stdout().lock())
            .map_err(|e| CliError::Report(format!("writing output: {e}")))?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Openapi = &cli.command {
        // Needs no config and no database: the document is the code's.
        print!("{}", crate::http::openapi::document());
        return Ok(ExitCode::SUCCESS);
    }
    let settings = settings(&cli)?;
    let serving = matches!(cli.command, Command::Run { .. });
    init_logging(&settings.config.log, serving);
    let clock = Clock::from_env()?;
    if let Command::Admin(AdminCommand::HashPassword) = cli.command {
        // Needs no database: a new installation hashes its password before it has one.
        return hash_password_from_stdin(&mut std::io::stdout().lock());
    }
    if let Some(notice) = default_database_notice(&settings, cli.config.as_deref()) {
        eprintln!("{notice}");
    }
    let shared = open_store(&settings.database).await?;
    let store = shared.as_ref();
    let config = &settings.config;
    let mut stdout = std::io::stdout().lock();
    let out: &mut dyn Write = &mut stdout;
    match cli.command {
        Command::Run { listen } => {
            drop(stdout);
            tracing::info!(
                database = %describe_database(&settings.database),
                config = %cli.config.as_deref().map_or("none (defaults)".into(), |p| p.display().to_string()),
                "ledger database"
            );
            let options = ServeOptions {
                listen: listen.unwrap_or(config.listen),
                tls: config.tls.clone(),
                allow_plain_http: config.allow_plain_http,
                max_body_bytes: config.max_body_bytes,
                connections: server::connection_limits(config),
                pull_page_size: config.ledger.pull_page_size,
                job_interval: Duration::from_secs(config.ledger.job_interval_secs),
                admin: config.admin.clone(),
                lease_duration: time::Duration::hours(i64::from(config.ledger.lease_hours)),
                abandon_after: abandon_after(&config.ledger),
            };
            let token = CancellationToken::new();
            tokio::spawn(shutdown_signal(token.clone()));
            server::serve(Arc::clone(&shared), clock, options, token).await?;
        }
        Command::Terminal(TerminalCommand::Add { name, rotate }) => {
            admin::terminal_add(store, clock, &name.store, &name.terminal, rotate, out).await?;
        }
        Command::Terminal(TerminalCommand::List) => admin::terminal_list(store, out).await?,
        Command::Terminal(TerminalCommand::Revoke { name }) => {
            admin::terminal_revoke(store, clock, &name.store, &name.terminal, out).await?;
        }
        Command::Rules(RulesCommand::Set { file }) => {
            admin::rules_set(store, clock, &file, out).await?;
        }
        Command::Rules(RulesCommand::Show { format }) => {
            admin::rules_show(store, format, out).await?;
        }
        Command::Card(CardCommand::Block { card, reason }) => {
            admin::card_block(store, clock, &card, true, reason.as_deref(), out).await?;
        }
        Command::Card(CardCommand::Unblock { card }) => {
            admin::card_block(store, clock, &card, false, None, out).await?;
        }
        Command::Card(CardCommand::Show { card }) => admin::card_show(store, &card, out).await?,
        Command::Card(CardCommand::Token { card, ttl }) => {
            admin::card_token(store, clock, &card, ttl, out).await?;
        }
        Command::Keys(KeysCommand::Rotate) => {
            admin::keys_rotate(store, clock, config.ledger.key_grace_days, out).await?;
        }
        Command::Keys(KeysCommand::List) => admin::keys_list(store, out).await?,
        Command::Verify => {
            if !admin::verify(store, out).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Report(ReportCommand::Overdrafts) => admin::report_overdrafts(store, out).await?,
        Command::Report(ReportCommand::Flags) => admin::report_flags(store, out).await?,
        Command::Report(ReportCommand::Anomalies) => admin::report_anomalies(store, out).await?,
        Command::Report(ReportCommand::Quarantine) => admin::report_quarantine(store, out).await?,
        Command::Quarantine(QuarantineCommand::Retry { id }) => {
            if !admin::quarantine_retry(store, clock, id, out).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Jobs(JobsCommand::Run { now }) => {
            let now = now.unwrap_or_else(|| clock.now());
            admin::jobs_run(store, now, abandon_after(&config.ledger), out).await?;
        }
        // Answered above, before the store opens.
        Command::Admin(AdminCommand::HashPassword) | Command::Openapi => {}
        Command::Import(command) => {
            let mut progress = std::io::stderr().lock();
            let summary = match command {
                ImportCommand::Purchases { file, store: s } => {
                    import::purchases(store, &file, &s, clock.now(), &mut progress).await?
                }
                ImportCommand::Balances { file, store: s } => {
                    import::balances(store, &file, &s, clock.now(), &mut progress).await?
                }
            };
            writeln!(
                out,
                "imported {} rows: {} written, {} already held",
                summary.rows, summary.written, summary.already_held
            )
            .map_err(|e| CliError::Report(format!("writing output: {e}")))?;
        }
        Command::Report(ReportCommand::Kpi {
            from,
            to,
            store: store_id,
            format,
        }) => {
            let period = Period::new(from, to).map_err(CliError::Report)?;
            let report = reports::load_kpi(store, period, store_id.as_ref(), clock.now())
                .await
                .map_err(|e| CliError::Report(format!("KPI report: {e}")))?;
            let written = match format {
                KpiFormat::Json => serde_json::to_writer_pretty(&mut *out, &report)
                    .map_err(std::io::Error::from)
                    .and_then(|()| writeln!(out)),
                KpiFormat::Csv => kpi::write_csv(&report, out),
                KpiFormat::Table => kpi::write_table(&report, out),
            };
            written.map_err(|e| CliError::Report(format!("writing output: {e}")))?;
        }
        Command::Report(ReportCommand::Clv {
            calibration_end,
            weeks,
            format,
            rows,
        }) => {
            let options = ClvOptions {
                calibration_end,
                horizon_weeks: weeks,
                table_rows: rows,
            };
            report_clv(store, &options, format, out).await?;
        }
        // Answered above, before any database is opened.
        Command::CheckConfig { .. } | Command::Tls(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}
