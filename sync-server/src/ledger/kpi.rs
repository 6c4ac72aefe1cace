//! The program's KPIs as pure functions: what each pushed entry adds to the daily
//! aggregates (kept current in the push's own transaction), and the report's figures
//! from those aggregates. The README's "KPI definitions" section states every figure;
//! this module is where each is computed, once.
//!
//! Rules:
//! * a **receipt** is a sale entry with at least one line (an imported opening
//!   balance has none and is not a receipt); a **member** receipt has a card;
//! * **revenue** is money paid (`paid_minor`), net of refunds of returns dated in the
//!   period; the part paid with points is the program's **cost** (`discount_minor`);
//! * **items** are line quantities, net of returned quantities;
//! * points **accrued** are the sales' accruals net of the returns' reversals, points
//!   **redeemed** the sales' redemptions net of the points returns restored;
//! * a day is the entry's UTC calendar day; a period is `from..=to` in days;
//! * a **category's revenue** is what its sale lines were paid (`paid_minor` of the
//!   line), returns not deducted (a return names the line, not its category): what
//!   the promotions' difference-in-differences compares.

use protocol::journal::{EntryBody, JournalEntry};
use protocol::{CardId, StoreId};
use std::collections::{BTreeMap, HashMap};
use time::{Date, UtcOffset};

/// The aggregate key: one row per day, store and member/non-member.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DayKey {
    /// The UTC day (Julian day number, as stored).
    pub day: i32,
    /// The store whose terminal recorded the entries.
    pub store: StoreId,
    /// True for entries with a card.
    pub member: bool,
}

/// The key of a category's daily revenue: the day's key and the lines' category.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CategoryKey {
    /// Day, store and member flag, as for the daily totals.
    pub day: DayKey,
    /// The lines' category.
    pub category: String,
}

/// What a category's sale lines add up to on one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CategoryTotals {
    /// Money paid for the lines.
    pub revenue_minor: i64,
    /// Units on them.
    pub items: i64,
}

/// Sums of one aggregate row (or of many: they add up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailyTotals {
    /// Receipts (sales with lines).
    pub receipts: i64,
    /// Money paid, net of refunds.
    pub revenue_minor: i64,
    /// Units sold, net of units returned.
    pub items: i64,
    /// Paid with points (the program's cost).
    pub discount_minor: i64,
    /// Points accrued, net of reversals.
    pub points_accrued: i64,
    /// Points redeemed, net of restorations.
    pub points_redeemed: i64,
}

impl DailyTotals {
    /// Adds `other`, saturating: each figure is bounded per entry, and a report
    /// figure pinned at `i64::MAX` is visibly absurd rather than silently wrapped.
    pub fn add(&mut self, other: &DailyTotals) {
        self.receipts = self.receipts.saturating_add(other.receipts);
        self.revenue_minor = self.revenue_minor.saturating_add(other.revenue_minor);
        self.items = self.items.saturating_add(other.items);
        self.discount_minor = self.discount_minor.saturating_add(other.discount_minor);
        self.points_accrued = self.points_accrued.saturating_add(other.points_accrued);
        self.points_redeemed = self.points_redeemed.saturating_add(other.points_redeemed);
    }
}

/// What a batch of new entries adds to the aggregates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KpiDelta {
    /// Additions to the daily rows.
    pub daily: Vec<(DayKey, DailyTotals)>,
    /// `(card, day, store)` of each member receipt, once each.
    pub member_days: Vec<(CardId, i32, StoreId)>,
    /// Each member's earliest receipt day in the batch (the store keeps the minimum).
    pub first_days: Vec<(CardId, i32)>,
    /// Additions to the per-category revenue rows, in key order.
    pub categories: Vec<(CategoryKey, CategoryTotals)>,
}

impl KpiDelta {
    /// True when the batch changes no aggregate.
    pub fn is_empty(&self) -> bool {
        self.daily.is_empty() && self.member_days.is_empty() && self.categories.is_empty()
    }
}

/// The UTC day of a time, as stored.
pub fn day_of(at: time::OffsetDateTime) -> i32 {
    at.to_offset(UtcOffset::UTC).date().to_julian_day()
}

/// The stored day of a date.
pub fn day_number(date: Date) -> i32 {
    date.to_julian_day()
}

/// What `entries` (new entries of one store's terminal) add to the aggregates.
pub fn delta<'a>(entries: impl IntoIterator<Item = &'a JournalEntry>, store: &StoreId) -> KpiDelta {
    let mut daily: BTreeMap<DayKey, DailyTotals> = BTreeMap::new();
    let mut member_days: BTreeMap<(CardId, i32), ()> = BTreeMap::new();
    let mut first_days: HashMap<CardId, i32> = HashMap::new();
    let mut categories: BTreeMap<CategoryKey, CategoryTotals> = BTreeMap::new();
    for entry in entries {
        let day = day_of(entry.at);
        let (card, totals) = match &entry.body {
            EntryBody::Sale(s) if !s.sale.lines.is_empty() => {
                let items = s
                    .sale
                    .lines
                    .iter()
                    .fold(0i64, |n, l| n.saturating_add(i64::from(l.qty)));
                let totals = DailyTotals {
                    receipts: 1,
                    revenue_minor: s.sale.paid_minor.get(),
                    items,
                    discount_minor: s.sale.discount_minor.get(),
                    points_accrued: if s.card.is_some() {
                        s.sale.accrued_points.get()
                    } else {
                        0
                    },
                    points_redeemed: s.sale.redeemed_points.get(),
                };
                for line in &s.sale.lines {
                    let key = CategoryKey {
                        day: DayKey {
                            day,
                            store: store.clone(),
                            member: s.card.is_some(),
                        },
                        category: line.category.clone(),
                    };
                    let t = categories.entry(key).or_default();
                    t.revenue_minor = t.revenue_minor.saturating_add(line.paid_minor.get());
                    t.items = t.items.saturating_add(i64::from(line.qty));
                }
                if let Some(card) = &s.card {
                    member_days.insert((card.clone(), day), ());
                    first_days
                        .entry(card.clone())
                        .and_modify(|d| *d = (*d).min(day))
                        .or_insert(day);
                }
                (s.card.as_ref(), totals)
            }
            EntryBody::Return(r) => {
                let items = r
                    .returned
                    .lines
                    .iter()
                    .fold(0i64, |n, l| n.saturating_add(i64::from(l.qty)));
                let totals = DailyTotals {
                    receipts: 0,
                    revenue_minor: -r.returned.refund_minor.get(),
                    items: -items,
                    discount_minor: 0,
                    points_accrued: -r.returned.reversed_accrual_points.get(),
                    points_redeemed: -r.returned.restored_points.get(),
                };
                (r.card.as_ref(), totals)
            }
            _ => continue,
        };
        let key = DayKey {
            day,
            store: store.clone(),
            member: card.is_some(),
        };
        daily.entry(key).or_default().add(&totals);
    }
    KpiDelta {
        daily: daily.into_iter().collect(),
        member_days: member_days
            .into_keys()
            .map(|(card, day)| (card, day, store.clone()))
            .collect(),
        first_days: first_days.into_iter().collect(),
        categories: categories.into_iter().collect(),
    }
}

/// A KPI report's period: days `from..=to`, and the periods it is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First day.
    pub from: Date,
    /// Last day.
    pub to: Date,
}

/// Longest period a report covers (ten years): bounds every day computation.
pub const MAX_PERIOD_DAYS: i32 = 3_660;

impl Period {
    /// A period, refused when `to` is before `from` or it is longer than
    /// [`MAX_PERIOD_DAYS`].
    pub fn new(from: Date, to: Date) -> Result<Self, String> {
        let days = day_number(to) - day_number(from) + 1;
        if days < 1 {
            return Err(format!("--to {to} is before --from {from}"));
        }
        if days > MAX_PERIOD_DAYS {
            return Err(format!("a period is at most {MAX_PERIOD_DAYS} days"));
        }
        Ok(Self { from, to })
    }

    /// Its first and last day numbers.
    pub fn days(&self) -> (i32, i32) {
        (day_number(self.from), day_number(self.to))
    }

    /// The period of the same length just before it (for churn).
    pub fn previous(&self) -> (i32, i32) {
        let (from, to) = self.days();
        (from - (to - from + 1), from - 1)
    }

    /// The `n` days ending with its last day (active members).
    pub fn last_days(&self, n: i32) -> (i32, i32) {
        let (_, to) = self.days();
        (to - n + 1, to)
    }

    /// The windows its member counts are taken over.
    pub fn member_windows(&self) -> MemberWindows {
        MemberWindows {
            period: self.days(),
            last_30: self.last_days(30),
            last_90: self.last_days(90),
            previous: self.previous(),
        }
    }
}

/// The day ranges `(first, last)` a report counts members over: read in one pass
/// over the members' days, since each count reads the same rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberWindows {
    /// The period (active members).
    pub period: (i32, i32),
    /// The 30 days ending with it.
    pub last_30: (i32, i32),
    /// The 90 days ending with it.
    pub last_90: (i32, i32),
    /// The period of the same length before it (churn).
    pub previous: (i32, i32),
}

impl MemberWindows {
    /// The first and last day of the period, the 30 days, the 90 days and the
    /// previous period, then of [`Self::span`]: the order the statements bind them in.
    pub fn bounds(&self) -> [i32; 10] {
        let (first, last) = self.span();
        [
            self.period.0,
            self.period.1,
            self.last_30.0,
            self.last_30.1,
            self.last_90.0,
            self.last_90.1,
            self.previous.0,
            self.previous.1,
            first,
            last,
        ]
    }

    /// The days from the first window's first to the last one's last: the rows
    /// any count reads.
    pub fn span(&self) -> (i32, i32) {
        let all = [self.period, self.last_30, self.last_90, self.previous];
        (
            all.iter().map(|w| w.0).min().unwrap_or(self.period.0),
            all.iter().map(|w| w.1).max().unwrap_or(self.period.1),
        )
    }
}

/// Members counted over [`MemberWindows`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberActivity {
    /// With a receipt in the period.
    pub active: i64,
    /// With a receipt in the 30 days ending with it.
    pub active_30d: i64,
    /// With a receipt in the 90 days ending with it.
    pub active_90d: i64,
    /// With a receipt in the previous period and none in this one.
    pub churned: i64,
}

/// What a KPI report reads from the store, from one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KpiInputs {
    /// Aggregate rows of the period summed per day and member flag.
    pub days: Vec<(i32, bool, DailyTotals)>,
    /// Members with a receipt in the period.
    pub active_members: i64,
    /// Members with a receipt in the 30 days ending with the period.
    pub active_members_30d: i64,
    /// Members with a receipt in the 90 days ending with the period.
    pub active_members_90d: i64,
    /// Members with a receipt in the previous period and none in this one.
    pub churned_members: i64,
    /// Members whose first receipt falls in the period.
    pub new_members: i64,
    /// Enrolment cohorts of the period: (cohort month, month, members active), see
    /// [`crate::store::statements::AnalyticsRows::cohort_activity`].
    pub cohorts: Vec<(i32, i32, i64)>,
    /// Points the ledger job expired during the period.
    pub points_expired: i64,
    /// Positive balances of every card now.
    pub points_outstanding: i64,
    /// Pending (not yet spendable) points now.
    pub points_pending: i64,
    /// Points that expire in the next 30 days.
    pub points_expiring_30d: i64,
    /// The current rules' tier names, lowest first (what "up" and "down" mean).
    pub tier_order: Vec<String>,
    /// Cards per tier now (`None`: no tier).
    pub tier_members: Vec<(Option<String>, i64)>,
    /// Tier changes dated in the period, per `(from, to)`.
    pub tier_moves: Vec<(Option<String>, Option<String>, i64)>,
    /// The promoted revenue of each promotion overlapping the period.
    pub promotions: Vec<PromotionRevenue>,
}

/// A promotion's two windows: the days it ran in (`during`: from its first day to its
/// last, or to the period's last day if earlier) and the same number of days just
/// before it (`before`), as `(first, last)` day numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromotionWindows {
    /// While it ran.
    pub during: (i32, i32),
    /// The same length just before.
    pub before: (i32, i32),
}

/// The windows of a promotion from `starts` to `ends`, or `None` when it does not
/// overlap `period`.
pub fn promotion_windows(starts: Date, ends: Date, period: &Period) -> Option<PromotionWindows> {
    let (from, to) = period.days();
    let (first, last) = (day_number(starts), day_number(ends).min(to));
    if first > to || day_number(ends) < from || last < first {
        return None;
    }
    let len = last - first + 1;
    Some(PromotionWindows {
        during: (first, last),
        before: (first - len, first - 1),
    })
}

/// What a promotion's difference-in-differences reads: revenue of its promoted
/// categories' sale lines, members and non-members, in its two windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionRevenue {
    /// Its name in the rules.
    pub name: String,
    /// Its categories (empty: every category, a promotion on every line).
    pub categories: Vec<String>,
    /// Its windows.
    pub windows: PromotionWindows,
    /// `(members, non-members)` revenue while it ran.
    pub during: (i64, i64),
    /// `(members, non-members)` revenue in the days before.
    pub before: (i64, i64),
}

/// `numerator / denominator` rounded down, 0 when there is nothing to divide by.
pub fn per(numerator: i64, denominator: i64) -> i64 {
    if denominator > 0 {
        numerator.div_euclid(denominator)
    } else {
        0
    }
}

/// `part / whole` as a fraction rounded to 4 decimals, 0 when `whole` is not positive.
pub fn share(part: i64, whole: i64) -> f64 {
    if whole > 0 {
        // Rounded so the same figure prints the same in JSON, CSV and on the page.
        #[allow(clippy::cast_precision_loss)] // Shares, not amounts.
        let exact = part as f64 / whole as f64;
        (exact * 10_000.0).round() / 10_000.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::evaluate::{PricedLine, PricedReturn, PricedSale, ReturnedLine};
    use protocol::journal::{ReturnEntry, SaleEntry};
    use protocol::{Money, Points, ReceiptId, ReturnId, Seq};
    use time::macros::datetime;
    use uuid::Uuid;

    fn store() -> StoreId {
        StoreId::parse("store-1").expect("store")
    }

    fn card(n: u32) -> CardId {
        CardId::parse(&format!("40000{n:04}")).expect("card")
    }

    fn line(amount: i64, qty: u32, discount: i64) -> PricedLine {
        PricedLine {
            sku: "s".into(),
            category: "c".into(),
            amount_minor: Money(amount),
            qty,
            discount_minor: Money(discount),
            paid_minor: Money(amount - discount),
            redeemed_points: Points(discount / 100),
            accrued_points: Points((amount - discount) / 100),
        }
    }

    fn sale(
        at: time::OffsetDateTime,
        card: Option<CardId>,
        lines: Vec<PricedLine>,
    ) -> JournalEntry {
        let sum = |f: fn(&PricedLine) -> i64| lines.iter().map(f).sum::<i64>();
        let sale = PricedSale {
            total_minor: Money(sum(|l| l.amount_minor.get())),
            discount_minor: Money(sum(|l| l.discount_minor.get())),
            paid_minor: Money(sum(|l| l.paid_minor.get())),
            redeemed_points: Points(sum(|l| l.redeemed_points.get())),
            accrued_points: Points(sum(|l| l.accrued_points.get())),
            lines,
        };
        JournalEntry {
            id: Uuid::new_v4(),
            seq: Seq(1),
            at,
            rules_version: 1,
            body: EntryBody::Sale(SaleEntry {
                receipt_id: ReceiptId::parse("R-1").expect("receipt"),
                card,
                sale,
                matures_at: None,
                offline: false,
                lease: None,
            }),
        }
    }

    #[test]
    fn member_and_anonymous_sales_land_in_their_own_daily_rows() {
        let day1 = datetime!(2024-03-01 23:30 UTC);
        let entries = vec![
            sale(
                day1,
                Some(card(1)),
                vec![line(10_000, 2, 2_000), line(500, 1, 0)],
            ),
            sale(day1, Some(card(1)), vec![line(1_000, 1, 0)]),
            sale(day1, None, vec![line(700, 3, 0)]),
            // Same instant in another offset: the next UTC day.
            sale(
                datetime!(2024-03-02 01:30 +01:00),
                Some(card(2)),
                vec![line(100, 1, 0)],
            ),
        ];
        let d = delta(&entries, &store());
        let day = day_of(day1);
        let find = |day: i32, member: bool| {
            d.daily
                .iter()
                .find(|(k, _)| k.day == day && k.member == member)
                .map(|(_, t)| *t)
        };
        assert_eq!(
            find(day, true),
            Some(DailyTotals {
                receipts: 2,
                revenue_minor: 8_000 + 500 + 1_000,
                items: 4,
                discount_minor: 2_000,
                points_accrued: 80 + 5 + 10,
                points_redeemed: 20,
            })
        );
        let anonymous = find(day, false).expect("anonymous row");
        assert_eq!(
            (anonymous.receipts, anonymous.revenue_minor, anonymous.items),
            (1, 700, 3)
        );
        assert_eq!(anonymous.points_accrued, 0);
        assert_eq!(find(day + 1, true).map(|t| t.receipts), Some(1));
        assert_eq!(
            d.member_days.len(),
            2,
            "card 1 once on its day, card 2 once"
        );
        assert!(d.first_days.contains(&(card(1), day)));
    }

    #[test]
    fn a_return_takes_back_revenue_items_and_points_but_is_no_receipt() {
        let at = datetime!(2024-03-05 10:00 UTC);
        let ret = JournalEntry {
            id: Uuid::new_v4(),
            seq: Seq(2),
            at,
            rules_version: 1,
            body: EntryBody::Return(ReturnEntry {
                return_id: ReturnId::parse("X-1").expect("return"),
                receipt_id: ReceiptId::parse("R-1").expect("receipt"),
                sale_entry: Uuid::new_v4(),
                card: Some(card(1)),
                returned: PricedReturn {
                    lines: vec![ReturnedLine {
                        line: 0,
                        qty: 1,
                        refund_minor: Money(4_000),
                        reversed_accrual_points: Points(40),
                        restored_points: Points(10),
                    }],
                    refund_minor: Money(4_000),
                    reversed_accrual_points: Points(40),
                    restored_points: Points(10),
                },
            }),
        };
        let d = delta(&[ret], &store());
        assert_eq!(
            d.daily[0].1,
            DailyTotals {
                receipts: 0,
                revenue_minor: -4_000,
                items: -1,
                discount_minor: 0,
                points_accrued: -40,
                points_redeemed: -10,
            }
        );
        assert!(d.member_days.is_empty(), "a return is no visit");
        assert!(
            d.categories.is_empty(),
            "a return names its line, not the category: promoted revenue is of sales"
        );
    }

    #[test]
    fn each_category_of_a_sale_adds_what_its_lines_were_paid() {
        let at = datetime!(2024-03-01 12:00 UTC);
        let in_category = |category: &str, l: PricedLine| PricedLine {
            category: category.into(),
            ..l
        };
        let entries = vec![
            sale(
                at,
                Some(card(1)),
                vec![
                    in_category("dairy", line(10_000, 2, 2_000)),
                    in_category("dairy", line(500, 1, 0)),
                    in_category("bakery", line(300, 1, 0)),
                ],
            ),
            sale(at, None, vec![in_category("dairy", line(700, 3, 0))]),
        ];
        let d = delta(&entries, &store());
        let find = |member: bool, category: &str| {
            d.categories
                .iter()
                .find(|(k, _)| k.day.member == member && k.category == category)
                .map(|(_, t)| *t)
        };
        assert_eq!(
            find(true, "dairy"),
            Some(CategoryTotals {
                revenue_minor: 8_000 + 500,
                items: 3,
            }),
            "paid, not before the points discount"
        );
        assert_eq!(find(true, "bakery").map(|t| t.revenue_minor), Some(300));
        assert_eq!(find(false, "dairy").map(|t| t.revenue_minor), Some(700));
        assert_eq!(d.categories.len(), 3);
    }

    #[test]
    fn a_sale_without_lines_is_no_receipt() {
        let opening = sale(datetime!(2024-01-01 0:00 UTC), Some(card(1)), Vec::new());
        assert!(delta(&[opening], &store()).is_empty());
    }

    #[test]
    fn ratios_are_safe_with_nothing_to_divide_by() {
        assert_eq!(per(10, 0), 0);
        assert_eq!(per(10, 3), 3);
        assert_eq!(share(1, 3), 0.3333);
        assert_eq!(share(1, 0), 0.0);
    }
}
