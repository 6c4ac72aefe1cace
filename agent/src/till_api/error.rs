//! The till API's one error type: every failure becomes `{error: {code, message}}`
//! with a status that tells the till what to do (400 fix the request, 404 unknown,
//! 409 conflict with earlier requests, 413 too large, 422 refused by a rule, 503 try
//! again later). Status and code of every variant are in one table,
//! [`ApiError::status_and_code`].

use crate::journal::JournalError;
use crate::policy::OfflineLimit;
use crate::sales::SaleError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use protocol::ids::Scrubbed;
use protocol::limits::Limit;
use protocol::wire::ErrorBody;

/// Everything a till request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A sale operation refused the request.
    #[error(transparent)]
    Sale(SaleError),
    /// The journal failed: nothing was recorded.
    #[error("{}", journal_message(.0))]
    Journal(JournalError),
    /// The body is not the JSON this endpoint takes (serde's words, which quote the
    /// offending value: scrubbed).
    #[error("invalid request body: {0}")]
    BadJson(Scrubbed),
    /// The body could not be read.
    #[error("{0}")]
    BadBody(Scrubbed),
    /// The body is over `[till_api] max_body_bytes` (`limit` when it was declared).
    #[error("{}", body_too_large(*.limit))]
    BodyTooLarge {
        /// The limit, when the body declared its length.
        limit: Option<usize>,
    },
    /// A path parameter is missing or malformed.
    #[error("{0}")]
    BadPath(Scrubbed),
    /// A path segment is not a valid id (card, receipt). The segment is masked: a
    /// mistyped card number is still most of a card number.
    #[error("'{}': {reason}", protocol::ids::masked(.raw))]
    BadId {
        /// The segment as sent (shown masked).
        raw: String,
        /// Why it is not an id.
        reason: String,
    },
    /// No such endpoint.
    #[error("no such endpoint")]
    NotFound,
    /// The endpoint exists, but not with this method (the answer carries `Allow`).
    #[error("this endpoint does not take this method; see the Allow header")]
    MethodNotAllowed,
    /// The body is compressed or encoded; the till API reads plain JSON only.
    #[error("request bodies must not be encoded (Content-Encoding); send plain JSON")]
    UnsupportedEncoding,
    /// Any other HTTP-level refusal from below the handlers (so it is JSON too).
    #[error("the request was refused ({0})")]
    Http(StatusCode),
    /// `GET /v1/scans/last` before any scan.
    #[error("no card has been scanned yet")]
    NoScan,
    /// The till token is missing or wrong (`[till_api] token_hash_file`). The
    /// message never repeats what was presented.
    #[error("{0}")]
    Unauthorized(&'static str),
}

/// The stable codes of the till API's errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed or inconsistent request.
    BadRequest,
    /// Body is not the expected JSON.
    BadJson,
    /// Body could not be read.
    BadBody,
    /// Body over the limit.
    BodyTooLarge,
    /// Malformed path parameter.
    BadPath,
    /// Path segment is not an id.
    BadId,
    /// No such endpoint.
    NotFound,
    /// Wrong method for the endpoint.
    MethodNotAllowed,
    /// Encoded request body.
    UnsupportedMediaType,
    /// Another HTTP-level refusal.
    HttpError,
    /// Nothing scanned yet.
    NoScan,
    /// A card number the program's rules refuse.
    BadCardNumber,
    /// Missing or wrong till token.
    Unauthorized,
    /// Points to redeem without a card.
    CardRequired,
    /// No sale under this receipt number.
    UnknownReceipt,
    /// Idempotency key reused with another body.
    IdempotencyConflict,
    /// Commit of a cancelled sale.
    SaleCancelled,
    /// Cancel of a committed sale.
    SaleCommitted,
    /// Return of a sale that is not committed.
    SaleNotCommitted,
    /// Return when nothing is left to return.
    AlreadyReturned,
    /// Card blocked by HQ.
    CardBlocked,
    /// More points than available.
    InsufficientPoints,
    /// More points than the rules allow on the receipt.
    RedeemAboveRuleCap,
    /// Return of more units than remain.
    ReturnExceedsSale,
    /// A figure above a `[limits]` maximum; the code is the limit's key.
    Limit(Limit),
    /// HQ settled a reservation under this receipt before.
    ReservationSettled,
    /// An offline cap.
    Offline(OfflineLimit),
    /// The journal's disk is full.
    JournalFull,
    /// The agent is stopping.
    ShuttingDown,
    /// The journal file is locked by another process.
    JournalBusy,
    /// Any other journal failure.
    JournalError,
}

impl ErrorCode {
    /// The wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::BadJson => "bad_json",
            Self::BadBody => "bad_body",
            Self::BodyTooLarge => "body_too_large",
            Self::BadPath => "bad_path",
            Self::BadId => "bad_id",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::HttpError => "http_error",
            Self::NoScan => "no_scan",
            Self::BadCardNumber => "bad_card_number",
            Self::Unauthorized => "unauthorized",
            Self::CardRequired => "card_required",
            Self::UnknownReceipt => "unknown_receipt",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::SaleCancelled => "sale_cancelled",
            Self::SaleCommitted => "sale_committed",
            Self::SaleNotCommitted => "sale_not_committed",
            Self::AlreadyReturned => "already_returned",
            Self::CardBlocked => "card_blocked",
            Self::InsufficientPoints => "insufficient_points",
            Self::RedeemAboveRuleCap => "redeem_above_rule_cap",
            Self::ReturnExceedsSale => "return_exceeds_sale",
            Self::Limit(limit) => limit.key(),
            Self::ReservationSettled => "reservation_settled",
            Self::Offline(limit) => limit.as_str(),
            Self::JournalFull => "journal_full",
            Self::ShuttingDown => "shutting_down",
            Self::JournalBusy => "journal_busy",
            Self::JournalError => "journal_error",
        }
    }
}

impl ApiError {
    /// Status and stable code.
    pub fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        use ErrorCode as C;
        use StatusCode as S;
        match self {
            Self::Sale(e) => match e {
                SaleError::Invalid(_) => (S::BAD_REQUEST, C::BadRequest),
                SaleError::CardRequired => (S::BAD_REQUEST, C::CardRequired),
                SaleError::BadCardNumber(_) => (S::BAD_REQUEST, C::BadCardNumber),
                SaleError::UnknownReceipt(_) => (S::NOT_FOUND, C::UnknownReceipt),
                SaleError::IdempotencyConflict(_) => (S::CONFLICT, C::IdempotencyConflict),
                SaleError::SaleCancelled { .. } => (S::CONFLICT, C::SaleCancelled),
                SaleError::SaleCommitted(_) => (S::CONFLICT, C::SaleCommitted),
                SaleError::ReservationSettled(_) => (S::CONFLICT, C::ReservationSettled),
                SaleError::SaleNotCommitted { .. } => (S::CONFLICT, C::SaleNotCommitted),
                SaleError::AlreadyReturned(_) => (S::CONFLICT, C::AlreadyReturned),
                SaleError::CardBlocked { .. } => (S::UNPROCESSABLE_ENTITY, C::CardBlocked),
                SaleError::InsufficientPoints { .. } => {
                    (S::UNPROCESSABLE_ENTITY, C::InsufficientPoints)
                }
                SaleError::RedeemAboveRuleCap { .. } => {
                    (S::UNPROCESSABLE_ENTITY, C::RedeemAboveRuleCap)
                }
                SaleError::ReturnExceedsSale(_) => (S::UNPROCESSABLE_ENTITY, C::ReturnExceedsSale),
                SaleError::Offline(refusal) => (S::UNPROCESSABLE_ENTITY, C::Offline(refusal.limit)),
                SaleError::Limit(l) => match l.limit() {
                    Some(limit) => (S::BAD_REQUEST, C::Limit(limit)),
                    None => (S::BAD_REQUEST, C::BadRequest),
                },
                SaleError::CardBalanceLimit { .. } => {
                    (S::UNPROCESSABLE_ENTITY, C::Limit(Limit::CardBalancePoints))
                }
                SaleError::Journal(j) => journal_status_and_code(j),
            },
            Self::Journal(j) => journal_status_and_code(j),
            Self::BadJson(_) => (S::BAD_REQUEST, C::BadJson),
            Self::BadBody(_) => (S::BAD_REQUEST, C::BadBody),
            Self::BodyTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, C::BodyTooLarge),
            Self::BadPath(_) => (S::BAD_REQUEST, C::BadPath),
            Self::BadId { .. } => (S::BAD_REQUEST, C::BadId),
            Self::NotFound => (S::NOT_FOUND, C::NotFound),
            Self::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, C::MethodNotAllowed),
            Self::UnsupportedEncoding => (S::UNSUPPORTED_MEDIA_TYPE, C::UnsupportedMediaType),
            Self::Http(status) => {
                let code = match status.as_u16() {
                    404 => C::NotFound,
                    405 => C::MethodNotAllowed,
                    413 => C::BodyTooLarge,
                    415 => C::UnsupportedMediaType,
                    _ => C::HttpError,
                };
                (*status, code)
            }
            Self::NoScan => (S::NOT_FOUND, C::NoScan),
            Self::Unauthorized(_) => (S::UNAUTHORIZED, C::Unauthorized),
        }
    }
}

fn journal_status_and_code(e: &JournalError) -> (StatusCode, ErrorCode) {
    if let JournalError::RunningTotalOverflow { .. } = e {
        // Retrying cannot help: a refusal, not an unavailable journal.
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Limit(Limit::CardBalancePoints),
        );
    }
    let code = match e {
        JournalError::DiskFull => ErrorCode::JournalFull,
        JournalError::Closed => ErrorCode::ShuttingDown,
        JournalError::Busy(_) => ErrorCode::JournalBusy,
        _ => ErrorCode::JournalError,
    };
    (StatusCode::SERVICE_UNAVAILABLE, code)
}

fn journal_message(e: &JournalError) -> String {
    match e {
        JournalError::DiskFull => "the journal's disk is full; nothing was recorded".into(),
        JournalError::Closed => "the agent is shutting down".into(),
        JournalError::Busy(_) | JournalError::RunningTotalOverflow { .. } => e.to_string(),
        other => format!("{other}; nothing was recorded"),
    }
}

fn body_too_large(limit: Option<usize>) -> String {
    match limit {
        Some(limit) => format!("request body is larger than {limit} bytes"),
        None => "request body is too large".into(),
    }
}

/// Response extension carrying the error code, for the metrics middleware.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCodeOf(pub ErrorCode);

impl From<JournalError> for ApiError {
    fn from(e: JournalError) -> Self {
        if matches!(journal_status_and_code(&e).1, ErrorCode::JournalError) {
            tracing::error!(error = %e, "journal failure");
        }
        Self::Journal(e)
    }
}

impl From<SaleError> for ApiError {
    fn from(e: SaleError) -> Self {
        match e {
            SaleError::Journal(j) => j.into(),
            other => Self::Sale(other),
        }
    }
}

impl ApiError {
    /// The JSON error for a response that something below the handlers produced
    /// without a body the till can read (axum's empty 405, a plain-text 413), or `None`
    /// when `resp` is a success or already one of ours. Keeps `Allow`.
    pub fn replace_plain(resp: &Response) -> Option<Response> {
        let status = resp.status();
        if !(status.is_client_error() || status.is_server_error())
            || resp.extensions().get::<ErrorCodeOf>().is_some()
        {
            return None;
        }
        let mut json = Self::Http(status).into_response();
        if let Some(allow) = resp.headers().get(axum::http::header::ALLOW) {
            json.headers_mut()
                .insert(axum::http::header::ALLOW, allow.clone());
        }
        Some(json)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut resp = (
            status,
            axum::Json(ErrorBody::new(code.as_str(), self.to_string())),
        )
            .into_response();
        if code == ErrorCode::Unauthorized {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp.extensions_mut().insert(ErrorCodeOf(code));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Refusal;
    use protocol::{Points, ReceiptId};

    #[test]
    fn sale_refusals_are_422_conflicts_409_and_unknown_receipts_404() {
        let refused = ApiError::from(SaleError::InsufficientPoints {
            card: "****3931".into(),
            available: Points(1),
            requested: Points(2),
        });
        assert_eq!(
            refused.status_and_code(),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InsufficientPoints
            )
        );
        let receipt = ReceiptId::parse("R-1").unwrap();
        let committed = ApiError::from(SaleError::SaleCommitted(receipt.clone()));
        assert_eq!(committed.status_and_code().0, StatusCode::CONFLICT);
        let unknown = ApiError::from(SaleError::UnknownReceipt(receipt));
        assert_eq!(
            unknown.status_and_code(),
            (StatusCode::NOT_FOUND, ErrorCode::UnknownReceipt)
        );
    }

    #[test]
    fn an_offline_refusal_answers_with_the_limit_as_its_code() {
        let e = ApiError::from(SaleError::Offline(Refusal {
            limit: OfflineLimit::CardDailyCap,
            message: "offline, this card may redeem at most 60 points a day here".into(),
        }));
        let (status, code) = e.status_and_code();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(code.as_str(), "offline_card_daily_cap");
        assert_eq!(
            e.to_string(),
            "offline, this card may redeem at most 60 points a day here"
        );
    }

    #[test]
    fn a_bad_id_never_echoes_the_raw_segment() {
        let e = ApiError::BadId {
            raw: "40063813339312345678".into(),
            reason: "card id must be 6 to 19 digits".into(),
        };
        assert_eq!(e.to_string(), "'****5678': card id must be 6 to 19 digits");
    }

    #[test]
    fn a_plain_405_becomes_json_and_keeps_its_allow_header() {
        let plain = Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(axum::http::header::ALLOW, "POST")
            .body(axum::body::Body::empty())
            .unwrap();
        let json = ApiError::replace_plain(&plain).expect("an empty 405 is replaced");
        assert_eq!(json.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(json.headers()[axum::http::header::ALLOW], "POST");
        assert_eq!(
            json.extensions().get::<ErrorCodeOf>().map(|c| c.0.as_str()),
            Some("method_not_allowed")
        );
        assert!(
            ApiError::replace_plain(&json).is_none(),
            "ours stay as they are"
        );
        let ok = Response::new(axum::body::Body::empty());
        assert!(ApiError::replace_plain(&ok).is_none());
    }

    #[test]
    fn a_running_total_overflow_is_a_422_naming_the_balance_limit() {
        let e = ApiError::from(JournalError::RunningTotalOverflow {
            card: "****3931".into(),
        });
        assert_eq!(
            (e.status_and_code().0, e.status_and_code().1.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "max_card_balance_points")
        );
    }

    #[test]
    fn every_journal_failure_is_503_and_a_full_disk_says_so() {
        let full = ApiError::from(SaleError::Journal(JournalError::DiskFull));
        assert_eq!(
            full.status_and_code(),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::JournalFull)
        );
        assert_eq!(
            full.to_string(),
            "the journal's disk is full; nothing was recorded"
        );
        let closed = ApiError::from(JournalError::Closed);
        assert_eq!(closed.status_and_code().1.as_str(), "shutting_down");
        let other = ApiError::from(JournalError::Data("bad row".into()));
        assert_eq!(
            other.status_and_code(),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::JournalError)
        );
        assert!(other.to_string().ends_with("; nothing was recorded"));
    }
}
