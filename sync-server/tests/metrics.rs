//! `GET /metrics` over real HTTP against the real binary: the counters move with the
//! pushes and lookups a terminal makes, and only this host or the admin may read them.

// Test bodies are plain functions that `on_every_backend!` calls from each backend's
// #[test], so clippy's allow-unwrap-in-tests does not see them as tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, client, get, push, push_body, sale};
use std::io::Write;
use std::process::Stdio;

const CARD: &str = "4006381333931";

/// The value of the sample line `name` (with its labels) in a scrape.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

async fn scrape(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn counters_move_with_pushes_refusals_and_lookups(backend: Backend) {
    let hq = backend.hq();
    let token = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let http = client();
    let (status, before) = scrape(&server.at("/metrics")).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(
        sample(&before, "sync_server_pushes_total{result=\"acknowledged\"}"),
        Some(0.0)
    );

    let body = push_body(
        "store-1",
        "till-1",
        vec![sale(1, CARD, 0), sale(2, CARD, 0)],
    );
    assert_eq!(push(&http, &server, &token, &body).await.0, 200);
    // A lost answer: the same batch again, all duplicates.
    assert_eq!(push(&http, &server, &token, &body).await.0, 200);
    // A gap: refused.
    let gap = push_body("store-1", "till-1", vec![sale(9, CARD, 0)]);
    assert_eq!(push(&http, &server, &token, &gap).await.0, 409);
    let live = get(&http, &server.at(&format!("/v1/cards/{CARD}")), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    let (status, after) = scrape(&server.at("/metrics")).await;
    assert_eq!(status, 200);
    for (name, value) in [
        ("sync_server_pushes_total{result=\"acknowledged\"}", 2.0),
        ("sync_server_pushes_total{result=\"refused\"}", 1.0),
        ("sync_server_entries_total{outcome=\"applied\"}", 2.0),
        ("sync_server_entries_total{outcome=\"duplicate\"}", 2.0),
        ("sync_server_entries_total{outcome=\"quarantined\"}", 0.0),
        ("sync_server_push_refusals_total{kind=\"gap\"}", 1.0),
        ("sync_server_push_duration_seconds_count", 3.0),
        ("sync_server_live_balance_lookups_total{result=\"ok\"}", 1.0),
        ("sync_server_db_pool_errors_total", 0.0),
    ] {
        assert_eq!(sample(&after, name), Some(value), "{name} in\n{after}");
    }
    assert!(after.contains("# TYPE sync_server_db_pool_wait_seconds histogram"));
    assert!(!after.contains(CARD) && !after.contains(&token));
}

on_every_backend!(counters_move_with_pushes_refusals_and_lookups);

/// Behind a TLS proxy on this host every peer looks local: only the admin reads them.
#[tokio::test]
async fn behind_a_proxy_only_the_admin_password_reads_the_metrics() {
    let hq = Backend::Sqlite.hq();
    let mut hash = hq
        .command(&["admin", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    hash.stdin
        .take()
        .unwrap()
        .write_all(b"metrics password\n")
        .unwrap();
    let out = hash.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    std::fs::write(
        &hq.config,
        format!(
            "allow_plain_http = true\n[admin]\npassword_hash = \"{}\"\n",
            phc.trim()
        ),
    )
    .unwrap();
    let server = hq.start();
    let url = server.at("/metrics");

    let (status, body) = scrape(&url).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"unauthorized\""), "{body}");
    let wrong = client()
        .get(&url)
        .basic_auth("admin", Some("not it"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client()
        .get(&url)
        .basic_auth("admin", Some("metrics password"))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let text = right.text().await.unwrap();
    assert!(text.contains("sync_server_pushes_total"), "{text}");
}
