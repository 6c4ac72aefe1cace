//! A small blocking JSON client for the tests.

use serde_json::Value;
use std::time::Duration;

/// A response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Parsed body.
    pub body: Value,
    /// Raw body.
    pub text: String,
}

impl Reply {
    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build(),
    )
}

fn reply(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut resp = resp.expect("HTTP request failed");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, body, text }
}

/// GET `url`.
pub fn get(url: &str) -> Reply {
    reply(agent().get(url).call())
}

/// GET `url` with a bearer token and the sync protocol header (HQ's API).
pub fn get_hq(url: &str, token: &str) -> Reply {
    reply(
        agent()
            .get(url)
            .header("authorization", &format!("Bearer {token}"))
            .header(
                protocol::wire::PROTOCOL_HEADER,
                &protocol::wire::PROTOCOL_VERSION.to_string(),
            )
            .call(),
    )
}

/// POST `body` (JSON) to `url` with a bearer token and the sync protocol header (a
/// push to HQ's API, as a terminal would send it).
pub fn post_hq(url: &str, token: &str, body: &Value) -> Reply {
    reply(
        agent()
            .post(url)
            .header("authorization", &format!("Bearer {token}"))
            .header(
                protocol::wire::PROTOCOL_HEADER,
                &protocol::wire::PROTOCOL_VERSION.to_string(),
            )
            .send_json(body),
    )
}

/// A request with no body and any `method` (`PUT`, `DELETE`, …) to `url`; returns
/// the answer and its `Allow` header.
pub fn call(method: &str, url: &str) -> (Reply, Option<String>) {
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .body(())
        .expect("a valid request");
    let resp = agent().run(request);
    let allow = resp.as_ref().ok().and_then(|r| {
        r.headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    (reply(resp), allow)
}

/// POST `body` (JSON) to `url`.
pub fn post(url: &str, body: &Value) -> Reply {
    reply(agent().post(url).send_json(body))
}

/// POST raw bytes to `url`.
pub fn post_raw(url: &str, body: &[u8]) -> Reply {
    reply(
        agent()
            .post(url)
            .header("content-type", "application/json")
            .send(body),
    )
}

/// True when `url` answers at all.
pub fn reachable(url: &str) -> bool {
    agent().get(url).call().is_ok()
}

/// Sends only the headers of a POST declaring a `declared_len`-byte body, and returns
/// the status line's code: how a server treats an oversized body without the test
/// racing the server's early close while still writing.
pub fn post_declaring_length(url: &str, declared_len: usize) -> u16 {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {declared_len}\r\n\r\n{{"
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).expect("read status line");
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// An HTTPS request that trusts only the CA in `ca_pem`, with a bearer token when
/// given and a JSON body when given (a till calling an agent over the store network).
pub fn https(
    method: reqwest::Method,
    url: &str,
    ca_pem: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = crate::hq_http::client_trusting(ca_pem).request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("HTTPS request failed");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, body, text }
    })
}
