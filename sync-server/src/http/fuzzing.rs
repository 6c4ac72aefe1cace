//! The fuzz harness for sync push bodies, shared by the `cargo fuzz` target
//! (`fuzz/fuzz_targets/sync_push.rs`, needs nightly) and a stable property test that
//! also replays the fuzz inputs. Not part of the server's API.
//!
//! [`push_body`] takes arbitrary bytes as the body of `POST /v1/sync/push` from a
//! terminal with a valid token. The body goes through what the handler does before
//! the database: [`parse_push`], [`Batch::new`], then the pure ledger's
//! [`apply_batch`] for cards HQ has never seen, under the default rules and the hard
//! ceilings. It panics (which the fuzzer reports) if any step panics, if a refusal
//! would answer anything but 4xx (a 5xx makes the till retry the same body forever),
//! or if the plan breaks what `sync-server verify` checks: a card's balance and
//! pending points equal the sum of its ledger rows, its open lots hold its positive
//! balance, its balance is within the ceiling, and an entry HQ cannot apply is
//! quarantined with a reason that does not show its card number.

use super::error::ApiError;
use super::push::parse_push;
use crate::ledger::RulesBook;
use crate::ledger::apply::{BatchInput, apply_batch};
use crate::ledger::batch::Batch;
use protocol::limits::Limits;
use protocol::rules::ProgramRules;
use std::collections::HashMap;
use std::sync::Arc;
use time::macros::datetime;

/// Runs one body through parsing, batch checks and the ledger's plan.
pub fn push_body(data: &[u8]) {
    let request = match parse_push(data) {
        Ok(request) => request,
        Err(e) => return refused(&e),
    };
    let batch = match Batch::new(request.entries) {
        Ok(batch) => batch,
        Err(e) => return refused(&ApiError::BadBatch(e)),
    };
    let rules = RulesBook::new(Arc::new(ProgramRules::default()), []);
    let plan = apply_batch(BatchInput {
        entries: batch.entries(),
        cards: HashMap::new(),
        open_lots: Vec::new(),
        spend_before: HashMap::new(),
        rules: &rules,
        limits: &Limits::CEILING,
        now: datetime!(2026-03-01 10:00 UTC),
    });
    for q in &plan.quarantined {
        assert!(
            batch
                .entries()
                .iter()
                .any(|e| e.id == q.entry_id && e.seq == q.seq),
            "a quarantined entry that is not in the batch"
        );
        if let Some(card) = &q.card {
            assert!(
                !q.reason.contains(card.as_str()),
                "a quarantine reason shows the card number: {}",
                q.reason
            );
        }
    }
    for c in &plan.cards {
        let card = &c.state.card;
        let (balance, pending) =
            plan.ledger
                .iter()
                .filter(|r| &r.card == card)
                .fold((0i128, 0i128), |(b, p), r| {
                    (
                        b + i128::from(r.delta_balance.get()),
                        p + i128::from(r.delta_pending.get()),
                    )
                });
        assert_eq!(
            i128::from(c.state.balance.get()),
            balance,
            "balance vs ledger"
        );
        assert_eq!(
            i128::from(c.state.pending.get()),
            pending,
            "pending vs ledger"
        );
        let lots: i128 = plan
            .new_lots
            .iter()
            .filter(|l| &l.card == card)
            .map(|l| i128::from(l.remaining.get()))
            .sum();
        assert_eq!(balance.max(0), lots, "open lots vs positive balance");
        assert_eq!(
            Limits::CEILING.check_balance(balance),
            Ok(()),
            "an applied balance beyond the ceiling"
        );
    }
}

/// A refusal answers 4xx: the terminal must fix the body, not retry it.
fn refused(e: &ApiError) {
    let (status, _) = e.status_and_code();
    assert!(status.is_client_error(), "a refusal answered {status}: {e}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use testkit::entries::{Entry, figures, sale};
    use testkit::hq_http::push_body as request;

    /// Replays the committed seeds and any crash or corpus files of the target.
    #[test]
    fn fuzz_seeds_and_artifacts_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut seeds = 0;
        for dir in ["seeds/sync_push", "artifacts/sync_push", "corpus/sync_push"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_file() {
                    push_body(&std::fs::read(&path).unwrap());
                    seeds += 1;
                }
            }
        }
        assert!(seeds > 0, "the committed seeds are missing");
    }

    /// The committed seeds are what they say: a valid push whose plan applies, and
    /// one with `i64::MAX` points that is quarantined.
    #[test]
    fn the_seeds_reach_the_ledger() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/sync_push");
        for name in ["push", "push_i64_max_points"] {
            let body = std::fs::read(dir.join(name)).unwrap();
            let parsed = parse_push(&body).unwrap();
            assert!(Batch::new(parsed.entries).is_ok(), "{name}");
        }
    }

    fn body(entries: Vec<protocol::journal::JournalEntry>) -> Vec<u8> {
        serde_json::to_vec(&request("store-1", "till-1", entries)).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        #[test]
        fn the_fuzz_target_holds_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
            push_body(&data);
        }

        /// Well-formed pushes with extreme figures on one or two cards.
        #[test]
        fn the_fuzz_target_holds_on_extreme_figures(
            figs in prop::collection::vec(
                (
                    // `figures` prices the redemption at 1.00 a point: keep it in range.
                    prop_oneof![Just(0i64), Just(i64::MAX / 100), Just(-1i64), 0i64..1_000_000],
                    prop_oneof![Just(0i64), Just(i64::MAX), Just(i64::MIN), any::<i64>(), 0i64..1_000_000],
                    any::<bool>(),
                ),
                1..6,
            ),
        ) {
            let entries = figs
                .iter()
                .enumerate()
                .map(|(i, &(redeemed, accrued, other))| {
                    let card = if other { "5901234123457" } else { "4006381333931" };
                    Entry::new(i as u64 + 1).sale(Some(card), figures(redeemed, accrued))
                })
                .collect();
            push_body(&body(entries));
        }

        /// A valid push with one byte changed.
        #[test]
        fn the_fuzz_target_holds_on_a_mutated_push(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut data = body(vec![sale(1, "4006381333931", 0), sale(2, "4006381333931", 5)]);
            let i = at.index(data.len());
            data[i] = byte;
            push_body(&data);
        }
    }
}
