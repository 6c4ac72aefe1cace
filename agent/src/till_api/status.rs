//! `GET /v1/health` and `GET /metrics`.

use super::TillState;
use super::error::ApiError;
use super::openapi::answers;
use crate::journal::JournalError;
use crate::scan_bus::ScannerStatus;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// The routes of this module.
pub fn routes() -> Router<TillState> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
}

/// `GET /v1/health` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok` (the agent answers, so it runs).
    pub status: &'static str,
    /// Whether this till syncs with HQ, and whether it ever reached it.
    pub mode: SyncMode,
    /// True when HQ answered the last attempt.
    pub online: bool,
    /// Journal entries HQ has not acknowledged.
    pub queue_depth: u64,
    /// Age of the oldest of them, in seconds.
    pub oldest_unsynced_secs: i64,
    /// Rules version in force (0: local rules).
    pub rules_version: u64,
    /// Scanner states.
    pub scanners: Vec<ScannerStatus>,
    /// Store id.
    pub store_id: String,
    /// Terminal id.
    pub terminal_id: String,
    /// Highest journal seq written.
    pub last_seq: u64,
    /// Highest seq HQ acknowledged.
    pub acked_through: u64,
    /// Seconds since HQ last answered (`null`: never).
    pub secs_since_hq_contact: Option<i64>,
    /// The last sync error, if the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync_error: Option<String>,
    /// This till's entries HQ stored but could not apply (HQ's quarantine, as its push
    /// answers said): their points are missing at HQ until it retries them.
    pub hq_quarantined: u64,
    /// The highest seq among them (`null`: none).
    pub hq_quarantined_last_seq: Option<u64>,
    /// Why syncing is halted (needs a human), if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_halted: Option<String>,
    /// Agent version.
    pub version: &'static str,
}

/// `mode` in `GET /v1/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// No HQ configured: the till keeps its own points.
    Standalone,
    /// HQ is configured but has never answered this till (wrong URL or token, no
    /// network since installation): no figure of HQ's is known yet.
    NeverSynced,
    /// HQ is configured and has answered at least once.
    Synced,
}

impl SyncMode {
    /// The mode of a till with HQ configured or not, that last heard from HQ at
    /// `last_contact` (unix seconds), if ever.
    pub fn of(hq_configured: bool, last_contact: Option<i64>) -> Self {
        match (hq_configured, last_contact) {
            (false, _) => Self::Standalone,
            (true, None) => Self::NeverSynced,
            (true, Some(_)) => Self::Synced,
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "status",
    responses(
        (status = 200, description = "The agent runs; its sync and scanner state.", body = Health),
        answers::Unauthorized,
        answers::JournalUnavailable,
    )
)]
pub async fn health(State(state): State<TillState>) -> Result<Json<Health>, ApiError> {
    let now = state.clock.now();
    let (queue, halted, quarantine) = state
        .journal
        .read(move |tx| -> Result<_, JournalError> {
            Ok((
                tx.queue_status(now)?,
                tx.halted_reason()?,
                tx.hq_quarantine()?,
            ))
        })
        .await?;
    state
        .metrics
        .queue_depth
        .set(i64::try_from(queue.depth).unwrap_or(i64::MAX));
    let synced = !state.redemption.standalone();
    let online = synced && state.link.online();
    Ok(Json(Health {
        status: "ok",
        mode: SyncMode::of(synced, queue.last_contact_unix),
        online,
        queue_depth: queue.depth,
        oldest_unsynced_secs: queue.oldest_unsynced_secs,
        rules_version: state.rules.current().version,
        scanners: state.scanners.snapshot(),
        store_id: state.settings.store_id.to_string(),
        terminal_id: state.settings.terminal_id.to_string(),
        last_seq: queue.last_seq.get(),
        acked_through: queue.acked_through.get(),
        secs_since_hq_contact: queue.last_contact_unix.map(|t| now.unix_timestamp() - t),
        last_sync_error: if online {
            None
        } else {
            state.link.last_error()
        },
        hq_quarantined: quarantine.count,
        hq_quarantined_last_seq: quarantine.last_seq.map(|s| s.get()),
        sync_halted: halted,
        version: env!("CARGO_PKG_VERSION"),
    }))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "status",
    responses(
        (status = 200, description = "Prometheus/OpenMetrics text.", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        answers::Unauthorized,
    )
)]
pub async fn metrics(State(state): State<TillState>) -> impl IntoResponse {
    state.metrics.online.set(i64::from(state.link.online()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_till_that_never_reached_hq_says_so() {
        let json = |mode| serde_json::to_value(mode).unwrap();
        assert_eq!(json(SyncMode::of(false, None)), "standalone");
        assert_eq!(json(SyncMode::of(true, None)), "never_synced");
        assert_eq!(json(SyncMode::of(true, Some(1_700_000_000))), "synced");
    }
}
