//! A `pos-agent` process under test.

use super::http::{self, Reply};
use super::{bin, wait_for};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running agent with its directory, config and address.
pub struct Agent {
    child: Option<Child>,
    /// The agent's directory (config, journal, logs).
    pub dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The address the agent binds (`--listen`).
    listen: String,
    extra_env: Vec<(String, String)>,
}

impl Agent {
    /// Writes `config` to `dir/agent.toml` and starts the agent on a free port.
    pub fn start(dir: &Path, config: &str) -> Self {
        Self::start_with_env(dir, config, &[])
    }

    /// Like [`Agent::start`] with extra environment variables.
    pub fn start_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_full(dir, config, "127.0.0.1:0", env)
    }

    /// Like [`Agent::start`], binding `listen` (e.g. `0.0.0.0:0`, as a till API
    /// exposed to the store network). `base` then names the bound address, which may
    /// be a wildcard: connect with [`Agent::port`].
    pub fn start_listening(dir: &Path, config: &str, listen: &str) -> Self {
        Self::start_full(dir, config, listen, &[])
    }

    fn start_full(dir: &Path, config: &str, listen: &str, env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("agent.toml"), config).unwrap();
        let mut agent = Self {
            child: None,
            dir: dir.to_path_buf(),
            base: String::new(),
            listen: listen.to_owned(),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        agent.launch();
        agent
    }

    /// A minimal standalone config whose journal lives in the agent's directory.
    pub fn standalone_config() -> String {
        "[store]\nstore_id = \"store-1\"\nterminal_id = \"till-1\"\n[journal]\npath = \"journal.db\"\n".to_owned()
    }

    fn launch(&mut self) {
        let ready = self.dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        let mut cmd = Command::new(bin("pos-agent"));
        cmd.arg("run")
            .arg("--config")
            .arg(self.dir.join("agent.toml"))
            .arg("--listen")
            .arg(&self.listen)
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start pos-agent");
        let addr = wait_for(Duration::from_secs(30), "pos-agent to be ready", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "pos-agent exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            std::fs::read_to_string(&ready)
                .ok()
                .filter(|s| !s.is_empty())
        });
        self.base = format!("http://{addr}");
        self.child = Some(child);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The bound port of the till API.
    pub fn port(&self) -> u16 {
        let addr = self.base.rsplit_once(':').unwrap().1;
        addr.parse().unwrap()
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Reply {
        http::get(&self.url(path))
    }

    /// POST JSON to `path`.
    pub fn post(&self, path: &str, body: &Value) -> Reply {
        http::post(&self.url(path), body)
    }

    /// Kills the process with SIGKILL (no clean shutdown), as a power cut would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process with SIGTERM and waits for it; returns its exit success.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// Starts the process again with the same config and directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// Opens and commits a sale; returns (hold answer, commit answer).
    pub fn sell(
        &self,
        receipt: &str,
        card: Option<&str>,
        amount_minor: i64,
        redeem: i64,
    ) -> (Reply, Reply) {
        let hold = self.post("/v1/sales", &sale_body(receipt, card, amount_minor, redeem));
        assert_eq!(hold.status, 200, "hold {receipt}: {}", hold.text);
        let commit = self.post(&format!("/v1/sales/{receipt}/commit"), &json!({}));
        (hold, commit)
    }

    /// The card's view.
    pub fn card(&self, card: &str) -> Value {
        let r = self.get(&format!("/v1/cards/{card}"));
        assert_eq!(r.status, 200, "card {card}: {}", r.text);
        r.body
    }

    /// The health answer.
    pub fn health(&self) -> Value {
        let r = self.get("/v1/health");
        assert_eq!(r.status, 200, "health: {}", r.text);
        r.body
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `pos-agent run` with `dir/agent.toml` where it is expected to refuse to start;
/// returns its stderr after asserting it failed.
pub fn run_refused(dir: &Path) -> String {
    run_refused_on(dir, "127.0.0.1:0")
}

/// Like [`run_refused`], with `--listen listen`.
pub fn run_refused_on(dir: &Path, listen: &str) -> String {
    let out = Command::new(bin("pos-agent"))
        .arg("run")
        .arg("--config")
        .arg(dir.join("agent.toml"))
        .arg("--listen")
        .arg(listen)
        .output()
        .expect("run pos-agent");
    assert!(
        !out.status.success(),
        "pos-agent started but should have refused"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A one-line receipt body.
pub fn sale_body(receipt: &str, card: Option<&str>, amount_minor: i64, redeem: i64) -> Value {
    json!({
        "receipt_id": receipt,
        "card": card,
        "lines": [{"sku": "sku-1", "category": "grocery", "amount_minor": amount_minor, "qty": 1}],
        "redeem_points": redeem,
    })
}

/// Writes `token` to `dir/terminal.token` and returns an agent config syncing with
/// HQ at `url` every second (quick retries), plus `extra` TOML.
pub fn sync_config(
    dir: &Path,
    store: &str,
    terminal: &str,
    url: &str,
    token: &str,
    extra: &str,
) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("terminal.token"), format!("{token}\n")).unwrap();
    format!(
        "[store]\nstore_id = \"{store}\"\nterminal_id = \"{terminal}\"\n\
         [journal]\npath = \"journal.db\"\n\
         [sync]\nurl = \"{url}\"\ntoken_file = \"terminal.token\"\ninterval_secs = 1\nmax_backoff_secs = 2\n\
         live_balance_timeout_ms = 500\nrequest_timeout_secs = 5\n{extra}"
    )
}

/// An agent of `store`/`terminal` in `dir`, enrolled at `server` (a new terminal and
/// its token) and syncing with it as [`sync_config`] sets up, plus `extra` TOML.
pub fn enrolled(
    dir: &Path,
    server: &crate::hq::Server,
    store: &str,
    terminal: &str,
    extra: &str,
) -> Agent {
    let token = server.add_terminal(store, terminal);
    Agent::start(
        dir,
        &sync_config(dir, store, terminal, &server.base, &token, extra),
    )
}

impl Agent {
    /// Waits until HQ has acknowledged every entry.
    pub fn wait_synced(&self) {
        wait_for(
            Duration::from_secs(60),
            "the agent to sync everything",
            || {
                let h = self.health();
                (h["queue_depth"] == 0 && h["online"] == true).then_some(())
            },
        );
    }

    /// Waits until `card`'s view satisfies `check`.
    pub fn wait_card(&self, card: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        wait_for(Duration::from_secs(60), what, || {
            let v = self.card(card);
            check(&v).then_some(v)
        })
    }
}
