//! The `leases` table: points of a card HQ moved into this till's escrow, which only
//! this till may spend (offline too) until the lease expires. What a lease has paid
//! for is read from the sales that drew on it (`sales.lease_id`, `lease_points`), so
//! it is never stored twice; a lease ends with the `LeaseClosed` entry written when it
//! is closed (`closed_seq`). Also the lease sync epoch and the cards seen recently.

use super::{JournalError, Tx};
use protocol::escrow::TillLease;
use protocol::wire::Lease;
use protocol::{CardId, Points, Seq};
use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

/// An open lease of this till, with what its sales drew on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLease {
    /// The lease.
    pub lease_id: Uuid,
    /// The card.
    pub card: CardId,
    /// Points, expiry and draws.
    pub lease: TillLease,
    /// Holds still open on it (a lease is not closed under an open hold).
    pub open_holds: u32,
}

const OPEN_LEASES: &str = "
    SELECT l.lease_id, l.card, l.points, l.expires_at_unix,
           COALESCE(SUM(CASE WHEN s.state IN ('committed', 'returned') THEN s.lease_points END), 0),
           COALESCE(SUM(CASE WHEN s.state = 'held' THEN s.lease_points END), 0),
           COUNT(CASE WHEN s.state = 'held' THEN 1 END)
    FROM leases l LEFT JOIN sales s ON s.lease_id = l.lease_id
    WHERE l.closed_seq IS NULL";

fn open_lease_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, OpenLeaseFigures)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        OpenLeaseFigures {
            points: r.get(2)?,
            expires_at: r.get(3)?,
            committed: r.get(4)?,
            held: r.get(5)?,
            open_holds: r.get(6)?,
        },
    ))
}

struct OpenLeaseFigures {
    points: i64,
    expires_at: i64,
    committed: i64,
    held: i64,
    open_holds: u32,
}

fn open_lease(
    (id, card, f): (String, String, OpenLeaseFigures),
) -> Result<OpenLease, JournalError> {
    Ok(OpenLease {
        lease_id: Uuid::parse_str(&id).map_err(JournalError::data)?,
        card: CardId::parse(&card).map_err(JournalError::data)?,
        lease: TillLease {
            points: Points(f.points),
            drawn_committed: Points(f.committed),
            drawn_held: Points(f.held),
            expires_at: f.expires_at,
        },
        open_holds: f.open_holds,
    })
}

impl Tx<'_> {
    /// Every open lease of this till.
    pub fn open_leases(&self) -> Result<Vec<OpenLease>, JournalError> {
        let mut stmt = self.inner.prepare_cached(&format!(
            "{OPEN_LEASES} GROUP BY l.lease_id ORDER BY l.lease_id"
        ))?;
        let rows = stmt.query_map([], open_lease_row)?;
        rows.map(|r| open_lease(r?)).collect()
    }

    /// The open lease of `card` that lives longest, if this till holds one.
    pub fn open_lease_of(&self, card: &CardId) -> Result<Option<OpenLease>, JournalError> {
        let row = self
            .inner
            .prepare_cached(&format!(
                "{OPEN_LEASES} AND l.card = ?1 GROUP BY l.lease_id ORDER BY l.expires_at_unix DESC LIMIT 1"
            ))?
            .query_row([card.as_str()], open_lease_row)
            .optional()?;
        row.map(open_lease).transpose()
    }

    /// Stores the leases HQ lists for this till: new ones are added, open ones take
    /// HQ's points and expiry. A lease this till closed stays closed.
    pub fn store_leases(&self, leases: &[Lease]) -> Result<(), JournalError> {
        let mut stmt = self.inner.prepare_cached(
            "INSERT INTO leases (lease_id, card, points, expires_at_unix) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (lease_id) DO UPDATE SET points = excluded.points, expires_at_unix = excluded.expires_at_unix
             WHERE leases.closed_seq IS NULL AND leases.card = excluded.card",
        )?;
        for lease in leases {
            stmt.execute(params![
                lease.lease_id.to_string(),
                lease.card.as_str(),
                lease.points.get().max(0),
                lease.expires_at.unix_timestamp(),
            ])?;
        }
        Ok(())
    }

    /// Marks a lease closed by the `LeaseClosed` entry at `seq`.
    pub fn close_lease(&self, lease_id: Uuid, seq: Seq) -> Result<(), JournalError> {
        self.inner
            .prepare_cached(
                "UPDATE leases SET closed_seq = ?2 WHERE lease_id = ?1 AND closed_seq IS NULL",
            )?
            .execute(params![lease_id.to_string(), seq.get()])?;
        Ok(())
    }

    /// The next lease sync epoch, recorded before it is sent so that no two requests
    /// (even across a crash) carry the same one.
    pub fn next_lease_epoch(&self) -> Result<u64, JournalError> {
        Ok(self.inner.query_row(
            "UPDATE sync_state SET lease_epoch = lease_epoch + 1 WHERE id = 1 RETURNING lease_epoch",
            [],
            |r| r.get(0),
        )?)
    }

    /// Cards of sales at this till since `since_unix`, most recent first, at most
    /// `limit`: the sales committed since then and the holds still open. Run in a
    /// write transaction: the sales committed since the last call are folded into
    /// `recent_cards` first and cards last seen before `since_unix` leave it, so a
    /// hold writes nothing for this question (journal migration 9).
    pub fn recent_cards(&self, since_unix: i64, limit: u32) -> Result<Vec<CardId>, JournalError> {
        self.fold_recent_cards()?;
        self.inner
            .prepare_cached("DELETE FROM recent_cards WHERE last_seen_unix < ?1")?
            .execute([since_unix])?;
        let mut stmt = self.inner.prepare_cached(concat!(
            "SELECT card FROM (
                 SELECT card, last_seen_unix AS seen FROM recent_cards WHERE last_seen_unix >= ?1
                 UNION ALL
                 SELECT card, held_at_unix FROM sales WHERE ",
            maybe_held!(),
            " AND state = 'held' AND card IS NOT NULL AND held_at_unix >= ?1
             )
             GROUP BY card ORDER BY MAX(seen) DESC, card LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![since_unix, limit], |r| r.get::<_, String>(0))?;
        rows.map(|c| CardId::parse(&c?).map_err(JournalError::data))
            .collect()
    }

    /// Folds the cards of the sale entries written since the last fold into
    /// `recent_cards` (each keeps its latest instant) and moves the fold's position to
    /// the last entry. Entries are read by their key from that position, so a fold
    /// costs what was sold since, not the journal's history.
    fn fold_recent_cards(&self) -> Result<(), JournalError> {
        self.inner
            .prepare_cached(
                "INSERT INTO recent_cards (card, last_seen_unix)
                 SELECT card, MAX(at_unix) FROM entries
                 WHERE seq > (SELECT recent_cards_through_seq FROM sync_state WHERE id = 1)
                   AND kind = 'sale' AND card IS NOT NULL
                 GROUP BY card
                 ON CONFLICT (card) DO UPDATE
                 SET last_seen_unix = MAX(last_seen_unix, excluded.last_seen_unix)",
            )?
            .execute([])?;
        self.inner
            .prepare_cached(
                "UPDATE sync_state SET recent_cards_through_seq = (SELECT COALESCE(MAX(seq), 0) FROM entries)
                 WHERE id = 1",
            )?
            .execute([])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalFile;
    use crate::journal::sales::NewHold;
    use crate::sales::fixtures::{CARD, sale_record};
    use crate::sales::{CancelReason, SaleState};
    use protocol::ReceiptId;
    use protocol::journal::{EntryBody, LeaseDraw, WelcomeEntry};
    use time::OffsetDateTime;
    use time::macros::datetime;

    use crate::journal::test_journal as journal;

    fn lease(points: i64, expires_at: OffsetDateTime) -> Lease {
        Lease {
            lease_id: Uuid::from_u128(1),
            card: CardId::parse(CARD).unwrap(),
            points: Points(points),
            expires_at,
        }
    }

    fn hold(file: &mut JournalFile, receipt: &str, draw: i64) -> ReceiptId {
        let receipt = ReceiptId::parse(receipt).unwrap();
        let sale = sale_record(SaleState::Held, true);
        file.write(|tx| {
            tx.insert_hold(&NewHold {
                receipt_id: &receipt,
                request_hash: "h",
                card: sale.card.as_ref(),
                redeem_points: Points(draw),
                offline: true,
                reserved_points: Points::ZERO,
                lease: Some(LeaseDraw {
                    lease_id: Uuid::from_u128(1),
                    points: Points(draw),
                }),
                held_at: datetime!(2026-11-24 10:00 UTC),
                rules_version: 1,
                matures_at: None,
                priced: &sale.priced,
                answer: "{}",
            })
        })
        .unwrap();
        receipt
    }

    #[test]
    fn a_lease_counts_what_held_and_committed_sales_drew_and_closes_once() {
        let (_dir, mut file) = journal();
        let card = CardId::parse(CARD).unwrap();
        let expires = datetime!(2026-11-25 10:00 UTC);
        file.write(|tx| tx.store_leases(&[lease(100, expires)]))
            .unwrap();
        let committed = hold(&mut file, "R-1", 30);
        hold(&mut file, "R-2", 20);
        let cancelled = hold(&mut file, "R-3", 40);
        let at = datetime!(2026-11-24 10:01 UTC);
        file.write(|tx| {
            let entry = tx.append(
                EntryBody::Welcome(WelcomeEntry {
                    card: card.clone(),
                    points: Points(1),
                }),
                at,
                0,
            )?;
            tx.capture_hold(&committed, entry.seq, "{}")?;
            tx.cancel_hold(&cancelled, CancelReason::Till)
        })
        .unwrap();
        let open = file.read(|tx| tx.open_lease_of(&card)).unwrap().unwrap();
        assert_eq!(
            (
                open.lease.drawn_committed,
                open.lease.drawn_held,
                open.open_holds
            ),
            (Points(30), Points(20), 1)
        );
        assert_eq!(open.lease.remaining(), Points(50));
        // HQ extends it: the points and expiry are HQ's.
        let later = datetime!(2026-11-26 10:00 UTC);
        file.write(|tx| tx.store_leases(&[lease(100, later)]))
            .unwrap();
        let open = file.read(|tx| tx.open_leases()).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].lease.expires_at, later.unix_timestamp());
        // Closed, it stays closed even if HQ lists it again.
        file.write(|tx| tx.close_lease(Uuid::from_u128(1), protocol::Seq(1)))
            .unwrap();
        file.write(|tx| tx.store_leases(&[lease(100, later)]))
            .unwrap();
        assert!(file.read(|tx| tx.open_leases()).unwrap().is_empty());
        assert_eq!(file.read(|tx| tx.open_lease_of(&card)).unwrap(), None);
    }

    #[test]
    fn epochs_only_rise_and_recent_cards_come_from_the_sales() {
        let (_dir, mut file) = journal();
        let first = file.write(|tx| tx.next_lease_epoch()).unwrap();
        let second = file.write(|tx| tx.next_lease_epoch()).unwrap();
        assert!(second > first);
        file.write(|tx| tx.store_leases(&[lease(10, datetime!(2026-11-25 10:00 UTC))]))
            .unwrap();
        hold(&mut file, "R-1", 1);
        let since = datetime!(2026-11-24 00:00 UTC).unix_timestamp();
        let cards = file.write(|tx| tx.recent_cards(since, 10)).unwrap();
        assert_eq!(cards, vec![CardId::parse(CARD).unwrap()]);
        let after = datetime!(2026-11-24 11:00 UTC).unix_timestamp();
        assert!(
            file.write(|tx| tx.recent_cards(after, 10))
                .unwrap()
                .is_empty()
        );
    }

    /// A sale entry of `card` at `at`, as a commit writes it.
    fn sold(file: &mut JournalFile, card: &str, at: OffsetDateTime) {
        let body = EntryBody::Sale(protocol::journal::SaleEntry {
            receipt_id: ReceiptId::parse(&format!("S-{card}-{}", at.unix_timestamp())).unwrap(),
            card: Some(CardId::parse(card).unwrap()),
            sale: sale_record(SaleState::Committed, true).priced,
            matures_at: None,
            offline: false,
            lease: None,
        });
        file.write(|tx| tx.append(body, at, 1).map(drop)).unwrap();
    }

    #[test]
    fn recent_cards_are_the_committed_sales_since_then_and_the_open_holds_newest_first() {
        let (_dir, mut file) = journal();
        let (a, b) = ("12345670", "96385074");
        let day = |h: u8| datetime!(2026-11-24 00:00 UTC) + time::Duration::hours(i64::from(h));
        sold(&mut file, a, day(8));
        sold(&mut file, b, day(9));
        let since = |h: u8| day(h).unix_timestamp();
        let recent = |file: &mut JournalFile, h: u8| {
            file.write(|tx| tx.recent_cards(since(h), 10))
                .unwrap()
                .into_iter()
                .map(|c| c.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(recent(&mut file, 0), [b, a]);
        // Folded already: a later sale of `a` moves it up, and is the only new read.
        sold(&mut file, a, day(11));
        assert_eq!(recent(&mut file, 0), [a, b]);
        // An open hold (held at 10:00) counts until it is committed or cancelled.
        file.write(|tx| tx.store_leases(&[lease(10, day(24))]))
            .unwrap();
        let open = hold(&mut file, "R-open", 0);
        assert_eq!(recent(&mut file, 10), [a, CARD]);
        file.write(|tx| tx.cancel_hold(&open, CancelReason::Till))
            .unwrap();
        assert_eq!(recent(&mut file, 10), [a]);
        // Cards last seen before the window leave the table for good.
        assert_eq!(recent(&mut file, 10), [a]);
        assert_eq!(recent(&mut file, 0), [a]);
    }
}
