//! The KPI aggregates and what the marketing reports read, on PostgreSQL. A push's
//! aggregate rows are written in key order, so concurrent pushes of one store lock
//! them in the same order.

use super::session::PgSession;
use super::sql;
use crate::ledger::kpi::{DailyTotals, KpiDelta, MemberActivity, MemberWindows};
use crate::store::Result;
use crate::store::encode::to_db;
use crate::store::rows::{self, Columns};
use crate::store::statements::{AnalyticsRows, KpiScope, TierCards, TierMoveCount};
use deadpool_postgres::Client;
use protocol::{CardId, Money, StoreId};
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;

impl AnalyticsRows for PgSession<'_> {
    async fn member_purchases(&mut self) -> Result<Vec<(CardId, OffsetDateTime, Money)>> {
        sql::all(
            self.conn().await?,
            "SELECT card, at, spend_minor FROM entries
             WHERE card IS NOT NULL
               AND ((kind = 'sale'
                     AND jsonb_array_length(body::jsonb -> 'body' -> 'sale' -> 'lines') > 0)
                    OR kind = 'return')
               AND NOT EXISTS (SELECT 1 FROM quarantine q
                               WHERE q.entry_id = entries.id AND q.released_at IS NULL)
             ORDER BY card, at",
            &[],
            rows::member_purchase,
        )
        .await
    }

    async fn add_kpi(&mut self, delta: &KpiDelta) -> Result<()> {
        let c = self.conn().await?;
        kpi_daily(c, delta).await?;
        kpi_member_days(c, delta).await?;
        kpi_members(c, delta).await?;
        kpi_categories(c, delta).await
    }

    async fn kpi_days(&mut self, scope: KpiScope<'_>) -> Result<Vec<(i32, bool, DailyTotals)>> {
        sql::all(
            self.conn().await?,
            "SELECT day, member, SUM(receipts)::bigint, SUM(revenue_minor)::bigint,
                    SUM(items)::bigint, SUM(discount_minor)::bigint,
                    SUM(points_accrued)::bigint, SUM(points_redeemed)::bigint
             FROM kpi_daily
             WHERE day BETWEEN $1 AND $2 AND ($3::text IS NULL OR store = $3)
             GROUP BY day, member ORDER BY day, member",
            &[&scope.from, &scope.to, &scope.store.map(|s| s.as_str())],
            rows::kpi_day,
        )
        .await
    }

    async fn member_activity(
        &mut self,
        windows: &MemberWindows,
        store: Option<&StoreId>,
    ) -> Result<MemberActivity> {
        let bounds = windows.bounds();
        let store = store.map(StoreId::as_str);
        let mut params: Vec<&(dyn ToSql + Sync)> =
            bounds.iter().map(|d| d as &(dyn ToSql + Sync)).collect();
        params.push(&store);
        sql::one(
            self.conn().await?,
            MEMBER_ACTIVITY,
            &params,
            rows::member_activity,
        )
        .await
    }

    async fn new_members(&mut self, scope: KpiScope<'_>) -> Result<i64> {
        sql::one(
            self.conn().await?,
            "SELECT COUNT(*) FROM kpi_members m
             WHERE m.first_day BETWEEN $1 AND $2
               AND ($3::text IS NULL OR EXISTS (
                   SELECT 1 FROM kpi_member_days d
                   WHERE d.card = m.card AND d.store = $3 AND d.day BETWEEN $1 AND $2))",
            &[&scope.from, &scope.to, &scope.store.map(|s| s.as_str())],
            |r| r.int(0),
        )
        .await
    }

    async fn cohort_activity(&mut self, scope: KpiScope<'_>) -> Result<Vec<(i32, i32, i64)>> {
        sql::all(
            self.conn().await?,
            COHORT_ACTIVITY,
            &[&scope.from, &scope.to, &scope.store.map(|s| s.as_str())],
            rows::cohort_cell,
        )
        .await
    }

    async fn points_expired(&mut self, from: OffsetDateTime, to: OffsetDateTime) -> Result<i64> {
        sql::one(
            self.conn().await?,
            POINTS_EXPIRED,
            &[&to_db(from), &to_db(to)],
            |r| r.int(0),
        )
        .await
    }

    async fn points_expiring(&mut self, from: OffsetDateTime, to: OffsetDateTime) -> Result<i64> {
        sql::one(
            self.conn().await?,
            "SELECT COALESCE(SUM(remaining), 0)::bigint FROM lots
             WHERE remaining > 0 AND expires_at >= $1 AND expires_at < $2",
            &[&to_db(from), &to_db(to)],
            |r| r.int(0),
        )
        .await
    }

    async fn category_revenue(
        &mut self,
        scope: KpiScope<'_>,
        categories: &[String],
    ) -> Result<(i64, i64)> {
        sql::one(
            self.conn().await?,
            "SELECT COALESCE(SUM(revenue_minor) FILTER (WHERE member), 0)::bigint,
                    COALESCE(SUM(revenue_minor) FILTER (WHERE NOT member), 0)::bigint
             FROM kpi_category_daily
             WHERE day BETWEEN $1 AND $2 AND ($3::text IS NULL OR store = $3)
               AND (cardinality($4::text[]) = 0 OR category = ANY($4::text[]))",
            &[
                &scope.from,
                &scope.to,
                &scope.store.map(|s| s.as_str()),
                &categories,
            ],
            |r| Ok((r.int(0)?, r.int(1)?)),
        )
        .await
    }

    async fn cards_per_tier(&mut self) -> Result<Vec<TierCards>> {
        sql::all(
            self.conn().await?,
            "SELECT tier, COUNT(*), SUM(GREATEST(balance, 0))::bigint, SUM(pending)::bigint
             FROM cards GROUP BY tier ORDER BY tier",
            &[],
            rows::tier_cards,
        )
        .await
    }

    async fn tier_moves(&mut self, from: i32, to: i32) -> Result<Vec<TierMoveCount>> {
        sql::all(
            self.conn().await?,
            "SELECT from_tier, to_tier, COUNT(*) FROM kpi_tier_moves
             WHERE day BETWEEN $1 AND $2
             GROUP BY from_tier, to_tier ORDER BY from_tier, to_tier",
            &[&from, &to],
            |r| Ok((r.opt_text(0)?, r.opt_text(1)?, r.int(2)?)),
        )
        .await
    }
}

/// The statement of `member_activity`. Each count read the same member-days: three
/// `COUNT(DISTINCT card)`, each sorting its rows (on disk past `work_mem`), and an
/// `EXCEPT` of two more scans. One pass groups the days of the windows' span by
/// card and each window's count is of the cards it holds a day of.
const MEMBER_ACTIVITY: &str = "SELECT COUNT(*) FILTER (WHERE period),
            COUNT(*) FILTER (WHERE last_30),
            COUNT(*) FILTER (WHERE last_90),
            COUNT(*) FILTER (WHERE previous AND NOT period)
     FROM (SELECT bool_or(day BETWEEN $1 AND $2) AS period,
                  bool_or(day BETWEEN $3 AND $4) AS last_30,
                  bool_or(day BETWEEN $5 AND $6) AS last_90,
                  bool_or(day BETWEEN $7 AND $8) AS previous
           FROM kpi_member_days
           WHERE day BETWEEN $9 AND $10 AND ($11::text IS NULL OR store = $11)
           GROUP BY card) c";

/// The statement of `cohort_activity`. 'J' reads a Julian day number, as stored.
/// Each day of the period is turned into its month once (a small map joined by hash,
/// materialized: inlined, it computes two `to_date` per row). The members' days are
/// first cut down to distinct (card, month) pairs, and only those meet the first
/// days: counting distinct cards per cell after the join sorted every joined
/// member-day (785,700 for a year of a million receipts, on disk past `work_mem`).
/// The joins with `months` already keep the period's days only; the same bounds
/// written on the tables let a plan read just the period, through the leading `day`
/// of `kpi_member_days`' key and `kpi_members_first`: the generic plan a connection
/// caches cannot see through the joins, and read every member-day ever recorded.
/// The pairs are counted per first day before the first days meet `months`: on
/// tables without statistics (never analyzed) the planner expects one pair and
/// joins `months` in a nested loop, scanning its 365 rows once per pair (39,285
/// pairs for one store: 2.1 s, against 0.2 s when at most 365 × 12 counts meet it).
const COHORT_ACTIVITY: &str = "WITH months AS MATERIALIZED (
         SELECT g AS day,
                (EXTRACT(YEAR FROM to_date(g::text, 'J')) * 12
                 + EXTRACT(MONTH FROM to_date(g::text, 'J')) - 1)::bigint AS month
         FROM generate_series($1::int, $2::int) g),
     active AS (
         SELECT DISTINCT d.card, dm.month
         FROM kpi_member_days d JOIN months dm ON dm.day = d.day
         WHERE d.day BETWEEN $1 AND $2 AND ($3::text IS NULL OR d.store = $3)),
     by_first_day AS (
         SELECT m.first_day, a.month, COUNT(*) AS n
         FROM active a JOIN kpi_members m ON m.card = a.card
         WHERE m.first_day BETWEEN $1 AND $2
         GROUP BY 1, 2)
     SELECT fm.month AS cohort, f.month, SUM(f.n)::bigint
     FROM by_first_day f JOIN months fm ON fm.day = f.first_day
     GROUP BY 1, 2 ORDER BY 1, 2";

/// Adds the delta's daily totals (rows in key order).
pub(super) async fn kpi_daily(c: &Client, delta: &KpiDelta) -> Result<()> {
    if delta.daily.is_empty() {
        return Ok(());
    }
    sql::execute(c, KPI_DAILY, &sql::refs(&daily_rows(delta))).await?;
    Ok(())
}

/// The parameters of [`KPI_DAILY`].
pub(super) fn daily_rows(delta: &KpiDelta) -> sql::Owned<'_> {
    let col = |f: fn(&DailyTotals) -> i64| -> Vec<i64> {
        delta.daily.iter().map(|(_, t)| f(t)).collect()
    };
    let day: Vec<i32> = delta.daily.iter().map(|(k, _)| k.day).collect();
    let store: Vec<&str> = delta.daily.iter().map(|(k, _)| k.store.as_str()).collect();
    let member: Vec<bool> = delta.daily.iter().map(|(k, _)| k.member).collect();
    vec![
        Box::new(day),
        Box::new(store),
        Box::new(member),
        Box::new(col(|t| t.receipts)),
        Box::new(col(|t| t.revenue_minor)),
        Box::new(col(|t| t.items)),
        Box::new(col(|t| t.discount_minor)),
        Box::new(col(|t| t.points_accrued)),
        Box::new(col(|t| t.points_redeemed)),
    ]
}

/// The statement of [`kpi_daily`].
pub(super) const KPI_DAILY: &str =
    "INSERT INTO kpi_daily AS k (day, store, member, receipts, revenue_minor, items,
                                 discount_minor, points_accrued, points_redeemed)
     SELECT * FROM unnest($1::int[], $2::text[], $3::bool[], $4::bigint[],
                          $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
                          $9::bigint[])
     ORDER BY 1, 2, 3
     ON CONFLICT (day, store, member) DO UPDATE SET
         receipts = k.receipts + EXCLUDED.receipts,
         revenue_minor = k.revenue_minor + EXCLUDED.revenue_minor,
         items = k.items + EXCLUDED.items,
         discount_minor = k.discount_minor + EXCLUDED.discount_minor,
         points_accrued = k.points_accrued + EXCLUDED.points_accrued,
         points_redeemed = k.points_redeemed + EXCLUDED.points_redeemed";

/// The statement of `points_expired`: read through the partial index of expiry rows
/// (`ledger_expiry_at`), the only ledger index besides the key.
const POINTS_EXPIRED: &str = "SELECT COALESCE(SUM(-delta_balance), 0)::bigint FROM ledger
     WHERE kind = 'expiry' AND at >= $1 AND at < $2";

/// Records the delta's (member, day, store) receipts (rows in key order).
pub(super) async fn kpi_member_days(c: &Client, delta: &KpiDelta) -> Result<()> {
    if delta.member_days.is_empty() {
        return Ok(());
    }
    sql::execute(c, KPI_MEMBER_DAYS, &sql::refs(&member_day_rows(delta))).await?;
    Ok(())
}

/// The parameters of [`KPI_MEMBER_DAYS`].
pub(super) fn member_day_rows(delta: &KpiDelta) -> sql::Owned<'_> {
    let day: Vec<i32> = delta.member_days.iter().map(|(_, d, _)| *d).collect();
    let card: Vec<&str> = delta
        .member_days
        .iter()
        .map(|(c, _, _)| c.as_str())
        .collect();
    let store: Vec<&str> = delta
        .member_days
        .iter()
        .map(|(_, _, s)| s.as_str())
        .collect();
    vec![Box::new(day), Box::new(card), Box::new(store)]
}

/// The statement of [`kpi_member_days`]: the rows not stored yet, by a plain
/// `INSERT` ([`super::cards::ASSOCIATE`] says why no `ON CONFLICT`).
/// Every writer of a member-day holds its card's row lock, so none can appear
/// between this statement's snapshot and its insert.
pub(super) const KPI_MEMBER_DAYS: &str = "INSERT INTO kpi_member_days (day, card, store)
     SELECT * FROM unnest($1::int[], $2::text[], $3::text[]) AS u(day, card, store)
     WHERE (SELECT TRUE FROM kpi_member_days d
            WHERE d.day = u.day AND d.card = u.card AND d.store = u.store) IS NULL
     ORDER BY 1, 2, 3";

/// Records the members' first receipt days (rows in key order): an earlier day for
/// the members stored, the new members' rows.
pub(super) async fn kpi_members(c: &Client, delta: &KpiDelta) -> Result<()> {
    if delta.first_days.is_empty() {
        return Ok(());
    }
    // Cached statements: their lookups of stored first days are key probes whatever
    // plan the connection caches (see `KPI_MEMBERS`), so they need no planning per run.
    let rows = first_day_rows(delta);
    sql::execute(c, EARLIER_FIRST_DAYS, &sql::refs(&rows)).await?;
    sql::execute(c, KPI_MEMBERS, &sql::refs(&rows)).await?;
    Ok(())
}

/// The parameters of [`KPI_MEMBERS`] and [`EARLIER_FIRST_DAYS`].
pub(super) fn first_day_rows(delta: &KpiDelta) -> sql::Owned<'_> {
    let card: Vec<&str> = delta.first_days.iter().map(|(c, _)| c.as_str()).collect();
    let day: Vec<i32> = delta.first_days.iter().map(|(_, d)| *d).collect();
    vec![Box::new(card), Box::new(day)]
}

/// The members' first days that a receipt of the batch comes before. Almost every
/// push names members whose first day is already stored and no later: those rows are
/// left alone (not even locked), where an unconditional upsert wrote a new version of
/// each (heap, WAL, both indexes). The key twice, as the cards' update
/// (`cards::WRITE_CARDS`): a generic plan finds each member by key.
pub(super) const EARLIER_FIRST_DAYS: &str = "UPDATE kpi_members AS m SET first_day = u.day
     FROM unnest($1::text[], $2::int[]) AS u(card, day)
     WHERE m.card = u.card AND m.card = ANY($1) AND u.day < m.first_day";

/// The statement of [`kpi_members`] for the members not stored yet: a plain `INSERT`,
/// as the member-days' ([`KPI_MEMBER_DAYS`]; every writer of a member's row holds
/// its card's row lock).
///
/// The stored row is looked up per member by a scalar subquery, which PostgreSQL
/// never turns into a join: it stays one probe of the primary key per member of the
/// push. A `NOT EXISTS` became an anti-join, and its cached generic plan (which
/// guesses ten members) hashed the whole table on every push: 6 ms of a 500-entry
/// push at 20,000 members, growing with the chain's membership.
pub(super) const KPI_MEMBERS: &str = "INSERT INTO kpi_members (card, first_day)
     SELECT * FROM unnest($1::text[], $2::int[]) AS u(card, day)
     WHERE (SELECT TRUE FROM kpi_members k WHERE k.card = u.card) IS NULL
     ORDER BY 1";

/// Adds the delta's revenue and items per category (rows in key order).
pub(super) async fn kpi_categories(c: &Client, delta: &KpiDelta) -> Result<()> {
    if delta.categories.is_empty() {
        return Ok(());
    }
    sql::execute(c, KPI_CATEGORIES, &sql::refs(&category_rows(delta))).await?;
    Ok(())
}

/// The parameters of [`KPI_CATEGORIES`].
pub(super) fn category_rows(delta: &KpiDelta) -> sql::Owned<'_> {
    let rows = &delta.categories;
    let day: Vec<i32> = rows.iter().map(|(k, _)| k.day.day).collect();
    let store: Vec<&str> = rows.iter().map(|(k, _)| k.day.store.as_str()).collect();
    let member: Vec<bool> = rows.iter().map(|(k, _)| k.day.member).collect();
    let category: Vec<&str> = rows.iter().map(|(k, _)| k.category.as_str()).collect();
    let revenue: Vec<i64> = rows.iter().map(|(_, t)| t.revenue_minor).collect();
    let items: Vec<i64> = rows.iter().map(|(_, t)| t.items).collect();
    vec![
        Box::new(day),
        Box::new(store),
        Box::new(member),
        Box::new(category),
        Box::new(revenue),
        Box::new(items),
    ]
}

/// The statement of [`kpi_categories`].
pub(super) const KPI_CATEGORIES: &str =
    "INSERT INTO kpi_category_daily AS k (day, store, member, category, revenue_minor, items)
     SELECT * FROM unnest($1::int[], $2::text[], $3::bool[], $4::text[],
                          $5::bigint[], $6::bigint[])
     ORDER BY 1, 2, 3, 4
     ON CONFLICT (day, store, member, category) DO UPDATE SET
         revenue_minor = k.revenue_minor + EXCLUDED.revenue_minor,
         items = k.items + EXCLUDED.items";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::PgStore;
    use crate::store::postgres::test_hq::new_hq;
    use testkit::pg::TestDatabase;

    /// A connection caches a generic plan after a statement's first runs; on a new HQ
    /// it is made while `kpi_members` holds a few pushes' members, not yet analyzed.
    /// That plan must still look each member up by key: a scan of the table is paid
    /// again by every push, and grows with the chain's membership.
    #[tokio::test]
    async fn the_generic_plan_of_first_days_probes_members_by_key() {
        let Some(db) = TestDatabase::create()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        else {
            return;
        };
        PgStore::open(db.url()).await.unwrap();
        let c = db.client().await.unwrap();
        c.batch_execute(&format!(
            "INSERT INTO kpi_members (card, first_day)
                 SELECT (4000000000000 + g)::text, 2460000 FROM generate_series(1, 2000) g;
             SET plan_cache_mode = force_generic_plan;
             PREPARE members(text[], int[]) AS {KPI_MEMBERS};
             PREPARE earlier(text[], int[]) AS {EARLIER_FIRST_DAYS}"
        ))
        .await
        .unwrap();
        for statement in ["members", "earlier"] {
            let plan = texts(
                &c,
                &format!("EXPLAIN EXECUTE {statement}('{{4000000000017}}', '{{2450000}}')"),
            )
            .await;
            let plan = plan.join("\n");
            assert!(!plan.contains("Seq Scan on kpi_members"), "{plan}");
            assert!(plan.contains("kpi_members_pkey"), "{plan}");
        }
    }

    /// Every ledger row of a push pays an entry in each ledger index: there are only
    /// the key and the expiry rows' index, which the points-expired report reads.
    #[tokio::test]
    async fn ledger_rows_are_indexed_by_key_and_expiries_alone() {
        let Some(db) = TestDatabase::create()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        else {
            return;
        };
        PgStore::open(db.url()).await.unwrap();
        let c = db.client().await.unwrap();
        let indexes = texts(
            &c,
            "SELECT indexname FROM pg_indexes WHERE tablename = 'ledger' ORDER BY 1",
        )
        .await;
        assert_eq!(indexes, ["ledger_expiry_at", "ledger_pkey"]);
        c.batch_execute(&format!(
            "SET enable_seqscan = off;
             PREPARE expired(bigint, bigint) AS {POINTS_EXPIRED}"
        ))
        .await
        .unwrap();
        let plan = texts(&c, "EXPLAIN EXECUTE expired(0, 1)").await;
        assert!(plan.join("\n").contains("ledger_expiry_at"), "{plan:?}");
    }

    /// Nearly every member's receipt is a new member-day: it pays an entry in each
    /// index of `kpi_member_days`, of which there is only the key.
    #[tokio::test]
    async fn member_days_are_indexed_by_their_key_alone() {
        let Some((_db, _store, c)) = new_hq().await else {
            return;
        };
        let indexes = texts(
            &c,
            "SELECT indexname FROM pg_indexes WHERE tablename = 'kpi_member_days'",
        )
        .await;
        assert_eq!(indexes, ["kpi_member_days_pkey"]);
    }

    /// The generic plans of the cohorts and of the member counts (what a connection
    /// caches after a statement's first runs) read the period's member-days through
    /// the key, not every member-day ever recorded, with or without a store.
    #[tokio::test]
    async fn the_generic_plans_of_member_day_reports_read_the_period_s_member_days() {
        let Some((_db, _store, c)) = new_hq().await else {
            return;
        };
        c.batch_execute(&format!(
            "INSERT INTO kpi_member_days (day, card, store)
                 SELECT 2461000 + n % 365, lpad((n / 3)::text, 13, '0'), 'store-' || n % 10
                 FROM generate_series(0, 19999) AS n;
             INSERT INTO kpi_members (card, first_day)
                 SELECT card, min(day) FROM kpi_member_days GROUP BY card;
             ANALYZE kpi_member_days; ANALYZE kpi_members;
             SET plan_cache_mode = force_generic_plan;
             PREPARE cohorts(int, int, text) AS {COHORT_ACTIVITY};
             PREPARE members(int, int, int, int, int, int, int, int, int, int, text)
                 AS {MEMBER_ACTIVITY}"
        ))
        .await
        .unwrap();
        // A month, and the windows its member counts ask for: the 90 days ending
        // with it are its span.
        let (f, t) = (2461100, 2461130);
        for store in ["NULL", "'store-1'"] {
            for run in [
                format!("cohorts({f}, {t}, {store})"),
                format!(
                    "members({f}, {t}, {}, {t}, {}, {t}, {}, {}, {}, {t}, {store})",
                    t - 29,
                    t - 89,
                    f - 31,
                    f - 1,
                    t - 89
                ),
            ] {
                let plan = texts(&c, &format!("EXPLAIN EXECUTE {run}")).await;
                let plan = plan.join("\n");
                assert!(
                    !plan.contains("Seq Scan on kpi_member_days"),
                    "{run}: {plan}"
                );
                assert!(plan.contains("kpi_member_days_pkey"), "{run}: {plan}");
            }
        }
    }

    /// The first column of every row `sql` answers (index names, plan lines).
    async fn texts(c: &deadpool_postgres::tokio_postgres::Client, sql: &str) -> Vec<String> {
        c.query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Members `from..to` (13-digit card numbers), first seen on day 19,000.
    async fn add_members(c: &Client, from: u32, to: u32) {
        c.batch_execute(&format!(
            "INSERT INTO kpi_members (card, first_day)
             SELECT lpad(n::text, 13, '0'), 19000 FROM generate_series({from}, {to} - 1) AS n"
        ))
        .await
        .unwrap();
    }

    /// Sequential scans of `kpi_members` by one rolled-back [`kpi_members`] of `delta`.
    async fn member_scans(c: &Client, delta: &KpiDelta) -> i64 {
        const SCANS: &str =
            "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'kpi_members'";
        c.batch_execute("START TRANSACTION").await.unwrap();
        let before: i64 = c.query_one(SCANS, &[]).await.unwrap().get(0);
        kpi_members(c, delta).await.unwrap();
        let after: i64 = c.query_one(SCANS, &[]).await.unwrap().get(0);
        c.batch_execute("ROLLBACK").await.unwrap();
        after - before
    }

    #[tokio::test]
    async fn known_members_are_looked_up_by_key_after_the_table_grew() {
        let Some((_db, _store, c)) = new_hq().await else {
            return;
        };
        add_members(&c, 0, 1_000).await;
        let delta = KpiDelta {
            first_days: (0..10u32)
                .map(|n| (CardId::parse(&format!("{:013}", n * 3)).unwrap(), 20_000))
                .collect(),
            ..KpiDelta::default()
        };
        // More runs than PostgreSQL plans for their values before it settles on a
        // generic plan (five), on a small table; then the chain's members arrive.
        for _ in 0..10 {
            member_scans(&c, &delta).await;
        }
        add_members(&c, 1_000, 20_000).await;
        assert_eq!(member_scans(&c, &delta).await, 0);
    }
}
