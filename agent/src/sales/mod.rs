//! The till's operations on sales: quote, hold, commit, cancel, hold expiry, return.
//!
//! Each operation that writes runs inside one journal transaction
//! ([`crate::journal::Journal::write`]) in four steps: read what it needs through the
//! [`Tx`](crate::journal::Tx), decide with a pure function (unit-tested without SQLite),
//! write what was decided, and answer. The JSON answer is stored with the sale, so a
//! repeated request (same idempotency key, same body) gets the very same answer
//! ([`idempotency`]).
//!
//! - [`quote`]: what a receipt would accrue and may redeem, nothing written;
//! - [`hold`]: open a sale, price it, reserve `redeem_points` (policy checks);
//! - [`commit`]: capture the hold, writing the sale's journal entry;
//! - [`cancel`]: release the hold; [`expiry`]: release holds the till forgot;
//! - [`returns`]: full or partial returns (writes a return entry).

pub mod cancel;
pub mod commit;
pub mod error;
pub mod expiry;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod hold;
pub mod idempotency;
pub mod quote;
pub mod returns;
pub mod state;

pub use error::SaleError;
pub use state::{CancelReason, SaleState};

use crate::cards::CardView;
use crate::journal::{JournalError, Tx};
use crate::policy::OfflineUsage;
use crate::redemption::{Funding, LiveBalance, Mode};
use config::agent::OfflineSection;
use protocol::evaluate::ReturnLineRequest;
use protocol::limits::Limits;
use protocol::receipt::Line;
use protocol::rules::ProgramRules;
use protocol::{CardId, Points, ReceiptId, ReturnId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use time::{Date, OffsetDateTime};

/// `POST /v1/sales` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleRequest {
    /// The till's receipt number (idempotency key).
    pub receipt_id: ReceiptId,
    /// The loyalty card, if the customer showed one.
    #[serde(default)]
    pub card: Option<CardId>,
    /// Receipt lines.
    #[schema(min_items = 1, max_items = 1000)]
    pub lines: Vec<Line>,
    /// Points to redeem on this receipt (0 for none); at most `[limits]
    /// max_entry_points` (the served document states this till's own).
    #[serde(default)]
    #[schema(value_type = i64, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub redeem_points: Points,
}

/// `POST /v1/returns` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// What a hold or a quote needs besides the request: the time, the rules and how
/// redemptions are decided.
#[derive(Debug, Clone)]
pub struct SaleContext {
    /// The instant of the request.
    pub now: OffsetDateTime,
    /// The store's calendar day (promotions).
    pub day: Date,
    /// Unix time the store day started (daily caps).
    pub day_start_unix: i64,
    /// The rules in force.
    pub rules: Arc<ProgramRules>,
    /// How redemptions are decided.
    pub mode: Mode,
    /// How this hold's points are paid for (HQ's reservation, this till's lease, the
    /// offline rules); `Funding::Local` for a quote.
    pub funding: Funding,
    /// HQ's live balance of the card, when `mode` is `Online`.
    pub live: Option<LiveBalance>,
    /// Offline caps.
    pub limits: OfflineSection,
    /// Maximums of money and points (`[limits]`).
    pub figure_limits: Limits,
    /// Seconds before an uncommitted hold is released.
    pub hold_timeout_secs: u64,
}

impl SaleContext {
    /// When a hold opened now expires (`hold_timeout_secs` from now).
    pub fn hold_expires_at(&self) -> OffsetDateTime {
        let secs = i64::try_from(self.hold_timeout_secs).unwrap_or(i64::MAX / 2);
        self.now.saturating_add(time::Duration::seconds(secs))
    }

    /// [`Self::hold_expires_at`] in unix seconds.
    pub fn hold_expires_at_unix(&self) -> i64 {
        self.hold_expires_at().unix_timestamp()
    }
}

/// What a hold or a quote reads about `card`: its view, and what the offline caps
/// count when `offline` (the caps decide the redemption).
fn read_card(
    tx: &Tx<'_>,
    card: Option<&CardId>,
    offline: bool,
    ctx: &SaleContext,
) -> Result<(Option<CardView>, Option<OfflineUsage>), JournalError> {
    let Some(card) = card else {
        return Ok((None, None));
    };
    let view = CardView::read(tx, card, ctx.now)?;
    let usage = offline
        .then(|| tx.offline_usage(card, ctx.day_start_unix, ctx.now))
        .transpose()?;
    Ok((Some(view), usage))
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

impl Answer {
    /// A fresh answer: `body` as JSON.
    fn fresh<T: Serialize>(body: &T) -> Result<Self, SaleError> {
        Ok(Self {
            json: serde_json::to_string(body)
                .map_err(|e| SaleError::Journal(JournalError::data(e)))?,
            replayed: false,
        })
    }

    /// The stored answer of an earlier identical request.
    fn replayed(json: String) -> Self {
        Self {
            json,
            replayed: true,
        }
    }
}
