//! A real browser for page tests: Debian's headless Chromium driven by its
//! ChromeDriver over the W3C WebDriver protocol (JSON over HTTP, so no client crate).
//!
//! [`Browser::start`] returns `None` when Chromium or ChromeDriver is not installed,
//! so `cargo test` passes on a machine with only Rust; with `REQUIRE_BROWSER=1` (CI
//! sets it after installing them) a missing browser fails the test instead.

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session; the driver is killed on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: ureq::Agent,
    _profile: tempfile::TempDir,
}

/// An element of the current page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

/// A cookie as the browser holds it.
#[derive(Debug, Clone)]
pub struct Cookie {
    /// Name.
    pub name: String,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `SameSite` (`Strict`, `Lax`, `None`).
    pub same_site: String,
    /// `Secure`.
    pub secure: bool,
}

fn find_binary(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium, or `None` (with a note on stderr)
    /// when they are not installed and `REQUIRE_BROWSER` is not set.
    pub fn start() -> Option<Self> {
        let chromium = find_binary(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
        let driver = find_binary(&["/usr/bin/chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            assert!(
                std::env::var_os("REQUIRE_BROWSER").is_none(),
                "REQUIRE_BROWSER is set but chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
            );
            eprintln!(
                "SKIPPED: this page test needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver); CI installs them"
            );
            return None;
        };
        Some(Self::launch(&chromium, &driver))
    }

    fn launch(chromium: &Path, driver: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build(),
        );
        let base = format!("http://127.0.0.1:{port}");
        crate::wait_for(Duration::from_secs(30), "chromedriver to answer", || {
            http.get(&format!("{base}/status")).call().ok().map(|_| ())
        });
        let profile = tempfile::tempdir().expect("a browser profile dir");
        let mut browser = Self {
            driver: child,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let created = browser.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--no-first-run", "--window-size=1400,1800",
                             format!("--user-data-dir={}", browser._profile.path().display())],
                },
            }}})),
        );
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; its `value`. Panics on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let reply = match (method, body) {
            ("GET", _) => self.http.get(&url).call(),
            ("DELETE", _) => self.http.delete(&url).call(),
            (_, body) => self.http.post(&url).send_json(body.unwrap_or(json!({}))),
        };
        let mut reply = reply.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = reply.status().as_u16();
        let value: Value = reply
            .body_mut()
            .read_json()
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: not JSON: {e}"));
        assert!(status < 400, "WebDriver {method} {path}: {status} {value}");
        value["value"].clone()
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Loads `url` and waits for it.
    pub fn goto(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({"url": url})));
    }

    /// The address of the current page.
    pub fn url(&self) -> String {
        self.call("GET", &self.at("/url"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The current page's HTML as the browser parsed it.
    pub fn source(&self) -> String {
        self.call("GET", &self.at("/source"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A PNG screenshot of the window, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let encoded = self.call("GET", &self.at("/screenshot"), None);
        let png = data_encoding::BASE64
            .decode(encoded.as_str().unwrap_or_default().as_bytes())
            .expect("a base64 screenshot");
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Every element matching the CSS selector.
    pub fn all(&self, css: &str) -> Vec<Element<'_>> {
        let found = self.call(
            "POST",
            &self.at("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str())
                    .map(|id| Element {
                        browser: self,
                        id: id.to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching the CSS selector, waiting for it while a page that a
    /// click started is still loading; panics with the page when none comes.
    pub fn find(&self, css: &str) -> Element<'_> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(found) = self.all(css).into_iter().next() {
                return found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no element {css} on {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The cookies the browser holds for the current page.
    pub fn cookies(&self) -> Vec<Cookie> {
        self.call("GET", &self.at("/cookie"), None)
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| Cookie {
                        name: c["name"].as_str().unwrap_or_default().to_owned(),
                        http_only: c["httpOnly"] == true,
                        same_site: c["sameSite"].as_str().unwrap_or_default().to_owned(),
                        secure: c["secure"] == true,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Element<'_> {
    fn at(&self, rest: &str) -> String {
        self.browser.at(&format!("/element/{}{rest}", self.id))
    }

    /// Types `text` into the element.
    pub fn type_text(&self, text: &str) -> &Self {
        self.browser
            .call("POST", &self.at("/value"), Some(json!({"text": text})));
        self
    }

    /// Clears an input.
    pub fn clear(&self) -> &Self {
        self.browser.call("POST", &self.at("/clear"), None);
        self
    }

    /// Clicks the element (a form's button submits it; the call returns once the
    /// next page loaded).
    pub fn click(&self) {
        self.browser.call("POST", &self.at("/click"), None);
    }

    /// The element's rendered text.
    pub fn text(&self) -> String {
        self.browser
            .call("GET", &self.at("/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// An attribute's value.
    pub fn attribute(&self, name: &str) -> Option<String> {
        self.browser
            .call("GET", &self.at(&format!("/attribute/{name}")), None)
            .as_str()
            .map(str::to_owned)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.http.delete(&url).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
