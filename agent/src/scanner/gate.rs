//! The gate between decoded scans and the till: debounce, then replay, then publish.
//!
//! One async task admits the decoded scans of every scanner, in arrival order. Being
//! the only owner of the debounce windows and of the used-token set makes each
//! check-and-insert atomic without a lock, and keeps the scanner threads free of
//! anything but reading. Debounce comes first: the same token read twice in one
//! presentation is one scan, not a replay. Accepted tokens are written behind to the
//! journal by a second task, so publishing never waits for an fsync.
//!
//! With HQ configured, an app token this till accepts is then recorded at HQ
//! (`POST /v1/tokens/use`, within `live_balance_timeout_ms`) before the scan is
//! published: HQ refuses a token used at another till, so one code is used once
//! everywhere while HQ answers. Without an answer the local guard alone decides (the
//! token's short validity bounds what a screenshot can do offline).

use super::debounce::Debouncer;
use super::replay::{UsedToken, UsedTokens};
use crate::hq_client::{HqClient, HqError, RefusalCode};
use crate::journal::{Journal, JournalError};
use crate::metrics::{Metrics, ScanResult};
use crate::scan_bus::{ScanBus, ScanEvent};
use protocol::codes::CardScan;
use protocol::token::AppToken;
use protocol::wire::{PROTOCOL_VERSION, SyncErrorCode, TokenUseRequest};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::mpsc;

/// A frame that decoded to a card, on its way to the gate.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Position of the scanner in the config.
    pub scanner: usize,
    /// What the frame decoded to.
    pub scan: CardScan,
    /// When the frame was complete (agent clock).
    pub at: OffsetDateTime,
    /// The same instant on the monotonic clock, for debouncing.
    pub read_at: Instant,
}

/// What the gate decided about a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A new scan: publish it.
    Accepted,
    /// The same card again within the scanner's debounce window.
    Debounced,
    /// An app token already accepted at this terminal.
    Replayed,
    /// An app token HQ recorded as used at another till.
    UsedElsewhere,
}

/// HQ's record of app token uses, asked before a token scan is published.
#[derive(Clone)]
pub struct TokenUses {
    /// The client of HQ.
    pub hq: HqClient,
    /// How long to wait for HQ's answer.
    pub timeout: Duration,
}

impl TokenUses {
    /// True when HQ says `token` was used at another till (or in another scan).
    /// Unreachable or any other answer: false, the local guard has decided.
    pub async fn used_elsewhere(&self, token: &AppToken) -> bool {
        let expires_at = OffsetDateTime::from_unix_timestamp(token.expires_at)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let req = TokenUseRequest {
            protocol: PROTOCOL_VERSION,
            token_id: token.id(),
            card: token.card.clone(),
            expires_at,
            scan_id: uuid::Uuid::now_v7(),
        };
        match self.hq.use_token(&req, self.timeout).await {
            Ok(_) => false,
            Err(e) => token_used(&e),
        }
    }
}

/// True for HQ's `token_used` refusal.
fn token_used(e: &HqError) -> bool {
    match e {
        HqError::Refused {
            code: RefusalCode::Known(SyncErrorCode::TokenUsed),
            ..
        } => true,
        other => {
            tracing::info!(error = %other, "HQ cannot record the app token use now; the local guard decides");
            false
        }
    }
}

/// The admission rules, without I/O.
#[derive(Debug)]
pub struct Gate {
    debouncers: Vec<Debouncer>,
    used: UsedTokens,
}

impl Gate {
    /// A gate for scanners with these debounce windows (by config position) and the
    /// tokens already used at this terminal.
    pub fn new(windows: impl IntoIterator<Item = Duration>, used: UsedTokens) -> Self {
        Self {
            debouncers: windows.into_iter().map(Debouncer::new).collect(),
            used,
        }
    }

    /// Decides about one scan.
    pub fn admit(&mut self, decoded: &Decoded) -> Verdict {
        let repeat = self
            .debouncers
            .get_mut(decoded.scanner)
            .is_some_and(|d| d.is_repeat(&decoded.scan.card, decoded.read_at));
        if repeat {
            return Verdict::Debounced;
        }
        match &decoded.scan.token {
            Some(token)
                if !self
                    .used
                    .first_use(&UsedToken::of(token), decoded.at.unix_timestamp()) =>
            {
                Verdict::Replayed
            }
            _ => Verdict::Accepted,
        }
    }
}

/// Admits decoded scans until every sender is gone, then waits for the used tokens
/// to be written.
pub async fn run(
    mut decoded: mpsc::Receiver<Decoded>,
    names: Vec<String>,
    mut gate: Gate,
    bus: ScanBus,
    metrics: Arc<Metrics>,
    journal: Journal,
    token_uses: Option<TokenUses>,
) {
    let (persist_tx, persist_rx) = mpsc::unbounded_channel();
    let persister = tokio::spawn(persist(journal, persist_rx));
    while let Some(d) = decoded.recv().await {
        let name = names.get(d.scanner).map_or("?", String::as_str);
        let mut verdict = gate.admit(&d);
        if verdict == Verdict::Accepted
            && let (Some(uses), Some(token)) = (&token_uses, &d.scan.token)
            && uses.used_elsewhere(token).await
        {
            verdict = Verdict::UsedElsewhere;
        }
        match verdict {
            Verdict::Accepted => {
                metrics.scan(name, ScanResult::Accepted);
                tracing::info!(
                    scanner = name,
                    symbology = d.scan.symbology.as_str(),
                    card = %d.scan.card.masked(),
                    "scan"
                );
                let token = d.scan.token.as_ref().map(UsedToken::of);
                bus.publish(ScanEvent {
                    scanner: name.to_owned(),
                    symbology: d.scan.symbology,
                    card: d.scan.card,
                    at: d.at,
                });
                if let Some(token) = token {
                    // The persister only stops after this loop; a send cannot fail
                    // before then, and a failure would only lose the restart guard.
                    let _ = persist_tx.send((token, d.at.unix_timestamp()));
                }
            }
            Verdict::Debounced => {
                metrics.scan(name, ScanResult::Debounced);
                tracing::debug!(scanner = name, card = %d.scan.card.masked(), "repeat read debounced");
            }
            Verdict::Replayed | Verdict::UsedElsewhere => {
                metrics.scan(name, ScanResult::Invalid);
                let reason = if verdict == Verdict::Replayed {
                    "replayed: app token already used at this terminal"
                } else {
                    "replayed: app token already used at another till (HQ)"
                };
                tracing::warn!(
                    scanner = name,
                    reason,
                    card = %d.scan.card.masked(),
                    "scan refused"
                );
            }
        }
    }
    drop(persist_tx);
    if persister.await.is_err() {
        tracing::error!("used-token writer failed");
    }
}

/// Writes used tokens to the journal, several per transaction when they queue up.
async fn persist(journal: Journal, mut rx: mpsc::UnboundedReceiver<(UsedToken, i64)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let written = journal
            .write(move |tx| -> Result<(), JournalError> {
                for (token, now) in &batch {
                    tx.record_used_token(token, UsedToken::expired_by(*now))?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = written {
            // The in-memory set still refuses the replay until the agent restarts.
            tracing::warn!(error = %e, "cannot record used app tokens in the journal");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::CardId;
    use protocol::codes::Symbology;
    use protocol::token::{AppToken, KeyId};

    fn decoded(scanner: usize, card: &str, token: bool, read_at: Instant) -> Decoded {
        let card = CardId::parse(card).unwrap();
        Decoded {
            scanner,
            scan: CardScan {
                symbology: if token {
                    Symbology::Qr
                } else {
                    Symbology::Ean13
                },
                token: token.then(|| AppToken {
                    card: card.clone(),
                    issued_at: 1_000,
                    expires_at: 1_000_000_000_000,
                    key_id: KeyId(1),
                }),
                card,
            },
            at: OffsetDateTime::now_utc(),
            read_at,
        }
    }

    fn gate() -> Gate {
        Gate::new(
            [Duration::from_secs(60), Duration::ZERO],
            UsedTokens::default(),
        )
    }

    #[test]
    fn repeats_within_the_window_are_debounced_per_scanner() {
        let mut g = gate();
        let t = Instant::now();
        assert_eq!(
            g.admit(&decoded(0, "12345678", false, t)),
            Verdict::Accepted
        );
        assert_eq!(
            g.admit(&decoded(0, "12345678", false, t)),
            Verdict::Debounced
        );
        // Another scanner has its own window (zero here).
        assert_eq!(
            g.admit(&decoded(1, "12345678", false, t)),
            Verdict::Accepted
        );
        assert_eq!(
            g.admit(&decoded(1, "12345678", false, t)),
            Verdict::Accepted
        );
    }

    #[test]
    fn a_token_read_twice_in_one_presentation_is_debounced_not_replayed() {
        let mut g = gate();
        let t = Instant::now();
        assert_eq!(
            g.admit(&decoded(0, "4006381333931", true, t)),
            Verdict::Accepted
        );
        assert_eq!(
            g.admit(&decoded(0, "4006381333931", true, t)),
            Verdict::Debounced
        );
    }

    #[test]
    fn a_token_is_refused_as_replayed_on_any_scanner_once_used() {
        let mut g = gate();
        let t = Instant::now();
        assert_eq!(
            g.admit(&decoded(1, "4006381333931", true, t)),
            Verdict::Accepted
        );
        assert_eq!(
            g.admit(&decoded(1, "4006381333931", true, t)),
            Verdict::Replayed
        );
        assert_eq!(
            g.admit(&decoded(0, "4006381333931", true, t)),
            Verdict::Replayed
        );
        // The card itself (not as a token) is still welcome.
        assert_eq!(
            g.admit(&decoded(1, "4006381333931", false, t)),
            Verdict::Accepted
        );
    }
}
