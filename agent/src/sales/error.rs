//! Why a sale operation was refused. Nothing was written. The till API maps each
//! variant to its status and stable code (`crate::till_api::error`).

use super::idempotency::IdempotencyKey;
use super::state::{CancelReason, SaleState};
use crate::journal::JournalError;
use crate::policy::Refusal;
use protocol::evaluate::EvalError;
use protocol::limits::LimitError;
use protocol::{Points, ReceiptId};

/// Why an operation was refused. Card numbers are kept masked: these messages reach
/// the till and the logs.
#[derive(Debug, thiserror::Error)]
pub enum SaleError {
    /// The receipt, the redemption or the return cannot be priced as asked.
    #[error("{0}")]
    Invalid(EvalError),
    /// The card number is not one of the program's (`[card_numbers]` of the rules):
    /// most likely typed with a typo. The text never repeats the number.
    #[error("not a card number of this program: {0}")]
    BadCardNumber(protocol::card_numbers::CardNumberError),
    /// Points to redeem without a card.
    #[error("redeem_points needs a card")]
    CardRequired,
    /// HQ blocked the card.
    #[error("card {card} is blocked by HQ")]
    CardBlocked {
        /// The card, masked.
        card: String,
    },
    /// More points than the card has available.
    #[error("card {card} has {available} points available, {requested} requested")]
    InsufficientPoints {
        /// The card, masked.
        card: String,
        /// Points available.
        available: Points,
        /// Points asked for.
        requested: Points,
    },
    /// More points than the program allows on this receipt.
    #[error("the program allows at most {max} points on this receipt")]
    RedeemAboveRuleCap {
        /// The rules' maximum.
        max: Points,
    },
    /// HQ settled (captured or released) a reservation under this receipt before: a
    /// receipt number is used once.
    #[error(
        "HQ already settled a redemption of receipt {0}; open the sale under a new receipt number"
    )]
    ReservationSettled(ReceiptId),
    /// An offline cap refused the redemption.
    #[error("{}", .0.message)]
    Offline(Refusal),
    /// The idempotency key was used before with another body.
    #[error("{key} was already {done} with a different body", key = .0, done = .0.done())]
    IdempotencyConflict(IdempotencyKey),
    /// No sale was opened under this receipt number.
    #[error("no sale was opened for receipt {0}")]
    UnknownReceipt(ReceiptId),
    /// A commit of a sale that was cancelled.
    #[error("receipt {receipt} cannot be committed: {}; open a new sale", cancelled_because(*.reason))]
    SaleCancelled {
        /// Receipt number.
        receipt: ReceiptId,
        /// Who cancelled it.
        reason: CancelReason,
    },
    /// A cancel of a committed sale.
    #[error("receipt {0} is committed; use a return instead")]
    SaleCommitted(ReceiptId),
    /// A return of a sale that is not committed.
    #[error("receipt {receipt} is {state}; only committed sales can be returned")]
    SaleNotCommitted {
        /// Receipt number.
        receipt: ReceiptId,
        /// Where the sale stands.
        state: SaleState,
    },
    /// A return when everything was returned already.
    #[error("{0}")]
    AlreadyReturned(EvalError),
    /// A return of more units than remain.
    #[error("{0}")]
    ReturnExceedsSale(EvalError),
    /// A figure of the request is above a `[limits]` maximum (or negative).
    #[error("{0}")]
    Limit(LimitError),
    /// The sale would take the card above `[limits] max_card_balance_points`.
    #[error("card {card}: {source}")]
    CardBalanceLimit {
        /// The card, masked.
        card: String,
        /// The balance the sale would leave and the limit.
        source: LimitError,
    },
    /// The journal failed; nothing was written.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

fn cancelled_because(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::HoldTimeout => "its hold expired",
        CancelReason::Till => "it was cancelled",
    }
}
