//! The figures behind a card's view: HQ's cached part, this terminal's own entries HQ
//! has not counted yet (a difference of running totals, so the cost does not grow
//! with the card's history), pending points, open holds and the blocked flag.
//! `crate::cards` turns them into the view the till sees.

use super::sales::HELD_POINTS_OF_CARD;
use super::{JournalError, Tx};
use protocol::{CardId, Points};
use rusqlite::params;
use serde::Deserialize;
use std::sync::LazyLock;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// HQ's last figures of a card, as cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HqFigures {
    /// Every point HQ counts, pending included.
    pub balance: Points,
    /// Points HQ counts as pending.
    pub pending: Points,
    /// Points other terminals' open reservations hold at HQ.
    pub reserved_elsewhere: Points,
    /// Points other terminals' open leases hold at HQ.
    pub leased_elsewhere: Points,
    /// Tier name from HQ.
    pub tier: Option<String>,
    /// When HQ computed them (`None` if the stored instant does not parse).
    pub as_of: Option<OffsetDateTime>,
}

/// Everything a card's view is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardFigures {
    /// HQ's part (`None`: HQ never reported the card).
    pub hq: Option<HqFigures>,
    /// Points this terminal's entries added after HQ's figures.
    pub local_balance: Points,
    /// Points of those entries still pending at the time asked.
    pub local_pending: Points,
    /// When the newest of those entries was written (`None`: there is none), so a
    /// view that includes a sale just made is not dated before it.
    pub local_as_of: Option<OffsetDateTime>,
    /// Points reserved by open holds at this terminal.
    pub held: Points,
    /// True when HQ blocked the card.
    pub blocked: bool,
}

/// The instant of a stored entry, read from its JSON. SQLite's `json_extract` turned
/// the whole entry into its binary form first, a tenth of a till sale's CPU
/// (docs/performance.md, *Till sales*); serde skips the other fields without building anything.
#[derive(Deserialize)]
struct EntryInstant {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

/// A card's figures in one statement (`?1` the card, `?2` now): HQ's cached row if
/// there is one, then this terminal's part after the seq HQ's figures include (0
/// without a cached row). One statement instead of seven: the reads are the same
/// key lookups, but each statement of its own paid its cache lookup, binding, step
/// and reset, twice per till sale (the hold's view and the commit's).
///
/// - the card's running total now, and through the included seq (a difference of
///   running totals, so the cost does not grow with the card's history);
/// - pending points of entries maturing after now, which the pending period bounds;
/// - the newest entry's JSON, for its own instant (`at_unix` is whole seconds,
///   coarser than HQ's), found by its running total: a row for every entry of a
///   card, so entries need no index of their own by card;
/// - points reserved by open holds, and the blocked flag.
static CARD_FIGURES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT c.balance, c.pending, c.tier, c.as_of, c.reserved, c.leased,
            (SELECT running FROM card_running WHERE card = ?1 ORDER BY seq DESC LIMIT 1),
            (SELECT running FROM card_running WHERE card = ?1 AND seq <= COALESCE(c.included_seq, 0)
             ORDER BY seq DESC LIMIT 1),
            (SELECT COALESCE(SUM(delta_pending), 0) FROM entries INDEXED BY entries_pending_by_card
             WHERE card = ?1 AND matures_at_unix > ?2 AND seq > COALESCE(c.included_seq, 0)),
            (SELECT e.body FROM card_running AS r JOIN entries AS e ON e.seq = r.seq
             WHERE r.card = ?1 AND r.seq > COALESCE(c.included_seq, 0) ORDER BY r.seq DESC LIMIT 1),
            ({HELD_POINTS_OF_CARD}),
            EXISTS (SELECT 1 FROM blocked_cards WHERE card = ?1)
         FROM (SELECT 1) LEFT JOIN cards AS c ON c.card = ?1"
    )
});

impl Tx<'_> {
    /// The figures of `card` at `now`.
    pub fn card_figures(
        &self,
        card: &CardId,
        now: OffsetDateTime,
    ) -> Result<CardFigures, JournalError> {
        let (hq, running_now, running_included, local_pending, newest_body, held, blocked) = self
            .inner
            .prepare_cached(&CARD_FIGURES)?
            .query_row(params![card.as_str(), now.unix_timestamp()], |r| {
                let hq = match r.get::<_, Option<i64>>(0)? {
                    None => None,
                    Some(balance) => Some(HqFigures {
                        balance: Points(balance),
                        pending: Points(r.get(1)?),
                        reserved_elsewhere: Points(r.get(4)?),
                        leased_elsewhere: Points(r.get(5)?),
                        tier: r.get(2)?,
                        as_of: OffsetDateTime::parse(&r.get::<_, String>(3)?, &Rfc3339).ok(),
                    }),
                };
                Ok((
                    hq,
                    r.get::<_, Option<i64>>(6)?.unwrap_or(0),
                    r.get::<_, Option<i64>>(7)?.unwrap_or(0),
                    r.get::<_, i64>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, i64>(10)?,
                    r.get::<_, bool>(11)?,
                ))
            })?;
        let local_as_of = newest_body
            .map(|body| serde_json::from_str::<EntryInstant>(&body).map(|e| e.at))
            .transpose()
            .map_err(JournalError::data)?;
        Ok(CardFigures {
            hq,
            // Both are running totals written checked; their difference may still not
            // fit (one near i64::MAX, the other near i64::MIN): then it is saturated,
            // and the balance limit at the till refuses anything that would add to it.
            local_balance: Points(running_now.saturating_sub(running_included)),
            local_pending: Points(local_pending),
            local_as_of,
            held: Points(held),
            blocked,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::cards::CardView;
    use crate::journal::{JournalError, JournalFile};
    use protocol::journal::{EntryBody, WelcomeEntry};
    use protocol::wire::CardBalance;
    use protocol::{CardId, Points, Seq};
    use time::OffsetDateTime;
    use time::macros::datetime;

    use crate::journal::test_journal as journal;

    fn add(file: &mut JournalFile, card: &CardId, points: i64) {
        let body = EntryBody::Welcome(WelcomeEntry {
            card: card.clone(),
            points: Points(points),
        });
        file.write(|tx| tx.append(body, datetime!(2026-11-24 10:00 UTC), 0))
            .unwrap();
    }

    fn view(file: &mut JournalFile, card: &CardId, now: OffsetDateTime) -> CardView {
        file.read(|tx| Ok::<_, JournalError>(CardView::new(card, tx.card_figures(card, now)?)))
            .unwrap()
    }

    fn apply(file: &mut JournalFile, balance: &CardBalance, acked_through: Seq) {
        file.write(|tx| tx.apply_hq_balance(balance, acked_through))
            .unwrap();
    }

    #[test]
    fn the_view_adds_only_the_entries_hq_has_not_counted() {
        let (_dir, mut file) = journal();
        let card = CardId::parse("4006381333931").unwrap();
        let other = CardId::parse("12345678").unwrap();
        for p in [10, 20, 30] {
            add(&mut file, &card, p);
            add(&mut file, &other, 1000);
        }
        let now = datetime!(2026-11-24 11:00 UTC);
        assert_eq!(view(&mut file, &card, now).balance, Points(60));
        // HQ reports 100 including this terminal's entries through seq 3 (10 and 20).
        let hq = CardBalance {
            card: card.clone(),
            balance: Points(100),
            pending: Points(0),
            tier: Some("gold".into()),
            blocked: false,
            reserved: Points(0),
            leased: Points(0),
            as_of: now,
        };
        apply(&mut file, &hq, Seq(3));
        let v = view(&mut file, &card, now);
        assert_eq!(v.balance, Points(130));
        assert_eq!(v.tier.as_deref(), Some("gold"));
        // An older answer (through seq 1) does not roll the cache back.
        apply(
            &mut file,
            &CardBalance {
                balance: Points(5),
                ..hq
            },
            Seq(1),
        );
        assert_eq!(view(&mut file, &card, now).balance, Points(130));
    }

    #[test]
    fn the_view_is_dated_by_its_newest_figure_hq_or_this_till() {
        let (_dir, mut file) = journal();
        let card = CardId::parse("4006381333931").unwrap();
        let now = datetime!(2026-11-24 11:00 UTC);
        // Nothing known of the card: no date.
        assert_eq!(view(&mut file, &card, now).as_of, None);
        add(&mut file, &card, 10); // written at 10:00
        assert_eq!(
            view(&mut file, &card, now).as_of,
            Some(datetime!(2026-11-24 10:00 UTC))
        );
        // HQ counted that entry at 10:30: HQ's time.
        let hq = CardBalance {
            card: card.clone(),
            balance: Points(10),
            pending: Points(0),
            tier: None,
            blocked: false,
            reserved: Points(0),
            leased: Points(0),
            as_of: datetime!(2026-11-24 10:30:00.5 UTC),
        };
        apply(&mut file, &hq, Seq(1));
        assert_eq!(
            view(&mut file, &card, now).as_of,
            Some(datetime!(2026-11-24 10:30:00.5 UTC))
        );
        // A sale 0.2 s later that HQ has not counted: the view includes it, so it is
        // dated by it, not by HQ's older figure (to the fraction of a second).
        let body = EntryBody::Welcome(WelcomeEntry {
            card: card.clone(),
            points: Points(5),
        });
        file.write(|tx| tx.append(body, datetime!(2026-11-24 10:30:00.7 UTC), 0))
            .unwrap();
        let v = view(&mut file, &card, now);
        assert_eq!(
            (v.balance, v.as_of),
            (Points(15), Some(datetime!(2026-11-24 10:30:00.7 UTC)))
        );
    }
}
