//! Prints push bodies, one JSON document per line: the bench's 10-entry sales
//! (`testkit::entries::chain_sale`, as `pos-bench`'s) for the writer's callgrind harness
//! (`bench/callgrind-push.sh`).
//!
//! `push_bodies STORE TERMINAL PUSHES BATCH [CARDS]`: the sales go to CARDS cards
//! (20,000 by default, as the bench's; with 100, every card of a 10-entry push after
//! the first ten pushes is one HQ holds).

use protocol::wire::{PROTOCOL_VERSION, PushRequest};
use protocol::{StoreId, TerminalId};
use testkit::entries::chain_sale;
use time::OffsetDateTime;

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
            .map(|k| chain_sale(terminal, r * batch + k, cards, now))
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
