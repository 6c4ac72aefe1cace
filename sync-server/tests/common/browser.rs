//! A real headless Chromium for the dashboard tests, started by the test and driven
//! over the DevTools protocol (JSON messages on a WebSocket): navigate, evaluate
//! JavaScript in the page, take screenshots.
//!
//! Without a `chromium` binary the tests fail with a message that says how to install
//! it (`apt-get install -y chromium`); they skip only when `LOYALTY_SKIP_BROWSER_TESTS=1`
//! says so (for a machine where a browser cannot be installed; CI installs one).

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The variable that lets a local run skip the browser tests.
pub const SKIP_VAR: &str = "LOYALTY_SKIP_BROWSER_TESTS";

/// The Chromium binary, or `None` when the tests are to be skipped; panics with how
/// to install it otherwise.
pub fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        });
        if found.is_some() {
            return found;
        }
    }
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("no chromium on PATH and {SKIP_VAR}=1: skipping the browser test");
        return None;
    }
    panic!(
        "the dashboard tests need a real Chromium and none is on PATH: install it \
         (Debian: apt-get install -y chromium), or set {SKIP_VAR}=1 to skip them locally"
    );
}

/// A headless Chromium with one page, killed when dropped.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    page: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Starts `binary` headless with a fresh profile and attaches to its first page.
    pub fn start(binary: &Path) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--window-size=1100,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium announced its DevTools endpoint");
        let port = browser_ws
            .trim_start_matches("ws://")
            .split(['/', ':'])
            .nth(1)
            .expect("port in the DevTools URL")
            .to_owned();
        let page_ws = page_target(&port);
        let (page, _) = tungstenite::connect(page_ws.as_str()).expect("attach to the page");
        Self {
            child,
            _profile: profile,
            page,
            next_id: 0,
        }
    }

    /// Sends a DevTools command and waits for its answer (events in between are
    /// dropped); panics on a protocol error.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.page
            .send(Message::text(msg))
            .expect("send to chromium");
        loop {
            let Message::Text(text) = self.page.read().expect("read from chromium") else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Loads `url` and waits for the document to be complete.
    pub fn goto(&mut self, url: &str) {
        self.eval("window.loyaltyStale = true");
        self.call("Page.navigate", json!({ "url": url }));
        self.wait_for("window.loyaltyStale === undefined && document.readyState == 'complete'");
    }

    /// Evaluates `expression` in the page; its value as JSON.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Waits until `condition` (JavaScript) is true in the page.
    pub fn wait_for(&mut self, condition: &str) {
        for _ in 0..200 {
            if self.eval(condition) == Value::Bool(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the page never satisfied {condition}");
    }

    /// Evaluates `expression` that navigates (a form submit) and waits for the new
    /// document: the old one is marked first, so a redirect back to the same URL
    /// counts too.
    pub fn submit(&mut self, expression: &str) {
        self.eval("window.loyaltyStale = true");
        self.eval(expression);
        self.wait_for("window.loyaltyStale === undefined && document.readyState == 'complete'");
    }

    /// A PNG of the page, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let data = shot["data"].as_str().expect("screenshot data");
        let png = data_encoding::BASE64
            .decode(data.as_bytes())
            .expect("base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The WebSocket URL of the browser's first page (`/json/list` over plain HTTP).
fn page_target(port: &str) -> String {
    for _ in 0..100 {
        if let Ok(mut stream) = TcpStream::connect(format!("127.0.0.1:{port}")) {
            use std::io::{Read, Write};
            let request = format!(
                "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if let Some((_, body)) = answer.split_once("\r\n\r\n")
                    && let Ok(Value::Array(targets)) = serde_json::from_str::<Value>(body)
                    && let Some(url) = targets
                        .iter()
                        .find(|t| t["type"] == "page")
                        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                {
                    return url.to_owned();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("chromium listed no page target");
}
