//! The `sales` table: one row per receipt the till opened, with its state, its priced
//! lines and the answers the till got (kept so that a repeated request gets the very
//! same answer). This is the one place where a sale's state is written as text.

use super::{JournalError, Tx};
use crate::sales::{CancelReason, SaleState};
use protocol::evaluate::PricedSale;
use protocol::journal::LeaseDraw;
use protocol::{CardId, Points, ReceiptId, Seq};
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

/// Points reserved by open holds at this terminal for the card `?1`. Open holds are
/// few (a till has one sale open at a time; expiry releases forgotten ones) and all
/// among the newest sales (`maybe_held!`), so they are read from there and filtered
/// by card: no index to write with every hold and commit. Also a part of a card's
/// figures (`card_views`).
pub(super) const HELD_POINTS_OF_CARD: &str = concat!(
    "SELECT COALESCE(SUM(redeem_points), 0) FROM sales WHERE ",
    maybe_held!(),
    " AND state = 'held' AND card = ?1"
);

impl SaleState {
    /// The state's name: in the journal's `sales.state` column, in the till's JSON
    /// answers and in the metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Committed => "committed",
            Self::Cancelled(_) => "cancelled",
            Self::Returned => "returned",
        }
    }

    /// The state stored as `state` and `cancel_reason`.
    fn from_columns(state: &str, reason: Option<&str>) -> Result<Self, JournalError> {
        // A cancel without a (known) reason was the till's: the only other canceller,
        // the hold timeout, always records its reason.
        let reason = match reason {
            Some(r) if r == CancelReason::HoldTimeout.as_str() => CancelReason::HoldTimeout,
            _ => CancelReason::Till,
        };
        [
            Self::Held,
            Self::Committed,
            Self::Cancelled(reason),
            Self::Returned,
        ]
        .into_iter()
        .find(|s| s.as_str() == state)
        .ok_or_else(|| JournalError::data(format!("unknown sale state {state:?}")))
    }
}

impl CancelReason {
    /// The reason's name in the journal's `sales.cancel_reason` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Till => "till",
            Self::HoldTimeout => "hold_timeout",
        }
    }
}

/// A request stored under its idempotency key, with the answer it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    /// Hash of the request body (see `crate::sales::request_hash`).
    pub request_hash: String,
    /// The JSON answer the till got.
    pub answer: String,
}

/// A sale as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleRecord {
    /// Where the sale stands.
    pub state: SaleState,
    /// The card, if any.
    pub card: Option<CardId>,
    /// Points the hold reserved.
    pub redeem_points: Points,
    /// True when the redemption was decided offline (caps applied).
    pub offline: bool,
    /// Of `redeem_points`, those HQ reserved for this receipt.
    pub reserved_points: Points,
    /// Of `redeem_points`, those drawn from one of this till's leases.
    pub lease: Option<LeaseDraw>,
    /// Rules version the sale was priced with.
    pub rules_version: u64,
    /// When the accrued points become spendable, if there is a pending period.
    pub matures_at: Option<OffsetDateTime>,
    /// The priced receipt.
    pub priced: PricedSale,
    /// Units returned so far, per line.
    pub returned_qty: Vec<u32>,
    /// The sale's journal entry, once committed.
    pub entry_seq: Option<Seq>,
    /// The commit's answer, once committed.
    pub commit_answer: Option<String>,
}

/// A hold being released (cancelled or timed out): what its `Release` entry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldToRelease {
    /// Receipt number.
    pub receipt_id: ReceiptId,
    /// The card, if any.
    pub card: Option<CardId>,
    /// Points HQ reserved for it.
    pub reserved_points: Points,
    /// Rules version the sale was priced with.
    pub rules_version: u64,
}

/// A new hold to record.
#[derive(Debug, Clone, Copy)]
pub struct NewHold<'a> {
    /// Receipt number.
    pub receipt_id: &'a ReceiptId,
    /// Hash of the request body.
    pub request_hash: &'a str,
    /// The card, if any.
    pub card: Option<&'a CardId>,
    /// Points reserved.
    pub redeem_points: Points,
    /// True when the redemption was decided offline.
    pub offline: bool,
    /// Of `redeem_points`, those HQ reserved for this receipt.
    pub reserved_points: Points,
    /// Of `redeem_points`, those drawn from one of this till's leases.
    pub lease: Option<LeaseDraw>,
    /// When the hold was opened.
    pub held_at: OffsetDateTime,
    /// Rules version the sale was priced with.
    pub rules_version: u64,
    /// When the accrued points become spendable, if there is a pending period.
    pub matures_at: Option<OffsetDateTime>,
    /// The priced receipt.
    pub priced: &'a PricedSale,
    /// The JSON answer the till gets.
    pub answer: &'a str,
}

impl Tx<'_> {
    /// The sale opened for `receipt`, if any.
    pub fn sale(&self, receipt: &ReceiptId) -> Result<Option<SaleRecord>, JournalError> {
        let row = self
            .inner
            .prepare_cached(
                "SELECT state, cancel_reason, card, redeem_points, offline, rules_version, matures_at_unix,
                        priced, returned_qty, entry_seq, commit_response, reserved_points, lease_id, lease_points
                 FROM sales WHERE receipt_id = ?1",
            )?
            .query_row([receipt.as_str()], |r| {
                Ok((
                    (
                        r.get::<_, i64>(11)?,
                        r.get::<_, Option<String>>(12)?,
                        r.get::<_, i64>(13)?,
                    ),
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, u64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, Option<u64>>(9)?,
                    r.get::<_, Option<String>>(10)?,
                ))
            })
            .optional()?;
        let Some((
            (reserved_points, lease_id, lease_points),
            state,
            reason,
            card,
            redeem_points,
            offline,
            rules_version,
            matures_at,
            priced,
            returned_qty,
            entry_seq,
            commit_answer,
        )) = row
        else {
            return Ok(None);
        };
        Ok(Some(SaleRecord {
            state: SaleState::from_columns(&state, reason.as_deref())?,
            card: card
                .map(|c| CardId::parse(&c).map_err(JournalError::data))
                .transpose()?,
            redeem_points: Points(redeem_points),
            offline,
            reserved_points: Points(reserved_points),
            lease: lease_id
                .map(|id| {
                    Ok::<_, JournalError>(LeaseDraw {
                        lease_id: uuid::Uuid::parse_str(&id).map_err(JournalError::data)?,
                        points: Points(lease_points),
                    })
                })
                .transpose()?,
            rules_version,
            matures_at: matures_at
                .map(|t| OffsetDateTime::from_unix_timestamp(t).map_err(JournalError::data))
                .transpose()?,
            priced: serde_json::from_str(&priced).map_err(JournalError::data)?,
            returned_qty: serde_json::from_str(&returned_qty).map_err(JournalError::data)?,
            entry_seq: entry_seq.map(Seq),
            commit_answer,
        }))
    }

    /// The request that opened `receipt` and the answer it got, if it was opened.
    pub fn hold_request(&self, receipt: &ReceiptId) -> Result<Option<StoredRequest>, JournalError> {
        Ok(self
            .inner
            .prepare_cached("SELECT request_hash, hold_response FROM sales WHERE receipt_id = ?1")?
            .query_row([receipt.as_str()], |r| {
                Ok(StoredRequest {
                    request_hash: r.get(0)?,
                    answer: r.get(1)?,
                })
            })
            .optional()?)
    }

    /// Records a new hold, the newest sale: with its rowid, the one after the newest
    /// so far, and the distance back to the oldest hold still open (itself when no
    /// other is), which the reads of open holds start from (`maybe_held!`). Both are
    /// read by the insert itself: one statement per hold. (A rowid past the largest
    /// integer, 9.2 × 10^18 sales, is not an integer and the insert fails.)
    pub fn insert_hold(&self, hold: &NewHold<'_>) -> Result<(), JournalError> {
        let priced = serde_json::to_string(hold.priced).map_err(JournalError::data)?;
        self.inner
            .prepare_cached(concat!(
                "INSERT INTO sales (receipt_id, request_hash, state, card, redeem_points, offline, held_at_unix,
                                    rules_version, matures_at_unix, priced, hold_response,
                                    reserved_points, lease_id, lease_points, rowid, open_back)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
                        n.id, n.id - COALESCE(h.oldest, n.id)
                 FROM (SELECT COALESCE(MAX(rowid), 0) + 1 AS id FROM sales) AS n,
                      (SELECT MIN(rowid) AS oldest FROM sales WHERE ",
                maybe_held!(),
                " AND state = 'held') AS h"
            ))?
            .execute(params![
                hold.receipt_id.as_str(),
                hold.request_hash,
                SaleState::Held.as_str(),
                hold.card.map(CardId::as_str),
                hold.redeem_points.get(),
                hold.offline,
                hold.held_at.unix_timestamp(),
                hold.rules_version,
                hold.matures_at.map(OffsetDateTime::unix_timestamp),
                priced,
                hold.answer,
                hold.reserved_points.get(),
                hold.lease.map(|l| l.lease_id.to_string()),
                hold.lease.map_or(0, |l| l.points.get()),
            ])?;
        Ok(())
    }

    /// Marks a held sale committed with its journal entry and the commit's answer (for
    /// repeated commits): the hold is captured and no longer counts as held. One
    /// update of the sale's row, not one for the state and one for the answer.
    pub fn capture_hold(
        &self,
        receipt: &ReceiptId,
        entry_seq: Seq,
        answer: &str,
    ) -> Result<(), JournalError> {
        self.inner
            .prepare_cached(
                "UPDATE sales SET state = ?3, entry_seq = ?2, commit_response = ?4 WHERE receipt_id = ?1",
            )?
            .execute(params![
                receipt.as_str(),
                entry_seq.get(),
                SaleState::Committed.as_str(),
                answer
            ])?;
        Ok(())
    }

    /// Cancels a held sale, releasing its points.
    pub fn cancel_hold(
        &self,
        receipt: &ReceiptId,
        reason: CancelReason,
    ) -> Result<(), JournalError> {
        self.inner
            .prepare_cached(
                "UPDATE sales SET state = ?2, cancel_reason = ?3 WHERE receipt_id = ?1 AND state = 'held'",
            )?
            .execute(params![
                receipt.as_str(),
                SaleState::Cancelled(reason).as_str(),
                reason.as_str()
            ])?;
        Ok(())
    }

    /// Holds opened before `held_before_unix` (the hold timeout): what expiry
    /// releases, with the points HQ reserved for each.
    pub fn expired_holds(&self, held_before_unix: i64) -> Result<Vec<HoldToRelease>, JournalError> {
        let mut stmt = self.inner.prepare_cached(concat!(
            "SELECT receipt_id, card, reserved_points, rules_version FROM sales WHERE ",
            maybe_held!(),
            " AND state = 'held' AND held_at_unix < ?1 ORDER BY held_at_unix, receipt_id"
        ))?;
        let rows = stmt.query_map([held_before_unix], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, u64>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (receipt, card, reserved, rules_version) = row?;
            Ok(HoldToRelease {
                receipt_id: ReceiptId::parse(&receipt).map_err(JournalError::data)?,
                card: card
                    .map(|c| CardId::parse(&c).map_err(JournalError::data))
                    .transpose()?,
                reserved_points: Points(reserved),
                rules_version,
            })
        })
        .collect()
    }

    /// Records what has been returned of a committed sale, and its state after it.
    pub fn record_returned(
        &self,
        receipt: &ReceiptId,
        returned_qty: &[u32],
        state: SaleState,
    ) -> Result<(), JournalError> {
        let returned = serde_json::to_string(returned_qty).map_err(JournalError::data)?;
        self.inner
            .prepare_cached("UPDATE sales SET returned_qty = ?2, state = ?3 WHERE receipt_id = ?1")?
            .execute(params![receipt.as_str(), returned, state.as_str()])?;
        Ok(())
    }

    /// Points reserved by open holds at this terminal for `card`
    /// ([`HELD_POINTS_OF_CARD`]).
    pub fn held_points(&self, card: &CardId) -> Result<Points, JournalError> {
        Ok(Points(
            self.inner
                .prepare_cached(HELD_POINTS_OF_CARD)?
                .query_row([card.as_str()], |r| r.get(0))?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalFile;
    use crate::sales::fixtures::sale_record;
    use time::macros::datetime;

    use crate::journal::test_journal as journal;

    fn hold(file: &mut JournalFile, receipt: &str, held_at: OffsetDateTime) -> ReceiptId {
        let receipt = ReceiptId::parse(receipt).unwrap();
        let sale = sale_record(SaleState::Held, true);
        file.write(|tx| {
            tx.insert_hold(&NewHold {
                receipt_id: &receipt,
                request_hash: "h",
                card: sale.card.as_ref(),
                redeem_points: sale.redeem_points,
                offline: false,
                reserved_points: sale.reserved_points,
                lease: sale.lease,
                held_at,
                rules_version: sale.rules_version,
                matures_at: None,
                priced: &sale.priced,
                answer: "{}",
            })
        })
        .unwrap();
        receipt
    }

    fn state(file: &mut JournalFile, receipt: &ReceiptId) -> SaleState {
        file.read(|tx| tx.sale(receipt)).unwrap().unwrap().state
    }

    #[test]
    fn every_state_reads_back_as_written() {
        let (_dir, mut file) = journal();
        let at = datetime!(2026-11-24 10:00 UTC);
        let sold = hold(&mut file, "R-1", at);
        let stored = file.read(|tx| tx.sale(&sold)).unwrap().unwrap();
        assert_eq!(stored, sale_record(SaleState::Held, true));
        let card = stored.card.clone().unwrap();
        assert_eq!(
            file.read(|tx| tx.held_points(&card)).unwrap(),
            stored.redeem_points
        );

        let welcome = protocol::journal::EntryBody::Welcome(protocol::journal::WelcomeEntry {
            card: card.clone(),
            points: Points(1),
        });
        file.write(|tx| {
            let entry = tx.append(welcome, at, 0)?;
            tx.capture_hold(&sold, entry.seq, "{}")
        })
        .unwrap();
        assert_eq!(state(&mut file, &sold), SaleState::Committed);
        assert_eq!(file.read(|tx| tx.held_points(&card)).unwrap(), Points::ZERO);
        file.write(|tx| tx.record_returned(&sold, &[2, 1], SaleState::Returned))
            .unwrap();
        assert_eq!(state(&mut file, &sold), SaleState::Returned);

        let cancelled = hold(&mut file, "R-2", at);
        file.write(|tx| tx.cancel_hold(&cancelled, CancelReason::Till))
            .unwrap();
        assert_eq!(
            state(&mut file, &cancelled),
            SaleState::Cancelled(CancelReason::Till)
        );
    }

    /// The distance back to the oldest open hold recorded with the newest sale.
    fn newest_open_back(file: &mut JournalFile) -> i64 {
        file.read(|tx| -> Result<i64, JournalError> {
            Ok(tx.inner.query_row(
                "SELECT open_back FROM sales ORDER BY rowid DESC LIMIT 1",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap()
    }

    #[test]
    fn a_hold_left_open_behind_newer_sales_is_still_held_and_expires() {
        let (_dir, mut file) = journal();
        let card = CardId::parse(crate::sales::fixtures::CARD).unwrap();
        let points = sale_record(SaleState::Held, true).redeem_points;
        let forgotten = hold(&mut file, "R-1", datetime!(2026-11-24 09:00 UTC));
        assert_eq!(newest_open_back(&mut file), 0);
        // Three sales after it, each cancelled before the next is opened.
        for n in 2..=4 {
            let later = hold(
                &mut file,
                &format!("R-{n}"),
                datetime!(2026-11-24 10:00 UTC),
            );
            assert_eq!(newest_open_back(&mut file), n - 1, "back to R-1");
            file.write(|tx| tx.cancel_hold(&later, CancelReason::Till))
                .unwrap();
        }
        assert_eq!(file.read(|tx| tx.held_points(&card)).unwrap(), points);
        let now = datetime!(2026-11-24 10:05 UTC);
        let expired = file.read(|tx| tx.expired_holds(now.unix_timestamp() - 600));
        let expired: Vec<ReceiptId> = expired.unwrap().into_iter().map(|h| h.receipt_id).collect();
        assert_eq!(expired, [forgotten]);
        let expire = |tx: &Tx<'_>| crate::sales::expiry::expire(tx, now, 600);
        assert_eq!(file.write(expire).unwrap(), 1);
        assert_eq!(file.read(|tx| tx.held_points(&card)).unwrap(), Points::ZERO);
        // The next sale finds no other hold open: it starts the reads at itself.
        hold(&mut file, "R-5", now);
        assert_eq!(newest_open_back(&mut file), 0);
        assert_eq!(file.read(|tx| tx.held_points(&card)).unwrap(), points);
    }

    #[test]
    fn only_holds_older_than_the_cutoff_expire() {
        let (_dir, mut file) = journal();
        let old = hold(&mut file, "R-old", datetime!(2026-11-24 09:00 UTC));
        let new = hold(&mut file, "R-new", datetime!(2026-11-24 10:00 UTC));
        let now = datetime!(2026-11-24 09:40 UTC);
        let expire = |tx: &Tx<'_>| crate::sales::expiry::expire(tx, now, 600);
        assert_eq!(file.write(expire).unwrap(), 1);
        assert_eq!(
            state(&mut file, &old),
            SaleState::Cancelled(CancelReason::HoldTimeout)
        );
        assert_eq!(state(&mut file, &new), SaleState::Held);
        assert_eq!(file.write(expire).unwrap(), 0);
    }
}
