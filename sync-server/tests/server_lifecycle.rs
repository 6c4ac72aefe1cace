//! Starting and stopping the real server: HTTPS with rustls, the plain-HTTP guard,
//! graceful shutdown.

// Test bodies are plain functions that `on_every_backend!` calls from each backend's
// #[test], so clippy's allow-unwrap-in-tests does not see them as tests.
#![allow(clippy::unwrap_used)]

mod common;

const CARD: &str = "4006381333931";

use common::{Backend, Hq, client, client_trusting};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("key pair");
    let cert = params.self_signed(&key).expect("self-signed CA");
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// Writes a server certificate for 127.0.0.1 signed by `ca`; returns the config text.
fn tls_config(hq: &Hq, ca: &Ca) -> String {
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "hq test");
    let key = KeyPair::generate().expect("key pair");
    let cert = params.signed_by(&key, &ca.issuer).expect("server cert");
    let cert_file = hq.dir.path().join("hq.crt");
    let key_file = hq.dir.path().join("hq.key");
    std::fs::write(&cert_file, cert.pem()).expect("write cert");
    std::fs::write(&key_file, key.serialize_pem()).expect("write key");
    "[tls]\ncert_file = \"hq.crt\"\nkey_file = \"hq.key\"\n".to_owned()
}

async fn https_works_for_a_client_that_trusts_the_ca_and_fails_for_one_that_does_not(
    backend: Backend,
) {
    let ca = new_ca("HQ test CA");
    let other = new_ca("someone else");
    let hq = backend.hq();
    std::fs::write(&hq.config, tls_config(&hq, &ca)).unwrap();
    let server = hq.start();
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    let ok = client_trusting(&ca.pem)
        .get(server.at("/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        client_trusting(&other.pem)
            .get(server.at("/v1/health"))
            .send()
            .await
            .is_err()
    );
    let plain_url = server.url.replace("https://", "http://");
    assert!(
        client()
            .get(format!("{plain_url}/v1/health"))
            .send()
            .await
            .is_err()
    );
}

/// Over HTTPS, connections that never finish their handshake fill the cap, not the
/// descriptors: one more client is told `too_many_connections` (in TLS, so it can read
/// it), and it is served again once the stalled ones go. The gate does not depend on
/// the ledger backend, so SQLite alone.
#[tokio::test]
async fn https_connections_beyond_the_cap_are_told_so_and_served_once_others_close() {
    let ca = new_ca("HQ test CA");
    let hq = Backend::Sqlite.hq();
    let config = format!("max_connections = 16\n{}", tls_config(&hq, &ca));
    std::fs::write(&hq.config, config).unwrap();
    let server = hq.start();
    let addr = server.url.trim_start_matches("https://").to_owned();
    // A new client per request: a pooled connection would keep its place.
    let http = || client_trusting(&ca.pem);
    let health = server.at("/v1/health");
    assert_eq!(http().get(&health).send().await.unwrap().status(), 200);

    // Plain TCP connections that never say hello; a place frees only when the server
    // has noticed the previous client's close, so fill until the cap answers.
    let mut stalled = Vec::new();
    let refusal = loop {
        assert!(stalled.len() <= 32, "the cap of 16 never refused anyone");
        stalled.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
        let answer = http().get(&health).send().await.unwrap();
        if answer.status() != 200 {
            break answer;
        }
    };
    assert_eq!(refusal.status(), 503);
    let body: serde_json::Value = refusal.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections", "{body}");

    drop(stalled);
    loop {
        let answer = http().get(&health).send().await.unwrap();
        if answer.status() == 200 {
            break;
        }
        assert_eq!(answer.status(), 503, "only the cap may refuse");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn plain_http_on_a_non_loopback_address_is_refused_at_start(backend: Backend) {
    let hq = backend.hq();
    let out = hq.run(&["run", "--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing plain HTTP") && err.contains("allow_plain_http"),
        "{err}"
    );
}

fn bad_tls_files_stop_the_start_with_the_file_named(backend: Backend) {
    let hq =
        backend.hq_with_config("[tls]\ncert_file = \"missing.crt\"\nkey_file = \"missing.key\"\n");
    let out = hq.run(&["run", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.crt"), "{err}");
}

async fn sigterm_stops_the_server_cleanly(backend: Backend) {
    let hq = backend.hq();
    let server = hq.start();
    let health = client().get(server.at("/v1/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(server.terminate(), "exit status after SIGTERM");
}

/// PostgreSQL goes away under a running server (connections cut, new ones refused):
/// pushes and health answer 503, nothing is half-applied, and the server carries on
/// once the database is back.
#[tokio::test]
async fn a_database_outage_answers_503_and_the_server_recovers() {
    if !Backend::Postgres.enabled() {
        return;
    }
    let hq = Backend::Postgres.hq();
    let token = hq.add_terminal("store-1", "till-1");
    let server = hq.start();
    let http = client();
    let body = |seq| common::push_body("store-1", "till-1", vec![common::sale(seq, CARD, 0)]);
    assert_eq!(common::push(&http, &server, &token, &body(1)).await.0, 200);
    let common::Database::Postgres(db) = &hq.db else {
        unreachable!("a PostgreSQL HQ")
    };
    db.admin_execute(
        "ALTER DATABASE {db} ALLOW_CONNECTIONS false;
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}';",
    )
    .await
    .unwrap();
    let health = http.get(server.at("/v1/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    // The first request may still meet a pooled connection that died just now;
    // either way the answer is 503, never 500.
    for _ in 0..2 {
        let (status, answer) = common::push(&http, &server, &token, &body(2)).await;
        assert_eq!((status, common::code(&answer)), (503, "unavailable"));
    }
    db.admin_execute("ALTER DATABASE {db} ALLOW_CONNECTIONS true")
        .await
        .unwrap();
    let health = http.get(server.at("/v1/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let (status, answer) = common::push(&http, &server, &token, &body(2)).await;
    assert_eq!((status, answer["acked_through"].as_u64()), (200, Some(2)));
    hq.ok(&["verify"]);
}

on_every_backend!(
    https_works_for_a_client_that_trusts_the_ca_and_fails_for_one_that_does_not,
    sigterm_stops_the_server_cleanly,
);

mod blocking {
    use super::*;
    on_every_backend!(
        blocking:
        plain_http_on_a_non_loopback_address_is_refused_at_start,
        bad_tls_files_stop_the_start_with_the_file_named,
    );
}
