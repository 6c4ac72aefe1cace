//! `GET /v1/scans` (Server-Sent Events, one JSON `data:` line per scan, keep-alive
//! comments) and `GET /v1/scans/last`.

use super::TillState;
use super::error::ApiError;
use super::openapi::answers;
use crate::scan_bus::ScanEvent;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// The routes of this module.
pub fn routes() -> Router<TillState> {
    Router::new()
        .route("/v1/scans", get(stream))
        .route("/v1/scans/last", get(last))
}

#[utoipa::path(
    get,
    path = "/v1/scans/last",
    tag = "scans",
    responses(
        (status = 200, description = "The latest card scan.", body = ScanEvent),
        (status = 404, description = "No card has been scanned yet.", body = protocol::wire::ErrorBody),
        answers::Unauthorized,
    )
)]
pub async fn last(State(state): State<TillState>) -> Result<Json<ScanEvent>, ApiError> {
    state
        .scans
        .last()
        .map(|scan| Json(ScanEvent::clone(&scan)))
        .ok_or(ApiError::NoScan)
}

#[utoipa::path(
    get,
    path = "/v1/scans",
    tag = "scans",
    responses(
        (status = 200, description = "Server-Sent Events: one JSON `data:` line per scan (a `ScanEvent`), keep-alive comments; the stream does not end.", body = String, content_type = "text/event-stream"),
        answers::Unauthorized,
    )
)]
pub async fn stream(
    State(state): State<TillState>,
) -> Sse<impl futures_core::Stream<Item = Result<Event, Infallible>>> {
    let rx = state.scans.subscribe();
    // Ends the stream when the agent stops: an endless response would otherwise hold
    // up the server's graceful shutdown for as long as a till stays connected.
    let closed = state.scans.closed();
    let events = futures_util::stream::unfold((rx, closed), |(mut rx, closed)| async move {
        let received = tokio::select! {
            biased;
            () = closed.cancelled() => return None,
            received = rx.recv() => received,
        };
        let event = match received {
            Ok(scan) => Event::default()
                .json_data(&*scan)
                .unwrap_or_else(|_| Event::default().comment("unencodable scan")),
            // A listener that fell behind skips what it missed and carries on.
            Err(RecvError::Lagged(n)) => Event::default().comment(format!("skipped {n} scans")),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), (rx, closed)))
    });
    Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keep-alive"),
    )
}
