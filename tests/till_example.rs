//! `examples/till.py`, the README's till integration example, run against a live agent
//! with a scanner on a pseudo-terminal: it follows the scan stream, shows the
//! balance, sells with points, falls back to money on a 422, sends a request again
//! after a 503, and commits.

#![allow(clippy::unwrap_used)]

use e2e::scanner::{Scanner, config, scanner_toml, start_agent, wait_all_connected};
use e2e::{temp_dir, wait_for};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CARD: &str = "4006381333931";

#[test]
fn the_till_example_sells_on_scanned_cards_with_points_and_without() {
    let dir = temp_dir();
    let mut scanner = Scanner::plug();
    let agent = start_agent(
        dir.path(),
        // Each scan of the card is a customer of its own: no debounce window.
        &format!(
            "{}[till_api]\nmax_connections = 16\n",
            config(&[scanner_toml("front", &scanner.path, "debounce_ms = 0")])
        ),
    );
    wait_all_connected(&agent);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/till.py");
    // Asking 5 points of a new card is refused (422): the example sells in money.
    let mut till = Command::new("python3")
        .arg(&script)
        .args(["--agent", &agent.base, "--redeem", "5", "--scans", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs examples/till.py");
    let (tx, lines) = mpsc::channel();
    let stdout = till.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The test stopped reading when the receiver is gone.
            let _ = tx.send(line);
        }
    });
    let mut output = Vec::new();
    let mut until = |what: &str| {
        let line = wait_for(Duration::from_secs(60), what, || {
            let line = lines.recv_timeout(Duration::from_secs(60)).ok()?;
            output.push(line.clone());
            line.contains(what).then_some(line)
        });
        (line, output.join("\n"))
    };
    until("following scans");
    // Idle connections take every slot the scan stream left (beyond the cap they are
    // answered 503 and closed): the example's first request is answered 503 and sent
    // again once they are gone.
    let addr = agent.base.trim_start_matches("http://");
    let hogs: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
    scanner.scan(CARD);
    until("503 too_many_connections, nothing recorded; retrying");
    drop(hogs);
    let (_, text) = until("committed");
    assert!(text.contains("card ****3931 (ean13) at front"), "{text}");
    assert!(text.contains("balance 0 points"), "{text}");
    assert!(
        text.contains("points refused (insufficient_points"),
        "{text}"
    );
    assert!(text.contains("accrued 10, balance now 10"), "{text}");

    scanner.scan(CARD);
    let (_, text) = until("committed, redeemed");
    assert!(text.contains("balance 10 points"), "{text}");
    assert!(text.contains("redeemed 5"), "{text}");
    let status = till.wait().unwrap();
    assert!(status.success(), "{text}");
    assert!(!text.contains(CARD), "{text}");
}
