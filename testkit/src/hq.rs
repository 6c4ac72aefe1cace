//! HQ under test: a temporary HQ ([`Hq`]: directory, config file, SQLite file or a
//! PostgreSQL database of its own), the real `sync-server` binary running on it
//! ([`Server`]: started on a free loopback port, restarted on the same address, killed,
//! or stopped with SIGTERM) and its admin commands ([`HqCli`]).

use crate::backends::Backend;
use crate::pg::TestDatabase;
use crate::{bin, wait_for};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tempfile::TempDir;

/// The line `sync-server run` prints once it listens, followed by its URL.
const LISTENING: &str = "sync-server listening on ";

/// How to run the binary against one HQ: its config file, its database (when not
/// named in the config file) and the environment of every command.
#[derive(Debug, Clone)]
pub struct HqCli {
    config: PathBuf,
    database: Option<String>,
    env: Vec<(String, String)>,
}

impl HqCli {
    /// The binary with `--config` (and `--database`) set, and the test's clock offset
    /// removed so that only [`Self::set_env`] sets one.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("sync-server"));
        cmd.arg("--config").arg(&self.config);
        if let Some(url) = &self.database {
            cmd.arg("--database").arg(url);
        }
        cmd.args(args)
            .env_remove("LOYALTY_CLOCK_OFFSET_SECS")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Sets an environment variable of every later command (and server start).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
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
            "sync-server {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `terminal add`; returns the token (the last line of stdout).
    pub fn add_terminal(&self, store: &str, terminal: &str) -> String {
        let out = self.ok(&["terminal", "add", "--store", store, "--terminal", terminal]);
        last_line(&out).to_owned()
    }
}

/// The last line of a command's output.
pub fn last_line(text: &str) -> &str {
    text.lines().last().expect("some output").trim()
}

/// Where an HQ keeps its ledger.
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A throwaway PostgreSQL database.
    Postgres(TestDatabase),
}

impl Database {
    /// A fresh database of `backend` (a SQLite file in `dir`).
    pub fn create(backend: Backend, dir: &Path) -> Self {
        match backend {
            Backend::Sqlite => Self::Sqlite(dir.join("hq.db")),
            Backend::Postgres => Self::Postgres(
                TestDatabase::create_blocking()
                    .unwrap_or_else(|e| panic!("{e}"))
                    .expect("PostgreSQL tests are enabled"),
            ),
        }
    }

    /// The `--database` URL.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite:{}", path.display()),
            Self::Postgres(db) => db.url().to_owned(),
        }
    }
}

/// A temporary HQ: its directory, config file and database.
pub struct Hq {
    /// Config, SQLite file and server log.
    pub dir: TempDir,
    /// The config file.
    pub config: PathBuf,
    /// The ledger's database.
    pub db: Database,
}

impl Backend {
    /// An HQ on this backend with the default configuration.
    pub fn hq(self) -> Hq {
        self.hq_with_config("")
    }

    /// An HQ on this backend whose config file holds `extra` (TOML).
    pub fn hq_with_config(self, extra: &str) -> Hq {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("sync-server.toml");
        std::fs::write(&config, extra).expect("write config");
        let db = Database::create(self, dir.path());
        Hq { dir, config, db }
    }
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
        self.db.url()
    }

    /// The admin commands of this HQ.
    pub fn cli(&self) -> HqCli {
        HqCli {
            config: self.config.clone(),
            database: Some(self.database()),
            env: Vec::new(),
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
        self.cli().command(args)
    }

    /// Runs an admin command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cli().run(args)
    }

    /// Runs an admin command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.cli().ok(args)
    }

    /// `terminal add`; returns the token (the last line of stdout).
    pub fn add_terminal(&self, store: &str, terminal: &str) -> String {
        self.cli().add_terminal(store, terminal)
    }

    /// Starts `run` on a free loopback port.
    pub fn start(&self) -> Server {
        self.start_with(&[], &[])
    }

    /// Starts `run` with extra arguments and environment.
    pub fn start_with(&self, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cli = self.cli();
        for (k, v) in env {
            cli.set_env(k, v);
        }
        Server::launch(cli, self.dir.path().to_path_buf(), args)
    }
}

impl Default for Hq {
    fn default() -> Self {
        Self::new()
    }
}

/// A running (or killed) `sync-server run`, killed when dropped.
pub struct Server {
    child: Option<Child>,
    cli: HqCli,
    args: Vec<String>,
    listen: String,
    /// The server's directory (config, database, `server.log`).
    pub dir: PathBuf,
    /// `http(s)://127.0.0.1:PORT`, fixed across restarts.
    pub base: String,
    /// The same as [`Self::base`] (the name the sync-server tests use).
    pub url: String,
}

impl Server {
    /// The running server's process id (`None` while stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts a server on SQLite in `dir` with `extra_config` appended to its config.
    pub fn start(dir: &Path, extra_config: &str) -> Self {
        Self::start_on(dir, "sqlite:hq.db", extra_config)
    }

    /// Starts a server on the database `url` (`sqlite:PATH` or `postgres://…`; several
    /// servers may share one PostgreSQL database) with its config and logs in `dir`.
    pub fn start_on(dir: &Path, url: &str, extra_config: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("sync-server.toml");
        std::fs::write(&config, format!("database = \"{url}\"\n{extra_config}")).unwrap();
        let cli = HqCli {
            config,
            database: None,
            env: Vec::new(),
        };
        Self::launch(cli, dir.to_path_buf(), &[])
    }

    fn launch(cli: HqCli, dir: PathBuf, args: &[&str]) -> Self {
        let mut server = Self {
            child: None,
            cli,
            args: args.iter().map(|&a| a.to_owned()).collect(),
            listen: "127.0.0.1:0".into(),
            dir,
            base: String::new(),
            url: String::new(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let mut cmd = self.cli.command(&["run", "--listen", &self.listen]);
        cmd.args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd.spawn().expect("start sync-server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix(LISTENING) {
                    // The test stopped waiting when the receiver is gone.
                    let _ = tx.send(url.to_owned());
                }
                // Keep draining so the server never blocks on a full pipe.
            }
        });
        let Ok(url) = rx.recv_timeout(Duration::from_secs(60)) else {
            // Only our own child, by its handle; the log says why it did not start.
            let _ = child.kill();
            let _ = child.wait();
            panic!("sync-server did not start:\n{}", self.log());
        };
        self.listen = url.split("://").nth(1).unwrap().to_owned();
        self.base.clone_from(&url);
        self.url = url;
        self.child = Some(child);
    }

    /// `base` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Sets an environment variable for the next (re)start and admin command.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.cli.set_env(key, value);
    }

    /// Kills the process with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Only our own child, by its handle; it may have exited already.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Asks the server to stop with SIGTERM and returns whether it exited cleanly.
    pub fn terminate(mut self) -> bool {
        let mut child = self.child.take().expect("a running server");
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        child.wait().expect("wait for sync-server").success()
    }

    /// Starts it again on the same address.
    pub fn restart(&mut self) {
        self.kill9();
        // The port was ours a moment ago; retry briefly if the OS is slow to release it.
        let listen = self.listen.clone();
        wait_for(
            Duration::from_secs(10),
            "the server port to be free",
            || std::net::TcpListener::bind(&listen).ok().map(drop),
        );
        self.spawn();
    }

    /// Runs an admin command against this server's config and database.
    pub fn admin(&self, args: &[&str]) -> Output {
        self.cli.run(args)
    }

    /// Runs an admin command that must succeed; returns its stdout.
    pub fn admin_ok(&self, args: &[&str]) -> String {
        self.cli.ok(args)
    }

    /// Adds a terminal and returns its token (the last line of stdout).
    pub fn add_terminal(&self, store: &str, terminal: &str) -> String {
        self.cli.add_terminal(store, terminal)
    }

    /// Sets program rules from TOML text.
    pub fn set_rules(&self, toml: &str) {
        let file = self.dir.join("rules.toml");
        std::fs::write(&file, toml).unwrap();
        self.admin_ok(&["rules", "set", file.to_str().unwrap()]);
    }

    /// HQ's live balance of `card` (`{card, balance, pending, …}`), asked as the
    /// terminal whose token is `token`.
    pub fn balance(&self, token: &str, card: &str) -> serde_json::Value {
        let r = crate::http::get_hq(&self.at(&format!("/v1/cards/{card}")), token);
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["balance"].clone()
    }

    /// Asserts that `sync-server verify` passes.
    pub fn assert_verify(&self) {
        self.admin_ok(&["verify"]);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
