//! Catch-up after an outage: a till whose journal holds a backlog of offline entries
//! pushes it to a real `sync-server` on SQLite (both real binaries), timed from the
//! agent being ready to HQ having acknowledged everything.

use crate::workload;
use e2e::agent::{Agent, sync_config};
use e2e::server::Server;
use e2e::wait_for;
use protocol::{StoreId, TerminalId};
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes `n` offline sales into a fresh journal for store-1/till-1 in `dir`.
pub fn write_backlog(dir: &Path, n: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut conn = agent::journal::schema::open(
        &dir.join("journal.db"),
        &StoreId::parse("store-1")?,
        &TerminalId::parse("till-1")?,
    )?;
    let mut seq = 0;
    while seq < n {
        let tx = conn.transaction()?;
        for _ in 0..1_000.min(n - seq) {
            seq += 1;
            let body = workload::sale_body("till-1", seq)?;
            agent::journal::entries::append(&tx, body, time::OffsetDateTime::now_utc(), 0)?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// Entries per second from agent start to HQ having acknowledged all `n`.
pub fn measure(dir: &Path, n: u64, batch_size: u32) -> anyhow::Result<f64> {
    let server = Server::start(&dir.join("hq"), "");
    let token = server.add_terminal("store-1", "till-1");
    let adir = dir.join("till");
    write_backlog(&adir, n)?;
    let config = sync_config(
        &adir,
        "store-1",
        "till-1",
        &server.base,
        &token,
        &format!("batch_size = {batch_size}\n"),
    );
    let agent = Agent::start(&adir, &config);
    let started = Instant::now();
    wait_for(Duration::from_secs(900), "the backlog to drain", || {
        let h = agent.health();
        (h["queue_depth"] == 0 && h["acked_through"] == n).then_some(())
    });
    let rate = n as f64 / started.elapsed().as_secs_f64();
    server.assert_verify();
    Ok(rate)
}
