//! The till API of the real `pos-agent` binary against a real journal file.

#![allow(clippy::unwrap_used)]

use e2e::agent::{Agent, sale_body};
use e2e::http;
use e2e::temp_dir;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CARD: &str = "4006381333931";

fn standalone() -> (tempfile::TempDir, Agent) {
    let dir = temp_dir();
    let agent = Agent::start(dir.path(), &Agent::standalone_config());
    (dir, agent)
}

fn journal_rows(agent: &Agent, sql: &str) -> Vec<Vec<Value>> {
    let conn = rusqlite::Connection::open_with_flags(
        agent.dir.join("journal.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        Ok((0..n)
            .map(|i| match r.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(v) => json!(v),
                rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                other => json!(format!("{other:?}")),
            })
            .collect())
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn a_sale_accrues_five_percent_of_the_paid_amount_and_the_card_shows_it() {
    let (_dir, agent) = standalone();
    let (hold, commit) = agent.sell("R-1", Some(CARD), 19_999, 0);
    assert_eq!(hold.body["state"], "held");
    assert_eq!(hold.body["accrual_points"], 9);
    assert_eq!(commit.status, 200, "{}", commit.text);
    assert_eq!(commit.body["accrued_points"], 9);
    assert_eq!(commit.body["entry_seq"], 1);
    let card = agent.card(CARD);
    assert_eq!(card["balance"], 9);
    assert_eq!(card["available"], 9);
    assert_eq!(card["offline"], false);
}

#[test]
fn a_redemption_pays_part_of_the_receipt_and_accrues_only_on_money_paid() {
    let (_dir, agent) = standalone();
    agent.sell("R-1", Some(CARD), 100_000, 0); // +50
    let (hold, commit) = agent.sell("R-2", Some(CARD), 10_000, 40);
    assert_eq!(hold.body["discount_minor"], 4_000);
    assert_eq!(hold.body["to_pay_minor"], 6_000);
    assert_eq!(commit.body["redeemed_points"], 40);
    assert_eq!(commit.body["accrued_points"], 3);
    assert_eq!(agent.card(CARD)["balance"], 50 - 40 + 3);
}

#[test]
fn a_hold_reserves_points_until_commit_or_cancel() {
    let (_dir, agent) = standalone();
    agent.sell("R-1", Some(CARD), 100_000, 0); // +50
    let hold = agent.post("/v1/sales", &sale_body("R-2", Some(CARD), 10_000, 30));
    assert_eq!(hold.status, 200);
    let card = agent.card(CARD);
    assert_eq!(card["held"], 30);
    assert_eq!(card["available"], 20);
    // A second hold cannot spend the reserved points.
    let second = agent.post("/v1/sales", &sale_body("R-3", Some(CARD), 10_000, 25));
    assert_eq!(second.status, 422, "{}", second.text);
    assert_eq!(second.code(), "insufficient_points");
    let cancel = agent.post("/v1/sales/R-2/cancel", &json!({}));
    assert_eq!(cancel.body["released_points"], 30);
    assert_eq!(agent.card(CARD)["available"], 50);
    // A cancelled sale cannot be committed.
    let commit = agent.post("/v1/sales/R-2/commit", &json!({}));
    assert_eq!(commit.status, 409);
    assert_eq!(commit.code(), "sale_cancelled");
}

#[test]
fn points_pay_at_most_half_a_receipt_and_never_tobacco() {
    let (_dir, agent) = standalone();
    agent.sell("R-1", Some(CARD), 1_000_000, 0); // +500
    let body = json!({
        "receipt_id": "R-2", "card": CARD, "redeem_points": 0,
        "lines": [
            {"sku": "cig", "category": "tobacco", "amount_minor": 10_000, "qty": 1},
            {"sku": "tea", "category": "grocery", "amount_minor": 4_000, "qty": 1},
        ],
    });
    let quote = agent.post("/v1/quote", &body);
    assert_eq!(quote.status, 200, "{}", quote.text);
    assert_eq!(quote.body["max_redeem_points"], 40);
    assert_eq!(quote.body["limited_by"], "rules");
    let mut over = body.clone();
    over["redeem_points"] = json!(41);
    let refused = agent.post("/v1/sales", &over);
    assert_eq!(refused.status, 422);
    assert_eq!(refused.code(), "redeem_above_rule_cap");
}

#[test]
fn a_full_return_reverses_exactly_and_a_partial_return_proportionally() {
    let (_dir, agent) = standalone();
    agent.sell("R-0", Some(CARD), 200_000, 0); // +100
    let body = json!({
        "receipt_id": "R-1", "card": CARD, "redeem_points": 30,
        "lines": [
            {"sku": "a", "category": "grocery", "amount_minor": 9_000, "qty": 3},
            {"sku": "b", "category": "grocery", "amount_minor": 3_000, "qty": 1},
        ],
    });
    assert_eq!(agent.post("/v1/sales", &body).status, 200);
    let commit = agent.post("/v1/sales/R-1/commit", &json!({}));
    let accrued = commit.body["accrued_points"].as_i64().unwrap();
    let before = agent.card(CARD)["balance"].as_i64().unwrap();
    assert_eq!(before, 100 - 30 + accrued);

    let one = agent.post(
        "/v1/returns",
        &json!({"return_id": "X-1", "receipt_id": "R-1", "lines": [{"line": 0, "qty": 1}]}),
    );
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.body["sale_state"], "committed");
    let rest = agent.post(
        "/v1/returns",
        &json!({"return_id": "X-2", "receipt_id": "R-1"}),
    );
    assert_eq!(rest.status, 200, "{}", rest.text);
    assert_eq!(rest.body["sale_state"], "returned");
    let total = |k: &str| one.body[k].as_i64().unwrap() + rest.body[k].as_i64().unwrap();
    assert_eq!(total("restored_points"), 30);
    assert_eq!(total("reversed_accrual_points"), accrued);
    assert_eq!(total("refund_minor"), 12_000 - 3_000);
    assert_eq!(agent.card(CARD)["balance"], 100);
    let again = agent.post(
        "/v1/returns",
        &json!({"return_id": "X-3", "receipt_id": "R-1"}),
    );
    assert_eq!(again.status, 409);
    assert_eq!(again.code(), "already_returned");
}

#[test]
fn repeating_a_request_returns_the_first_answer_and_a_changed_body_is_a_conflict() {
    let (_dir, agent) = standalone();
    agent.sell("R-0", Some(CARD), 100_000, 0);
    let body = sale_body("R-1", Some(CARD), 10_000, 10);
    let first = agent.post("/v1/sales", &body);
    let second = agent.post("/v1/sales", &body);
    assert_eq!(first.text, second.text);
    let changed = agent.post("/v1/sales", &sale_body("R-1", Some(CARD), 10_000, 11));
    assert_eq!(changed.status, 409);
    assert_eq!(changed.code(), "idempotency_conflict");

    let c1 = agent.post("/v1/sales/R-1/commit", &json!({}));
    let c2 = agent.post("/v1/sales/R-1/commit", &json!({}));
    assert_eq!(c1.text, c2.text);
    let ret = json!({"return_id": "X-1", "receipt_id": "R-1"});
    let r1 = agent.post("/v1/returns", &ret);
    let r2 = agent.post("/v1/returns", &ret);
    assert_eq!(r1.status, 200);
    assert_eq!(r1.text, r2.text);
    // Two sales, one return: three entries, nothing doubled.
    assert_eq!(agent.health()["last_seq"], 3);
    assert_eq!(agent.card(CARD)["balance"], 50);
}

#[test]
fn an_anonymous_sale_is_recorded_without_points() {
    let (_dir, agent) = standalone();
    let (hold, commit) = agent.sell("R-anon", None, 5_000, 0);
    assert_eq!(hold.body["accrual_points"], 0);
    assert_eq!(commit.body["accrued_points"], 0);
    let rows = journal_rows(&agent, "SELECT kind, card FROM entries");
    assert_eq!(rows, vec![vec![json!("sale"), Value::Null]]);
    let redeem = agent.post("/v1/sales", &sale_body("R-x", None, 5_000, 1));
    assert_eq!(redeem.status, 400);
    assert_eq!(redeem.code(), "card_required");
}

#[test]
fn every_kind_of_bad_input_is_a_400_and_changes_nothing() {
    let (_dir, agent) = standalone();
    agent.sell("R-0", Some(CARD), 100_000, 0);
    let line = |amount: Value, qty: Value| json!([{"sku": "a", "category": "g", "amount_minor": amount, "qty": qty}]);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("malformed json", b"{\"receipt_id\": \"R-1\", ".to_vec()),
        ("not json", b"hello".to_vec()),
        ("empty body", Vec::new()),
        (
            "unknown field",
            json!({"receipt_id": "R-1", "lines": line(json!(1), json!(1)), "discount": 5}).to_string().into(),
        ),
        ("negative amount", json!({"receipt_id": "R-1", "lines": line(json!(-1), json!(1))}).to_string().into()),
        (
            "overflowing amount",
            json!({"receipt_id": "R-1", "lines": line(json!(9_223_372_036_854_775_808u64), json!(1))}).to_string().into(),
        ),
        (
            "overflowing total",
            json!({"receipt_id": "R-1", "lines": [
                {"sku": "a", "category": "g", "amount_minor": i64::MAX, "qty": 1},
                {"sku": "b", "category": "g", "amount_minor": 1, "qty": 1}]})
            .to_string()
            .into(),
        ),
        ("fractional amount", json!({"receipt_id": "R-1", "lines": line(json!(1.5), json!(1))}).to_string().into()),
        ("zero quantity", json!({"receipt_id": "R-1", "lines": line(json!(1), json!(0))}).to_string().into()),
        ("empty receipt", json!({"receipt_id": "R-1", "lines": []}).to_string().into()),
        (
            "bad card id",
            json!({"receipt_id": "R-1", "card": "12ab", "lines": line(json!(1), json!(1))}).to_string().into(),
        ),
        (
            "bad receipt id",
            json!({"receipt_id": "R 1", "lines": line(json!(1), json!(1))}).to_string().into(),
        ),
        (
            "negative redemption",
            json!({"receipt_id": "R-1", "card": CARD, "redeem_points": -5, "lines": line(json!(100), json!(1))})
                .to_string()
                .into(),
        ),
    ];
    for (what, body) in &bodies {
        let r = http::post_raw(&agent.url("/v1/sales"), body);
        assert_eq!(r.status, 400, "{what}: {}", r.text);
        assert!(r.body["error"]["code"].is_string(), "{what}: {}", r.text);
        assert!(r.body["error"]["message"].is_string(), "{what}: {}", r.text);
    }
    assert_eq!(
        http::post_declaring_length(&agent.url("/v1/sales"), 2 * 1024 * 1024),
        413
    );
    assert_eq!(agent.get("/v1/cards/12345").status, 400);
    assert_eq!(agent.post("/v1/sales/R%201/commit", &json!({})).status, 400);
    assert_eq!(
        agent.post("/v1/sales/R-unknown/commit", &json!({})).status,
        404
    );
    let bad_return = agent.post(
        "/v1/returns",
        &json!({"return_id": "X", "receipt_id": "R-0", "lines": [{"line": 7, "qty": 1}]}),
    );
    assert_eq!(bad_return.status, 400, "{}", bad_return.text);
    assert_eq!(agent.get("/v1/nope").status, 404);
    // Nothing changed: one entry, the same balance, no sale row for R-1.
    assert_eq!(agent.health()["last_seq"], 1);
    assert_eq!(agent.card(CARD)["balance"], 50);
    assert_eq!(
        journal_rows(&agent, "SELECT count(*) FROM sales"),
        vec![vec![json!(1)]]
    );
}

#[test]
fn health_and_metrics_report_the_journal_and_the_counters() {
    let (_dir, agent) = standalone();
    agent.sell("R-1", Some(CARD), 10_000, 0);
    let _ = agent.post("/v1/sales", &json!({"bad": 1}));
    let health = agent.health();
    assert_eq!(health["mode"], "standalone");
    assert_eq!(health["online"], false);
    assert_eq!(health["rules_version"], 0);
    assert_eq!(health["scanners"], json!([]));
    let metrics = agent.get("/metrics").text;
    assert!(
        metrics.contains("pos_agent_sales_total{outcome=\"committed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pos_agent_accrued_points_total 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pos_agent_errors_total{code=\"bad_json\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pos_agent_request_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[test]
fn holds_not_committed_in_time_are_released() {
    let dir = temp_dir();
    let config = format!(
        "{}[till_api]\nhold_timeout_secs = 60\n",
        Agent::standalone_config()
    );
    let mut agent = Agent::start(dir.path(), &config);
    agent.sell("R-0", Some(CARD), 100_000, 0);
    assert_eq!(
        agent
            .post("/v1/sales", &sale_body("R-1", Some(CARD), 10_000, 20))
            .status,
        200
    );
    assert_eq!(agent.card(CARD)["held"], 20);
    agent.stop();
    // Start again two minutes later: the hold has timed out.
    let later = Agent::start_with_env(dir.path(), &config, &[("LOYALTY_CLOCK_OFFSET_SECS", "120")]);
    e2e::wait_for(Duration::from_secs(20), "the hold to be released", || {
        (later.card(CARD)["held"] == 0).then_some(())
    });
    let commit = later.post("/v1/sales/R-1/commit", &json!({}));
    assert_eq!(commit.status, 409);
    assert!(
        commit.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[test]
fn graceful_shutdown_exits_cleanly_and_keeps_everything() {
    let (_dir, mut agent) = standalone();
    agent.sell("R-1", Some(CARD), 10_000, 0);
    assert!(agent.stop(), "agent did not exit cleanly:\n{}", agent.log());
    agent.restart();
    assert_eq!(agent.card(CARD)["balance"], 5);
}

#[test]
fn kill_9_during_a_stream_of_sales_loses_and_doubles_nothing_that_was_acknowledged() {
    let (_dir, mut agent) = standalone();
    let base = agent.base.clone();
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let seller = {
        let acked = acked.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let receipt = format!("K-{i}");
                let url = |p: &str| format!("{base}{p}");
                let hold = std::panic::catch_unwind(|| {
                    http::post(
                        &url("/v1/sales"),
                        &sale_body(&receipt, Some(CARD), 2_000, 0),
                    )
                });
                if !matches!(hold, Ok(ref r) if r.status == 200) {
                    break;
                }
                let commit = std::panic::catch_unwind(|| {
                    http::post(&url(&format!("/v1/sales/{receipt}/commit")), &json!({}))
                });
                match commit {
                    Ok(r) if r.status == 200 => {
                        acked
                            .lock()
                            .unwrap()
                            .push((receipt, r.body["entry_seq"].as_i64().unwrap()));
                    }
                    _ => break,
                }
            }
        })
    };
    e2e::wait_for(Duration::from_secs(30), "some acknowledged sales", || {
        (acked.lock().unwrap().len() >= 40).then_some(())
    });
    agent.kill9();
    stop.store(true, Ordering::Relaxed);
    let _ = seller.join();
    agent.restart();

    let acked = acked.lock().unwrap().clone();
    let rows = journal_rows(
        &agent,
        "SELECT seq, json_extract(body, '$.body.receipt_id') FROM entries ORDER BY seq",
    );
    let seqs: Vec<i64> = rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "seq has gaps"
    );
    let receipts: Vec<String> = rows
        .iter()
        .map(|r| r[1].as_str().unwrap().to_owned())
        .collect();
    let unique: HashSet<&String> = receipts.iter().collect();
    assert_eq!(unique.len(), receipts.len(), "a sale was journaled twice");
    for (receipt, seq) in &acked {
        assert_eq!(
            receipts.get(*seq as usize - 1),
            Some(receipt),
            "acknowledged {receipt} missing at seq {seq}"
        );
        // The till retrying the commit gets the same answer.
        let again = agent.post(&format!("/v1/sales/{receipt}/commit"), &json!({}));
        assert_eq!(again.body["entry_seq"], json!(seq));
    }
    assert_eq!(agent.card(CARD)["balance"], json!(receipts.len()));
}

#[test]
fn a_journal_from_an_older_schema_migrates_and_keeps_its_sales() {
    let dir = temp_dir();
    let path = dir.path().join("journal.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(
            None,
            "application_id",
            agent::journal::schema::APPLICATION_ID,
        )
        .unwrap();
        agent::journal::schema::MIGRATIONS
            .to_version(&mut conn, 1)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO meta (key, value) VALUES ('store_id', 'store-1'), ('terminal_id', 'till-1');",
        )
        .unwrap();
    }
    // Write a sale with the schema-1 journal through the real binary? Schema 1 has no
    // card cache, so fill it by hand the way version 0.1's writer did: a committed sale.
    let entry = json!({
        "id": "01900000-0000-7000-8000-000000000001", "seq": 1, "at": "2026-11-01T10:00:00Z", "rules_version": 0,
        "body": {"kind": "sale", "receipt_id": "OLD-1", "card": CARD, "matures_at": null, "offline": false,
            "sale": {"lines": [{"sku": "a", "category": "g", "amount_minor": 20000, "qty": 1, "discount_minor": 0,
                "paid_minor": 20000, "redeemed_points": 0, "accrued_points": 10}],
                "total_minor": 20000, "discount_minor": 0, "paid_minor": 20000, "redeemed_points": 0, "accrued_points": 10}}
    });
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO entries (seq, id, kind, card, at_unix, delta_balance, body) VALUES (1, ?1, 'sale', ?2, 1793527200, 10, ?3)",
            rusqlite::params![entry["id"].as_str().unwrap(), CARD, entry.to_string()],
        )
        .unwrap();
    }
    let agent = Agent::start(dir.path(), &Agent::standalone_config());
    assert_eq!(agent.card(CARD)["balance"], 10);
    let (_, commit) = agent.sell("NEW-1", Some(CARD), 10_000, 0);
    assert_eq!(commit.body["entry_seq"], 2);
    assert_eq!(agent.card(CARD)["balance"], 15);
    let version = journal_rows(&agent, "PRAGMA user_version");
    assert_eq!(
        version,
        vec![vec![json!(agent::journal::schema::latest_version())]]
    );
}

#[test]
fn a_foreign_file_as_journal_is_refused_and_left_untouched() {
    let dir = temp_dir();
    let junk = b"this is somebody's spreadsheet, not a journal".repeat(100);
    std::fs::write(dir.path().join("journal.db"), &junk).unwrap();
    std::fs::write(dir.path().join("agent.toml"), Agent::standalone_config()).unwrap();
    let stderr = e2e::agent::run_refused(dir.path());
    assert!(
        stderr.contains("not a usable pos-agent journal"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(dir.path().join("journal.db")).unwrap(), junk);
}

#[test]
fn json_logs_never_contain_a_full_card_number() {
    let dir = temp_dir();
    let config = format!(
        "{}[log]\nformat = \"json\"\nlevel = \"debug\"\n",
        Agent::standalone_config()
    );
    let mut agent = Agent::start(dir.path(), &config);
    agent.sell("L-1", Some(CARD), 10_000, 0);
    let _ = agent.post("/v1/sales", &sale_body("L-2", Some(CARD), 10_000, 999));
    let _ = agent.post(
        "/v1/sales",
        &json!({"receipt_id": "L-3", "card": CARD, "lines": []}),
    );
    assert!(agent.stop());
    let log = agent.log();
    assert!(log.lines().count() > 2, "{log}");
    for line in log.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
        assert!(!line.contains(CARD), "full card number in the log: {line}");
    }
}

#[test]
fn a_standalone_store_grants_the_welcome_bonus_once_per_card() {
    let dir = temp_dir();
    let config = format!(
        "{}[program]\nwelcome_bonus_points = 50\n",
        Agent::standalone_config()
    );
    let agent = Agent::start(dir.path(), &config);
    let (_, first) = agent.sell("W-1", Some(CARD), 10_000, 0);
    assert_eq!(first.body["card"]["balance"], 55);
    let (_, second) = agent.sell("W-2", Some(CARD), 10_000, 0);
    assert_eq!(second.body["card"]["balance"], 60);
    let kinds = journal_rows(&agent, "SELECT kind FROM entries ORDER BY seq");
    assert_eq!(
        kinds,
        vec![
            vec![json!("welcome")],
            vec![json!("sale")],
            vec![json!("sale")]
        ]
    );
}

/// One request on an open connection: status, lower-cased headers, body (read by its
/// `Content-Length`; the read waits at most a minute: a guard, not a measure). The
/// body goes in a second write a moment after the headers, as from a client on a slow
/// link: a handler that reads no body has then already run when it arrives.
fn exchange(
    stream: &mut std::net::TcpStream,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String, Value) {
    use std::io::{BufRead, Read, Write};
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: till\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    if !body.is_empty() {
        std::thread::sleep(Duration::from_millis(50));
        stream.write_all(body.as_bytes()).unwrap();
    }
    let mut reader = std::io::BufReader::new(stream);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        let read = reader.read_line(&mut head).unwrap();
        assert!(
            read > 0,
            "{method} {path}: connection closed, after {head:?}"
        );
    }
    let head = head.to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut answer = vec![0; length];
    reader.read_exact(&mut answer).unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, serde_json::from_slice(&answer).unwrap())
}

#[test]
fn a_till_keeps_one_connection_for_its_sales_when_commit_and_cancel_carry_a_body() {
    let (_dir, agent) = standalone();
    let addr = agent.base.split("://").nth(1).unwrap().to_owned();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    // Tills often send `{}` to commit and cancel, which read no body: the connection
    // must stay open all the same (no new connection per sale).
    for i in 0..10 {
        let receipt = format!("K-{i}");
        let hold = serde_json::to_string(&sale_body(&receipt, Some(CARD), 10_000, 0)).unwrap();
        let (status, head, _) = exchange(&mut stream, "POST", "/v1/sales", &hold);
        assert_eq!(status, 200, "{head}");
        let end = if i % 2 == 0 { "commit" } else { "cancel" };
        let (status, head, answer) = exchange(
            &mut stream,
            "POST",
            &format!("/v1/sales/{receipt}/{end}"),
            "{}",
        );
        assert_eq!(status, 200, "{head}{answer}");
        assert!(!head.contains("connection: close"), "{end} {i}: {head}");
    }
    let (status, _, card) = exchange(&mut stream, "GET", &format!("/v1/cards/{CARD}"), "");
    assert_eq!(status, 200);
    // Five sales of 100.00 committed (5 points each), five cancelled.
    assert_eq!(card["balance"], 25, "{card}");
}
