//! Sales and cards as the journal would return them, for the unit tests of the
//! decisions.

use super::SaleState;
use crate::cards::CardView;
use crate::journal::sales::SaleRecord;
use protocol::evaluate::price_sale;
use protocol::receipt::Line;
use protocol::rules::ProgramRules;
use protocol::{CardId, Money, Points};
use time::macros::date;

/// The card of these tests.
pub const CARD: &str = "4006381333931";

/// The view of [`CARD`] with `available` points, nothing pending or held.
pub fn card_view(available: i64, blocked: bool) -> CardView {
    CardView {
        card: CardId::parse(CARD).unwrap(),
        balance: Points(available),
        available: Points(available),
        pending: Points::ZERO,
        held: Points::ZERO,
        tier: None,
        as_of: None,
        offline: false,
        blocked,
    }
}

/// A sale of two lines (2 x 50.00 dairy, 1 x 30.00 grocery) that redeemed 10 points,
/// priced with the default rules, in `state`, with or without a card.
pub fn sale_record(state: SaleState, card: bool) -> SaleRecord {
    let line = |sku: &str, category: &str, amount: i64, qty: u32| Line {
        sku: sku.into(),
        category: category.into(),
        amount_minor: Money(amount),
        qty,
    };
    let lines = [
        line("milk", "dairy", 10_000, 2),
        line("bread", "grocery", 3_000, 1),
    ];
    let priced = price_sale(
        &ProgramRules::default(),
        &lines,
        Points(10),
        None,
        date!(2026 - 11 - 24),
    )
    .unwrap();
    SaleRecord {
        state,
        card: card.then(|| CardId::parse(CARD).unwrap()),
        redeem_points: Points(10),
        offline: false,
        reserved_points: Points(10),
        lease: None,
        rules_version: 3,
        matures_at: None,
        priced,
        returned_qty: Vec::new(),
        entry_seq: None,
        commit_answer: state.is_committed().then(|| "{\"stored\":1}".to_owned()),
    }
}
