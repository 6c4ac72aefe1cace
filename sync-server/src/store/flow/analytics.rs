//! What the marketing reports read, each from one snapshot: the members' purchase
//! histories for the CLV models, and the KPI aggregates of a period.

use super::{done, rules};
use crate::ledger::kpi::{KpiInputs, Period, PromotionRevenue, promotion_windows};
use crate::store::backend::{Access, Attempt, Op};
use crate::store::statements::{KpiScope, Statements, TierCards};
use crate::store::{Result, StoreError};
use protocol::{CardId, Money, StoreId};
use time::{Duration, OffsetDateTime};

/// See [`crate::store::Store::member_purchases`].
pub struct MemberPurchases;

impl Op for MemberPurchases {
    type Out = Vec<(CardId, OffsetDateTime, Money)>;
    const ACCESS: Access = Access::Snapshot;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Self::Out>> {
        done(c.member_purchases().await)
    }
}

/// See [`crate::store::Store::kpi_inputs`].
pub struct KpiRead {
    /// The report's period.
    pub period: Period,
    /// One store, or the chain.
    pub store: Option<StoreId>,
    /// The server's time (liability, points expiring).
    pub now: OffsetDateTime,
}

impl Op for KpiRead {
    type Out = KpiInputs;
    const ACCESS: Access = Access::Snapshot;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<KpiInputs>> {
        let store = self.store.as_ref();
        let scope = |(from, to): (i32, i32)| KpiScope { from, to, store };
        let period = scope(self.period.days());
        let tiers = c.cards_per_tier().await?;
        let sum = |of: fn(&TierCards) -> i64| {
            tiers
                .iter()
                .try_fold(0_i64, |total, t| total.checked_add(of(t)))
                .ok_or_else(|| StoreError::corrupt("the cards' points overflow 64 bits"))
        };
        let start = self.period.from.midnight().assume_utc();
        let end = self
            .period
            .to
            .next_day()
            .unwrap_or(self.period.to)
            .midnight()
            .assume_utc();
        let (first, last) = self.period.days();
        let current = rules::current(c).await?;
        let mut promotions = Vec::new();
        for p in &current.promotions {
            // Revenue is kept per category, not per SKU: a promotion of SKUs only
            // has no promoted categories to compare.
            if p.categories.is_empty() && !p.skus.is_empty() {
                continue;
            }
            let Some(windows) = promotion_windows(p.starts, p.ends, &self.period) else {
                continue;
            };
            promotions.push(PromotionRevenue {
                name: p.name.clone(),
                during: c
                    .category_revenue(scope(windows.during), &p.categories)
                    .await?,
                before: c
                    .category_revenue(scope(windows.before), &p.categories)
                    .await?,
                categories: p.categories.clone(),
                windows,
            });
        }
        let members = c
            .member_activity(&self.period.member_windows(), store)
            .await?;
        done(Ok(KpiInputs {
            days: c.kpi_days(period).await?,
            active_members: members.active,
            active_members_30d: members.active_30d,
            active_members_90d: members.active_90d,
            churned_members: members.churned,
            new_members: c.new_members(period).await?,
            cohorts: c.cohort_activity(period).await?,
            points_expired: c.points_expired(start, end).await?,
            points_outstanding: sum(|t| t.outstanding)?,
            points_pending: sum(|t| t.pending)?,
            points_expiring_30d: c
                .points_expiring(self.now, self.now + Duration::days(30))
                .await?,
            tier_order: current.tiers.iter().map(|t| t.name.clone()).collect(),
            tier_members: tiers.iter().map(|t| (t.tier.clone(), t.cards)).collect(),
            tier_moves: c.tier_moves(first, last).await?,
            promotions,
        }))
    }
}
