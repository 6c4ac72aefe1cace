//! The rules that keep points from being spent twice: what a card may still spend,
//! how big a lease HQ grants a till, and how a till splits a redemption between its
//! own lease and an HQ reservation.
//!
//! The words (see ARCHITECTURE.md, "Points never spent twice"):
//! - *reserved*: points held at HQ by open online reservations;
//! - *leased*: points HQ moved into tills' leases and not yet charged or returned;
//! - *spendable* = balance − pending − reserved − leased.
//!
//! HQ grants a reservation or a lease only out of spendable points, under the card's
//! lock, so `reserved + leased ≤ balance − pending` whenever one is granted: a till
//! spending its lease offline and another till spending online can never take the same
//! point. Every function here is pure and total: figures are checked, never wrapped.

use crate::money::{AmountError, BasisPoints, Points};

/// A card's figures at HQ, as the escrow rules need them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CardFigures {
    /// Every point the card holds, pending included (negative: debt).
    pub balance: Points,
    /// Points not yet spendable.
    pub pending: Points,
    /// Points held by open reservations, over all terminals.
    pub reserved: Points,
    /// Points in open leases, over all terminals (points − charged).
    pub leased: Points,
}

impl CardFigures {
    /// Points no reservation and no lease holds: what HQ may still grant. Zero when the
    /// card holds less than it has promised (debt, or points reversed by a return).
    pub fn spendable(&self) -> Points {
        let promised = i128::from(self.pending.get())
            + i128::from(self.reserved.get())
            + i128::from(self.leased.get());
        let free = i128::from(self.balance.get()) - promised;
        Points(i64::try_from(free.max(0)).unwrap_or(i64::MAX))
    }

    /// Points that may back reservations and leases at all (balance − pending), the
    /// base of the lease share. Zero when negative.
    pub fn committable(&self) -> Points {
        let v = i128::from(self.balance.get()) - i128::from(self.pending.get());
        Points(i64::try_from(v.max(0)).unwrap_or(i64::MAX))
    }
}

/// Why HQ refused a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReserveRefusal {
    /// HQ blocked the card.
    #[error("the card is blocked")]
    Blocked,
    /// Not enough spendable points.
    #[error("{spendable} points spendable, {asked} asked")]
    Insufficient {
        /// What the card may still spend.
        spendable: Points,
        /// What the till asked for.
        asked: Points,
    },
    /// Zero or negative points asked.
    #[error("a reservation must hold at least one point")]
    NotPositive,
}

/// Decides a reservation of `asked` points on a card with `figures`, where `already`
/// is the points this same reservation (terminal, receipt) holds now (a retry, or a
/// re-opened receipt): those are given back before deciding. Returns the change of
/// the card's reserved points.
pub fn decide_reservation(
    figures: &CardFigures,
    blocked: bool,
    already: Points,
    asked: Points,
) -> Result<Points, ReserveRefusal> {
    if asked.get() <= 0 {
        return Err(ReserveRefusal::NotPositive);
    }
    if blocked {
        return Err(ReserveRefusal::Blocked);
    }
    let without_this = CardFigures {
        reserved: Points(figures.reserved.get().saturating_sub(already.get()).max(0)),
        ..*figures
    };
    let spendable = without_this.spendable();
    if asked > spendable {
        return Err(ReserveRefusal::Insufficient { spendable, asked });
    }
    Ok(Points(asked.get() - already.get()))
}

/// What a till asks a lease for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseAsk {
    /// The most points the till wants in this card's lease (its per-card daily cap).
    pub max_points: Points,
    /// Room left under the till's total of open lease points (its per-till daily cap
    /// minus what its open leases hold).
    pub terminal_room: Points,
}

/// How big a new lease HQ grants: the least of what the till asks, the room under its
/// total, what the card may still spend, and the card's lease share (at most
/// `share` of its committable points are in leases at once, over all tills, so the
/// rest stays spendable online anywhere). Zero: no lease.
pub fn lease_size(
    figures: &CardFigures,
    blocked: bool,
    ask: LeaseAsk,
    share: BasisPoints,
) -> Points {
    if blocked {
        return Points::ZERO;
    }
    let share_cap = i128::from(figures.committable().get()) * i128::from(share.get()) / 10_000
        - i128::from(figures.leased.get());
    let candidates = [
        i128::from(ask.max_points.get()),
        i128::from(ask.terminal_room.get()),
        i128::from(figures.spendable().get()),
        share_cap,
    ];
    let size = candidates.into_iter().min().unwrap_or(0).max(0);
    Points(i64::try_from(size).unwrap_or(0))
}

/// A lease as a till holds it, with what its journal has drawn on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TillLease {
    /// Points HQ leased.
    pub points: Points,
    /// Points drawn by committed sales.
    pub drawn_committed: Points,
    /// Points drawn by open holds.
    pub drawn_held: Points,
    /// Unix seconds (till clock) from which the lease may not be drawn on.
    pub expires_at: i64,
}

impl TillLease {
    /// Points the till may still draw. Zero when overdrawn (which the rules prevent).
    pub fn remaining(&self) -> Points {
        let used = i128::from(self.drawn_committed.get()) + i128::from(self.drawn_held.get());
        let left = i128::from(self.points.get()) - used;
        Points(i64::try_from(left.max(0)).unwrap_or(0))
    }

    /// Points spent for good (what `LeaseClosed` reports).
    pub fn spent(&self) -> Points {
        self.drawn_committed
    }
}

/// Why a till may not redeem offline from its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaseRefusal {
    /// The till holds no open lease of this card.
    #[error("this till holds no offline allowance (lease) for the card")]
    NoLease,
    /// The lease holds fewer points than asked.
    #[error(
        "the offline allowance (lease) of this card here has {remaining} points left, {asked} asked"
    )]
    Insufficient {
        /// What is left.
        remaining: Points,
        /// What the till asked for.
        asked: Points,
    },
    /// The lease expires before the hold would.
    #[error("the offline allowance (lease) of this card here is expiring")]
    Expiring,
}

/// An offline redemption of `asked` points from `lease`, held until `hold_expires_at`
/// (unix seconds, till clock): the whole ask is drawn from the lease, or nothing.
pub fn offline_draw(
    lease: Option<&TillLease>,
    asked: Points,
    hold_expires_at: i64,
) -> Result<Points, LeaseRefusal> {
    let lease = lease.ok_or(LeaseRefusal::NoLease)?;
    if hold_expires_at > lease.expires_at {
        return Err(LeaseRefusal::Expiring);
    }
    let remaining = lease.remaining();
    if asked > remaining {
        return Err(LeaseRefusal::Insufficient { remaining, asked });
    }
    Ok(asked)
}

/// How an online redemption at a till that may hold a lease of the card is split:
/// drawn from the lease first (local, no round trip, and those points are not
/// spendable at HQ), the rest reserved at HQ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnlineSplit {
    /// Points drawn from the till's lease.
    pub draw: Points,
    /// Points to reserve at HQ.
    pub reserve: Points,
}

/// Splits an online redemption of `asked` points; a lease that expires before the
/// hold is not drawn on.
pub fn online_split(
    lease: Option<&TillLease>,
    asked: Points,
    hold_expires_at: i64,
) -> Result<OnlineSplit, AmountError> {
    let draw = match lease {
        Some(l) if hold_expires_at <= l.expires_at => l.remaining().min(asked).max(Points::ZERO),
        _ => Points::ZERO,
    };
    Ok(OnlineSplit {
        draw,
        reserve: asked.checked_sub(draw)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn card(balance: i64, pending: i64, reserved: i64, leased: i64) -> CardFigures {
        CardFigures {
            balance: Points(balance),
            pending: Points(pending),
            reserved: Points(reserved),
            leased: Points(leased),
        }
    }

    #[test]
    fn spendable_is_what_no_promise_holds() {
        assert_eq!(card(100, 10, 20, 30).spendable(), Points(40));
        assert_eq!(card(100, 10, 60, 40).spendable(), Points(0));
        assert_eq!(card(-5, 0, 0, 0).spendable(), Points(0));
        assert_eq!(card(i64::MAX, -1, 0, 0).spendable(), Points(i64::MAX));
    }

    #[test]
    fn a_reservation_takes_only_spendable_points() {
        let c = card(100, 0, 0, 0);
        assert_eq!(
            decide_reservation(&c, false, Points::ZERO, Points(100)),
            Ok(Points(100))
        );
        let after = card(100, 0, 100, 0);
        assert_eq!(
            decide_reservation(&after, false, Points::ZERO, Points(1)),
            Err(ReserveRefusal::Insufficient {
                spendable: Points(0),
                asked: Points(1)
            })
        );
        assert_eq!(
            decide_reservation(&c, true, Points::ZERO, Points(1)),
            Err(ReserveRefusal::Blocked)
        );
        assert_eq!(
            decide_reservation(&c, false, Points::ZERO, Points(0)),
            Err(ReserveRefusal::NotPositive)
        );
    }

    #[test]
    fn a_retried_reservation_is_decided_with_its_own_points_given_back() {
        let c = card(100, 0, 100, 0);
        assert_eq!(
            decide_reservation(&c, false, Points(100), Points(100)),
            Ok(Points(0))
        );
        assert_eq!(
            decide_reservation(&c, false, Points(100), Points(60)),
            Ok(Points(-40))
        );
        assert!(decide_reservation(&c, false, Points(100), Points(101)).is_err());
    }

    #[test]
    fn a_lease_is_bounded_by_the_ask_the_till_room_the_card_and_the_share() {
        let ask = LeaseAsk {
            max_points: Points(1_000),
            terminal_room: Points(20_000),
        };
        let half = BasisPoints(5_000);
        assert_eq!(
            lease_size(&card(100, 0, 0, 0), false, ask, half),
            Points(50)
        );
        assert_eq!(
            lease_size(&card(100, 0, 0, 50), false, ask, half),
            Points(0)
        );
        assert_eq!(
            lease_size(&card(100, 0, 0, 20), false, ask, half),
            Points(30)
        );
        assert_eq!(
            lease_size(&card(100, 0, 90, 0), false, ask, half),
            Points(10)
        );
        assert_eq!(
            lease_size(&card(10_000, 0, 0, 0), false, ask, half),
            Points(1_000)
        );
        let tight = LeaseAsk {
            terminal_room: Points(7),
            ..ask
        };
        assert_eq!(
            lease_size(&card(100, 0, 0, 0), false, tight, half),
            Points(7)
        );
        assert_eq!(lease_size(&card(100, 0, 0, 0), true, ask, half), Points(0));
        assert_eq!(
            lease_size(&card(-100, 0, 0, 0), false, ask, half),
            Points(0)
        );
    }

    #[test]
    fn offline_a_till_draws_the_whole_ask_from_its_lease_or_nothing() {
        let lease = TillLease {
            points: Points(50),
            drawn_committed: Points(20),
            drawn_held: Points(10),
            expires_at: 1_000,
        };
        assert_eq!(offline_draw(Some(&lease), Points(20), 900), Ok(Points(20)));
        assert_eq!(
            offline_draw(Some(&lease), Points(21), 900),
            Err(LeaseRefusal::Insufficient {
                remaining: Points(20),
                asked: Points(21)
            })
        );
        assert_eq!(
            offline_draw(Some(&lease), Points(1), 1_001),
            Err(LeaseRefusal::Expiring)
        );
        assert_eq!(offline_draw(None, Points(1), 0), Err(LeaseRefusal::NoLease));
    }

    #[test]
    fn online_the_lease_is_drawn_first_and_the_rest_reserved() {
        let lease = TillLease {
            points: Points(50),
            drawn_committed: Points(0),
            drawn_held: Points(0),
            expires_at: 1_000,
        };
        let split = online_split(Some(&lease), Points(80), 900).unwrap();
        assert_eq!((split.draw, split.reserve), (Points(50), Points(30)));
        let split = online_split(Some(&lease), Points(80), 2_000).unwrap();
        assert_eq!((split.draw, split.reserve), (Points(0), Points(80)));
        let split = online_split(None, Points(5), 0).unwrap();
        assert_eq!((split.draw, split.reserve), (Points(0), Points(5)));
    }

    proptest! {
        /// Granting reservations and leases in any order never promises more than the
        /// card holds.
        #[test]
        fn grants_never_promise_more_than_the_card_holds(
            balance in -1_000i64..1_000_000,
            pending in 0i64..1_000,
            steps in proptest::collection::vec((any::<bool>(), 1i64..5_000, 0i64..50_000), 1..40),
        ) {
            let mut c = card(balance, pending, 0, 0);
            for (is_lease, ask, room) in steps {
                if is_lease {
                    let size = lease_size(
                        &c,
                        false,
                        LeaseAsk { max_points: Points(ask), terminal_room: Points(room) },
                        BasisPoints(5_000),
                    );
                    prop_assert!(size.get() >= 0);
                    c.leased = Points(c.leased.get() + size.get());
                } else if let Ok(delta) = decide_reservation(&c, false, Points::ZERO, Points(ask)) {
                    c.reserved = Points(c.reserved.get() + delta.get());
                }
                let promised = c.pending.get() + c.reserved.get() + c.leased.get();
                prop_assert!(c.reserved.get() + c.leased.get() == 0 || promised <= c.balance.get());
                prop_assert!(c.leased.get() * 2 <= c.committable().get() || c.leased.get() == 0);
            }
        }
    }
}
