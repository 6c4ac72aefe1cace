//! The till API: HTTP/JSON on loopback, the till integration's only way in.
//!
//! Handlers parse and validate at the edge ([`body`]), ask HQ for a live balance
//! when a redemption needs it ([`crate::redemption`]), then run one journal
//! transaction and answer only after it committed. Routes: [`cards`], [`sales`]
//! (quote, sales, commit, cancel, returns), [`status`] (health, metrics), [`scans`]
//! (SSE). Every error is an [`error::ApiError`].
//!
//! On loopback by default, open to the till on this machine. Beyond loopback it is
//! served over TLS and every request needs the till token ([`auth`],
//! [`crate::till_token`]); [`Exposure`] carries both.

pub mod auth;
pub mod body;
pub mod cards;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod openapi;
pub mod sales;
pub mod scans;
pub mod status;

use crate::clock::Clock;
use crate::hq_link::HqLink;
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::program::RulesHandle;
use crate::redemption::Redemption;
use crate::sales::SaleError;
use crate::scan_bus::{ScanBus, ScannerStates};
use crate::till_token::TokenCheck;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use config::agent::OfflineSection;
use error::{ApiError, ErrorCodeOf};
use http_serve::tls::GatedTlsListener;
use http_serve::{ConnectionLimits, Gate, GatedListener};
use protocol::limits::Limits;
use protocol::{StoreId, TerminalId};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The settings of the till API, from the config.
#[derive(Debug, Clone)]
pub struct TillSettings {
    /// This store, for `/v1/health`.
    pub store_id: StoreId,
    /// This terminal, for `/v1/health`.
    pub terminal_id: TerminalId,
    /// Offline caps.
    pub offline: OfflineSection,
    /// Maximums of money and points (`[limits]`).
    pub figure_limits: Limits,
    /// Seconds before an uncommitted hold is released.
    pub hold_timeout_secs: u64,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

/// What the handlers work with: one shared [`TillParts`]. axum clones the state for
/// every extractor and middleware of every request; shared, that is one reference
/// count instead of one clone of each part (HQ's client among them).
#[derive(Clone)]
pub struct TillState(Arc<TillParts>);

impl TillState {
    /// The state of a till API made of `parts`.
    pub fn new(parts: TillParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for TillState {
    type Target = TillParts;

    fn deref(&self) -> &TillParts {
        &self.0
    }
}

/// The parts of [`TillState`].
pub struct TillParts {
    /// The journal every operation is recorded in.
    pub journal: Journal,
    /// Rules in force.
    pub rules: RulesHandle,
    /// The time of each request.
    pub clock: Clock,
    /// Counters and latencies, also served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Scan fan-out.
    pub scans: ScanBus,
    /// Scanner states.
    pub scanners: ScannerStates,
    /// HQ reachability; a commit wakes the sync client through it.
    pub link: Arc<HqLink>,
    /// How redemptions are decided (standalone, online, offline).
    pub redemption: Redemption,
    /// Settings from the config.
    pub settings: Arc<TillSettings>,
}

impl TillState {
    /// Refuses a card number the program's `[card_numbers]` rules do not allow (a
    /// typo), before anything is looked up or recorded under it.
    pub fn check_card_number(&self, card: &protocol::CardId) -> Result<(), ApiError> {
        self.rules
            .current()
            .card_numbers
            .check(card)
            .map_err(|e| ApiError::Sale(SaleError::BadCardNumber(e)))
    }
}

/// The router with every route and the latency middleware.
pub fn router(state: TillState) -> Router {
    let limit = state.settings.max_body_bytes;
    Router::new()
        .merge(cards::routes())
        .merge(sales::routes())
        .merge(status::routes())
        .merge(scans::routes())
        .merge(openapi::routes())
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            reject_oversized,
        ))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Records latency per route and counts error answers by code.
async fn observe(State(state): State<TillState>, req: Request, next: Next) -> Response {
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
    if let Some(ErrorCodeOf(code)) = resp.extensions().get::<ErrorCodeOf>() {
        state.metrics.error(code.as_str());
    }
    resp
}

/// Makes every error answer JSON: axum's method router answers 405 with an empty
/// body, and layers below the handlers may answer in plain text.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    ApiError::replace_plain(&resp).unwrap_or(resp)
}

/// Answers 413 at once when the declared body length is over the limit, instead of
/// reading the body first (bodies without a length are cut by `DefaultBodyLimit`), and
/// 415 to an encoded body.
async fn reject_oversized(State(state): State<TillState>, req: Request, next: Next) -> Response {
    let limit = state.settings.max_body_bytes;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return ApiError::BodyTooLarge { limit: Some(limit) }.into_response();
    }
    // Bodies are read as plain JSON; a compressed one would only fail as bad JSON.
    let encoded = req
        .headers()
        .get(axum::http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return ApiError::UnsupportedEncoding.into_response();
    }
    next.run(req).await
}

/// How the API is exposed: TLS and the till token, each when configured (both are
/// required beyond loopback; the daemon checks that before binding).
#[derive(Clone, Default)]
pub struct Exposure {
    /// rustls settings of `[till_api.tls]`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The check of `[till_api] token_hash_file`.
    pub token: Option<Arc<TokenCheck>>,
}

/// Serves the API on `listener` until `cancel` fires, then finishes in-flight
/// requests. At most `limits.max_connections` connections are open at once (the
/// cap applies before any TLS handshake); each must send its request headers within
/// `limits.header_timeout` (idle ones are closed).
pub async fn serve(
    listener: TcpListener,
    state: TillState,
    limits: ConnectionLimits,
    exposure: Exposure,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let mut app = router(state);
    if let Some(check) = exposure.token {
        // Outermost: an unauthenticated request reaches no handler and no body
        // parsing.
        app = app.layer(middleware::from_fn_with_state(check, auth::require_token));
    }
    let gate = Gate::new(limits.max_connections);
    match exposure.tls {
        Some(tls) => {
            // The header timeout bounds the handshake too, as at HQ.
            let listener =
                GatedTlsListener::new(listener, gate, tls, limits.header_timeout, cancel.clone())?;
            http_serve::serve(listener, app, limits, cancel).await;
        }
        None => http_serve::serve(GatedListener::new(listener, gate), app, limits, cancel).await,
    }
    Ok(())
}
