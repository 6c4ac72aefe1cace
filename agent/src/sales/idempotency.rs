//! Idempotency keys: `receipt_id` opens a sale once and `return_id` records a return
//! once. A repeat of the same request gets the first answer; the same key with
//! another body is a conflict. One rule for both keys.

use super::{Answer, SaleError};
use crate::journal::sales::StoredRequest;
use protocol::{ReceiptId, ReturnId};

/// The key a request is stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyKey {
    /// `POST /v1/sales`.
    Receipt(ReceiptId),
    /// `POST /v1/returns`.
    Return(ReturnId),
}

impl IdempotencyKey {
    /// What the first request under this key did.
    pub fn done(&self) -> &'static str {
        match self {
            Self::Receipt(_) => "opened",
            Self::Return(_) => "recorded",
        }
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Receipt(id) => write!(f, "receipt {id}"),
            Self::Return(id) => write!(f, "return {id}"),
        }
    }
}

/// The stored answer when `key` was used before by the same request (`hash`), `None`
/// when the key is new, a conflict when it was used with another body.
pub fn replay(
    stored: Option<StoredRequest>,
    hash: &str,
    key: impl FnOnce() -> IdempotencyKey,
) -> Result<Option<Answer>, SaleError> {
    match stored {
        None => Ok(None),
        Some(first) if first.request_hash == hash => Ok(Some(Answer::replayed(first.answer))),
        Some(_) => Err(SaleError::IdempotencyConflict(key())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(hash: &str) -> Option<StoredRequest> {
        Some(StoredRequest {
            request_hash: hash.into(),
            answer: "{\"first\":true}".into(),
        })
    }

    fn key() -> IdempotencyKey {
        IdempotencyKey::Return(ReturnId::parse("X-1").unwrap())
    }

    #[test]
    fn a_new_key_is_not_a_replay() {
        assert_eq!(replay(None, "h", key).unwrap(), None);
    }

    #[test]
    fn the_same_request_gets_the_first_answer() {
        let answer = replay(stored("h"), "h", key).unwrap().unwrap();
        assert_eq!(answer.json, "{\"first\":true}");
        assert!(answer.replayed);
    }

    #[test]
    fn the_same_key_with_another_body_is_a_conflict_naming_the_key() {
        let e = replay(stored("h"), "other", key).unwrap_err();
        assert!(matches!(e, SaleError::IdempotencyConflict(_)));
        assert_eq!(
            e.to_string(),
            "return X-1 was already recorded with a different body"
        );
        let e = replay(stored("h"), "other", || {
            IdempotencyKey::Receipt(ReceiptId::parse("R-1").unwrap())
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "receipt R-1 was already opened with a different body"
        );
    }
}
