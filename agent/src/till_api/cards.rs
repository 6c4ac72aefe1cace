//! `GET /v1/cards/{card}`: the balance the till shows.

use super::AppState;
use super::body::PathId;
use super::error::ApiError;
use crate::cards;
use crate::journal::sync_state;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use protocol::CardId;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/cards/{card}", get(card))
}

async fn card(
    State(state): State<AppState>,
    PathId(card): PathId<CardId>,
) -> Result<Json<cards::CardView>, ApiError> {
    // Online, HQ's live figures replace the cache first; offline, the cache answers.
    let live = match &state.hq {
        Some(hq) => state.live_balance(hq, &card).await,
        None => None,
    };
    let offline = state.hq.is_some() && live.is_none();
    let now = state.clock.now();
    let view = state
        .journal
        .write(move |tx| -> Result<_, crate::journal::JournalError> {
            if let Some(live) = &live {
                cards::apply_hq_balance(tx, &live.balance, live.acked_through)?;
                sync_state::record_contact(tx, now)?;
            }
            cards::view(tx, &card, now)
        })
        .await??;
    Ok(Json(cards::CardView { offline, ..view }))
}
