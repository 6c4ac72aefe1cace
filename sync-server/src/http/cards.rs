//! `GET /v1/cards/{card}`: a card's live balance for an online agent.

use super::AppState;
use super::auth::{ProtocolHeader, Terminal};
use super::error::ApiError;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use protocol::CardId;
use protocol::wire::LiveBalanceResponse;

/// The handler. A card HQ never saw has a zero balance, not a 404: to HQ every
/// well-formed number is a card that may simply not have been used yet.
pub async fn live_balance(
    State(state): State<AppState>,
    Terminal(terminal): Terminal,
    _: ProtocolHeader,
    card: Result<Path<String>, PathRejection>,
) -> Result<Json<LiveBalanceResponse>, ApiError> {
    let Path(card) = card.map_err(|e| ApiError::BadCard(e.body_text()))?;
    let card = CardId::parse(&card).map_err(|e| ApiError::BadCard(e.to_string()))?;
    let response = state
        .store
        .live_balance(&terminal, &card, state.clock.now())
        .await;
    state.metrics.live_balance(response.is_ok());
    Ok(Json(response?))
}
