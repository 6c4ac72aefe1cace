//! Cards and what hangs off them in SQLite, read in chunked `IN` lists and written in
//! multi-row inserts through cached statements.
//!
//! No row locks: the one writer connection's `BEGIN IMMEDIATE` already keeps every
//! other writer out, so "locking" a card is loading it, and a card HQ never held is
//! simply absent (the ledger treats it as new and [`CardRows::write_cards`] inserts
//! it).

use super::session::{
    CHUNK, NULL, Param, SqliteSession, boolean, int, opt_int, opt_text, owned_text, text,
};
use crate::ledger::{CardRecord, FlagRow, LedgerRow, Lot, LotKey, Spend};
use crate::store::encode::{opt_to_db, to_db};
use crate::store::rows::{self, CARD_COLUMNS, LOT_COLUMNS, split_sum};
use crate::store::statements::{CardRows, Locked, Missing};
use crate::store::{Result, StoreError};
use protocol::{CardId, StoreId};
use rusqlite::params_from_iter;
use std::collections::HashMap;
use time::OffsetDateTime;

fn card_keys<'a>(cards: &[&'a CardId]) -> Vec<Param<'a>> {
    cards.iter().map(|c| text(c.as_str())).collect()
}

impl SqliteSession<'_> {
    /// The stored states of `cards` (absent cards are left out).
    ///
    /// The keys are a `VALUES` list joined to the table, each looked up by key in
    /// turn, not an `IN (…)` list, for which SQLite fills a temporary index with the
    /// keys (`NULL` padding included) before it seeks them: 10 cards padded to 16
    /// cost about 80,000 instructions in `sqlite3_step` that way, 50,000 joined
    /// (docs/performance.md). The open lots are read alike.
    fn load_cards(&self, cards: &[&CardId]) -> Result<HashMap<CardId, CardRecord>> {
        let states = self.query_in(
            &format!(
                "SELECT {CARD_COLUMNS} FROM (VALUES {{rows}}) AS k
                 CROSS JOIN cards ON cards.card = k.column1"
            ),
            &card_keys(cards),
            &[],
            |r| rows::card_record(r, 0),
        )?;
        Ok(rows::by_card(states))
    }
}

/// The head of the cards' multi-row inserts.
const CARDS_INSERT: &str =
    "INSERT INTO cards (card, balance, pending, tier, spend_12m, spend_drops_at,
                    welcome_given, seen, blocked, flags, reserved, leased, change_pos, updated_at)";

/// A card's row as [`CARDS_INSERT`] lists its columns, at change position `pos`.
fn card_row<'a>(s: &'a CardRecord, pos: i64, now: OffsetDateTime) -> [Param<'a>; 14] {
    [
        text(s.card.as_str()),
        int(s.balance.get()),
        int(s.pending.get()),
        opt_text(s.tier.as_deref()),
        int(s.spend_12m.get()),
        opt_int(opt_to_db(s.spend_drops_at)),
        boolean(s.welcome_given),
        boolean(s.seen),
        boolean(s.blocked),
        int(i64::from(s.flags.bits())),
        int(s.reserved.get()),
        int(s.leased.get()),
        int(pos),
        int(to_db(now)),
    ]
}

/// The rows of `cards`, at consecutive change positions from `first`.
fn card_values<'a>(
    cards: &[&'a CardRecord],
    first: i64,
    now: OffsetDateTime,
) -> Vec<[Param<'a>; 14]> {
    cards
        .iter()
        .zip(first..)
        .map(|(s, pos)| card_row(s, pos, now))
        .collect()
}

impl SqliteSession<'_> {
    /// Reserves `n` consecutive change positions in one statement; the first, or
    /// `None` for none.
    fn reserve_positions(&self, n: usize) -> Result<Option<i64>> {
        if n == 0 {
            return Ok(None);
        }
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let last: i64 = self.one(
            "UPDATE change_counter SET pos = pos + ?1 WHERE id = 1 RETURNING pos",
            [n],
            |r| Ok(r.get(0)?),
        )?;
        Ok(Some(last - n + 1))
    }
}

impl CardRows for SqliteSession<'_> {
    async fn lock_cards(&mut self, cards: &[&CardId], _missing: Missing) -> Result<Locked> {
        Ok(Locked {
            cards: self.load_cards(cards)?,
            created: Default::default(),
        })
    }

    async fn lock_existing_cards(
        &mut self,
        cards: &[&CardId],
    ) -> Result<HashMap<CardId, CardRecord>> {
        self.load_cards(cards)
    }

    async fn spend_since(
        &mut self,
        cards: &[&CardId],
        since: OffsetDateTime,
    ) -> Result<Vec<(CardId, Spend)>> {
        self.query_in(
            &format!(
                "SELECT card, {}, MIN(at) FROM entries
                 WHERE card IN ({{keys}}) AND at > ?{} GROUP BY card",
                split_sum("spend_minor", ""),
                CHUNK + 1
            ),
            &card_keys(cards),
            &[int(to_db(since))],
            |r| rows::spend(r),
        )
    }

    async fn open_lots(&mut self, cards: &[&CardId]) -> Result<Vec<Lot>> {
        self.query_in(
            &format!(
                "SELECT {LOT_COLUMNS} FROM (VALUES {{rows}}) AS k
                 CROSS JOIN lots ON lots.card = k.column1 WHERE remaining > 0"
            ),
            &card_keys(cards),
            &[],
            |r| rows::lot(r),
        )
    }

    async fn lots(&mut self, ids: &[i64]) -> Result<Vec<Lot>> {
        let keys: Vec<Param<'_>> = ids.iter().map(|id| int(*id)).collect();
        self.query_in(
            &format!("SELECT {LOT_COLUMNS} FROM lots WHERE id IN ({{keys}})"),
            &keys,
            &[],
            |r| rows::lot(r),
        )
    }

    /// Each card takes a fresh change position (all reserved in one statement).
    async fn write_cards(&mut self, cards: &[&CardRecord], now: OffsetDateTime) -> Result<()> {
        let Some(first) = self.reserve_positions(cards.len())? else {
            return Ok(());
        };
        self.insert_many(
            CARDS_INSERT,
            "ON CONFLICT (card) DO UPDATE SET
                balance = excluded.balance, pending = excluded.pending, tier = excluded.tier,
                spend_12m = excluded.spend_12m, spend_drops_at = excluded.spend_drops_at,
                welcome_given = excluded.welcome_given,
                seen = excluded.seen, flags = excluded.flags, reserved = excluded.reserved,
                leased = excluded.leased, change_pos = excluded.change_pos,
                updated_at = excluded.updated_at",
            &card_values(cards, first, now),
        )
    }

    /// The push knows which of its cards have a row (it read them in this
    /// transaction, and no other writer runs meanwhile): the new ones go in plain
    /// multi-row `INSERT OR FAIL`s, the others are updated by key, each card at the
    /// position [`Self::write_cards`] would give it. No `ON CONFLICT … DO UPDATE`:
    /// SQLite runs that update with `ABORT` whatever the statement says, and a
    /// statement that may abort after writing keeps a statement journal, a copy of
    /// every page it changes (about 5 % of the writer's instructions per push with
    /// the KPI upserts, docs/performance.md).
    async fn write_push_cards(
        &mut self,
        existing: &[&CardRecord],
        new: &[&CardRecord],
        now: OffsetDateTime,
    ) -> Result<()> {
        let Some(first) = self.reserve_positions(existing.len() + new.len())? else {
            return Ok(());
        };
        for (s, pos) in existing.iter().zip(first..) {
            let [card, rest @ ..] = card_row(s, pos, now);
            let [b, p, t, sp, d, w, seen, _blocked, f, r, l, c, u] = rest;
            let updated = self.execute(
                "UPDATE OR FAIL cards SET balance = ?2, pending = ?3, tier = ?4, spend_12m = ?5,
                    spend_drops_at = ?6, welcome_given = ?7, seen = ?8, flags = ?9,
                    reserved = ?10, leased = ?11, change_pos = ?12, updated_at = ?13
                 WHERE card = ?1",
                params_from_iter([card, b, p, t, sp, d, w, seen, f, r, l, c, u]),
            )?;
            if updated != 1 {
                return Err(StoreError::corrupt(format!(
                    "card {} was read in this transaction and has no row",
                    s.card.masked()
                )));
            }
        }
        let first_new = first + i64::try_from(existing.len()).unwrap_or(i64::MAX);
        self.insert_many(CARDS_INSERT, "", &card_values(new, first_new, now))
    }

    async fn insert_lots(&mut self, lots: &[Lot]) -> Result<()> {
        let values: Vec<_> = lots
            .iter()
            .map(|l| {
                [
                    text(l.card.as_str()),
                    text(l.kind.as_str()),
                    l.source_entry.map_or(NULL, |u| owned_text(u.to_string())),
                    int(to_db(l.earned_at)),
                    opt_int(opt_to_db(l.matures_at)),
                    boolean(l.matured),
                    opt_int(opt_to_db(l.expires_at)),
                    int(l.amount.get()),
                    int(l.remaining.get()),
                ]
            })
            .collect();
        self.insert_many(
            "INSERT INTO lots (card, kind, source_entry, earned_at, matures_at, matured,
                               expires_at, amount, remaining)",
            "",
            &values,
        )
    }

    async fn update_lots(&mut self, lots: &[Lot]) -> Result<()> {
        for l in lots {
            if let LotKey::Stored(id) = l.key {
                self.execute(
                    "UPDATE lots SET remaining = ?2, matured = ?3 WHERE id = ?1",
                    (id, l.remaining.get(), l.matured),
                )?;
            }
        }
        Ok(())
    }

    async fn insert_ledger(&mut self, rows: &[LedgerRow]) -> Result<()> {
        let values: Vec<_> = rows
            .iter()
            .map(|r| {
                [
                    text(r.card.as_str()),
                    text(r.kind.as_str()),
                    int(r.delta_balance.get()),
                    int(r.delta_pending.get()),
                    int(to_db(r.at)),
                    r.entry_id.map_or(NULL, |u| owned_text(u.to_string())),
                ]
            })
            .collect();
        self.insert_many(
            "INSERT INTO ledger (card, kind, delta_balance, delta_pending, at, entry_id)",
            "",
            &values,
        )
    }

    async fn insert_flags(&mut self, flags: &[FlagRow]) -> Result<()> {
        for f in flags {
            self.execute(
                "INSERT INTO flags (entry_id, card, kind, detail) VALUES (?1, ?2, ?3, ?4)",
                (
                    f.entry_id.to_string(),
                    f.card.as_str(),
                    f.kind.as_str(),
                    f.detail.as_str(),
                ),
            )?;
        }
        Ok(())
    }

    /// Each new membership takes its card's change position (the feed's invariant,
    /// schema migration 13): the push and the quarantine retry write every card they
    /// associate before this, so the card's first change reaches the store. A card
    /// with no row (none should be) is associated at position 0, as a membership
    /// naming no card was kept before, for `verify` to report. `OR FAIL`, as
    /// [`SqliteSession::insert_many`]'s: no statement journal.
    async fn associate(&mut self, store: &StoreId, cards: &[String]) -> Result<()> {
        let keys: Vec<Param<'_>> = cards.iter().map(|c| text(c)).collect();
        self.query_in(
            &format!(
                "INSERT OR FAIL INTO store_cards (store, card, change_pos)
                 SELECT ?{}, k.column1, coalesce(c.change_pos, 0)
                 FROM (VALUES {{rows}}) AS k LEFT JOIN cards c ON c.card = k.column1
                 WHERE k.column1 IS NOT NULL
                 ON CONFLICT DO NOTHING",
                CHUNK + 1
            ),
            &keys,
            &[text(store.as_str())],
            |_| Ok(()),
        )
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::super::session::{SqliteSession, block_on, made_statements};
    use crate::ledger::CardRecord;
    use crate::ledger::kpi::{CategoryKey, CategoryTotals, DailyTotals, DayKey, KpiDelta};
    use crate::store::backend::{Session, TxKind};
    use crate::store::caches::Caches;
    use crate::store::statements::{AnalyticsRows, CardRows};
    use protocol::{CardId, Points, StoreId};
    use rusqlite::Connection;
    use time::macros::datetime;

    /// Whether a statement's program may stop half-way with `ABORT`, for which SQLite
    /// keeps a statement journal when it writes several rows: the opcodes SQLite's own
    /// check (`sqlite3VdbeAssertMayAbort`) looks for, trigger programs included.
    fn may_abort(conn: &Connection, sql: &str) -> bool {
        let mut explain = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
        // Unbound parameters are NULL: the program is the same.
        let mut rows = explain.raw_query();
        let mut ops: Vec<(String, i64, i64)> = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            ops.push((r.get(1).unwrap(), r.get(2).unwrap(), r.get(3).unwrap()));
        }
        ops.iter().any(|(op, p1, p2)| {
            matches!(op.as_str(), "Function" | "PureFunc")
                || (matches!(op.as_str(), "Halt" | "HaltIfNull") && *p1 != 0 && *p2 == 2)
        })
    }

    /// The card read and the open lots look each key up in turn (a `VALUES` list
    /// joined to the table), and find what the `IN (…)` lists found: no temporary
    /// index of the keys is built at each run.
    #[test]
    fn cards_and_open_lots_are_read_without_a_temporary_index_of_the_keys() {
        let mut conn = migrated(
            "INSERT INTO cards (card, balance, pending, spend_12m, welcome_given, seen,
                                change_pos, updated_at)
             VALUES ('4000000000001', 5, 0, 0, 1, 1, 1, 0),
                    ('4000000000003', 6, 0, 0, 1, 1, 2, 0);
             INSERT INTO lots (card, kind, earned_at, matured, amount, remaining)
             VALUES ('4000000000001', 'accrual', 0, 1, 5, 5),
                    ('4000000000001', 'accrual', 0, 1, 5, 0),
                    ('4000000000003', 'accrual', 0, 1, 6, 6);",
        );
        let caches = Caches::default();
        let mut session = SqliteSession::new(&mut conn, &caches);
        let keys: Vec<CardId> = (1..4).map(card).collect();
        let keys: Vec<&CardId> = keys.iter().collect();
        let (cards, lots) = block_on(async {
            let cards = session.lock_existing_cards(&keys).await?;
            let lots = session.open_lots(&keys).await?;
            Ok::<_, crate::store::StoreError>((cards, lots))
        })
        .unwrap();
        drop(session);
        let mut found: Vec<(&str, i64)> = cards
            .values()
            .map(|c| (c.card.as_str(), c.balance.get()))
            .collect();
        found.sort_unstable();
        assert_eq!(found, [("4000000000001", 5), ("4000000000003", 6)]);
        let mut open: Vec<(&str, i64)> = lots
            .iter()
            .map(|l| (l.card.as_str(), l.remaining.get()))
            .collect();
        open.sort_unstable();
        assert_eq!(open, [("4000000000001", 5), ("4000000000003", 6)]);
        let reads: Vec<String> = made_statements()
            .into_iter()
            .filter(|sql| sql.starts_with("SELECT"))
            .collect();
        assert_eq!(reads.len(), 2, "{reads:?}");
        for sql in reads {
            let mut explain = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let mut rows = explain.raw_query();
            while let Some(r) = rows.next().unwrap() {
                assert_ne!(r.get::<_, String>(1).unwrap(), "OpenEphemeral", "{sql}");
            }
        }
    }

    /// A migrated database in memory holding the rows `sql` inserts.
    fn migrated(sql: &str) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrations()
            .to_latest(&mut conn)
            .unwrap();
        conn.execute_batch(sql).unwrap();
        conn
    }

    fn card(n: u32) -> CardId {
        CardId::parse(&format!("400000000{n:04}")).unwrap()
    }

    /// A push's card and KPI writes run no multi-row statement that may abort (such a
    /// statement copies every page it changes into a statement journal, to undo itself
    /// alone; the push's savepoint undoes a failed push already), but the first days'
    /// upsert, which runs for returning members and writes only where a receipt is
    /// earlier than the stored day. The rows are still what the upserts wrote: stored
    /// cards updated, new ones inserted, each at its own change position, sums added
    /// to stored aggregates, first days kept or moved earlier.
    #[test]
    fn a_push_writes_cards_and_aggregates_without_statement_journals() {
        let mut conn = migrated(
            "INSERT INTO cards (card, balance, pending, spend_12m, welcome_given, seen,
                                change_pos, updated_at)
             VALUES ('4000000000001', 5, 0, 0, 1, 1, 0, 0);
             INSERT INTO kpi_daily VALUES (10, 's-1', 1, 1, 100, 1, 0, 5, 0);
             INSERT INTO kpi_category_daily VALUES (10, 's-1', 1, 'dairy', 100, 1);
             INSERT INTO kpi_members VALUES ('4000000000001', 12);",
        );
        let caches = Caches::default();
        let mut session = SqliteSession::new(&mut conn, &caches);
        let now = datetime!(2026-01-01 0:00 UTC);
        let mut stored = CardRecord::new(card(1));
        stored.balance = Points(7);
        stored.tier = Some("gold".into());
        let new: Vec<CardRecord> = (2..5).map(|n| CardRecord::new(card(n))).collect();
        let store = StoreId::parse("s-1").unwrap();
        let key = |member| DayKey {
            day: 10,
            store: store.clone(),
            member,
        };
        let totals = DailyTotals {
            receipts: 2,
            revenue_minor: 50,
            items: 3,
            ..DailyTotals::default()
        };
        let delta = |first_day| KpiDelta {
            daily: vec![(key(true), totals), (key(false), totals)],
            member_days: (1..5).map(|n| (card(n), 10, store.clone())).collect(),
            first_days: (1..5).map(|n| (card(n), first_day)).collect(),
            categories: vec![(
                CategoryKey {
                    day: key(true),
                    category: "dairy".into(),
                },
                CategoryTotals {
                    revenue_minor: 50,
                    items: 3,
                },
            )],
        };
        block_on(async {
            session.begin(TxKind::Write).await?;
            let new: Vec<&CardRecord> = new.iter().collect();
            session.write_push_cards(&[&stored], &new, now).await?;
            // Members new to the thread's last push, then returning ones.
            session.add_kpi(&delta(11)).await?;
            session.add_kpi(&delta(10)).await?;
            session.commit().await
        })
        .unwrap();
        drop(session);
        for sql in made_statements() {
            let first_days = sql.contains("kpi_members") && sql.contains("DO UPDATE");
            if !first_days {
                assert!(!may_abort(&conn, &sql), "{sql}");
            }
        }
        let cards: Vec<(String, i64, Option<String>, i64)> = conn
            .prepare("SELECT card, balance, tier, change_pos FROM cards ORDER BY card")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let positions: Vec<i64> = cards.iter().map(|c| c.3).collect();
        assert_eq!(positions, [1, 2, 3, 4]);
        assert_eq!((cards[0].1, cards[0].2.as_deref()), (7, Some("gold")));
        let sums: Vec<(i64, i64, i64)> = conn
            .prepare("SELECT member, receipts, revenue_minor FROM kpi_daily ORDER BY member")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(sums, [(0, 4, 100), (1, 5, 200)]);
        let category: (i64, i64) = conn
            .query_row(
                "SELECT revenue_minor, items FROM kpi_category_daily",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(category, (200, 7));
        let firsts: Vec<i64> = conn
            .prepare("SELECT first_day FROM kpi_members ORDER BY card")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(firsts, [10, 10, 10, 10]);
    }
}
