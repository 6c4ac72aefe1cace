//! Derivative-free minimisation of a function of a few variables (Nelder–Mead simplex).
//!
//! Nelder & Mead (1965), with the standard coefficients and the ordering and tie rules
//! of Lagarias, Reeds, Wright & Wright (1998), "Convergence properties of the Nelder–Mead
//! simplex method in low dimensions": reflection 1, expansion 2, contraction ½, shrink ½.
//! It is what the `lifetimes` package and R's BTYD use to fit these models (through
//! scipy's and R's `optim`), so the fits can be compared with theirs.
//!
//! Our own rather than `argmin`'s: the model fits need N ≤ 4 variables on fixed-size
//! arrays, a convergence test on *both* the spread of values and the size of the simplex
//! (argmin 0.11 tests only the values' standard deviation, which can stop on a flat ridge
//! far from the optimum), and a clear "did not converge" outcome; argmin would bring seven
//! crates (anyhow, a second rand_core, web-time …) and unwraps the cost of its first
//! simplex. This is ~130 lines, tested below on functions with known minima.
//!
//! Non-finite function values are treated as +∞, so a caller can wall off a region by
//! returning ∞ or NaN there. A converged run is restarted from its best point with a
//! fresh simplex (a collapsed simplex can stall short of a minimum) until a restart no
//! longer improves it, at most five times.

use std::cell::Cell;

/// Tolerances and budget of a minimisation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Edge length of the starting simplex along each axis.
    pub step: f64,
    /// Converged when the worst vertex's value is within this of the best's …
    pub value_tolerance: f64,
    /// … and every vertex is within this of the best along every axis.
    pub point_tolerance: f64,
    /// Function evaluations allowed, restarts included.
    pub max_evaluations: usize,
}

/// Where a minimisation ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Minimum<const N: usize> {
    pub point: [f64; N],
    pub value: f64,
    pub evaluations: usize,
}

/// The evaluation budget ran out before the simplex converged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted {
    pub evaluations: usize,
}

/// Restarts after a first convergence before giving up on the result settling.
const MAX_RESTARTS: usize = 5;

/// Minimises `f` from `start`.
pub(crate) fn minimise<const N: usize>(
    mut f: impl FnMut(&[f64; N]) -> f64,
    start: [f64; N],
    settings: &Settings,
) -> Result<Minimum<N>, Exhausted> {
    let evaluations = Cell::new(0usize);
    let mut objective = |x: &[f64; N]| {
        evaluations.set(evaluations.get() + 1);
        let value = f(x);
        if value.is_nan() { f64::INFINITY } else { value }
    };
    let mut best = run(&mut objective, start, settings, &evaluations)?;
    for _ in 0..MAX_RESTARTS {
        let again = run(&mut objective, best.point, settings, &evaluations)?;
        let settled = again.value >= best.value - settings.value_tolerance;
        if again.value <= best.value {
            best = again;
        }
        if settled {
            return Ok(best);
        }
    }
    Err(Exhausted {
        evaluations: evaluations.get(),
    })
}

/// One Nelder–Mead run to convergence; `evaluations` counts every call of `f` so far.
fn run<const N: usize>(
    f: &mut impl FnMut(&[f64; N]) -> f64,
    start: [f64; N],
    settings: &Settings,
    evaluations: &Cell<usize>,
) -> Result<Minimum<N>, Exhausted> {
    let mut eval = |x: &[f64; N]| (*x, f(x));
    let mut simplex: Vec<([f64; N], f64)> = Vec::with_capacity(N + 1);
    simplex.push(eval(&start));
    for axis in 0..N {
        let mut vertex = start;
        vertex[axis] += settings.step;
        simplex.push(eval(&vertex));
    }
    loop {
        simplex.sort_by(|x, y| x.1.total_cmp(&y.1));
        let (best_point, best_value) = simplex[0];
        let (worst_point, worst_value) = simplex[N];
        let second_worst_value = simplex[N - 1].1;
        if converged(&simplex, settings) {
            return Ok(Minimum {
                point: best_point,
                value: best_value,
                evaluations: evaluations.get(),
            });
        }
        if evaluations.get() >= settings.max_evaluations {
            return Err(Exhausted {
                evaluations: evaluations.get(),
            });
        }
        let centroid = centroid(&simplex[..N]);
        let along = |t: f64| -> [f64; N] {
            std::array::from_fn(|i| centroid[i] + t * (worst_point[i] - centroid[i]))
        };
        let reflected = eval(&along(-1.0));
        let replacement = if reflected.1 < best_value {
            let expanded = eval(&along(-2.0));
            Some(if expanded.1 < reflected.1 {
                expanded
            } else {
                reflected
            })
        } else if reflected.1 < second_worst_value {
            Some(reflected)
        } else if reflected.1 < worst_value {
            let outside = eval(&along(-0.5));
            (outside.1 <= reflected.1).then_some(outside)
        } else {
            let inside = eval(&along(0.5));
            (inside.1 < worst_value).then_some(inside)
        };
        match replacement {
            Some(vertex) => simplex[N] = vertex,
            None => {
                for vertex in simplex.iter_mut().skip(1) {
                    let shrunk = std::array::from_fn(|i| {
                        best_point[i] + 0.5 * (vertex.0[i] - best_point[i])
                    });
                    *vertex = eval(&shrunk);
                }
            }
        }
    }
}

fn converged<const N: usize>(simplex: &[([f64; N], f64)], settings: &Settings) -> bool {
    let (best_point, best_value) = simplex[0];
    let values_close = simplex
        .iter()
        .all(|(_, v)| v.is_finite() && v - best_value <= settings.value_tolerance);
    let points_close = simplex.iter().all(|(p, _)| {
        p.iter()
            .zip(&best_point)
            .all(|(x, b)| (x - b).abs() <= settings.point_tolerance)
    });
    values_close && points_close
}

fn centroid<const N: usize>(vertices: &[([f64; N], f64)]) -> [f64; N] {
    let count = vertices.len() as f64;
    std::array::from_fn(|i| vertices.iter().map(|(p, _)| p[i]).sum::<f64>() / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIGHT: Settings = Settings {
        step: 0.5,
        value_tolerance: 1e-14,
        point_tolerance: 1e-9,
        max_evaluations: 20_000,
    };

    #[test]
    fn finds_the_minimum_of_a_shifted_quadratic() {
        let found = minimise(
            |x: &[f64; 3]| {
                (x[0] - 1.0).powi(2) + 10.0 * (x[1] + 2.0).powi(2) + (x[2] - 0.5).powi(2)
            },
            [0.0; 3],
            &TIGHT,
        )
        .unwrap();
        for (got, want) in found.point.iter().zip([1.0, -2.0, 0.5]) {
            assert!((got - want).abs() < 1e-6, "{:?}", found.point);
        }
        assert!(found.evaluations > 0);
    }

    #[test]
    fn follows_the_rosenbrock_valley_to_its_minimum() {
        let rosenbrock = |x: &[f64; 2]| 100.0 * (x[1] - x[0] * x[0]).powi(2) + (1.0 - x[0]).powi(2);
        let found = minimise(rosenbrock, [-1.2, 1.0], &TIGHT).unwrap();
        assert!((found.point[0] - 1.0).abs() < 1e-6 && (found.point[1] - 1.0).abs() < 1e-6);
        assert!(found.value < 1e-12);
    }

    #[test]
    fn finds_the_minimum_of_a_four_dimensional_rosenbrock() {
        let rosenbrock = |x: &[f64; 4]| {
            (0..3)
                .map(|i| 100.0 * (x[i + 1] - x[i] * x[i]).powi(2) + (1.0 - x[i]).powi(2))
                .sum::<f64>()
        };
        let found = minimise(rosenbrock, [-1.0, 1.0, -1.0, 1.0], &TIGHT).unwrap();
        assert!(
            found.point.iter().all(|x| (x - 1.0).abs() < 1e-5),
            "{:?}",
            found.point
        );
    }

    #[test]
    fn stays_out_of_a_region_walled_off_with_nan() {
        // Minimum of the bowl is at x = −1, but the function is undefined below 0.
        let found = minimise(
            |x: &[f64; 1]| {
                if x[0] < 0.0 {
                    f64::NAN
                } else {
                    (x[0] + 1.0).powi(2)
                }
            },
            [2.0],
            &TIGHT,
        )
        .unwrap();
        assert!(found.point[0] >= 0.0 && found.point[0] < 1e-6);
    }

    #[test]
    fn reports_exhaustion_when_the_budget_is_too_small() {
        let settings = Settings {
            max_evaluations: 10,
            ..TIGHT
        };
        let outcome = minimise(
            |x: &[f64; 2]| x[0] * x[0] + x[1] * x[1],
            [5.0, 5.0],
            &settings,
        );
        assert!(matches!(outcome, Err(Exhausted { evaluations }) if evaluations >= 10));
    }

    #[test]
    fn reports_exhaustion_on_a_function_without_a_minimum() {
        let outcome = minimise(|x: &[f64; 2]| x[0] + x[1], [0.0, 0.0], &TIGHT);
        assert!(outcome.is_err());
    }
}
