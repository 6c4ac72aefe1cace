//! What the offline caps count: this terminal's offline redemptions (committed entries
//! and open holds alike) today and since HQ was last reached.

use super::{JournalError, Tx};
use crate::policy::OfflineUsage;
use protocol::{CardId, Points};
use time::OffsetDateTime;

impl Tx<'_> {
    /// What this terminal redeemed offline for `card` and in all, counted from the
    /// store day starting at `day_start_unix`, as the caps see it at `now`.
    pub fn offline_usage(
        &self,
        card: &CardId,
        day_start_unix: i64,
        now: OffsetDateTime,
    ) -> Result<OfflineUsage, JournalError> {
        let last_contact = self.last_contact()?;
        let since_contact = last_contact.unwrap_or(i64::MIN);
        let sum = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Result<i64, JournalError> {
            Ok(self
                .inner
                .prepare_cached(sql)?
                .query_row(args, |r| r.get(0))?)
        };
        let card_today = sum(
            "SELECT COALESCE(SUM(redeemed), 0) FROM entries WHERE offline = 1 AND redeemed > 0 AND card = ?1 AND at_unix >= ?2",
            &[&card.as_str(), &day_start_unix],
        )? + sum(
            concat!(
                "SELECT COALESCE(SUM(redeem_points), 0) FROM sales WHERE ",
                maybe_held!(),
                " AND state = 'held' AND offline = 1 AND card = ?1"
            ),
            &[&card.as_str()],
        )?;
        let terminal_today = sum(
            "SELECT COALESCE(SUM(redeemed), 0) FROM entries WHERE offline = 1 AND redeemed > 0 AND at_unix >= ?1",
            &[&day_start_unix],
        )? + sum(
            concat!(
                "SELECT COALESCE(SUM(redeem_points), 0) FROM sales WHERE ",
                maybe_held!(),
                " AND state = 'held' AND offline = 1"
            ),
            &[],
        )?;
        let consecutive = sum(
            "SELECT COUNT(*) FROM entries WHERE offline = 1 AND redeemed > 0 AND card = ?1 AND at_unix > ?2",
            &[&card.as_str(), &since_contact],
        )? + sum(
            concat!(
                "SELECT COUNT(*) FROM sales WHERE ",
                maybe_held!(),
                " AND state = 'held' AND offline = 1 AND card = ?1"
            ),
            &[&card.as_str()],
        )?;
        Ok(OfflineUsage {
            card_today: Points(card_today),
            terminal_today: Points(terminal_today),
            consecutive_for_card: u32::try_from(consecutive).unwrap_or(u32::MAX),
            secs_since_contact: last_contact.map(|t| now.unix_timestamp() - t),
        })
    }
}
