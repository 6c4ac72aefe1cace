//! The one journal-entry builder of the tests and benchmarks: [`Entry`] sets what
//! every entry has (id, seq, time, rules version) and finishes with a body; a sale's
//! figures come from [`priced`] (the agent's own pricing) or [`figures`] (given
//! outright, for ledger tests that need exact numbers).

use protocol::evaluate::{PricedLine, PricedSale, price_sale};
use protocol::journal::{EntryBody, JournalEntry, SaleEntry, WelcomeEntry};
use protocol::receipt::Line;
use protocol::rules::ProgramRules;
use protocol::{CardId, Money, Points, ReceiptId, Seq};
use time::macros::datetime;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// The instant reproducible entries count from.
pub const T0: OffsetDateTime = datetime!(2026-03-01 10:00 UTC);

/// The id of reproducible entry `seq`.
pub fn entry_id(seq: u64) -> Uuid {
    Uuid::from_u128(0xE000_0000 + u128::from(seq))
}

/// A journal entry under construction.
#[derive(Debug, Clone)]
pub struct Entry {
    id: Uuid,
    seq: u64,
    at: OffsetDateTime,
    rules_version: u64,
    receipt: String,
    matures_at: Option<OffsetDateTime>,
    offline: bool,
}

impl Entry {
    /// Entry `seq` made now with a time-ordered id (UUIDv7, increasing within the
    /// process), as the agent's journal makes it; receipt `R-<seq>`, rules version 0
    /// (the defaults).
    pub fn new(seq: u64) -> Self {
        Self {
            id: Uuid::now_v7(),
            seq,
            at: OffsetDateTime::now_utc(),
            rules_version: 0,
            receipt: format!("R-{seq}"),
            matures_at: None,
            offline: false,
        }
    }

    /// Entry `seq` that is the same in every run: id [`entry_id`], made at
    /// [`T0`] + `seq` minutes under rules version 1.
    pub fn fixed(seq: u64) -> Self {
        Self {
            id: entry_id(seq),
            at: T0 + time::Duration::minutes(i64::try_from(seq).unwrap()),
            rules_version: 1,
            ..Self::new(seq)
        }
    }

    /// Made at `at`.
    pub fn at(mut self, at: OffsetDateTime) -> Self {
        self.at = at;
        self
    }

    /// Priced under rules version `version`.
    pub fn rules_version(mut self, version: u64) -> Self {
        self.rules_version = version;
        self
    }

    /// A sale on receipt `receipt`.
    pub fn receipt(mut self, receipt: &str) -> Self {
        receipt.clone_into(&mut self.receipt);
        self
    }

    /// A sale whose points mature at `at` (pending until then).
    pub fn matures_at(mut self, at: Option<OffsetDateTime>) -> Self {
        self.matures_at = at;
        self
    }

    /// A sale made while the till could not reach HQ.
    pub fn offline(mut self) -> Self {
        self.offline = true;
        self
    }

    /// The entry with `body`.
    pub fn body(self, body: EntryBody) -> JournalEntry {
        JournalEntry {
            id: self.id,
            seq: Seq(self.seq),
            at: self.at,
            rules_version: self.rules_version,
            body,
        }
    }

    /// A sale on `card` (or anonymous) with the figures of `sale`.
    pub fn sale(self, card: Option<&str>, sale: PricedSale) -> JournalEntry {
        let body = EntryBody::Sale(SaleEntry {
            receipt_id: ReceiptId::parse(&self.receipt).unwrap(),
            card: card.map(|c| CardId::parse(c).unwrap()),
            sale,
            matures_at: self.matures_at,
            offline: self.offline,
            lease: None,
        });
        self.body(body)
    }

    /// A standalone till's welcome entry.
    pub fn welcome(self, card: &str, points: i64) -> JournalEntry {
        let body = EntryBody::Welcome(WelcomeEntry {
            card: CardId::parse(card).unwrap(),
            points: Points(points),
        });
        self.body(body)
    }
}

/// One line of `amount_minor` (one unit) of `sku` in `category`.
pub fn line(sku: &str, category: &str, amount_minor: i64) -> Line {
    Line {
        sku: sku.into(),
        category: category.into(),
        amount_minor: Money(amount_minor),
        qty: 1,
    }
}

/// `lines` priced by the default rules on `day`, redeeming `redeem` points, as the
/// agent prices them.
pub fn priced(lines: &[Line], redeem: i64, day: Date) -> PricedSale {
    price_sale(&ProgramRules::default(), lines, Points(redeem), None, day).unwrap()
}

/// A sale of one 100.00 line of milk that redeems `redeemed` points (1.00 each) and
/// accrues `accrued`, whatever the rules would say.
pub fn figures(redeemed: i64, accrued: i64) -> PricedSale {
    let (total, discount) = (Money(10_000), Money(redeemed * 100));
    let paid = Money(total.0 - discount.0);
    PricedSale {
        lines: vec![PricedLine {
            sku: "milk".into(),
            category: "dairy".into(),
            amount_minor: total,
            qty: 1,
            discount_minor: discount,
            paid_minor: paid,
            redeemed_points: Points(redeemed),
            accrued_points: Points(accrued),
        }],
        total_minor: total,
        discount_minor: discount,
        paid_minor: paid,
        redeemed_points: Points(redeemed),
        accrued_points: Points(accrued),
    }
}

/// A sale at `at` on `card` of one 100.00 line of milk, redeeming `redeem` points,
/// priced by the default rules (5 % accrual on what is paid in money), with a random
/// id.
pub fn sale_at(
    seq: u64,
    card: Option<&str>,
    redeem: i64,
    at: OffsetDateTime,
    matures_at: Option<OffsetDateTime>,
) -> JournalEntry {
    let sale = priced(&[line("milk", "dairy", 10_000)], redeem, at.date());
    Entry::new(seq)
        .at(at)
        .matures_at(matures_at)
        .sale(card, sale)
}

/// [`sale_at`] now: accrues 5 points less 5 % of the redeemed money.
pub fn sale(seq: u64, card: &str, redeem: i64) -> JournalEntry {
    sale_at(seq, Some(card), redeem, OffsetDateTime::now_utc(), None)
}

/// A standalone till's welcome entry made now.
pub fn welcome(seq: u64, card: &str, points: i64) -> JournalEntry {
    Entry::new(seq).welcome(card, points)
}

/// The `n`-th sale of a terminal on one of `cards` cards (pos-bench's sales, on
/// 20,000), one line of 10.00 to 106.00, one sale in seven redeeming 3 points; priced
/// by the agent's own code. The id is time-ordered ([`Entry::new`]), as the agent's journal
/// makes it: with random ids HQ's index of entry ids took a leaf page per entry, which
/// no till causes, and the raw baselines paid that while the backlog beside them,
/// written by the agent's journal, did not.
pub fn chain_sale(terminal: &str, seq: u64, cards: u64, at: OffsetDateTime) -> JournalEntry {
    // Each till starts at its own place among the cards: tills that push at the same
    // moment serve different customers, as in a chain. (When every till's n-th sale
    // went to the same card, 500 tills queued on the same 10 card locks.)
    let offset = terminal.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let card = format!(
        "{:013}",
        4_000_000_000_000u64 + (offset.wrapping_add(seq)) % cards.max(1)
    );
    let cents = 1_000 + i64::try_from(seq % 97).unwrap_or(0) * 100;
    let lines = [line(&format!("sku-{}", seq % 500), "grocery", cents)];
    let redeem = if seq.is_multiple_of(7) { 3 } else { 0 };
    Entry::new(seq)
        .at(at)
        .receipt(&format!("{terminal}-R{seq}"))
        .offline()
        .sale(Some(&card), priced(&lines, redeem, at.date()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priced_sales_accrue_by_the_default_rules_and_fixed_entries_repeat() {
        let milk = [line("milk", "dairy", 10_000)];
        let sale = priced(&milk, 20, T0.date());
        assert_eq!(sale.paid_minor, Money(8_000));
        assert_eq!(sale.redeemed_points, Points(20));
        let a = Entry::fixed(3).sale(Some("4006381333931"), sale.clone());
        let b = Entry::fixed(3).sale(Some("4006381333931"), sale);
        assert_eq!(a, b);
        assert_eq!(a.at, T0 + time::Duration::minutes(3));
        assert_ne!(Entry::new(3).welcome("4006381333931", 5).id, a.id);
    }
}
