//! `GET /v1/sync/pull?cursor=…&rules_version=…`: the change feed of a terminal's store.

use super::AppState;
use super::auth::{ProtocolHeader, Terminal};
use super::error::ApiError;
use crate::store::PullRequest;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use protocol::wire::PullResponse;
use serde::Deserialize;

/// Query parameters.
#[derive(Debug, Deserialize)]
pub struct PullParams {
    /// The cursor of the previous answer; absent on the first pull.
    pub cursor: Option<String>,
    /// The rules version the agent holds (0: none).
    #[serde(default)]
    pub rules_version: u64,
}

/// The handler.
pub async fn pull(
    State(state): State<AppState>,
    Terminal(terminal): Terminal,
    _: ProtocolHeader,
    params: Result<Query<PullParams>, QueryRejection>,
) -> Result<Json<PullResponse>, ApiError> {
    let Query(params) = params.map_err(ApiError::from_query)?;
    let request = PullRequest {
        cursor: params.cursor.as_deref(),
        rules_version: params.rules_version,
        page_size: state.pull_page_size,
    };
    let response = state
        .store
        .pull(&terminal, request, state.clock.now())
        .await?;
    Ok(Json(response))
}
