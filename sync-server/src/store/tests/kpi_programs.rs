//! The KPI report's tier and promotion figures, on every backend: tier changes are
//! recorded whoever writes the tier (a push, the job) and dated by HQ's time of the
//! change; a promotion's revenue is read per category in its two windows, by store.

use super::{Db, OTHER_CARD, batch, terminal};
use crate::ledger::apply::tests::{CARD, T0, sale};
use crate::ledger::kpi::Period;
use crate::reports;
use protocol::rules::{ProgramRules, Promotion, Tier};
use protocol::{BasisPoints, Money, StoreId};
use testkit::entries::{Entry, line, priced};
use time::macros::{date, datetime};
use time::{Date, Duration, OffsetDateTime};

testkit::on_every_backend!(
    open: Db::open;
    tier_moves_are_recorded_by_the_push_and_the_job_on_the_day_hq_made_them,
    a_promotion_compares_its_categories_revenue_with_the_days_before_it,
);

fn day(d: Date) -> Period {
    Period::new(d, d).unwrap()
}

async fn tier_moves_are_recorded_by_the_push_and_the_job_on_the_day_hq_made_them(store: Db) {
    let rules = ProgramRules {
        tiers: vec![Tier {
            name: "silver".into(),
            min_spend_minor: Money(15_000),
            accrual_bp: BasisPoints(700),
        }],
        ..ProgramRules::default()
    };
    store.set_rules(rules, T0).await.unwrap();
    let t = terminal(&*store, "s1", "t1").await;
    // CARD reaches silver with its second sale; OTHER_CARD stays without a tier.
    let sales = vec![
        sale(1, CARD, 0, 5),
        sale(2, CARD, 0, 5),
        sale(3, OTHER_CARD, 0, 5),
    ];
    store.push(&t, batch(sales), T0).await.unwrap();
    let report = |period: Period, now: OffsetDateTime| {
        let store = &store;
        async move {
            reports::load_kpi(&**store, period, None, now)
                .await
                .unwrap()
        }
    };
    let r = report(day(T0.date()), T0).await;
    let members: Vec<(&str, i64)> = r
        .tiers
        .members
        .iter()
        .map(|c| (c.tier.as_str(), c.members))
        .collect();
    assert_eq!(members, vec![("none", 1), ("silver", 1)]);
    assert_eq!((r.tiers.moves_up, r.tiers.moves_down), (1, 0));
    assert_eq!(
        (r.tiers.moves[0].from.as_str(), r.tiers.moves[0].to.as_str()),
        ("none", "silver")
    );
    // A year later the job takes silver away: a move down on the job's day, none on
    // the days between.
    let later = T0 + Duration::days(365) + Duration::hours(1);
    store.run_jobs(later).await.unwrap();
    let r = report(day(later.date()), later).await;
    assert_eq!((r.tiers.moves_up, r.tiers.moves_down), (0, 1));
    assert_eq!(
        r.tiers.members[0].members, 2,
        "both cards without a tier now"
    );
    let between = Period::new(
        T0.date() + Duration::days(1),
        later.date() - Duration::days(1),
    );
    let r = report(between.unwrap(), later).await;
    assert!(r.tiers.moves.is_empty());
    // A period covering both counts each move once.
    let r = report(Period::new(T0.date(), later.date()).unwrap(), later).await;
    assert_eq!((r.tiers.moves_up, r.tiers.moves_down), (1, 1));
}

/// A sale of one `category` line paying `amount` at `at`.
fn bought(
    seq: u64,
    card: Option<&str>,
    category: &str,
    amount: i64,
    at: OffsetDateTime,
) -> protocol::journal::JournalEntry {
    Entry::fixed(seq)
        .at(at)
        .sale(card, priced(&[line("x", category, amount)], 0, at.date()))
}

async fn a_promotion_compares_its_categories_revenue_with_the_days_before_it(store: Db) {
    let promo =
        |name: &str, categories: &[&str], skus: &[&str], starts: Date, ends: Date| Promotion {
            name: name.into(),
            multiplier_percent: 200,
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            skus: skus.iter().map(|c| (*c).to_owned()).collect(),
            starts,
            ends,
        };
    let rules = ProgramRules {
        promotions: vec![
            // Seven days from 10 March: the days before are 3 to 9 March.
            promo(
                "dairy week",
                &["dairy"],
                &[],
                date!(2024 - 03 - 10),
                date!(2024 - 03 - 16),
            ),
            promo(
                "sku only",
                &[],
                &["x"],
                date!(2024 - 03 - 10),
                date!(2024 - 03 - 16),
            ),
            promo(
                "summer",
                &["dairy"],
                &[],
                date!(2024 - 07 - 01),
                date!(2024 - 07 - 31),
            ),
        ],
        ..ProgramRules::default()
    };
    store.set_rules(rules, T0).await.unwrap();
    let s1 = terminal(&*store, "s1", "t1").await;
    let s2 = terminal(&*store, "s2", "t1").await;
    let before = datetime!(2024-03-05 12:00 UTC);
    let during = datetime!(2024-03-12 12:00 UTC);
    let s1_sales = vec![
        bought(1, Some(CARD), "dairy", 10_000, before),
        bought(2, None, "dairy", 8_000, before),
        bought(3, Some(CARD), "dairy", 15_000, during),
        bought(4, Some(OTHER_CARD), "dairy", 5_000, during),
        // Not promoted, and outside both windows: neither counts.
        bought(5, Some(CARD), "bakery", 99_000, during),
        bought(6, None, "dairy", 99_000, datetime!(2024-03-02 12:00 UTC)),
    ];
    store.push(&s1, batch(s1_sales), T0).await.unwrap();
    let s2_sales = vec![super::other_terminal(bought(
        1, None, "dairy", 9_000, during,
    ))];
    store.push(&s2, batch(s2_sales), T0).await.unwrap();

    let march = Period::new(date!(2024 - 03 - 01), date!(2024 - 03 - 31)).unwrap();
    let r = reports::load_kpi(&*store, march, None, T0).await.unwrap();
    assert_eq!(
        r.promotions.len(),
        1,
        "the SKU-only and the July ones are not listed"
    );
    let p = &r.promotions[0];
    assert_eq!(
        (p.before_from.as_str(), p.before_to.as_str()),
        ("2024-03-03", "2024-03-09")
    );
    assert_eq!(
        (p.members_during_minor, p.members_before_minor),
        (20_000, 10_000)
    );
    assert_eq!(
        (p.non_members_during_minor, p.non_members_before_minor),
        (9_000, 8_000)
    );
    assert_eq!(p.did_minor, (20_000 - 10_000) - (9_000 - 8_000));

    let only_s2 = StoreId::parse("s2").unwrap();
    let r = reports::load_kpi(&*store, march, Some(&only_s2), T0)
        .await
        .unwrap();
    let p = &r.promotions[0];
    assert_eq!(
        (
            p.members_during_minor,
            p.non_members_during_minor,
            p.non_members_before_minor
        ),
        (0, 9_000, 0)
    );
    assert_eq!(p.did_minor, -9_000);
}
