//! Till sale throughput of the real agent, and its idle memory.

use crate::cpu;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::agent::{Agent, sale_body};

/// Results of the agent benchmark.
pub struct SalesFigures {
    /// Sequential hold+commit pairs per second over one keep-alive connection.
    pub sales_per_s: f64,
    /// Journal transactions per second (two per sale).
    pub commits_per_s: f64,
    /// Resident memory after start-up and the sales, idle, in MB.
    pub rss_mb_idle: f64,
    /// The agent's CPU (user + system, all threads) per pair, in µs.
    pub agent_cpu_us_per_pair: f64,
    /// The bench client's own CPU (its one thread) per pair, in µs: the loop is
    /// sequential, so this time adds to every pair's wall time.
    pub client_cpu_us_per_pair: f64,
}

/// Runs `sales` sequential sales against a fresh standalone agent in `dir`.
pub fn measure(dir: &Path, sales: u32) -> anyhow::Result<SalesFigures> {
    let mut agent = Agent::start(dir, &Agent::standalone_config());
    // One client, one keep-alive connection, one request at a time: the till's pattern.
    let client = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(true)
            .max_idle_connections_per_host(1)
            .build(),
    );
    let warmup = 20;
    let mut started = Instant::now();
    let mut cpu_before = (0.0, 0.0);
    for i in 0..(sales + warmup) {
        if i == warmup {
            started = Instant::now();
            cpu_before = (cpu::process_seconds(agent.pid())?, cpu::thread_seconds()?);
        }
        let receipt = format!("B-{i}");
        // Each answer is read to its end, as a till does: ureq returns a connection to
        // its pool only then, and otherwise opens a new one for every request.
        client
            .post(&agent.url("/v1/sales"))
            .send_json(sale_body(
                &receipt,
                Some("4006381333931"),
                1_000 + i64::from(i % 100),
                0,
            ))?
            .body_mut()
            .read_to_vec()?;
        client
            .post(&agent.url(&format!("/v1/sales/{receipt}/commit")))
            .send_json(json!({}))?
            .body_mut()
            .read_to_vec()?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_pair_us = |s: f64| s * 1e6 / f64::from(sales);
    let agent_cpu_us_per_pair = per_pair_us(cpu::process_seconds(agent.pid())? - cpu_before.0);
    let client_cpu_us_per_pair = per_pair_us(cpu::thread_seconds()? - cpu_before.1);
    std::thread::sleep(Duration::from_secs(2));
    let rss_mb_idle = rss_mb(agent.pid())?;
    agent.stop();
    let sales_per_s = f64::from(sales) / elapsed;
    Ok(SalesFigures {
        sales_per_s,
        commits_per_s: sales_per_s * 2.0,
        rss_mb_idle,
        agent_cpu_us_per_pair,
        client_cpu_us_per_pair,
    })
}

/// Resident set size of a process, from /proc, in MB.
pub fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))?;
    Ok(kb / 1024.0)
}
