//! HTTP client for HQ's sync server: push, pull, live balance, reservations, lease
//! syncs and app token uses.
//!
//! TLS is rustls with the ring provider; the trust anchors are the system roots, or
//! only the `ca_file` when one is configured (a private HQ CA should not widen trust
//! to every public CA, nor the other way round).

use crate::journal::entries::StoredEntry;
use config::agent::SyncSection;
use protocol::wire::{
    ErrorBody, LeaseSyncRequest, LeaseSyncResponse, LiveBalanceResponse, PROTOCOL_HEADER,
    PROTOCOL_VERSION, PullResponse, PushResponse, ReserveRequest, ReserveResponse, SyncErrorCode,
    TokenUseRequest, TokenUseResponse,
};
use protocol::{CardId, Points, Seq, StoreId, TerminalId};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Push bodies larger than this are gzip-compressed.
const GZIP_ABOVE_BYTES: usize = 8 * 1024;

/// Keepalive probes unanswered before the kernel drops an idle connection.
const KEEPALIVE_PROBES: u32 = 3;

/// How fast the client gives up on a connection that stopped answering, so that a
/// push stuck on a dead connection (a partition that drops packets) is retried on a
/// new one within seconds, not after the whole-request budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTimeouts {
    /// Establishing TCP (and TLS).
    pub connect: Duration,
    /// Silence on a connection while waiting for bytes (reset by every read): HQ
    /// answers a push only after applying the whole batch, so this grows with the
    /// batch size.
    pub read: Duration,
    /// The whole request, `[sync] request_timeout_secs`.
    pub request: Duration,
    /// Idle time before the first TCP keepalive probe of a pooled connection.
    pub keepalive_idle: Duration,
    /// Between keepalive probes.
    pub keepalive_interval: Duration,
}

impl LinkTimeouts {
    /// The timeouts for `[sync]`: connect 3 s; read 3 s plus 10 ms per entry of a full
    /// batch (500 entries: 8 s), which is ample for HQ to apply one (pos-bench measures
    /// milliseconds); both at most the request budget. Keepalive probes every 2 s after
    /// 5 s idle, so a pooled connection into a partition is dropped in about 11 s even
    /// when nothing is being sent.
    pub fn for_sync(cfg: &SyncSection) -> Self {
        let request = Duration::from_secs(cfg.request_timeout_secs);
        let read = Duration::from_secs(3) + Duration::from_millis(10) * cfg.batch_size;
        Self {
            connect: Duration::from_secs(3).min(request),
            read: read.min(request),
            request,
            keepalive_idle: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(2),
        }
    }
}

/// Every text an [`HqError`] carries to the logs, `/v1/health` and the till (the HTTP
/// client's error with its URL, HQ's message, a proxy's page) is a [`Scrubbed`]: it
/// went through the one masking point of card numbers.
pub use protocol::ids::Scrubbed;

/// Why a request to HQ failed.
#[derive(Debug, thiserror::Error)]
pub enum HqError {
    /// No answer: network down, timeout, TLS failure, or HQ overloaded (5xx). Retry later.
    #[error("HQ unreachable: {0}")]
    Unreachable(Scrubbed),
    /// HQ answered and refused the request (4xx). Retrying the same request will not help.
    #[error("HQ refused the request ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// HQ's error code.
        code: RefusalCode,
        /// HQ's message.
        message: Scrubbed,
        /// For sequence errors: what HQ holds for this terminal.
        acked_through: Option<Seq>,
        /// For `insufficient_points`: what the card may still spend at HQ.
        spendable: Option<Points>,
    },
    /// HQ answered something this agent cannot read (other protocol version?).
    #[error("unreadable answer from HQ: {0}")]
    Protocol(Scrubbed),
}

/// The code of a refusal: one of the sync API's codes, or the text of one this build
/// does not know (a newer HQ, or an answer that is not HQ's JSON, such as a proxy's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalCode {
    /// A code of the sync API.
    Known(SyncErrorCode),
    /// Anything else, as received (card numbers masked).
    Unknown(Scrubbed),
}

impl RefusalCode {
    /// Parses HQ's code.
    pub fn parse(code: String) -> Self {
        SyncErrorCode::parse(&code).map_or_else(|| Self::Unknown(Scrubbed::new(code)), Self::Known)
    }
}

impl std::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Known(code) => code.fmt(f),
            Self::Unknown(code) => code.fmt(f),
        }
    }
}

/// Why the client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The token file could not be read.
    // The OS error is the source: callers print the chain, which names it once.
    #[error("cannot read token file {path}")]
    Token {
        /// The token file's path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The CA file could not be read or holds no certificate.
    #[error("cannot use CA file {path}: {message}")]
    Ca {
        /// The CA file's path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// TLS or HTTP client setup failed.
    #[error("cannot set up the HTTPS client: {0}")]
    Client(String),
}

/// A push body ready to send, compressed when large.
#[derive(Debug)]
pub struct PushPayload {
    bytes: Vec<u8>,
    gzipped: bool,
}

/// A client for one terminal.
#[derive(Clone)]
pub struct HqClient {
    http: reqwest::Client,
    base: String,
    token: Arc<str>,
    store: StoreId,
    terminal: TerminalId,
}

impl HqClient {
    /// Builds the client from `[sync]`.
    pub fn new(
        cfg: &SyncSection,
        store: StoreId,
        terminal: TerminalId,
    ) -> Result<Self, SetupError> {
        let token = std::fs::read_to_string(&cfg.token_file).map_err(|e| SetupError::Token {
            path: cfg.token_file.display().to_string(),
            source: e,
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(SetupError::Token {
                path: cfg.token_file.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty"),
            });
        }
        let tls = tls_config(cfg.ca_file.as_deref())?;
        let timeouts = LinkTimeouts::for_sync(cfg);
        let builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .timeout(timeouts.request)
            .tcp_keepalive(timeouts.keepalive_idle)
            .tcp_keepalive_interval(timeouts.keepalive_interval)
            .tcp_keepalive_retries(KEEPALIVE_PROBES)
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy();
        // Data the kernel cannot get acknowledged (a push body sent into a partition)
        // fails the connection as fast as a silent answer does.
        #[cfg(target_os = "linux")]
        let builder = builder.tcp_user_timeout(timeouts.read);
        let http = builder
            .build()
            .map_err(|e| SetupError::Client(e.to_string()))?;
        Ok(Self {
            http,
            base: cfg.url.trim_end_matches('/').to_owned(),
            token: Arc::from(token),
            store,
            terminal,
        })
    }

    /// Encodes a push of entries (consecutive `seq`, oldest first), given as the
    /// journal stored them. The body is a `PushRequest`, assembled around the stored
    /// JSON so that a backlog of thousands of entries is not parsed and re-encoded on
    /// the till. Separate from [`Self::send_push`] so that the sync client encodes the
    /// next batch while HQ applies the previous one.
    pub fn encode_push(&self, entries: &[StoredEntry]) -> Result<PushPayload, HqError> {
        let json = push_body(&self.store, &self.terminal, entries)?;
        if json.len() > GZIP_ABOVE_BYTES {
            let bytes = gzip(&json).map_err(|e| HqError::Protocol(Scrubbed::new(e)))?;
            return Ok(PushPayload {
                bytes,
                gzipped: true,
            });
        }
        Ok(PushPayload {
            bytes: json,
            gzipped: false,
        })
    }

    /// Sends a push [`Self::encode_push`] made and reads HQ's answer.
    pub async fn send_push(&self, payload: PushPayload) -> Result<PushResponse, HqError> {
        let mut req = self
            .http
            .post(format!("{}/v1/sync/push", self.base))
            .bearer_auth(&*self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if payload.gzipped {
            req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        let resp = req.body(payload.bytes).send().await.map_err(unreachable)?;
        read_json(resp).await
    }

    /// Pulls HQ's changes since `cursor`.
    pub async fn pull(&self, cursor: &str, rules_version: u64) -> Result<PullResponse, HqError> {
        let resp = self
            .http
            .get(format!("{}/v1/sync/pull", self.base))
            .bearer_auth(&*self.token)
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
            .query(&[
                ("cursor", cursor.to_owned()),
                ("rules_version", rules_version.to_string()),
            ])
            .send()
            .await
            .map_err(unreachable)?;
        read_json(resp).await
    }

    /// Reserves points of a card at HQ for a receipt being sold, giving up after
    /// `timeout` (the till then decides offline).
    pub async fn reserve(
        &self,
        req: &ReserveRequest,
        timeout: Duration,
    ) -> Result<ReserveResponse, HqError> {
        self.post_json("/v1/reservations", req, Some(timeout)).await
    }

    /// Reports the leases this till holds and asks for more.
    pub async fn sync_leases(&self, req: &LeaseSyncRequest) -> Result<LeaseSyncResponse, HqError> {
        self.post_json("/v1/sync/leases", req, None).await
    }

    /// Records the use of an app token at this till, giving up after `timeout` (the
    /// till's own replay guard then decides alone).
    pub async fn use_token(
        &self,
        req: &TokenUseRequest,
        timeout: Duration,
    ) -> Result<TokenUseResponse, HqError> {
        self.post_json("/v1/tokens/use", req, Some(timeout)).await
    }

    async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Option<Duration>,
    ) -> Result<T, HqError> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&*self.token)
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
            .json(body);
        if let Some(timeout) = timeout {
            req = req.timeout(timeout);
        }
        read_json(req.send().await.map_err(unreachable)?).await
    }

    /// Asks HQ for a card's live balance, giving up after `timeout`.
    pub async fn live_balance(
        &self,
        card: &CardId,
        timeout: Duration,
    ) -> Result<LiveBalanceResponse, HqError> {
        let resp = self
            .http
            .get(format!("{}/v1/cards/{}", self.base, card.as_str()))
            .bearer_auth(&*self.token)
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
            .timeout(timeout)
            .send()
            .await
            .map_err(unreachable)?;
        read_json(resp).await
    }
}

fn unreachable(e: reqwest::Error) -> HqError {
    // A refused certificate first says what to do about it.
    let mut msg = match crate::hq_tls::explain(&e) {
        Some(explanation) => format!("{explanation}; {e}"),
        None => e.to_string(),
    };
    // Include the source chain: "error sending request" alone does not say why.
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    HqError::Unreachable(Scrubbed::new(msg))
}

async fn read_json<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, HqError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(unreachable)?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| HqError::Protocol(Scrubbed::new(e)));
    }
    if status.is_server_error() {
        return Err(HqError::Unreachable(Scrubbed::new(format_args!(
            "HQ answered {status}"
        ))));
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => Err(HqError::Refused {
            status: status.as_u16(),
            code: RefusalCode::parse(body.error.code),
            message: Scrubbed::new(body.error.message),
            acked_through: body.error.acked_through,
            spendable: body.error.spendable,
        }),
        Err(_) => Err(HqError::Refused {
            status: status.as_u16(),
            code: RefusalCode::parse("http_error".into()),
            message: Scrubbed::new(
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(200)
                    .collect::<String>(),
            ),
            acked_through: None,
            spendable: None,
        }),
    }
}

/// The JSON of a `PushRequest` whose entries are already-encoded `JournalEntry`s.
fn push_body(
    store: &StoreId,
    terminal: &TerminalId,
    entries: &[StoredEntry],
) -> Result<Vec<u8>, HqError> {
    let encode_err = |e: serde_json::Error| HqError::Protocol(Scrubbed::new(e));
    let size: usize = entries.iter().map(|e| e.json.len() + 1).sum();
    let mut out = Vec::with_capacity(size + 128);
    out.extend_from_slice(format!("{{\"protocol\":{PROTOCOL_VERSION},\"store_id\":").as_bytes());
    out.extend(serde_json::to_vec(store).map_err(encode_err)?);
    out.extend_from_slice(b",\"terminal_id\":");
    out.extend(serde_json::to_vec(terminal).map_err(encode_err)?);
    out.extend_from_slice(b",\"entries\":[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e.json.as_bytes());
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(data)?;
    enc.finish()
}

/// The rustls client configuration: the CA file's certificates, or the system roots.
pub fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, SetupError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_err = |message: String| SetupError::Ca {
                path: path.display().to_string(),
                message,
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_err(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| ca_err(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_err("no certificate in the file".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A malformed system certificate should not stop the agent: skip it.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::journal::{EntryBody, JournalEntry, WelcomeEntry};
    use protocol::wire::PushRequest;

    fn sync_section(batch_size: u32, request_timeout_secs: u64) -> SyncSection {
        SyncSection {
            url: "http://127.0.0.1:1".into(),
            token_file: "t".into(),
            ca_file: None,
            interval_secs: 5,
            batch_size,
            max_backoff_secs: 60,
            live_balance_timeout_ms: 800,
            request_timeout_secs,
        }
    }

    #[test]
    fn a_dead_connection_is_given_up_long_before_the_request_budget() {
        let t = LinkTimeouts::for_sync(&sync_section(500, 30));
        assert_eq!(t.connect, Duration::from_secs(3));
        assert_eq!(t.read, Duration::from_secs(8));
        assert!(t.read < t.request && t.connect < t.request);
        // Bigger batches take HQ longer to apply: the read timeout grows with them.
        assert!(LinkTimeouts::for_sync(&sync_section(2_000, 60)).read > t.read);
        // Never beyond the whole-request budget.
        let short = LinkTimeouts::for_sync(&sync_section(5_000, 2));
        assert_eq!(
            (short.read, short.connect),
            (Duration::from_secs(2), Duration::from_secs(2))
        );
    }

    #[test]
    fn an_error_carrying_a_card_url_is_masked_at_construction() {
        let e = HqError::Unreachable(Scrubbed::new(
            "error sending request for url (http://127.0.0.1:1/v1/cards/4006381333931)",
        ));
        let text = e.to_string();
        assert!(!text.contains("4006381333931"), "{text}");
        assert!(text.contains("/v1/cards/****3931"), "{text}");
    }

    #[test]
    fn refusal_codes_of_the_sync_api_parse_and_others_are_kept_as_sent() {
        assert_eq!(
            RefusalCode::parse("seq_gap".into()),
            RefusalCode::Known(SyncErrorCode::SeqGap)
        );
        let newer = RefusalCode::parse("quarantined".into());
        assert_eq!(newer, RefusalCode::Unknown(Scrubbed::new("quarantined")));
        assert_eq!(newer.to_string(), "quarantined");
        assert_eq!(
            RefusalCode::Known(SyncErrorCode::SeqConflict).to_string(),
            "seq_conflict"
        );
    }

    #[test]
    fn the_assembled_push_body_is_the_push_request_of_the_stored_entries() {
        let entries: Vec<JournalEntry> = (1..=3)
            .map(|seq| JournalEntry {
                id: uuid::Uuid::from_u128(seq),
                seq: Seq(seq as u64),
                at: time::macros::datetime!(2026-11-24 10:00 UTC),
                rules_version: 2,
                body: EntryBody::Welcome(WelcomeEntry {
                    card: CardId::parse("4006381333931").unwrap(),
                    points: protocol::Points(5),
                }),
            })
            .collect();
        let stored: Vec<StoredEntry> = entries
            .iter()
            .map(|e| StoredEntry {
                seq: e.seq,
                json: serde_json::to_string(e).unwrap(),
            })
            .collect();
        let store = StoreId::parse("store-1").unwrap();
        let terminal = TerminalId::parse("till-1").unwrap();
        let body = push_body(&store, &terminal, &stored).unwrap();
        let parsed: PushRequest = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            parsed,
            PushRequest {
                protocol: PROTOCOL_VERSION,
                store_id: store,
                terminal_id: terminal,
                entries,
            }
        );
        let empty: PushRequest =
            serde_json::from_slice(&push_body(&parsed.store_id, &parsed.terminal_id, &[]).unwrap())
                .unwrap();
        assert!(empty.entries.is_empty());
    }
}
