//! The fuzz harness for till API request bodies, shared by the `cargo fuzz` target
//! (`fuzz/fuzz_targets/till_bodies.rs`, needs nightly) and a stable property test that
//! also replays the fuzz inputs. Not part of the agent's API.
//!
//! [`till_body`] takes arbitrary bytes: the first picks the endpoint (`POST
//! /v1/sales`, `/v1/quote`, `/v1/returns`), the rest is the body. A body that parses
//! goes through the same pure decisions as the handler (limits, pricing, the hold's
//! and the return's refusals) for a card with points to spare, with the default rules
//! and limits. It panics (which the fuzzer reports) if parsing or deciding panics, if
//! an accepted sale or return carries a figure beyond the limits, or if a refusal would
//! answer anything but 4xx or show a full card number.

use super::error::ApiError;
use crate::cards::CardView;
use crate::journal::sales::SaleRecord;
use crate::redemption::{Funding, Mode};
use crate::sales::quote::{self, QuoteRequest};
use crate::sales::{ReturnRequest, SaleContext, SaleError, SaleRequest, SaleState, hold, returns};
use config::agent::OfflineSection;
use protocol::evaluate::price_sale;
use protocol::limits::Limits;
use protocol::receipt::Line;
use protocol::rules::ProgramRules;
use protocol::{CardId, Money, Points};
use std::sync::Arc;
use time::macros::datetime;
use uuid::Uuid;

/// Runs one input through the parser and the decision of the endpoint it picks.
pub fn till_body(data: &[u8]) {
    let [endpoint, body @ ..] = data else {
        return;
    };
    let ctx = context();
    match endpoint % 3 {
        0 => {
            if let Ok(req) = serde_json::from_slice::<SaleRequest>(body) {
                let view = req.card.as_ref().map(card_view);
                match hold::decide(&req, view.as_ref(), None, None, &ctx) {
                    Ok(decided) => assert_eq!(
                        ctx.figure_limits.check_sale(&decided.priced),
                        Ok(()),
                        "an accepted sale is beyond the limits"
                    ),
                    Err(e) => refused(e, req.card.as_ref()),
                }
            }
        }
        1 => {
            if let Ok(req) = serde_json::from_slice::<QuoteRequest>(body) {
                let view = req.card.as_ref().map(card_view);
                if let Err(e) = quote::decide_request(&req, view.as_ref(), None, &ctx) {
                    refused(e, req.card.as_ref());
                }
            }
        }
        _ => {
            if let Ok(req) = serde_json::from_slice::<ReturnRequest>(body) {
                match returns::decide(&req, &committed_sale(), Some(Uuid::from_u128(1))) {
                    Ok(plan) => assert_eq!(
                        ctx.figure_limits.check_return(&plan.entry.returned),
                        Ok(()),
                        "an accepted return is beyond the limits"
                    ),
                    Err(e) => refused(e, None),
                }
            }
        }
    }
}

/// A refusal answers 4xx (never a 5xx that tells the till to retry) and shows the
/// card masked.
fn refused(e: SaleError, card: Option<&CardId>) {
    let api = ApiError::from(e);
    let (status, _) = api.status_and_code();
    assert!(
        status.is_client_error(),
        "a refusal answered {status}: {api}"
    );
    if let Some(card) = card {
        assert!(
            !api.to_string().contains(card.as_str()),
            "a refusal shows the full card number: {api}"
        );
    }
}

fn context() -> SaleContext {
    let now = datetime!(2026-11-24 10:00 UTC);
    SaleContext {
        now,
        day: now.date(),
        day_start_unix: datetime!(2026-11-24 00:00 UTC).unix_timestamp(),
        rules: Arc::new(ProgramRules::default()),
        mode: Mode::Online,
        funding: Funding::Local,
        live: None,
        limits: OfflineSection::default(),
        figure_limits: Limits::DEFAULT,
        hold_timeout_secs: 900,
    }
}

/// The card as the journal would show it: a large balance, so the balance itself
/// rarely refuses and the fuzzer reaches pricing and the limits.
fn card_view(card: &CardId) -> CardView {
    let points = Points(1_000_000_000);
    CardView {
        card: card.clone(),
        balance: points,
        available: points,
        pending: Points::ZERO,
        held: Points::ZERO,
        tier: None,
        as_of: None,
        offline: false,
        blocked: false,
    }
}

/// A committed sale of three lines to return from.
fn committed_sale() -> SaleRecord {
    let line = |sku: &str, amount: i64, qty: u32| Line {
        sku: sku.into(),
        category: "grocery".into(),
        amount_minor: Money(amount),
        qty,
    };
    let lines = [
        line("a", 10_000, 3),
        line("b", 999, 1),
        line("c", 123_456, 7),
    ];
    let rules = ProgramRules::default();
    let priced = price_sale(
        &rules,
        &lines,
        Points(50),
        None,
        time::macros::date!(2026 - 11 - 24),
    )
    .expect("the fixed sale prices");
    SaleRecord {
        state: SaleState::Committed,
        card: CardId::parse("4006381333931").ok(),
        redeem_points: Points(50),
        reserved_points: Points::ZERO,
        lease: None,
        offline: false,
        rules_version: 1,
        matures_at: None,
        priced,
        returned_qty: vec![1, 0, 2],
        entry_seq: None,
        commit_answer: Some("{}".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Replays the committed seeds and any crash or corpus files of the target.
    #[test]
    fn fuzz_seeds_and_artifacts_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        for dir in [
            "seeds/till_bodies",
            "artifacts/till_bodies",
            "corpus/till_bodies",
        ] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_file() {
                    till_body(&std::fs::read(&path).unwrap());
                }
            }
        }
    }

    fn sale_json(amount: i64, qty: i64, redeem: i64, card: &str) -> String {
        format!(
            r#"{{"receipt_id":"R-1","card":"{card}","redeem_points":{redeem},"lines":[{{"sku":"a","category":"grocery","amount_minor":{amount},"qty":{qty}}}]}}"#
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn the_fuzz_target_holds_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
            till_body(&data);
        }

        /// Well-formed bodies with extreme figures, on every endpoint.
        #[test]
        fn the_fuzz_target_holds_on_extreme_figures(
            endpoint in 0u8..3,
            amount in prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(0i64), any::<i64>(), 0i64..100_000_000],
            qty in prop_oneof![Just(0i64), Just(1i64), Just(i64::from(u32::MAX)), any::<i64>()],
            redeem in prop_oneof![Just(0i64), Just(i64::MAX), Just(-1i64), 0i64..1_000_000],
            line in 0usize..5,
        ) {
            let body = match endpoint {
                2 => format!(r#"{{"return_id":"X-1","receipt_id":"R-1","lines":[{{"line":{line},"qty":{qty}}}]}}"#),
                _ => sale_json(amount, qty, redeem, "4006381333931"),
            };
            let mut data = vec![endpoint];
            data.extend(body.as_bytes());
            till_body(&data);
        }
    }
}
