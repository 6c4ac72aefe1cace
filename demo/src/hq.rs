//! The demo's HQ: a real `sync-server` (its library) on SQLite in the demo's temp
//! dir, served on loopback inside this process. It can be cut off and brought back
//! on the same address, as a WAN outage would.

use anyhow::{Context, anyhow};
use config::clock::Clock;
use config::server::ServerConfig;
use protocol::CardId;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use sync_server::server::{ServeOptions, connection_limits, serve};
use sync_server::store::Store;
use sync_server::store::flow::escrow::{AbandonAfter, DEFAULT_LEASE_DURATION};
use sync_server::store::sqlite::SqliteStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The embedded HQ.
pub struct Hq {
    store: Arc<dyn Store>,
    clock: Clock,
    addr: SocketAddr,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Hq {
    /// Opens the HQ database in `dir` and picks a free loopback port.
    pub async fn open(dir: &Path) -> anyhow::Result<Self> {
        let store = SqliteStore::open(&dir.join("hq.db"))
            .await
            .context("opening the HQ database")?;
        // Reserve a port the server can bind again after an outage.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        Ok(Self {
            store: Arc::new(store),
            clock: Clock::default(),
            addr,
            running: None,
        })
    }

    /// Base URL of the sync API.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves the sync API until [`Hq::stop`].
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let cancel = CancellationToken::new();
        let options = ServeOptions {
            listen: self.addr,
            tls: None,
            allow_plain_http: false,
            max_body_bytes: 16 * 1024 * 1024,
            connections: connection_limits(&ServerConfig::default()),
            pull_page_size: 1000,
            job_interval: Duration::from_secs(300),
            admin: None,
            lease_duration: DEFAULT_LEASE_DURATION,
            abandon_after: AbandonAfter::default(),
        };
        let (store, clock, token) = (self.store.clone(), self.clock, cancel.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = serve(store, clock, options, token).await {
                eprintln!("demo HQ stopped: {e}");
            }
        });
        self.running = Some((cancel, task));
        let url = format!("{}/v1/health", self.url());
        let client = reqwest::Client::builder().no_proxy().build()?;
        for _ in 0..100 {
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(anyhow!("the demo HQ did not start"))
    }

    /// Cuts HQ off: the server stops listening.
    pub async fn stop(&mut self) {
        if let Some((cancel, task)) = self.running.take() {
            cancel.cancel();
            if let Err(e) = task.await {
                eprintln!("demo HQ task failed: {e}");
            }
        }
    }

    /// `terminal add`: returns the token.
    pub async fn enroll(&self, store: &str, terminal: &str) -> anyhow::Result<String> {
        let mut out = Vec::new();
        sync_server::admin::terminal_add(
            self.store.as_ref(),
            self.clock,
            &store.parse()?,
            &terminal.parse()?,
            false,
            &mut out,
        )
        .await?;
        let text = String::from_utf8(out)?;
        Ok(text.lines().last().unwrap_or_default().trim().to_owned())
    }

    /// `rules set FILE`: returns the version.
    pub async fn set_rules(&self, file: &Path) -> anyhow::Result<u64> {
        Ok(
            sync_server::admin::rules_set(self.store.as_ref(), self.clock, file, &mut Vec::new())
                .await?,
        )
    }

    /// `keys rotate`.
    pub async fn rotate_keys(&self) -> anyhow::Result<()> {
        sync_server::admin::keys_rotate(self.store.as_ref(), self.clock, 30, &mut Vec::new())
            .await?;
        Ok(())
    }

    /// `card token CARD`: what the chain's app backend hands to a phone.
    pub async fn app_token(&self, card: &CardId, ttl_secs: u32) -> anyhow::Result<String> {
        let mut out = Vec::new();
        sync_server::admin::card_token(self.store.as_ref(), self.clock, card, ttl_secs, &mut out)
            .await?;
        Ok(String::from_utf8(out)?.trim().to_owned())
    }

    /// `verify`: true when every balance matches its ledger; the summary line.
    pub async fn verify(&self) -> anyhow::Result<(bool, String)> {
        let mut out = Vec::new();
        let ok = sync_server::admin::verify(self.store.as_ref(), &mut out).await?;
        let text = String::from_utf8(out)?;
        Ok((ok, text.lines().last().unwrap_or_default().to_owned()))
    }
}
