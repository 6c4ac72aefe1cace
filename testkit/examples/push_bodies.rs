//! Prints push bodies, one JSON document per line: the bench's 10-entry sales
//! (`pos-bench`'s `store_load::sale`) for the writer's callgrind harness
//! (`bench/callgrind-push.sh`).
//!
//! `push_bodies STORE TERMINAL PUSHES BATCH [CARDS]`: the sales go to CARDS cards
//! (20,000 by default, as the bench's; with 100, every card of a 10-entry push after
//! the first ten pushes is one HQ holds).

use protocol::wire::{PROTOCOL_VERSION, PushRequest};
use protocol::{StoreId, TerminalId};
use testkit::entries::{Entry, line, priced};
use time::OffsetDateTime;

fn sale(
    terminal: &str,
    seq: u64,
    cards: u64,
    at: OffsetDateTime,
) -> protocol::journal::JournalEntry {
    let offset = terminal.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let card = format!(
        "{:013}",
        4_000_000_000_000u64 + (offset.wrapping_add(seq)) % cards
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (store, terminal, pushes, batch, cards) = match args.as_slice() {
        [s, t, p, b] => (s, t, p.parse::<u64>()?, b.parse::<u64>()?, 20_000),
        [s, t, p, b, c] => (s, t, p.parse()?, b.parse()?, c.parse()?),
        _ => return Err("usage: push_bodies STORE TERMINAL PUSHES BATCH [CARDS]".into()),
    };
    let now = OffsetDateTime::now_utc();
    for r in 0..pushes {
        let entries = (1..=batch)
            .map(|k| sale(terminal, r * batch + k, cards, now))
            .collect();
        let body = serde_json::to_string(&PushRequest {
            protocol: PROTOCOL_VERSION,
            store_id: StoreId::parse(store)?,
            terminal_id: TerminalId::parse(terminal)?,
            entries,
        })?;
        println!("{body}");
    }
    Ok(())
}
