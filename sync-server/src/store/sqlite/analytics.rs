//! The KPI aggregates and what the marketing reports read, in SQLite.

use super::session::{Param, SqliteSession, int, text};
use crate::ledger::kpi::{DailyTotals, KpiDelta, MemberActivity, MemberWindows};
use crate::store::Result;
use crate::store::encode::to_db;
use crate::store::rows::{self, Columns};
use crate::store::statements::{AnalyticsRows, KpiScope, TierCards, TierMoveCount};
use protocol::{CardId, Money, StoreId};
use rusqlite::params_from_iter;
use std::cell::Cell;
use time::OffsetDateTime;

impl AnalyticsRows for SqliteSession<'_> {
    async fn member_purchases(&mut self) -> Result<Vec<(CardId, OffsetDateTime, Money)>> {
        self.all(
            "SELECT card, at, spend_minor FROM entries
             WHERE card IS NOT NULL
               AND ((kind = 'sale' AND json_array_length(body, '$.body.sale.lines') > 0)
                    OR kind = 'return')
               AND NOT EXISTS (SELECT 1 FROM quarantine q
                               WHERE q.entry_id = entries.id AND q.released_at IS NULL)
             ORDER BY card, at",
            [],
            |r| rows::member_purchase(r),
        )
    }

    /// No multi-row `ON CONFLICT … DO UPDATE`: SQLite runs that update with `ABORT`
    /// whatever the statement says, and a statement that may abort after writing
    /// more than one row keeps a statement journal, a copy of every page it changes.
    /// The sums are added by key (a push adds to one or two rows of each), then the
    /// rows none existed for are inserted; first days as [`SqliteSession::add_first_days`]
    /// says. Each statement runs `OR FAIL`: a failure undoes the whole operation
    /// (`super::group`), as with [`SqliteSession::insert_many`].
    async fn add_kpi(&mut self, delta: &KpiDelta) -> Result<()> {
        let mut daily = Vec::new();
        for (k, t) in &delta.daily {
            let key = [
                int(k.day.into()),
                text(k.store.as_str()),
                int(k.member.into()),
            ];
            let sums = [
                int(t.receipts),
                int(t.revenue_minor),
                int(t.items),
                int(t.discount_minor),
                int(t.points_accrued),
                int(t.points_redeemed),
            ];
            let added = self.execute(
                "UPDATE OR FAIL kpi_daily SET receipts = receipts + ?4,
                     revenue_minor = revenue_minor + ?5, items = items + ?6,
                     discount_minor = discount_minor + ?7,
                     points_accrued = points_accrued + ?8,
                     points_redeemed = points_redeemed + ?9
                 WHERE day = ?1 AND store = ?2 AND member = ?3",
                params_from_iter(key.iter().chain(&sums)),
            )?;
            if added == 0 {
                let [a, b, c] = key;
                let [d, e, f, g, h, i] = sums;
                daily.push([a, b, c, d, e, f, g, h, i]);
            }
        }
        self.insert_many(
            "INSERT INTO kpi_daily (day, store, member, receipts, revenue_minor, items,
                                    discount_minor, points_accrued, points_redeemed)",
            "",
            &daily,
        )?;
        let days: Vec<_> = delta
            .member_days
            .iter()
            .map(|(card, day, store)| {
                [
                    int((*day).into()),
                    text(card.as_str()),
                    text(store.as_str()),
                ]
            })
            .collect();
        self.insert_many(
            "INSERT INTO kpi_member_days (day, card, store)",
            "ON CONFLICT DO NOTHING",
            &days,
        )?;
        let firsts: Vec<_> = delta
            .first_days
            .iter()
            .map(|(card, day)| [text(card.as_str()), int((*day).into())])
            .collect();
        self.add_first_days(&firsts)?;
        let mut categories = Vec::new();
        for (k, t) in &delta.categories {
            let key = [
                int(k.day.day.into()),
                text(k.day.store.as_str()),
                int(k.day.member.into()),
                text(&k.category),
            ];
            let sums = [int(t.revenue_minor), int(t.items)];
            let added = self.execute(
                "UPDATE OR FAIL kpi_category_daily SET revenue_minor = revenue_minor + ?5,
                     items = items + ?6
                 WHERE day = ?1 AND store = ?2 AND member = ?3 AND category = ?4",
                params_from_iter(key.iter().chain(&sums)),
            )?;
            if added == 0 {
                let [a, b, c, d] = key;
                let [e, f] = sums;
                categories.push([a, b, c, d, e, f]);
            }
        }
        self.insert_many(
            "INSERT INTO kpi_category_daily (day, store, member, category, revenue_minor, items)",
            "",
            &categories,
        )
    }

    async fn kpi_days(&mut self, scope: KpiScope<'_>) -> Result<Vec<(i32, bool, DailyTotals)>> {
        self.all(
            "SELECT day, member, SUM(receipts), SUM(revenue_minor), SUM(items),
                    SUM(discount_minor), SUM(points_accrued), SUM(points_redeemed)
             FROM kpi_daily
             WHERE day BETWEEN ?1 AND ?2 AND (?3 IS NULL OR store = ?3)
             GROUP BY day, member ORDER BY day, member",
            (scope.from, scope.to, scope.store.map(|s| s.as_str())),
            |r| rows::kpi_day(r),
        )
    }

    async fn member_activity(
        &mut self,
        windows: &MemberWindows,
        store: Option<&StoreId>,
    ) -> Result<MemberActivity> {
        let bounds = windows.bounds();
        let store = store.map(StoreId::as_str);
        let mut params: Vec<&dyn rusqlite::ToSql> =
            bounds.iter().map(|d| d as &dyn rusqlite::ToSql).collect();
        params.push(&store);
        self.one(MEMBER_ACTIVITY, params.as_slice(), |r| {
            rows::member_activity(r)
        })
    }

    async fn new_members(&mut self, scope: KpiScope<'_>) -> Result<i64> {
        self.one(
            NEW_MEMBERS,
            (scope.from, scope.to, scope.store.map(|s| s.as_str())),
            |r| r.int(0),
        )
    }

    async fn cohort_activity(&mut self, scope: KpiScope<'_>) -> Result<Vec<(i32, i32, i64)>> {
        self.all(
            COHORT_ACTIVITY,
            (scope.from, scope.to, scope.store.map(|s| s.as_str())),
            |r| rows::cohort_cell(r),
        )
    }

    async fn points_expired(&mut self, from: OffsetDateTime, to: OffsetDateTime) -> Result<i64> {
        self.one(POINTS_EXPIRED, (to_db(from), to_db(to)), |r| r.int(0))
    }

    async fn points_expiring(&mut self, from: OffsetDateTime, to: OffsetDateTime) -> Result<i64> {
        self.one(
            "SELECT COALESCE(SUM(remaining), 0) FROM lots
             WHERE remaining > 0 AND expires_at >= ?1 AND expires_at < ?2",
            (to_db(from), to_db(to)),
            |r| r.int(0),
        )
    }

    async fn category_revenue(
        &mut self,
        scope: KpiScope<'_>,
        categories: &[String],
    ) -> Result<(i64, i64)> {
        let list = serde_json::to_string(categories)
            .map_err(|e| crate::store::StoreError::Backend(Box::new(e)))?;
        self.one(
            "SELECT COALESCE(SUM(CASE WHEN member = 1 THEN revenue_minor END), 0),
                    COALESCE(SUM(CASE WHEN member = 0 THEN revenue_minor END), 0)
             FROM kpi_category_daily
             WHERE day BETWEEN ?1 AND ?2 AND (?3 IS NULL OR store = ?3)
               AND (?4 = '[]' OR category IN (SELECT value FROM json_each(?4)))",
            (scope.from, scope.to, scope.store.map(|s| s.as_str()), list),
            |r| Ok((r.int(0)?, r.int(1)?)),
        )
    }

    async fn cards_per_tier(&mut self) -> Result<Vec<TierCards>> {
        self.all(
            "SELECT tier, COUNT(*), SUM(MAX(balance, 0)), SUM(pending)
             FROM cards GROUP BY tier ORDER BY tier",
            [],
            |r| rows::tier_cards(r),
        )
    }

    async fn tier_moves(&mut self, from: i32, to: i32) -> Result<Vec<TierMoveCount>> {
        self.all(
            "SELECT from_tier, to_tier, COUNT(*) FROM kpi_tier_moves
             WHERE day BETWEEN ?1 AND ?2
             GROUP BY from_tier, to_tier ORDER BY from_tier, to_tier",
            (from, to),
            |r| Ok((r.opt_text(0)?, r.opt_text(1)?, r.int(2)?)),
        )
    }
}

/// The statement of `member_activity` (see PostgreSQL's): one pass over the members'
/// days of the windows' span (a range of the key), grouped by card, where each count
/// was a pass of its own.
const MEMBER_ACTIVITY: &str = "SELECT COUNT(*) FILTER (WHERE period),
            COUNT(*) FILTER (WHERE last_30),
            COUNT(*) FILTER (WHERE last_90),
            COUNT(*) FILTER (WHERE previous AND NOT period)
     FROM (SELECT MAX(day BETWEEN ?1 AND ?2) AS period,
                  MAX(day BETWEEN ?3 AND ?4) AS last_30,
                  MAX(day BETWEEN ?5 AND ?6) AS last_90,
                  MAX(day BETWEEN ?7 AND ?8) AS previous
           FROM kpi_member_days
           WHERE day BETWEEN ?9 AND ?10 AND (?11 IS NULL OR store = ?11)
           GROUP BY card)";

/// The statement of `new_members`. One store's members are the period's cards of the
/// store, read once through the key's leading `day` (a list SQLite builds once): an
/// `EXISTS` per member, looking its days up by card, needs an index by card, which
/// migration 12 dropped (without it each member scanned the period's member-days).
pub(super) const NEW_MEMBERS: &str = "SELECT COUNT(*) FROM kpi_members m
     WHERE m.first_day BETWEEN ?1 AND ?2
       AND (?3 IS NULL OR m.card IN (
           SELECT d.card FROM kpi_member_days d
           WHERE d.store = ?3 AND d.day BETWEEN ?1 AND ?2))";

/// The statement of `cohort_activity`. A number is a Julian day number to SQLite's
/// date functions, as stored. Each day of the period is turned into its month once
/// (`months`, materialized), where two `strftime` per member-day took most of the
/// query; and the members' days are cut down to distinct (card, month) pairs before
/// they meet the first days, as on PostgreSQL.
const COHORT_ACTIVITY: &str = "WITH RECURSIVE
         days(day) AS (SELECT ?1 UNION ALL SELECT day + 1 FROM days WHERE day < ?2),
         months(day, month) AS MATERIALIZED (
             SELECT day, CAST(strftime('%Y', day) AS INTEGER) * 12
                         + CAST(strftime('%m', day) AS INTEGER) - 1
             FROM days),
         active(card, month) AS (
             SELECT DISTINCT d.card, dm.month
             FROM kpi_member_days d JOIN months dm ON dm.day = d.day
             WHERE ?3 IS NULL OR d.store = ?3)
     SELECT fm.month, a.month, COUNT(*)
     FROM active a
     JOIN kpi_members m ON m.card = a.card
     JOIN months fm ON fm.day = m.first_day
     GROUP BY 1, 2 ORDER BY 1, 2";

/// The statement of `points_expired`: expiry rows alone, read through their partial
/// index (`schema::V6_LEDGER_EXPIRY`).
pub(super) const POINTS_EXPIRED: &str = "SELECT COALESCE(SUM(-delta_balance), 0) FROM ledger
     WHERE kind = 'expiry' AND at >= ?1 AND at < ?2";

thread_local! {
    /// Whether the writer's last members were new (see
    /// [`SqliteSession::add_first_days`]).
    static NEW_MEMBERS_LAST: Cell<bool> = const { Cell::new(true) };
}

/// The statement that inserts first days and moves stored ones earlier.
const FIRST_DAYS: (&str, &str) = (
    "INSERT INTO kpi_members (card, first_day)",
    "ON CONFLICT (card) DO UPDATE SET first_day = excluded.first_day
     WHERE excluded.first_day < first_day",
);

impl SqliteSession<'_> {
    /// Inserts the members' first days, and moves a stored one earlier where a receipt
    /// is. A member seen before keeps its row untouched unless the day is earlier:
    /// rewriting the same first day would still write the row and its
    /// `kpi_members_first` entry (SQLite does not compare), once per entry of a
    /// returning card.
    ///
    /// That upsert keeps a statement journal for every row it writes (see
    /// [`AnalyticsRows::add_kpi`]), the new members' rows included; a plain insert
    /// that leaves stored members alone (`DO NOTHING`) keeps none, but when a member
    /// was stored the upsert must run after it, a second statement. Both orders write
    /// the same rows; which one is cheaper depends on whether the members are new, so
    /// each push takes the one its predecessor on this thread would have wanted: the
    /// insert first while members come new (a chain's first days, the callgrind
    /// harness of docs/performance.md), the upsert alone once they return (the
    /// push benchmark's steady state, where the upsert writes nothing).
    fn add_first_days(&self, firsts: &[[Param<'_>; 2]]) -> Result<()> {
        let (head, upsert) = FIRST_DAYS;
        if NEW_MEMBERS_LAST.get() {
            let inserted = self.insert_counted(head, "ON CONFLICT DO NOTHING", firsts)?;
            if inserted < firsts.len() {
                NEW_MEMBERS_LAST.set(false);
                self.insert_many(head, upsert, firsts)?;
            }
        } else if self.insert_counted(head, upsert, firsts)? == firsts.len() {
            NEW_MEMBERS_LAST.set(!firsts.is_empty());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::{Session, TxKind};
    use crate::store::caches::Caches;
    use crate::store::sqlite::session::block_on;
    use crate::store::statements::KpiScope;

    #[test]
    fn a_members_first_day_moves_only_earlier_and_a_later_day_writes_nothing() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::super::schema::migrations()
            .to_latest(&mut conn)
            .unwrap();
        let caches = Caches::default();
        let mut s = SqliteSession::new(&mut conn, &caches);
        block_on(s.begin(TxKind::Write)).unwrap();
        let card = CardId::parse("4000000000001").unwrap();
        let first = |day| KpiDelta {
            first_days: vec![(card.clone(), day)],
            ..KpiDelta::default()
        };
        // Rows written by one `add_kpi` of a first day alone, and the day stored after.
        let mut add = |day| {
            let before = s.conn().total_changes();
            block_on(s.add_kpi(&first(day))).unwrap();
            let written = s.conn().total_changes() - before;
            let stored: i32 = s
                .one("SELECT first_day FROM kpi_members", [], |r| Ok(r.get(0)?))
                .unwrap();
            (written, stored)
        };
        assert_eq!(add(2_460_000), (1, 2_460_000));
        assert_eq!(
            add(2_460_000),
            (0, 2_460_000),
            "the same day rewrote the row"
        );
        assert_eq!(
            add(2_460_005),
            (0, 2_460_000),
            "a later day rewrote the row"
        );
        assert_eq!(add(2_459_990), (1, 2_459_990));
    }

    /// One store's new members as they were counted with `kpi_member_days_card`
    /// (before migration 12): an `EXISTS` per member, by card.
    const NEW_MEMBERS_BY_CARD: &str = "SELECT COUNT(*) FROM kpi_members m
         WHERE m.first_day BETWEEN ?1 AND ?2
           AND (?3 IS NULL OR EXISTS (
               SELECT 1 FROM kpi_member_days d
               WHERE d.card = m.card AND d.store = ?3 AND d.day BETWEEN ?1 AND ?2))";

    /// Member-days of 300 cards over 200 days at three stores (a fixed pseudo-random
    /// draw, each card's first day its earliest, as a push keeps it): `(day, card,
    /// store)`.
    fn member_days() -> Vec<(i32, String, String)> {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        };
        let mut days: Vec<_> = (0..3_000)
            .map(|_| {
                let day = 2_460_676 + i32::try_from(next(200)).unwrap();
                let card = format!("{:013}", 4_000_000_000_000_u64 + next(300));
                (day, card, format!("store-{}", next(3)))
            })
            .collect();
        days.sort();
        days.dedup();
        days
    }

    /// The member windows' counts, the new members and the cohort cells of one scope.
    type MemberReports = (MemberActivity, i64, Vec<(i32, i32, i64)>);

    /// What every member-day report answers over `periods` × (the chain, each store),
    /// one store's new members read by `new_members`.
    fn member_reports(
        s: &mut SqliteSession<'_>,
        periods: &[(i32, i32)],
        new_members: &str,
    ) -> Vec<MemberReports> {
        let stores: Vec<StoreId> = (0..3)
            .map(|n| StoreId::parse(&format!("store-{n}")).unwrap())
            .collect();
        let mut out = Vec::new();
        for &(from, to) in periods {
            for store in [None].into_iter().chain(stores.iter().map(Some)) {
                let scope = KpiScope { from, to, store };
                let windows = MemberWindows {
                    period: (from, to),
                    last_30: (to - 29, to),
                    last_90: (to - 89, to),
                    previous: (2 * from - to - 1, from - 1),
                };
                let activity = block_on(s.member_activity(&windows, store)).unwrap();
                let new = s
                    .one(new_members, (from, to, store.map(StoreId::as_str)), |r| {
                        r.int(0)
                    })
                    .unwrap();
                let cohorts = block_on(s.cohort_activity(scope)).unwrap();
                out.push((activity, new, cohorts));
            }
        }
        out
    }

    /// Migration 12 dropped `kpi_member_days_card`: every member-day report answers
    /// as it did with the index, one store's new members are those a plain count of
    /// the rows finds, and no member looks its days up one by one.
    #[test]
    fn member_day_reports_answer_alike_without_the_card_index() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        let migrations = super::super::schema::migrations();
        migrations.to_version(&mut conn, 11).unwrap();
        let days = member_days();
        for (day, card, store) in &days {
            conn.execute(
                "INSERT INTO kpi_member_days (day, card, store) VALUES (?1, ?2, ?3)",
                (day, card, store),
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO kpi_members (card, first_day)
             SELECT card, MIN(day) FROM kpi_member_days GROUP BY card",
        )
        .unwrap();
        let periods = [
            (2_460_676, 2_460_875),
            (2_460_676, 2_460_690),
            (2_460_686, 2_460_716),
        ];
        let caches = Caches::default();
        let before = {
            let mut s = SqliteSession::new(&mut conn, &caches);
            member_reports(&mut s, &periods, NEW_MEMBERS_BY_CARD)
        };
        migrations.to_latest(&mut conn).unwrap();
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'kpi_member_days'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(indexes, Vec::<String>::new());
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {NEW_MEMBERS}"))
            .unwrap()
            .query_map((1, 2, "store-0"), |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            !plan.iter().any(|step| step.contains("CORRELATED")),
            "{plan:?}"
        );
        let mut s = SqliteSession::new(&mut conn, &caches);
        let after = member_reports(&mut s, &periods, NEW_MEMBERS);
        assert_eq!(before, after);

        // One store's new members, counted from the rows: first day in the period and
        // a day at the store in the period.
        let first_day = |card: &str| days.iter().filter(|d| d.1 == card).map(|d| d.0).min();
        let mut counted = Vec::new();
        for &(from, to) in &periods {
            for store in [None, Some("store-0"), Some("store-1"), Some("store-2")] {
                let mut cards: Vec<&str> = days
                    .iter()
                    .filter(|(day, _, at)| {
                        store.is_none_or(|s| s == at) && (from..=to).contains(day)
                    })
                    .map(|(_, card, _)| card.as_str())
                    .filter(|card| first_day(card).is_some_and(|f| (from..=to).contains(&f)))
                    .collect();
                cards.sort_unstable();
                cards.dedup();
                counted.push(i64::try_from(cards.len()).unwrap());
            }
        }
        let read: Vec<i64> = after.iter().map(|(_, new, _)| *new).collect();
        assert_eq!(read, counted);
        assert!(counted.iter().all(|&n| n > 0), "{counted:?}");
    }
}
