//! Committing a held sale: the sale's journal entry is written and the hold captured.

use super::{Answer, SaleError, SaleState};
use crate::cards::CardView;
use crate::journal::sales::SaleRecord;
use crate::journal::{JournalError, Tx};
use protocol::journal::{EntryBody, JournalEntry, SaleEntry, WelcomeEntry};
use protocol::{Money, Points, ReceiptId};
use serde::Serialize;
use time::OffsetDateTime;

/// The answer to a commit.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CommitResponse {
    /// Receipt number.
    pub receipt_id: String,
    /// Always `committed`.
    pub state: SaleState,
    /// Journal sequence number of the sale entry.
    pub entry_seq: u64,
    /// Journal entry id.
    pub entry_id: String,
    /// Points redeemed.
    pub redeemed_points: Points,
    /// Points accrued.
    pub accrued_points: Points,
    /// Paid with points.
    pub discount_minor: Money,
    /// Paid in money.
    pub paid_minor: Money,
    /// The card right after the sale (for the receipt printout).
    pub card: Option<CardView>,
}

/// What a commit does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitPlan {
    /// The sale was committed before: its stored answer.
    Replay(String),
    /// Capture the hold: append these entries, in this order.
    Capture {
        /// A welcome bonus before the card's first sale (standalone store).
        welcome: Option<WelcomeEntry>,
        /// The sale's entry.
        sale: SaleEntry,
    },
}

/// Commits a held sale: writes its journal entry (idempotent).
///
/// `welcome_bonus` is set in a standalone store (no HQ to grant it): a card's first
/// committed sale is preceded by a welcome entry of that many points.
pub fn commit(
    tx: &Tx<'_>,
    receipt: &ReceiptId,
    now: OffsetDateTime,
    welcome_bonus: Option<Points>,
) -> Result<Answer, SaleError> {
    let sale = tx
        .sale(receipt)?
        .ok_or_else(|| SaleError::UnknownReceipt(receipt.clone()))?;
    let first_visit = match (&sale.card, welcome_bonus) {
        (Some(card), Some(_)) => !tx.card_has_entries(card)?,
        _ => false,
    };
    let welcome_bonus = welcome_bonus.filter(|_| first_visit);
    let (welcome, entry) = match decide(receipt, &sale, welcome_bonus)? {
        CommitPlan::Replay(json) => return Ok(Answer::replayed(json)),
        CommitPlan::Capture { welcome, sale } => (welcome, sale),
    };
    if let Some(welcome) = welcome {
        tx.append(EntryBody::Welcome(welcome), now, sale.rules_version)?;
    }
    let entry = tx.append(EntryBody::Sale(entry), now, sale.rules_version)?;
    // The card right after the sale: the hold is captured below, in this transaction,
    // with the answer that shows this view, so its points no longer count as held.
    let view = sale
        .card
        .as_ref()
        .map(|card| -> Result<_, JournalError> {
            let mut figures = tx.card_figures(card, now)?;
            figures.held = Points(figures.held.get().saturating_sub(sale.redeem_points.get()));
            Ok(CardView::new(card, figures))
        })
        .transpose()?;
    let answer = Answer::fresh(&respond(receipt, &sale, &entry, view))?;
    tx.capture_hold(receipt, entry.seq, &answer.json)?;
    Ok(answer)
}

/// Decides a commit of `sale`. `welcome_bonus` is the bonus owed before this card's
/// first sale, if any.
pub fn decide(
    receipt: &ReceiptId,
    sale: &SaleRecord,
    welcome_bonus: Option<Points>,
) -> Result<CommitPlan, SaleError> {
    match sale.state {
        SaleState::Committed | SaleState::Returned => sale
            .commit_answer
            .clone()
            .map(CommitPlan::Replay)
            .ok_or_else(|| JournalError::data("committed sale without its answer").into()),
        SaleState::Cancelled(reason) => Err(SaleError::SaleCancelled {
            receipt: receipt.clone(),
            reason,
        }),
        SaleState::Held => Ok(CommitPlan::Capture {
            welcome: match (welcome_bonus, &sale.card) {
                (Some(points), Some(card)) if points > Points::ZERO => Some(WelcomeEntry {
                    card: card.clone(),
                    points,
                }),
                _ => None,
            },
            sale: SaleEntry {
                receipt_id: receipt.clone(),
                card: sale.card.clone(),
                sale: sale.priced.clone(),
                matures_at: sale.matures_at,
                offline: sale.offline,
                lease: sale.lease.filter(|l| l.points > Points::ZERO),
            },
        }),
    }
}

fn respond(
    receipt: &ReceiptId,
    sale: &SaleRecord,
    entry: &JournalEntry,
    card: Option<CardView>,
) -> CommitResponse {
    CommitResponse {
        receipt_id: receipt.to_string(),
        state: SaleState::Committed,
        entry_seq: entry.seq.get(),
        entry_id: entry.id.to_string(),
        redeemed_points: sale.redeem_points,
        accrued_points: if sale.card.is_some() {
            sale.priced.accrued_points
        } else {
            Points::ZERO
        },
        discount_minor: sale.priced.discount_minor,
        paid_minor: sale.priced.paid_minor,
        card,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sales::CancelReason;
    use crate::sales::fixtures::sale_record;

    fn receipt() -> ReceiptId {
        ReceiptId::parse("R-1").unwrap()
    }

    #[test]
    fn the_commit_answer_shows_the_card_without_this_hold_and_is_stored_with_the_capture() {
        use crate::journal::sales::NewHold;
        use crate::sales::fixtures::CARD;
        use protocol::CardId;
        use time::macros::datetime;

        let (_dir, mut file) = crate::journal::test_journal();
        let now = datetime!(2026-11-24 10:00 UTC);
        let card = CardId::parse(CARD).unwrap();
        let sale = sale_record(SaleState::Held, true);
        let welcome = EntryBody::Welcome(WelcomeEntry {
            card: card.clone(),
            points: Points(100),
        });
        // Two open holds of the card, 10 points each; the first is committed.
        file.write(|tx| -> Result<(), JournalError> {
            tx.append(welcome, now, 0)?;
            for receipt in ["R-1", "R-2"] {
                tx.insert_hold(&NewHold {
                    receipt_id: &ReceiptId::parse(receipt).unwrap(),
                    request_hash: "h",
                    card: Some(&card),
                    redeem_points: sale.redeem_points,
                    offline: false,
                    reserved_points: Points::ZERO,
                    lease: None,
                    held_at: now,
                    rules_version: sale.rules_version,
                    matures_at: None,
                    priced: &sale.priced,
                    answer: "{}",
                })?;
            }
            Ok(())
        })
        .unwrap();
        let answer = file.write(|tx| commit(tx, &receipt(), now, None)).unwrap();
        let body: serde_json::Value = serde_json::from_str(&answer.json).unwrap();
        let balance = 100 - 10 + sale.priced.accrued_points.get();
        assert_eq!(body["card"]["balance"], balance, "{body}");
        assert_eq!(body["card"]["held"], 10, "only the other hold: {body}");
        assert_eq!(body["card"]["available"], balance - 10, "{body}");
        let stored = file.read(|tx| tx.sale(&receipt())).unwrap().unwrap();
        assert_eq!(stored.state, SaleState::Committed);
        assert_eq!(stored.commit_answer.as_deref(), Some(answer.json.as_str()));
        let again = file.write(|tx| commit(tx, &receipt(), now, None)).unwrap();
        assert!(again.replayed);
        assert_eq!(again.json, answer.json);
    }

    #[test]
    fn a_held_sale_is_captured_with_its_priced_receipt() {
        let sale = sale_record(SaleState::Held, true);
        let plan = decide(&receipt(), &sale, None).unwrap();
        let CommitPlan::Capture {
            welcome,
            sale: entry,
        } = plan
        else {
            panic!("not captured: {plan:?}");
        };
        assert_eq!(welcome, None);
        assert_eq!(entry.receipt_id, receipt());
        assert_eq!(entry.card, sale.card);
        assert_eq!(entry.sale, sale.priced);
    }

    #[test]
    fn a_first_visit_in_a_standalone_store_gets_the_welcome_bonus_first() {
        let plan = decide(
            &receipt(),
            &sale_record(SaleState::Held, true),
            Some(Points(50)),
        );
        assert!(matches!(
            plan,
            Ok(CommitPlan::Capture { welcome: Some(WelcomeEntry { points, .. }), .. }) if points == Points(50)
        ));
        // No card, no bonus; a zero bonus is no entry.
        for (card, bonus) in [(false, 50), (true, 0)] {
            let plan = decide(
                &receipt(),
                &sale_record(SaleState::Held, card),
                Some(Points(bonus)),
            );
            assert!(matches!(
                plan,
                Ok(CommitPlan::Capture { welcome: None, .. })
            ));
        }
    }

    #[test]
    fn a_committed_or_returned_sale_replays_its_answer() {
        for state in [SaleState::Committed, SaleState::Returned] {
            assert_eq!(
                decide(&receipt(), &sale_record(state, true), None).unwrap(),
                CommitPlan::Replay("{\"stored\":1}".into())
            );
        }
    }

    #[test]
    fn a_cancelled_sale_cannot_be_committed_and_says_why() {
        let expired = sale_record(SaleState::Cancelled(CancelReason::HoldTimeout), true);
        assert_eq!(
            decide(&receipt(), &expired, None).unwrap_err().to_string(),
            "receipt R-1 cannot be committed: its hold expired; open a new sale"
        );
        let cancelled = sale_record(SaleState::Cancelled(CancelReason::Till), true);
        assert!(
            decide(&receipt(), &cancelled, None)
                .unwrap_err()
                .to_string()
                .contains("it was cancelled")
        );
    }
}
