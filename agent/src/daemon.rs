//! `pos-agent run`: load the config, open the journal, start every task, and shut
//! down cleanly on SIGINT/SIGTERM (in-flight requests finish, the journal thread
//! drains its queue and closes the database).

use crate::clock::Clock;
use crate::hq_client::HqClient;
use crate::hq_link::HqLink;
use crate::journal::Journal;
use crate::keyring::{self, KeyRingHandle};
use crate::metrics::Metrics;
use crate::program::{self, RulesHandle};
use crate::scan_bus::{ScanBus, ScannerStates};
use crate::till_api::{self, AppState};
use anyhow::{Context, bail};
use config::AgentConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Options of `pos-agent run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Config file.
    pub config: Option<PathBuf>,
    /// Listen address override.
    pub listen: Option<SocketAddr>,
    /// Where to write the bound address once ready.
    pub ready_file: Option<PathBuf>,
    /// JSON logs.
    pub log_json: bool,
}

/// Loads the config (or the defaults).
pub fn load_config(path: Option<&Path>) -> anyhow::Result<AgentConfig> {
    match path {
        Some(p) => config::load_agent(p).map_err(|e| anyhow::anyhow!("invalid config:\n{e}")),
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
    let mut cfg = load_config(opts.config.as_deref())?;
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

/// Runs the agent until `cancel` fires.
pub async fn run(
    cfg: AgentConfig,
    ready_file: Option<PathBuf>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let listen = cfg.till_api.listen;
    if !listen.ip().is_loopback() && !cfg.till_api.allow_non_loopback {
        bail!(
            "till API address {listen} is not loopback; set [till_api] allow_non_loopback = true to allow it"
        );
    }
    let clock = Clock::from_env(cfg.store.utc_offset.minutes)?;
    let path = journal_path(&cfg)?;
    let (journal, journal_thread) =
        Journal::open(&path, &cfg.store.store_id, &cfg.store.terminal_id)?;
    tracing::info!(journal = %path.display(), store = %cfg.store.store_id, terminal = %cfg.store.terminal_id, "journal open");

    let (stored, keys) = journal
        .call(|conn| -> Result<_, crate::journal::JournalError> {
            Ok((program::stored_hq_rules(conn)?, keyring::load(conn)?))
        })
        .await??;
    let rules = RulesHandle::new(stored.or_else(|| cfg.program.clone()).unwrap_or_default());
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

    let state = AppState {
        journal: journal.clone(),
        rules,
        config: Arc::new(cfg),
        clock,
        metrics: Arc::new(Metrics::new()),
        scans: ScanBus::new(256),
        scanners: ScannerStates::default(),
        hq,
        link: Arc::new(HqLink::default()),
        keys: KeyRingHandle::new(keys),
    };
    let reaper = tokio::spawn(release_expired_holds(state.clone(), cancel.clone()));
    let scanners = crate::scanner::ScannerSet::start(
        &state.config.scanners,
        crate::scanner::ScanContext::of(&state),
        cancel.clone(),
    )
    .await;
    let sync = state
        .hq
        .clone()
        .map(|hq| tokio::spawn(crate::sync_client::run(state.clone(), hq, cancel.clone())));
    let server = tokio::spawn(till_api::serve(listener, state.clone(), cancel.clone()));
    tracing::info!(address = %bound, "till API listening");
    if let Some(file) = ready_file {
        std::fs::write(&file, bound.to_string())
            .with_context(|| format!("writing {}", file.display()))?;
    }

    let served = server.await;
    cancel.cancel();
    let _ = reaper.await;
    scanners.shutdown().await;
    if let Some(sync) = sync {
        let _ = sync.await;
    }
    drop(state);
    drop(journal);
    // Every handle is gone: the journal thread finishes queued work and closes.
    tokio::task::spawn_blocking(move || journal_thread.join())
        .await
        .context("closing the journal")?;
    tracing::info!("stopped");
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e).context("till API server failed"),
        Err(e) => Err(e).context("till API task failed"),
    }
}

/// Releases holds the till never committed, so their points become available again.
async fn release_expired_holds(state: AppState, cancel: CancellationToken) {
    let timeout = state.config.till_api.hold_timeout_secs;
    let every = Duration::from_secs((timeout / 4).clamp(1, 60));
    // First pass at once: holds that timed out while the agent was down are released
    // before the first till request.
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
        first = false;
        let cutoff =
            state.clock.now().unix_timestamp() - i64::try_from(timeout).unwrap_or(i64::MAX / 2);
        match state
            .journal
            .write(move |tx| crate::sales::settle::release_expired(tx, cutoff))
            .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                tracing::info!(released = n, "released expired holds");
                for _ in 0..n {
                    state.metrics.sale("expired");
                }
            }
            Ok(Err(e)) | Err(e) => tracing::warn!(error = %e, "releasing expired holds"),
        }
    }
}
