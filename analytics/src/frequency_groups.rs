//! Customers grouped by repeat frequency, identical histories merged into weights: the
//! shape both model likelihoods are evaluated over.
//!
//! The ln Γ terms of both likelihoods depend on the frequency x alone, so they are
//! computed once per group; customers with identical data (many one-time buyers share an
//! age, many buyers a basket value) are evaluated once and counted with their weight.
//! On CDNOW's 23,570 customers this cuts each likelihood evaluation to a few hundred ln Γ
//! calls and a few logarithms per distinct repeat buyer.

use std::cmp::Ordering;

/// The customers with one frequency.
pub(crate) struct FrequencyGroup<T> {
    /// Their repeat purchases (x).
    pub frequency: f64,
    /// How many customers the group holds.
    pub customers: f64,
    /// Each distinct per-customer datum with how many customers share it.
    pub distinct: Vec<(T, f64)>,
}

/// Groups `(frequency, datum)` rows by frequency, merging equal data; `order` must be a
/// total order consistent with `==` on the data.
pub(crate) fn group_by_frequency<T: Copy + PartialEq>(
    mut rows: Vec<(u32, T)>,
    order: impl Fn(&T, &T) -> Ordering,
) -> Vec<FrequencyGroup<T>> {
    rows.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| order(&x.1, &y.1)));
    rows.chunk_by(|x, y| x.0 == y.0)
        .map(|same| FrequencyGroup {
            frequency: f64::from(same[0].0),
            customers: same.len() as f64,
            distinct: same
                .chunk_by(|x, y| x.1 == y.1)
                .map(|identical| (identical[0].1, identical.len() as f64))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_frequency_and_counts_identical_data() {
        let rows = vec![(2, 5.0), (0, 1.0), (2, 3.0), (0, 1.0), (2, 5.0), (0, 4.0)];
        let groups = group_by_frequency(rows, |x: &f64, y: &f64| x.total_cmp(y));
        assert_eq!(groups.len(), 2);
        assert_eq!((groups[0].frequency, groups[0].customers), (0.0, 3.0));
        assert_eq!(groups[0].distinct, vec![(1.0, 2.0), (4.0, 1.0)]);
        assert_eq!((groups[1].frequency, groups[1].customers), (2.0, 3.0));
        assert_eq!(groups[1].distinct, vec![(3.0, 1.0), (5.0, 2.0)]);
        assert!(group_by_frequency(Vec::<(u32, f64)>::new(), f64::total_cmp).is_empty());
    }
}
