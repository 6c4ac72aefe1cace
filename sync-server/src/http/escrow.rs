//! Points never spent twice, the terminal's side of HQ:
//! `POST /v1/reservations` (hold points for a receipt being sold),
//! `POST /v1/sync/leases` (report held leases, get new ones for offline redemption)
//! and `POST /v1/tokens/use` (an app code is used once, everywhere). Each checks its
//! body here and leaves every decision to the store's flows; refusals are `409` with
//! a stable code (see [`super::error::ApiError::Escrow`]).

use super::AppState;
use super::auth::{Bearer, Terminal};
use super::error::ApiError;
use super::openapi::answers;
use super::push::parse_request;
use crate::ledger::escrow::{LeaseAsks, ReserveAsk, TokenUse};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use protocol::wire::{
    LeaseSyncRequest, LeaseSyncResponse, PROTOCOL_VERSION, ReserveRequest, ReserveResponse,
    TokenUseRequest, TokenUseResponse,
};
use protocol::{CardId, Points};
use time::OffsetDateTime;

/// Most points one reservation or lease may name: far above any real balance, far
/// below where sums of them could overflow.
pub const MAX_POINTS: i64 = 1_000_000_000_000;

/// Most cards one lease sync may ask for.
pub const MAX_WANTED: usize = 10_000;

/// Length of an app token's id ([`protocol::token::AppToken::id`]: 16 bytes, hex).
const TOKEN_ID_LEN: usize = 32;

/// Furthest in the future a hold deadline or a token expiry may lie: holds last
/// minutes and tokens at most 300 s; a later one would pin its row for nothing.
const MAX_AHEAD: time::Duration = time::Duration::DAY;

fn not_too_late(
    what: &str,
    at: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, ApiError> {
    if at <= now + MAX_AHEAD {
        Ok(at)
    } else {
        Err(ApiError::Invalid(format!(
            "{what} is more than a day ahead of HQ's clock"
        )))
    }
}

fn bounded(what: &str, points: Points, min: i64) -> Result<Points, ApiError> {
    if (min..=MAX_POINTS).contains(&points.get()) {
        Ok(points)
    } else {
        // The figure sent is not repeated: it may be a card number in the wrong field.
        Err(ApiError::Invalid(format!(
            "{what} must be between {min} and {MAX_POINTS}"
        )))
    }
}

/// Refuses a counter HQ could not store: the database holds signed 64-bit integers
/// (a larger one failed as an internal error).
pub fn stored_integer(what: &str, value: u64) -> Result<i64, ApiError> {
    i64::try_from(value)
        .map_err(|_| ApiError::Invalid(format!("{what} must be at most {}", i64::MAX)))
}

/// `POST /v1/reservations`.
#[utoipa::path(
    post,
    path = "/v1/reservations",
    tag = "escrow",
    security(("terminal_token" = [])),
    request_body = ReserveRequest,
    responses(
        (status = 200, description = "The points are held for the receipt (or were: the same reservation).", body = ReserveResponse),
        answers::BadRequest,
        answers::Unauthorized,
        answers::Conflict,
        answers::TooLarge,
        answers::UnsupportedEncoding,
        answers::Internal,
        answers::Unavailable,
    )
)]
pub async fn reserve(
    State(state): State<AppState>,
    token: Bearer,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ReserveResponse>, ApiError> {
    let now = state.clock.now();
    let ask = match reserve_ask(&state, body, now) {
        Ok(ask) => ask,
        Err(e) => return Err(token.refuse(&state, e).await),
    };
    // Authenticated in the reservation's own transaction: on PostgreSQL in the
    // flight that locks the cards.
    state
        .store
        .reserve(&token.0, ask, now)
        .await?
        .map(Json)
        .ok_or(ApiError::Unauthorized)
}

/// The ask of a reservation request's body, checked.
fn reserve_ask(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    now: OffsetDateTime,
) -> Result<ReserveAsk, ApiError> {
    let body = body.map_err(|r| ApiError::from_body(r, state.max_body_bytes))?;
    let request: ReserveRequest = parse_request(&body, "reservation")?;
    Ok(ReserveAsk {
        receipt_id: request.receipt_id,
        card: request.card,
        points: bounded("points", request.points, 1)?,
        expires_at: not_too_late("hold_expires_at", request.hold_expires_at, now)?,
    })
}

/// `POST /v1/sync/leases`.
#[utoipa::path(
    post,
    path = "/v1/sync/leases",
    tag = "escrow",
    security(("terminal_token" = [])),
    request_body = LeaseSyncRequest,
    responses(
        (status = 200, description = "Every open lease of the terminal.", body = LeaseSyncResponse),
        answers::BadRequest,
        answers::Unauthorized,
        answers::Conflict,
        answers::TooLarge,
        answers::UnsupportedEncoding,
        answers::Internal,
        answers::Unavailable,
    )
)]
pub async fn lease_sync(
    State(state): State<AppState>,
    Terminal(terminal): Terminal,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LeaseSyncResponse>, ApiError> {
    let body = body.map_err(|r| ApiError::from_body(r, state.max_body_bytes))?;
    let request: LeaseSyncRequest = parse_request(&body, "lease sync")?;
    stored_integer("epoch", request.epoch)?;
    stored_integer("through_seq", request.through_seq.get())?;
    if request.want.len() > MAX_WANTED {
        return Err(ApiError::Invalid(format!(
            "a lease sync may want at most {MAX_WANTED} cards, not {}",
            request.want.len()
        )));
    }
    let want = request
        .want
        .into_iter()
        .map(|w| -> Result<(CardId, Points), ApiError> {
            Ok((w.card, bounded("max_points", w.max_points, 0)?))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let asks = LeaseAsks {
        terminal: terminal.key,
        max_total: bounded("max_total", request.max_total, 0)?,
        want,
        duration: state.lease_duration,
    };
    let leases = state
        .store
        .lease_sync(
            &terminal,
            request.epoch,
            request.through_seq,
            asks,
            state.clock.now(),
        )
        .await?;
    Ok(Json(LeaseSyncResponse {
        protocol: PROTOCOL_VERSION,
        leases,
    }))
}

/// `POST /v1/tokens/use`.
#[utoipa::path(
    post,
    path = "/v1/tokens/use",
    tag = "escrow",
    security(("terminal_token" = [])),
    request_body = TokenUseRequest,
    responses(
        (status = 200, description = "The app token's first use (or a retry of it) is recorded.", body = TokenUseResponse),
        answers::BadRequest,
        answers::Unauthorized,
        answers::Conflict,
        answers::TooLarge,
        answers::UnsupportedEncoding,
        answers::Internal,
        answers::Unavailable,
    )
)]
pub async fn use_token(
    State(state): State<AppState>,
    Terminal(terminal): Terminal,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TokenUseResponse>, ApiError> {
    let body = body.map_err(|r| ApiError::from_body(r, state.max_body_bytes))?;
    let request: TokenUseRequest = parse_request(&body, "token use")?;
    let id = &request.token_id;
    if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::Invalid(format!(
            "token_id must be the token's id: {TOKEN_ID_LEN} hex digits"
        )));
    }
    let now = state.clock.now();
    state
        .store
        .use_token(TokenUse {
            token_id: id.to_ascii_lowercase(),
            terminal: terminal.key,
            scan_id: request.scan_id,
            card: request.card,
            expires_at: not_too_late("expires_at", request.expires_at, now)?,
            used_at: now,
        })
        .await?;
    Ok(Json(TokenUseResponse {
        protocol: PROTOCOL_VERSION,
    }))
}
