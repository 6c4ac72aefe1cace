//! Offline redemption, caps mode against escrow mode, replayed over a real purchase
//! history (CDNOW: 23,570 customers, 69,659 purchases over 18 months).
//!
//! The chain: [`STORES`] stores of [`TILLS_PER_STORE`] tills. Each CDNOW customer is one
//! card with a home store (most visits there, the rest at any store) and each purchase
//! is one sale at a till drawn per visit. Points follow the default program rules
//! (5 % back, a point pays 1.00, at most half a receipt). A customer redeems whenever
//! the card holds at least [`MIN_REDEEM`] points: as much as the rules allow.
//!
//! Once a week ([`OUTAGE_EVERY_DAYS`]) the WAN is down for the whole day at every till.
//! Each sale that day whose card holds [`MIN_REDEEM`] points is an *attempt*, decided
//! by the till's own offline code, the functions the agent runs:
//! - **caps**: the balance the store's feed gave the till before the outage plus this
//!   till's own sales since, within the stacked caps (`agent::policy`);
//! - **escrow**: only this till's allowance of the card. Allowances are granted at the
//!   start of each day, as the lease cycle does, by HQ's rule (`protocol::escrow::
//!   lease_size`) to the cards seen at the till in the last `lease_recent_days`, and
//!   expire at the day's end. Online, a till draws its own allowance first and may not
//!   spend what other tills hold, so the report also gives the share of online
//!   redemption the allowances withheld.
//!
//! When the outage ends every sale reaches HQ; what a card then owes (its balance
//! below zero) is the overdraft. No network or disk is involved: this measures the
//! decision rules against real customer behaviour, not speed.

use agent::policy::{self, OfflineUsage};
use config::agent::OfflineSection;
use protocol::escrow::{CardFigures, LeaseAsk, lease_size};
use protocol::evaluate::price_sale;
use protocol::receipt::Line;
use protocol::rules::ProgramRules;
use protocol::{Money, Points};
use std::collections::{HashMap, HashSet};
use sync_server::ledger::escrow::LEASE_SHARE;
use time::Date;

#[path = "../../analytics/tests/common/cdnow.rs"]
#[allow(dead_code)]
mod cdnow;

/// Stores in the chain.
pub const STORES: u64 = 10;
/// Tills per store.
pub const TILLS_PER_STORE: u64 = 4;
/// Share of a customer's visits at the home store, in percent.
const HOME_VISITS_PERCENT: u64 = 80;
/// A customer redeems once the card holds this many points.
pub const MIN_REDEEM: i64 = 10;
/// One outage day every this many days (from the first day all customers have joined).
pub const OUTAGE_EVERY_DAYS: i64 = 7;

/// The offline redemption mode replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Cached balance within the caps.
    Caps,
    /// Only this till's allowance.
    Escrow,
}

/// What one mode did over the whole history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Outage days replayed.
    pub outage_days: u64,
    /// Sales with points worth redeeming while offline.
    pub attempts: u64,
    /// Of those, the ones that redeemed something.
    pub served: u64,
    /// Points the attempts asked for (what the card held, within the rules' share).
    pub points_wanted: i64,
    /// Points redeemed offline.
    pub points_served: i64,
    /// Points cards owed HQ once each outage's sales were applied, summed over outages.
    pub points_overdrawn: i64,
    /// Cards overdrawn, summed over outages.
    pub cards_overdrawn: u64,
    /// Online: points customers wanted to redeem, and what the allowances of other
    /// tills withheld from them (escrow only).
    pub online_points_wanted: i64,
    /// See [`Self::online_points_wanted`].
    pub online_points_withheld: i64,
}

impl Outcome {
    /// Served attempts over attempts.
    pub fn served_share(&self) -> f64 {
        ratio(self.served as f64, self.attempts as f64)
    }

    /// Online points withheld over online points wanted.
    pub fn online_withheld_share(&self) -> f64 {
        ratio(
            self.online_points_withheld as f64,
            self.online_points_wanted as f64,
        )
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// One sale of the history.
#[derive(Debug, Clone, Copy)]
pub struct Visit {
    /// The card (CDNOW customer id).
    pub card: u32,
    /// The day of the purchase.
    pub day: Date,
    /// The till it happens at (`store * TILLS_PER_STORE + till`).
    pub till: u64,
    /// Receipt total in cents.
    pub amount_minor: i64,
}

/// Reads CDNOW's master file and places every purchase at a till.
pub fn load_cdnow() -> anyhow::Result<Vec<Visit>> {
    let purchases = cdnow::load("CDNOW_master.txt").map_err(anyhow::Error::msg)?;
    let mut visits: Vec<Visit> = purchases
        .iter()
        .enumerate()
        .map(|(i, p)| Visit {
            card: p.customer,
            day: p.day,
            till: till_of(p.customer, i as u64),
            amount_minor: p.amount_minor,
        })
        .collect();
    // Stable: a customer's purchases of one day keep their file order.
    visits.sort_by_key(|v| v.day);
    Ok(visits)
}

/// The till of a customer's `n`th purchase: the home store most of the time.
fn till_of(customer: u32, n: u64) -> u64 {
    let home = mix(u64::from(customer)) % STORES;
    let draw = mix(n ^ 0x9e37_79b9_7f4a_7c15);
    let store = if draw % 100 < HOME_VISITS_PERCENT {
        home
    } else {
        (draw / 100) % STORES
    };
    store * TILLS_PER_STORE + (draw / 10_000) % TILLS_PER_STORE
}

/// SplitMix64's finaliser: a fixed, well-spread hash (the replay must be the same on
/// every run, so no random source).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An allowance of one card at one till.
#[derive(Debug, Clone, Copy, Default)]
struct Allowance {
    points: i64,
    drawn: i64,
}

impl Allowance {
    fn left(self) -> i64 {
        self.points - self.drawn
    }
}

/// The chain's state in one mode.
struct Chain {
    mode: Mode,
    rules: ProgramRules,
    limits: OfflineSection,
    /// HQ's balance of every card (negative: the card owes points).
    balance: HashMap<u32, i64>,
    /// Last day each card was seen at each till.
    seen: HashMap<(u64, u32), Date>,
    /// Stores whose balance feed carries the card (it was sold there once).
    fed: HashSet<(u64, u32)>,
    /// Escrow: today's allowances, and each card's total still held in them.
    allowances: HashMap<(u64, u32), Allowance>,
    leased: HashMap<u32, i64>,
    outcome: Outcome,
}

/// What a till knows during one outage (caps mode), reset when it ends.
#[derive(Default)]
struct OutageView {
    /// HQ's balances as the feed last delivered them (the outage's start).
    snapshot: HashMap<u32, i64>,
    /// The (store, card) pairs whose store feed carries the card.
    fed: HashSet<(u64, u32)>,
    /// Per till and card: points this till's own sales added (accrual − redemption).
    own: HashMap<(u64, u32), i64>,
    /// Per till and card: points redeemed offline, and how many times.
    card_today: HashMap<(u64, u32), (i64, u32)>,
    /// Per till: points redeemed offline.
    terminal_today: HashMap<u64, i64>,
}

impl Chain {
    fn new(mode: Mode) -> Self {
        Self {
            mode,
            rules: ProgramRules::default(),
            limits: OfflineSection::default(),
            balance: HashMap::new(),
            seen: HashMap::new(),
            fed: HashSet::new(),
            allowances: HashMap::new(),
            leased: HashMap::new(),
            outcome: Outcome::default(),
        }
    }

    /// Prices a receipt redeeming `redeem` points; `None` when the rules refuse it.
    fn price(&self, v: &Visit, redeem: i64) -> Option<(i64, i64)> {
        let sale = price_sale(&self.rules, &line(v), Points(redeem), None, v.day).ok()?;
        Some((sale.redeemed_points.get(), sale.accrued_points.get()))
    }

    /// The most points the rules let this receipt redeem.
    fn rule_cap(&self, v: &Visit) -> i64 {
        let half = v.amount_minor * i64::from(self.rules.max_redeem_share_bp.get()) / 10_000;
        half / self.rules.point_value_minor.get()
    }

    /// The lease cycle at the start of `day`: yesterday's allowances expire and every
    /// till asks for the cards it saw within `lease_recent_days`, in till order.
    fn grant_allowances(&mut self, day: Date) {
        self.allowances.clear();
        self.leased.clear();
        let recent = i64::from(self.limits.lease_recent_days);
        let mut wanted: Vec<(u64, u32)> = self
            .seen
            .iter()
            .filter(|(_, seen)| (day - **seen).whole_days() <= recent)
            .map(|(&key, _)| key)
            .collect();
        wanted.sort_unstable();
        let mut room: HashMap<u64, i64> = HashMap::new();
        for (till, card) in wanted {
            let room = room
                .entry(till)
                .or_insert(self.limits.max_redeem_per_terminal_per_day.get());
            let figures = CardFigures {
                balance: Points(self.balance.get(&card).copied().unwrap_or(0)),
                leased: Points(self.leased.get(&card).copied().unwrap_or(0)),
                ..CardFigures::default()
            };
            let ask = LeaseAsk {
                max_points: self.limits.max_redeem_per_card_per_day,
                terminal_room: Points(*room),
            };
            let size = lease_size(&figures, false, ask, LEASE_SHARE).get();
            if size > 0 {
                *room -= size;
                *self.leased.entry(card).or_default() += size;
                self.allowances.insert(
                    (till, card),
                    Allowance {
                        points: size,
                        drawn: 0,
                    },
                );
            }
        }
    }

    /// Draws `points` from this till's allowance of the card.
    fn draw(&mut self, till: u64, card: u32, points: i64) {
        if points <= 0 {
            return;
        }
        if let Some(a) = self.allowances.get_mut(&(till, card)) {
            a.drawn += points;
            *self.leased.entry(card).or_default() -= points;
        }
    }

    fn own_allowance(&self, till: u64, card: u32) -> i64 {
        self.allowances
            .get(&(till, card))
            .map_or(0, |a| a.left().max(0))
    }

    /// One sale while HQ is reachable: HQ authorises what the card may spend here.
    fn sell_online(&mut self, v: &Visit) {
        let balance = self.balance.get(&v.card).copied().unwrap_or(0);
        let mut redeem = 0;
        if balance >= MIN_REDEEM {
            let wanted = balance.min(self.rule_cap(v));
            redeem = match self.mode {
                Mode::Caps => wanted,
                Mode::Escrow => {
                    let own = self.own_allowance(v.till, v.card);
                    let elsewhere = self.leased.get(&v.card).copied().unwrap_or(0) - own;
                    wanted.min(balance - elsewhere).max(0)
                }
            };
            self.outcome.online_points_wanted += wanted;
            self.outcome.online_points_withheld += wanted - redeem;
        }
        let Some((redeemed, accrued)) = self.price(v, redeem) else {
            return;
        };
        if self.mode == Mode::Escrow {
            let own = self.own_allowance(v.till, v.card);
            self.draw(v.till, v.card, redeemed.min(own));
        }
        *self.balance.entry(v.card).or_default() += accrued - redeemed;
        self.remember(v);
    }

    fn remember(&mut self, v: &Visit) {
        self.seen.insert((v.till, v.card), v.day);
        self.fed.insert((v.till / TILLS_PER_STORE, v.card));
    }

    /// One sale while the till cannot reach HQ, decided by the mode's offline rules.
    fn sell_offline(&mut self, v: &Visit, view: &mut OutageView) {
        let truth = self.balance.get(&v.card).copied().unwrap_or(0);
        let cap = self.rule_cap(v);
        let mut redeem = 0;
        if truth >= MIN_REDEEM {
            self.outcome.attempts += 1;
            self.outcome.points_wanted += truth.min(cap);
            redeem = match self.mode {
                Mode::Escrow => self.own_allowance(v.till, v.card).min(cap),
                Mode::Caps => self.caps_redeem(v, cap, view),
            };
            if redeem > 0 {
                self.outcome.served += 1;
            }
        }
        let Some((redeemed, accrued)) = self.price(v, redeem) else {
            return;
        };
        self.outcome.points_served += redeemed;
        match self.mode {
            Mode::Escrow => self.draw(v.till, v.card, redeemed),
            Mode::Caps => {
                *view.own.entry((v.till, v.card)).or_default() += accrued - redeemed;
                if redeemed > 0 {
                    let used = view.card_today.entry((v.till, v.card)).or_default();
                    used.0 += redeemed;
                    used.1 += 1;
                    *view.terminal_today.entry(v.till).or_default() += redeemed;
                }
            }
        }
        // HQ applies the sale when the outage ends; the order within it does not
        // change the sum.
        *self.balance.entry(v.card).or_default() += accrued - redeemed;
        self.remember(v);
    }

    /// Caps mode: what the till's cached balance and the caps let this receipt redeem.
    fn caps_redeem(&self, v: &Visit, cap: i64, view: &OutageView) -> i64 {
        let key = (v.till, v.card);
        // A card the store's feed does not carry is unknown to the till: only its own
        // sales of it count.
        let cached = if view.fed.contains(&(v.till / TILLS_PER_STORE, v.card)) {
            view.snapshot.get(&v.card).copied().unwrap_or(0)
        } else {
            0
        };
        let known = cached + view.own.get(&key).copied().unwrap_or(0);
        let (card_today, consecutive) = view.card_today.get(&key).copied().unwrap_or((0, 0));
        let usage = OfflineUsage {
            card_today: Points(card_today),
            terminal_today: Points(view.terminal_today.get(&v.till).copied().unwrap_or(0)),
            consecutive_for_card: consecutive,
            // The outage started this morning: well within max_offline_hours.
            secs_since_contact: Some(3_600),
        };
        let Ok(headroom) = policy::offline_headroom(&usage, &self.limits) else {
            return 0;
        };
        let ask = known.min(cap).min(headroom.get());
        if ask >= 1 && policy::check_offline(Points(ask), &usage, &self.limits).is_ok() {
            ask
        } else {
            0
        }
    }

    /// One outage day: every till offline from the day's first sale to its last.
    fn outage(&mut self, visits: &[Visit]) {
        let mut view = OutageView::default();
        for v in visits {
            let store = v.till / TILLS_PER_STORE;
            // A store's feed carries a card once it was sold there; it delivered HQ's
            // balance as of the outage's start.
            if self.fed.contains(&(store, v.card)) {
                view.fed.insert((store, v.card));
                view.snapshot
                    .insert(v.card, self.balance.get(&v.card).copied().unwrap_or(0));
            }
        }
        for v in visits {
            self.sell_offline(v, &mut view);
        }
        self.outcome.outage_days += 1;
        let cards: HashSet<u32> = visits.iter().map(|v| v.card).collect();
        for card in cards {
            let b = self.balance.get(&card).copied().unwrap_or(0);
            if b < 0 {
                self.outcome.points_overdrawn += -b;
                self.outcome.cards_overdrawn += 1;
                // HQ keeps the debt and later accrual pays it back; counted once here.
                self.balance.insert(card, 0);
            }
        }
    }
}

fn line(v: &Visit) -> [Line; 1] {
    [Line {
        sku: "cd".into(),
        category: "music".into(),
        amount_minor: Money(v.amount_minor),
        qty: 1,
    }]
}

/// Replays `visits` (sorted by day) in `mode`, with an outage every
/// [`OUTAGE_EVERY_DAYS`] days from `first_outage`.
pub fn replay(visits: &[Visit], mode: Mode, first_outage: Date) -> Outcome {
    let mut chain = Chain::new(mode);
    for day_visits in visits.chunk_by(|a, b| a.day == b.day) {
        let day = day_visits[0].day;
        if mode == Mode::Escrow {
            chain.grant_allowances(day);
        }
        let since = (day - first_outage).whole_days();
        if since >= 0 && since % OUTAGE_EVERY_DAYS == 0 {
            chain.outage(day_visits);
        } else {
            for v in day_visits {
                chain.sell_online(v);
            }
        }
    }
    chain.outcome
}

/// Both modes over CDNOW, outages weekly from the first day after every customer joined.
pub fn measure() -> anyhow::Result<(Outcome, Outcome)> {
    let visits = load_cdnow()?;
    let first = time::macros::date!(1997 - 04 - 01);
    Ok((
        replay(&visits, Mode::Caps, first),
        replay(&visits, Mode::Escrow, first),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::date;

    fn visit(card: u32, day: Date, till: u64, amount_minor: i64) -> Visit {
        Visit {
            card,
            day,
            till,
            amount_minor,
        }
    }

    /// A card that earns 100 points, then on an outage day is spent at two stores.
    fn double_spend_history() -> Vec<Visit> {
        let outage = date!(2026 - 01 - 08);
        vec![
            // 2,000.00 earns 100 points at store 0; store 1 has seen the card too.
            visit(1, date!(2026 - 01 - 01), 0, 200_000),
            visit(1, date!(2026 - 01 - 02), TILLS_PER_STORE, 100),
            // Outage: 150.00 receipts at both stores, each may take 75 points.
            visit(1, outage, 0, 15_000),
            visit(1, outage, TILLS_PER_STORE, 15_000),
        ]
    }

    #[test]
    fn caps_mode_overdraws_a_card_spent_at_two_stores_offline() {
        let out = replay(&double_spend_history(), Mode::Caps, date!(2026 - 01 - 08));
        assert_eq!((out.attempts, out.served), (2, 2));
        assert!(out.points_overdrawn > 0, "{out:?}");
        assert_eq!(out.cards_overdrawn, 1);
    }

    #[test]
    fn escrow_mode_serves_only_allowances_and_never_overdraws() {
        let out = replay(&double_spend_history(), Mode::Escrow, date!(2026 - 01 - 08));
        assert_eq!(out.attempts, 2);
        assert_eq!(out.points_overdrawn, 0, "{out:?}");
        // Half of the 100 points are in allowances: 50 at the two tills together.
        assert!(out.points_served > 0 && out.points_served <= 50, "{out:?}");
    }

    #[test]
    fn the_same_history_replays_the_same() {
        let h = double_spend_history();
        let first = date!(2026 - 01 - 08);
        assert_eq!(
            replay(&h, Mode::Escrow, first),
            replay(&h, Mode::Escrow, first)
        );
    }

    /// Over the real history: escrow never overdraws; caps serves at least as many
    /// attempts (it is the more permissive mode) and both see the same attempts.
    #[test]
    fn over_cdnow_escrow_never_overdraws() {
        let (caps, escrow) = measure().unwrap();
        println!("caps {caps:?}\nescrow {escrow:?}");
        assert!(caps.outage_days > 50, "{caps:?}");
        assert!(caps.attempts > 0 && escrow.attempts > 0);
        assert_eq!(escrow.points_overdrawn, 0, "{escrow:?}");
        assert!(escrow.points_served > 0, "{escrow:?}");
    }

    #[test]
    fn visits_mostly_stay_at_the_home_store() {
        let home = |c: u32| mix(u64::from(c)) % STORES;
        let at_home = (0..10_000u64)
            .filter(|&n| till_of(7, n) / TILLS_PER_STORE == home(7))
            .count();
        assert!((7_500..9_000).contains(&at_home), "{at_home}");
    }
}
