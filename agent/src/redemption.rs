//! How this till decides a redemption: standalone (no HQ configured: the journal is
//! the whole truth), online (HQ authorises it: the points are drawn from this till's
//! own lease of the card first, the rest reserved at HQ under the card's lock), or
//! offline (HQ did not answer: the rules of `[offline] redemption` — escrow draws on
//! this till's lease only, caps uses the cached balance within the caps of
//! [`crate::policy`], none refuses). Accrual needs none of this.
//!
//! HQ is asked with a short timeout (`[sync] live_balance_timeout_ms`); every answer
//! or failure updates [`HqLink`], which `/v1/health` reports. [`Funding`] is decided
//! before the hold's transaction (it needs the network); [`settle`] then decides,
//! inside it and from the lease as the journal holds it, what the hold draws.

use crate::hq_client::{HqClient, HqError, RefusalCode};
use crate::hq_link::HqLink;
use crate::journal::leases::OpenLease;
use crate::journal::{JournalError, Tx};
use crate::policy::{self, Refusal};
use crate::sales::SaleError;
use config::agent::OfflineRedemption;
use protocol::escrow::{LeaseRefusal, TillLease, offline_draw, online_split};
use protocol::journal::LeaseDraw;
use protocol::wire::{CardBalance, PROTOCOL_VERSION, ReserveRequest, SyncErrorCode};
use protocol::{CardId, Points, ReceiptId, Seq};
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

/// HQ's answer to a reservation as the till's refusal, or `None` when HQ did not
/// answer (or refused for a reason of its own, such as a revoked token: the till then
/// falls back to the offline rules). `draw` is what this till's lease covers, added
/// to what HQ says is spendable.
fn refusal(
    e: &HqError,
    card: &CardId,
    receipt: &ReceiptId,
    asked: Points,
    draw: Points,
) -> Option<SaleError> {
    let HqError::Refused {
        code: RefusalCode::Known(code),
        spendable,
        ..
    } = e
    else {
        return None;
    };
    match code {
        SyncErrorCode::InsufficientPoints => Some(SaleError::InsufficientPoints {
            card: card.masked().to_string(),
            available: Points(
                spendable
                    .unwrap_or(Points::ZERO)
                    .get()
                    .saturating_add(draw.get()),
            ),
            requested: asked,
        }),
        SyncErrorCode::CardBlocked => Some(SaleError::CardBlocked {
            card: card.masked().to_string(),
        }),
        SyncErrorCode::ReservationSettled => Some(SaleError::ReservationSettled(receipt.clone())),
        _ => None,
    }
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
    /// caller's transaction (before the card is read in it). Cache only: a lookup
    /// commits it with `Journal::refresh`, a hold with its own durable commit.
    pub fn record(&self, tx: &Tx<'_>, now: OffsetDateTime) -> Result<(), JournalError> {
        tx.apply_hq_balance(&self.balance, self.acked_through)?;
        tx.record_contact(now)
    }
}

/// How a hold's points are paid for, decided before its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Funding {
    /// Nothing to redeem, or a standalone store: the journal alone decides.
    Local,
    /// HQ answered: `reserved` points are held at HQ for the receipt, `draw` come
    /// from this till's lease of the card.
    Online {
        /// Points HQ reserved.
        reserved: Points,
        /// Points drawn from this till's lease.
        draw: Points,
    },
    /// HQ did not answer: the offline rules of this mode.
    Offline(OfflineRedemption),
}

impl Funding {
    /// The mode the rest of the sale path sees.
    pub fn mode(self, standalone: bool) -> Mode {
        match self {
            Self::Local if standalone => Mode::Standalone,
            Self::Local | Self::Online { .. } => Mode::Online,
            Self::Offline(_) => Mode::Offline,
        }
    }

    /// True when the offline caps decide the redemption.
    pub fn capped(self) -> bool {
        self == Self::Offline(OfflineRedemption::Caps)
    }
}

/// What a hold's points are drawn from, as decided in its transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Points HQ reserved for the receipt.
    pub reserved: Points,
    /// Points drawn from this till's lease.
    pub lease: Option<LeaseDraw>,
}

/// Decides what a hold of `asked` points held until `hold_expires_at` (unix, till
/// clock) draws, given how it is funded and the card's `lease` at this till as the
/// journal holds it now (so two holds never draw the same lease points). Pure.
pub fn settle(
    funding: Funding,
    lease: Option<&OpenLease>,
    asked: Points,
    hold_expires_at: i64,
) -> Result<Settled, SettleRefusal> {
    let till_lease = lease.map(|l| &l.lease);
    let draw = |points: Points| -> Result<Option<LeaseDraw>, LeaseRefusal> {
        if points <= Points::ZERO {
            return Ok(None);
        }
        let drawn = offline_draw(till_lease, points, hold_expires_at)?;
        Ok(lease.map(|l| LeaseDraw {
            lease_id: l.lease_id,
            points: drawn,
        }))
    };
    match funding {
        Funding::Local | Funding::Offline(OfflineRedemption::Caps) => Ok(Settled::default()),
        Funding::Online { reserved, draw: d } => Ok(Settled {
            reserved,
            // Another hold drew on the lease since the split was made.
            lease: draw(d).map_err(|_| SettleRefusal::LeaseTaken)?,
        }),
        Funding::Offline(OfflineRedemption::Escrow) => Ok(Settled {
            reserved: Points::ZERO,
            lease: draw(asked).map_err(|r| SettleRefusal::Offline(r.into()))?,
        }),
        Funding::Offline(OfflineRedemption::None) => {
            if asked > Points::ZERO {
                Err(SettleRefusal::Offline(policy::redemption_off()))
            } else {
                Ok(Settled::default())
            }
        }
    }
}

/// Why [`settle`] refused a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleRefusal {
    /// An offline rule refused it.
    Offline(Refusal),
    /// Online: the lease points the split counted on were drawn by another hold.
    LeaseTaken,
}

/// The till's side of deciding redemptions. Cheap to clone.
#[derive(Clone)]
pub struct Redemption {
    hq: Option<HqClient>,
    link: Arc<HqLink>,
    live_timeout: Duration,
    offline: OfflineRedemption,
}

/// A redemption HQ authorised (or could not be asked about).
#[derive(Debug, Clone)]
pub struct Authorised {
    /// How the hold is paid for.
    pub funding: Funding,
    /// The card's figures HQ answered with, when it answered.
    pub live: Option<LiveBalance>,
}

impl Redemption {
    /// Redemptions decided with `hq` (`None`: a standalone store), reporting HQ's
    /// reachability to `link`; offline, by the rules of `offline`.
    pub fn new(
        hq: Option<HqClient>,
        link: Arc<HqLink>,
        live_timeout: Duration,
        offline: OfflineRedemption,
    ) -> Self {
        Self {
            hq,
            link,
            live_timeout,
            offline,
        }
    }

    /// Asks HQ to authorise a redemption of `asked` points of `card` for `receipt`,
    /// held until `hold_expires_at`: what this till's `lease` of the card covers is
    /// drawn from it, the rest reserved at HQ. HQ's refusals are the till's; no
    /// answer in time means the offline rules.
    pub async fn authorise(
        &self,
        card: &CardId,
        receipt: &ReceiptId,
        asked: Points,
        lease: Option<&TillLease>,
        hold_expires_at: OffsetDateTime,
    ) -> Result<Authorised, SaleError> {
        let Some(hq) = self.hq.as_ref().filter(|_| self.asks_hq(asked)) else {
            return Ok(Authorised {
                funding: Funding::Local,
                live: None,
            });
        };
        let split = online_split(lease, asked, hold_expires_at.unix_timestamp())
            .map_err(|e| SaleError::Journal(JournalError::data(e)))?;
        if split.reserve == Points::ZERO {
            return Ok(Authorised {
                funding: Funding::Online {
                    reserved: Points::ZERO,
                    draw: split.draw,
                },
                live: None,
            });
        }
        let req = ReserveRequest {
            protocol: PROTOCOL_VERSION,
            card: card.clone(),
            receipt_id: receipt.clone(),
            points: split.reserve,
            hold_expires_at,
        };
        match hq.reserve(&req, self.live_timeout).await {
            Ok(resp) => {
                self.link.mark_online();
                Ok(Authorised {
                    funding: Funding::Online {
                        reserved: split.reserve,
                        draw: split.draw,
                    },
                    live: (resp.balance.card == *card).then_some(LiveBalance {
                        balance: resp.balance,
                        acked_through: resp.acked_through,
                    }),
                })
            }
            Err(e) => match refusal(&e, card, receipt, asked, split.draw) {
                Some(refused) => {
                    self.link.mark_online();
                    Err(refused)
                }
                None => {
                    tracing::info!(card = %card.masked(), error = %e, "HQ cannot authorise the redemption now; offline rules apply");
                    self.link.mark_offline(e.to_string());
                    Ok(Authorised {
                        funding: Funding::Offline(self.offline),
                        live: None,
                    })
                }
            },
        }
    }

    /// The `[offline] redemption` rules.
    pub fn offline_rules(&self) -> OfflineRedemption {
        self.offline
    }

    /// True when [`Self::authorise`] asks HQ about a redemption of `asked` points
    /// (there is an HQ and points are redeemed); otherwise it decides locally without
    /// reading anything.
    pub fn asks_hq(&self, asked: Points) -> bool {
        self.hq.is_some() && asked > Points::ZERO
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

    fn receipt() -> ReceiptId {
        ReceiptId::parse("R-1").unwrap()
    }

    fn open_lease(points: i64, committed: i64, held: i64, expires_at: i64) -> OpenLease {
        OpenLease {
            lease_id: uuid::Uuid::from_u128(7),
            card: card(),
            lease: TillLease {
                points: Points(points),
                drawn_committed: Points(committed),
                drawn_held: Points(held),
                expires_at,
            },
            open_holds: 0,
        }
    }

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    #[tokio::test]
    async fn a_standalone_store_decides_alone() {
        let r = Redemption::new(
            None,
            Arc::default(),
            Duration::from_millis(300),
            OfflineRedemption::Escrow,
        );
        assert!(r.standalone());
        assert!(!r.offline_now());
        let a = r
            .authorise(&card(), &receipt(), Points(10), None, at(1_000))
            .await
            .unwrap();
        assert_eq!(a.funding, Funding::Local);
        assert_eq!(a.funding.mode(true), Mode::Standalone);
        assert!(a.live.is_none());
    }

    #[tokio::test]
    async fn without_an_answer_from_hq_a_redemption_follows_the_offline_mode() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let link = Arc::new(HqLink::default());
        link.mark_online();
        let r = Redemption::new(
            Some(unreachable_hq(dir.path())),
            link.clone(),
            Duration::from_millis(300),
            OfflineRedemption::Caps,
        );
        // Nothing to redeem: HQ is not asked.
        let a = r
            .authorise(&card(), &receipt(), Points::ZERO, None, at(1_000))
            .await
            .unwrap();
        assert_eq!(a.funding.mode(false), Mode::Online);
        assert!(link.online());
        // All of it from this till's lease: HQ is not asked either.
        let lease = open_lease(50, 0, 0, 2_000).lease;
        let a = r
            .authorise(&card(), &receipt(), Points(30), Some(&lease), at(1_000))
            .await
            .unwrap();
        assert_eq!(
            a.funding,
            Funding::Online {
                reserved: Points::ZERO,
                draw: Points(30)
            }
        );
        assert!(link.online());
        let a = r
            .authorise(&card(), &receipt(), Points(80), Some(&lease), at(1_000))
            .await
            .unwrap();
        assert_eq!(a.funding, Funding::Offline(OfflineRedemption::Caps));
        assert!(a.funding.capped());
        assert_eq!(a.funding.mode(false), Mode::Offline);
        assert!(a.live.is_none());
        assert!(!link.online());
        assert!(r.offline_now());
    }

    #[test]
    fn hq_refusals_become_the_tills_and_other_failures_fall_back() {
        let refused = |code: SyncErrorCode, spendable: Option<i64>| HqError::Refused {
            status: 409,
            code: RefusalCode::Known(code),
            message: "no".into(),
            acked_through: None,
            spendable: spendable.map(Points),
        };
        let e = refusal(
            &refused(SyncErrorCode::InsufficientPoints, Some(40)),
            &card(),
            &receipt(),
            Points(100),
            Points(20),
        );
        assert!(matches!(
            e,
            Some(SaleError::InsufficientPoints { available, requested, .. })
                if available == Points(60) && requested == Points(100)
        ));
        assert!(matches!(
            refusal(
                &refused(SyncErrorCode::CardBlocked, None),
                &card(),
                &receipt(),
                Points(1),
                Points::ZERO
            ),
            Some(SaleError::CardBlocked { .. })
        ));
        assert!(matches!(
            refusal(
                &refused(SyncErrorCode::ReservationSettled, None),
                &card(),
                &receipt(),
                Points(1),
                Points::ZERO
            ),
            Some(SaleError::ReservationSettled(_))
        ));
        for e in [
            refused(SyncErrorCode::Unauthorized, None),
            HqError::Unreachable("timeout".into()),
        ] {
            assert!(refusal(&e, &card(), &receipt(), Points(1), Points::ZERO).is_none());
        }
    }

    #[test]
    fn escrow_offline_draws_only_on_the_lease_and_none_refuses() {
        let escrow = Funding::Offline(OfflineRedemption::Escrow);
        let lease = open_lease(100, 30, 20, 2_000);
        let s = settle(escrow, Some(&lease), Points(50), 1_000).unwrap();
        assert_eq!(s.reserved, Points::ZERO);
        assert_eq!(
            s.lease,
            Some(LeaseDraw {
                lease_id: lease.lease_id,
                points: Points(50)
            })
        );
        let code = |r: Result<Settled, SettleRefusal>| match r {
            Err(SettleRefusal::Offline(r)) => r.limit.as_str(),
            other => panic!("not an offline refusal: {other:?}"),
        };
        assert_eq!(
            code(settle(escrow, Some(&lease), Points(51), 1_000)),
            "offline_allowance_short"
        );
        assert_eq!(
            code(settle(escrow, Some(&lease), Points(1), 2_001)),
            "offline_allowance_expiring"
        );
        assert_eq!(
            code(settle(escrow, None, Points(1), 1_000)),
            "offline_no_allowance"
        );
        let none = Funding::Offline(OfflineRedemption::None);
        assert_eq!(
            code(settle(none, Some(&lease), Points(1), 1_000)),
            "offline_redemption_off"
        );
        // Accrual only: nothing to refuse.
        assert_eq!(
            settle(none, None, Points::ZERO, 1_000),
            Ok(Settled::default())
        );
        // Caps mode draws nothing here: the caps decide elsewhere.
        let caps = Funding::Offline(OfflineRedemption::Caps);
        assert_eq!(
            settle(caps, Some(&lease), Points(500), 1_000),
            Ok(Settled::default())
        );
    }

    #[test]
    fn online_the_hold_keeps_its_reservation_and_draws_the_split_from_the_lease() {
        let online = Funding::Online {
            reserved: Points(30),
            draw: Points(50),
        };
        let lease = open_lease(50, 0, 0, 2_000);
        let s = settle(online, Some(&lease), Points(80), 1_000).unwrap();
        assert_eq!(s.reserved, Points(30));
        assert_eq!(s.lease.map(|l| l.points), Some(Points(50)));
        // Another hold drew on the lease in between.
        let drawn = open_lease(50, 0, 10, 2_000);
        assert_eq!(
            settle(online, Some(&drawn), Points(80), 1_000),
            Err(SettleRefusal::LeaseTaken)
        );
        let all_hq = Funding::Online {
            reserved: Points(80),
            draw: Points::ZERO,
        };
        assert_eq!(
            settle(all_hq, None, Points(80), 1_000).map(|s| (s.reserved, s.lease)),
            Ok((Points(80), None))
        );
    }
}
