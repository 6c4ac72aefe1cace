//! The periodic job: pending points mature, old points expire (oldest first, as lots
//! record), and tiers follow the rolling spend. Given the same `now` twice, the second
//! run finds nothing to do.

use super::{CardRecord, LedgerKind, LedgerRow, Lot, Spend, tier_name};
use protocol::rules::ProgramRules;
use protocol::{CardId, Points};
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;

/// What the job needs, loaded by the backend inside its write transaction.
#[derive(Debug)]
pub struct JobInput<'a> {
    /// The job's time.
    pub now: OffsetDateTime,
    /// Lots due: not matured with `matures_at <= now`, or with points left and
    /// `expires_at <= now`.
    pub due_lots: Vec<Lot>,
    /// Every card of a due lot, and every card whose spend or tier may have changed:
    /// cards whose `spend_drops_at` passed, and after a rules change every card that
    /// has a spend or a tier.
    pub cards: HashMap<CardId, CardRecord>,
    /// Spend in the window of those cards (a card without an entry in it: none).
    pub spend: HashMap<CardId, Spend>,
    /// Current rules (for tiers).
    pub rules: &'a ProgramRules,
}

/// What the job writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobPlan {
    /// Cards whose state changed (each gets a new change position).
    pub cards: Vec<CardRecord>,
    /// Lots that changed, in their final state.
    pub changed_lots: Vec<Lot>,
    /// Ledger rows to append.
    pub ledger: Vec<LedgerRow>,
    /// What the run did, in counts.
    pub report: JobReport,
}

/// What a job run did, for the log and `jobs run`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobReport {
    /// Lots that matured.
    pub matured_lots: u64,
    /// Points that became spendable.
    pub matured_points: Points,
    /// Lots that expired.
    pub expired_lots: u64,
    /// Points that expired.
    pub expired_points: Points,
    /// Cards whose tier or rolling spend changed.
    pub tier_updates: u64,
}

impl std::fmt::Display for JobReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "matured {} points in {} lots, expired {} points in {} lots, updated {} tiers",
            self.matured_points,
            self.matured_lots,
            self.expired_points,
            self.expired_lots,
            self.tier_updates
        )
    }
}

impl JobReport {
    /// Adds what another part of the same run did. The report only counts, so its
    /// sums saturate rather than fail a run that did its work.
    pub fn add(&mut self, part: JobReport) {
        self.matured_lots = self.matured_lots.saturating_add(part.matured_lots);
        self.matured_points =
            Points((self.matured_points.get()).saturating_add(part.matured_points.get()));
        self.expired_lots = self.expired_lots.saturating_add(part.expired_lots);
        self.expired_points =
            Points((self.expired_points.get()).saturating_add(part.expired_points.get()));
        self.tier_updates = self.tier_updates.saturating_add(part.tier_updates);
    }
}

/// Plans one run of the job.
pub fn plan_jobs(input: JobInput<'_>) -> JobPlan {
    let JobInput {
        now,
        mut due_lots,
        cards,
        spend,
        rules,
    } = input;
    // BTreeMap: a deterministic order of cards, so two runs write the same rows.
    let mut cards: BTreeMap<CardId, (CardRecord, bool)> =
        cards.into_iter().map(|(k, v)| (k, (v, false))).collect();
    let mut plan = JobPlan::default();
    due_lots.sort_by(|a, b| (&a.card, a.key).cmp(&(&b.card, b.key)));
    for mut lot in due_lots {
        let Some((card, changed)) = cards.get_mut(&lot.card) else {
            continue;
        };
        let mut lot_changed = false;
        let expiring = lot.remaining.get() > 0 && lot.expires_at.is_some_and(|e| e <= now);
        let maturing = lot.matures_at.is_some_and(|m| m <= now) || expiring;
        if !lot.matured && maturing {
            lot.matured = true;
            lot_changed = true;
            if lot.remaining.get() > 0 {
                // A lot's remaining points are part of its card's pending and
                // balance, so these differences stay in range; saturating only
                // guards a hand-edited row.
                card.pending = Points(card.pending.get().saturating_sub(lot.remaining.get()));
                plan.ledger.push(LedgerRow {
                    card: lot.card.clone(),
                    kind: LedgerKind::Maturation,
                    delta_balance: Points::ZERO,
                    delta_pending: Points(-lot.remaining.get()),
                    at: now,
                    entry_id: None,
                });
                plan.report.add(JobReport {
                    matured_lots: 1,
                    matured_points: lot.remaining,
                    ..JobReport::default()
                });
                *changed = true;
            }
        }
        if expiring {
            let gone = lot.remaining;
            lot.remaining = Points::ZERO;
            lot_changed = true;
            card.balance = Points(card.balance.get().saturating_sub(gone.get()));
            plan.ledger.push(LedgerRow {
                card: lot.card.clone(),
                kind: LedgerKind::Expiry,
                delta_balance: Points(-gone.get()),
                delta_pending: Points::ZERO,
                at: now,
                entry_id: None,
            });
            plan.report.add(JobReport {
                expired_lots: 1,
                expired_points: gone,
                ..JobReport::default()
            });
            *changed = true;
        }
        if lot_changed {
            plan.changed_lots.push(lot);
        }
    }
    for (id, (card, changed)) in cards {
        let spend = spend.get(&id).copied().unwrap_or_default();
        let tier = tier_name(rules, spend.total);
        let drops_at = spend.drops_at();
        let mut card = card;
        if card.spend_12m != spend.total || card.tier != tier || card.spend_drops_at != drops_at {
            card.spend_12m = spend.total;
            card.spend_drops_at = drops_at;
            card.tier = tier;
            plan.report.add(JobReport {
                tier_updates: 1,
                ..JobReport::default()
            });
            plan.cards.push(card);
        } else if changed {
            plan.cards.push(card);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::apply::tests::{CARD, Replay, T0, pending_sale, replay_spend, rules, sale};
    use crate::ledger::{CardRecord, LotKey};
    use protocol::Money;
    use time::Duration;

    fn run(r: &mut Replay, now: OffsetDateTime) -> JobReport {
        let due: Vec<Lot> = r
            .lots
            .iter()
            .filter(|l| {
                (!l.matured && l.matures_at.is_some_and(|m| m <= now))
                    || (l.remaining.get() > 0 && l.expires_at.is_some_and(|e| e <= now))
            })
            .cloned()
            .collect();
        let window = crate::ledger::spend_window_start(now);
        // Spend of the test entries: the replay keeps no entries, so recompute from
        // the card (every test sale here is inside the window unless `now` moved on).
        let spend: HashMap<CardId, Spend> = r
            .cards
            .iter()
            .filter(|_| T0 > window)
            .map(|(c, s)| (c.clone(), replay_spend(s)))
            .collect();
        let plan = plan_jobs(JobInput {
            now,
            due_lots: due,
            cards: r.cards.clone(),
            spend,
            rules: r.rules.current(),
        });
        let cards: Vec<_> = plan
            .cards
            .iter()
            .map(|s: &CardRecord| crate::ledger::apply::CardPlan {
                state: s.clone(),
                is_new: false,
            })
            .collect();
        r.absorb(&cards, &[], &plan.changed_lots, &plan.ledger);
        plan.report
    }

    #[test]
    fn pending_points_mature_when_the_job_runs_after_their_date() {
        let mut r = Replay::new(rules(0));
        let matures = T0 + Duration::days(5);
        r.push(&[pending_sale(1, CARD, 20, matures)]);
        assert_eq!(run(&mut r, matures - Duration::seconds(1)).matured_lots, 0);
        assert_eq!(r.card(CARD).pending, Points(20));
        let report = run(&mut r, matures);
        assert_eq!(report.matured_points, Points(20));
        assert_eq!(r.card(CARD).pending, Points(0));
        assert_eq!(r.card(CARD).available(), Points(20));
        assert_eq!(run(&mut r, matures), JobReport::default());
        r.assert_consistent();
    }

    #[test]
    fn the_oldest_points_expire_first_and_a_second_run_changes_nothing() {
        let mut r = Replay::new(rules(0));
        r.push(&[sale(1, CARD, 0, 10)]);
        r.push(&[sale(100, CARD, 0, 7)]);
        r.push(&[sale(101, CARD, 4, 0)]);
        // Lot 1 (10, now 6) expires 30 days after its sale; lot 2 a bit later.
        let now = sale(1, CARD, 0, 0).at + Duration::days(30);
        let report = run(&mut r, now);
        assert_eq!(report.expired_points, Points(6));
        assert_eq!(r.card(CARD).balance, Points(7));
        assert_eq!(r.lots[0].remaining, Points(0));
        assert_eq!(run(&mut r, now), JobReport::default());
        r.assert_consistent();
    }

    #[test]
    fn pending_points_that_expire_mature_first() {
        let mut r = Replay::new(rules(0));
        r.push(&[pending_sale(1, CARD, 20, T0 + Duration::days(100))]);
        let report = run(&mut r, T0 + Duration::days(40));
        assert_eq!(report.matured_points, Points(20));
        assert_eq!(report.expired_points, Points(20));
        assert_eq!(r.card(CARD).balance, Points(0));
        assert_eq!(r.card(CARD).pending, Points(0));
        assert!(matches!(r.lots[0].key, LotKey::Stored(_)));
        r.assert_consistent();
    }

    #[test]
    fn tiers_drop_when_the_spend_leaves_the_window() {
        let mut r = Replay::new(rules(0));
        r.push(&[sale(1, CARD, 0, 0), sale(2, CARD, 0, 0)]);
        assert_eq!(r.card(CARD).tier.as_deref(), Some("silver"));
        let report = run(&mut r, T0 + Duration::days(400));
        assert_eq!(report.tier_updates, 1);
        assert_eq!(r.card(CARD).tier, None);
        assert_eq!(r.card(CARD).spend_12m, Money(0));
        assert_eq!(r.card(CARD).spend_drops_at, None);
        assert_eq!(run(&mut r, T0 + Duration::days(400)).tier_updates, 0);
    }
}
