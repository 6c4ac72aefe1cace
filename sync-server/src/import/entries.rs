//! Imported rows as journal entries (pure): each past purchase becomes the sale entry a
//! till would have written, and each opening balance a sale entry with no lines that
//! accrues the balance. They go through the same push flow as any till's entries, so
//! the ledger, `verify`, the aggregates and the reports see them like any other.
//!
//! An entry's id is derived from what identifies the row (the store and receipt id of
//! a purchase; the card of an opening balance), so importing a row twice finds the
//! entry HQ already holds and skips it: the import is idempotent.

use super::rows::{BalanceRow, PurchaseRow};
use protocol::evaluate::{PricedLine, PricedSale};
use protocol::journal::{EntryBody, JournalEntry, SaleEntry};
use protocol::{CardId, Money, Points, ReceiptId, Seq, StoreId};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// The terminal every import of a store writes under (its token is never shown).
pub const IMPORT_TERMINAL: &str = "import";
/// SKU and category of an imported purchase's single line.
pub const IMPORT_LINE: &str = "import";
/// Receipt id of an opening-balance entry.
pub const OPENING_RECEIPT: &str = "opening-balance";

/// An entry to import, before its store's import terminal numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The store whose import terminal writes it.
    pub store: StoreId,
    /// The entry, with `seq` 0 until numbered.
    pub entry: JournalEntry,
}

/// The entry of a past purchase: one line of the whole amount, paid in money, with
/// the points the old system accrued.
pub fn purchase(row: &PurchaseRow, default_store: &StoreId, rules_version: u64) -> Pending {
    let store = row.store.clone().unwrap_or_else(|| default_store.clone());
    let id = derived_id(&["purchase", store.as_str(), row.receipt_id.as_str()]);
    let points = if row.card.is_some() {
        row.points
    } else {
        Points::ZERO
    };
    let line = PricedLine {
        sku: IMPORT_LINE.to_owned(),
        category: IMPORT_LINE.to_owned(),
        amount_minor: row.amount,
        qty: 1,
        discount_minor: Money::ZERO,
        paid_minor: row.amount,
        redeemed_points: Points::ZERO,
        accrued_points: points,
    };
    let sale = sale_entry(
        row.receipt_id.clone(),
        row.card.clone(),
        vec![line],
        row.amount,
        points,
    );
    Pending {
        store,
        entry: entry(id, row.at, rules_version, sale),
    }
}

/// The entry of an opening balance: a sale with no lines and no money that accrues
/// the balance, dated as of the balance.
pub fn opening_balance(
    row: &BalanceRow,
    default_store: &StoreId,
    now: OffsetDateTime,
    rules_version: u64,
) -> Pending {
    let store = row.store.clone().unwrap_or_else(|| default_store.clone());
    let id = derived_id(&["opening-balance", row.card.as_str()]);
    let receipt = ReceiptId::parse(OPENING_RECEIPT).expect("a valid constant receipt id");
    let sale = sale_entry(
        receipt,
        Some(row.card.clone()),
        Vec::new(),
        Money::ZERO,
        row.balance,
    );
    Pending {
        store,
        entry: entry(id, row.at.unwrap_or(now), rules_version, sale),
    }
}

fn sale_entry(
    receipt_id: ReceiptId,
    card: Option<CardId>,
    lines: Vec<PricedLine>,
    paid: Money,
    accrued: Points,
) -> EntryBody {
    EntryBody::Sale(SaleEntry {
        receipt_id,
        card,
        sale: PricedSale {
            lines,
            total_minor: paid,
            discount_minor: Money::ZERO,
            paid_minor: paid,
            redeemed_points: Points::ZERO,
            accrued_points: accrued,
        },
        matures_at: None,
        offline: false,
        lease: None,
    })
}

fn entry(id: Uuid, at: OffsetDateTime, rules_version: u64, body: EntryBody) -> JournalEntry {
    JournalEntry {
        id,
        seq: Seq(0),
        at,
        rules_version,
        body,
    }
}

/// A UUID from the parts that identify a row (SHA-256, first 16 bytes, version 8).
fn derived_id(parts: &[&str]) -> Uuid {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        // The separator keeps ("a", "bc") and ("ab", "c") apart.
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn row(receipt: &str, store: Option<&str>) -> PurchaseRow {
        PurchaseRow {
            line: 2,
            card: Some(CardId::parse("4006381333931").expect("card")),
            at: datetime!(1997-01-01 0:00 UTC),
            receipt_id: ReceiptId::parse(receipt).expect("receipt"),
            amount: Money(2933),
            store: store.map(|s| StoreId::parse(s).expect("store")),
            points: Points(29),
        }
    }

    fn store(s: &str) -> StoreId {
        StoreId::parse(s).expect("store")
    }

    #[test]
    fn a_purchase_is_a_sale_paid_in_money_with_the_old_systems_points() {
        let p = purchase(&row("R-1", None), &store("import"), 3);
        assert_eq!(p.store, store("import"));
        assert_eq!(p.entry.rules_version, 3);
        let EntryBody::Sale(s) = &p.entry.body else {
            panic!("a sale entry")
        };
        assert_eq!(s.sale.total_minor, Money(2933));
        assert_eq!(s.sale.paid_minor, Money(2933));
        assert_eq!(s.sale.accrued_points, Points(29));
        assert_eq!(s.sale.lines.len(), 1);
        assert_eq!(p.entry.effect().balance, Points(29));
    }

    #[test]
    fn the_id_depends_on_store_and_receipt_only() {
        let a = purchase(&row("R-1", None), &store("import"), 1);
        let mut other_amount = row("R-1", None);
        other_amount.amount = Money(1);
        assert_eq!(
            a.entry.id,
            purchase(&other_amount, &store("import"), 2).entry.id
        );
        assert_ne!(
            a.entry.id,
            purchase(&row("R-2", None), &store("import"), 1).entry.id
        );
        assert_ne!(
            a.entry.id,
            purchase(&row("R-1", Some("s2")), &store("import"), 1)
                .entry
                .id
        );
        assert_eq!(
            a.entry.id,
            purchase(&row("R-1", Some("import")), &store("x"), 1)
                .entry
                .id
        );
    }

    #[test]
    fn an_anonymous_purchase_accrues_nothing() {
        let mut r = row("R-1", None);
        r.card = None;
        let p = purchase(&r, &store("import"), 1);
        assert_eq!(p.entry.effect(), Default::default());
        assert_eq!(p.entry.card(), None);
    }

    #[test]
    fn an_opening_balance_adds_exactly_the_balance_and_no_money() {
        let b = BalanceRow {
            line: 2,
            card: CardId::parse("123456").expect("card"),
            balance: Points(120),
            at: None,
            store: None,
        };
        let now = datetime!(2026-01-01 0:00 UTC);
        let p = opening_balance(&b, &store("import"), now, 1);
        assert_eq!(p.entry.at, now);
        assert_eq!(p.entry.effect().balance, Points(120));
        let EntryBody::Sale(s) = &p.entry.body else {
            panic!("a sale entry")
        };
        assert!(s.sale.lines.is_empty());
        assert_eq!(s.sale.paid_minor, Money::ZERO);
        assert_eq!(
            p.entry.id,
            opening_balance(&b, &store("other"), now, 2).entry.id,
            "one opening balance per card"
        );
    }
}
