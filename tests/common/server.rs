//! A `sync-server` process under test, and its admin commands.

use super::{bin, wait_for};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A running (or stopped) sync server with its directory and database.
pub struct Server {
    child: Option<Child>,
    /// The server's directory (config, database, logs).
    pub dir: PathBuf,
    /// `http(s)://127.0.0.1:PORT`, fixed across restarts.
    pub base: String,
    listen: String,
    env: Vec<(String, String)>,
}

impl Server {
    /// Starts a server on SQLite in `dir` with `extra_config` appended to its config.
    pub fn start(dir: &Path, extra_config: &str) -> Self {
        Self::start_on(dir, "sqlite:hq.db", extra_config)
    }

    /// Starts a server on the database `url` (`sqlite:PATH` or `postgres://…`; several
    /// servers may share one PostgreSQL database) with its config and logs in `dir`.
    pub fn start_on(dir: &Path, url: &str, extra_config: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("sync-server.toml"),
            format!("database = \"{url}\"\n{extra_config}"),
        )
        .unwrap();
        let mut server = Self {
            child: None,
            dir: dir.to_path_buf(),
            base: String::new(),
            listen: "127.0.0.1:0".into(),
            env: Vec::new(),
        };
        server.launch();
        server
    }

    /// Sets an environment variable for the next (re)start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let mut cmd = Command::new(bin("sync-server"));
        cmd.arg("--config")
            .arg(self.dir.join("sync-server.toml"))
            .arg("run")
            .arg("--listen")
            .arg(&self.listen)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start sync-server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("sync-server did not start:\n{}", self.log())
            });
        let url = line.rsplit(' ').next().unwrap().to_owned();
        self.listen = url.split("://").nth(1).unwrap().to_owned();
        self.base = url;
        self.child = Some(child);
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Kills the process with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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
        self.launch();
    }

    /// Runs an admin command against this server's config and database.
    pub fn admin(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("sync-server"));
        cmd.arg("--config")
            .arg(self.dir.join("sync-server.toml"))
            .args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output().expect("run sync-server admin command")
    }

    /// Runs an admin command that must succeed; returns its stdout.
    pub fn admin_ok(&self, args: &[&str]) -> String {
        let out = self.admin(args);
        assert!(
            out.status.success(),
            "sync-server {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Adds a terminal and returns its token (the last line of stdout).
    pub fn add_terminal(&self, store: &str, terminal: &str) -> String {
        let out = self.admin_ok(&["terminal", "add", "--store", store, "--terminal", terminal]);
        out.lines().last().unwrap().trim().to_owned()
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
        let r = super::http::get_hq(&format!("{}/v1/cards/{card}", self.base), token);
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["balance"].clone()
    }

    /// Asserts that `sync-server verify` passes.
    pub fn assert_verify(&self) {
        let out = self.admin(&["verify"]);
        assert!(
            out.status.success(),
            "verify failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
