//! How this till decides a redemption: standalone (no HQ configured: the journal is
//! the whole truth), online (HQ's live balance of the card, asked just now), or
//! offline (HQ did not answer: the cached balance within the caps of
//! [`crate::policy`]). Accrual needs none of this.
//!
//! The live balance is asked with a short timeout (`[sync] live_balance_timeout_ms`);
//! every answer or failure updates [`HqLink`], which `/v1/health` reports.

use crate::hq_client::HqClient;
use crate::hq_link::HqLink;
use crate::journal::{JournalError, Tx};
use protocol::wire::CardBalance;
use protocol::{CardId, Points, Seq};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// How a redemption is being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No HQ configured: the local journal is the whole truth.
    Standalone,
    /// HQ answered with the card's live balance just now.
    Online,
    /// HQ did not answer: cached balance and the offline caps.
    Offline,
}

/// A balance HQ returned just now, with the terminal's `acked_through` read with it.
#[derive(Debug, Clone)]
pub struct LiveBalance {
    /// HQ's figures.
    pub balance: CardBalance,
    /// This terminal's entries HQ's figures include.
    pub acked_through: Seq,
}

impl LiveBalance {
    /// Puts HQ's figures in the card cache and records that HQ answered, in the
    /// caller's transaction (before the card is read in it).
    pub fn record(&self, tx: &Tx<'_>, now: OffsetDateTime) -> Result<(), JournalError> {
        tx.apply_hq_balance(&self.balance, self.acked_through)?;
        tx.record_contact(now)
    }
}

/// The till's side of deciding redemptions. Cheap to clone.
#[derive(Clone)]
pub struct Redemption {
    hq: Option<HqClient>,
    link: Arc<HqLink>,
    live_timeout: Duration,
}

impl Redemption {
    /// Redemptions decided with `hq` (`None`: a standalone store), reporting HQ's
    /// reachability to `link`.
    pub fn new(hq: Option<HqClient>, link: Arc<HqLink>, live_timeout: Duration) -> Self {
        Self {
            hq,
            link,
            live_timeout,
        }
    }

    /// True in a standalone store (no `[sync]`).
    pub fn standalone(&self) -> bool {
        self.hq.is_none()
    }

    /// True when HQ is configured but did not answer the last attempt, so the offline
    /// caps would apply to a redemption now.
    pub fn offline_now(&self) -> bool {
        !self.standalone() && !self.link.online()
    }

    /// Decides how a redemption of `redeem` points on `card` is checked, asking HQ for
    /// the card's live balance when it matters.
    pub async fn mode(&self, card: Option<&CardId>, redeem: Points) -> (Mode, Option<LiveBalance>) {
        if self.standalone() {
            return (Mode::Standalone, None);
        }
        let Some(card) = card.filter(|_| redeem > Points::ZERO) else {
            return (Mode::Online, None);
        };
        match self.live_balance(card).await {
            Some(live) => (Mode::Online, Some(live)),
            None => (Mode::Offline, None),
        }
    }

    /// HQ's live balance of `card`, or `None` when there is no HQ or it does not answer
    /// in time.
    pub async fn live_balance(&self, card: &CardId) -> Option<LiveBalance> {
        let hq = self.hq.as_ref()?;
        match hq.live_balance(card, self.live_timeout).await {
            Ok(resp) if resp.balance.card == *card => {
                self.link.mark_online();
                Some(LiveBalance {
                    balance: resp.balance,
                    acked_through: resp.acked_through,
                })
            }
            Ok(_) => {
                tracing::warn!(card = %card.masked(), "HQ answered a live balance for another card; ignored");
                None
            }
            Err(e) => {
                tracing::info!(card = %card.masked(), error = %e, "live balance unavailable, using the cache");
                self.link.mark_offline(e.to_string());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::agent::SyncSection;

    fn card() -> CardId {
        CardId::parse("4006381333931").unwrap()
    }

    /// A client of an HQ that is not there: a loopback port nobody listens on.
    fn unreachable_hq(dir: &std::path::Path) -> HqClient {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let token_file = dir.join("terminal.token");
        std::fs::write(&token_file, "token").unwrap();
        let section = SyncSection {
            url: format!("http://127.0.0.1:{port}"),
            token_file,
            ca_file: None,
            interval_secs: 5,
            batch_size: 10,
            max_backoff_secs: 1,
            live_balance_timeout_ms: 300,
            request_timeout_secs: 1,
        };
        HqClient::new(
            &section,
            "store-1".parse().unwrap(),
            "till-1".parse().unwrap(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_standalone_store_decides_alone() {
        let r = Redemption::new(None, Arc::default(), Duration::from_millis(300));
        assert!(r.standalone());
        assert!(!r.offline_now());
        let (mode, live) = r.mode(Some(&card()), Points(10)).await;
        assert_eq!(mode, Mode::Standalone);
        assert!(live.is_none());
    }

    #[tokio::test]
    async fn without_an_answer_from_hq_a_redemption_is_decided_offline() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let link = Arc::new(HqLink::default());
        link.mark_online();
        let r = Redemption::new(
            Some(unreachable_hq(dir.path())),
            link.clone(),
            Duration::from_millis(300),
        );
        // Nothing to redeem: HQ is not asked.
        assert_eq!(r.mode(Some(&card()), Points::ZERO).await.0, Mode::Online);
        assert!(link.online());
        let (mode, live) = r.mode(Some(&card()), Points(10)).await;
        assert_eq!(mode, Mode::Offline);
        assert!(live.is_none());
        assert!(!link.online());
        assert!(r.offline_now());
    }
}
