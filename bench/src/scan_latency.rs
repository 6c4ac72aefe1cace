//! Scanner to till: from bytes written on a pseudo-terminal to the SSE event at a
//! listening client, and the agent's CPU while idle with four scanners connected.
//! The physical limit is the serial line itself (a 16-byte frame at 9600 baud takes
//! about 17 ms on a real wire); a PTY has no baud delay, so this is the agent's own share.

use std::path::Path;
use std::time::{Duration, Instant};
use testkit::agent::Agent;
use testkit::scanner::{
    Listener, Scanner, config, ean13, scanner_toml, start_agent, wait_all_connected,
};

/// The figures.
pub struct ScanFigures {
    /// Median latency in ms.
    pub p50_ms: f64,
    /// 99th percentile in ms.
    pub p99_ms: f64,
    /// Scans measured.
    pub scans: usize,
    /// CPU percent of one core while idle with 4 scanners connected.
    pub idle_cpu_percent: f64,
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .ok_or_else(|| anyhow::anyhow!("bad /proc stat"))?
        .1
        .split(' ')
        .collect();
    // utime and stime: fields 14 and 15 of stat(5), counted after the comm field.
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// Measures `scans` scans over 4 scanners, one at a time.
pub fn measure(dir: &Path, scans: u64, idle_secs: u64) -> anyhow::Result<ScanFigures> {
    let mut scanners: Vec<Scanner> = (0..4).map(|_| Scanner::plug()).collect();
    let tables: Vec<String> = scanners
        .iter()
        .enumerate()
        .map(|(i, s)| scanner_toml(&format!("s{i}"), &s.path, "debounce_ms = 0"))
        .collect();
    let agent: Agent = start_agent(dir, &config(&tables));
    wait_all_connected(&agent);

    std::thread::sleep(Duration::from_secs(1));
    let (before, started) = (cpu_ticks(agent.pid())?, Instant::now());
    std::thread::sleep(Duration::from_secs(idle_secs));
    // Clock ticks are 1/100 s.
    let idle_cpu_percent =
        (cpu_ticks(agent.pid())? - before) as f64 / 100.0 / started.elapsed().as_secs_f64() * 100.0;

    let till = Listener::connect(&agent);
    let mut latencies = Vec::new();
    for i in 0..scans {
        let card = ean13(&format!("{:012}", 400_000_000_000u64 + i));
        let sent = Instant::now();
        scanners[(i % 4) as usize].scan(&card);
        let event = till.next();
        latencies.push(sent.elapsed());
        anyhow::ensure!(event["card"] == card.as_str(), "unexpected event {event}");
    }
    latencies.sort();
    Ok(ScanFigures {
        p50_ms: crate::latency::quantile_ms(&latencies, 0.5),
        p99_ms: crate::latency::quantile_ms(&latencies, 0.99),
        scans: latencies.len(),
        idle_cpu_percent,
    })
}
