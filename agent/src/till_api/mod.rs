//! The till API: HTTP/JSON on loopback, the till integration's only way in.
//!
//! Handlers parse and validate at the edge ([`body`]), ask HQ for a live balance
//! when a redemption needs it, then run one journal transaction and answer only
//! after it committed. Routes: [`cards`], [`sales`] (quote, sales, commit, cancel,
//! returns), [`status`] (health, metrics), [`scans`] (SSE).

pub mod body;
pub mod cards;
pub mod error;
pub mod sales;
pub mod scans;
pub mod status;

use crate::clock::Clock;
use crate::hq_client::HqClient;
use crate::hq_link::HqLink;
use crate::journal::Journal;
use crate::keyring::KeyRingHandle;
use crate::metrics::Metrics;
use crate::program::RulesHandle;
use crate::scan_bus::{ScanBus, ScannerStates};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use config::AgentConfig;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Everything a handler may need, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The journal.
    pub journal: Journal,
    /// Rules in force.
    pub rules: RulesHandle,
    /// The loaded configuration.
    pub config: Arc<AgentConfig>,
    /// Time.
    pub clock: Clock,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Scan fan-out.
    pub scans: ScanBus,
    /// Scanner states.
    pub scanners: ScannerStates,
    /// HQ client, when `[sync]` is configured.
    pub hq: Option<HqClient>,
    /// HQ reachability.
    pub link: Arc<HqLink>,
    /// HQ public keys for app tokens.
    pub keys: KeyRingHandle,
}

/// The router with every route and the latency middleware.
pub fn router(state: AppState) -> Router {
    let limit = state.config.till_api.max_body_bytes;
    Router::new()
        .merge(cards::routes())
        .merge(sales::routes())
        .merge(status::routes())
        .merge(scans::routes())
        .fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint",
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            reject_oversized,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Records latency per route and counts error answers by code.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let resp = next.run(req).await;
    if route != "/v1/scans" {
        state
            .metrics
            .observe_request(&route, started.elapsed().as_secs_f64());
    }
    if let Some(error::ErrorCode(code)) = resp.extensions().get::<error::ErrorCode>() {
        state.metrics.error(code);
    }
    resp
}

/// Answers 413 at once when the declared body length is over the limit, instead of
/// reading the body first (bodies without a length are cut by `DefaultBodyLimit`).
async fn reject_oversized(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.config.till_api.max_body_bytes) {
        return axum::response::IntoResponse::into_response(error::ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "request body is larger than {} bytes",
                state.config.till_api.max_body_bytes
            ),
        ));
    }
    next.run(req).await
}

/// Serves the API on `listener` until `cancel` fires, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}
