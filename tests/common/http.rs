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
