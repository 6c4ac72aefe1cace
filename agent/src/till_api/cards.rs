//! `GET /v1/cards/{card}`: the balance the till shows.

use super::TillState;
use super::body::PathId;
use super::error::ApiError;
use super::openapi::answers;
use crate::cards::CardView;
use crate::journal::JournalError;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use protocol::CardId;

/// The routes of this module.
pub fn routes() -> Router<TillState> {
    Router::new().route("/v1/cards/{card}", get(card))
}

#[utoipa::path(
    get,
    path = "/v1/cards/{card}",
    tag = "cards",
    params(("card" = protocol::CardId, Path, description = "The card number.")),
    responses(
        (status = 200, description = "The card's balance (HQ's live figures online, the cache offline).", body = crate::cards::CardView),
        answers::BadRequest,
        answers::Unauthorized,
        answers::JournalUnavailable,
    )
)]
pub async fn card(
    State(state): State<TillState>,
    PathId(card): PathId<CardId>,
) -> Result<Json<CardView>, ApiError> {
    state.check_card_number(&card)?;
    // Online, HQ's live figures replace the cache first; offline, the cache answers.
    let live = state.redemption.live_balance(&card).await;
    let offline = !state.redemption.standalone() && live.is_none();
    let now = state.clock.now();
    // A lookup writes nothing but HQ's figures and contact: its commit need not wait
    // for the disk (`JournalFile::refresh` says why that is safe).
    let view = state
        .journal
        .refresh(move |tx| -> Result<_, JournalError> {
            if let Some(live) = &live {
                live.record(tx, now)?;
            }
            CardView::read(tx, &card, now)
        })
        .await?;
    Ok(Json(CardView { offline, ..view }))
}
