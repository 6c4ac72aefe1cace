//! The demo's till: plain HTTP calls to the agent's till API, as a till would make.

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A till talking to one agent.
pub struct Till {
    http: reqwest::Client,
    base: String,
}

/// One receipt line.
pub fn line(sku: &str, category: &str, amount_minor: i64, qty: u32) -> Value {
    json!({"sku": sku, "category": category, "amount_minor": amount_minor, "qty": qty})
}

impl Till {
    /// A till for the agent at `base`.
    pub fn new(base: String) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder().no_proxy().build()?,
            base,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// The agent's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`, expecting 200.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await?;
        if status != 200 {
            bail!("GET {path}: {status} {body}");
        }
        Ok(body)
    }

    /// `POST path` with a JSON body: status and body.
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// The card's view.
    pub async fn card(&self, card: &str) -> anyhow::Result<Value> {
        self.get(&format!("/v1/cards/{card}")).await
    }

    /// Holds and commits a sale; returns the hold's answer (an error answer is returned
    /// as is, with nothing committed) and the commit's answer.
    pub async fn sell(
        &self,
        receipt: &str,
        card: Option<&str>,
        lines: Value,
        redeem: i64,
    ) -> anyhow::Result<(u16, Value)> {
        let (status, hold) = self
            .post(
                "/v1/sales",
                json!({"receipt_id": receipt, "card": card, "lines": lines, "redeem_points": redeem}),
            )
            .await?;
        if status != 200 {
            return Ok((status, hold));
        }
        let (status, commit) = self
            .post(&format!("/v1/sales/{receipt}/commit"), json!({}))
            .await?;
        if status != 200 {
            bail!("commit {receipt}: {status} {commit}");
        }
        Ok((status, commit))
    }
}
