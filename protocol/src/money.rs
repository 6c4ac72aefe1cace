//! Money and points as integer newtypes.
//!
//! Every amount in the product is an integer: money in minor units (cents, kopecks),
//! points as whole points. There is no floating point anywhere an amount is computed.
//! Arithmetic that can overflow is checked and reports [`AmountError::Overflow`]
//! instead of wrapping, because a wrapped balance is a customer's money gone wrong.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an amount could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The result does not fit in an `i64`.
    #[error("amount overflows")]
    Overflow,
}

macro_rules! integer_amount {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// Nothing: the identity of checked sums.
            pub const ZERO: Self = Self(0);

            /// The raw integer.
            pub const fn get(self) -> i64 {
                self.0
            }

            /// `self + other`, or an error instead of wrapping.
            pub fn checked_add(self, other: Self) -> Result<Self, AmountError> {
                self.0.checked_add(other.0).map(Self).ok_or(AmountError::Overflow)
            }

            /// `self - other`, or an error instead of wrapping.
            pub fn checked_sub(self, other: Self) -> Result<Self, AmountError> {
                self.0.checked_sub(other.0).map(Self).ok_or(AmountError::Overflow)
            }

            /// Sum of an iterator, or an error on overflow.
            pub fn checked_sum<I: IntoIterator<Item = Self>>(items: I) -> Result<Self, AmountError> {
                items.into_iter().try_fold(Self::ZERO, |acc, x| acc.checked_add(x))
            }

            /// True when negative.
            pub const fn is_negative(self) -> bool {
                self.0 < 0
            }

            /// The larger of `self` and zero.
            pub fn clamp_non_negative(self) -> Self {
                Self(self.0.max(0))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

integer_amount!(
    /// An amount of money in minor units (e.g. cents). May be negative in ledgers
    /// (refunds); receipts only carry non-negative amounts.
    Money
);

integer_amount!(
    /// A number of loyalty points. Balances may go negative at HQ when offline
    /// redemptions at several stores overlap; everywhere else they are non-negative.
    Points
);

/// A rate in basis points: 10 000 bp = 100 %.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct BasisPoints(pub u32);

impl BasisPoints {
    /// 100 %.
    pub const FULL: Self = Self(10_000);

    /// The raw number of basis points.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for BasisPoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}bp", self.0)
    }
}

/// `floor(value * numerator / denominator)` computed in 128 bits, for non-negative
/// inputs. Returns an error when the result does not fit in `i64` or the denominator
/// is zero.
pub fn mul_div_floor(value: i64, numerator: i128, denominator: i128) -> Result<i64, AmountError> {
    if denominator == 0 {
        return Err(AmountError::Overflow);
    }
    let product = i128::from(value)
        .checked_mul(numerator)
        .ok_or(AmountError::Overflow)?;
    let q = product.div_euclid(denominator);
    i64::try_from(q).map_err(|_| AmountError::Overflow)
}

/// Splits `total` over `weights` in proportion, so that the parts sum exactly to
/// `total` (largest-remainder method; ties go to the earlier weight).
///
/// Each part is `floor(total * w / sum)` or one more, so no part exceeds its
/// weight when `total <= sum(weights)`. All inputs must be non-negative; with a zero
/// weight sum everything is zero (and `total` must then be zero too). Weights are
/// 128-bit so that exact accrual numerators (amount x rate x multiplier) fit.
pub fn allocate_proportionally(total: i64, weights: &[i128]) -> Result<Vec<i64>, AmountError> {
    let sum = weights
        .iter()
        .try_fold(0i128, |acc, &w| acc.checked_add(w))
        .ok_or(AmountError::Overflow)?;
    if total < 0 || weights.iter().any(|&w| w < 0) {
        return Err(AmountError::Overflow);
    }
    if sum == 0 {
        return if total == 0 {
            Ok(vec![0; weights.len()])
        } else {
            Err(AmountError::Overflow)
        };
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut given: i128 = 0;
    for (i, &w) in weights.iter().enumerate() {
        let exact = i128::from(total)
            .checked_mul(w)
            .ok_or(AmountError::Overflow)?;
        let part = exact / sum;
        parts.push(part);
        remainders.push((exact % sum, i));
        given += part;
    }
    let mut left = i128::from(total) - given;
    // Largest remainder first; on equal remainders the earlier line wins, so the
    // result is deterministic on the agent and at HQ.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(rem, i) in &remainders {
        if left == 0 {
            break;
        }
        if rem > 0 {
            parts[i] += 1;
            left -= 1;
        }
    }
    debug_assert_eq!(left, 0, "sum of floors is within len of total");
    parts
        .into_iter()
        .map(|p| i64::try_from(p).map_err(|_| AmountError::Overflow))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn checked_add_reports_overflow_instead_of_wrapping() {
        assert_eq!(
            Money(i64::MAX).checked_add(Money(1)),
            Err(AmountError::Overflow)
        );
        assert_eq!(Points(2).checked_add(Points(3)), Ok(Points(5)));
    }

    #[test]
    fn checked_sum_of_many_amounts_detects_overflow() {
        assert_eq!(
            Money::checked_sum([Money(i64::MAX - 1), Money(1), Money(1)]),
            Err(AmountError::Overflow)
        );
        assert_eq!(Money::checked_sum([Money(1), Money(2)]), Ok(Money(3)));
    }

    #[test]
    fn mul_div_floor_rounds_down() {
        assert_eq!(mul_div_floor(999, 500, 10_000), Ok(49));
        assert_eq!(mul_div_floor(i64::MAX, 10_000, 10_000), Ok(i64::MAX));
        assert_eq!(mul_div_floor(i64::MAX, 2, 1), Err(AmountError::Overflow));
    }

    #[test]
    fn allocation_uses_largest_remainder_and_breaks_ties_to_the_first_line() {
        assert_eq!(
            allocate_proportionally(10, &[1, 1, 1]).unwrap(),
            vec![4, 3, 3]
        );
        assert_eq!(allocate_proportionally(0, &[0, 0]).unwrap(), vec![0, 0]);
        assert!(allocate_proportionally(1, &[0, 0]).is_err());
    }

    #[test]
    fn amounts_serialize_as_bare_integers() {
        assert_eq!(serde_json::to_string(&Money(1250)).unwrap(), "1250");
        assert_eq!(serde_json::from_str::<Points>("-7").unwrap(), Points(-7));
    }

    proptest! {
        #[test]
        fn allocation_sums_exactly_and_never_exceeds_a_weight(
            weights in proptest::collection::vec(0i64..1_000_000_000, 1..20),
            share in 0u32..=10_000,
        ) {
            let sum: i64 = weights.iter().sum();
            let total = mul_div_floor(sum, i128::from(share), 10_000).unwrap();
            let wide: Vec<i128> = weights.iter().map(|&w| i128::from(w)).collect();
            let parts = allocate_proportionally(total, &wide).unwrap();
            prop_assert_eq!(parts.iter().sum::<i64>(), total);
            for (p, w) in parts.iter().zip(&weights) {
                prop_assert!(*p >= 0 && p <= w);
            }
        }
    }
}
