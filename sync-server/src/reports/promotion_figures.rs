//! The KPI report's promotions: for each promotion overlapping the period, the
//! revenue of its promoted categories while it ran and in the same number of days
//! just before, members and non-members, and the difference-in-differences
//! `(members during - members before) - (non-members during - non-members before)`:
//! how much more the members' promoted revenue grew than the non-members' (who see
//! the same shelves and prices but earn no points), in minor units.

use crate::ledger::kpi::PromotionRevenue;
use serde::Serialize;
use time::Date;

/// One promotion's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromotionFigures {
    /// Its name in the rules.
    pub name: String,
    /// Its categories (empty: every category).
    pub categories: Vec<String>,
    /// First day of the window while it ran.
    pub during_from: String,
    /// Last day of it (its last day, or the period's if earlier).
    pub during_to: String,
    /// First day of the window before (same length).
    pub before_from: String,
    /// Last day of it (the day before the promotion's first).
    pub before_to: String,
    /// Members' promoted revenue while it ran.
    pub members_during_minor: i64,
    /// Members' promoted revenue before.
    pub members_before_minor: i64,
    /// Non-members' promoted revenue while it ran.
    pub non_members_during_minor: i64,
    /// Non-members' promoted revenue before.
    pub non_members_before_minor: i64,
    /// Members: during - before.
    pub members_change_minor: i64,
    /// Non-members: during - before.
    pub non_members_change_minor: i64,
    /// The difference-in-differences: members' change - non-members' change.
    pub did_minor: i64,
}

fn day(n: i32) -> String {
    Date::from_julian_day(n).map_or_else(|_| n.to_string(), |d| d.to_string())
}

/// The figures of one promotion's revenue.
pub fn build(p: &PromotionRevenue) -> PromotionFigures {
    let members_change = p.during.0.saturating_sub(p.before.0);
    let non_members_change = p.during.1.saturating_sub(p.before.1);
    PromotionFigures {
        name: p.name.clone(),
        categories: p.categories.clone(),
        during_from: day(p.windows.during.0),
        during_to: day(p.windows.during.1),
        before_from: day(p.windows.before.0),
        before_to: day(p.windows.before.1),
        members_during_minor: p.during.0,
        members_before_minor: p.before.0,
        non_members_during_minor: p.during.1,
        non_members_before_minor: p.before.1,
        members_change_minor: members_change,
        non_members_change_minor: non_members_change,
        did_minor: members_change.saturating_sub(non_members_change),
    }
}

/// The figures as `(name, value)`, in the report's list.
pub fn figures(p: &PromotionFigures) -> Vec<(String, String)> {
    [
        ("members_during_minor", p.members_during_minor),
        ("members_before_minor", p.members_before_minor),
        ("non_members_during_minor", p.non_members_during_minor),
        ("non_members_before_minor", p.non_members_before_minor),
        ("did_minor", p.did_minor),
    ]
    .into_iter()
    .map(|(figure, v)| (format!("promotion.{}.{figure}", p.name), v.to_string()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::kpi::{Period, day_number, promotion_windows};
    use time::macros::date;

    #[test]
    fn the_difference_in_differences_compares_the_members_change_with_the_non_members() {
        let period = Period::new(date!(2024 - 03 - 01), date!(2024 - 03 - 31)).expect("period");
        let windows = promotion_windows(date!(2024 - 03 - 10), date!(2024 - 03 - 16), &period)
            .expect("overlaps");
        let p = build(&PromotionRevenue {
            name: "dairy week".into(),
            categories: vec!["dairy".into()],
            windows,
            during: (15_000, 4_000),
            before: (10_000, 3_000),
        });
        assert_eq!(
            (p.during_from.as_str(), p.during_to.as_str()),
            ("2024-03-10", "2024-03-16")
        );
        assert_eq!(
            (p.before_from.as_str(), p.before_to.as_str()),
            ("2024-03-03", "2024-03-09")
        );
        assert_eq!(p.members_change_minor, 5_000);
        assert_eq!(p.non_members_change_minor, 1_000);
        assert_eq!(p.did_minor, 4_000);
        assert_eq!(
            figures(&p).last(),
            Some(&(
                "promotion.dairy week.did_minor".to_owned(),
                "4000".to_owned()
            ))
        );
    }

    #[test]
    fn a_promotion_is_cut_at_the_period_end_and_ignored_outside_it() {
        let period = Period::new(date!(2024 - 03 - 01), date!(2024 - 03 - 31)).expect("period");
        let w = promotion_windows(date!(2024 - 03 - 25), date!(2024 - 04 - 10), &period)
            .expect("overlaps");
        let d = |d| day_number(d);
        assert_eq!(
            w.during,
            (d(date!(2024 - 03 - 25)), d(date!(2024 - 03 - 31)))
        );
        assert_eq!(
            w.before,
            (d(date!(2024 - 03 - 18)), d(date!(2024 - 03 - 24)))
        );
        // Started before the period: the whole run up to the period's end counts.
        let w = promotion_windows(date!(2024 - 02 - 20), date!(2024 - 03 - 05), &period)
            .expect("overlaps");
        assert_eq!(
            w.during,
            (d(date!(2024 - 02 - 20)), d(date!(2024 - 03 - 05)))
        );
        assert!(promotion_windows(date!(2024 - 04 - 01), date!(2024 - 04 - 10), &period).is_none());
        assert!(promotion_windows(date!(2024 - 01 - 01), date!(2024 - 02 - 29), &period).is_none());
    }
}
