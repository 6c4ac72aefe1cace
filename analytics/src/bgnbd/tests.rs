//! Unit and property tests of the BG/NBD formulas and fit.

use super::*;
use crate::hypergeometric::hyp2f1;
use libm::lgamma;
use proptest::prelude::*;

/// The parameters `lifetimes` 0.11.3 fits on the CDNOW sample (39-week calibration).
fn cdnow() -> BgNbdParams {
    BgNbdParams::new(0.242595, 4.413603, 0.792922, 2.425906).unwrap()
}

fn activity(x: u32, recency: f64, age: f64) -> Activity {
    Activity::new(x, recency, age).unwrap()
}

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs()
}

/// The paper's formula typed in directly: a second, independent reading of it.
fn textbook_log_likelihood(p: &BgNbdParams, h: &Activity) -> f64 {
    let (r, alpha, a, b) = (p.r, p.alpha, p.a, p.b);
    let x = f64::from(h.frequency);
    let a1 = lgamma(r + x) - lgamma(r) + r * alpha.ln();
    let a2 = lgamma(a + b) + lgamma(b + x) - lgamma(b) - lgamma(a + b + x);
    let a3 = -(r + x) * (alpha + h.age).ln();
    let a4 = if x > 0.0 {
        (a / (b + x - 1.0)).ln() - (r + x) * (alpha + h.recency).ln()
    } else {
        f64::NEG_INFINITY
    };
    a1 + a2 + (a3.exp() + a4.exp()).ln()
}

/// E[Y(t) | x, tₓ, T] as the paper writes it, through ₂F₁ and the 1/(a − 1) factor.
fn textbook_expected_purchases(p: &BgNbdParams, h: &Activity, t: f64) -> f64 {
    let (r, alpha, a, b) = (p.r, p.alpha, p.a, p.b);
    let x = f64::from(h.frequency);
    let base = alpha + h.age;
    let f = hyp2f1(r + x, b + x, a + b + x - 1.0, t / (base + t)).unwrap();
    let bracket = 1.0 - (base / (base + t)).powf(r + x) * f;
    p.p_alive(h) * (a + b + x - 1.0) / (a - 1.0) * bracket
}

#[test]
fn the_likelihood_is_the_papers_formula_summed_over_customers() {
    let histories = [
        activity(0, 0.0, 38.0),
        activity(0, 0.0, 38.0),
        activity(2, 30.4, 38.9),
        activity(1, 1.7, 38.9),
        activity(17, 35.0, 39.0),
    ];
    for params in [cdnow(), BgNbdParams::new(2.0, 0.5, 3.0, 0.3).unwrap()] {
        let want: f64 = histories
            .iter()
            .map(|h| textbook_log_likelihood(&params, h))
            .sum();
        let got = params.log_likelihood(&histories);
        assert!(close(got, want, 1e-13), "{got} vs {want}");
    }
}

#[test]
fn a_customer_without_repeat_purchases_is_alive_for_sure() {
    for age in [0.0, 1.0, 39.0, 520.0] {
        assert_eq!(cdnow().p_alive(&activity(0, 0.0, age)), 1.0);
    }
}

#[test]
fn predictions_agree_with_lifetimes() {
    // lifetimes 0.11.3 (scipy 1.11) with exactly these parameters; CDNOW sample customers
    // 00004 (x = 2), 00021 (x = 1) and 00018 (x = 0), T in weeks = days / 7.
    let p = cdnow();
    let agree =
        |got: f64, lifetimes: f64| assert!(close(got, lifetimes, 1e-12), "{got} vs {lifetimes}");
    agree(
        p.expected_purchases_new_customer(39.0).unwrap(),
        1.195_011_908_525_013_3,
    );
    agree(
        p.expected_purchases_new_customer(78.0).unwrap(),
        1.857_961_181_710_305_7,
    );
    let repeat = activity(2, 213.0 / 7.0, 272.0 / 7.0);
    agree(p.p_alive(&repeat), 0.726_620_252_825_812_2);
    agree(
        p.expected_purchases(&repeat, 52.0).unwrap(),
        1.558_686_326_544_299_8,
    );
    let lapsing = activity(1, 12.0 / 7.0, 272.0 / 7.0);
    agree(p.p_alive(&lapsing), 0.212_390_866_875_888_5);
    agree(
        p.expected_purchases(&lapsing, 52.0).unwrap(),
        0.260_121_483_577_697_1,
    );
    let once = activity(0, 0.0, 269.0 / 7.0);
    agree(
        p.expected_purchases(&once, 52.0).unwrap(),
        0.253_893_831_332_321_5,
    );
}

#[test]
fn the_forecast_has_no_singularity_at_a_equal_to_one() {
    let h = activity(3, 20.0, 30.0);
    let at = |a: f64| {
        BgNbdParams::new(0.5, 5.0, a, 2.0)
            .unwrap()
            .expected_purchases(&h, 26.0)
            .unwrap()
    };
    let exactly_one = at(1.0);
    assert!(exactly_one.is_finite() && exactly_one > 0.0);
    for a in [1.0 - 1e-12, 1.0 + 1e-12, 1.0 - 1e-7, 1.0 + 1e-7] {
        assert!(
            close(at(a), exactly_one, 1e-6),
            "a={a}: {} vs {exactly_one}",
            at(a)
        );
    }
    // Away from a = 1 the textbook form is well conditioned: both forms agree.
    for a in [0.3, 0.79, 1.5, 4.0] {
        let p = BgNbdParams::new(0.5, 5.0, a, 2.0).unwrap();
        let want = textbook_expected_purchases(&p, &h, 26.0);
        assert!(close(at(a), want, 1e-10), "a={a}: {} vs {want}", at(a));
    }
}

#[test]
fn nothing_is_expected_over_no_time_and_bad_horizons_are_refused() {
    let h = activity(1, 3.0, 10.0);
    assert_eq!(cdnow().expected_purchases(&h, 0.0).unwrap(), 0.0);
    for t in [-1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            cdnow().expected_purchases(&h, t),
            Err(Error::InvalidInput { .. })
        ));
    }
}

#[test]
fn histories_and_parameters_outside_the_model_are_refused() {
    assert!(Activity::new(0, 1.0, 5.0).is_err());
    assert!(Activity::new(2, 0.0, 5.0).is_err());
    assert!(Activity::new(2, 6.0, 5.0).is_err());
    assert!(Activity::new(2, -1.0, 5.0).is_err());
    assert!(Activity::new(2, 1.0, f64::NAN).is_err());
    assert!(BgNbdParams::new(0.0, 1.0, 1.0, 1.0).is_err());
    assert!(BgNbdParams::new(1.0, f64::INFINITY, 1.0, 1.0).is_err());
    assert!(BgNbdParams::new(1.0, 1.0, -1.0, 1.0).is_err());
}

#[test]
fn a_fit_needs_customers_and_repeat_buyers() {
    assert_eq!(
        fit(&[]),
        Err(Error::NoCustomers {
            model: Model::BgNbd
        })
    );
    let one_timers = [activity(0, 0.0, 10.0), activity(0, 0.0, 3.0)];
    assert_eq!(
        fit(&one_timers),
        Err(Error::NoRepeatBuyers {
            model: Model::BgNbd
        })
    );
}

#[test]
fn a_fit_reaches_a_maximum_of_the_likelihood() {
    let histories: Vec<Activity> = (0..200u32)
        .map(|i| {
            let x = i % 7;
            let age = 20.0 + f64::from(i % 13);
            let recency = if x == 0 {
                0.0
            } else {
                age * f64::from(i % 5 + 1) / 6.0
            };
            activity(x, recency, age)
        })
        .collect();
    let fitted = fit(&histories).unwrap();
    let best = fitted.params;
    assert!(close(
        best.log_likelihood(&histories),
        fitted.log_likelihood,
        1e-12
    ));
    // Moving any parameter by 1 % either way lowers the likelihood.
    for i in 0..4 {
        for factor in [0.99, 1.01] {
            let mut moved = [best.r, best.alpha, best.a, best.b];
            moved[i] *= factor;
            let [r, alpha, a, b] = moved;
            let other = BgNbdParams::new(r, alpha, a, b).unwrap();
            assert!(other.log_likelihood(&histories) < fitted.log_likelihood);
        }
    }
}

fn any_params() -> impl Strategy<Value = BgNbdParams> {
    (-4.0f64..4.0, -4.0f64..4.0, -4.0f64..4.0, -4.0f64..4.0).prop_map(|(r, alpha, a, b)| {
        BgNbdParams::new(r.exp(), alpha.exp(), a.exp(), b.exp()).unwrap()
    })
}

fn any_activity() -> impl Strategy<Value = Activity> {
    (0u32..50, 0.0f64..1.0, 0.0f64..200.0).prop_map(|(x, share, age)| {
        let recency = if x == 0 { 0.0 } else { age * share.max(1e-3) };
        Activity::new(x, recency, age.max(recency)).unwrap()
    })
}

proptest! {
    #[test]
    fn the_likelihood_is_finite_and_negative_free_of_nan(
        params in any_params(),
        histories in proptest::collection::vec(any_activity(), 1..30),
    ) {
        let ll = params.log_likelihood(&histories);
        prop_assert!(ll.is_finite(), "{ll}");
    }

    #[test]
    fn p_alive_is_a_probability_that_falls_as_the_last_purchase_ages(
        params in any_params(),
        h in any_activity(),
        older in 0.0f64..1.0,
    ) {
        let p = params.p_alive(&h);
        prop_assert!((0.0..=1.0).contains(&p));
        if h.frequency > 0 {
            let earlier = Activity::new(h.frequency, h.recency * older.max(1e-3), h.age).unwrap();
            prop_assert!(params.p_alive(&earlier) <= p + 1e-12);
        }
    }

    #[test]
    fn expected_purchases_are_finite_and_grow_with_the_horizon(
        params in any_params(),
        h in any_activity(),
        t in 0.0f64..104.0,
        dt in 0.0f64..52.0,
    ) {
        // A horizon the series cannot sum accurately is an error, never a wrong number.
        if let (Ok(now), Ok(later)) = (
            params.expected_purchases(&h, t),
            params.expected_purchases(&h, t + dt),
        ) {
            prop_assert!(now.is_finite() && now >= 0.0);
            prop_assert!(later >= now * (1.0 - 1e-9), "{now} then {later}");
        }
    }

    #[test]
    fn fits_of_small_histories_give_parameters_or_an_error_never_nan(
        histories in proptest::collection::vec(any_activity(), 0..25),
    ) {
        match fit(&histories) {
            Ok(fitted) => {
                let p = fitted.params;
                prop_assert!([p.r, p.alpha, p.a, p.b].iter().all(|v| v.is_finite() && *v > 0.0));
                prop_assert!(fitted.log_likelihood.is_finite());
            }
            Err(error) => prop_assert!(!matches!(error, Error::NonFinite { .. }), "{error}"),
        }
    }
}
