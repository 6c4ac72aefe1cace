//! Not a test: pushes 100 000 entries over HTTP in batches of 500 and prints the rate.
//! `cargo test --release -p sync-server --test push_throughput -- --ignored --nocapture`

mod common;

use common::{Hq, client, push, push_body, sale};
use std::time::Instant;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; prints figures"]
async fn push_100k_entries_over_http() {
    const TOTAL: u64 = 100_000;
    const BATCH: u64 = 500;
    let hq = Hq::new();
    let token = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let http = client();
    let bodies: Vec<_> = (0..TOTAL / BATCH)
        .map(|b| {
            let entries = (1..=BATCH)
                .map(|k| {
                    let seq = b * BATCH + k;
                    let card = format!("{:013}", 4_000_000_000_000u64 + seq % 20_000);
                    sale(seq, &card, if seq.is_multiple_of(7) { 3 } else { 0 })
                })
                .collect();
            push_body("store-1", "till-1", entries)
        })
        .collect();
    let started = Instant::now();
    for body in &bodies {
        let (status, answer) = push(&http, &server, &token, body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "HTTP push: {TOTAL} entries in {secs:.2} s = {:.0} entries/s",
        TOTAL as f64 / secs
    );
    hq.ok(&["verify"]);
}
