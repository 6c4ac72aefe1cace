//! Maximum-likelihood estimation of strictly positive parameters, shared by both fits.
//!
//! Each parameter is searched as θ = ln(parameter / start), so positivity holds by
//! construction and a step means the same *relative* change for a parameter of 0.2 as for
//! one of 1,500 (γ in cents). The objective is the mean negative log-likelihood per
//! customer, so the tolerances mean the same for 100 customers as for 100,000.
//!
//! A maximum-likelihood estimate need not exist: if nobody ever lapses, or every repeat
//! buyer's mean is exactly their own average with no spread between baskets, the
//! likelihood keeps rising as a parameter runs to 0 or ∞ — often so slowly that the
//! optimiser's tolerances are met on the way. Two checks turn that into
//! [`Error::Degenerate`] instead of parameters:
//! - the search is walled at e^±25 of the (data-scaled) start, and an estimate beyond
//!   e^±20 of it is refused;
//! - the observed information (the curvature of the log-likelihood in log-parameter
//!   space, by central differences) must be positive definite, and the standard error of
//!   every ln(parameter) it implies at most 3: beyond that a parameter is uncertain by a
//!   factor e³ ≈ 20 at one standard error, and the data does not identify it. These
//!   standard errors (≈ relative standard errors of the parameters) are returned.

use crate::error::{Error, Model};
use crate::nelder_mead::{self, Settings};

/// Fitted parameters with the log-likelihood they reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Estimate<const N: usize> {
    pub params: [f64; N],
    pub log_likelihood: f64,
    /// Standard error of ln(parameter), from the observed information.
    pub log_standard_errors: [f64; N],
    pub evaluations: usize,
}

/// Beyond this |θ| the objective is +∞.
const WALL: f64 = 25.0;
/// Beyond this |θ| the estimate is a parameter running away, not an optimum.
const RUNAWAY: f64 = 20.0;
/// Largest standard error of a ln(parameter) that still counts as identified.
const MAX_LOG_STANDARD_ERROR: f64 = 3.0;
/// Step in θ of the finite differences: truncation error ~h² ≈ 10⁻⁶ relative, rounding
/// error ~ε·ℓ/h² ≈ 10⁻¹⁰ relative for a mean log-likelihood ℓ of order 1.
const CURVATURE_STEP: f64 = 1e-3;

const SETTINGS: Settings = Settings {
    // A factor of e^0.5 ≈ 1.65 around the start in every parameter.
    step: 0.5,
    // Mean log-likelihood per customer: far below anything that moves a forecast.
    value_tolerance: 1e-11,
    // Parameters to a relative 10⁻⁷, well inside the statistical error of any fit.
    point_tolerance: 1e-7,
    max_evaluations: 40_000,
};

/// Maximises `log_likelihood` (a sum over `customers` customers) over positive
/// parameters, starting from `start` (which sets each parameter's scale).
pub(crate) fn maximise<const N: usize>(
    model: Model,
    names: [&'static str; N],
    start: [f64; N],
    customers: f64,
    log_likelihood: impl Fn(&[f64; N]) -> f64,
) -> Result<Estimate<N>, Error> {
    let params_at =
        |theta: &[f64; N]| -> [f64; N] { std::array::from_fn(|i| start[i] * theta[i].exp()) };
    let objective = |theta: &[f64; N]| {
        if theta.iter().any(|t| t.abs() > WALL) {
            return f64::INFINITY;
        }
        -log_likelihood(&params_at(theta)) / customers
    };
    let minimum = nelder_mead::minimise(objective, [0.0; N], &SETTINGS).map_err(|exhausted| {
        Error::NotConverged {
            model,
            evaluations: exhausted.evaluations,
        }
    })?;
    let params = params_at(&minimum.point);
    if let Some(i) = (0..N).find(|&i| minimum.point[i].abs() > RUNAWAY) {
        return Err(Error::Degenerate {
            model,
            parameter: names[i],
            value: params[i],
        });
    }
    let log_likelihood = -minimum.value * customers;
    if !log_likelihood.is_finite() || params.iter().any(|p| !p.is_finite()) {
        return Err(Error::NonFinite {
            what: "log-likelihood at the fitted parameters",
        });
    }
    let information = information(&objective, minimum.point, customers);
    let log_standard_errors = match cholesky(information) {
        Some(factor) => standard_errors(&factor),
        None => {
            // Not a strict maximum: name the flattest direction.
            let flattest = (0..N)
                .min_by(|&i, &j| information[i][i].total_cmp(&information[j][j]))
                .unwrap_or(0);
            return Err(Error::Degenerate {
                model,
                parameter: names[flattest],
                value: params[flattest],
            });
        }
    };
    if let Some(i) = (0..N).find(|&i| {
        !log_standard_errors[i].is_finite() || log_standard_errors[i] > MAX_LOG_STANDARD_ERROR
    }) {
        return Err(Error::Degenerate {
            model,
            parameter: names[i],
            value: params[i],
        });
    }
    Ok(Estimate {
        params,
        log_likelihood,
        log_standard_errors,
        evaluations: minimum.evaluations,
    })
}

/// Observed information −∇²ℓ(θ) of the total log-likelihood at `at`, by central
/// differences of the mean negative log-likelihood `objective`.
fn information<const N: usize>(
    objective: &impl Fn(&[f64; N]) -> f64,
    at: [f64; N],
    customers: f64,
) -> [[f64; N]; N] {
    let h = CURVATURE_STEP;
    let value = |steps: &[(usize, f64)]| {
        let mut x = at;
        for &(i, step) in steps {
            x[i] += step;
        }
        objective(&x)
    };
    let centre = value(&[]);
    let curvature = |i: usize, j: usize| {
        let second = if i == j {
            (value(&[(i, h)]) - 2.0 * centre + value(&[(i, -h)])) / (h * h)
        } else {
            (value(&[(i, h), (j, h)]) - value(&[(i, h), (j, -h)]) - value(&[(i, -h), (j, h)])
                + value(&[(i, -h), (j, -h)]))
                / (4.0 * h * h)
        };
        second * customers
    };
    // Each mixed difference is computed for (i, j) and (j, i): 2N(N−1) more evaluations
    // (24 for N = 4) buy a matrix that is symmetric by construction of the formula.
    std::array::from_fn(|i| std::array::from_fn(|j| curvature(i.max(j), i.min(j))))
}

/// Lower-triangular L with L Lᵀ = `matrix`; `None` unless `matrix` is positive definite.
fn cholesky<const N: usize>(matrix: [[f64; N]; N]) -> Option<[[f64; N]; N]> {
    let mut lower = [[0.0; N]; N];
    for i in 0..N {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| lower[i][k] * lower[j][k]).sum();
            if i == j {
                let pivot = matrix[i][i] - dot;
                if !(pivot > 0.0 && pivot.is_finite()) {
                    return None;
                }
                lower[i][i] = pivot.sqrt();
            } else {
                lower[i][j] = (matrix[i][j] - dot) / lower[j][j];
            }
        }
    }
    Some(lower)
}

/// √diag(M⁻¹) from the Cholesky factor L of M: (M⁻¹)ₖₖ = ‖L⁻¹eₖ‖².
fn standard_errors<const N: usize>(lower: &[[f64; N]; N]) -> [f64; N] {
    std::array::from_fn(|k| {
        // Forward substitution of L y = eₖ; y is zero above k.
        let mut y = [0.0; N];
        for i in k..N {
            let unit = if i == k { 1.0 } else { 0.0 };
            let dot: f64 = (k..i).map(|m| lower[i][m] * y[m]).sum();
            y[i] = (unit - dot) / lower[i][i];
        }
        y.iter().map(|v| v * v).sum::<f64>().sqrt()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_rate_of_a_poisson_sample() {
        // Poisson log-likelihood Σ (k ln λ − λ) is maximised at the sample mean.
        let counts = [3.0, 0.0, 5.0, 2.0, 4.0, 1.0];
        let mean = counts.iter().sum::<f64>() / 6.0;
        let estimate = maximise(Model::BgNbd, ["lambda"], [1.0], 6.0, |p: &[f64; 1]| {
            counts.iter().map(|k| k * p[0].ln() - p[0]).sum()
        })
        .unwrap();
        assert!((estimate.params[0] - mean).abs() < 1e-6 * mean);
    }

    #[test]
    fn reports_a_parameter_that_runs_to_zero() {
        // Likelihood rising without bound as λ → 0.
        let outcome = maximise(Model::GammaGamma, ["lambda"], [1.0], 1.0, |p: &[f64; 1]| {
            -p[0]
        });
        assert!(matches!(
            outcome,
            Err(Error::Degenerate {
                parameter: "lambda",
                ..
            })
        ));
    }

    #[test]
    fn standard_errors_of_a_normal_mean_and_spread_match_the_textbook() {
        // n draws from N(μ, σ²): with θ = (ln μ, ln σ), SE(ln μ) = σ/(μ√n) and
        // SE(ln σ) = 1/√(2n) at the maximum.
        let draws: Vec<f64> = (0..400)
            .map(|i| 10.0 + f64::from((i * 7919) % 101) / 25.0 - 2.0)
            .collect();
        let n = draws.len() as f64;
        let estimate = maximise(
            Model::BgNbd,
            ["mu", "sigma"],
            [1.0, 1.0],
            n,
            |p: &[f64; 2]| {
                let (mu, sigma) = (p[0], p[1]);
                draws
                    .iter()
                    .map(|x| -((x - mu) / sigma).powi(2) / 2.0 - sigma.ln())
                    .sum()
            },
        )
        .unwrap();
        let [mu, sigma] = estimate.params;
        let want = [sigma / (mu * n.sqrt()), 1.0 / (2.0 * n).sqrt()];
        for (got, want) in estimate.log_standard_errors.iter().zip(want) {
            assert!((got / want - 1.0).abs() < 1e-4, "{got} vs {want}");
        }
    }

    #[test]
    fn a_likelihood_that_flattens_out_towards_infinity_is_refused() {
        // ℓ(λ) = −1/λ rises ever more slowly as λ → ∞: tolerances can be met on the way,
        // the curvature check refuses the result.
        let outcome = maximise(
            Model::GammaGamma,
            ["lambda"],
            [1.0],
            100.0,
            |p: &[f64; 1]| -100.0 / p[0],
        );
        assert!(
            matches!(outcome, Err(Error::Degenerate { .. })),
            "{outcome:?}"
        );
    }

    #[test]
    fn cholesky_refuses_a_matrix_that_is_not_positive_definite() {
        assert!(cholesky([[1.0, 2.0], [2.0, 1.0]]).is_none());
        let factor = cholesky([[4.0, 2.0], [2.0, 3.0]]).unwrap();
        // M⁻¹ = [[3, −2], [−2, 4]] / 8.
        let se = standard_errors(&factor);
        assert!((se[0] - (3.0f64 / 8.0).sqrt()).abs() < 1e-15);
        assert!((se[1] - 0.5f64.sqrt()).abs() < 1e-15);
    }
}
