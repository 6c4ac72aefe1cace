//! The balance the till sees for a card.
//!
//! Shown balance = HQ's last known balance + this terminal's own entries that HQ's
//! figure does not yet include. HQ says exactly which ones it includes
//! (`included_seq`, the terminal's `acked_through` read together with the balance), so
//! a sale never disappears and reappears in the balance while it travels to HQ.
//! In a standalone store there is no HQ row and the journal alone is the balance.
//!
//! Available = balance − pending − what other terminals hold of the card at HQ (open
//! reservations and leases, as HQ last reported them) − this till's open holds. This
//! till's own lease is part of the balance HQ reports and stays available here.
//! The journal reads the figures ([`crate::journal::card_views`]); this module adds
//! them up.

use crate::journal::card_views::CardFigures;
use crate::journal::{JournalError, Tx};
use protocol::evaluate::CardState;
use protocol::{CardId, Points};
use serde::Serialize;
use time::OffsetDateTime;

/// A card as the till API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CardView {
    /// The card.
    pub card: CardId,
    /// Every point the card holds, pending included.
    pub balance: Points,
    /// Spendable now: balance minus pending points, what other terminals reserved or
    /// leased at HQ, and this till's open holds.
    pub available: Points,
    /// Accrued points not yet spendable.
    pub pending: Points,
    /// Points reserved by open holds at this till.
    pub held: Points,
    /// Tier name from HQ.
    pub tier: Option<String>,
    /// The time of the newest figure included: when HQ computed its part, or when
    /// this till wrote its newest entry of the card HQ has not counted yet, whichever
    /// is later (`None`: neither exists).
    #[serde(with = "time::serde::rfc3339::option")]
    pub as_of: Option<OffsetDateTime>,
    /// True when the figures come from the cache because HQ could not be asked now.
    pub offline: bool,
    /// True when HQ blocked the card.
    pub blocked: bool,
}

impl CardView {
    /// The view of `card` from its figures.
    pub fn new(card: &CardId, figures: CardFigures) -> Self {
        let CardFigures {
            hq,
            local_balance,
            local_pending,
            local_as_of,
            held,
            blocked,
        } = figures;
        let (hq_balance, hq_pending, elsewhere, tier, as_of) = match hq {
            Some(f) => (
                f.balance,
                f.pending,
                f.reserved_elsewhere
                    .get()
                    .saturating_add(f.leased_elsewhere.get()),
                f.tier,
                f.as_of,
            ),
            None => (Points::ZERO, Points::ZERO, 0, None, None),
        };
        let balance = hq_balance.get().saturating_add(local_balance.get());
        let pending = hq_pending.get().saturating_add(local_pending.get());
        let available = balance
            .saturating_sub(pending)
            .saturating_sub(elsewhere)
            .saturating_sub(held.get());
        Self {
            card: card.clone(),
            balance: Points(balance),
            available: Points(available),
            pending: Points(pending),
            held,
            tier,
            as_of: as_of.max(local_as_of),
            offline: false,
            blocked,
        }
    }

    /// The view of `card` at `now`, read in the caller's transaction.
    pub fn read(tx: &Tx<'_>, card: &CardId, now: OffsetDateTime) -> Result<Self, JournalError> {
        Ok(Self::new(card, tx.card_figures(card, now)?))
    }

    /// The card state rule evaluation needs.
    pub fn rule_state(&self) -> CardState {
        CardState {
            available: self.available,
            tier: self.tier.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::card_views::HqFigures;

    fn card() -> CardId {
        CardId::parse("4006381333931").unwrap()
    }

    #[test]
    fn available_is_the_balance_less_pending_points_what_others_hold_and_open_holds() {
        let v = CardView::new(
            &card(),
            CardFigures {
                hq: Some(HqFigures {
                    balance: Points(100),
                    pending: Points(10),
                    reserved_elsewhere: Points(7),
                    leased_elsewhere: Points(3),
                    tier: Some("gold".into()),
                    as_of: None,
                }),
                local_balance: Points(30),
                local_pending: Points(5),
                local_as_of: None,
                held: Points(20),
                blocked: false,
            },
        );
        assert_eq!(v.balance, Points(130));
        assert_eq!(v.pending, Points(15));
        assert_eq!(v.available, Points(85));
        assert_eq!(v.tier.as_deref(), Some("gold"));
    }

    #[test]
    fn a_card_hq_never_reported_is_the_journal_alone() {
        let v = CardView::new(
            &card(),
            CardFigures {
                hq: None,
                local_balance: Points(12),
                local_pending: Points(0),
                local_as_of: None,
                held: Points(0),
                blocked: true,
            },
        );
        assert_eq!(
            (v.balance, v.available, v.as_of),
            (Points(12), Points(12), None)
        );
        assert!(v.blocked);
    }
}
