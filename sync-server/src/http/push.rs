//! `POST /v1/sync/push`: a terminal's batch of journal entries, applied in one
//! transaction and acknowledged after commit.

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::openapi::answers;
use crate::ledger::AnomalyKind;
use crate::ledger::batch::{Batch, check_identity};
use crate::metrics::PushResult;
use crate::store::{Anomaly, StoreError, TerminalIdentity};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use protocol::ids::Scrubbed;
use protocol::wire::{
    LeaseSyncRequest, PROTOCOL_VERSION, PushRequest, PushResponse, ReserveRequest, TokenUseRequest,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Only the version, read when a body does not parse, so that a future protocol's
/// body is refused as `unsupported_protocol`, not as a shape error.
#[derive(Deserialize)]
struct VersionProbe {
    protocol: Option<serde_json::Value>,
}

fn unsupported(version: impl std::fmt::Display) -> ApiError {
    ApiError::UnsupportedProtocol(Scrubbed::new(format_args!(
        "protocol {version} is not supported; this server speaks {PROTOCOL_VERSION}"
    )))
}

/// A request body that carries the protocol version.
pub trait Versioned: DeserializeOwned {
    /// Its `protocol` field.
    fn protocol(&self) -> u32;
}

macro_rules! versioned {
    ($($t:ty),*) => {$(
        impl Versioned for $t {
            fn protocol(&self) -> u32 {
                self.protocol
            }
        }
    )*};
}

versioned!(
    PushRequest,
    ReserveRequest,
    LeaseSyncRequest,
    TokenUseRequest
);

/// Parses a push body; see [`parse_request`].
pub fn parse_push(body: &[u8]) -> Result<PushRequest, ApiError> {
    parse_request(body, "push")
}

/// Parses a request body (`what` names it in errors). The exact shape is tried first
/// (one pass over a large body on the normal path); the version decides what a
/// failure is called.
pub fn parse_request<T: Versioned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    match protocol::json::from_slice::<T>(body) {
        Ok(request) if request.protocol() == PROTOCOL_VERSION => Ok(request),
        Ok(request) => Err(unsupported(request.protocol())),
        Err(e) => match serde_json::from_slice::<VersionProbe>(body) {
            Ok(VersionProbe { protocol: Some(v) }) if v != serde_json::json!(PROTOCOL_VERSION) => {
                Err(unsupported(v))
            }
            Ok(VersionProbe { protocol: None }) => {
                Err(ApiError::UnsupportedProtocol(Scrubbed::new(format_args!(
                    "missing field `protocol` (this server speaks {PROTOCOL_VERSION})"
                ))))
            }
            _ => Err(ApiError::BadRequest(Scrubbed::new(format_args!(
                "invalid {what}: {e}"
            )))),
        },
    }
}

async fn record(state: &AppState, terminal: &TerminalIdentity, kind: AnomalyKind, detail: String) {
    let anomaly = Anomaly {
        at: state.clock.now(),
        store: terminal.store.clone(),
        terminal: terminal.terminal.clone(),
        kind,
        detail,
    };
    if let Err(e) = state.store.record_anomaly(&anomaly).await {
        tracing::error!(error = %e, %terminal, %kind, "could not record an anomaly");
    }
}

/// The handler: [`apply`], counted and timed for `/metrics`.
#[utoipa::path(
    post,
    path = "/v1/sync/push",
    tag = "sync",
    security(("terminal_token" = [])),
    request_body = protocol::wire::PushRequest,
    responses(
        (status = 200, description = "The batch is committed; what HQ holds for the terminal.", body = protocol::wire::PushResponse),
        answers::BadRequest,
        answers::Unauthorized,
        (status = 403, description = "The body names another store or terminal than the token (`terminal_mismatch`).", body = protocol::wire::ErrorBody),
        answers::Conflict,
        answers::TooLarge,
        answers::UnsupportedEncoding,
        answers::Internal,
        answers::Unavailable,
    )
)]
pub async fn push(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PushResponse>, ApiError> {
    let started = std::time::Instant::now();
    let answer = apply(&state, &caller, body).await;
    let result = match &answer {
        // Not a terminal's push: not counted, as when the token is refused at once.
        Err(ApiError::Unauthorized) => return answer,
        Ok(Json(response)) => {
            state.metrics.entries(
                response.applied,
                response.duplicates,
                response.quarantined.len(),
            );
            PushResult::Acknowledged
        }
        Err(e) if e.status_and_code().0.is_server_error() => PushResult::Failed,
        Err(_) => PushResult::Refused,
    };
    state.metrics.push(result, started.elapsed().as_secs_f64());
    answer
}

async fn apply(
    state: &AppState,
    caller: &Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PushResponse>, ApiError> {
    let terminal = &caller.terminal;
    let request = match body
        .map_err(|r| ApiError::from_body(r, state.max_body_bytes))
        .and_then(|body| parse_push(&body))
    {
        Ok(request) => request,
        Err(e) => return Err(caller.refuse(state, e).await),
    };
    if let Err(mismatch) = check_identity(&request, &terminal.store, &terminal.terminal) {
        caller.confirm(state).await?;
        tracing::warn!(%terminal, "push refused: {mismatch}");
        state.metrics.refusal(AnomalyKind::TerminalMismatch);
        record(
            state,
            terminal,
            AnomalyKind::TerminalMismatch,
            mismatch.to_string(),
        )
        .await;
        return Err(mismatch.into());
    }
    let batch = match Batch::new(request.entries) {
        Ok(batch) => batch,
        Err(e) => return Err(caller.refuse(state, ApiError::BadBatch(e)).await),
    };
    let count = batch.entries().len();
    match state.store.push(terminal, batch, state.clock.now()).await {
        Ok(outcome) => {
            tracing::debug!(
                %terminal,
                count,
                applied = outcome.applied,
                duplicates = outcome.duplicates,
                acked_through = %outcome.acked_through,
                "push applied"
            );
            if !outcome.quarantined.is_empty() {
                // Seqs only: a reason may name a card, and cards stay out of logs.
                tracing::warn!(%terminal, quarantined = ?outcome.quarantined,
                    "entries quarantined: stored without effect; see `sync-server report quarantine`");
            }
            Ok(Json(PushResponse {
                protocol: PROTOCOL_VERSION,
                acked_through: outcome.acked_through,
                applied: outcome.applied,
                duplicates: outcome.duplicates,
                quarantined: outcome.quarantined,
            }))
        }
        Err(e @ StoreError::Revoked(_)) => {
            caller.forget(state);
            Err(e.into())
        }
        Err(StoreError::Refused(refusal)) => {
            tracing::warn!(%terminal, kind = %refusal.anomaly_kind(), "push refused: {refusal}");
            state.metrics.refusal(refusal.anomaly_kind());
            record(state, terminal, refusal.anomaly_kind(), refusal.to_string()).await;
            Err(refusal.into())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_protocol_version_is_refused_before_the_shape_is_checked() {
        let err = parse_push(br#"{"protocol":2,"whatever":[]}"#).unwrap_err();
        assert!(matches!(err, ApiError::UnsupportedProtocol(_)));
        let err =
            parse_push(br#"{"protocol":1,"store_id":"s","terminal_id":"t","entries":[],"x":1}"#)
                .unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(m) if m.as_str().contains("unknown field")));
        assert!(matches!(
            parse_push(b"{nope").unwrap_err(),
            ApiError::BadRequest(_)
        ));
    }
}
