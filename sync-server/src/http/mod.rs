//! The sync API agents call: routes, shared state, and the layers every response
//! passes through (gzip request bodies, body limit, protocol header, JSON errors,
//! request log).

pub mod auth;
pub mod cards;
pub mod error;
pub mod escrow;
pub mod fuzzing;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod pull;
pub mod push;

use crate::store::Store;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use config::clock::Clock;
use error::ApiError;
use protocol::wire::{ErrorBody, PROTOCOL_HEADER, PROTOCOL_VERSION};
use std::sync::Arc;
use std::time::Instant;
use tower_http::decompression::RequestDecompressionLayer;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// The ledger store.
    pub store: Arc<dyn Store>,
    /// The server's clock.
    pub clock: Clock,
    /// Most balances in one pull answer.
    pub pull_page_size: u32,
    /// Largest request body after decompression.
    pub max_body_bytes: usize,
    /// How long a lease HQ grants lives.
    pub lease_duration: time::Duration,
    /// The counters `/metrics` shows.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Who may read `/metrics`.
    pub metrics_access: Arc<metrics::MetricsAccess>,
    /// Terminals that pushed lately, by token hash.
    pub known_tokens: Arc<auth::KnownTokens>,
}

/// The API's router.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/v1/sync/push", post(push::push))
        .route("/v1/sync/pull", get(pull::pull))
        .route("/v1/cards/{card}", get(cards::live_balance))
        .route("/v1/reservations", post(escrow::reserve))
        .route("/v1/sync/leases", post(escrow::lease_sync))
        .route("/v1/tokens/use", post(escrow::use_token))
        .route("/v1/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/openapi.json", get(openapi::openapi_json))
        .route_layer(middleware::from_fn(log_request))
        .fallback(|| async { ApiError::NotFound })
        // The limit applies to the decompressed body: the decompression layer sits
        // outside it, so a small gzip bomb still stops at `max_body_bytes`.
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestDecompressionLayer::new())
        .layer(middleware::map_response(finish_response))
        .with_state(state)
}

/// Logs each routed request by its route pattern, never its raw path: paths carry
/// card numbers.
async fn log_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(String::new, |m| m.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_millis();
    if response.status().is_server_error() {
        tracing::warn!(%method, route, status, ms, "request failed");
    } else if response.status().is_client_error() {
        tracing::info!(%method, route, status, ms, "request refused");
    } else {
        tracing::debug!(%method, route, status, ms, "request");
    }
    response
}

/// Every response carries the protocol version; errors produced outside our
/// handlers (unknown route, wrong method, unsupported encoding) get the JSON error
/// body too.
async fn finish_response(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut response = if (status.is_client_error() || status.is_server_error()) && !is_json {
        match status {
            StatusCode::NOT_FOUND => ApiError::NotFound.into_response(),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed.into_response(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedEncoding.into_response(),
            _ => {
                let reason = status.canonical_reason().unwrap_or("error");
                (status, axum::Json(ErrorBody::new("http_error", reason))).into_response()
            }
        }
    } else {
        response
    };
    response.headers_mut().insert(
        HeaderName::from_static(PROTOCOL_HEADER),
        HeaderValue::from(PROTOCOL_VERSION),
    );
    response
}
