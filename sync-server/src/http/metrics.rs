//! `GET /metrics`: the Prometheus text of [`crate::metrics`], for a scraper on the
//! same host, or anywhere with the admin password.
//!
//! The figures carry no card or token, but they show a chain's trade (entries per
//! minute, refusals) to whoever can read them, so they are not public: a loopback
//! peer may read them (a Prometheus beside HQ), unless `allow_plain_http` says a
//! proxy on this host forwards outside requests (they would all look local); any
//! other peer needs HTTP Basic `admin:<password>` of `[admin]`, like `/v1/admin/kpi`.

use super::AppState;
use crate::dashboard::session::{Password, basic_password};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use protocol::wire::ErrorBody;
use std::net::SocketAddr;

/// Who may read `/metrics`.
#[derive(Debug, Clone)]
pub struct MetricsAccess {
    /// Loopback peers are the host itself (no proxy on this host forwards others).
    pub trust_loopback: bool,
    /// `[admin]`'s password, accepted as HTTP Basic `admin:<password>`.
    pub password: Option<Password>,
}

impl MetricsAccess {
    async fn allows(&self, peer: SocketAddr, headers: &HeaderMap) -> bool {
        if self.trust_loopback && peer.ip().is_loopback() {
            return true;
        }
        let (Some(password), Some(given)) = (self.password.clone(), basic_password(headers)) else {
            return false;
        };
        // Argon2 is slow on purpose: off the async workers.
        tokio::task::spawn_blocking(move || password.matches(&given))
            .await
            .unwrap_or(false)
    }
}

/// The handler.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "status",
    security((), ("admin" = [])),
    responses(
        (status = 200, description = "Prometheus text.", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 401, description = "Not from this host, and not HTTP Basic `admin:<password>` of `[admin]`.", body = ErrorBody),
    )
)]
pub async fn metrics(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !state.metrics_access.allows(peer, &headers).await {
        let body = ErrorBody::new(
            "unauthorized",
            "/metrics answers this host, or HTTP Basic admin:<password> of [admin]",
        );
        let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"loyalty HQ\""),
        );
        return response;
    }
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
