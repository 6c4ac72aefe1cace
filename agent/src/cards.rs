//! The balance the till sees for a card, and the HQ card cache behind it.
//!
//! Shown balance = HQ's last known balance + this terminal's own entries that HQ's
//! figure does not yet include. HQ says exactly which ones it includes
//! (`included_seq`, the terminal's `acked_through` read together with the balance), so
//! a sale never disappears and reappears in the balance while it travels to HQ.
//! In a standalone store there is no HQ row and the journal alone is the balance.

use crate::journal::JournalError;
use protocol::wire::CardBalance;
use protocol::{CardId, Points, Seq};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;

/// A card as the till API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardView {
    /// The card.
    pub card: CardId,
    /// Every point the card holds, pending included.
    pub balance: Points,
    /// Spendable now: balance minus pending points and this till's open holds.
    pub available: Points,
    /// Accrued points not yet spendable.
    pub pending: Points,
    /// Points reserved by open holds at this till.
    pub held: Points,
    /// Tier name from HQ.
    pub tier: Option<String>,
    /// When HQ computed its part of these figures (`None`: HQ never reported the card).
    #[serde(with = "time::serde::rfc3339::option")]
    pub as_of: Option<OffsetDateTime>,
    /// True when the figures come from the cache because HQ could not be asked now.
    pub offline: bool,
    /// True when HQ blocked the card.
    pub blocked: bool,
}

/// Computes a card's view at `now` from the cache and the local journal.
pub fn view(
    conn: &Connection,
    card: &CardId,
    now: OffsetDateTime,
) -> Result<CardView, JournalError> {
    let cached = conn
        .prepare_cached(
            "SELECT balance, pending, tier, as_of, included_seq FROM cards WHERE card = ?1",
        )?
        .query_row([card.as_str()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .optional()?;
    let (hq_balance, hq_pending, tier, as_of, included) = match cached {
        Some((b, p, t, a, i)) => (
            b,
            p,
            t,
            OffsetDateTime::parse(&a, &time::format_description::well_known::Rfc3339).ok(),
            i,
        ),
        None => (0, 0, None, None, 0),
    };
    let running_through = |seq: Option<i64>| -> Result<i64, JournalError> {
        Ok(conn
            .prepare_cached(
                "SELECT running FROM card_running WHERE card = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![card.as_str(), seq.unwrap_or(i64::MAX)], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    };
    // This terminal's effect on the card since HQ's figure: a difference of running
    // totals, so the cost does not grow with the card's history.
    let local_balance = running_through(None)? - running_through(Some(included))?;
    // Points still pending: only entries whose maturity is in the future, which the
    // pending period bounds.
    let local_pending: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(delta_pending), 0) FROM entries INDEXED BY entries_pending_by_card
             WHERE card = ?1 AND matures_at_unix > ?3 AND seq > ?2",
        )?
        .query_row(
            params![card.as_str(), included, now.unix_timestamp()],
            |r| r.get(0),
        )?;
    let held: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(redeem_points), 0) FROM sales WHERE state = 'held' AND card = ?1",
        )?
        .query_row([card.as_str()], |r| r.get(0))?;
    let blocked = conn
        .prepare_cached("SELECT 1 FROM blocked_cards WHERE card = ?1")?
        .exists([card.as_str()])?;
    let balance = hq_balance.saturating_add(local_balance);
    let pending = hq_pending.saturating_add(local_pending);
    Ok(CardView {
        card: card.clone(),
        balance: Points(balance),
        available: Points(balance.saturating_sub(pending).saturating_sub(held)),
        pending: Points(pending),
        held: Points(held),
        tier,
        as_of,
        offline: false,
        blocked,
    })
}

/// Stores HQ's figures for a card, which include this terminal's entries through
/// `acked_through`. Older news (a lower `acked_through` than what is cached) is
/// ignored, so an answer that arrives late cannot roll the balance back.
pub fn apply_hq_balance(
    conn: &Connection,
    b: &CardBalance,
    acked_through: Seq,
) -> Result<(), JournalError> {
    let as_of = b
        .as_of
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(JournalError::data)?;
    let changed = conn.prepare_cached(
        "INSERT INTO cards (card, balance, pending, tier, as_of, as_of_us, included_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (card) DO UPDATE SET
             balance = excluded.balance, pending = excluded.pending, tier = excluded.tier,
             as_of = excluded.as_of, as_of_us = excluded.as_of_us,
             included_seq = excluded.included_seq
         WHERE excluded.included_seq > cards.included_seq
            OR (excluded.included_seq = cards.included_seq AND excluded.as_of_us >= cards.as_of_us)",
    )?
    .execute(params![
        b.card.as_str(),
        b.balance.get(),
        b.pending.get(),
        b.tier,
        as_of,
        micros(b.as_of),
        acked_through.get()
    ])?;
    if changed > 0 {
        set_blocked(conn, &b.card, b.blocked, b.as_of)?;
    }
    Ok(())
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// Marks a card blocked or not.
pub fn set_blocked(
    conn: &Connection,
    card: &CardId,
    blocked: bool,
    at: OffsetDateTime,
) -> Result<(), JournalError> {
    if blocked {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO blocked_cards (card, since_unix) VALUES (?1, ?2)",
        )?
        .execute(params![card.as_str(), at.unix_timestamp()])?;
    } else {
        conn.prepare_cached("DELETE FROM blocked_cards WHERE card = ?1")?
            .execute([card.as_str()])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{entries, schema};
    use protocol::journal::{EntryBody, WelcomeEntry};
    use protocol::{StoreId, TerminalId};
    use time::macros::datetime;

    fn journal() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = schema::open(
            &dir.path().join("j.db"),
            &StoreId::parse("s").unwrap(),
            &TerminalId::parse("t").unwrap(),
        )
        .unwrap();
        (dir, conn)
    }

    fn add(conn: &Connection, card: &CardId, points: i64) {
        let body = EntryBody::Welcome(WelcomeEntry {
            card: card.clone(),
            points: Points(points),
        });
        entries::append(conn, body, datetime!(2026-11-24 10:00 UTC), 0).unwrap();
    }

    #[test]
    fn the_view_adds_only_the_entries_hq_has_not_counted() {
        let (_dir, conn) = journal();
        let card = CardId::parse("4006381333931").unwrap();
        let other = CardId::parse("12345678").unwrap();
        for p in [10, 20, 30] {
            add(&conn, &card, p);
            add(&conn, &other, 1000);
        }
        let now = datetime!(2026-11-24 11:00 UTC);
        assert_eq!(view(&conn, &card, now).unwrap().balance, Points(60));
        // HQ reports 100 including this terminal's entries through seq 3 (10 and 20).
        let hq = CardBalance {
            card: card.clone(),
            balance: Points(100),
            pending: Points(0),
            tier: Some("gold".into()),
            blocked: false,
            as_of: now,
        };
        apply_hq_balance(&conn, &hq, Seq(3)).unwrap();
        let v = view(&conn, &card, now).unwrap();
        assert_eq!(v.balance, Points(130));
        assert_eq!(v.tier.as_deref(), Some("gold"));
        // An older answer (through seq 1) does not roll the cache back.
        apply_hq_balance(
            &conn,
            &CardBalance {
                balance: Points(5),
                ..hq
            },
            Seq(1),
        )
        .unwrap();
        assert_eq!(view(&conn, &card, now).unwrap().balance, Points(130));
    }
}
