//! The Gauss hypergeometric function ₂F₁(a, b; c; z) on 0 ≤ z < 1, by its power series.
//!
//! ₂F₁(a, b; c; z) = Σₙ (a)ₙ (b)ₙ / ((c)ₙ n!) zⁿ, with (x)ₙ = x (x+1) … (x+n−1) the rising
//! factorial (Abramowitz & Stegun 15.1.1; DLMF 15.2.1). The series converges for |z| < 1;
//! the BG/NBD expected purchase count needs it only at z = t / (α + T + t) ∈ [0, 1).
//!
//! The BG/NBD formulas divide by (a − 1), which vanishes for a fitted a = 1; they are
//! rewritten in [`crate::bgnbd`] around the *scaled excess*
//!
//! ```text
//! E(a, b; c; z) = c (₂F₁(a, b; c; z) − 1) / b = Σ_{n≥1} (a)ₙ (b+1)ₙ₋₁ / ((c+1)ₙ₋₁ n!) zⁿ
//! ```
//!
//! which stays finite as b → 0 and c → 0 (the factors b and c cancel term by term), so no
//! caller ever forms 0/0. [`hyp2f1`] is 1 + (b/c)·E.
//!
//! Summation is careful rather than fast:
//! - it stops only when a rigorous bound on the rest of the series is below a quarter of an
//!   ulp of the sum: once n > max(−a, −b) the term ratio z (a+n)/(n+1) · (b+n)/(c+n) has
//!   factors that move monotonically towards 1, so every later ratio is at most
//!   ρ = z·max((a+n)/(n+1), 1)·max((b+n)/(c+n), 1) and the tail at most |tₙ| ρ / (1 − ρ);
//! - a terminating series (a or b a non-positive integer) ends at its last non-zero term;
//! - it refuses, with [`Error::Series`], a sum whose terms cancel so much that fewer than
//!   ten significant digits survive (Σ|tₙ| > 10⁶ |Σtₙ|), one that overflows, and one that
//!   needs more than a million terms (z within about 4·10⁻⁵ of 1).

use crate::error::Error;

/// Most terms summed before giving up: enough for z up to about 0.99996.
const MAX_TERMS: u32 = 1_000_000;

/// Largest tolerated ratio Σ|tₙ| / |Σtₙ|: beyond it fewer than ten digits are left.
const MAX_CANCELLATION: f64 = 1e6;

/// ₂F₁(a, b; c; z) for finite a, b, c > 0 and 0 ≤ z < 1.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Result<f64, Error> {
    if !(c.is_finite() && c > 0.0) {
        return Err(Error::InvalidInput {
            what: "hypergeometric parameter c",
            expected: "finite and > 0",
            value: c,
        });
    }
    Ok(1.0 + b / c * scaled_excess(a, b, c, z)?)
}

/// c (₂F₁(a, b; c; z) − 1) / b, summed directly so that it is finite at b = 0 and c = 0.
///
/// Domain: finite a and b, finite c > −1, 0 ≤ z < 1.
pub fn scaled_excess(a: f64, b: f64, c: f64, z: f64) -> Result<f64, Error> {
    check_domain(a, b, c, z)?;
    let mut term = a * z;
    if term == 0.0 {
        return Ok(0.0);
    }
    let mut sum = term;
    let mut sum_abs = term.abs();
    // `term` is t_n; each step makes t_{n+1} = t_n · (a+n)(b+n) z / ((c+n)(n+1)).
    for n in 1..MAX_TERMS {
        let n = f64::from(n);
        let to_one_in_a = (a + n) / (n + 1.0);
        let to_one_in_b = (b + n) / (c + n);
        term *= to_one_in_a * to_one_in_b * z;
        if term == 0.0 {
            return settled(sum, sum_abs, z);
        }
        sum += term;
        sum_abs += term.abs();
        if !sum_abs.is_finite() {
            return Err(Error::Series {
                z,
                reason: "terms overflow",
            });
        }
        let next = n + 1.0;
        if next > -a && next > -b {
            let ratio_bound =
                z * ((a + next) / (next + 1.0)).max(1.0) * ((b + next) / (c + next)).max(1.0);
            if ratio_bound < 1.0 {
                let tail = term.abs() * ratio_bound / (1.0 - ratio_bound);
                if tail <= 0.25 * f64::EPSILON * sum.abs() {
                    return settled(sum, sum_abs, z);
                }
            }
        }
    }
    Err(Error::Series {
        z,
        reason: "more than a million terms",
    })
}

fn check_domain(a: f64, b: f64, c: f64, z: f64) -> Result<(), Error> {
    let checks = [
        (a.is_finite(), "hypergeometric parameter a", "finite", a),
        (b.is_finite(), "hypergeometric parameter b", "finite", b),
        (
            c.is_finite() && c > -1.0,
            "hypergeometric parameter c",
            "finite and > -1",
            c,
        ),
        (
            (0.0..1.0).contains(&z),
            "hypergeometric argument z",
            "in [0, 1)",
            z,
        ),
    ];
    match checks.into_iter().find(|(ok, ..)| !ok) {
        Some((_, what, expected, value)) => Err(Error::InvalidInput {
            what,
            expected,
            value,
        }),
        None => Ok(()),
    }
}

/// Accepts a finished sum unless cancellation ate its digits.
fn settled(sum: f64, sum_abs: f64, z: f64) -> Result<f64, Error> {
    if sum_abs > MAX_CANCELLATION * sum.abs() {
        return Err(Error::Series {
            z,
            reason: "terms cancel, too few digits left",
        });
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(got: f64, want: f64, rel: f64) -> bool {
        (got - want).abs() <= rel * want.abs().max(f64::MIN_POSITIVE)
    }

    #[test]
    fn matches_the_logarithm_closed_form() {
        // ₂F₁(1, 1; 2; z) = −ln(1 − z) / z (A&S 15.1.3).
        for z in [1e-6, 0.1, 0.5, 0.9, 0.99, 0.999] {
            let got = hyp2f1(1.0, 1.0, 2.0, z).unwrap();
            let want = -(-z).ln_1p() / z;
            assert!(close(got, want, 1e-13), "z={z}: {got} vs {want}");
        }
    }

    #[test]
    fn matches_the_binomial_closed_form() {
        // ₂F₁(a, b; b; z) = (1 − z)^(−a) (A&S 15.1.8).
        for (a, b, z) in [
            (0.3, 2.0, 0.7),
            (2.5, 0.4, 0.95),
            (-1.7, 3.0, 0.5),
            (7.0, 1.0, 0.2),
        ] {
            let got = hyp2f1(a, b, b, z).unwrap();
            let want = (1.0 - z).powf(-a);
            assert!(
                close(got, want, 1e-13),
                "a={a} b={b} z={z}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn matches_the_arcsine_closed_form() {
        // ₂F₁(1/2, 1/2; 3/2; x²) = arcsin(x) / x (A&S 15.1.6).
        for x in [0.1f64, 0.5, 0.9, 0.99] {
            let got = hyp2f1(0.5, 0.5, 1.5, x * x).unwrap();
            let want = x.asin() / x;
            assert!(close(got, want, 1e-13), "x={x}: {got} vs {want}");
        }
    }

    #[test]
    fn a_terminating_series_is_its_polynomial() {
        // a = −2: ₂F₁ = 1 − 2bz/c + b(b+1)z²/(c(c+1)).
        let (b, c, z) = (1.5, 2.5, 0.8);
        let want = 1.0 - 2.0 * b * z / c + b * (b + 1.0) * z * z / (c * (c + 1.0));
        assert!(close(hyp2f1(-2.0, b, c, z).unwrap(), want, 1e-15));
    }

    #[test]
    fn agrees_with_mpmath_at_the_cdnow_forecast_arguments() {
        // mpmath 1.3 (30 digits) at the BG/NBD arguments of the CDNOW fit
        // (r, α, a, b) = (0.242595, 4.413603, 0.792922, 2.425906): a new customer over 39
        // weeks, ₂F₁(r, b; a+b−1; 39/(α+39)), and a customer with x = 2, T = 272/7 weeks
        // over 52 weeks, ₂F₁(r+2, b+2; a+b+1; 52/(α+T+52)).
        let got = hyp2f1(0.242595, 2.425906, 2.218828, 39.0 / (4.413603 + 39.0)).unwrap();
        assert!(close(got, 1.935_425_626_241_147_2, 1e-14), "{got}");
        let z = 52.0 / (4.413603 + 272.0 / 7.0 + 52.0);
        let got = hyp2f1(2.242595, 4.425906, 4.218828, z).unwrap();
        assert!(close(got, 6.488_739_266_436_02, 1e-14), "{got}");
    }

    #[test]
    fn the_scaled_excess_is_continuous_where_b_and_c_vanish() {
        // c(₂F₁(1, b; c; z) − 1)/b at c = 1: ₂F₁(1, b; 1; z) = (1 − z)^(−b), whose excess
        // over 1, divided by b, tends to −ln(1 − z) as b → 0.
        let z = 0.75f64;
        let at_zero = scaled_excess(1.0, 0.0, 1.0, z).unwrap();
        assert!(close(at_zero, -(-z).ln_1p(), 1e-14));
        let near = scaled_excess(1.0, 1e-9, 1.0, z).unwrap();
        assert!(close(near, at_zero, 1e-8));
        // c → 0: c(F − 1)/b has a finite limit; both sides of 0 agree with it.
        let left = scaled_excess(0.7, 0.3, -1e-9, z).unwrap();
        let right = scaled_excess(0.7, 0.3, 1e-9, z).unwrap();
        let mid = scaled_excess(0.7, 0.3, 0.0, z).unwrap();
        assert!(close(left, mid, 1e-7) && close(right, mid, 1e-7));
    }

    #[test]
    fn refuses_arguments_outside_its_domain() {
        for (a, b, c, z) in [
            (1.0, 1.0, 2.0, 1.0),
            (1.0, 1.0, 2.0, -0.1),
            (1.0, 1.0, 2.0, f64::NAN),
            (f64::INFINITY, 1.0, 2.0, 0.5),
            (1.0, 1.0, -1.5, 0.5),
        ] {
            assert!(matches!(
                scaled_excess(a, b, c, z),
                Err(Error::InvalidInput { .. })
            ));
        }
        assert!(matches!(
            hyp2f1(1.0, 1.0, 0.0, 0.5),
            Err(Error::InvalidInput { .. })
        ));
    }

    #[test]
    fn refuses_a_z_too_close_to_one_rather_than_truncating() {
        assert!(matches!(
            hyp2f1(1.0, 1.0, 2.0, 1.0 - 1e-9),
            Err(Error::Series { .. })
        ));
    }

    #[test]
    fn refuses_a_sum_that_cancels_away_its_digits() {
        // a = −60.5: the terms alternate with binomial-sized magnitudes around a tiny sum.
        assert!(matches!(
            hyp2f1(-60.5, 1.0, 1.0, 0.99),
            Err(Error::Series { .. })
        ));
    }

    proptest! {
        /// Euler's transformation ₂F₁(a, b; c; z) = (1 − z)^(c−a−b) ₂F₁(c−a, c−b; c; z)
        /// (A&S 15.3.3) relates two different series; agreement checks the summation.
        #[test]
        fn satisfies_eulers_transformation(
            a in 0.05f64..6.0,
            b in 0.05f64..6.0,
            extra in 0.05f64..6.0,
            z in 0.0f64..0.95,
        ) {
            let c = a.max(b) + extra;
            let left = hyp2f1(a, b, c, z).unwrap();
            let right = (1.0 - z).powf(c - a - b) * hyp2f1(c - a, c - b, c, z).unwrap();
            prop_assert!(close(left, right, 1e-11), "{left} vs {right}");
        }

        /// With positive parameters every term is positive: the sum grows with z and is ≥ 1.
        #[test]
        fn grows_with_z_for_positive_parameters(
            a in 0.01f64..10.0,
            b in 0.01f64..10.0,
            c in 0.01f64..10.0,
            z in 0.0f64..0.9,
            dz in 0.0f64..0.09,
        ) {
            let low = hyp2f1(a, b, c, z).unwrap();
            let high = hyp2f1(a, b, c, z + dz).unwrap();
            prop_assert!(low >= 1.0 && high >= low);
        }
    }
}
