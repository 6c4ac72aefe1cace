//! The OpenAPI documents against the real servers: each serves the document its
//! binary prints (and the repository commits), and `schemathesis` (from PyPI) finds
//! no failure against a live agent syncing with a live HQ, nor against an HQ on
//! SQLite or on PostgreSQL:
//! positive and negative cases of every operation, every check, the stateful links
//! (a held sale's commit and cancel). Also the bugs it found, each reproduced.
//!
//! Without schemathesis the runs skip with a note, unless `REQUIRE_SCHEMATHESIS`
//! is set (CI sets it after installing it), which makes them fail instead. It is
//! looked for as `$SCHEMATHESIS`, then `st` and `schemathesis` on the PATH.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::agent::{Agent, enrolled, sale_body};
use e2e::http;
use e2e::pg::TestDatabase;
use e2e::server::Server;
use e2e::{bin, temp_dir};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Seed of every run: the same cases each time.
const SEED: &str = "20261201";
/// Cases per operation and phase: every operation is reached, in ~1 min on 2 cores.
const MAX_EXAMPLES: &str = "25";

/// The schemathesis command, or `None` (after a note) when it is not installed.
fn schemathesis() -> Option<PathBuf> {
    let candidates = std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .into_iter()
        .chain(["st", "schemathesis"].map(PathBuf::from));
    for candidate in candidates {
        let runs = Command::new(&candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if runs {
            return Some(candidate);
        }
    }
    assert!(
        std::env::var_os("REQUIRE_SCHEMATHESIS").is_none(),
        "REQUIRE_SCHEMATHESIS is set but schemathesis is missing (python3 -m pip install schemathesis)"
    );
    eprintln!(
        "SKIPPED: this test needs schemathesis (python3 -m pip install schemathesis); CI installs it"
    );
    None
}

/// Runs schemathesis against the document at `base`/v1/openapi.json with `args`, in
/// `dir`; fails with its report when it finds anything.
fn run_schemathesis(st: &Path, dir: &Path, base: &str, args: &[&str]) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = here.join("schemathesis.toml");
    let out = Command::new(st)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", here.join("schemathesis_hooks.py"))
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{base}/v1/openapi.json")])
        .args(["--checks", "all", "--mode", "all"])
        .args(["--seed", SEED, "--max-examples", MAX_EXAMPLES])
        .args(["--workers", "1", "--generation-database", "none"])
        .args(args)
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}"
    );
    assert!(report.contains("passed"), "{report}");
}

/// The document a binary prints with its `openapi` command.
fn printed(binary: &str) -> Value {
    let out = Command::new(bin(binary)).arg("openapi").output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The committed document `docs/openapi/<name>`.
fn committed(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/openapi")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn each_server_serves_the_document_it_prints_and_the_repository_commits() {
    let dir = temp_dir();
    let agent = Agent::start(dir.path(), &Agent::standalone_config());
    let served = http::get(&agent.url("/v1/openapi.json"));
    assert_eq!(served.status, 200);
    assert_eq!(served.body["openapi"], "3.1.0");
    assert_eq!(served.body, printed("pos-agent"));
    assert_eq!(served.body, committed("till-api.json"));

    let hq = Server::start(&dir.path().join("hq"), "");
    // No token: the document describes the API, nothing of any terminal.
    let served = http::get(&hq.at("/v1/openapi.json"));
    assert_eq!(served.status, 200);
    assert_eq!(served.body, printed("sync-server"));
    assert_eq!(served.body, committed("sync-api.json"));
}

#[test]
fn an_agent_configured_below_the_default_limits_serves_its_own() {
    let dir = temp_dir();
    let config = format!(
        "{}[limits]\nmax_line_minor = 50000\nmax_entry_points = 2000\n",
        Agent::standalone_config()
    );
    let agent = Agent::start(dir.path(), &config);
    let served = http::get(&agent.url("/v1/openapi.json"));
    assert_eq!(served.status, 200);
    let schemas = &served.body["components"]["schemas"];
    let line_max = &schemas["Line"]["properties"]["amount_minor"]["maximum"];
    assert_eq!(line_max, 50_000);
    let redeem_max = &schemas["SaleRequest"]["properties"]["redeem_points"]["maximum"];
    assert_eq!(redeem_max, 2_000);
    // The bound is the one this agent enforces: one minor unit above it is refused.
    let refused = agent.post("/v1/sales", &sale_body("r-1", None, 50_001, 0));
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.body["error"]["code"], "max_line_minor");
    let taken = agent.post("/v1/sales", &sale_body("r-2", None, 50_000, 0));
    assert_eq!(taken.status, 200, "{}", taken.text);
}

#[test]
fn schemathesis_finds_nothing_against_a_live_agent() {
    let Some(st) = schemathesis() else { return };
    let dir = temp_dir();
    let hq = Server::start(&dir.path().join("hq"), "");
    let agent = enrolled(&dir.path().join("agent"), &hq, "store-1", "till-1", "");
    agent.wait_synced();
    // Something to find for the cards and the sales it links.
    let sold = agent.post(
        "/v1/sales",
        &sale_body("r-1", Some("4000123412341234"), 10_000, 0),
    );
    assert_eq!(sold.status, 200, "{}", sold.text);
    // `/v1/scans` is an endless event stream: no request to it ever completes.
    run_schemathesis(
        &st,
        dir.path(),
        &agent.base,
        &["--exclude-path", "/v1/scans"],
    );
}

#[test]
fn schemathesis_finds_nothing_against_a_live_hq() {
    let Some(st) = schemathesis() else { return };
    let dir = temp_dir();
    let hq = Server::start(&dir.path().join("hq"), "");
    hq_finds_nothing(&st, dir.path(), &hq);
}

/// The same run against an HQ on PostgreSQL: the backends share the endpoints but not
/// the statements, so a refusal one of them turns into a 500 shows only here.
#[test]
fn schemathesis_finds_nothing_against_a_live_hq_on_postgres() {
    let Some(st) = schemathesis() else { return };
    let Some(db) = TestDatabase::create_blocking().unwrap_or_else(|e| panic!("{e}")) else {
        eprintln!("SKIP_PG_TESTS=1: schemathesis against HQ on PostgreSQL skipped");
        return;
    };
    let dir = temp_dir();
    let hq = Server::start_on(&dir.path().join("hq"), db.url(), "");
    hq_finds_nothing(&st, dir.path(), &hq);
}

/// Runs schemathesis against `hq` as one enrolled terminal.
fn hq_finds_nothing(st: &Path, dir: &Path, hq: &Server) {
    let token = hq.add_terminal("store-1", "till-1");
    let auth = format!("Authorization: Bearer {token}");
    run_schemathesis(st, dir, &hq.base, &["-H", &auth]);
}

/// A quote refuses negative points to redeem, as a sale does (it accepted them).
#[test]
fn a_quote_refuses_negative_points_to_redeem() {
    let dir = temp_dir();
    let agent = Agent::start(dir.path(), &Agent::standalone_config());
    let mut body = sale_body("r-1", None, 1_000, 0);
    body["redeem_points"] = json!(-1);
    let quoted = agent.post("/v1/quote", &body);
    assert_eq!(quoted.status, 400, "{}", quoted.text);
    assert_eq!(quoted.body["error"]["code"], "bad_request");
    let sold = agent.post("/v1/sales", &body);
    assert_eq!(sold.status, 400, "{}", sold.text);
}

/// JSON numbers are numbers: `2.0` is a quantity of 2 (it was refused as "expected
/// u32"), a fraction is still refused, at the till and at HQ.
#[test]
fn a_whole_number_written_with_a_fraction_is_that_number() {
    let dir = temp_dir();
    let agent = Agent::start(dir.path(), &Agent::standalone_config());
    let body = |qty: f64| {
        json!({
            "receipt_id": "r-1",
            "lines": [{"sku": "s", "category": "c", "amount_minor": 1000.0, "qty": qty}],
        })
    };
    let quoted = agent.post("/v1/quote", &body(2.0));
    assert_eq!(quoted.status, 200, "{}", quoted.text);
    assert_eq!(quoted.body["total_minor"], 1000);
    let refused = agent.post("/v1/quote", &body(2.5));
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.body["error"]["code"], "bad_json");

    let hq = Server::start(&dir.path().join("hq"), "");
    let token = hq.add_terminal("store-1", "till-1");
    let use_token = |protocol: Value| {
        http::post_hq(
            &hq.at("/v1/tokens/use"),
            &token,
            &json!({
                "protocol": protocol,
                "token_id": "0123456789abcdef0123456789abcdef",
                "card": "4000123412341234",
                "expires_at": "2026-12-01T00:00:00Z",
                "scan_id": "7d0b6f0e-4a8e-4b5e-9d55-0c1f1f0e9a01",
            }),
        )
    };
    let used = use_token(json!(1.0));
    assert_eq!(used.status, 200, "{}", used.text);
    let refused = use_token(json!(1.5));
    assert_eq!(refused.status, 400, "{}", refused.text);
}

/// A receipt line's names are 1 to 64 characters in any script (64 Cyrillic letters
/// were refused as more than 64 "characters": the check counted bytes).
#[test]
fn names_of_64_letters_in_any_script_are_accepted() {
    let dir = temp_dir();
    let agent = Agent::start(dir.path(), &Agent::standalone_config());
    let body = json!({
        "receipt_id": "r-1",
        "lines": [{"sku": "я".repeat(64), "category": "Ω".repeat(64), "amount_minor": 100, "qty": 1}],
    });
    let sold = agent.post("/v1/sales", &body);
    assert_eq!(sold.status, 200, "{}", sold.text);
}

/// A counter beyond what HQ stores (signed 64 bits) is a bad request: a lease sync's
/// `epoch` of 2^63 failed as an internal error (500), a pull's `rules_version` was
/// accepted.
#[test]
fn hq_refuses_counters_it_cannot_store() {
    let dir = temp_dir();
    let hq = Server::start(&dir.path().join("hq"), "");
    let token = hq.add_terminal("store-1", "till-1");
    let leases = |epoch: u64| {
        http::post_hq(
            &hq.at("/v1/sync/leases"),
            &token,
            &json!({"protocol": 1, "epoch": epoch, "through_seq": 0, "held": [], "max_total": 0, "want": []}),
        )
    };
    let refused = leases(1 << 63);
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.body["error"]["code"], "bad_request");
    assert_eq!(leases(1).status, 200);
    let pulled = http::get_hq(
        &hq.at("/v1/sync/pull?rules_version=9223372036854775808"),
        &token,
    );
    assert_eq!(pulled.status, 400, "{}", pulled.text);
    let pulled = http::get_hq(
        &hq.at("/v1/sync/pull?rules_version=0&cursor=x12:4000"),
        &token,
    );
    assert_eq!(
        pulled.status, 200,
        "a PostgreSQL cursor starts over: {}",
        pulled.text
    );
}
