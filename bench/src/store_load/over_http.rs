//! Not tests: push benchmarks over HTTP against the real binary, on each backend.
//! They print their figures and append them to `target/sync-server-bench.txt`.
//!
//! `cargo test --release -p pos-bench over_http -- --ignored --nocapture --test-threads 1`
//!
//! * a backlog of 100 000 entries of one terminal in batches of 500;
//! * 500 terminals pushing batches of 5 at once (two server instances on
//!   PostgreSQL, one on SQLite), back to back and paced at one push per second each.

use super::tests::record;
use super::{Target, journal};
use crate::latency::quantile;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync_server::keys::TerminalToken;
use testkit::Backend;
use testkit::hq::{Database, Hq, Server};
use testkit::hq_http::{client, push_body};
use time::OffsetDateTime;

fn target(hq: &Hq) -> Target {
    match &hq.db {
        Database::Sqlite(path) => Target::Sqlite(path.clone()),
        Database::Postgres(db) => Target::Postgres(db.url().to_owned()),
    }
}

/// Enrolls terminals straight through the store (500 `terminal add` processes would
/// dominate the run); returns `(store, terminal, token)`.
async fn enroll(hq: &Hq, n: usize) -> Vec<(String, String, String)> {
    let store = target(hq).open().await.unwrap();
    let now = OffsetDateTime::now_utc();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (s, t) = (format!("store-{}", i % 50), format!("till-{i}"));
        let token = TerminalToken::generate().unwrap();
        store
            .add_terminal(
                &protocol::StoreId::parse(&s).unwrap(),
                &protocol::TerminalId::parse(&t).unwrap(),
                &token.hash(),
                false,
                now,
            )
            .await
            .unwrap();
        out.push((s, t, token.reveal().to_owned()));
    }
    out
}

async fn backlog_over_http(backend: Backend) {
    const TOTAL: u64 = 100_000;
    const BATCH: usize = 500;
    let hq = backend.hq();
    let (_, terminal, token) = enroll(&hq, 1).await.remove(0);
    let server = hq.start();
    let http = client();
    let bodies: Vec<Vec<u8>> = journal(&terminal, TOTAL)
        .chunks(BATCH)
        .map(|c| serde_json::to_vec(&push_body("store-0", &terminal, c.to_vec())).unwrap())
        .collect();
    let started = Instant::now();
    for body in bodies {
        let r = http
            .post(server.at("/v1/sync/push"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let secs = started.elapsed().as_secs_f64();
    record(&format!(
        "{backend:?} HTTP backlog: {TOTAL} entries in batches of {BATCH} in {secs:.2} s = {:.0} entries/s",
        TOTAL as f64 / secs
    ));
    hq.ok(&["verify"]);
}

async fn many_terminals_over_http(backend: Backend) {
    const TERMINALS: usize = 500;
    const ROUNDS: u64 = 20;
    const BATCH: u64 = 5;
    for pace in [None, Some(Duration::from_secs(1))] {
        let hq = backend.hq();
        let terminals = enroll(&hq, TERMINALS).await;
        let instances = if backend == Backend::Postgres { 2 } else { 1 };
        let servers: Vec<Server> = (0..instances).map(|_| hq.start()).collect();
        let http = client();
        let start = Arc::new(tokio::sync::Barrier::new(TERMINALS + 1));
        let tasks: Vec<_> = terminals
            .into_iter()
            .enumerate()
            .map(|(i, (store, terminal, token))| {
                let url = servers[i % servers.len()].at("/v1/sync/push");
                let (http, start) = (http.clone(), Arc::clone(&start));
                let bodies: Vec<Vec<u8>> = journal(&terminal, ROUNDS * BATCH)
                    .chunks(BATCH as usize)
                    .map(|c| serde_json::to_vec(&push_body(&store, &terminal, c.to_vec())).unwrap())
                    .collect();
                tokio::spawn(async move {
                    start.wait().await;
                    let mut ticks = pace.map(|p| {
                        let phase = p.mul_f64(i as f64 / TERMINALS as f64);
                        tokio::time::interval_at(tokio::time::Instant::now() + phase, p)
                    });
                    let mut latencies = Vec::with_capacity(bodies.len());
                    for body in bodies {
                        if let Some(t) = ticks.as_mut() {
                            t.tick().await;
                        }
                        let began = Instant::now();
                        let r = http
                            .post(&url)
                            .bearer_auth(&token)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                        latencies.push(began.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        start.wait().await;
        let started = Instant::now();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let secs = started.elapsed().as_secs_f64();
        all.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let pace = pace.map_or_else(
            || "back to back".to_owned(),
            |_| "one push each per second".to_owned(),
        );
        record(&format!(
            "{backend:?} HTTP, {instances} instance(s), {TERMINALS} terminals ({pace}), {} pushes of {BATCH}: \
             {:.0} entries/s; push latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            all.len(),
            (all.len() as u64 * BATCH) as f64 / secs,
            ms(quantile(&all, 0.5)),
            ms(quantile(&all, 0.99)),
            ms(all.last().copied().unwrap_or_default()),
        ));
        hq.ok(&["verify"]);
    }
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "benchmark; prints figures"]
    async fn backlog_over_http() {
        super::backlog_over_http(testkit::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "benchmark; prints figures"]
    async fn many_terminals_over_http() {
        super::many_terminals_over_http(testkit::Backend::Sqlite).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "benchmark; prints figures"]
    async fn backlog_over_http() {
        if testkit::Backend::Postgres.enabled() {
            super::backlog_over_http(testkit::Backend::Postgres).await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "benchmark; prints figures"]
    async fn many_terminals_over_http() {
        if testkit::Backend::Postgres.enabled() {
            super::many_terminals_over_http(testkit::Backend::Postgres).await;
        }
    }
}
