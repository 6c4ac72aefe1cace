//! Checks of `agent.toml` values: till API exposure and limits, HQ URL and sync
//! timings, offline caps, serial scanner settings, local program rules, logging.

use super::{KIB, MIB, Problems};
use crate::address::SyncUrl;
use crate::agent::{AgentConfig, OfflineSection, ScannerSection, SyncSection, TillApiSection};

/// Baud rates serial scanners use; anything else is almost certainly a typo.
pub(crate) const STANDARD_BAUD_RATES: [u32; 11] = [
    1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600,
];

/// Longest scanner name, in characters.
const MAX_SCANNER_NAME: usize = 64;

/// Every problem of an agent configuration.
pub(crate) fn check_agent(config: &AgentConfig) -> Problems {
    let mut problems = Problems::default();
    till_api(&mut problems, &config.till_api);
    if let Some(path) = &config.journal.path
        && path.as_os_str().is_empty()
    {
        problems.add(
            "journal.path",
            "must not be empty; leave it out to use the platform data directory",
        );
    }
    if let Some(sync) = &config.sync {
        sync_section(&mut problems, sync);
    }
    offline(&mut problems, &config.offline);
    if let Err(e) = config.limits.check() {
        problems.add(format!("limits.{}", e.key), e.reason);
    }
    for (i, scanner) in config.scanners.iter().enumerate() {
        scanner_section(&mut problems, i, scanner, &config.scanners[..i]);
    }
    if let Some(rules) = &config.program {
        problems.rules("program.", rules);
    }
    problems.log(&config.log);
    problems
}

fn till_api(problems: &mut Problems, till: &TillApiSection) {
    problems.listen_port("till_api.listen", till.listen);
    if let Some(problem) = till.exposure_problem(till.listen) {
        problems.add("till_api.listen", problem);
    }
    problems.range(
        "till_api.hold_timeout_secs",
        till.hold_timeout_secs,
        10,
        86_400,
        " seconds",
    );
    problems.range(
        "till_api.max_body_bytes",
        till.max_body_bytes,
        KIB,
        64 * MIB,
        " bytes (1 KiB to 64 MiB)",
    );
    problems.connections("till_api.", till.max_connections, till.header_timeout_secs);
}

fn sync_section(problems: &mut Problems, sync: &SyncSection) {
    match SyncUrl::parse(sync.url.trim()) {
        Err(why) => problems.add("sync.url", why),
        Ok(url) if !url.https && !url.is_loopback() => problems.add(
            "sync.url",
            format!(
                "plain http:// is allowed only to this machine (127.0.0.1, ::1, \
                 localhost), not to '{}': the terminal token and balances would cross \
                 the network unencrypted; use https://",
                url.host
            ),
        ),
        Ok(_) => {}
    }
    problems.non_empty_path("sync.token_file", &sync.token_file);
    if let Some(ca) = &sync.ca_file {
        problems.non_empty_path("sync.ca_file", ca);
    }
    problems.range(
        "sync.interval_secs",
        sync.interval_secs,
        1,
        3_600,
        " seconds",
    );
    problems.range("sync.batch_size", sync.batch_size, 1, 10_000, " entries");
    problems.range(
        "sync.max_backoff_secs",
        sync.max_backoff_secs,
        1,
        3_600,
        " seconds",
    );
    problems.range(
        "sync.live_balance_timeout_ms",
        sync.live_balance_timeout_ms,
        50,
        10_000,
        " milliseconds",
    );
    problems.range(
        "sync.request_timeout_secs",
        sync.request_timeout_secs,
        1,
        600,
        " seconds",
    );
}

fn offline(problems: &mut Problems, offline: &OfflineSection) {
    for (key, cap) in [
        (
            "max_redeem_per_card_per_day",
            offline.max_redeem_per_card_per_day,
        ),
        (
            "max_redeem_per_terminal_per_day",
            offline.max_redeem_per_terminal_per_day,
        ),
        ("max_redeem_per_receipt", offline.max_redeem_per_receipt),
    ] {
        if cap.is_negative() {
            problems.add(
                format!("offline.{key}"),
                format!("must not be negative (0 forbids offline redemption), not {cap}"),
            );
        }
    }
    if offline.max_consecutive_per_card < 1 {
        problems.add(
            "offline.max_consecutive_per_card",
            "must be at least 1 (set a cap to 0 to forbid offline redemption)",
        );
    }
    problems.range(
        "offline.max_offline_hours",
        offline.max_offline_hours,
        0,
        720,
        " hours",
    );
    problems.range(
        "offline.lease_recent_days",
        offline.lease_recent_days,
        1,
        366,
        " days",
    );
    problems.range(
        "offline.lease_sync_secs",
        offline.lease_sync_secs,
        10,
        86_400,
        " seconds",
    );
}

fn scanner_section(
    problems: &mut Problems,
    i: usize,
    scanner: &ScannerSection,
    earlier: &[ScannerSection],
) {
    let key = |name: &str| format!("scanner[{i}].{name}");
    let name = scanner.name.trim();
    if name.is_empty() || name.chars().count() > MAX_SCANNER_NAME {
        problems.add(
            key("name"),
            format!("must be 1 to {MAX_SCANNER_NAME} characters"),
        );
    } else if let Some(first) = earlier.iter().position(|s| s.name.trim() == name) {
        problems.add(
            key("name"),
            format!("'{name}' is already the name of scanner[{first}]; names must be unique"),
        );
    }
    problems.non_empty_path(key("port"), &scanner.port);
    if !STANDARD_BAUD_RATES.contains(&scanner.baud) {
        let rates: Vec<String> = STANDARD_BAUD_RATES.iter().map(u32::to_string).collect();
        problems.add(
            key("baud"),
            format!(
                "{} is not a standard baud rate; use one of {}",
                scanner.baud,
                rates.join(", ")
            ),
        );
    }
    problems.range(key("data_bits"), scanner.data_bits, 5, 8, "");
    if !matches!(scanner.stop_bits, 1 | 2) {
        problems.add(
            key("stop_bits"),
            format!("must be 1 or 2, not {}", scanner.stop_bits),
        );
    }
    problems.range(
        key("debounce_ms"),
        scanner.debounce_ms,
        0,
        60_000,
        " milliseconds",
    );
    problems.range(
        key("max_frame_len"),
        scanner.max_frame_len,
        16,
        8_192,
        " bytes",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scanner(name: &str) -> ScannerSection {
        ScannerSection {
            name: name.into(),
            port: PathBuf::from("/dev/ttyACM0"),
            baud: 9600,
            data_bits: 8,
            parity: crate::agent::Parity::None,
            stop_bits: 1,
            flow_control: crate::agent::FlowControl::None,
            terminator: crate::agent::Terminator::Cr,
            aim_prefix: false,
            debounce_ms: 1000,
            max_frame_len: 512,
        }
    }

    fn keys(config: &AgentConfig) -> Vec<String> {
        check_agent(config)
            .0
            .iter()
            .map(|p| p.key.to_string())
            .collect()
    }

    #[test]
    fn defaults_have_no_problems() {
        assert!(keys(&AgentConfig::default()).is_empty());
    }

    #[test]
    fn every_scanner_field_is_checked() {
        let mut bad = scanner(" ");
        bad.port = PathBuf::new();
        bad.baud = 12345;
        bad.data_bits = 9;
        bad.stop_bits = 3;
        bad.debounce_ms = 60_001;
        bad.max_frame_len = 8;
        let config = AgentConfig {
            scanners: vec![bad],
            ..AgentConfig::default()
        };
        assert_eq!(
            keys(&config),
            [
                "scanner[0].name",
                "scanner[0].port",
                "scanner[0].baud",
                "scanner[0].data_bits",
                "scanner[0].stop_bits",
                "scanner[0].debounce_ms",
                "scanner[0].max_frame_len",
            ]
        );
    }

    #[test]
    fn non_loopback_till_api_needs_both_tls_and_a_token() {
        let mut config = AgentConfig::default();
        config.till_api.listen = "0.0.0.0:7070".parse().expect("literal address");
        assert_eq!(keys(&config), ["till_api.listen"]);
        config.till_api.token_hash_file = Some("till-token.sha256".into());
        assert_eq!(keys(&config), ["till_api.listen"]);
        config.till_api.tls = Some(crate::server::TlsSection {
            cert_file: "till.crt".into(),
            key_file: "till.key".into(),
        });
        assert!(keys(&config).is_empty());
        config.till_api.token_hash_file = None;
        assert_eq!(keys(&config), ["till_api.listen"]);
    }

    #[test]
    fn offline_caps_must_not_be_negative() {
        let mut config = AgentConfig::default();
        config.offline.max_redeem_per_receipt = protocol::Points(-1);
        config.offline.max_consecutive_per_card = 0;
        config.offline.max_offline_hours = 721;
        config.offline.lease_recent_days = 0;
        config.offline.lease_sync_secs = 9;
        assert_eq!(
            keys(&config),
            [
                "offline.max_redeem_per_receipt",
                "offline.max_consecutive_per_card",
                "offline.max_offline_hours",
                "offline.lease_recent_days",
                "offline.lease_sync_secs",
            ]
        );
    }
}
