//! The sync wire format between `pos-agent` and `sync-server`, and the JSON error
//! body both HTTP APIs answer with.
//!
//! Every message carries [`PROTOCOL_VERSION`]: request bodies in their `protocol`
//! field, GET requests in the [`PROTOCOL_HEADER`] header, responses in their
//! `protocol` field. A peer refuses a version it does not speak with
//! `unsupported_protocol`.

use crate::ids::{CardId, Seq, StoreId, TerminalId};
use crate::journal::JournalEntry;
use crate::money::Points;
use crate::rules::ProgramRules;
use crate::token::KeyId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Header that carries the protocol version on requests without a body.
pub const PROTOCOL_HEADER: &str = "x-loyalty-protocol";

/// `POST /v1/sync/push`: a batch of entries in `seq` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// Protocol version.
    pub protocol: u32,
    /// The store the sender believes it is; must match its token.
    pub store_id: StoreId,
    /// The terminal the sender believes it is; must match its token.
    pub terminal_id: TerminalId,
    /// Entries, consecutive `seq` numbers.
    pub entries: Vec<JournalEntry>,
}

/// Answer to a push, sent only after HQ committed the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushResponse {
    /// Protocol version.
    pub protocol: u32,
    /// The highest contiguous `seq` HQ holds for this terminal.
    pub acked_through: Seq,
    /// Entries of the batch applied now.
    pub applied: u32,
    /// Entries of the batch HQ already held (same id and content).
    pub duplicates: u32,
}

/// `GET /v1/sync/pull?cursor=…`: what changed at HQ since `cursor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullResponse {
    /// Protocol version.
    pub protocol: u32,
    /// Cursor to send next time (opaque).
    pub cursor: String,
    /// True when more changes wait: pull again at once with the new cursor.
    pub more: bool,
    /// The highest contiguous `seq` HQ holds for this terminal, read together with the
    /// balances below: they include exactly this terminal's entries up to it.
    pub acked_through: Seq,
    /// The current rules, when newer than the `rules_version` the agent sent.
    pub rules: Option<ProgramRules>,
    /// Block and unblock events since the cursor, oldest first.
    pub blocked: Vec<BlockChange>,
    /// Every public key that verifies app tokens, retired ones with their end.
    pub keys: Vec<PublicKeyInfo>,
    /// Balances of cards seen at this store that changed since the cursor.
    pub balances: Vec<CardBalance>,
}

/// A card blocked or unblocked by HQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockChange {
    /// The card.
    pub card: CardId,
    /// True: refuse redemptions; false: lifted.
    pub blocked: bool,
}

/// An HQ public key for app tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyInfo {
    /// Key id, as in the tokens.
    pub key_id: KeyId,
    /// Ed25519 public key, base32 (see [`crate::token::encode_public_key`]).
    pub public_key: String,
    /// Tokens signed with it are refused from then on (`None`: current key).
    #[serde(with = "time::serde::rfc3339::option")]
    pub valid_until: Option<OffsetDateTime>,
}

/// A card's balance as HQ knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardBalance {
    /// The card.
    pub card: CardId,
    /// Every point the card holds, pending included. Negative after an overdraft.
    pub balance: Points,
    /// Points not yet spendable.
    pub pending: Points,
    /// Tier name, if any.
    pub tier: Option<String>,
    /// True when HQ blocked the card.
    pub blocked: bool,
    /// When HQ computed it.
    #[serde(with = "time::serde::rfc3339")]
    pub as_of: OffsetDateTime,
}

/// `GET /v1/cards/{card}` at HQ: a live balance for an online agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveBalanceResponse {
    /// Protocol version.
    pub protocol: u32,
    /// As in [`PullResponse::acked_through`].
    pub acked_through: Seq,
    /// The balance; a card HQ has never seen has zero everywhere.
    pub balance: CardBalance,
}

/// `GET /v1/health` at HQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHealth {
    /// Protocol version.
    pub protocol: u32,
    /// `ok` when the database answers.
    pub status: String,
    /// Current rules version.
    pub rules_version: u64,
}

/// The JSON error body of both HTTP APIs: `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Inside [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`seq_gap`, `insufficient_points`, …).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// On sync errors about sequence numbers: what HQ holds for the terminal, so the
    /// agent can resend from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_through: Option<Seq>,
}

impl ErrorBody {
    /// An error body with a code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                acked_through: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn pull_response_round_trips() {
        let r = PullResponse {
            protocol: PROTOCOL_VERSION,
            cursor: "17".into(),
            more: false,
            acked_through: Seq(9),
            rules: Some(ProgramRules::default()),
            blocked: vec![BlockChange {
                card: CardId::parse("4006381333931").unwrap(),
                blocked: true,
            }],
            keys: vec![],
            balances: vec![CardBalance {
                card: CardId::parse("4006381333931").unwrap(),
                balance: Points(-5),
                pending: Points(0),
                tier: None,
                blocked: true,
                as_of: datetime!(2026-11-24 10:00:00 UTC),
            }],
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<PullResponse>(&json).unwrap(), r);
    }

    #[test]
    fn error_body_has_the_fixed_shape() {
        let json = serde_json::to_value(ErrorBody::new("seq_gap", "expected 5")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "seq_gap", "message": "expected 5"}})
        );
    }

    #[test]
    fn push_request_with_unknown_fields_is_refused() {
        let body = r#"{"protocol":1,"store_id":"s","terminal_id":"t","entries":[],"x":1}"#;
        assert!(serde_json::from_str::<PushRequest>(body).is_err());
    }
}
