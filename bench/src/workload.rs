//! Synthetic journal entries shaped like real ones: one-line sales on 20,000 cards,
//! some redeeming points, priced by the same `protocol` code the agent uses.

use protocol::evaluate::price_sale;
use protocol::journal::{EntryBody, JournalEntry, SaleEntry};
use protocol::receipt::Line;
use protocol::rules::ProgramRules;
use protocol::{CardId, Money, Points, ReceiptId, Seq};
use time::OffsetDateTime;
use uuid::Uuid;

/// The body of the `n`-th sale of a terminal.
pub fn sale_body(terminal: &str, n: u64) -> anyhow::Result<EntryBody> {
    let card = CardId::parse(&format!("{:013}", 4_000_000_000_000u64 + n % 20_000))?;
    let lines = [Line {
        sku: format!("sku-{}", n % 500),
        category: "grocery".into(),
        amount_minor: Money(1_000 + (n % 97) as i64 * 100),
        qty: 1,
    }];
    let redeem = Points(if n.is_multiple_of(7) { 3 } else { 0 });
    let sale = price_sale(
        &ProgramRules::default(),
        &lines,
        redeem,
        None,
        OffsetDateTime::now_utc().date(),
    )?;
    Ok(EntryBody::Sale(SaleEntry {
        receipt_id: ReceiptId::parse(&format!("{terminal}-R{n}"))?,
        card: Some(card),
        sale,
        matures_at: None,
        offline: true,
    }))
}

/// A complete entry with `seq`, as a terminal would push it.
pub fn entry(terminal: &str, seq: u64) -> anyhow::Result<JournalEntry> {
    Ok(JournalEntry {
        id: Uuid::now_v7(),
        seq: Seq(seq),
        at: OffsetDateTime::now_utc(),
        rules_version: 0,
        body: sale_body(terminal, seq)?,
    })
}
