//! `pos-agent run`: load the config, open the journal, start every task, and shut
//! down cleanly on SIGINT/SIGTERM (in-flight requests finish, then the journal is
//! closed, which checkpoints its WAL).
//!
//! [`run`] is the composition root: it creates the parts (journal, rules, keys, HQ
//! client, link, metrics, scan bus) and gives the till API, the scanners, the sync
//! client and the hold expiry each a small struct of what they use.

use crate::clock::Clock;
use crate::hq_client::HqClient;
use crate::hq_link::HqLink;
use crate::journal::{Journal, JournalError};
use crate::keyring::{self, KeyRingHandle};
use crate::metrics::Metrics;
use crate::program::RulesHandle;
use crate::redemption::Redemption;
use crate::sales::expiry::HoldExpiry;
use crate::scan_bus::{ScanBus, ScannerStates};
use crate::scanner::gate::TokenUses;
use crate::scanner::{ScanContext, ScannerSet};
use crate::sync_client::SyncClient;
use crate::till_api::{self, TillParts, TillSettings, TillState};
use crate::till_token::TokenCheck;
use anyhow::{Context, bail};
use config::AgentConfig;
use http_serve::ConnectionLimits;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Options of `pos-agent run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// agent.toml (`None`: standalone on built-in defaults).
    pub config: Option<PathBuf>,
    /// The till API's address, overriding the config.
    pub listen: Option<SocketAddr>,
    /// Where to write the bound address once ready.
    pub ready_file: Option<PathBuf>,
    /// Log JSON lines whatever the config says.
    pub log_json: bool,
}

/// Loads the config (or the defaults).
pub fn load_config(path: Option<&Path>) -> anyhow::Result<AgentConfig> {
    load_with(path, config::load_agent)
}

/// Loads the config `path` with `load` (or the defaults).
fn load_with(
    path: Option<&Path>,
    load: fn(&Path) -> Result<AgentConfig, config::ConfigErrors>,
) -> anyhow::Result<AgentConfig> {
    match path {
        Some(p) => load(p).map_err(|e| anyhow::anyhow!("invalid config:\n{e}")),
        None => Ok(AgentConfig::default()),
    }
}

/// The journal path: configured, or `journal.db` in the platform data directory.
pub fn journal_path(cfg: &AgentConfig) -> anyhow::Result<PathBuf> {
    if let Some(p) = &cfg.journal.path {
        return Ok(p.clone());
    }
    let dirs = directories::ProjectDirs::from("", "", "pos-agent")
        .context("no home directory to put the journal in; set [journal] path")?;
    Ok(dirs.data_dir().join("journal.db"))
}

/// Runs the agent on a new tokio runtime until a shutdown signal.
pub fn run_blocking(opts: RunOptions) -> anyhow::Result<()> {
    // The files the config names (token, CA) too: a missing one is named once, before
    // the journal is created.
    let mut cfg = load_with(opts.config.as_deref(), config::load_agent_ready)?;
    crate::logging::init(&cfg.log, opts.log_json);
    if let Some(listen) = opts.listen {
        cfg.till_api.listen = listen;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let cancel = CancellationToken::new();
    runtime.block_on(async {
        let signals = tokio::spawn(shutdown_on_signal(cancel.clone()));
        let result = run(cfg, opts.ready_file, cancel.clone()).await;
        signals.abort();
        result
    })
}

async fn shutdown_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    cancel.cancel();
}

/// Runs the agent until `cancel` fires: the composition root, which creates every
/// part and hands each task only what it uses.
pub async fn run(
    cfg: AgentConfig,
    ready_file: Option<PathBuf>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let listen = cfg.till_api.listen;
    // Checked here too, not only in the config: `--listen` may have moved it.
    if let Some(problem) = cfg.till_api.exposure_problem(listen) {
        bail!("till API: {problem}");
    }
    let exposure = till_api::Exposure {
        tls: cfg
            .till_api
            .tls
            .as_ref()
            .map(|t| http_serve::tls::server_config(&t.cert_file, &t.key_file))
            .transpose()
            .context("till API TLS ([till_api.tls])")?,
        token: cfg
            .till_api
            .token_hash_file
            .as_deref()
            .map(TokenCheck::load)
            .transpose()?
            .map(Arc::new),
    };
    let scheme = if exposure.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let clock = Clock::from_env(cfg.store.utc_offset.minutes)?;
    let path = journal_path(&cfg)?;
    let journal = Journal::open(&path, &cfg.store.store_id, &cfg.store.terminal_id)?;
    tracing::info!(journal = %path.display(), store = %cfg.store.store_id, terminal = %cfg.store.terminal_id, "journal open");

    let (stored_rules, stored_keys) = journal
        .read(|tx| -> Result<_, JournalError> { Ok((tx.latest_rules()?, tx.signing_keys()?)) })
        .await?;
    let rules = RulesHandle::new(
        stored_rules
            .or_else(|| cfg.program.clone())
            .unwrap_or_default(),
    );
    let keys = KeyRingHandle::new(keyring::ring(&stored_keys));
    let hq = cfg
        .sync
        .as_ref()
        .map(|s| HqClient::new(s, cfg.store.store_id.clone(), cfg.store.terminal_id.clone()))
        .transpose()
        .context("setting up HQ sync")?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;

    let metrics = Arc::new(Metrics::new());
    let link = Arc::new(HqLink::default());
    let scans = ScanBus::new(256);
    let scanner_states = ScannerStates::default();
    let live_timeout =
        Duration::from_millis(cfg.sync.as_ref().map_or(800, |s| s.live_balance_timeout_ms));
    let till = TillState::new(TillParts {
        journal: journal.clone(),
        rules: rules.clone(),
        clock,
        metrics: metrics.clone(),
        scans: scans.clone(),
        scanners: scanner_states.clone(),
        link: link.clone(),
        redemption: Redemption::new(
            hq.clone(),
            link.clone(),
            live_timeout,
            cfg.offline.redemption,
        ),
        settings: Arc::new(TillSettings {
            store_id: cfg.store.store_id.clone(),
            terminal_id: cfg.store.terminal_id.clone(),
            offline: cfg.offline.clone(),
            figure_limits: cfg.limits,
            hold_timeout_secs: cfg.till_api.hold_timeout_secs,
            max_body_bytes: cfg.till_api.max_body_bytes,
        }),
    });
    let expiry = HoldExpiry {
        journal: journal.clone(),
        clock,
        metrics: metrics.clone(),
        timeout_secs: cfg.till_api.hold_timeout_secs,
    };
    let expiry = tokio::spawn(expiry.run(cancel.clone()));
    let scan_context = ScanContext {
        bus: scans,
        states: scanner_states,
        keys: keys.clone(),
        metrics: metrics.clone(),
        journal: journal.clone(),
        clock,
        token_uses: hq.clone().map(|hq| TokenUses {
            hq,
            timeout: live_timeout,
        }),
    };
    let scanners = ScannerSet::start(&cfg.scanners, scan_context, cancel.clone()).await;
    let sync = match (hq, &cfg.sync) {
        (Some(hq), Some(sync_config)) => {
            let client = SyncClient {
                journal: journal.clone(),
                hq,
                link,
                rules,
                keys,
                metrics,
                clock,
                config: sync_config.clone(),
                offline: cfg.offline.clone(),
            };
            Some(tokio::spawn(client.run(cancel.clone())))
        }
        _ => None,
    };
    let limits = ConnectionLimits {
        max_connections: cfg.till_api.max_connections,
        header_timeout: Duration::from_secs(cfg.till_api.header_timeout_secs),
    }
    .fitted_to_fd_limit();
    let token = exposure.token.is_some();
    let server = tokio::spawn(till_api::serve(
        listener,
        till,
        limits,
        exposure,
        cancel.clone(),
    ));
    tracing::info!(address = %bound, scheme, till_token = token, "till API listening");
    if let Some(file) = ready_file {
        std::fs::write(&file, bound.to_string())
            .with_context(|| format!("writing {}", file.display()))?;
    }
    http_serve::systemd::ready();
    http_serve::systemd::spawn_watchdog(cancel.clone());

    let served = server.await;
    cancel.cancel();
    http_serve::systemd::stopping();
    if let Err(e) = expiry.await {
        tracing::error!(error = %e, "hold expiry task failed");
    }
    scanners.shutdown().await;
    if let Some(sync) = sync
        && let Err(e) = sync.await
    {
        tracing::error!(error = %e, "sync task failed");
    }
    // Every other handle is gone with its task: closing checkpoints the WAL.
    tokio::task::spawn_blocking(move || journal.close())
        .await
        .context("closing the journal")?;
    tracing::info!("stopped");
    served.context("till API task failed")?.context("till API")
}
