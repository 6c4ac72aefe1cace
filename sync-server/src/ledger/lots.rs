//! Consuming and creating lots: which points a redemption or a return reversal takes,
//! and how a new lot first pays a card's debt.
//!
//! Order of consumption: a return reversal first takes from the lot of the sale it
//! returns; then spendable lots by earliest expiry (never-expiring last), then pending
//! lots by earliest maturity. So expiry always hits the oldest points that are left,
//! and pending points are spent only when nothing else remains.

use super::{Lot, LotKind};
use protocol::Points;
use std::cmp::Ordering;
use uuid::Uuid;

/// What [`take`] consumed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Taken {
    /// Points taken from lots (the rest of the request becomes debt).
    pub from_lots: Points,
    /// Of those, points taken from pending lots (they lower the card's pending).
    pub from_pending: Points,
}

fn consumption_order(a: &Lot, b: &Lot) -> Ordering {
    match (a.matured, b.matured) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (true, true) => {
            // `None` (never expires) sorts after every date.
            let key = |l: &Lot| (l.expires_at.is_none(), l.expires_at, l.earned_at, l.key);
            key(a).cmp(&key(b))
        }
        (false, false) => {
            let key = |l: &Lot| (l.matures_at.is_none(), l.matures_at, l.earned_at, l.key);
            key(a).cmp(&key(b))
        }
    }
}

/// Takes up to `amount` points from `lots` (one card's open lots), preferring the
/// accrual lot of `prefer_source` (the sale a return reverses). Returns what was
/// taken; `touched` receives the index of every lot that changed.
pub fn take(
    lots: &mut [Lot],
    amount: Points,
    prefer_source: Option<Uuid>,
    touched: &mut impl FnMut(usize),
) -> Taken {
    let mut order: Vec<usize> = (0..lots.len())
        .filter(|&i| lots[i].remaining.get() > 0)
        .collect();
    order.sort_by(|&a, &b| {
        let preferred = |l: &Lot| {
            prefer_source.is_some() && l.kind == LotKind::Accrual && l.source_entry == prefer_source
        };
        preferred(&lots[b])
            .cmp(&preferred(&lots[a]))
            .then_with(|| consumption_order(&lots[a], &lots[b]))
    });
    let mut left = amount.get().max(0);
    let mut taken = Taken::default();
    for i in order {
        if left == 0 {
            break;
        }
        let lot = &mut lots[i];
        let part = lot.remaining.get().min(left);
        lot.remaining = Points(lot.remaining.get() - part);
        left -= part;
        // Neither sum can exceed `amount`: each part comes out of what is left of it.
        taken.from_lots = Points(taken.from_lots.get().saturating_add(part));
        if !lot.matured {
            taken.from_pending = Points(taken.from_pending.get().saturating_add(part));
        }
        touched(i);
    }
    taken
}

/// What is left of a new lot of `amount` points after it pays the debt of a card
/// whose balance is `balance` (debt is a negative balance).
pub fn remaining_after_debt(balance: Points, amount: Points) -> Points {
    // Unsigned: the debt of a balance of i64::MIN does not fit in an i64.
    let debt = balance.get().min(0).unsigned_abs();
    let amount = amount.get().max(0);
    Points(amount - i64::try_from(debt).unwrap_or(i64::MAX).min(amount))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::LotKey;
    use protocol::CardId;
    use time::OffsetDateTime;
    use time::macros::datetime;

    fn lot(
        key: i64,
        earned: OffsetDateTime,
        expires: Option<OffsetDateTime>,
        matured: bool,
        remaining: i64,
    ) -> Lot {
        Lot {
            key: LotKey::Stored(key),
            card: CardId::parse("4006381333931").unwrap(),
            kind: LotKind::Accrual,
            source_entry: Some(Uuid::from_u128(key as u128)),
            earned_at: earned,
            matures_at: (!matured).then_some(earned),
            matured,
            expires_at: expires,
            amount: Points(remaining),
            remaining: Points(remaining),
        }
    }

    #[test]
    fn spendable_lots_go_first_by_earliest_expiry_then_pending_ones() {
        let t = datetime!(2026-01-01 0:00 UTC);
        let mut lots = vec![
            lot(1, t, None, true, 10),
            lot(2, t, Some(datetime!(2026-06-01 0:00 UTC)), true, 10),
            lot(3, t, Some(datetime!(2026-03-01 0:00 UTC)), true, 10),
            lot(4, t, Some(datetime!(2026-02-01 0:00 UTC)), false, 10),
        ];
        let taken = take(&mut lots, Points(25), None, &mut |_| {});
        assert_eq!(taken.from_lots, Points(25));
        assert_eq!(taken.from_pending, Points(0));
        let left: Vec<i64> = lots.iter().map(|l| l.remaining.get()).collect();
        assert_eq!(left, vec![5, 0, 0, 10]);
        let taken = take(&mut lots, Points(20), None, &mut |_| {});
        assert_eq!(
            taken,
            Taken {
                from_lots: Points(15),
                from_pending: Points(10)
            }
        );
    }

    #[test]
    fn a_reversal_takes_from_the_returned_sale_first() {
        let t = datetime!(2026-01-01 0:00 UTC);
        let mut lots = vec![lot(1, t, None, true, 10), lot(2, t, None, true, 10)];
        let mut touched = vec![];
        take(&mut lots, Points(4), Some(Uuid::from_u128(2)), &mut |i| {
            touched.push(i)
        });
        assert_eq!(lots[1].remaining, Points(6));
        assert_eq!(touched, vec![1]);
    }

    #[test]
    fn a_new_lot_pays_debt_first() {
        assert_eq!(remaining_after_debt(Points(-4), Points(10)), Points(6));
        assert_eq!(remaining_after_debt(Points(-40), Points(10)), Points(0));
        assert_eq!(remaining_after_debt(Points(3), Points(10)), Points(10));
        assert_eq!(
            remaining_after_debt(Points(i64::MIN), Points(10)),
            Points(0)
        );
        assert_eq!(
            remaining_after_debt(Points(-1), Points(i64::MAX)),
            Points(i64::MAX - 1)
        );
    }
}
