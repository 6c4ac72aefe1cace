//! Per-customer RFM summary of a purchase history: the inputs of both models.
//!
//! Definitions (those of Fader, Hardie & Lee 2005 and of the `lifetimes` package's
//! `summary_data_from_transaction_data` with `freq="D"`, which is how the CDNOW anchors
//! are reproduced):
//!
//! - A **purchase day** is a calendar day with at least one sale (amount ≥ 0) of the
//!   customer. Several sales on one day are one purchase; its value is the day's sum.
//!   Zero-amount sales (a basket paid entirely with points, a free item) count: the
//!   customer came back.
//! - Only days on or before the calibration end are summarised. The customer's **first
//!   purchase day** starts their history; a customer whose first purchase day is after the
//!   calibration end is not in the summary (they did not exist yet).
//! - `frequency` (x) = number of purchase days after the first one (repeat purchases).
//! - `recency` (tₓ) = days from the first to the last purchase day (0 when x = 0).
//! - `age` (T) = days from the first purchase day to the calibration end.
//!   Both are reported in days and, for the models, in weeks = days / 7.
//! - `repeat_value_minor` = summed value of the repeat purchase days; the **monetary
//!   value** the spend model uses is its mean, `repeat_value_minor / frequency`. The first
//!   purchase is left out, as in the literature: it is often atypical (a sign-up basket).
//! - `historical_value_minor` = net value of everything the customer did up to the
//!   calibration end, first purchase and refunds included: what they were worth so far.
//! - `holdout_frequency` = purchase days after the calibration end, kept for checking a
//!   forecast against what happened.
//!
//! Refunds (negative amounts) never make a purchase day: a customer who only returns
//! goods has not come back to buy. A refund is netted into the value of its own day when
//! that day is a purchase day, and always into `historical_value_minor`. A refund on a
//! day without a sale (returning an older basket) lowers the historical value but not the
//! value of any purchase day, since it cannot be tied to the purchase it reverses here.

use std::cmp::Ordering;

use time::Date;

use crate::bgnbd::Activity;
use crate::error::Error;

/// One sale (amount ≥ 0) or refund (amount < 0) of a known customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase<K> {
    /// The customer (loyalty card) it belongs to.
    pub customer: K,
    /// The calendar day it happened, in the store's time zone.
    pub day: Date,
    /// Amount in minor units (cents); negative for a refund.
    pub amount_minor: i64,
}

/// One customer's history up to the calibration end; see the module doc for definitions.
///
/// Built only by [`summarise`], so its figures are consistent (recency ≤ age, recency > 0
/// exactly when there are repeat purchases) and [`CustomerSummary::activity`] needs no
/// check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSummary<K> {
    customer: K,
    first_purchase: Date,
    frequency: u32,
    recency_days: u32,
    age_days: u32,
    repeat_value_minor: i64,
    historical_value_minor: i64,
    holdout_frequency: u32,
}

impl<K> CustomerSummary<K> {
    /// The customer.
    pub fn customer(&self) -> &K {
        &self.customer
    }

    /// Their first purchase day.
    pub fn first_purchase(&self) -> Date {
        self.first_purchase
    }

    /// Repeat purchase days (x).
    pub fn frequency(&self) -> u32 {
        self.frequency
    }

    /// Days from the first to the last purchase day (tₓ).
    pub fn recency_days(&self) -> u32 {
        self.recency_days
    }

    /// Days from the first purchase day to the calibration end (T).
    pub fn age_days(&self) -> u32 {
        self.age_days
    }

    /// Summed value of the repeat purchase days, minor units.
    pub fn repeat_value_minor(&self) -> i64 {
        self.repeat_value_minor
    }

    /// Net value of all sales and refunds up to the calibration end, minor units.
    pub fn historical_value_minor(&self) -> i64 {
        self.historical_value_minor
    }

    /// Purchase days after the calibration end.
    pub fn holdout_frequency(&self) -> u32 {
        self.holdout_frequency
    }

    /// Recency in weeks.
    pub fn recency_weeks(&self) -> f64 {
        f64::from(self.recency_days) / 7.0
    }

    /// Age (T) in weeks.
    pub fn age_weeks(&self) -> f64 {
        f64::from(self.age_days) / 7.0
    }

    /// Mean value of a repeat purchase day in minor units; `None` without repeat purchases.
    pub fn mean_repeat_value_minor(&self) -> Option<f64> {
        // i64 → f64 may round beyond 2^53 minor units; irrelevant for a statistical mean.
        (self.frequency > 0).then(|| self.repeat_value_minor as f64 / f64::from(self.frequency))
    }

    /// The customer's frequency, recency and age in weeks, as the BG/NBD model takes them.
    pub fn activity(&self) -> Activity {
        Activity::from_days(self.frequency, self.recency_days, self.age_days)
    }
}

/// The per-day totals of one customer.
struct Day {
    day: Date,
    has_sale: bool,
    net_minor: i64,
}

/// Summarises each customer's purchases up to `calibration_end` (inclusive); purchases
/// after it are counted only in `holdout_frequency`.
///
/// The result is sorted by customer. Customers with no sale on or before the calibration
/// end are left out. Fails only if a customer's amounts overflow `i64`.
pub fn summarise<K: Ord + Clone>(
    purchases: &[Purchase<K>],
    calibration_end: Date,
) -> Result<Vec<CustomerSummary<K>>, Error> {
    let mut sorted: Vec<&Purchase<K>> = purchases.iter().collect();
    sorted.sort_by(|x, y| x.customer.cmp(&y.customer).then(x.day.cmp(&y.day)));
    let mut summaries = Vec::new();
    for customer_purchases in sorted.chunk_by(|x, y| x.customer == y.customer) {
        let days = daily_totals(customer_purchases)?;
        let customer = &customer_purchases[0].customer;
        if let Some(summary) = summarise_customer(customer, &days, calibration_end)? {
            summaries.push(summary);
        }
    }
    Ok(summaries)
}

/// Folds one customer's purchases (sorted by day) into one [`Day`] per calendar day.
fn daily_totals<K>(purchases: &[&Purchase<K>]) -> Result<Vec<Day>, Error> {
    let mut days: Vec<Day> = Vec::new();
    for purchase in purchases {
        let sale = purchase.amount_minor >= 0;
        match days.last_mut() {
            Some(last) if last.day == purchase.day => {
                last.has_sale |= sale;
                last.net_minor = checked_add(last.net_minor, purchase.amount_minor)?;
            }
            _ => days.push(Day {
                day: purchase.day,
                has_sale: sale,
                net_minor: purchase.amount_minor,
            }),
        }
    }
    Ok(days)
}

/// The summary of one customer's days; `None` if they made no sale by the calibration end.
fn summarise_customer<K: Clone>(
    customer: &K,
    days: &[Day],
    calibration_end: Date,
) -> Result<Option<CustomerSummary<K>>, Error> {
    let (calibration, holdout): (Vec<&Day>, Vec<&Day>) =
        days.iter().partition(|d| d.day <= calibration_end);
    let mut purchase_days = calibration.iter().filter(|d| d.has_sale);
    let Some(first) = purchase_days.next() else {
        return Ok(None);
    };
    let mut frequency = 0u32;
    let mut last = first.day;
    let mut repeat_value_minor = 0i64;
    for day in purchase_days {
        frequency += 1;
        last = day.day;
        repeat_value_minor = checked_add(repeat_value_minor, day.net_minor)?;
    }
    let historical_value_minor = calibration
        .iter()
        .try_fold(0i64, |sum, d| checked_add(sum, d.net_minor))?;
    Ok(Some(CustomerSummary {
        customer: customer.clone(),
        first_purchase: first.day,
        frequency,
        recency_days: days_between(first.day, last),
        age_days: days_between(first.day, calibration_end),
        repeat_value_minor,
        historical_value_minor,
        holdout_frequency: u32::try_from(holdout.iter().filter(|d| d.has_sale).count())
            .unwrap_or(u32::MAX),
    }))
}

fn checked_add(sum: i64, amount: i64) -> Result<i64, Error> {
    sum.checked_add(amount).ok_or(Error::ValueOverflow)
}

/// Whole days from `from` to `to` (`to` ≥ `from`).
fn days_between(from: Date, to: Date) -> u32 {
    // `time` dates span at most ±9999 years (< 7.4 million days), so this always fits.
    match to.cmp(&from) {
        Ordering::Less => 0,
        _ => u32::try_from((to - from).whole_days()).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::date;

    fn buy(customer: u32, day: Date, amount_minor: i64) -> Purchase<u32> {
        Purchase {
            customer,
            day,
            amount_minor,
        }
    }

    #[test]
    fn several_purchases_on_one_day_are_one_purchase_worth_their_sum() {
        let purchases = [
            buy(1, date!(2024 - 01 - 01), 1000),
            buy(1, date!(2024 - 01 - 15), 300),
            buy(1, date!(2024 - 01 - 15), 200),
            buy(1, date!(2024 - 01 - 29), 700),
        ];
        let summary = summarise(&purchases, date!(2024 - 02 - 12)).unwrap();
        assert_eq!(
            summary,
            vec![CustomerSummary {
                customer: 1,
                first_purchase: date!(2024 - 01 - 01),
                frequency: 2,
                recency_days: 28,
                age_days: 42,
                repeat_value_minor: 1200,
                historical_value_minor: 2200,
                holdout_frequency: 0,
            }]
        );
        assert_eq!(summary[0].recency_weeks(), 4.0);
        assert_eq!(summary[0].age_weeks(), 6.0);
        assert_eq!(summary[0].mean_repeat_value_minor(), Some(600.0));
    }

    #[test]
    fn a_one_time_buyer_has_no_repeat_purchases_and_no_mean_spend() {
        let purchases = [buy(7, date!(2024 - 03 - 01), 4200)];
        let summary = summarise(&purchases, date!(2024 - 03 - 01)).unwrap();
        assert_eq!(summary[0].frequency, 0);
        assert_eq!(summary[0].recency_days, 0);
        assert_eq!(summary[0].age_days, 0);
        assert_eq!(summary[0].mean_repeat_value_minor(), None);
        assert_eq!(summary[0].historical_value_minor, 4200);
    }

    #[test]
    fn purchases_after_the_calibration_end_only_count_as_holdout() {
        let purchases = [
            buy(1, date!(2024 - 01 - 01), 1000),
            buy(1, date!(2024 - 02 - 01), 500),
            buy(1, date!(2024 - 03 - 02), 900),
            buy(1, date!(2024 - 03 - 02), 100),
            buy(1, date!(2024 - 04 - 01), -300),
            // First seen after the calibration end: not in the summary at all.
            buy(2, date!(2024 - 03 - 05), 800),
        ];
        let summary = summarise(&purchases, date!(2024 - 03 - 01)).unwrap();
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].frequency, 1);
        assert_eq!(summary[0].historical_value_minor, 1500);
        assert_eq!(summary[0].holdout_frequency, 1);
    }

    #[test]
    fn refunds_lower_value_but_never_count_as_visits() {
        let purchases = [
            buy(1, date!(2024 - 01 - 01), 1000),
            // Returned part of a basket and bought something else on the same day.
            buy(1, date!(2024 - 01 - 10), 500),
            buy(1, date!(2024 - 01 - 10), -200),
            // A refund on its own: no visit, and it lowers only the historical value.
            buy(1, date!(2024 - 01 - 20), -1000),
        ];
        let summary = summarise(&purchases, date!(2024 - 01 - 31)).unwrap();
        assert_eq!(summary[0].frequency, 1);
        assert_eq!(summary[0].recency_days, 9);
        assert_eq!(summary[0].repeat_value_minor, 300);
        assert_eq!(summary[0].historical_value_minor, 300);

        // A customer who only ever returned goods has no purchase history.
        let only_refunds = [buy(3, date!(2024 - 01 - 05), -999)];
        assert!(
            summarise(&only_refunds, date!(2024 - 01 - 31))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn zero_amount_sales_are_visits_worth_nothing() {
        let purchases = [
            buy(1, date!(2024 - 01 - 01), 0),
            buy(1, date!(2024 - 01 - 08), 0),
        ];
        let summary = summarise(&purchases, date!(2024 - 01 - 08)).unwrap();
        assert_eq!(summary[0].frequency, 1);
        assert_eq!(summary[0].mean_repeat_value_minor(), Some(0.0));
    }

    #[test]
    fn an_empty_history_summarises_to_no_customers() {
        let purchases: [Purchase<u32>; 0] = [];
        assert!(
            summarise(&purchases, date!(2024 - 01 - 01))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn amounts_that_overflow_are_refused() {
        let purchases = [
            buy(1, date!(2024 - 01 - 01), i64::MAX),
            buy(1, date!(2024 - 01 - 01), 1),
        ];
        assert_eq!(
            summarise(&purchases, date!(2024 - 01 - 01)),
            Err(Error::ValueOverflow)
        );
    }

    proptest! {
        /// Whatever the history: one summary per customer with a sale by the end, sorted,
        /// recency ≤ age, repeat purchases fewer than the calibration days, and the value
        /// identities hold.
        #[test]
        fn summaries_are_consistent_for_any_history(
            rows in proptest::collection::vec((0u8..6, 0i64..60, -5_000i64..20_000), 0..60),
            end_offset in 0i64..60,
        ) {
            let start = date!(2024 - 01 - 01);
            let purchases: Vec<Purchase<u8>> = rows
                .iter()
                .map(|&(customer, offset, amount_minor)| Purchase {
                    customer,
                    day: start + time::Duration::days(offset),
                    amount_minor,
                })
                .collect();
            let end = start + time::Duration::days(end_offset);
            let summary = summarise(&purchases, end).unwrap();
            prop_assert!(summary.windows(2).all(|w| w[0].customer < w[1].customer));
            for s in &summary {
                prop_assert!(s.recency_days <= s.age_days);
                prop_assert!((s.frequency == 0) == (s.recency_days == 0));
                prop_assert!(i64::from(s.frequency) <= end_offset);
                let net: i64 = purchases
                    .iter()
                    .filter(|p| p.customer == s.customer && p.day <= end)
                    .map(|p| p.amount_minor)
                    .sum();
                prop_assert_eq!(s.historical_value_minor, net);
            }
            let buyers: std::collections::BTreeSet<u8> = purchases
                .iter()
                .filter(|p| p.amount_minor >= 0 && p.day <= end)
                .map(|p| p.customer)
                .collect();
            prop_assert_eq!(summary.len(), buyers.len());
        }
    }
}
