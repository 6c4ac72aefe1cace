//! The figures behind a card's view: HQ's cached part, this terminal's own entries HQ
//! has not counted yet (a difference of running totals, so the cost does not grow
//! with the card's history), pending points, open holds and the blocked flag.
//! `crate::cards` turns them into the view the till sees.

use super::{JournalError, Tx};
use protocol::{CardId, Points};
use rusqlite::{OptionalExtension, params};
use serde::Deserialize;
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
/// the whole entry into its binary form first, a tenth of a till sale's CPU (README,
/// *Till sales*); serde skips the other fields without building anything.
#[derive(Deserialize)]
struct EntryInstant {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

impl Tx<'_> {
    /// The figures of `card` at `now`.
    pub fn card_figures(
        &self,
        card: &CardId,
        now: OffsetDateTime,
    ) -> Result<CardFigures, JournalError> {
        let cached = self
            .inner
            .prepare_cached(
                "SELECT balance, pending, tier, as_of, included_seq, reserved, leased FROM cards WHERE card = ?1",
            )?
            .query_row([card.as_str()], |r| {
                Ok((
                    HqFigures {
                        balance: Points(r.get(0)?),
                        pending: Points(r.get(1)?),
                        reserved_elsewhere: Points(r.get(5)?),
                        leased_elsewhere: Points(r.get(6)?),
                        tier: r.get(2)?,
                        as_of: OffsetDateTime::parse(&r.get::<_, String>(3)?, &Rfc3339).ok(),
                    },
                    r.get::<_, i64>(4)?,
                ))
            })
            .optional()?;
        let included = cached.as_ref().map_or(0, |(_, seq)| *seq);
        let running_through = |seq: Option<i64>| -> Result<i64, JournalError> {
            Ok(self
                .inner
                .prepare_cached(
                    "SELECT running FROM card_running WHERE card = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row(params![card.as_str(), seq.unwrap_or(i64::MAX)], |r| r.get(0))
                .optional()?
                .unwrap_or(0))
        };
        // Both are running totals written checked; their difference may still not fit
        // (one near i64::MAX, the other near i64::MIN): then it is saturated, and the
        // balance limit at the till refuses anything that would add to it.
        let local_balance = running_through(None)?.saturating_sub(running_through(Some(included))?);
        // Only entries whose maturity is in the future, which the pending period bounds.
        let local_pending: i64 = self
            .inner
            .prepare_cached(
                "SELECT COALESCE(SUM(delta_pending), 0) FROM entries INDEXED BY entries_pending_by_card
                 WHERE card = ?1 AND matures_at_unix > ?3 AND seq > ?2",
            )?
            .query_row(
                params![card.as_str(), included, now.unix_timestamp()],
                |r| r.get(0),
            )?;
        // The entry's own instant (`at_unix` is whole seconds, coarser than HQ's). The
        // card's newest entry is found by its running total (a row for every entry of a
        // card), so entries need no index of their own by card.
        let local_as_of = self
            .inner
            .prepare_cached(
                "SELECT e.body FROM card_running AS c JOIN entries AS e ON e.seq = c.seq
                 WHERE c.card = ?1 AND c.seq > ?2 ORDER BY c.seq DESC LIMIT 1",
            )?
            .query_row(params![card.as_str(), included], |r| r.get::<_, String>(0))
            .optional()?
            .map(|body| serde_json::from_str::<EntryInstant>(&body).map(|e| e.at))
            .transpose()
            .map_err(JournalError::data)?;
        let held = self.held_points(card)?;
        let blocked = self
            .inner
            .prepare_cached("SELECT 1 FROM blocked_cards WHERE card = ?1")?
            .exists([card.as_str()])?;
        Ok(CardFigures {
            hq: cached.map(|(figures, _)| figures),
            local_balance: Points(local_balance),
            local_pending: Points(local_pending),
            local_as_of,
            held,
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
