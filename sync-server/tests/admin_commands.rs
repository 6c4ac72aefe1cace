//! The admin commands of the real binary: terminals, rules, verify, the ledger job,
//! signing keys and app tokens, reports, and the injectable clock.

// Test bodies are plain functions that `on_every_backend!` calls from each backend's
// #[test], so clippy's allow-unwrap-in-tests does not see them as tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, client, get, last_line, push, push_body, sale, sale_at};
use protocol::token::{AppToken, KeyRing, PublicKey, TokenError, decode_public_key};
use protocol::wire::PullResponse;
use time::{Duration, OffsetDateTime};

const CARD: &str = "4006381333931";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn terminal_add_prints_the_token_alone_on_its_last_line_and_rotate_replaces_it(
    backend: Backend,
) {
    let hq = backend.hq();
    let out = hq.ok(&[
        "terminal",
        "add",
        "--store",
        "store-042",
        "--terminal",
        "till-3",
    ]);
    let token = last_line(&out);
    assert!(token.starts_with("lt_") && !token.contains(' '), "{out}");
    assert!(
        !out.lines().rev().skip(1).any(|l| l.contains(token)),
        "printed once"
    );

    let again = hq.run(&[
        "terminal",
        "add",
        "--store",
        "store-042",
        "--terminal",
        "till-3",
    ]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--rotate"), "{}", stderr(&again));

    let rotated = hq.ok(&[
        "terminal",
        "add",
        "--store",
        "store-042",
        "--terminal",
        "till-3",
        "--rotate",
    ]);
    let new_token = last_line(&rotated).to_owned();
    assert_ne!(new_token, token);
    let server = hq.start();
    let http = client();
    let body = push_body("store-042", "till-3", vec![sale(1, CARD, 0)]);
    assert_eq!(push(&http, &server, token, &body).await.0, 401);
    assert_eq!(push(&http, &server, &new_token, &body).await.0, 200);
    let list = hq.ok(&["terminal", "list"]);
    let row = list.lines().find(|l| l.contains("till-3")).unwrap();
    assert!(
        row.split_whitespace().any(|w| w == "1"),
        "acked_through 1: {list}"
    );
}

async fn verify_passes_after_traffic_and_fails_on_a_tampered_database(backend: Backend) {
    let hq = backend.hq();
    let token = hq.add_terminal("store-1", "till-1");
    {
        let server = hq.start();
        let http = client();
        let entries = vec![sale(1, CARD, 0), sale(2, CARD, 0), sale(3, CARD, 8)];
        let body = push_body("store-1", "till-1", entries);
        assert_eq!(push(&http, &server, &token, &body).await.0, 200);
    }
    let ok = hq.ok(&["verify"]);
    assert!(ok.contains("every balance matches its ledger"), "{ok}");

    hq.tamper("UPDATE cards SET balance = balance + 100");
    let tampered = hq.run(&["verify"]);
    assert_eq!(tampered.status.code(), Some(1));
    let text = String::from_utf8_lossy(&tampered.stdout);
    assert!(
        text.contains("DIFFERENCE card ****3931: balance") && !text.contains(CARD),
        "the difference names the card, masked: {text}"
    );
}

async fn jobs_run_now_matures_pending_points_and_expires_old_ones(backend: Backend) {
    let hq = backend.hq();
    let rules = hq.dir.path().join("rules.toml");
    std::fs::write(&rules, "pending_days = 5\nexpiry_days = 30\n").unwrap();
    hq.ok(&["rules", "set", rules.to_str().unwrap()]);
    let token = hq.add_terminal("store-1", "till-1");
    let now = OffsetDateTime::now_utc();
    {
        let server = hq.start();
        let http = client();
        let entries = vec![
            sale_at(1, Some(CARD), 0, now, Some(now + Duration::days(5))),
            sale_at(2, Some(CARD), 0, now, None),
        ];
        let body = push_body("store-1", "till-1", entries);
        assert_eq!(push(&http, &server, &token, &body).await.0, 200);
    }
    let show = hq.ok(&["card", "show", CARD]);
    assert!(
        show.starts_with("card       ****3931\n") && !show.contains(CARD),
        "the card is echoed masked: {show}"
    );
    assert!(
        show.contains("pending    5\n") && show.contains("available  5\n"),
        "{show}"
    );

    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let at = rfc(now + Duration::days(6));
    let ran = hq.ok(&["jobs", "run", "--now", &at]);
    assert!(ran.contains("matured 5 points in 1 lots"), "{ran}");
    let again = hq.ok(&["jobs", "run", "--now", &at]);
    assert!(
        again.contains("matured 0 points in 0 lots, expired 0 points"),
        "{again}"
    );
    let show = hq.ok(&["card", "show", CARD]);
    assert!(
        show.contains("pending    0\n") && show.contains("available  10\n"),
        "{show}"
    );

    let ran = hq.ok(&["jobs", "run", "--now", &rfc(now + Duration::days(31))]);
    assert!(ran.contains("expired 10 points in 2 lots"), "{ran}");
    let show = hq.ok(&["card", "show", CARD]);
    assert!(show.contains("balance    0\n"), "{show}");
    assert!(show.contains("expiry"), "{show}");
    hq.ok(&["verify"]);

    let bad = hq.run(&["jobs", "run", "--now", "tomorrow"]);
    assert!(!bad.status.success());
}

async fn the_clock_offset_moves_hq_time_for_jobs(backend: Backend) {
    let hq = backend.hq();
    let token = hq.add_terminal("store-1", "till-1");
    let now = OffsetDateTime::now_utc();
    {
        let server = hq.start();
        let body = push_body(
            "store-1",
            "till-1",
            vec![sale_at(
                1,
                Some(CARD),
                0,
                now,
                Some(now + Duration::days(2)),
            )],
        );
        assert_eq!(push(&client(), &server, &token, &body).await.0, 200);
    }
    let plain = hq.ok(&["jobs", "run"]);
    assert!(plain.contains("matured 0 points"), "{plain}");
    let out = hq
        .command(&["jobs", "run"])
        .env("LOYALTY_CLOCK_OFFSET_SECS", (3 * 86_400).to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("matured 5 points in 1 lots"), "{text}");
    let bad = hq
        .command(&["jobs", "run"])
        .env("LOYALTY_CLOCK_OFFSET_SECS", "soon")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("LOYALTY_CLOCK_OFFSET_SECS"));
}

async fn card_tokens_are_signed_with_the_current_key_and_verify_with_the_pulled_keys(
    backend: Backend,
) {
    let hq = backend.hq();
    let none = hq.run(&["card", "token", CARD]);
    assert!(!none.status.success());
    assert!(stderr(&none).contains("keys rotate"), "{}", stderr(&none));

    hq.ok(&["keys", "rotate"]);
    let too_long = hq.run(&["card", "token", CARD, "--ttl-secs", "301"]);
    assert!(!too_long.status.success());
    let first = last_line(&hq.ok(&["card", "token", CARD, "--ttl-secs", "300"])).to_owned();
    hq.ok(&["keys", "rotate"]);
    let second = last_line(&hq.ok(&["card", "token", CARD])).to_owned();
    let keys = hq.ok(&["keys", "list"]);
    assert!(keys.contains("(current)"), "{keys}");

    let token = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let pull: PullResponse = get(&client(), &server.at("/v1/sync/pull"), &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pull.keys.len(), 2);
    assert!(pull.keys[0].valid_until.is_some() && pull.keys[1].valid_until.is_none());
    let mut ring = KeyRing::new();
    for k in &pull.keys {
        ring.insert(
            k.key_id,
            PublicKey {
                key: decode_public_key(&k.public_key).unwrap(),
                valid_until: k.valid_until,
            },
        );
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let a = AppToken::verify(&first, &ring, now).unwrap();
    let b = AppToken::verify(&second, &ring, now).unwrap();
    assert_eq!((a.card.as_str(), a.key_id.0), (CARD, 1));
    assert_eq!((b.card.as_str(), b.key_id.0), (CARD, 2));
    assert_eq!(a.expires_at - a.issued_at, 300, "--ttl-secs 300");
    assert_eq!(b.expires_at - b.issued_at, 60, "the default validity");
    assert_eq!(
        AppToken::verify(&first, &ring, now + 31 * 86_400),
        Err(TokenError::RetiredKey(a.key_id))
    );

    // The injectable clock reaches token issue times too.
    let shifted = hq
        .command(&["card", "token", CARD])
        .env("LOYALTY_CLOCK_OFFSET_SECS", "86400")
        .output()
        .unwrap();
    let shifted = String::from_utf8(shifted.stdout).unwrap();
    let shifted = last_line(&shifted);
    assert_eq!(
        AppToken::verify(shifted, &ring, now),
        Err(TokenError::NotYetValid)
    );
    assert!(AppToken::verify(shifted, &ring, now + 86_400).is_ok());
}

async fn rules_versions_only_go_up_and_bad_files_name_their_line(backend: Backend) {
    let hq = backend.hq();
    let file = hq.dir.path().join("rules.toml");
    let path = file.to_str().unwrap();
    std::fs::write(&file, "accrual_bp = 700\n").unwrap();
    assert!(hq.ok(&["rules", "set", path]).contains("rules version 1 "));
    std::fs::write(&file, "version = 5\naccrual_bp = 800\n").unwrap();
    assert!(hq.ok(&["rules", "set", path]).contains("rules version 5 "));
    std::fs::write(&file, "version = 3\n").unwrap();
    let older = hq.run(&["rules", "set", path]);
    assert!(!older.status.success());
    assert!(stderr(&older).contains("version 3 is not newer than current 5"));
    std::fs::write(&file, "version = 9\naccrual_bpp = 1\n").unwrap();
    let typo = hq.run(&["rules", "set", path]);
    assert!(!typo.status.success());
    assert!(stderr(&typo).contains("rules.toml:2"), "{}", stderr(&typo));

    let toml = hq.ok(&["rules", "show"]);
    assert!(
        toml.contains("version = 5") && toml.contains("accrual_bp = 800"),
        "{toml}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&hq.ok(&["rules", "show", "--format", "json"])).unwrap();
    assert_eq!(json["version"], 5);

    // The file `rules show` printed, edited: it keeps version 5 and becomes the next.
    std::fs::write(&file, toml.replace("accrual_bp = 800", "accrual_bp = 900")).unwrap();
    assert!(hq.ok(&["rules", "set", path]).contains("rules version 6 "));
    assert!(hq.ok(&["rules", "show"]).contains("accrual_bp = 900"));
}

async fn overdrafts_are_reported_with_the_entries_that_caused_them(backend: Backend) {
    let hq = backend.hq();
    let t1 = hq.add_terminal("store-1", "till-1");
    let t2 = hq.add_terminal("store-2", "till-1");
    let server = hq.start();
    let http = client();
    let earn = push_body(
        "store-1",
        "till-1",
        (1..=4).map(|s| sale(s, CARD, 0)).collect(),
    );
    assert_eq!(push(&http, &server, &t1, &earn).await.0, 200);
    // Two offline tills each spend the same 20 points.
    let spend1 = push_body("store-1", "till-1", vec![sale(5, CARD, 20)]);
    let spend2 = push_body("store-2", "till-1", vec![sale(1, CARD, 20)]);
    assert_eq!(push(&http, &server, &t1, &spend1).await.0, 200);
    assert_eq!(push(&http, &server, &t2, &spend2).await.0, 200);
    let report = hq.ok(&["report", "overdrafts"]);
    assert!(
        report.contains("card ****3931 balance -") && !report.contains(CARD),
        "the overdraft names the card, masked: {report}"
    );
    assert!(
        report.contains("store-2/till-1 seq 1") && report.contains("overdraft"),
        "{report}"
    );
    hq.ok(&["verify"]);
}

#[test]
fn an_unreachable_postgres_server_and_a_bad_url_are_named_in_the_error() {
    let hq = Backend::Sqlite.hq();
    let run = |url: &str| {
        std::process::Command::new(common::BIN)
            .args(["--database", url, "verify"])
            .current_dir(hq.dir.path())
            .output()
            .unwrap()
    };
    let down = run("postgres://hq:secret@127.0.0.1:1/loyalty");
    assert!(!down.status.success());
    let err = stderr(&down);
    assert!(
        err.contains("cannot connect to postgres://hq:***@127.0.0.1:1/loyalty")
            && err.contains("Connection refused")
            && !err.contains("secret"),
        "{err}"
    );
    let bad = run("postgres://hq@127.0.0.1/loyalty?pool_max_size=lots");
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("pool_max_size=lots"),
        "{}",
        stderr(&bad)
    );
}

on_every_backend!(
    terminal_add_prints_the_token_alone_on_its_last_line_and_rotate_replaces_it,
    verify_passes_after_traffic_and_fails_on_a_tampered_database,
    jobs_run_now_matures_pending_points_and_expires_old_ones,
    the_clock_offset_moves_hq_time_for_jobs,
    card_tokens_are_signed_with_the_current_key_and_verify_with_the_pulled_keys,
    rules_versions_only_go_up_and_bad_files_name_their_line,
    overdrafts_are_reported_with_the_entries_that_caused_them,
);

#[test]
fn check_config_names_every_error_then_missing_tls_files_and_run_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sync-server.toml");
    let check = || {
        let out = std::process::Command::new(common::BIN)
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        (out.status.success(), text)
    };
    let valid =
        "database = \"sqlite:hq.db\"\n[tls]\ncert_file = \"hq.crt\"\nkey_file = \"hq.key\"\n";
    std::fs::write(
        &file,
        format!("listn = 1\n{valid}[ledger]\njob_interval_secs = \"x\"\n"),
    )
    .unwrap();
    let (ok, text) = check();
    assert!(!ok);
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("sync-server.toml:1: unknown key 'listn'"),
        "{text}"
    );
    assert!(
        lines[1].contains("sync-server.toml:7: ledger.job_interval_secs"),
        "{text}"
    );

    std::fs::write(&file, valid).unwrap();
    let (ok, text) = check();
    assert!(!ok);
    assert!(
        text.contains("tls.cert_file") && text.contains("tls.key_file"),
        "{text}"
    );
    let run = std::process::Command::new(common::BIN)
        .args(["--config"])
        .arg(&file)
        .args(["run", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert_eq!(
        stderr(&run).matches("hq.crt").count(),
        1,
        "{}",
        stderr(&run)
    );
    assert!(!dir.path().join("hq.db").exists());

    std::fs::write(dir.path().join("hq.crt"), "x").unwrap();
    std::fs::write(dir.path().join("hq.key"), "x").unwrap();
    assert_eq!(check(), (true, "ok\n".to_owned()));
}

#[test]
fn jobs_run_takes_a_plain_date_as_midnight_utc() {
    let hq = common::Hq::new();
    let out = hq.ok(&["jobs", "run", "--now", "2026-03-01"]);
    assert!(out.contains("2026-03-01T00:00:00Z"), "{out}");
    let bad = hq.run(&["jobs", "run", "--now", "March 1"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("nor a date (2026-03-01)"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn a_command_without_config_or_database_says_which_default_database_it_uses() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let run = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .args(args)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", &data)
            .output()
            .unwrap()
    };
    let out = run(&["terminal", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let db = data.join("loyalty-sync-server").join("hq.db");
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "sync-server: using the default database sqlite:{} (no --config, no --database)",
            db.display()
        )
    );
    assert!(db.exists());
    // Named on the command line, or in a config file: no notice.
    let named = format!("sqlite:{}", home.path().join("named.db").display());
    let out = run(&["--database", &named, "terminal", "list"]);
    assert!(out.status.success());
    assert_eq!(stderr(&out), "");
    // A config file without `database` still falls back, and the notice says so.
    let config = home.path().join("sync-server.toml");
    std::fs::write(&config, "[log]\nlevel = \"warn\"\n").unwrap();
    let out = run(&["--config", config.to_str().unwrap(), "terminal", "list"]);
    assert!(
        stderr(&out).contains(&format!(
            "({} names no database, no --database)",
            config.display()
        )),
        "{}",
        stderr(&out)
    );
}

/// clap's own refusals quote the argument they refuse; the binary masks card numbers
/// in them, as in every other error (stderr of an admin command ends up in cron mail).
#[test]
fn a_card_number_clap_refuses_is_named_masked() {
    let run = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .args(args)
            .output()
            .unwrap()
    };
    let stray = format!("{CARD}x");
    for args in [
        vec!["card", "show", stray.as_str()],
        vec!["card", "show", CARD, CARD],
    ] {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("****3931") && !err.contains(CARD),
            "{args:?}: the refusal names the card masked: {err}"
        );
    }
}
