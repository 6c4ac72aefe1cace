//! Every write of a push as one statement: each table's statement (the same text
//! the other flows run alone) is a sub-statement of one `WITH`, its placeholders
//! renumbered after the previous ones', and the main query counts the rows of each
//! in the order listed. PostgreSQL runs a data-modifying sub-statement to its end
//! when its rows are first read, and reads the main query's list from left to right,
//! so the sub-statements run one after the other in [`PARTS`]' order: the entries
//! first (a clash refuses the batch before anything else is written), then the
//! cards and their rows, the store's KPI rows last, as when each was a statement of
//! its own. One `Bind`/`Execute`/`Sync` and one answer instead of one per table.
//!
//! The sub-statements write different tables (the cards' update and insert touch
//! different rows), so none has to see another's rows; the foreign keys are checked
//! at the end of the statement, when every row is there. A table with nothing to
//! write gets empty arrays and writes nothing.

use super::super::{admin, analytics, cards, escrow, quarantine, sql, terminals};
use crate::store::statements::{PushWrites, Written};
use crate::store::{Result, StoreError};
use deadpool_postgres::Client;
use std::sync::LazyLock;

/// The sub-statements, in the order they run; [`params`] builds their parameters in
/// the same order.
fn parts() -> [&'static str; 18] {
    [
        terminals::INSERT_ENTRIES,
        cards::WRITE_CARDS,
        cards::INSERT_NEW_CARDS,
        cards::INSERT_LOTS,
        cards::UPDATE_LOTS,
        cards::INSERT_LEDGER,
        cards::INSERT_FLAGS,
        quarantine::INSERT_QUARANTINE,
        &escrow::WRITE_RESERVATIONS,
        &escrow::WRITE_LEASES,
        admin::INSERT_ANOMALIES,
        analytics::KPI_MEMBER_DAYS,
        analytics::EARLIER_FIRST_DAYS,
        analytics::KPI_MEMBERS,
        cards::ASSOCIATE,
        terminals::ACK,
        // The rows every till of the store updates: locked for the commit only.
        analytics::KPI_DAILY,
        analytics::KPI_CATEGORIES,
    ]
}

/// The places in [`parts`] whose row counts are checked.
const ENTRIES: usize = 0;
const CARDS: usize = 1;

/// The parameters of each of [`parts`], in its order.
fn params<'a>(w: &PushWrites<'a>) -> Result<[sql::Owned<'a>; 18]> {
    let (store, associated) = w.associate;
    Ok([
        terminals::entry_rows(&w.entries)?,
        cards::CardArrays::of(&w.cards).owned(w.now),
        cards::CardArrays::of(&w.new_cards).owned(w.now),
        cards::lot_rows(w.new_lots),
        cards::changed_lot_rows(w.changed_lots),
        cards::ledger_rows(w.ledger),
        cards::flag_rows(w.flags),
        quarantine::quarantine_rows(w.quarantine, w.now),
        escrow::reservation_rows(w.reservations),
        escrow::lease_rows(w.leases),
        admin::anomaly_rows(w.anomalies),
        analytics::member_day_rows(w.kpi),
        analytics::first_day_rows(w.kpi),
        analytics::first_day_rows(w.kpi),
        cards::store_card_rows(store, associated),
        terminals::ack_row(w.entries.terminal, w.acked_through, w.now)?,
        analytics::daily_rows(w.kpi),
        analytics::category_rows(w.kpi),
    ])
}

/// The statement of [`write`].
pub(in super::super) static WRITE_PUSH: LazyLock<String> = LazyLock::new(|| {
    let mut subs = Vec::new();
    let mut counts = Vec::new();
    let mut offset = 0;
    for (i, part) in parts().iter().enumerate() {
        subs.push(format!(
            "w{i} AS ({} RETURNING 1)",
            renumbered(part, offset)
        ));
        counts.push(format!("(SELECT count(*) FROM w{i})"));
        offset += placeholders(part);
    }
    format!("WITH {}\nSELECT {}", subs.join(",\n"), counts.join(", "))
});

/// The parameters of [`WRITE_PUSH`] for `w`, checked against each part's
/// placeholders (built before anything is sent: a value that does not fit fails
/// the push before its transaction writes).
pub(super) fn write_params<'a>(w: &PushWrites<'a>) -> Result<sql::Owned<'a>> {
    let mut all = Vec::new();
    for ((part, wanted), owned) in parts().iter().zip(*PLACEHOLDERS).zip(params(w)?) {
        if owned.len() != wanted {
            return Err(StoreError::corrupt(format!(
                "{} parameters for a statement of {wanted}: {part}",
                owned.len(),
            )));
        }
        all.extend(owned);
    }
    Ok(all)
}

/// The placeholders of each of [`parts`], counted once rather than at every push.
static PLACEHOLDERS: LazyLock<[usize; 18]> = LazyLock::new(|| parts().map(placeholders));

/// Runs [`WRITE_PUSH`] with `params` ([`write_params`] of `w`): `Refused` when the
/// entry rows clash with the uniqueness constraints, `CardTaken` when another
/// transaction inserted one of the new cards since the locks (the insert waited for
/// it and failed on the card's key). Either failure aborts the transaction, so the
/// `COMMIT` sent after it rolls back.
pub(super) async fn write(
    c: &Client,
    w: &PushWrites<'_>,
    params: &sql::Owned<'_>,
) -> Result<Written> {
    let stmt = c.prepare_cached(&WRITE_PUSH).await?;
    let row = match c.query_one(&stmt, &sql::refs(params)).await {
        Ok(row) => row,
        Err(e) => {
            if let Some(clash) = terminals::entry_clash(&e, &w.entries) {
                return Ok(Written::Refused(clash));
            }
            let e = StoreError::from(e);
            if cards::is_card_key_clash(&e) {
                return Ok(Written::CardTaken);
            }
            return Err(e);
        }
    };
    let written = |i: usize| -> Result<usize> {
        usize::try_from(row.try_get::<_, i64>(i)?)
            .map_err(|_| StoreError::corrupt(format!("a negative count of rows ({i})")))
    };
    let (entries, cards) = (written(ENTRIES)?, written(CARDS)?);
    if (entries, cards) != (w.entries.entries.len(), w.cards.len()) {
        return Err(StoreError::corrupt(format!(
            "wrote {entries} of {} entries and {cards} of {} locked card rows",
            w.entries.entries.len(),
            w.cards.len()
        )));
    }
    Ok(Written::Done)
}

/// The highest placeholder `$n` of `sql`: its number of parameters.
fn placeholders(sql: &str) -> usize {
    numbers(sql).map(|(_, n, _)| n).max().unwrap_or(0)
}

/// `sql` with each placeholder `$n` renumbered `$(n + offset)`.
fn renumbered(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut from = 0;
    for (start, n, end) in numbers(sql) {
        out.push_str(&sql[from..start]);
        out.push_str(&format!("${}", n + offset));
        from = end;
    }
    out.push_str(&sql[from..]);
    out
}

/// Each placeholder of `sql`: where its `$` is, its number, where it ends. The
/// push's statements have no quoted `$`.
fn numbers(sql: &str) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let bytes = sql.as_bytes();
    sql.match_indices('$').filter_map(move |(start, _)| {
        let digits = bytes[start + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = start + 1 + digits;
        sql[start + 1..end].parse().ok().map(|n| (start, n, end))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_past_the_previous_statements() {
        let sql = "SELECT $1, $10, $2::int[] FROM t WHERE a = $1";
        assert_eq!(placeholders(sql), 10);
        assert_eq!(
            renumbered(sql, 11),
            "SELECT $12, $21, $13::int[] FROM t WHERE a = $12"
        );
        assert_eq!(placeholders("SELECT 1"), 0);
        assert!(WRITE_PUSH.contains("$109"), "{}", *WRITE_PUSH);
        assert!(!WRITE_PUSH.contains("$110"));
    }
}
