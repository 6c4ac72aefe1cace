//! The sync wire format between `pos-agent` and `sync-server`, and the JSON error
//! body both HTTP APIs answer with.
//!
//! Every message carries [`PROTOCOL_VERSION`]: request bodies in their `protocol`
//! field, GET requests in the [`PROTOCOL_HEADER`] header, responses in their
//! `protocol` field. A peer refuses a version it does not speak with
//! `unsupported_protocol`.
//!
//! Requests are parsed strictly (unknown fields refused); responses are read
//! tolerantly (unknown fields ignored), so HQ can add a field before every till knows it.

use crate::ids::{CardId, ReceiptId, Seq, StoreId, TerminalId};
use crate::journal::JournalEntry;
use crate::money::Points;
use crate::rules::ProgramRules;
use crate::token::KeyId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Header that carries the protocol version on requests without a body.
pub const PROTOCOL_HEADER: &str = "x-loyalty-protocol";

/// `POST /v1/sync/push`: a batch of entries in `seq` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// Protocol version.
    #[schema(minimum = 1, maximum = 1)]
    pub protocol: u32,
    /// The store the sender believes it is; must match its token.
    pub store_id: StoreId,
    /// The terminal the sender believes it is; must match its token.
    pub terminal_id: TerminalId,
    /// Entries, consecutive `seq` numbers.
    pub entries: Vec<JournalEntry>,
}

/// Answer to a push, sent only after HQ committed the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PushResponse {
    /// Protocol version.
    pub protocol: u32,
    /// The highest contiguous `seq` HQ holds for this terminal.
    pub acked_through: Seq,
    /// Entries of the batch applied now.
    pub applied: u32,
    /// Entries of the batch HQ already held (same id and content).
    pub duplicates: u32,
    /// Entries of the batch HQ stored and acknowledged but could not apply: they are
    /// in HQ's quarantine (`sync-server report quarantine`), with no effect on any
    /// balance until HQ retries them. Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<Seq>,
}

/// `GET /v1/sync/pull?cursor=…`: what changed at HQ since `cursor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockChange {
    /// The card.
    pub card: CardId,
    /// True: refuse redemptions; false: lifted.
    pub blocked: bool,
}

/// An HQ public key for app tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Points held by open reservations of OTHER terminals than the one asking (all
    /// terminals in admin views). The asking till counts its own holds itself.
    #[serde(default)]
    pub reserved: Points,
    /// Points in open leases of OTHER terminals than the one asking (all terminals in
    /// admin views). The asking till's own lease is points it may spend.
    #[serde(default)]
    pub leased: Points,
    /// When HQ computed it.
    #[serde(with = "time::serde::rfc3339")]
    pub as_of: OffsetDateTime,
}

/// `GET /v1/cards/{card}` at HQ: a live balance for an online agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LiveBalanceResponse {
    /// Protocol version.
    pub protocol: u32,
    /// As in [`PullResponse::acked_through`].
    pub acked_through: Seq,
    /// The balance; a card HQ has never seen has zero everywhere.
    pub balance: CardBalance,
}

/// `POST /v1/reservations`: hold points of a card at HQ for a receipt being sold.
/// Idempotent per (terminal, `receipt_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    /// Protocol version.
    #[schema(minimum = 1, maximum = 1)]
    pub protocol: u32,
    /// The card.
    pub card: CardId,
    /// The receipt being sold (with the terminal, the reservation's key).
    pub receipt_id: ReceiptId,
    /// Points to hold (at least 1).
    #[schema(value_type = i64, minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub points: Points,
    /// When the till releases the hold if it is not committed (till clock).
    #[serde(with = "time::serde::rfc3339")]
    pub hold_expires_at: OffsetDateTime,
}

/// A reservation HQ holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reservation {
    /// The receipt.
    pub receipt_id: ReceiptId,
    /// The card.
    pub card: CardId,
    /// Points held.
    pub points: Points,
    /// The till's hold deadline, as sent.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Answer to a granted reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReserveResponse {
    /// Protocol version.
    pub protocol: u32,
    /// The reservation.
    pub reservation: Reservation,
    /// As in [`PullResponse::acked_through`], read with `balance`.
    pub acked_through: Seq,
    /// The card after the reservation (reserved/leased of other terminals).
    pub balance: CardBalance,
}

/// `POST /v1/sync/leases`: the till reports the leases it holds and asks for more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseSyncRequest {
    /// Protocol version.
    #[schema(minimum = 1, maximum = 1)]
    pub protocol: u32,
    /// Per-terminal counter, higher than every earlier request's (HQ refuses older).
    #[schema(maximum = 9_223_372_036_854_775_807_i64)]
    pub epoch: u64,
    /// The till's last journal `seq`; HQ must hold all of it (`acked_through`).
    pub through_seq: Seq,
    /// The open leases the till's journal holds.
    pub held: Vec<Uuid>,
    /// Most points all of this till's open leases may hold together.
    #[schema(value_type = i64, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub max_total: Points,
    /// Cards the till wants a lease of (or a held lease extended).
    #[schema(max_items = 10_000)]
    pub want: Vec<LeaseWant>,
}

/// One card a till wants a lease of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseWant {
    /// The card.
    pub card: CardId,
    /// Most points the lease may hold.
    #[schema(value_type = i64, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub max_points: Points,
}

/// A lease: points of a card HQ moved into one till's escrow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lease {
    /// Its id.
    pub lease_id: Uuid,
    /// The card.
    pub card: CardId,
    /// Points leased.
    pub points: Points,
    /// The till may draw on it until then (its own clock).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Answer to a lease sync: every open lease of the terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaseSyncResponse {
    /// Protocol version.
    pub protocol: u32,
    /// Held leases (expiry possibly extended) and new ones.
    pub leases: Vec<Lease>,
}

/// `POST /v1/tokens/use`: record that an app token was scanned at this terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenUseRequest {
    /// Protocol version.
    #[schema(minimum = 1, maximum = 1)]
    pub protocol: u32,
    /// The token's id ([`crate::token::AppToken::id`]).
    #[schema(pattern = "^[0-9A-Fa-f]{32}$")]
    pub token_id: String,
    /// The card it stands for.
    pub card: CardId,
    /// Its expiry (HQ forgets the use a day after).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The scan at the till: the same scan retried is the same use.
    pub scan_id: Uuid,
}

/// Answer to a first use (or a retry of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenUseResponse {
    /// Protocol version.
    pub protocol: u32,
}

/// `GET /v1/health` at HQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServerHealth {
    /// Protocol version.
    pub protocol: u32,
    /// `ok` when the database answers.
    pub status: String,
    /// Current rules version.
    pub rules_version: u64,
}

/// The stable `code` of every error the sync API answers with. HQ maps each of its
/// failures to one of these; the agent parses the code back to decide what to do
/// (resend from `acked_through`, halt, retry later). The text form is the wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncErrorCode {
    /// Missing, unknown or revoked terminal token.
    Unauthorized,
    /// The body is larger than the server accepts.
    BodyTooLarge,
    /// A malformed request (JSON, query, cursor).
    BadRequest,
    /// A protocol version the server does not speak.
    UnsupportedProtocol,
    /// The body names another terminal than the token.
    TerminalMismatch,
    /// A malformed batch (seq order, repeated seq).
    BadBatch,
    /// An entry id HQ already holds under another `(terminal, seq)`.
    IdConflict,
    /// The batch starts after the first `seq` HQ is missing.
    SeqGap,
    /// A `seq` HQ holds with other content.
    SeqConflict,
    /// Not a card number.
    BadCard,
    /// No such endpoint.
    NotFound,
    /// The endpoint exists with other methods.
    MethodNotAllowed,
    /// A `Content-Encoding` other than gzip.
    UnsupportedEncoding,
    /// HQ cannot serve now (database unreachable); retry later.
    Unavailable,
    /// A bug or broken database at HQ.
    Internal,
    /// A reservation asked for more points than the card may spend.
    InsufficientPoints,
    /// A reservation on a card HQ blocked.
    CardBlocked,
    /// A reservation for a receipt whose reservation was already captured or released.
    ReservationSettled,
    /// A lease sync older than one HQ already answered.
    StaleEpoch,
    /// A lease sync before HQ holds every entry of the till: push first.
    PushFirst,
    /// An app token already used at another till or in another scan.
    TokenUsed,
}

impl SyncErrorCode {
    /// Every code, for parsing.
    pub const ALL: [Self; 21] = [
        Self::Unauthorized,
        Self::BodyTooLarge,
        Self::BadRequest,
        Self::UnsupportedProtocol,
        Self::TerminalMismatch,
        Self::BadBatch,
        Self::IdConflict,
        Self::SeqGap,
        Self::SeqConflict,
        Self::BadCard,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::UnsupportedEncoding,
        Self::Unavailable,
        Self::Internal,
        Self::InsufficientPoints,
        Self::CardBlocked,
        Self::ReservationSettled,
        Self::StaleEpoch,
        Self::PushFirst,
        Self::TokenUsed,
    ];

    /// The wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::BodyTooLarge => "body_too_large",
            Self::BadRequest => "bad_request",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::TerminalMismatch => "terminal_mismatch",
            Self::BadBatch => "bad_batch",
            Self::IdConflict => "id_conflict",
            Self::SeqGap => "seq_gap",
            Self::SeqConflict => "seq_conflict",
            Self::BadCard => "bad_card",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::InsufficientPoints => "insufficient_points",
            Self::CardBlocked => "card_blocked",
            Self::ReservationSettled => "reservation_settled",
            Self::StaleEpoch => "stale_epoch",
            Self::PushFirst => "push_first",
            Self::TokenUsed => "token_used",
        }
    }

    /// Parses the wire form; `None` for a code this build does not know (a newer HQ).
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for SyncErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON error body of both HTTP APIs: `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Inside [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`seq_gap`, `insufficient_points`, …).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// On sync errors about sequence numbers: what HQ holds for the terminal, so the
    /// agent can resend from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_through: Option<Seq>,
    /// On `insufficient_points`: the points the card may still spend (what a smaller
    /// reservation could get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spendable: Option<Points>,
}

impl ErrorBody {
    /// An error body with a code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                acked_through: None,
                spendable: None,
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
                reserved: Points(0),
                leased: Points(3),
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
    fn every_sync_error_code_parses_back_from_its_wire_form() {
        for code in SyncErrorCode::ALL {
            assert_eq!(SyncErrorCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(SyncErrorCode::parse("from_a_newer_hq"), None);
    }

    #[test]
    fn a_card_balance_from_an_older_hq_reads_with_nothing_reserved_or_leased() {
        let old = r#"{"card":"4006381333931","balance":5,"pending":0,"tier":null,
            "blocked":false,"as_of":"2026-11-24T10:00:00Z","added_later":1}"#;
        let b: CardBalance = serde_json::from_str(old).unwrap();
        assert_eq!((b.reserved, b.leased), (Points(0), Points(0)));
    }

    #[test]
    fn push_request_with_unknown_fields_is_refused() {
        let body = r#"{"protocol":1,"store_id":"s","terminal_id":"t","entries":[],"x":1}"#;
        assert!(serde_json::from_str::<PushRequest>(body).is_err());
    }
}
