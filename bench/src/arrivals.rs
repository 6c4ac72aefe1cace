//! When the simulated tills push: back to back (the saturation), or as Poisson
//! processes offering a stated rate. Real tills push when customers pay, independently
//! of each other, so their arrivals bunch up at random; a fixed grid never does and
//! flatters the latency.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::time::Duration;

/// How the terminals push.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// Each till pushes again as soon as it is answered, `rounds` times: the most the
    /// servers can take (the saturation).
    BackToBack {
        /// Pushes per till.
        rounds: u64,
    },
    /// All tills together offer `entries_per_s` during `window`, each till's pushes a
    /// Poisson process of its share of that rate. Seeded: a run offers the same
    /// arrivals every time.
    Poisson {
        /// The offered rate, all tills together.
        entries_per_s: f64,
        /// How long arrivals are offered.
        window: Duration,
        /// The first till's seed (till `i` uses `seed + i`).
        seed: u64,
    },
}

impl Load {
    /// When till `till` of `tills` (each push `batch` entries) pushes: per push, its
    /// due time from the start, or `None` for "as soon as the previous one is
    /// answered".
    pub fn schedule(&self, till: usize, tills: usize, batch: u64) -> Vec<Option<Duration>> {
        match *self {
            Self::BackToBack { rounds } => {
                vec![None; usize::try_from(rounds).unwrap_or(usize::MAX)]
            }
            Self::Poisson {
                entries_per_s,
                window,
                seed,
            } => {
                let pushes_per_s = entries_per_s / batch.max(1) as f64 / tills.max(1) as f64;
                let mut rng = StdRng::seed_from_u64(seed.wrapping_add(till as u64));
                poisson_arrivals(&mut rng, pushes_per_s, window)
                    .into_iter()
                    .map(Some)
                    .collect()
            }
        }
    }

    /// The offered rate in entries/s (`None` back to back: as fast as answered).
    pub fn offered_entries_per_s(&self) -> Option<f64> {
        match *self {
            Self::BackToBack { .. } => None,
            Self::Poisson { entries_per_s, .. } => Some(entries_per_s),
        }
    }
}

/// The arrival times of a Poisson process of `rate_per_s` within `window`: the gaps
/// between arrivals are independent and exponentially distributed with mean
/// 1/`rate_per_s`. None for a rate that is not positive.
fn poisson_arrivals(rng: &mut StdRng, rate_per_s: f64, window: Duration) -> Vec<Duration> {
    let mut arrivals = Vec::new();
    if !(rate_per_s.is_finite() && rate_per_s > 0.0) {
        return arrivals;
    }
    let mut t = 0.0;
    loop {
        // `random` is in [0, 1): 1 - u is in (0, 1], whose logarithm is finite.
        let u: f64 = rng.random();
        t += -(1.0 - u).ln() / rate_per_s;
        if t >= window.as_secs_f64() {
            return arrivals;
        }
        arrivals.push(Duration::from_secs_f64(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gaps of `arrivals` (from 0), in seconds.
    fn gaps(arrivals: &[Duration]) -> Vec<f64> {
        let mut last = 0.0;
        arrivals
            .iter()
            .map(|a| {
                let gap = a.as_secs_f64() - last;
                last = a.as_secs_f64();
                gap
            })
            .collect()
    }

    #[test]
    fn poisson_arrivals_offer_the_rate_with_exponential_gaps() {
        let mut rng = StdRng::seed_from_u64(7);
        let arrivals = poisson_arrivals(&mut rng, 200.0, Duration::from_secs(100));
        // 20,000 expected; the standard deviation of a Poisson count is its square
        // root (141), so 3 % is over 4 deviations.
        let n = arrivals.len() as f64;
        assert!((n / 20_000.0 - 1.0).abs() < 0.03, "{n} arrivals");
        assert!(arrivals.windows(2).all(|w| w[0] <= w[1]));
        assert!(arrivals.iter().all(|a| *a < Duration::from_secs(100)));
        let gaps = gaps(&arrivals);
        let mean = gaps.iter().sum::<f64>() / n;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
        // Exponential gaps: the standard deviation equals the mean (a fixed grid has
        // none), and about e^-1 of the gaps exceed the mean.
        assert!((mean * 200.0 - 1.0).abs() < 0.03, "mean gap {mean}");
        assert!((var.sqrt() / mean - 1.0).abs() < 0.05, "sd {}", var.sqrt());
        let longer = gaps.iter().filter(|g| **g > mean).count() as f64 / n;
        assert!((longer - (-1.0f64).exp()).abs() < 0.02, "{longer}");
    }

    #[test]
    fn poisson_load_splits_the_rate_over_the_tills_and_is_seeded() {
        let load = Load::Poisson {
            entries_per_s: 5_000.0,
            window: Duration::from_secs(40),
            seed: 1,
        };
        // 5,000 entries/s in pushes of 10 over 500 tills: one push a second each.
        let total: usize = (0..500).map(|i| load.schedule(i, 500, 10).len()).sum();
        assert!((total as f64 / 20_000.0 - 1.0).abs() < 0.03, "{total}");
        assert_eq!(load.schedule(3, 500, 10), load.schedule(3, 500, 10));
        assert_ne!(load.schedule(3, 500, 10), load.schedule(4, 500, 10));
        assert!(load.schedule(3, 500, 10).iter().all(Option::is_some));
        assert_eq!(load.offered_entries_per_s(), Some(5_000.0));
    }

    #[test]
    fn back_to_back_pushes_as_soon_as_answered() {
        let load = Load::BackToBack { rounds: 4 };
        assert_eq!(load.schedule(0, 500, 10), vec![None; 4]);
        assert_eq!(load.offered_entries_per_s(), None);
    }

    #[test]
    fn no_arrivals_without_a_positive_rate() {
        let mut rng = StdRng::seed_from_u64(1);
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(poisson_arrivals(&mut rng, rate, Duration::from_secs(1)).is_empty());
        }
    }
}
