//! The till's operations on sales: hold, commit, cancel, return. Each runs inside one
//! journal transaction ([`crate::journal::Journal::write`]) and produces the JSON
//! answer the till gets, which is stored with the sale so that a repeated request
//! (same idempotency key, same body) gets the very same answer.
//!
//! - [`hold`]: open a sale, price it, reserve `redeem_points` (policy checks);
//! - [`settle`]: commit (writes the sale's journal entry), cancel, release expired holds;
//! - [`returns`]: full or partial returns (writes a return entry).

pub mod hold;
pub mod returns;
pub mod settle;

use crate::journal::JournalError;
use protocol::evaluate::ReturnLineRequest;
use protocol::receipt::Line;
use protocol::{CardId, Points, ReceiptId, ReturnId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `POST /v1/sales` and `POST /v1/quote` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleRequest {
    /// The till's receipt number (idempotency key).
    pub receipt_id: ReceiptId,
    /// The loyalty card, if the customer showed one.
    #[serde(default)]
    pub card: Option<CardId>,
    /// Receipt lines.
    pub lines: Vec<Line>,
    /// Points to redeem on this receipt (0 for none).
    #[serde(default)]
    pub redeem_points: Points,
}

/// `POST /v1/returns` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnRequest {
    /// The till's return number (idempotency key).
    pub return_id: ReturnId,
    /// The sale being returned.
    pub receipt_id: ReceiptId,
    /// Lines and quantities returned (0-based line index on the sale); absent or empty
    /// means everything not yet returned.
    #[serde(default)]
    pub lines: Vec<ReturnLineRequest>,
}

/// SHA-256 of a request's canonical JSON: what "the same request" means for
/// idempotency keys.
pub fn request_hash<T: Serialize>(req: &T) -> String {
    // Serializing plain owned data cannot fail.
    let bytes = serde_json::to_vec(req).unwrap_or_default();
    data_encoding::HEXLOWER.encode(&Sha256::digest(&bytes))
}

/// The JSON answer of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The answer body.
    pub json: String,
    /// True when this is the stored answer of an earlier identical request.
    pub replayed: bool,
}

/// Why an operation was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SaleError {
    /// Malformed or inconsistent request.
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// Unknown receipt.
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The request conflicts with what happened before (key reused with another
    /// body, commit of a cancelled sale, …).
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// A rule refused it (insufficient points, an offline cap, a blocked card).
    #[error("{message}")]
    Refused {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The journal failed; nothing was written.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl SaleError {
    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }
    fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }
    fn refused(code: &'static str, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            message: message.into(),
        }
    }
    fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, SaleError> {
    serde_json::to_string(value).map_err(|e| SaleError::Journal(JournalError::data(e)))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, SaleError> {
    serde_json::from_str(text).map_err(|e| SaleError::Journal(JournalError::data(e)))
}
