//! The sync API over real HTTP against the real binary: push, pull, live balance,
//! authentication and every refusal.

// Test bodies are plain functions that `on_every_backend!` calls from each backend's
// #[test], so clippy's allow-unwrap-in-tests does not see them as tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, client, code, get, push, push_body, sale, welcome};
use protocol::wire::{LiveBalanceResponse, PullResponse, PushResponse};
use std::io::Write;

const CARD: &str = "4006381333931";

async fn pushed_entries_show_in_the_pull_and_the_live_balance(backend: Backend) {
    let hq = backend.hq();
    let token = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let http = client();

    let entries = vec![sale(1, CARD, 0), sale(2, CARD, 0), sale(3, CARD, 4)];
    let body = push_body("store-1", "till-1", entries);
    let (status, answer) = push(&http, &server, &token, &body).await;
    assert_eq!(status, 200, "{answer}");
    let answer: PushResponse = serde_json::from_value(answer).unwrap();
    assert_eq!(
        (
            answer.acked_through.get(),
            answer.applied,
            answer.duplicates
        ),
        (3, 3, 0)
    );

    // A lost ack: the same batch again is all duplicates, applied once.
    let (status, again) = push(&http, &server, &token, &body).await;
    assert_eq!(status, 200);
    assert_eq!(again["applied"], 0);
    assert_eq!(again["duplicates"], 3);

    hq.settle().await;
    let pull: PullResponse = get(&http, &server.at("/v1/sync/pull"), &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pull.acked_through.get(), 3);
    assert_eq!(pull.balances.len(), 1);
    // 5 + 5 + (5 % of 96.00 = 4) - 4 redeemed.
    assert_eq!(pull.balances[0].balance.get(), 10);
    assert!(!pull.more);
    let next: PullResponse = get(&http, &server.at("/v1/sync/pull"), &token)
        .query(&[("cursor", pull.cursor.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(next.balances.is_empty());

    let live: LiveBalanceResponse = get(&http, &server.at(&format!("/v1/cards/{CARD}")), &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(live.balance.balance.get(), 10);
    assert_eq!(live.acked_through.get(), 3);
    let unknown: LiveBalanceResponse = get(&http, &server.at("/v1/cards/4006381333948"), &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unknown.balance.balance.get(), 0);
    let bad = get(&http, &server.at("/v1/cards/12ab"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(code(&bad.json().await.unwrap()), "bad_card");
}

async fn missing_forged_and_revoked_tokens_are_unauthorized(backend: Backend) {
    let hq = backend.hq();
    let token = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let http = client();
    let body = push_body("store-1", "till-1", vec![sale(1, CARD, 0)]);

    let missing = http
        .post(server.at("/v1/sync/push"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["x-loyalty-protocol"], "1");
    assert_eq!(code(&missing.json().await.unwrap()), "unauthorized");
    let (status, answer) = push(&http, &server, "lt_forged", &body).await;
    assert_eq!((status, code(&answer)), (401, "unauthorized"));

    hq.ok(&[
        "terminal",
        "revoke",
        "--store",
        "store-1",
        "--terminal",
        "till-1",
    ]);
    let (status, answer) = push(&http, &server, &token, &body).await;
    assert_eq!((status, code(&answer)), (401, "unauthorized"));
    let pull = get(&http, &server.at("/v1/sync/pull"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(pull.status(), 401);
}

/// HQ remembers the tokens that pushed: a rotation or revocation by the CLI (another
/// process) still refuses the old token at its next push, before any other answer.
async fn a_token_that_pushed_is_refused_at_once_once_rotated_or_revoked(backend: Backend) {
    let hq = backend.hq();
    let old = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let http = client();
    let send = |token: String, body: serde_json::Value| {
        let (http, server) = (&http, &server);
        async move {
            let response = http
                .post(server.at("/v1/sync/push"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let sales = |terminal: &str, seqs: &[u64]| {
        let entries = seqs.iter().map(|&seq| sale(seq, CARD, 0)).collect();
        serde_json::to_value(push_body("store-1", terminal, entries)).unwrap()
    };
    let (status, answer) = send(old.clone(), sales("till-1", &[1])).await;
    assert_eq!(status, 200, "{answer}");

    let rotated = hq.ok(&[
        "terminal",
        "add",
        "--store",
        "store-1",
        "--terminal",
        "till-1",
        "--rotate",
    ]);
    let new = rotated.lines().last().unwrap().trim().to_owned();
    // Refused before anything else, whatever else is wrong with the push: a body
    // naming another terminal, a batch with a gap, a body that does not parse.
    let faulty = [
        sales("till-2", &[2]),
        sales("till-1", &[2, 4]),
        serde_json::json!({"protocol": 1}),
    ];
    for body in faulty.iter().cloned().chain([sales("till-1", &[2])]) {
        let (status, answer) = send(old.clone(), body.clone()).await;
        assert_eq!((status, code(&answer)), (401, "unauthorized"), "{body}");
    }
    let (status, answer) = send(new.clone(), sales("till-1", &[2])).await;
    assert_eq!(status, 200, "{answer}");

    hq.ok(&[
        "terminal",
        "revoke",
        "--store",
        "store-1",
        "--terminal",
        "till-1",
    ]);
    for body in faulty.into_iter().chain([sales("till-1", &[3])]) {
        let (status, answer) = send(new.clone(), body.clone()).await;
        assert_eq!((status, code(&answer)), (401, "unauthorized"), "{body}");
    }
    // Refused as not a terminal's: no mismatch was recorded for it.
    let report = hq.ok(&["report", "anomalies"]);
    assert!(!report.contains("terminal_mismatch"), "{report}");
}

async fn a_body_naming_another_terminal_is_forbidden_and_reported(backend: Backend) {
    let hq = backend.hq();
    let token = hq.add_terminal("store-1", "till-1");
    hq.add_terminal("store-1", "till-2");
    let server = hq.start();
    let http = client();
    let body = push_body("store-1", "till-2", vec![sale(1, CARD, 0)]);
    let (status, answer) = push(&http, &server, &token, &body).await;
    assert_eq!((status, code(&answer)), (403, "terminal_mismatch"));
    let report = hq.ok(&["report", "anomalies"]);
    assert!(
        report.contains("store-1/till-1  terminal_mismatch"),
        "{report}"
    );
}

async fn malformed_bodies_are_refused_and_change_nothing(backend: Backend) {
    let hq = backend.hq();
    let token = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let http = client();
    let post = |body: String| {
        http.post(server.at("/v1/sync/push"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let garbage = post("{\"protocol\":1, this is not json".to_owned())
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    assert_eq!(code(&garbage.json().await.unwrap()), "bad_request");

    let mut value =
        serde_json::to_value(push_body("store-1", "till-1", vec![sale(1, CARD, 0)])).unwrap();
    value["entries"][0]["surprise"] = serde_json::json!(true);
    let unknown_field = post(value.to_string()).await.unwrap();
    assert_eq!(unknown_field.status(), 400);
    let answer: serde_json::Value = unknown_field.json().await.unwrap();
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field")
    );

    value["entries"][0]
        .as_object_mut()
        .unwrap()
        .remove("surprise");
    value["protocol"] = serde_json::json!(2);
    let future = post(value.to_string()).await.unwrap();
    assert_eq!(future.status(), 400);
    assert_eq!(code(&future.json().await.unwrap()), "unsupported_protocol");

    let holes = push_body(
        "store-1",
        "till-1",
        vec![sale(1, CARD, 0), sale(3, CARD, 0)],
    );
    let (status, answer) = push(&http, &server, &token, &holes).await;
    assert_eq!((status, code(&answer)), (400, "bad_batch"));

    let no_header = http
        .get(server.at("/v1/sync/pull"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(no_header.status(), 400);
    assert_eq!(
        code(&no_header.json().await.unwrap()),
        "unsupported_protocol"
    );

    let live: LiveBalanceResponse = get(&http, &server.at(&format!("/v1/cards/{CARD}")), &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (live.acked_through.get(), live.balance.balance.get()),
        (0, 0)
    );
}

async fn a_gap_and_a_rewind_are_refused_with_what_hq_holds(backend: Backend) {
    let hq = backend.hq();
    let token = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let http = client();
    let first = push_body(
        "store-1",
        "till-1",
        vec![sale(1, CARD, 0), sale(2, CARD, 0)],
    );
    assert_eq!(push(&http, &server, &token, &first).await.0, 200);

    let gap = push_body("store-1", "till-1", vec![sale(4, CARD, 0)]);
    let (status, answer) = push(&http, &server, &token, &gap).await;
    assert_eq!((status, code(&answer)), (409, "seq_gap"));
    assert_eq!(answer["error"]["acked_through"], 2);

    let rewind = push_body("store-1", "till-1", vec![sale(2, CARD, 0)]);
    let (status, answer) = push(&http, &server, &token, &rewind).await;
    assert_eq!((status, code(&answer)), (409, "seq_conflict"));

    let probe = push_body("store-1", "till-1", vec![]);
    let (status, answer) = push(&http, &server, &token, &probe).await;
    assert_eq!((status, answer["acked_through"].as_u64()), (200, Some(2)));
    let report = hq.ok(&["report", "anomalies"]);
    assert!(
        report.contains(" gap: ") && report.contains(" rewind: "),
        "{report}"
    );
}

async fn a_gzip_compressed_push_is_applied(backend: Backend) {
    let hq = backend.hq();
    let token = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let http = client();
    let body = push_body(
        "store-1",
        "till-1",
        vec![sale(1, CARD, 0), welcome(2, CARD, 7)],
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&serde_json::to_vec(&body).unwrap()).unwrap();
    let response = http
        .post(server.at("/v1/sync/push"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: PushResponse = response.json().await.unwrap();
    assert_eq!(answer.applied, 2);

    let broken = http
        .post(server.at("/v1/sync/push"))
        .bearer_auth(&token)
        .header("content-encoding", "gzip")
        .body("not gzip at all")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let brotli = http
        .post(server.at("/v1/sync/push"))
        .bearer_auth(&token)
        .header("content-encoding", "br")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(brotli.status(), 415);
    assert_eq!(code(&brotli.json().await.unwrap()), "unsupported_encoding");
}

async fn a_body_over_the_limit_is_refused_even_when_it_arrives_compressed(backend: Backend) {
    let hq = backend.hq_with_config("max_body_bytes = 2048\n");
    let token = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let http = client();
    let entries: Vec<_> = (1..=10).map(|s| sale(s, CARD, 0)).collect();
    let body = serde_json::to_vec(&push_body("store-1", "till-1", entries)).unwrap();
    assert!(body.len() > 2048);
    let plain = http
        .post(server.at("/v1/sync/push"))
        .bearer_auth(&token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 413);
    assert_eq!(code(&plain.json().await.unwrap()), "body_too_large");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&body).unwrap();
    let small = gz.finish().unwrap();
    assert!(small.len() < 2048);
    let compressed = http
        .post(server.at("/v1/sync/push"))
        .bearer_auth(&token)
        .header("content-encoding", "gzip")
        .body(small)
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.status(), 413);
}

async fn health_needs_no_token_and_names_the_rules_version(backend: Backend) {
    let hq = backend.hq();
    std::fs::write(hq.dir.path().join("rules.toml"), "version = 4\n").unwrap();
    hq.ok(&[
        "rules",
        "set",
        hq.dir.path().join("rules.toml").to_str().unwrap(),
    ]);
    let server = hq.start();
    let answer: serde_json::Value = client()
        .get(server.at("/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "ok");
    assert_eq!(answer["rules_version"], 4);
    assert_eq!(answer["protocol"], 1);
    let missing = client().get(server.at("/v1/nothing")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(code(&missing.json().await.unwrap()), "not_found");
}

async fn blocks_and_new_rules_reach_the_terminals_of_every_store(backend: Backend) {
    let hq = backend.hq();
    let token = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let http = client();
    let blocked = hq.ok(&["card", "block", CARD, "--reason", "reported stolen"]);
    assert!(
        blocked.starts_with("card ****3931 blocked") && !blocked.contains(CARD),
        "the card is echoed masked: {blocked}"
    );
    std::fs::write(
        hq.dir.path().join("rules.toml"),
        "welcome_bonus_points = 25\n",
    )
    .unwrap();
    let set = hq.ok(&[
        "rules",
        "set",
        hq.dir.path().join("rules.toml").to_str().unwrap(),
    ]);
    assert!(set.contains("rules version 1"), "{set}");
    hq.settle().await;
    let pull: PullResponse = get(&http, &server.at("/v1/sync/pull"), &token)
        .query(&[("rules_version", "0")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pull.blocked.len(), 1);
    assert!(pull.blocked[0].blocked);
    assert_eq!(pull.rules.map(|r| r.welcome_bonus_points.get()), Some(25));

    // Redeeming on the blocked card is applied and flagged; the welcome is HQ's.
    let body = push_body(
        "store-1",
        "till-1",
        vec![sale(1, CARD, 0), sale(2, CARD, 40)],
    );
    assert_eq!(push(&http, &server, &token, &body).await.0, 200);
    let flags = hq.ok(&["report", "flags"]);
    assert!(flags.contains("blocked_card"), "{flags}");
    let show = hq.ok(&["card", "show", CARD]);
    assert!(show.contains("blocked    yes (reported stolen)"), "{show}");
    assert!(show.contains("welcome"), "{show}");
}

on_every_backend!(
    pushed_entries_show_in_the_pull_and_the_live_balance,
    missing_forged_and_revoked_tokens_are_unauthorized,
    a_token_that_pushed_is_refused_at_once_once_rotated_or_revoked,
    a_body_naming_another_terminal_is_forbidden_and_reported,
    malformed_bodies_are_refused_and_change_nothing,
    a_gap_and_a_rewind_are_refused_with_what_hq_holds,
    a_gzip_compressed_push_is_applied,
    a_body_over_the_limit_is_refused_even_when_it_arrives_compressed,
    health_needs_no_token_and_names_the_rules_version,
    blocks_and_new_rules_reach_the_terminals_of_every_store,
);
