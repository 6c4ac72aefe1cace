//! The command line: `run`, `demo`, `check-config`, `ports`, `status`, `sync-resume`,
//! `till-token rotate`.

use crate::journal::{JournalError, JournalFile};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// The loyalty agent beside the till.
#[derive(Debug, Parser)]
#[command(name = "pos-agent", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What `pos-agent` can do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (till API, scanners, journal, sync) until SIGINT/SIGTERM.
    Run {
        /// agent.toml; without it the agent runs standalone on built-in defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address of the till API, overriding the config (port 0: any free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Write the till API's bound address to this file once the agent is ready.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Log JSON lines whatever the config says.
        #[arg(long)]
        log_json: bool,
    },
    /// Run the self-contained demonstration (HQ, a virtual scanner, sales, offline,
    /// catch-up): the `loyalty-demo` program beside this one.
    Demo,
    /// Check a config file: prints `ok` or every error with its line (the token and CA
    /// files it names must exist); exit 1 on error.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// List serial ports, with USB ids where known, to help write `[[scanner]]`.
    Ports,
    /// Clear a halted sync (after a human resolved the conflict shown in /v1/health);
    /// the running agent retries within a minute.
    SyncResume {
        /// agent.toml, to find the journal.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The till token, which a till on another machine presents to the till API.
    #[command(subcommand)]
    TillToken(TillTokenCommand),
    /// Ask the running agent for its health.
    Status {
        /// agent.toml, to find the till API address.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Till API base URL (default from the config, else http://127.0.0.1:7070).
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the till API's OpenAPI 3.1 document (what `GET /v1/openapi.json` serves;
    /// committed as docs/openapi/till-api.json).
    Openapi,
}

/// `pos-agent till-token …`.
#[derive(Debug, Subcommand)]
pub enum TillTokenCommand {
    /// Make a new till token: its hash replaces `[till_api] token_hash_file` (the
    /// running agent refuses the old token from the next request on) and the token
    /// is printed once, on stdout; it is stored nowhere else.
    Rotate {
        /// agent.toml, to find the hash file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Runs a parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    // One TLS crypto provider for the whole process (ring; no aws-lc, no OpenSSL);
    // installing fails only when one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Command::Run {
            config,
            listen,
            ready_file,
            log_json,
        } => crate::daemon::run_blocking(crate::daemon::RunOptions {
            config,
            listen,
            ready_file,
            log_json,
        }),
        Command::CheckConfig { file } => return check_config(&file),
        Command::Demo => crate::demo_launcher::run(),
        Command::Ports => crate::ports::run(),
        Command::Openapi => {
            print!("{}", crate::till_api::openapi::document());
            Ok(())
        }
        Command::Status { config, url } => status(config, url),
        Command::SyncResume { config } => sync_resume(config),
        Command::TillToken(TillTokenCommand::Rotate { config }) => till_token_rotate(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pos-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let checked = config::load_agent_ready(file);
    match config::print_check(&checked, &mut std::io::stdout().lock()) {
        Ok(true) => ExitCode::SUCCESS,
        // A problem in the file, or stdout closed (nothing more to say then).
        Ok(false) | Err(_) => ExitCode::FAILURE,
    }
}

fn till_token_rotate(config: &std::path::Path) -> anyhow::Result<()> {
    let cfg = crate::daemon::load_config(Some(config))?;
    let token = crate::till_token::rotate(&cfg, config)?;
    println!("{token}");
    eprintln!(
        "pos-agent: new till token above (shown once); the old one no longer works. \
         Give it to the till as Authorization: Bearer TOKEN."
    );
    Ok(())
}

fn sync_resume(config: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = crate::daemon::load_config(config.as_deref())?;
    let path = crate::daemon::journal_path(&cfg)?;
    let mut journal = JournalFile::open(&path, &cfg.store.store_id, &cfg.store.terminal_id)?;
    let halted = journal.write(|tx| -> Result<_, JournalError> {
        let reason = tx.halted_reason()?;
        if reason.is_some() {
            tx.set_halted(None)?;
        }
        Ok(reason)
    })?;
    match halted {
        Some(reason) => println!("sync resumed (it was halted: {reason})"),
        None => println!("sync was not halted"),
    }
    Ok(())
}

fn status(config: Option<PathBuf>, url: Option<String>) -> anyhow::Result<()> {
    let base = match (url, config) {
        (Some(u), _) => u,
        (None, Some(path)) => {
            let cfg = config::load_agent(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            format!("http://{}", cfg.till_api.listen)
        }
        (None, None) => "http://127.0.0.1:7070".to_owned(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = rt.block_on(async {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(5))
            .build()?
            .get(format!("{}/v1/health", base.trim_end_matches('/')))
            .send()
            .await?;
        resp.error_for_status()?.json::<serde_json::Value>().await
    });
    let body = body.map_err(|e| anyhow::anyhow!("cannot reach the agent at {base}: {e}"))?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}
