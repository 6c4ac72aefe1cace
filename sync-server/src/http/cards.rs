//! `GET /v1/cards/{card}`: a card's live balance for an online agent.

use super::AppState;
use super::auth::{Bearer, ProtocolHeader};
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
    token: Bearer,
    protocol: Result<ProtocolHeader, ApiError>,
    card: Result<Path<String>, PathRejection>,
) -> Result<Json<LiveBalanceResponse>, ApiError> {
    let card = protocol.and_then(|ProtocolHeader| {
        let Path(card) = card.map_err(|e| ApiError::BadCard(Scrubbed::new(e.body_text())))?;
        CardId::parse(&card).map_err(|e| ApiError::BadCard(Scrubbed::new(e)))
    });
    let card = match card {
        Ok(card) => card,
        Err(e) => return Err(token.refuse(&state, e).await),
    };
    // Authenticated in the lookup's own snapshot: one database round trip in all.
    let response = state
        .store
        .live_balance(&token.0, &card, state.clock.now())
        .await;
    match response {
        Ok(Some(live)) => {
            state.metrics.live_balance(true);
            Ok(Json(live))
        }
        Ok(None) => Err(ApiError::Unauthorized),
        Err(e) => {
            state.metrics.live_balance(false);
            Err(e.into())
        }
    }
}
