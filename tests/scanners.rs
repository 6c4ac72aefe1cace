//! Serial scanners end to end: the real `pos-agent` reads real kernel TTYs
//! (pseudo-terminal pairs: the agent opens the slave side as it would open
//! `/dev/ttyACM0`, the test plays the scanner on the master side) and the test listens
//! where the till does, on `GET /v1/scans` (SSE) and `GET /v1/scans/last`.
//!
//! No test asserts on timing: things that must *not* arrive are proven absent by a
//! sentinel scan sent after them that must be the next event.

#![allow(clippy::unwrap_used)]

use e2e::scanner::*;
use e2e::{temp_dir, wait_for};
use ed25519_dalek::SigningKey;
use protocol::token::{AppToken, KeyId, encode_public_key};
use protocol::wire::PublicKeyInfo;
use protocol::{CardId, StoreId, TerminalId};
use serde_json::Value;
use std::path::Path;
use std::sync::{PoisonError, mpsc};
use std::time::Duration;

#[test]
fn four_scanners_with_every_terminator_deliver_to_the_till_at_once() {
    let dir = temp_dir();
    let terminators = ["cr", "lf", "crlf", "stx-etx"];
    let scanners: Vec<Scanner> = terminators.iter().map(|_| Scanner::plug()).collect();
    let tables: Vec<String> = terminators
        .iter()
        .zip(&scanners)
        .map(|(t, s)| scanner_toml(t, &s.path, &format!("terminator = \"{t}\"")))
        .collect();
    let agent = start_agent(dir.path(), &config(&tables));

    let last = agent.get("/v1/scans/last");
    assert_eq!(last.status, 404);
    assert_eq!(last.code(), "no_scan");
    wait_all_connected(&agent);
    assert_eq!(
        scanner_states(&agent),
        terminators
            .iter()
            .map(|t| (t.to_string(), "connected".to_owned()))
            .collect::<Vec<_>>()
    );

    let till = Listener::connect(&agent);
    const PER_SCANNER: usize = 10;
    let senders: Vec<_> = scanners
        .into_iter()
        .zip(terminators)
        .enumerate()
        .map(|(n, (mut scanner, terminator))| {
            std::thread::spawn(move || {
                for i in 0..PER_SCANNER {
                    let card = format!("{}{i:07}", n + 1);
                    let bytes = match terminator {
                        "cr" => format!("{card}\r"),
                        "lf" => format!("{card}\n"),
                        "crlf" => format!("{card}\r\n"),
                        _ => format!("\x02{card}\x03"),
                    };
                    scanner.send(bytes.as_bytes());
                }
                scanner
            })
        })
        .collect();
    let mut seen: Vec<Vec<String>> = vec![Vec::new(); terminators.len()];
    let mut last_event = Value::Null;
    for _ in 0..PER_SCANNER * terminators.len() {
        let event = till.next();
        let n = terminators
            .iter()
            .position(|t| event["scanner"] == *t)
            .unwrap();
        assert_eq!(event["symbology"], "code128");
        seen[n].push(event["card"].as_str().unwrap().to_owned());
        last_event = event;
    }
    let _scanners: Vec<Scanner> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    for (n, cards) in seen.iter().enumerate() {
        let expected: Vec<String> = (0..PER_SCANNER)
            .map(|i| format!("{}{i:07}", n + 1))
            .collect();
        assert_eq!(cards, &expected, "scanner {}", terminators[n]);
    }
    let last = agent.get("/v1/scans/last");
    assert_eq!(last.status, 200);
    assert_eq!(last.body, last_event);
    for t in terminators {
        assert_eq!(scans_counted(&agent, t, "accepted"), PER_SCANNER as u64);
    }
}

#[test]
fn aim_prefixes_name_the_symbology_and_are_required_when_configured() {
    let dir = temp_dir();
    let mut aim = Scanner::plug();
    let mut plain = Scanner::plug();
    let agent = start_agent(
        dir.path(),
        &config(&[
            scanner_toml("aim", &aim.path, "aim_prefix = true\nterminator = \"crlf\""),
            scanner_toml("plain", &plain.path, ""),
        ]),
    );
    wait_all_connected(&agent);
    let till = Listener::connect(&agent);

    aim.send(b"]E04006381333931\r\n");
    assert_scan(&till.next(), "aim", "ean13", "4006381333931");
    aim.send(b"]C012345678\r\n");
    assert_scan(&till.next(), "aim", "code128", "12345678");
    aim.send(b"]Q1123456789012\r\n");
    assert_scan(&till.next(), "aim", "qr", "123456789012");
    // No identifier where one is configured: refused, never guessed.
    aim.send(b"5901234123457\r\n]E05901234123457\r\n");
    assert_scan(&till.next(), "aim", "ean13", "5901234123457");
    assert_eq!(scans_counted(&agent, "aim", "invalid"), 1);

    plain.scan(";6037990000001234=2512101?");
    assert_scan(&till.next(), "plain", "track2", "6037990000001234");
    plain.scan("5901234123457");
    assert_scan(&till.next(), "plain", "ean13", "5901234123457");
}

#[test]
fn frames_split_across_writes_or_merged_into_one_all_arrive_in_order() {
    let dir = temp_dir();
    let mut scanner = Scanner::plug();
    let agent = start_agent(
        dir.path(),
        &config(&[scanner_toml(
            "front",
            &scanner.path,
            "terminator = \"crlf\"\ndebounce_ms = 0",
        )]),
    );
    wait_all_connected(&agent);
    let till = Listener::connect(&agent);

    // One code in pieces, the CR and LF in separate writes too.
    for piece in [&b"40063"[..], b"8133", b"3931", b"\r", b"\n"] {
        scanner.send(piece);
        // Gives the agent a chance to read each piece on its own.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_scan(&till.next(), "front", "ean13", "4006381333931");
    // Three codes in one write, the last one finished by the next write.
    scanner.send(b"11111111\r\n22222222\r\n3333");
    scanner.send(b"3333\r\n");
    for card in ["11111111", "22222222", "33333333"] {
        assert_scan(&till.next(), "front", "code128", card);
    }
}

#[test]
fn garbage_over_long_frames_and_bad_codes_never_reach_the_till() {
    let dir = temp_dir();
    let mut scanner = Scanner::plug();
    let agent = start_agent(
        dir.path(),
        &config(&[scanner_toml("front", &scanner.path, "max_frame_len = 32")]),
    );
    wait_all_connected(&agent);
    let till = Listener::connect(&agent);

    // Dropped by the framer: control bytes, an over-long frame.
    scanner.send(b"\x07\x01junk\r");
    scanner.send(format!("{}\r", "9".repeat(100)).as_bytes());
    scanner.send(b"4006\x1b381333931\r");
    // Refused by the decoder: bad check digit, unknown format, not ASCII, too short.
    scanner.scan("4006381333932");
    scanner.scan("hello");
    scanner.send(b"\xff\xfe12345678\r");
    scanner.scan("12345");
    // The sentinel is the next thing the till hears.
    scanner.scan("5901234123457");
    assert_scan(&till.next(), "front", "ean13", "5901234123457");

    assert_eq!(scans_counted(&agent, "front", "dropped"), 3);
    assert_eq!(scans_counted(&agent, "front", "invalid"), 4);
    assert_eq!(scans_counted(&agent, "front", "accepted"), 1);
    let log = agent.log();
    assert!(log.contains("bad EAN-13 check digit"), "{log}");
    assert!(log.contains("****3932"), "{log}");
    assert!(log.contains("frame longer than 32 bytes"), "{log}");
    assert!(log.contains("control byte 0x07"), "{log}");
    for full in ["4006381333932", "5901234123457", "4006381333931"] {
        assert!(
            !log.contains(full),
            "a card number in the log: {full}\n{log}"
        );
    }
    // Still reading after all that.
    scanner.scan("4006381333931");
    assert_scan(&till.next(), "front", "ean13", "4006381333931");
}

#[test]
fn the_same_card_from_the_same_scanner_within_the_window_is_one_scan() {
    let dir = temp_dir();
    let mut front = Scanner::plug();
    let mut side = Scanner::plug();
    let agent = start_agent(
        dir.path(),
        &config(&[
            scanner_toml("front", &front.path, "debounce_ms = 60000"),
            scanner_toml("side", &side.path, "debounce_ms = 60000"),
        ]),
    );
    wait_all_connected(&agent);
    let till = Listener::connect(&agent);

    // A continuous-mode scanner reading the card three times.
    front.send(b"4006381333931\r4006381333931\r4006381333931\r");
    front.scan("5901234123457");
    assert_scan(&till.next(), "front", "ean13", "4006381333931");
    assert_scan(&till.next(), "front", "ean13", "5901234123457");
    // The window is per scanner.
    side.scan("4006381333931");
    assert_scan(&till.next(), "side", "ean13", "4006381333931");
    assert_eq!(scans_counted(&agent, "front", "debounced"), 2);
    assert_eq!(scans_counted(&agent, "front", "accepted"), 2);
}

/// Creates the agent's journal holding HQ's public key `key_id`, as a sync would.
fn journal_with_key(dir: &Path, key_id: u32, key: &SigningKey) {
    let mut journal = agent::journal::JournalFile::open(
        &dir.join("journal.db"),
        &StoreId::parse("store-1").unwrap(),
        &TerminalId::parse("till-1").unwrap(),
    )
    .unwrap();
    let keys = [PublicKeyInfo {
        key_id: KeyId(key_id),
        public_key: encode_public_key(&key.verifying_key()),
        valid_until: None,
    }];
    journal.write(|tx| tx.replace_signing_keys(&keys)).unwrap();
}

fn app_token(key: &SigningKey, key_id: u32, card: &str, issued_at: i64, expires_at: i64) -> String {
    AppToken {
        card: CardId::parse(card).unwrap(),
        issued_at,
        expires_at,
        key_id: KeyId(key_id),
    }
    .sign(key)
}

fn used_tokens_in_journal(dir: &Path) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("journal.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.query_row("SELECT count(*) FROM used_tokens", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn app_qr_tokens_are_verified_and_accepted_once_per_terminal_even_across_restarts() {
    let dir = temp_dir();
    let hq = SigningKey::from_bytes(&[42; 32]);
    let forger = SigningKey::from_bytes(&[66; 32]);
    journal_with_key(dir.path(), 7, &hq);
    let mut front = Scanner::plug();
    let mut side = Scanner::plug();
    let mut agent = start_agent(
        dir.path(),
        &config(&[
            scanner_toml("front", &front.path, "aim_prefix = true\ndebounce_ms = 0"),
            scanner_toml("side", &side.path, "debounce_ms = 60000"),
        ]),
    );
    wait_all_connected(&agent);
    let till = Listener::connect(&agent);
    let now = unix_now();
    let valid = app_token(&hq, 7, "4006381333931", now - 10, now + 600);

    front.scan(&format!("]Q1{valid}"));
    assert_scan(&till.next(), "front", "qr", "4006381333931");

    // Forged, expired, signed with a key this till does not know, replayed on
    // another scanner and on the same one: all refused.
    front.scan(&format!(
        "]Q1{}",
        app_token(&forger, 7, "4006381333931", now, now + 600)
    ));
    front.scan(&format!(
        "]Q1{}",
        app_token(&hq, 7, "4006381333931", now - 900, now - 300)
    ));
    front.scan(&format!(
        "]Q1{}",
        app_token(&forger, 8, "4006381333931", now, now + 600)
    ));
    front.scan(&format!("]Q1{valid}"));
    front.scan("]E05901234123457");
    assert_scan(&till.next(), "front", "ean13", "5901234123457");
    assert_eq!(scans_counted(&agent, "front", "invalid"), 4);
    // Another scanner of this till: refused too. Its second read is the same
    // presentation: debounced, not a second refusal.
    side.scan(&valid);
    side.scan(&valid);
    wait_for(WAIT, "the replay on side to be refused", || {
        (scans_counted(&agent, "side", "invalid") == 1
            && scans_counted(&agent, "side", "debounced") == 1)
            .then_some(())
    });
    side.scan("5901234123457");
    assert_scan(&till.next(), "side", "ean13", "5901234123457");
    assert_eq!(scans_counted(&agent, "side", "invalid"), 1);
    let log = agent.log();
    assert!(log.contains("bad signature"), "{log}");
    assert!(log.contains("expired"), "{log}");
    assert!(log.contains("replayed"), "{log}");
    assert!(!log.contains(&valid[4..40]), "a token in the log\n{log}");

    // The used token is in the journal (written behind the scan), so a power cut
    // and restart does not let the screenshot in again.
    wait_for(WAIT, "the used token in the journal", || {
        (used_tokens_in_journal(dir.path()) == 1).then_some(())
    });
    restart_agent(&mut agent);
    wait_all_connected(&agent);
    let till = Listener::connect(&agent);
    front.scan(&format!("]Q1{valid}"));
    let fresh = app_token(&hq, 7, "5901234123457", now, now + 600);
    front.scan(&format!("]Q1{fresh}"));
    assert_scan(&till.next(), "front", "qr", "5901234123457");
    assert_eq!(scans_counted(&agent, "front", "invalid"), 1);
}

#[test]
fn an_unplugged_scanner_is_reported_and_reopened_through_its_symlink() {
    let dir = temp_dir();
    let link = dir.path().join("usb-Scanner_S123-if00");
    let mut scanner = Scanner::plug_at(&link);
    let agent = start_agent(
        dir.path(),
        &config(&[scanner_toml("front", &link, "debounce_ms = 60000")]),
    );
    wait_state(&agent, "front", "connected");
    let till = Listener::connect(&agent);
    scanner.scan("4006381333931");
    assert_scan(&till.next(), "front", "ean13", "4006381333931");

    scanner.unplug_at(&link);
    let down = wait_state(&agent, "front", "disconnected");
    assert!(
        down["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{down}"
    );
    assert_eq!(down["port"], link.display().to_string());

    // Back in, as a new TTY behind the same stable name; the agent was not restarted
    // and the till's stream is the same one.
    let mut scanner = Scanner::plug_at(&link);
    let up = wait_state(&agent, "front", "connected");
    assert!(up.get("error").is_none(), "{up}");
    scanner.scan("5901234123457");
    assert_scan(&till.next(), "front", "ean13", "5901234123457");
    // Twice unplugged, twice back.
    scanner.unplug_at(&link);
    wait_state(&agent, "front", "disconnected");
    let mut scanner = Scanner::plug_at(&link);
    wait_state(&agent, "front", "connected");
    scanner.scan("12345678");
    assert_scan(&till.next(), "front", "code128", "12345678");
    assert!(agent.log().contains("scanner disconnected"));
}

#[test]
fn a_scanner_missing_at_start_is_not_fatal_and_is_used_once_plugged_in() {
    let dir = temp_dir();
    let link = dir.path().join("scanner");
    let agent = start_agent(dir.path(), &config(&[scanner_toml("front", &link, "")]));
    // Registered at start, then the first attempt to open it fails with a reason.
    let down = wait_for(WAIT, "the open error in health", || {
        agent.health()["scanners"][0]
            .get("error")
            .is_some()
            .then(|| agent.health()["scanners"][0].clone())
    });
    assert_eq!(down["state"], "disconnected", "{down}");
    let till = Listener::connect(&agent);

    let mut scanner = Scanner::plug_at(&link);
    wait_state(&agent, "front", "connected");
    scanner.scan("4006381333931");
    assert_scan(&till.next(), "front", "ean13", "4006381333931");
}

#[test]
fn every_listener_gets_every_scan_and_a_stalled_one_blocks_nobody() {
    let dir = temp_dir();
    let mut scanner = Scanner::plug();
    let agent = start_agent(
        dir.path(),
        &config(&[scanner_toml("front", &scanner.path, "debounce_ms = 0")]),
    );
    wait_all_connected(&agent);
    // Connected and subscribed, but never reads a byte of the body.
    let stalled = connect_stalled(&agent);
    let listeners = [Listener::connect(&agent), Listener::connect(&agent)];

    const ROUNDS: usize = 30;
    const PER_ROUND: usize = 100;
    for round in 0..ROUNDS {
        let batch: String = (0..PER_ROUND)
            .map(|i| format!("{:08}\r", 10_000_000 + round * PER_ROUND + i))
            .collect();
        scanner.send(batch.as_bytes());
        for listener in &listeners {
            for i in 0..PER_ROUND {
                let event = listener.next();
                assert_eq!(
                    event["card"],
                    format!("{:08}", 10_000_000 + round * PER_ROUND + i)
                );
            }
        }
    }
    assert_eq!(
        scans_counted(&agent, "front", "accepted"),
        (ROUNDS * PER_ROUND) as u64
    );
    assert_eq!(
        agent.get("/v1/scans/last").body["card"],
        format!("{:08}", 10_000_000 + ROUNDS * PER_ROUND - 1)
    );
    drop(stalled);
}

#[test]
fn stopping_the_agent_ends_open_scan_streams() {
    let dir = temp_dir();
    let scanner = Scanner::plug();
    let mut agent = start_agent(
        dir.path(),
        &config(&[scanner_toml("front", &scanner.path, "")]),
    );
    wait_all_connected(&agent);
    let till = Listener::connect(&agent);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let clean = agent.stop();
        let _ = tx.send((clean, agent.log()));
    });
    let (clean, log) = rx
        .recv_timeout(WAIT)
        .expect("the agent to stop while a till listens");
    assert!(clean, "{log}");
    assert!(till.ended());
}

#[test]
fn ports_lists_serial_ports_or_says_there_are_none() {
    let out = {
        let _spawning = SPAWN_LOCK.read().unwrap_or_else(PoisonError::into_inner);
        std::process::Command::new(e2e::bin("pos-agent"))
            .arg("ports")
            .output()
            .unwrap()
    };
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("Serial ports:")
            || text.starts_with("No serial ports found.")
            || text.starts_with("Cannot enumerate serial ports"),
        "{text}"
    );
}
