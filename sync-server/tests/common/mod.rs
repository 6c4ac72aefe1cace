//! Harness of the end-to-end tests: a temp HQ (config file + SQLite file or a
//! PostgreSQL database of its own), the real `sync-server` binary started on a free
//! loopback port, its admin commands, HTTP clients with the ring TLS provider, and
//! journal-entry builders.
//!
//! Tests are written once as `async fn name(backend: Backend)` and instantiated for
//! each backend by [`on_every_backend!`].

#![allow(dead_code)] // Each test file uses a different part of the harness.

use protocol::evaluate::price_sale;
use protocol::journal::{EntryBody, JournalEntry, SaleEntry, WelcomeEntry};
use protocol::receipt::Line;
use protocol::rules::ProgramRules;
use protocol::wire::{PROTOCOL_HEADER, PROTOCOL_VERSION, PushRequest};
use protocol::{CardId, Money, Points, ReceiptId, Seq, StoreId, TerminalId};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;
use sync_server::store::postgres::testdb::{self, TestDatabase};
use tempfile::TempDir;
use time::OffsetDateTime;
use uuid::Uuid;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sync-server");

/// Instantiates each named test function (`fn(Backend)`, async unless the list
/// starts with `blocking:`) once per backend, as `sqlite::NAME` and `postgres::NAME`.
/// The PostgreSQL variants are skipped with `SKIP_PG_TESTS=1`.
#[macro_export]
macro_rules! on_every_backend {
    (blocking: $($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::common::Backend::Sqlite); } )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if $crate::common::Backend::Postgres.enabled() {
                        super::$name($crate::common::Backend::Postgres);
                    }
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if $crate::common::Backend::Postgres.enabled() {
                        super::$name($crate::common::Backend::Postgres).await;
                    }
                }
            )*
        }
    };
}

/// Which database a test's HQ uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the HQ's temp directory.
    Sqlite,
    /// A database of its own on the local PostgreSQL server, dropped afterwards.
    Postgres,
}

impl Backend {
    /// False for PostgreSQL when `SKIP_PG_TESTS=1`.
    pub fn enabled(self) -> bool {
        self == Self::Sqlite || !testdb::skipped()
    }

    /// An HQ with the default configuration.
    pub fn hq(self) -> Hq {
        self.hq_with_config("")
    }

    /// An HQ whose config file holds `extra` (TOML).
    pub fn hq_with_config(self, extra: &str) -> Hq {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("sync-server.toml");
        std::fs::write(&config, extra).expect("write config");
        let db = match self {
            Self::Sqlite => Database::Sqlite(dir.path().join("hq.db")),
            Self::Postgres => Database::Postgres(
                TestDatabase::create_blocking()
                    .unwrap_or_else(|e| panic!("{e}"))
                    .expect("PostgreSQL tests are enabled"),
            ),
        };
        Hq { dir, config, db }
    }
}

/// Where an HQ keeps its ledger.
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A throwaway PostgreSQL database.
    Postgres(TestDatabase),
}

/// A temporary HQ: its directory, config file and database.
pub struct Hq {
    pub dir: TempDir,
    pub config: PathBuf,
    pub db: Database,
}

impl Hq {
    /// A SQLite HQ whose config file holds `extra` (TOML).
    pub fn with_config(extra: &str) -> Self {
        Backend::Sqlite.hq_with_config(extra)
    }

    /// A SQLite HQ with the default configuration.
    pub fn new() -> Self {
        Self::with_config("")
    }

    /// The `--database` URL.
    pub fn database(&self) -> String {
        match &self.db {
            Database::Sqlite(path) => format!("sqlite:{}", path.display()),
            Database::Postgres(db) => db.url().to_owned(),
        }
    }

    /// Runs raw SQL on the database behind the server's back (tampering tests).
    pub fn tamper(&self, sql: &str) {
        match &self.db {
            Database::Sqlite(path) => rusqlite::Connection::open(path)
                .and_then(|c| c.execute_batch(sql))
                .expect("tamper with SQLite"),
            Database::Postgres(db) => db.execute_blocking(sql).expect("tamper with PostgreSQL"),
        }
    }

    /// Waits until a pull answers every change committed so far (PostgreSQL's feed
    /// answers a change once every older transaction on the cluster has finished).
    pub async fn settle(&self) {
        if let Database::Postgres(db) = &self.db {
            db.settle().await.expect("the change feed catches up");
        }
    }

    /// The binary with `--config` and `--database` set.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--database")
            .arg(self.database())
            .args(args)
            .env_remove("LOYALTY_CLOCK_OFFSET_SECS");
        cmd
    }

    /// Runs an admin command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run sync-server")
    }

    /// Runs an admin command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sync-server {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// `terminal add`; returns the token (the last line of stdout).
    pub fn add_terminal(&self, store: &str, terminal: &str) -> String {
        let out = self.ok(&["terminal", "add", "--store", store, "--terminal", terminal]);
        last_line(&out).to_owned()
    }

    /// Starts `run` on a free loopback port.
    pub fn start(&self) -> Server {
        self.start_with(&[], &[])
    }

    /// Starts `run` with extra arguments and environment.
    pub fn start_with(&self, args: &[&str], env: &[(&str, &str)]) -> Server {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log file");
        let mut cmd = self.command(&["run", "--listen", "127.0.0.1:0"]);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd.spawn().expect("start sync-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("sync-server listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => Server { child, url },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(self.dir.path().join("server.log"));
                panic!("sync-server did not start: {log:?}");
            }
        }
    }
}

/// The last line of a command's output.
pub fn last_line(text: &str) -> &str {
    text.lines().last().expect("some output").trim()
}

/// A running server, stopped when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Asks the server to stop with SIGTERM and returns whether it exited cleanly.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let status = self.child.wait().expect("wait for sync-server");
        status.success()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_with_roots(roots: rustls::RootCertStore) -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// A client for plain HTTP (its TLS trusts nothing).
pub fn client() -> reqwest::Client {
    client_with_roots(rustls::RootCertStore::empty())
}

/// A client that trusts only the CA in `ca_pem`.
pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    client_with_roots(roots)
}

/// A GET with the protocol header and a bearer token.
pub fn get(client: &reqwest::Client, url: &str, token: &str) -> reqwest::RequestBuilder {
    client
        .get(url)
        .bearer_auth(token)
        .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
}

/// A sale at `at` on `card` of one 100.00 line, redeeming `redeem` points, priced by
/// the default rules (5 % accrual on what is paid in money).
pub fn sale_at(
    seq: u64,
    card: Option<&str>,
    redeem: i64,
    at: OffsetDateTime,
    matures_at: Option<OffsetDateTime>,
) -> JournalEntry {
    let lines = [Line {
        sku: "milk".into(),
        category: "dairy".into(),
        amount_minor: Money(10_000),
        qty: 1,
    }];
    let sale = price_sale(
        &ProgramRules::default(),
        &lines,
        Points(redeem),
        None,
        at.date(),
    )
    .expect("priced sale");
    JournalEntry {
        id: Uuid::new_v4(),
        seq: Seq(seq),
        at,
        rules_version: 0,
        body: EntryBody::Sale(SaleEntry {
            receipt_id: ReceiptId::parse(&format!("R-{seq}")).expect("receipt id"),
            card: card.map(|c| CardId::parse(c).expect("card")),
            sale,
            matures_at,
            offline: false,
            lease: None,
        }),
    }
}

/// A sale now: accrues 5 points less 5 % of the redeemed money.
pub fn sale(seq: u64, card: &str, redeem: i64) -> JournalEntry {
    sale_at(seq, Some(card), redeem, OffsetDateTime::now_utc(), None)
}

/// A standalone till's welcome entry.
pub fn welcome(seq: u64, card: &str, points: i64) -> JournalEntry {
    JournalEntry {
        id: Uuid::new_v4(),
        seq: Seq(seq),
        at: OffsetDateTime::now_utc(),
        rules_version: 0,
        body: EntryBody::Welcome(WelcomeEntry {
            card: CardId::parse(card).expect("card"),
            points: Points(points),
        }),
    }
}

/// A push body.
pub fn push_body(store: &str, terminal: &str, entries: Vec<JournalEntry>) -> PushRequest {
    PushRequest {
        protocol: PROTOCOL_VERSION,
        store_id: StoreId::parse(store).expect("store"),
        terminal_id: TerminalId::parse(terminal).expect("terminal"),
        entries,
    }
}

/// Posts a push; returns the status and the JSON answer.
pub async fn push(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    body: &PushRequest,
) -> (u16, serde_json::Value) {
    let response = client
        .post(server.at("/v1/sync/push"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("push request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

/// The error code of an error body.
pub fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}
