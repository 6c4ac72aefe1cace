//! Async HTTP to HQ (`reqwest` with the ring TLS provider): clients, the protocol
//! header, pushes and error codes.

use crate::hq::Server;
use protocol::journal::JournalEntry;
use protocol::wire::{PROTOCOL_HEADER, PROTOCOL_VERSION, PushRequest};
use protocol::{StoreId, TerminalId};
use std::sync::Arc;
use std::time::Duration;

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_with_roots(roots: rustls::RootCertStore) -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// A client for plain HTTP (its TLS trusts nothing).
pub fn client() -> reqwest::Client {
    client_with_roots(rustls::RootCertStore::empty())
}

/// A client that trusts only the CA in `ca_pem`.
pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    client_with_roots(roots)
}

/// A GET with the protocol header and a bearer token.
pub fn get(client: &reqwest::Client, url: &str, token: &str) -> reqwest::RequestBuilder {
    client
        .get(url)
        .bearer_auth(token)
        .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
}

/// A push body.
pub fn push_body(store: &str, terminal: &str, entries: Vec<JournalEntry>) -> PushRequest {
    PushRequest {
        protocol: PROTOCOL_VERSION,
        store_id: StoreId::parse(store).expect("store"),
        terminal_id: TerminalId::parse(terminal).expect("terminal"),
        entries,
    }
}

/// Posts a push; returns the status and the JSON answer.
pub async fn push(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    body: &PushRequest,
) -> (u16, serde_json::Value) {
    let response = client
        .post(server.at("/v1/sync/push"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("push request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

/// The error code of an error body.
pub fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}
