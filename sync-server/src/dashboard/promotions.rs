//! The KPI page's promotions table: each promotion's two windows and its
//! difference-in-differences in one row, which the figure list spreads over names.

use super::html::{table, td, td_num};
use crate::reports::promotion_figures::PromotionFigures;

/// The promotions' windows and difference-in-differences side by side (their
/// figures are in the figure table too, under the report's names).
pub fn promotions_table(promotions: &[PromotionFigures]) -> String {
    if promotions.is_empty() {
        return String::new();
    }
    let rows: Vec<String> = promotions
        .iter()
        .map(|p| {
            [
                td(&p.name),
                td(&format!("{} to {}", p.during_from, p.during_to)),
                td(&format!("{} to {}", p.before_from, p.before_to)),
                td_num(p.members_during_minor),
                td_num(p.members_before_minor),
                td_num(p.non_members_during_minor),
                td_num(p.non_members_before_minor),
                td_num(p.did_minor),
            ]
            .concat()
        })
        .collect();
    format!(
        "<h2>Promotions: difference-in-differences of promoted revenue (minor units)</h2>{}",
        table(
            &[
                "promotion",
                "during",
                "before",
                "members during",
                "members before",
                "non-members during",
                "non-members before",
                "difference-in-differences",
            ],
            &rows,
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_promotion_no_table_and_names_are_escaped() {
        assert_eq!(promotions_table(&[]), "");
        let p = PromotionFigures {
            name: "<b>dairy</b>".into(),
            categories: vec!["dairy".into()],
            during_from: "2024-03-10".into(),
            during_to: "2024-03-16".into(),
            before_from: "2024-03-03".into(),
            before_to: "2024-03-09".into(),
            members_during_minor: 15_000,
            members_before_minor: 10_000,
            non_members_during_minor: 4_000,
            non_members_before_minor: 3_000,
            members_change_minor: 5_000,
            non_members_change_minor: 1_000,
            did_minor: 4_000,
        };
        let html = promotions_table(&[p]);
        assert!(html.contains("&lt;b&gt;dairy"), "{html}");
        assert!(html.contains("2024-03-03 to 2024-03-09"));
        assert!(html.contains("<td class=\"n\">4000</td></tr>"), "{html}");
    }
}
