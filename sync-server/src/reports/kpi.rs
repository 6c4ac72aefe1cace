//! `report kpi` and `GET /v1/admin/kpi`: the program's KPIs over a period, from the
//! aggregates the pushes keep current ([`crate::ledger::kpi`] defines each figure;
//! the README's "KPI definitions" states them for people). One value, rendered as
//! JSON, CSV (`figure,value`) or a table; the dashboard renders the same value.

use super::promotion_figures::{self, PromotionFigures};
use super::tier_figures::{self, TierFigures};
use crate::ledger::kpi::{DailyTotals, KpiInputs, Period, per, share};
use protocol::{Money, StoreId};
use serde::Serialize;
use std::io::{self, Write};
use time::Date;

/// Members' figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MemberFigures {
    /// Member receipts.
    pub receipts: i64,
    /// Money members paid, net of refunds.
    pub revenue_minor: i64,
    /// Revenue per receipt, rounded down.
    pub avg_receipt_minor: i64,
    /// Units bought, net of returns.
    pub items: i64,
    /// Units per receipt (2 decimals).
    pub items_per_receipt: f64,
    /// Receipts per active member in the period (2 decimals).
    pub frequency: f64,
    /// Members' share of all revenue (4 decimals).
    pub revenue_share: f64,
}

/// Anonymous customers' figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct NonMemberFigures {
    /// Receipts without a card.
    pub receipts: i64,
    /// Money paid on them, net of refunds.
    pub revenue_minor: i64,
    /// Revenue per receipt, rounded down.
    pub avg_receipt_minor: i64,
    /// Units bought, net of returns.
    pub items: i64,
    /// Units per receipt (2 decimals).
    pub items_per_receipt: f64,
}

/// Points figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PointsFigures {
    /// Accrued in the period, net of reversals by returns.
    pub accrued: i64,
    /// Redeemed in the period, net of points returns gave back.
    pub redeemed: i64,
    /// Expired by the ledger job during the period.
    pub expired: i64,
    /// Redeemed / accrued (4 decimals).
    pub redemption_rate: f64,
    /// Points the cards hold now (positive balances only; pending included).
    pub outstanding: i64,
    /// Outstanding × point value: what the program owes its members, now.
    pub liability_minor: i64,
    /// Points not yet spendable, now.
    pub pending: i64,
    /// Points that expire in the next 30 days.
    pub expiring_30d: i64,
    /// Money value of one point under the current rules.
    pub point_value_minor: i64,
}

/// One day of the period, for the charts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    /// The UTC day.
    pub day: String,
    /// Member receipts.
    pub member_receipts: i64,
    /// Member revenue.
    pub member_revenue_minor: i64,
    /// Anonymous receipts.
    pub non_member_receipts: i64,
    /// Anonymous revenue.
    pub non_member_revenue_minor: i64,
}

/// The KPI report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiReport {
    /// First day (inclusive).
    pub from: String,
    /// Last day (inclusive).
    pub to: String,
    /// The store, or `null` for the chain.
    pub store: Option<String>,
    /// Members' figures.
    pub members: MemberFigures,
    /// Anonymous customers' figures.
    pub non_members: NonMemberFigures,
    /// Members with a receipt in the period.
    pub active_members: i64,
    /// Members with a receipt in the 30 days ending with the period.
    pub active_members_30d: i64,
    /// Members with a receipt in the 90 days ending with the period.
    pub active_members_90d: i64,
    /// Members whose first receipt falls in the period.
    pub new_members: i64,
    /// Members active in the previous period of the same length, not in this one.
    pub churned_members: i64,
    /// Points.
    pub points: PointsFigures,
    /// Discounts paid with points in the period: the program's cost.
    pub program_cost_minor: i64,
    /// Every day of the period with a receipt.
    pub daily: Vec<Day>,
    /// Retention by enrolment month: one cohort per month of the period in which
    /// members made their first receipt.
    pub cohorts: Vec<Cohort>,
    /// Members per tier now and the period's tier changes (chain-wide).
    pub tiers: TierFigures,
    /// Each promotion overlapping the period, with its difference-in-differences.
    pub promotions: Vec<PromotionFigures>,
}

/// The members who made their first receipt in one month, and how many of them
/// bought again in each later month of the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    /// `YYYY-MM`.
    pub month: String,
    /// Members of the cohort with a receipt in the scope in their first month.
    pub members: i64,
    /// Members of the cohort with a receipt in the scope in month `k` after it
    /// (`active[0]` is `members`), up to the period's last month.
    pub active: Vec<i64>,
    /// `active[k] / members`, 4 decimals.
    pub retention: Vec<f64>,
}

/// The cohort table from `(cohort month, month, members)` cells (months as `year *
/// 12 + month - 1`), up to `last_month`; months without a cell count 0.
pub fn cohorts(cells: &[(i32, i32, i64)], last_month: i32) -> Vec<Cohort> {
    let mut out: Vec<Cohort> = Vec::new();
    for cohort_cells in cells.chunk_by(|a, b| a.0 == b.0) {
        let cohort = cohort_cells[0].0;
        let span = usize::try_from(last_month - cohort + 1).unwrap_or(0);
        let mut active = vec![0; span];
        for &(_, month, members) in cohort_cells {
            if let Some(slot) = usize::try_from(month - cohort)
                .ok()
                .and_then(|k| active.get_mut(k))
            {
                *slot = members;
            }
        }
        let members = active.first().copied().unwrap_or(0);
        out.push(Cohort {
            month: format!(
                "{:04}-{:02}",
                cohort.div_euclid(12),
                cohort.rem_euclid(12) + 1
            ),
            members,
            retention: active.iter().map(|&a| share(a, members)).collect(),
            active,
        });
    }
    out
}

/// A date's month as `year * 12 + month - 1`.
pub fn month_index(d: Date) -> i32 {
    d.year() * 12 + i32::from(u8::from(d.month())) - 1
}

/// Why a report cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KpiError {
    /// The liability does not fit in 64 bits.
    #[error("the points liability overflows ({outstanding} points x {point_value})")]
    Overflow {
        /// Points outstanding.
        outstanding: i64,
        /// Value of a point.
        point_value: i64,
    },
}

/// The report of `period` from what the store read and the current point value.
pub fn build(
    period: &Period,
    store: Option<&StoreId>,
    inputs: &KpiInputs,
    point_value: Money,
) -> Result<KpiReport, KpiError> {
    let mut member = DailyTotals::default();
    let mut anonymous = DailyTotals::default();
    let mut daily: Vec<Day> = Vec::new();
    for (day, is_member, totals) in &inputs.days {
        if *is_member {
            member.add(totals);
        } else {
            anonymous.add(totals);
        }
        let date = Date::from_julian_day(*day).map_or_else(|_| day.to_string(), |d| d.to_string());
        if daily.last().is_none_or(|d| d.day != date) {
            daily.push(Day {
                day: date,
                member_receipts: 0,
                member_revenue_minor: 0,
                non_member_receipts: 0,
                non_member_revenue_minor: 0,
            });
        }
        if let Some(d) = daily.last_mut() {
            if *is_member {
                d.member_receipts = totals.receipts;
                d.member_revenue_minor = totals.revenue_minor;
            } else {
                d.non_member_receipts = totals.receipts;
                d.non_member_revenue_minor = totals.revenue_minor;
            }
        }
    }
    let outstanding = inputs.points_outstanding;
    let liability = outstanding
        .checked_mul(point_value.get())
        .ok_or(KpiError::Overflow {
            outstanding,
            point_value: point_value.get(),
        })?;
    let total_revenue = member.revenue_minor.saturating_add(anonymous.revenue_minor);
    Ok(KpiReport {
        from: period.from.to_string(),
        to: period.to.to_string(),
        store: store.map(|s| s.as_str().to_owned()),
        members: MemberFigures {
            receipts: member.receipts,
            revenue_minor: member.revenue_minor,
            avg_receipt_minor: per(member.revenue_minor, member.receipts),
            items: member.items,
            items_per_receipt: ratio(member.items, member.receipts),
            frequency: ratio(member.receipts, inputs.active_members),
            revenue_share: share(member.revenue_minor, total_revenue),
        },
        non_members: NonMemberFigures {
            receipts: anonymous.receipts,
            revenue_minor: anonymous.revenue_minor,
            avg_receipt_minor: per(anonymous.revenue_minor, anonymous.receipts),
            items: anonymous.items,
            items_per_receipt: ratio(anonymous.items, anonymous.receipts),
        },
        active_members: inputs.active_members,
        active_members_30d: inputs.active_members_30d,
        active_members_90d: inputs.active_members_90d,
        new_members: inputs.new_members,
        churned_members: inputs.churned_members,
        points: PointsFigures {
            accrued: member.points_accrued,
            redeemed: member.points_redeemed,
            expired: inputs.points_expired,
            redemption_rate: share(member.points_redeemed, member.points_accrued),
            outstanding,
            liability_minor: liability,
            pending: inputs.points_pending,
            expiring_30d: inputs.points_expiring_30d,
            point_value_minor: point_value.get(),
        },
        program_cost_minor: member
            .discount_minor
            .saturating_add(anonymous.discount_minor),
        daily,
        cohorts: cohorts(&inputs.cohorts, month_index(period.to)),
        tiers: tier_figures::build(&inputs.tier_order, &inputs.tier_members, &inputs.tier_moves),
        promotions: inputs
            .promotions
            .iter()
            .map(promotion_figures::build)
            .collect(),
    })
}

/// `a / b` to 2 decimals, 0 when `b` is not positive.
fn ratio(a: i64, b: i64) -> f64 {
    if b > 0 {
        #[allow(clippy::cast_precision_loss)] // A ratio for people, not an amount.
        let exact = a as f64 / b as f64;
        (exact * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// Every figure as `(name, value)`, in the JSON's names: the table, the CSV and the
/// dashboard print this one list.
pub fn figures(r: &KpiReport) -> Vec<(String, String)> {
    let m = &r.members;
    let n = &r.non_members;
    let p = &r.points;
    let mut list: Vec<(String, String)> = base_figures(m, n, p, r)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    for c in &r.cohorts {
        list.push((format!("cohort.{}.members", c.month), c.members.to_string()));
        for (k, share) in c.retention.iter().enumerate().skip(1) {
            list.push((
                format!("cohort.{}.retention_m{k}", c.month),
                format!("{share:.4}"),
            ));
        }
    }
    list.extend(tier_figures::figures(&r.tiers));
    for p in &r.promotions {
        list.extend(promotion_figures::figures(p));
    }
    list
}

fn base_figures(
    m: &MemberFigures,
    n: &NonMemberFigures,
    p: &PointsFigures,
    r: &KpiReport,
) -> Vec<(&'static str, String)> {
    vec![
        ("members.receipts", m.receipts.to_string()),
        ("members.revenue_minor", m.revenue_minor.to_string()),
        ("members.avg_receipt_minor", m.avg_receipt_minor.to_string()),
        (
            "members.items_per_receipt",
            format!("{:.2}", m.items_per_receipt),
        ),
        ("members.frequency", format!("{:.2}", m.frequency)),
        ("members.revenue_share", format!("{:.4}", m.revenue_share)),
        ("non_members.receipts", n.receipts.to_string()),
        ("non_members.revenue_minor", n.revenue_minor.to_string()),
        (
            "non_members.avg_receipt_minor",
            n.avg_receipt_minor.to_string(),
        ),
        (
            "non_members.items_per_receipt",
            format!("{:.2}", n.items_per_receipt),
        ),
        ("active_members", r.active_members.to_string()),
        ("active_members_30d", r.active_members_30d.to_string()),
        ("active_members_90d", r.active_members_90d.to_string()),
        ("new_members", r.new_members.to_string()),
        ("churned_members", r.churned_members.to_string()),
        ("points.accrued", p.accrued.to_string()),
        ("points.redeemed", p.redeemed.to_string()),
        ("points.expired", p.expired.to_string()),
        (
            "points.redemption_rate",
            format!("{:.4}", p.redemption_rate),
        ),
        ("points.outstanding", p.outstanding.to_string()),
        ("points.liability_minor", p.liability_minor.to_string()),
        ("points.pending", p.pending.to_string()),
        ("points.expiring_30d", p.expiring_30d.to_string()),
        ("program_cost_minor", r.program_cost_minor.to_string()),
    ]
}

/// `figure,value` lines with a header.
pub fn write_csv(r: &KpiReport, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "figure,value")?;
    for (name, value) in figures(r) {
        writeln!(out, "{},{value}", csv_field(&name))?;
    }
    Ok(())
}

/// A CSV field: quoted when a tier's or promotion's name holds a comma, a quote or a
/// line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Aligned `figure  value` lines under a title.
pub fn write_table(r: &KpiReport, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "KPIs {} to {} ({})",
        r.from,
        r.to,
        r.store.as_deref().unwrap_or("all stores")
    )?;
    let list = figures(r);
    // Tier and promotion names are the rules' own: the column widens for them.
    let width = list.iter().map(|(n, _)| n.len()).max().unwrap_or(0).max(32);
    for (name, value) in list {
        writeln!(out, "{name:<width$} {value:>16}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::kpi::day_number;
    use time::macros::date;

    fn totals(receipts: i64, revenue: i64, items: i64, discount: i64) -> DailyTotals {
        DailyTotals {
            receipts,
            revenue_minor: revenue,
            items,
            discount_minor: discount,
            points_accrued: revenue / 100,
            points_redeemed: discount / 100,
        }
    }

    fn inputs() -> KpiInputs {
        let d1 = day_number(date!(2024 - 03 - 01));
        KpiInputs {
            days: vec![
                (d1, false, totals(2, 1_000, 3, 0)),
                (d1, true, totals(3, 9_000, 6, 1_000)),
                (d1 + 1, true, totals(1, 3_000, 1, 0)),
            ],
            active_members: 2,
            active_members_30d: 2,
            active_members_90d: 5,
            churned_members: 1,
            new_members: 1,
            cohorts: Vec::new(),
            points_expired: 7,
            points_outstanding: 500,
            points_pending: 20,
            points_expiring_30d: 30,
            ..KpiInputs::default()
        }
    }

    fn period() -> Period {
        Period::new(date!(2024 - 03 - 01), date!(2024 - 03 - 31)).expect("period")
    }

    #[test]
    fn figures_follow_their_definitions() {
        let r = build(&period(), None, &inputs(), Money(100)).expect("report");
        assert_eq!(r.members.receipts, 4);
        assert_eq!(r.members.revenue_minor, 12_000);
        assert_eq!(r.members.avg_receipt_minor, 3_000);
        assert_eq!(r.members.items_per_receipt, 1.75);
        assert_eq!(r.members.frequency, 2.0, "4 receipts by 2 active members");
        assert_eq!(r.members.revenue_share, 0.9231, "12,000 of 13,000");
        assert_eq!(r.non_members.avg_receipt_minor, 500);
        assert_eq!(r.points.accrued, 120);
        assert_eq!(r.points.redeemed, 10);
        assert_eq!(r.points.redemption_rate, 0.0833);
        assert_eq!(r.points.liability_minor, 50_000);
        assert_eq!(r.program_cost_minor, 1_000);
        assert_eq!(r.daily.len(), 2);
        assert_eq!(r.daily[0].day, "2024-03-01");
        assert_eq!(r.daily[0].non_member_receipts, 2);
        assert_eq!(r.daily[0].member_revenue_minor, 9_000);
    }

    #[test]
    fn cohorts_count_each_later_month_against_the_first() {
        let jan = month_index(date!(2024 - 01 - 15));
        assert_eq!(month_index(date!(2024 - 12 - 31)) - jan, 11);
        // January: 10 members, 4 back in February, none in March, 2 in April; February:
        // 5 members, 5 back in April. The period ends in April.
        let cells = [
            (jan, jan, 10),
            (jan, jan + 1, 4),
            (jan, jan + 3, 2),
            (jan + 1, jan + 1, 5),
            (jan + 1, jan + 3, 5),
        ];
        let c = cohorts(&cells, jan + 3);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].month.as_str(), c[0].members), ("2024-01", 10));
        assert_eq!(c[0].active, vec![10, 4, 0, 2]);
        assert_eq!(c[0].retention, vec![1.0, 0.4, 0.0, 0.2]);
        assert_eq!(
            (c[1].month.as_str(), c[1].active.clone()),
            ("2024-02", vec![5, 0, 5])
        );
        let mut r = build(&period(), None, &inputs(), Money(100)).expect("report");
        r.cohorts = c;
        let names: Vec<String> = figures(&r).into_iter().map(|(n, _)| n).collect();
        assert!(
            names.contains(&"cohort.2024-01.retention_m3".to_owned()),
            "{names:?}"
        );
        assert!(!names.contains(&"cohort.2024-01.retention_m0".to_owned()));
    }

    #[test]
    fn an_empty_period_has_zeros_not_errors() {
        let r = build(&period(), None, &KpiInputs::default(), Money(100)).expect("report");
        assert_eq!(r.members.avg_receipt_minor, 0);
        assert_eq!(r.members.frequency, 0.0);
        assert_eq!(r.points.redemption_rate, 0.0);
    }

    #[test]
    fn a_liability_that_overflows_is_an_error() {
        let mut i = inputs();
        i.points_outstanding = i64::MAX / 2;
        assert!(build(&period(), None, &i, Money(100)).is_err());
    }

    #[test]
    fn periods_are_checked_and_compare_with_the_one_before() {
        assert!(Period::new(date!(2024 - 03 - 02), date!(2024 - 03 - 01)).is_err());
        assert!(Period::new(date!(2000 - 01 - 01), date!(2024 - 03 - 01)).is_err());
        let p = period();
        let (from, to) = p.days();
        assert_eq!(to - from + 1, 31);
        assert_eq!(p.previous(), (from - 31, from - 1));
        assert_eq!(p.last_days(30), (to - 29, to));
    }

    #[test]
    fn csv_and_table_list_the_same_figures() {
        let r = build(&period(), None, &inputs(), Money(100)).expect("report");
        let mut csv = Vec::new();
        write_csv(&r, &mut csv).expect("csv");
        let csv = String::from_utf8(csv).expect("utf-8");
        assert!(csv.starts_with("figure,value\n"));
        assert!(csv.contains("members.avg_receipt_minor,3000\n"), "{csv}");
        let mut table = Vec::new();
        write_table(&r, &mut table).expect("table");
        let table = String::from_utf8(table).expect("utf-8");
        assert_eq!(csv.lines().count(), table.lines().count());
    }

    #[test]
    fn a_name_with_a_comma_is_quoted_in_the_csv() {
        let mut i = inputs();
        i.tier_members = vec![(Some("gold, plus".to_owned()), 2)];
        let r = build(&period(), None, &i, Money(100)).expect("report");
        let mut csv = Vec::new();
        write_csv(&r, &mut csv).expect("csv");
        let csv = String::from_utf8(csv).expect("utf-8");
        assert!(csv.contains("\"tiers.gold, plus.members\",2\n"), "{csv}");
    }
}
