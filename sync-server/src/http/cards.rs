//! `GET /v1/cards/{card}`: a card's live balance for an online agent.

use super::AppState;
use super::auth::{ProtocolHeader, Terminal};
use super::error::ApiError;
use super::openapi::answers;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use protocol::CardId;
use protocol::ids::Scrubbed;
use protocol::wire::LiveBalanceResponse;

/// The handler. A card HQ never saw has a zero balance, not a 404: to HQ every
/// well-formed number is a card that may simply not have been used yet.
#[utoipa::path(
    get,
    path = "/v1/cards/{card}",
    tag = "cards",
    security(("terminal_token" = [])),
    params(("card" = protocol::CardId, Path, description = "The card number."), ("x-loyalty-protocol" = u32, Header, minimum = 1, maximum = 1, description = "The protocol version the terminal speaks (requests without a body carry it here).")),
    responses(
        (status = 200, description = "The card's live balance (zero everywhere for a card HQ never saw).", body = LiveBalanceResponse),
        answers::BadRequest,
        answers::Unauthorized,
        answers::Internal,
        answers::Unavailable,
    )
)]
pub async fn live_balance(
    State(state): State<AppState>,
    Terminal(terminal): Terminal,
    _: ProtocolHeader,
    card: Result<Path<String>, PathRejection>,
) -> Result<Json<LiveBalanceResponse>, ApiError> {
    let Path(card) = card.map_err(|e| ApiError::BadCard(Scrubbed::new(e.body_text())))?;
    let card = CardId::parse(&card).map_err(|e| ApiError::BadCard(Scrubbed::new(e)))?;
    let response = state
        .store
        .live_balance(&terminal, &card, state.clock.now())
        .await;
    state.metrics.live_balance(response.is_ok());
    Ok(Json(response?))
}
