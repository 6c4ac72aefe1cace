//! `GET /v1/sync/pull?cursor=…&rules_version=…`: the change feed of a terminal's store.

use super::AppState;
use super::auth::{ProtocolHeader, Terminal};
use super::error::ApiError;
use super::openapi::answers;
use crate::store::PullRequest;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use protocol::wire::PullResponse;
use serde::Deserialize;

/// Query parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PullParams {
    /// The cursor of the previous answer (opaque); absent on the first pull. A
    /// cursor of the other backend (an HQ moved between SQLite and PostgreSQL) starts
    /// the feed over.
    #[param(pattern = "^([0-9]{0,18}|x[0-9]{1,18}(:[0-9]{0,19})?)$")]
    pub cursor: Option<String>,
    /// The rules version the agent holds (0: none).
    #[serde(default)]
    #[param(maximum = 9_223_372_036_854_775_807_i64)]
    pub rules_version: u64,
}

/// The handler.
#[utoipa::path(
    get,
    path = "/v1/sync/pull",
    tag = "sync",
    security(("terminal_token" = [])),
    params(PullParams, ("x-loyalty-protocol" = u32, Header, minimum = 1, maximum = 1, description = "The protocol version the terminal speaks (requests without a body carry it here).")),
    responses(
        (status = 200, description = "What changed at HQ since the cursor.", body = protocol::wire::PullResponse),
        answers::BadRequest,
        answers::Unauthorized,
        answers::Internal,
        answers::Unavailable,
    )
)]
pub async fn pull(
    State(state): State<AppState>,
    Terminal(terminal): Terminal,
    _: ProtocolHeader,
    params: Result<Query<PullParams>, QueryRejection>,
) -> Result<Json<PullResponse>, ApiError> {
    let Query(params) = params.map_err(ApiError::from_query)?;
    super::escrow::stored_integer("rules_version", params.rules_version)?;
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
