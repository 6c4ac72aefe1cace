//! Property tests over extreme figures, on every backend: sales, redemptions,
//! returns, welcome bonuses and tier spend near `i64::MAX`, pushed in random batch
//! splits. Whatever the figures, every push is answered, every entry is acknowledged
//! exactly once (applied or quarantined), the store ends where the pure ledger says,
//! and `verify` finds every card consistent.

use super::{Db, balance, batch, terminal, verify_ok};
use crate::ledger::RulesBook;
use crate::ledger::apply::tests::{Replay, T0, pending_sale, return_of, sale, welcome};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use protocol::journal::{EntryBody, JournalEntry};
use protocol::rules::{ProgramRules, Tier};
use protocol::{BasisPoints, Money, Points, Seq};
use std::sync::Arc;
use time::Duration;
use uuid::Uuid;

testkit::on_every_backend!(
    open: Db::open;
    extreme_figures_are_applied_or_quarantined_and_never_break_a_card
);

/// Cases per backend: enough to reach every extreme, few enough for CI (each case is
/// a handful of real transactions).
const CASES: u32 = 12;

/// Points and money: the edges, and anything in between.
fn extreme() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(i64::MAX / 2),
        Just(i64::MAX / 2 + 1),
        Just(i64::MAX - 1),
        Just(i64::MAX),
        0..1_000i64,
        0..=i64::MAX,
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Sale {
        card: usize,
        redeemed: i64,
        accrued: i64,
        paid: i64,
        pending: bool,
    },
    /// A return of the `of`-th earlier sale (modulo the sales so far).
    Return {
        of: usize,
        reversed: i64,
        restored: i64,
        refund: i64,
    },
    Welcome {
        card: usize,
        points: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, extreme(), extreme(), extreme(), any::<bool>()).prop_map(
            |(card, redeemed, accrued, paid, pending)| Op::Sale {
                card,
                redeemed,
                accrued,
                paid,
                pending,
            }
        ),
        2 => (any::<usize>(), extreme(), extreme(), extreme()).prop_map(
            |(of, reversed, restored, refund)| Op::Return {
                of,
                reversed,
                restored,
                refund,
            }
        ),
        1 => (0..2usize, extreme()).prop_map(|(card, points)| Op::Welcome { card, points }),
    ]
}

/// The journal entries of `ops` for the cards `cards`, ids unique to `case`.
fn entries(ops: &[Op], cards: &[String; 2], case: u32) -> Vec<JournalEntry> {
    let id = |seq: u64| Uuid::from_u128((u128::from(case) << 64) | u128::from(seq));
    let mut out: Vec<JournalEntry> = Vec::new();
    let mut sales: Vec<(u64, usize)> = Vec::new();
    for op in ops {
        let seq = out.len() as u64 + 1;
        let mut e = match *op {
            Op::Sale {
                card,
                redeemed,
                accrued,
                paid,
                pending,
            } => {
                let mut e = if pending {
                    pending_sale(seq, &cards[card], accrued, T0 + Duration::days(30))
                } else {
                    sale(seq, &cards[card], 0, accrued)
                };
                if let EntryBody::Sale(s) = &mut e.body {
                    s.sale.redeemed_points = Points(redeemed);
                    s.sale.lines[0].redeemed_points = Points(redeemed);
                    s.sale.paid_minor = Money(paid);
                    s.sale.lines[0].paid_minor = Money(paid);
                }
                sales.push((seq, card));
                e
            }
            Op::Return {
                of,
                reversed,
                restored,
                refund,
            } => {
                let Some(&(sale_seq, card)) = sales.get(of % sales.len().max(1)) else {
                    continue;
                };
                let mut e = return_of(seq, &cards[card], sale_seq, reversed, restored);
                if let EntryBody::Return(r) = &mut e.body {
                    r.returned.refund_minor = Money(refund);
                    r.returned.lines[0].refund_minor = Money(refund);
                    r.sale_entry = id(sale_seq);
                }
                e
            }
            Op::Welcome { card, points } => welcome(seq, &cards[card], points),
        };
        e.id = id(seq);
        out.push(e);
    }
    out
}

fn rules() -> ProgramRules {
    ProgramRules {
        version: 1,
        welcome_bonus_points: Points(1_000),
        tiers: vec![
            Tier {
                name: "silver".into(),
                min_spend_minor: Money(1),
                accrual_bp: BasisPoints(600),
            },
            Tier {
                name: "gold".into(),
                min_spend_minor: Money(i64::MAX),
                accrual_bp: BasisPoints(700),
            },
        ],
        ..ProgramRules::default()
    }
}

async fn extreme_figures_are_applied_or_quarantined_and_never_break_a_card(store: Db) {
    store.set_rules(rules(), T0).await.unwrap();
    let book = RulesBook::new(Arc::new(rules()), []);
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    // `run` takes an `Fn`: the case number, for fresh terminals and cards, in a Cell.
    let cases = std::cell::Cell::new(0u32);
    let strategy = (
        proptest::collection::vec(op(), 1..10),
        proptest::collection::vec(1..4usize, 10),
    );
    runner
        .run(&strategy, |(ops, splits)| {
            cases.set(cases.get() + 1);
            let case = cases.get();
            let cards = [format!("41{case:08}1"), format!("41{case:08}2")];
            let entries = entries(&ops, &cards, case);
            tokio::task::block_in_place(|| {
                handle.block_on(check_case(&store, &book, case, &cards, &entries, &splits))
            });
            Ok(())
        })
        .unwrap();
}

/// Pushes `entries` in chunks of `splits` sizes, as HQ and as the pure ledger, and
/// compares.
async fn check_case(
    store: &Db,
    book: &RulesBook,
    case: u32,
    cards: &[String; 2],
    entries: &[JournalEntry],
    splits: &[usize],
) {
    let t = terminal(&**store, &format!("s{case}"), "t1").await;
    let mut model = Replay::new(book.clone());
    let (mut applied, mut quarantined) = (0u32, Vec::new());
    let mut model_quarantined = Vec::new();
    let mut rest = entries;
    for &n in splits.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, after) = rest.split_at(n.min(rest.len()));
        rest = after;
        let now = chunk.last().map_or(T0, |e| e.at);
        let outcome = store
            .push(&t, batch(chunk.to_vec()), now)
            .await
            .unwrap_or_else(|e| panic!("push of {chunk:?} failed: {e}"));
        assert_eq!(outcome.acked_through, chunk.last().unwrap().seq);
        applied += outcome.applied;
        quarantined.extend(outcome.quarantined);
        let plan = model.push(chunk);
        model_quarantined.extend(plan.quarantined.iter().map(|q| q.seq));
    }
    assert_eq!(applied as usize + quarantined.len(), entries.len());
    assert_eq!(quarantined, model_quarantined);
    model.assert_consistent();
    for c in cards {
        let (acked, bal, pending) = balance(&**store, &t, c).await;
        assert_eq!(acked, Seq(entries.len() as u64));
        let expected = model
            .cards
            .get(&protocol::CardId::parse(c).unwrap())
            .map_or((Points(0), Points(0)), |s| (s.balance, s.pending));
        assert_eq!((bal, pending), expected, "card {c}");
    }
    assert!(verify_ok(&**store).await, "verify after case {case}");
}
