//! The till API's one error type: every failure becomes `{error: {code, message}}`
//! with a status that tells the till what to do (400 fix the request, 404 unknown,
//! 409 conflict with earlier requests, 422 refused by a rule, 503 try again later).

use crate::journal::JournalError;
use crate::sales::SaleError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use protocol::wire::ErrorBody;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: String,
    /// Explanation.
    pub message: String,
}

impl ApiError {
    /// An error with status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

/// Response extension carrying the error code, for the metrics middleware.
#[derive(Debug, Clone)]
pub struct ErrorCode(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = ErrorCode(self.code.clone());
        let mut resp = (
            self.status,
            axum::Json(ErrorBody::new(self.code, self.message)),
        )
            .into_response();
        resp.extensions_mut().insert(code);
        resp
    }
}

impl From<JournalError> for ApiError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::DiskFull => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "journal_full",
                "the journal's disk is full; nothing was recorded",
            ),
            JournalError::Closed => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the agent is shutting down",
            ),
            JournalError::Sqlite(ref inner)
                if matches!(
                    inner.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) =>
            {
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "journal_busy",
                    e.to_string(),
                )
            }
            other => {
                tracing::error!(error = %other, "journal failure");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "journal_error",
                    format!("{other}; nothing was recorded"),
                )
            }
        }
    }
}

impl From<SaleError> for ApiError {
    fn from(e: SaleError) -> Self {
        match e {
            SaleError::BadRequest { code, message } => {
                Self::new(StatusCode::BAD_REQUEST, code, message)
            }
            SaleError::NotFound { code, message } => {
                Self::new(StatusCode::NOT_FOUND, code, message)
            }
            SaleError::Conflict { code, message } => Self::new(StatusCode::CONFLICT, code, message),
            SaleError::Refused { code, message } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            SaleError::Journal(j) => j.into(),
        }
    }
}
