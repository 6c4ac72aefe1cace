//! `GET /v1/health`: 200 when the database answers, 503 otherwise. No token needed,
//! so load balancers and monitoring can call it.

use super::AppState;
use super::error::ApiError;
use super::openapi::answers;
use axum::Json;
use axum::extract::State;
use protocol::wire::{PROTOCOL_VERSION, ServerHealth};
use std::time::Duration;

/// A database that takes longer than this is reported unavailable.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The handler.
#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "status",
    security(()),
    responses(
        (status = 200, description = "The database answers.", body = ServerHealth),
        answers::Unavailable,
    )
)]
pub async fn health(State(state): State<AppState>) -> Result<Json<ServerHealth>, ApiError> {
    match tokio::time::timeout(HEALTH_TIMEOUT, state.store.health()).await {
        Ok(Ok(rules_version)) => Ok(Json(ServerHealth {
            protocol: PROTOCOL_VERSION,
            status: "ok".to_owned(),
            rules_version,
        })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: database failed");
            Err(ApiError::Unavailable)
        }
        Err(_) => {
            tracing::warn!("health check: database timed out");
            Err(ApiError::Unavailable)
        }
    }
}
