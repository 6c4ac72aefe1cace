//! Loading config files through the public API: defaults, the `file:line: key`
//! errors of every class, collected validation errors and path resolution.

use config::{ConfigError, ConfigErrors, ErrorKind, parse_agent, parse_rules, parse_server};
use std::path::{Path, PathBuf};

const BASE: &str = "/etc/pos";

fn agent_errors(text: &str) -> ConfigErrors {
    parse_agent(text, "agent.toml", Path::new(BASE)).expect_err("the file has an error")
}

fn only(errors: &ConfigErrors) -> &ConfigError {
    assert_eq!(errors.len(), 1, "expected one error, got:\n{errors}");
    &errors.0[0]
}

/// Line, key and display of the single error of `errors`.
fn single(errors: &ConfigErrors) -> (Option<usize>, Option<&str>, String) {
    let e = only(errors);
    (e.line, e.key.as_deref(), e.to_string())
}

const SCANNERS: &str = r#"
[[scanner]]
name = "front"
port = "/dev/ttyACM0"
baud = 9600

[[scanner]]
name = "back"
port = "/dev/ttyUSB0"
baud = 12345
"#;

#[test]
fn empty_file_gives_all_defaults() {
    let config = parse_agent("", "agent.toml", Path::new(BASE)).expect("empty file is valid");
    assert_eq!(config, config::AgentConfig::default());
    let server = parse_server("", "sync-server.toml", Path::new(BASE)).expect("valid");
    assert_eq!(server, config::ServerConfig::default());
    let rules = parse_rules("", "rules.toml").expect("valid");
    assert_eq!(rules, protocol::rules::ProgramRules::default());
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let errors = agent_errors("[store]\nstore_id = \"store-042\"\nterminal_idd = \"till-3\"\n");
    let (line, key, text) = single(&errors);
    assert_eq!(line, Some(3));
    assert_eq!(key, Some("store.terminal_idd"));
    assert_eq!(
        text,
        "agent.toml:3: unknown key 'terminal_idd' in [store], did you mean 'terminal_id'?"
    );
    assert_eq!(only(&errors).kind, ErrorKind::UnknownKey);
}

#[test]
fn unknown_table_is_an_unknown_key_at_its_header() {
    let errors = agent_errors("[store]\n\n[tills]\nx = 1\n");
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(3), Some("tills")));
    assert!(
        text.starts_with("agent.toml:3: unknown key 'tills' (known keys: store, "),
        "{text}"
    );
}

#[test]
fn wrong_type_names_the_key_and_both_types() {
    let errors =
        agent_errors("[[scanner]]\nname = \"front\"\nport = \"/dev/ttyACM0\"\nbaud = \"fast\"\n");
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(4), Some("scanner[0].baud")));
    assert_eq!(
        text,
        "agent.toml:4: scanner[0].baud: expected an integer, found a string \"fast\""
    );
    assert_eq!(only(&errors).kind, ErrorKind::WrongType);
}

#[test]
fn a_limit_above_its_hard_ceiling_is_refused_with_its_line() {
    let errors =
        agent_errors("[limits]\nmax_line_minor = 100\nmax_entry_points = 1000000000000000\n");
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(3), Some("limits.max_entry_points")));
    assert!(text.contains("hard ceiling"), "{text}");
    let ok = parse_agent(
        "[limits]\nmax_line_minor = 100\n",
        "agent.toml",
        Path::new(BASE),
    )
    .expect("a limit within its ceiling loads");
    assert_eq!(ok.limits.max_line_minor.get(), 100);
    assert_eq!(
        ok.limits.max_receipt_minor,
        protocol::limits::Limits::DEFAULT.max_receipt_minor
    );
}

#[test]
fn negative_number_for_unsigned_key_is_out_of_range() {
    let errors = agent_errors("[offline]\n\nmax_consecutive_per_card = -1\n");
    let (line, key, text) = single(&errors);
    assert_eq!(
        (line, key),
        (Some(3), Some("offline.max_consecutive_per_card"))
    );
    assert!(text.contains("-1 is out of range"), "{text}");
}

#[test]
fn syntax_error_names_line_and_key() {
    let errors = agent_errors("[store]\nstore_id = \"store-042\"\nterminal_id = till-3\n");
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(3), Some("store.terminal_id")));
    assert!(
        text.starts_with("agent.toml:3: store.terminal_id: invalid TOML: "),
        "{text}"
    );
    assert!(
        text.ends_with("(text must be in quotes: terminal_id = \"till-3\")"),
        "{text}"
    );
    assert_eq!(only(&errors).kind, ErrorKind::Syntax);
}

#[test]
fn duplicate_key_is_a_syntax_error_on_the_second_line() {
    let errors = agent_errors("[store]\nstore_id = \"a\"\nstore_id = \"b\"\n");
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(3), Some("store.store_id")));
    assert!(text.contains("duplicate key"), "{text}");
}

#[test]
fn missing_required_key_points_at_its_table() {
    let errors = agent_errors("[store]\n\n[sync]\ntoken_file = \"terminal.token\"\n");
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(3), Some("sync.url")));
    assert_eq!(text, "agent.toml:3: missing key 'url' in [sync]");
    assert_eq!(only(&errors).kind, ErrorKind::MissingKey);
}

#[test]
fn unknown_terminator_lists_the_choices() {
    let errors = agent_errors(
        "[[scanner]]\nname = \"front\"\nport = \"/dev/ttyACM0\"\nterminator = \"tab\"\n",
    );
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(4), Some("scanner[0].terminator")));
    assert!(
        text.ends_with("'tab' is not one of: cr, lf, crlf, stx-etx"),
        "{text}"
    );
}

#[test]
fn unknown_offline_redemption_mode_lists_the_choices_and_the_default_is_escrow() {
    let errors = agent_errors("[offline]\nredemption = \"trust\"\n");
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(2), Some("offline.redemption")));
    assert!(
        text.ends_with("'trust' is not one of: escrow, caps, none"),
        "{text}"
    );
    assert_eq!(
        config::agent::AgentConfig::default().offline.redemption,
        config::agent::OfflineRedemption::Escrow
    );
}

#[test]
fn bad_value_parsed_by_its_type_names_the_key() {
    let errors = agent_errors("[till_api]\nlisten = \"localhost:7070\"\n");
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(2), Some("till_api.listen")));
    assert!(text.contains("is not an IP address with a port"), "{text}");
}

#[test]
fn bad_baud_in_second_scanner_points_at_that_line() {
    let errors = agent_errors(SCANNERS);
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(10), Some("scanner[1].baud")));
    assert_eq!(
        text,
        "agent.toml:10: scanner[1].baud: 12345 is not a standard baud rate; use one of \
         1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600"
    );
    assert_eq!(only(&errors).kind, ErrorKind::InvalidValue);
}

#[test]
fn bad_program_rule_points_at_its_line_with_program_key() {
    let errors =
        agent_errors("[store]\n\n[program]\npoint_value_minor = 100\naccrual_bp = 20000\n");
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(5), Some("program.accrual_bp")));
    assert!(
        text.starts_with("agent.toml:5: program.accrual_bp: must be at most"),
        "{text}"
    );
}

#[test]
fn non_loopback_till_api_explains_the_missing_auth() {
    let errors = agent_errors("[till_api]\nlisten = \"0.0.0.0:7070\"\n");
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(2), Some("till_api.listen")));
    assert!(text.contains("needs TLS and a till token"), "{text}");
    assert!(text.contains("till-token rotate"), "{text}");
    let allowed = "[till_api]\nlisten = \"0.0.0.0:7070\"\ntoken_hash_file = \"till.sha256\"\n\
                   [till_api.tls]\ncert_file = \"till.crt\"\nkey_file = \"till.key\"\n";
    let config = parse_agent(allowed, "agent.toml", Path::new(BASE)).expect("TLS and a token");
    let tls = config.till_api.tls.expect("tls");
    assert_eq!(tls.cert_file, Path::new(BASE).join("till.crt"));
    assert_eq!(
        config.till_api.token_hash_file,
        Some(Path::new(BASE).join("till.sha256"))
    );
}

#[test]
fn plain_http_sync_is_refused_to_a_remote_host_only() {
    let sync = |url: &str| format!("[sync]\nurl = \"{url}\"\ntoken_file = \"t\"\n");
    let errors = agent_errors(&sync("http://hq.example:8080"));
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(2), Some("sync.url")));
    assert!(text.contains("use https://"), "{text}");
    for ok in [
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "https://hq.example",
    ] {
        assert!(
            parse_agent(&sync(ok), "agent.toml", Path::new(BASE)).is_ok(),
            "{ok}"
        );
    }
}

#[test]
fn duplicate_scanner_names_are_refused() {
    let text = "[[scanner]]\nname = \"front\"\nport = \"/dev/a\"\n\
                [[scanner]]\nname = \"front\"\nport = \"/dev/b\"\n";
    let errors = agent_errors(text);
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(5), Some("scanner[1].name")));
    assert!(text.contains("already the name of scanner[0]"), "{text}");
}

#[test]
fn all_validation_errors_are_collected_in_line_order() {
    let text = "\
[till_api]
hold_timeout_secs = 5

[sync]
url = \"https://hq.example\"
token_file = \"\"
interval_secs = 0

[[scanner]]
name = \"front\"
port = \"/dev/ttyACM0\"
stop_bits = 3

[log]
format = \"json\"
level = \"\"
";
    let errors = agent_errors(text);
    let found: Vec<(Option<usize>, Option<&str>)> =
        errors.iter().map(|e| (e.line, e.key.as_deref())).collect();
    assert_eq!(
        found,
        [
            (Some(2), Some("till_api.hold_timeout_secs")),
            (Some(6), Some("sync.token_file")),
            (Some(7), Some("sync.interval_secs")),
            (Some(12), Some("scanner[0].stop_bits")),
            (Some(16), Some("log.level")),
        ]
    );
    assert_eq!(errors.to_string().lines().count(), 5);
}

#[test]
fn relative_paths_are_resolved_against_the_base_dir() {
    let text = "[journal]\npath = \"data/journal.db\"\n\
                [sync]\nurl = \"https://hq.example\"\ntoken_file = \"terminal.token\"\n\
                ca_file = \"/opt/ca.pem\"\n";
    let config = parse_agent(text, "agent.toml", Path::new(BASE)).expect("valid");
    assert_eq!(
        config.journal.path,
        Some(PathBuf::from("/etc/pos/data/journal.db"))
    );
    let sync = config.sync.expect("sync is configured");
    assert_eq!(sync.token_file, Path::new("/etc/pos/terminal.token"));
    assert_eq!(sync.ca_file.as_deref(), Some(Path::new("/opt/ca.pem")));
}

#[test]
fn load_agent_names_the_file_as_given_and_resolves_next_to_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "[journal]\npath = \"journal.db\"\n").expect("write config");
    let config = config::load_agent(&path).expect("valid");
    assert_eq!(config.journal.path, Some(dir.path().join("journal.db")));

    std::fs::write(&path, "[journal]\npaths = \"journal.db\"\n").expect("write config");
    let errors = config::load_agent(&path).expect_err("unknown key");
    assert_eq!(only(&errors).file, path.display().to_string());
    assert!(
        errors
            .to_string()
            .starts_with(&format!("{}:2: ", path.display()))
    );
}

#[test]
fn server_plain_http_off_loopback_is_explained() {
    let errors = parse_server(
        "listen = \"0.0.0.0:8443\"\n",
        "sync-server.toml",
        Path::new(BASE),
    )
    .expect_err("plain HTTP on the network");
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(1), Some("listen")));
    assert!(text.contains("allow_plain_http = true"), "{text}");
}

#[test]
fn server_connection_limits_are_read_and_checked_with_their_line() {
    let config = parse_server(
        "max_connections = 100\nheader_timeout_secs = 5\n",
        "sync-server.toml",
        Path::new(BASE),
    )
    .expect("valid");
    assert_eq!(
        (config.max_connections, config.header_timeout_secs),
        (100, 5)
    );
    let errors = parse_server(
        "max_connections = 100\nheader_timeout_secs = 0\n",
        "sync-server.toml",
        Path::new(BASE),
    )
    .expect_err("no time for headers");
    let (line, key, _) = single(&errors);
    assert_eq!((line, key), (Some(2), Some("header_timeout_secs")));
    let errors = parse_server("max_connections = 1\n", "sync-server.toml", Path::new(BASE))
        .expect_err("a cap too low to serve");
    let (line, key, _) = single(&errors);
    assert_eq!((line, key), (Some(1), Some("max_connections")));
}

#[test]
fn server_database_is_checked_and_sqlite_path_resolved() {
    let base = Path::new("/srv/hq");
    let errors = parse_server("\n\ndatabase = \"mysql://hq\"\n", "sync-server.toml", base)
        .expect_err("unsupported database");
    let (line, key, _) = single(&errors);
    assert_eq!((line, key), (Some(3), Some("database")));
    let config =
        parse_server("database = \"sqlite:hq.db\"\n", "sync-server.toml", base).expect("valid");
    assert_eq!(config.database.as_deref(), Some("sqlite:/srv/hq/hq.db"));
}

#[test]
fn rules_file_error_names_key_without_prefix() {
    let text = "version = 3\n\n[[tier]]\nname = \"silver\"\nmin_spend_minor = 0\naccrual_bp = 600\n\
                \n[[tier]]\nname = \"gold\"\nmin_spend_minor = 100000\naccrual_bp = 20000\n";
    let errors = parse_rules(text, "rules.toml").expect_err("tier rate too high");
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(11), Some("tier[1].accrual_bp")));
    assert!(
        text.starts_with("rules.toml:11: tier[1].accrual_bp: "),
        "{text}"
    );
}

#[test]
fn promotion_dates_may_be_strings_or_toml_dates() {
    let promotion = |starts: &str, ends: &str| {
        format!(
            "[[promotion]]\nname = \"double\"\nmultiplier_percent = 200\n\
             starts = {starts}\nends = {ends}\n"
        )
    };
    let quoted = parse_rules(&promotion("\"2026-11-01\"", "\"2026-11-30\""), "rules.toml")
        .expect("quoted dates");
    let bare =
        parse_rules(&promotion("2026-11-01", "2026-11-30"), "rules.toml").expect("bare dates");
    assert_eq!(quoted, bare);
    let errors = parse_rules(&promotion("2026-11-30", "2026-11-01"), "rules.toml")
        .expect_err("ends before starts");
    let (line, key, _) = single(&errors);
    assert_eq!((line, key), (Some(5), Some("promotion[0].ends")));
}

#[test]
fn promotion_date_with_time_is_a_type_error() {
    let text = "[[promotion]]\nname = \"x\"\nmultiplier_percent = 200\n\
                starts = 2026-11-01T10:00:00\nends = 2026-11-30\n";
    let errors = parse_rules(text, "rules.toml").expect_err("a date-time is not a date");
    let (line, key, text) = single(&errors);
    assert_eq!((line, key), (Some(4), Some("promotion[0].starts")));
    assert!(
        text.ends_with("expected a date like \"2026-11-01\", found a date-time"),
        "{text}"
    );
}

#[test]
fn every_error_of_a_file_is_reported_in_one_run_in_line_order() {
    // Two typos, a wrong type and a bad value: each left out in turn, the rest read on.
    let text = "\
[till_api]
hold_timeout_secs = 5
listen = \"127.0.0.1:7070\"
[store]
store_idd = \"s\"
terminal_id = 3
[sync]
url = \"https://hq.example\"
token_file = \"t\"
intervall_secs = 5
";
    let errors = agent_errors(text);
    let found: Vec<_> = errors.iter().map(|e| (e.line, e.key.as_deref())).collect();
    assert_eq!(
        found,
        [
            (Some(2), Some("till_api.hold_timeout_secs")),
            (Some(5), Some("store.store_idd")),
            (Some(6), Some("store.terminal_id")),
            (Some(10), Some("sync.intervall_secs")),
        ],
        "{errors}"
    );
    let kinds: Vec<_> = errors.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            ErrorKind::InvalidValue,
            ErrorKind::UnknownKey,
            ErrorKind::WrongType,
            ErrorKind::UnknownKey
        ]
    );
}

#[test]
fn a_required_key_of_the_wrong_type_is_reported_once() {
    // Left out, `url` would be missing: that is not a second error.
    let errors = agent_errors("[sync]\nurl = 5\ntoken_file = \"t\"\n");
    let (line, key, _) = single(&errors);
    assert_eq!((line, key), (Some(2), Some("sync.url")));
}
