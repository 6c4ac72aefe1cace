//! The KPI report's tier figures: members per tier now, and the tier changes of the
//! period counted up, down and per `from -> to` pair. Tiers are a chain-wide status
//! of a card, so these figures are chain-wide whatever the report's store.

use serde::Serialize;

/// How the report names "no tier".
pub const NO_TIER: &str = "none";

/// Members of one tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierCount {
    /// The tier, or [`NO_TIER`].
    pub tier: String,
    /// Cards in it now.
    pub members: i64,
}

/// Tier changes from one tier to another in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierMove {
    /// The tier before, or [`NO_TIER`].
    pub from: String,
    /// The tier after, or [`NO_TIER`].
    pub to: String,
    /// How many changes.
    pub moves: i64,
}

/// The tier figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TierFigures {
    /// Cards per tier now: no tier, then the current rules' tiers lowest first (zero
    /// when empty), then any tier name the current rules no longer have.
    pub members: Vec<TierCount>,
    /// Changes to a higher tier of the current rules (from no tier counts as lowest).
    pub moves_up: i64,
    /// Changes to a lower one.
    pub moves_down: i64,
    /// Every change of the period per `(from, to)`, by the current rules' order.
    pub moves: Vec<TierMove>,
}

/// The rank of a tier under the current rules' `order` (0: no tier), `None` for a
/// name the rules no longer have.
fn rank(order: &[String], tier: Option<&str>) -> Option<usize> {
    match tier {
        None => Some(0),
        Some(name) => order.iter().position(|t| t == name).map(|i| i + 1),
    }
}

fn name(tier: Option<&str>) -> String {
    tier.unwrap_or(NO_TIER).to_owned()
}

/// The figures from the cards per tier now and the period's changes.
pub fn build(
    order: &[String],
    members: &[(Option<String>, i64)],
    moves: &[(Option<String>, Option<String>, i64)],
) -> TierFigures {
    // Known tiers in the rules' order (unknown ones after them, by name).
    let sort_key = |t: Option<&str>| (rank(order, t).unwrap_or(usize::MAX), name(t));
    let mut counts: Vec<(Option<&str>, i64)> = std::iter::once(None)
        .chain(order.iter().map(|t| Some(t.as_str())))
        .map(|t| {
            let n = members
                .iter()
                .filter(|(m, _)| m.as_deref() == t)
                .map(|(_, n)| *n)
                .sum();
            (t, n)
        })
        .collect();
    for (t, n) in members {
        if rank(order, t.as_deref()).is_none() {
            counts.push((t.as_deref(), *n));
        }
    }
    counts.sort_by_key(|(t, _)| sort_key(*t));
    let mut sorted: Vec<&(Option<String>, Option<String>, i64)> = moves.iter().collect();
    sorted.sort_by_key(|(f, t, _)| (sort_key(f.as_deref()), sort_key(t.as_deref())));
    let mut out = TierFigures {
        members: counts
            .into_iter()
            .map(|(t, members)| TierCount {
                tier: name(t),
                members,
            })
            .collect(),
        ..TierFigures::default()
    };
    for (from, to, n) in sorted {
        match (rank(order, from.as_deref()), rank(order, to.as_deref())) {
            (Some(a), Some(b)) if b > a => out.moves_up = out.moves_up.saturating_add(*n),
            (Some(a), Some(b)) if b < a => out.moves_down = out.moves_down.saturating_add(*n),
            _ => {}
        }
        out.moves.push(TierMove {
            from: name(from.as_deref()),
            to: name(to.as_deref()),
            moves: *n,
        });
    }
    out
}

/// The figures as `(name, value)`, in the report's list.
pub fn figures(t: &TierFigures) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = t
        .members
        .iter()
        .map(|c| (format!("tiers.{}.members", c.tier), c.members.to_string()))
        .collect();
    list.push(("tier_moves.up".to_owned(), t.moves_up.to_string()));
    list.push(("tier_moves.down".to_owned(), t.moves_down.to_string()));
    for m in &t.moves {
        list.push((
            format!("tier_moves.{}.{}", m.from, m.to),
            m.moves.to_string(),
        ));
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Option<String> {
        Some(x.to_owned())
    }

    #[test]
    fn moves_are_up_or_down_by_the_rules_order_and_every_tier_is_listed() {
        let order = vec!["silver".to_owned(), "gold".to_owned()];
        let members = vec![(None, 90), (s("gold"), 3), (s("bronze"), 2)];
        let moves = vec![
            (None, s("silver"), 5),
            (s("silver"), s("gold"), 2),
            (s("gold"), None, 1),
            (s("bronze"), s("silver"), 4),
        ];
        let t = build(&order, &members, &moves);
        let listed: Vec<(&str, i64)> = t
            .members
            .iter()
            .map(|c| (c.tier.as_str(), c.members))
            .collect();
        assert_eq!(
            listed,
            vec![("none", 90), ("silver", 0), ("gold", 3), ("bronze", 2)]
        );
        assert_eq!(t.moves_up, 7, "none -> silver and silver -> gold");
        assert_eq!(t.moves_down, 1, "gold -> none");
        assert_eq!(
            t.moves.len(),
            4,
            "bronze -> silver is listed, neither up nor down"
        );
        assert_eq!(
            (t.moves[0].from.as_str(), t.moves[0].to.as_str()),
            ("none", "silver")
        );
        let names: Vec<String> = figures(&t).into_iter().map(|(n, _)| n).collect();
        assert!(
            names.contains(&"tier_moves.silver.gold".to_owned()),
            "{names:?}"
        );
        assert!(names.contains(&"tiers.silver.members".to_owned()));
    }

    #[test]
    fn without_tiers_every_card_has_none() {
        let t = build(&[], &[(None, 4)], &[]);
        assert_eq!(
            figures(&t),
            vec![
                ("tiers.none.members".to_owned(), "4".to_owned()),
                ("tier_moves.up".to_owned(), "0".to_owned()),
                ("tier_moves.down".to_owned(), "0".to_owned()),
            ]
        );
    }
}
