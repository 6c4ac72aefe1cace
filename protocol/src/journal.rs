//! Journal entries: the append-only facts a terminal records and HQ applies exactly
//! once. An entry never changes after it is written; corrections are new entries.

use crate::evaluate::{PricedReturn, PricedSale};
use crate::ids::{CardId, ReceiptId, ReturnId, Seq};
use crate::money::Points;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

mod decode;

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JournalEntry {
    /// Globally unique id, chosen by the terminal.
    pub id: Uuid,
    /// The terminal's sequence number (1, 2, 3, … with no gaps).
    pub seq: Seq,
    /// When the terminal recorded it.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Version of the program rules the terminal evaluated it with.
    pub rules_version: u64,
    /// What happened.
    pub body: EntryBody,
}

/// What an entry records.
// Read by `decode` in one pass, not by serde's derived reader; written with its
// `kind` first. (A doc comment here would change the OpenAPI document.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryBody {
    /// A committed sale: points redeemed and accrued.
    Sale(SaleEntry),
    /// A return against a committed sale.
    Return(ReturnEntry),
    /// A welcome bonus granted by a standalone terminal (HQ grants its own once per card).
    Welcome(WelcomeEntry),
    /// A hold whose points HQ reserved was cancelled or timed out: HQ releases the
    /// reservation. No effect on points.
    Release(ReleaseEntry),
    /// A lease ended at the till: what it spent is final, HQ returns the rest to the
    /// card. No effect on the balance.
    LeaseClosed(LeaseClosedEntry),
}

/// A committed sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleEntry {
    /// The till's receipt number.
    pub receipt_id: ReceiptId,
    /// The card, or none for an anonymous sale.
    pub card: Option<CardId>,
    /// The priced receipt.
    pub sale: PricedSale,
    /// When the accrued points become spendable (`None`: at once).
    #[serde(with = "time::serde::rfc3339::option")]
    pub matures_at: Option<OffsetDateTime>,
    /// True when the terminal could not reach HQ when the redemption was held.
    pub offline: bool,
    /// The part of the redemption drawn from the till's lease of the card (escrow).
    /// Absent from the JSON when `None`, so entries without one keep their hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseDraw>,
}

/// Points of a sale drawn from a lease HQ granted the till.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseDraw {
    /// The lease.
    pub lease_id: Uuid,
    /// Points drawn from it (at most the sale's redeemed points).
    pub points: Points,
}

/// A return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnEntry {
    /// The till's return number.
    pub return_id: ReturnId,
    /// The sale's receipt number.
    pub receipt_id: ReceiptId,
    /// Id of the sale's journal entry.
    pub sale_entry: Uuid,
    /// The sale's card, if any.
    pub card: Option<CardId>,
    /// What the return reverses.
    pub returned: PricedReturn,
}

/// A welcome bonus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WelcomeEntry {
    /// The new card.
    pub card: CardId,
    /// The bonus.
    pub points: Points,
}

/// Why a hold with reserved points ended without a sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// The till cancelled the sale.
    Cancelled,
    /// The hold was not committed within the hold timeout.
    Expired,
}

/// A released reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseEntry {
    /// The receipt whose hold ended (the reservation's key with the terminal).
    pub receipt_id: ReceiptId,
    /// The card.
    pub card: CardId,
    /// The points HQ reserved for it.
    pub points: Points,
    /// Why the reservation was given back.
    pub reason: ReleaseReason,
}

/// A lease the till closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseClosedEntry {
    /// The lease.
    pub lease_id: Uuid,
    /// The card.
    pub card: CardId,
    /// Points the till's committed sales drew from it, in all.
    pub spent: Points,
}

/// What an entry does to its card's points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PointsEffect {
    /// Change of the balance (everything the card holds, pending included).
    pub balance: Points,
    /// Points added that are not yet spendable (they mature at `matures_at`).
    pub pending: Points,
    /// Points redeemed (taken out) by the entry.
    pub redeemed: Points,
}

impl JournalEntry {
    /// The card the entry concerns, if any.
    pub fn card(&self) -> Option<&CardId> {
        match &self.body {
            EntryBody::Sale(s) => s.card.as_ref(),
            EntryBody::Return(r) => r.card.as_ref(),
            EntryBody::Welcome(w) => Some(&w.card),
            EntryBody::Release(r) => Some(&r.card),
            EntryBody::LeaseClosed(l) => Some(&l.card),
        }
    }

    /// The entry's effect on its card (zero for anonymous sales). Sums of bounded
    /// receipt values; cannot overflow for entries priced by [`crate::evaluate`].
    pub fn effect(&self) -> PointsEffect {
        match &self.body {
            EntryBody::Sale(s) if s.card.is_some() => {
                let accrued = s.sale.accrued_points;
                PointsEffect {
                    balance: Points(accrued.get().saturating_sub(s.sale.redeemed_points.get())),
                    pending: if s.matures_at.is_some() {
                        accrued
                    } else {
                        Points::ZERO
                    },
                    redeemed: s.sale.redeemed_points,
                }
            }
            EntryBody::Return(r) if r.card.is_some() => PointsEffect {
                balance: Points(
                    r.returned
                        .restored_points
                        .get()
                        .saturating_sub(r.returned.reversed_accrual_points.get()),
                ),
                pending: Points::ZERO,
                redeemed: Points::ZERO,
            },
            EntryBody::Welcome(w) => PointsEffect {
                balance: w.points,
                pending: Points::ZERO,
                redeemed: Points::ZERO,
            },
            _ => PointsEffect::default(),
        }
    }

    /// SHA-256 of the entry's canonical JSON: two entries with the same id are the
    /// same entry only if their hashes match.
    pub fn content_hash(&self) -> [u8; 32] {
        // Serializing a struct of owned plain data cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&json).into()
    }

    /// [`Self::content_hash`] as lowercase hex.
    pub fn content_hash_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.content_hash())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::price_sale;
    use crate::money::Money;
    use crate::receipt::Line;
    use crate::rules::ProgramRules;
    use time::macros::{date, datetime};

    pub(crate) fn sample_sale(redeem: i64, card: Option<&str>) -> JournalEntry {
        let lines = [Line {
            sku: "milk".into(),
            category: "dairy".into(),
            amount_minor: Money(10_000),
            qty: 2,
        }];
        let sale = price_sale(
            &ProgramRules::default(),
            &lines,
            Points(redeem),
            None,
            date!(2026 - 11 - 24),
        )
        .unwrap();
        JournalEntry {
            id: Uuid::from_u128(42),
            seq: Seq(1),
            at: datetime!(2026-11-24 10:00:00 UTC),
            rules_version: 3,
            body: EntryBody::Sale(SaleEntry {
                receipt_id: ReceiptId::parse("R-1").unwrap(),
                card: card.map(|c| CardId::parse(c).unwrap()),
                sale,
                matures_at: None,
                offline: false,
                lease: None,
            }),
        }
    }

    #[test]
    fn sale_effect_is_accrual_minus_redemption() {
        let e = sample_sale(40, Some("4006381333931"));
        // 100.00 total, 40 points redeemed, 5 % of 60.00 = 3 points accrued.
        assert_eq!(e.effect().balance, Points(3 - 40));
        assert_eq!(e.effect().redeemed, Points(40));
        assert_eq!(sample_sale(0, None).effect(), PointsEffect::default());
    }

    #[test]
    fn entries_round_trip_through_json_with_a_stable_hash() {
        let e = sample_sale(10, Some("4006381333931"));
        let json = serde_json::to_string(&e).unwrap();
        let back: JournalEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.content_hash(), e.content_hash());
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }

    #[test]
    fn a_changed_body_changes_the_hash() {
        let a = sample_sale(10, Some("4006381333931"));
        let b = sample_sale(11, Some("4006381333931"));
        assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn a_sale_without_a_lease_draw_serializes_as_before() {
        // Entries written before leases existed must keep their content hash.
        let e = sample_sale(10, Some("4006381333931"));
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("lease"));
        let mut with = e.clone();
        if let EntryBody::Sale(s) = &mut with.body {
            s.lease = Some(LeaseDraw {
                lease_id: Uuid::from_u128(7),
                points: Points(10),
            });
        }
        assert_ne!(with.content_hash(), e.content_hash());
        let back: JournalEntry =
            serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back, with);
    }

    #[test]
    fn release_and_lease_close_entries_have_no_points_effect() {
        let card = CardId::parse("4006381333931").unwrap();
        for body in [
            EntryBody::Release(ReleaseEntry {
                receipt_id: ReceiptId::parse("R-9").unwrap(),
                card: card.clone(),
                points: Points(30),
                reason: ReleaseReason::Expired,
            }),
            EntryBody::LeaseClosed(LeaseClosedEntry {
                lease_id: Uuid::from_u128(3),
                card: card.clone(),
                spent: Points(12),
            }),
        ] {
            let e = JournalEntry {
                body,
                ..sample_sale(0, None)
            };
            assert_eq!(e.effect(), PointsEffect::default());
            assert_eq!(e.card(), Some(&card));
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<JournalEntry>(&json).unwrap(), e);
        }
    }

    #[test]
    fn entries_with_unknown_fields_are_refused() {
        let e = sample_sale(0, None);
        let mut v = serde_json::to_value(&e).unwrap();
        v["extra"] = serde_json::json!(1);
        assert!(serde_json::from_value::<JournalEntry>(v).is_err());
    }
}
