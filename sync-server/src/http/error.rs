//! One error type for the HTTP API: each variant maps to a status and a stable
//! `code`, and the body is always `protocol::wire::ErrorBody`. A variant whose text
//! may quote the request (a parser's words, a rejection, a cursor, a version) holds a
//! [`Scrubbed`], so no card number a terminal sent comes back in an answer; the
//! store's errors reach the log only through their own scrubbed `Display`.

use crate::ledger::batch::{BatchError, IdentityMismatch};
use crate::ledger::escrow::EscrowRefusal;
use crate::ledger::sequence::Refusal;
use crate::store::StoreError;
use axum::Json;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use protocol::ids::Scrubbed;
use protocol::wire::{ErrorBody, SyncErrorCode};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, unknown or revoked bearer token.
    #[error("missing, unknown or revoked terminal token")]
    Unauthorized,
    /// The (decompressed) body is larger than `max_body_bytes`.
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Malformed request (JSON, query, cursor): the parser's words, which quote the
    /// input.
    #[error("{0}")]
    BadRequest(Scrubbed),
    /// A well-formed request HQ refuses (a figure out of range, a time too far
    /// ahead), in HQ's own words, which never quote the request.
    #[error("{0}")]
    Invalid(String),
    /// A protocol version this server does not speak (the version sent is quoted).
    #[error("{0}")]
    UnsupportedProtocol(Scrubbed),
    /// The body names another terminal than the token.
    #[error(transparent)]
    TerminalMismatch(#[from] IdentityMismatch),
    /// A malformed batch.
    #[error(transparent)]
    BadBatch(BatchError),
    /// The push was refused as a whole (gap, rewind, id reuse).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Not a card number.
    #[error("{0}")]
    BadCard(Scrubbed),
    /// No such endpoint.
    #[error("no such endpoint")]
    NotFound,
    /// The endpoint exists with other methods.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// A `Content-Encoding` other than gzip.
    #[error("unsupported Content-Encoding: use gzip or none")]
    UnsupportedEncoding,
    /// A reservation, lease sync or token use HQ refused.
    #[error(transparent)]
    Escrow(#[from] EscrowRefusal),
    /// The database does not answer.
    #[error("the database is not available")]
    Unavailable,
    /// A bug or a broken database; details are in the server log, not the answer.
    #[error("internal error; see the server log")]
    Internal,
}

impl ApiError {
    /// Status and stable code.
    pub fn status_and_code(&self) -> (StatusCode, SyncErrorCode) {
        use SyncErrorCode as C;
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, C::Unauthorized),
            Self::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, C::BodyTooLarge),
            Self::BadRequest(_) | Self::Invalid(_) => (StatusCode::BAD_REQUEST, C::BadRequest),
            Self::UnsupportedProtocol(_) => (StatusCode::BAD_REQUEST, C::UnsupportedProtocol),
            Self::TerminalMismatch(_) => (StatusCode::FORBIDDEN, C::TerminalMismatch),
            Self::BadBatch(BatchError::RepeatedId { .. }) => (StatusCode::CONFLICT, C::IdConflict),
            Self::BadBatch(_) => (StatusCode::BAD_REQUEST, C::BadBatch),
            Self::Refused(Refusal::Gap { .. }) => (StatusCode::CONFLICT, C::SeqGap),
            Self::Refused(Refusal::Conflict { .. }) => (StatusCode::CONFLICT, C::SeqConflict),
            Self::Refused(Refusal::IdConflict { .. }) => (StatusCode::CONFLICT, C::IdConflict),
            Self::BadCard(_) => (StatusCode::BAD_REQUEST, C::BadCard),
            Self::NotFound => (StatusCode::NOT_FOUND, C::NotFound),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, C::MethodNotAllowed),
            Self::UnsupportedEncoding => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, C::UnsupportedEncoding)
            }
            Self::Escrow(refusal) => (StatusCode::CONFLICT, escrow_code(refusal)),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, C::Unavailable),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, C::Internal),
        }
    }

    /// Maps a failure to read the body: over the limit is 413, anything else (a
    /// broken gzip stream, a dropped connection) is a bad request.
    pub fn from_body(rejection: BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::BodyTooLarge { limit }
        } else {
            Self::BadRequest(Scrubbed::new(format_args!(
                "could not read the body: {}",
                rejection.body_text()
            )))
        }
    }

    /// Maps a malformed query string.
    pub fn from_query(rejection: QueryRejection) -> Self {
        Self::BadRequest(Scrubbed::new(rejection.body_text()))
    }
}

/// The stable code of an escrow refusal.
fn escrow_code(refusal: &EscrowRefusal) -> SyncErrorCode {
    use SyncErrorCode as C;
    match refusal {
        EscrowRefusal::InsufficientPoints { .. } => C::InsufficientPoints,
        EscrowRefusal::CardBlocked => C::CardBlocked,
        EscrowRefusal::ReservationSettled(_) => C::ReservationSettled,
        EscrowRefusal::StaleEpoch { .. } => C::StaleEpoch,
        EscrowRefusal::PushFirst { .. } => C::PushFirst,
        EscrowRefusal::TokenUsed => C::TokenUsed,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(r) => Self::Refused(r),
            StoreError::Escrow(r) => Self::Escrow(r),
            StoreError::BadCursor(c) => {
                Self::BadRequest(Scrubbed::new(format_args!("bad cursor {c:?}")))
            }
            StoreError::Revoked(_) => Self::Unauthorized,
            StoreError::Unavailable(why) => {
                tracing::warn!(error = %why, "database unavailable");
                Self::Unavailable
            }
            other => {
                tracing::error!(error = %other, "store failed");
                Self::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut body = ErrorBody::new(code.as_str(), self.to_string());
        match &self {
            Self::Refused(r) => body.error.acked_through = Some(r.acked_through()),
            Self::Escrow(EscrowRefusal::InsufficientPoints { spendable, .. }) => {
                body.error.spendable = Some(*spendable);
            }
            Self::Escrow(EscrowRefusal::PushFirst { acked_through, .. }) => {
                body.error.acked_through = Some(*acked_through);
            }
            _ => {}
        }
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Seq;

    #[test]
    fn a_gap_carries_what_hq_holds() {
        let e = ApiError::Refused(Refusal::Gap {
            acked_through: Seq(7),
            first: Seq(9),
        });
        assert_eq!(
            e.status_and_code(),
            (StatusCode::CONFLICT, SyncErrorCode::SeqGap)
        );
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
    }

    #[test]
    fn an_unavailable_database_is_503_and_a_broken_one_500() {
        let busy = ApiError::from(StoreError::Unavailable("still conflicting".into()));
        assert_eq!(
            busy.status_and_code(),
            (StatusCode::SERVICE_UNAVAILABLE, SyncErrorCode::Unavailable)
        );
        let broken = ApiError::from(StoreError::corrupt("bad row"));
        assert_eq!(broken.status_and_code().1, SyncErrorCode::Internal);
    }

    #[test]
    fn a_driver_error_quoting_a_card_number_reaches_the_log_masked_and_has_no_raw_source() {
        let driver = std::io::Error::other("duplicate key (card)=(4006381333931)");
        let e = StoreError::Backend(Box::new(driver));
        assert_eq!(e.to_string(), "database: duplicate key (card)=(****3931)");
        // An error chain printed with its sources (anyhow's `{:#}`) must not bypass it.
        assert!(std::error::Error::source(&e).is_none());
        let busy = StoreError::Unavailable("refused 4006381333931".into());
        assert_eq!(busy.to_string(), "database unavailable: refused ****3931");
    }

    #[test]
    fn a_bad_cursor_is_answered_masked() {
        let e = ApiError::from(StoreError::BadCursor("-4006381333931".into()));
        assert_eq!(e.to_string(), "bad cursor \"-****3931\"");
    }
}
