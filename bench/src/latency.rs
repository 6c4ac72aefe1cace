//! Latency quantiles, the one definition every figure uses.

use std::time::Duration;

/// The `q`-quantile of sorted latencies (zero when there are none).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let last = sorted.len() - 1;
    let i = ((last as f64) * q).round() as usize;
    sorted[i.min(last)]
}

/// [`quantile`] in milliseconds.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    quantile(sorted, q).as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_from_sorted_latencies() {
        let l: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&l, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&l, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&[], 0.99), Duration::ZERO);
        let l: Vec<Duration> = (1..=2000).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&l, 0.999), 1998.0);
    }
}
