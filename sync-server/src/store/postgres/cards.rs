//! Card rows and what hangs off them (lots, ledger rows, flags, spend), read and
//! written in bulk: one statement per table with array parameters (`unnest`), so a
//! batch of 500 entries costs a dozen round trips, not thousands.
//!
//! Concurrency: every transaction that changes a card first locks its row with
//! [`CardRows::lock_cards`] / [`CardRows::lock_existing_cards`], always in card-id
//! order (collation "C"), so pushes from many terminals and the ledger job queue up
//! per card instead of deadlocking, and each reads lots and spend only after it
//! holds the lock.

use super::session::PgSession;
use super::{retry, sql};
use crate::ledger::{CardRecord, FlagRow, LedgerRow, Lot, LotKey, Spend};
use crate::store::Result;
use crate::store::StoreError;
use crate::store::encode::{opt_to_db, to_db};
use crate::store::rows::{self, CARD_COLUMNS, LOT_COLUMNS, split_sum};
use crate::store::statements::{CardRows, Locked, Missing};
use deadpool_postgres::Client;
use protocol::{CardId, StoreId};
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use uuid::Uuid;

pub(super) fn sorted_keys<'a>(cards: &[&'a CardId]) -> Vec<&'a str> {
    let mut keys: Vec<&str> = cards.iter().map(|c| c.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

fn keys<'a>(cards: &[&'a CardId]) -> Vec<&'a str> {
    cards.iter().map(|c| c.as_str()).collect()
}

/// Locks the rows of `keys` (sorted), in that order.
///
/// Outside a push planned each time ([`sql::Plan::EachRun`]), as is [`write_cards`]:
/// the generic plan a connection made while `cards` was small scanned the whole
/// table for every push (15 ms at 12,000 cards, and growing) for as long as the
/// connection lived, since nothing re-plans it until an ANALYZE of the table
/// happens to invalidate it. A push caches it ([`sql::Plan::InPush`]).
pub(super) async fn lock_sorted(
    c: &Client,
    keys: &[&str],
    plan: sql::Plan,
) -> Result<HashMap<CardId, CardRecord>> {
    let cards = sql::all_as(c, plan, &LOCK_CARDS, &[(&keys, Type::TEXT_ARRAY)], |r| {
        rows::card_record(r, 0)
    })
    .await?;
    Ok(rows::by_card(cards))
}

/// The statement of [`lock_sorted`]: ORDER BY below the locking step, so rows are
/// locked in this order.
pub(super) static LOCK_CARDS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {CARD_COLUMNS} FROM cards WHERE card = ANY($1) ORDER BY card FOR UPDATE")
});

/// Blank rows for the cards among `keys` (sorted) HQ holds none of, inserted in that
/// order; answers the cards created.
pub(super) async fn create_cards(
    c: &Client,
    keys: &[&str],
    now: OffsetDateTime,
) -> Result<HashSet<String>> {
    Ok(sql::all(c, CREATE_CARDS, &[&keys, &to_db(now)], |r| {
        Ok(r.try_get::<_, String>(0)?)
    })
    .await?
    .into_iter()
    .collect())
}

/// The statement of [`create_cards`].
pub(super) const CREATE_CARDS: &str = r#"INSERT INTO cards (card, balance, pending, spend_12m,
        welcome_given, seen, change_xid, updated_at)
    SELECT c, 0, 0, 0, FALSE, FALSE, loyalty_xid(), $2
    FROM unnest($1::text[]) AS u(c) ORDER BY c COLLATE "C"
    ON CONFLICT (card) DO NOTHING
    RETURNING card"#;

impl CardRows for PgSession<'_> {
    /// With `Missing::Create`, cards HQ never held get blank rows first, in the same
    /// order, so that two first sights of one card also queue up instead of both
    /// writing a "new" card; a blank row is exactly `CardRecord::new`, so the ledger
    /// decides as it would for an absent card. With `Missing::Leave` (the push) only
    /// the locking query runs, and [`INSERT_NEW_CARDS`] settles a race for a new card
    /// later. Either way a transaction takes its card locks in one sorted pass, so
    /// transactions never wait for each other in a cycle.
    async fn lock_cards(&mut self, cards: &[&CardId], missing: Missing) -> Result<Locked> {
        let keys = sorted_keys(cards);
        let created = match missing {
            Missing::Leave => HashSet::new(),
            Missing::Create(now) => create_cards(self.conn().await?, &keys, now).await?,
        };
        let locked = lock_sorted(self.conn().await?, &keys, sql::Plan::EachRun).await?;
        if matches!(missing, Missing::Create(_)) && locked.len() < keys.len() {
            return Err(StoreError::corrupt(format!(
                "locked {} of {} card rows just created",
                locked.len(),
                keys.len()
            )));
        }
        Ok(Locked {
            cards: locked,
            created,
        })
    }

    async fn lock_existing_cards(
        &mut self,
        cards: &[&CardId],
    ) -> Result<HashMap<CardId, CardRecord>> {
        lock_sorted(self.conn().await?, &sorted_keys(cards), sql::Plan::EachRun).await
    }

    async fn spend_since(
        &mut self,
        cards: &[&CardId],
        since: OffsetDateTime,
    ) -> Result<Vec<(CardId, Spend)>> {
        if cards.is_empty() {
            return Ok(Vec::new());
        }
        sql::all(
            self.conn().await?,
            &format!(
                "SELECT card, {}, MIN(at) FROM entries
                 WHERE card = ANY($1) AND at > $2 GROUP BY card",
                split_sum("spend_minor", "::bigint")
            ),
            &[&keys(cards), &to_db(since)],
            rows::spend,
        )
        .await
    }

    async fn open_lots(&mut self, cards: &[&CardId]) -> Result<Vec<Lot>> {
        open_lots(self.conn().await?, cards, sql::Plan::EachRun).await
    }

    async fn lots(&mut self, ids: &[i64]) -> Result<Vec<Lot>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sql::all(
            self.conn().await?,
            &format!("SELECT {LOT_COLUMNS} FROM lots WHERE id = ANY($1)"),
            &[&ids],
            rows::lot,
        )
        .await
    }

    /// The rows are locked by this transaction; each takes this transaction's feed
    /// position.
    async fn write_cards(&mut self, cards: &[&CardRecord], now: OffsetDateTime) -> Result<()> {
        write_cards(self.conn().await?, cards, now).await
    }

    async fn insert_lots(&mut self, lots: &[Lot]) -> Result<()> {
        insert_lots(self.conn().await?, lots).await
    }

    async fn update_lots(&mut self, lots: &[Lot]) -> Result<()> {
        update_lots(self.conn().await?, lots).await
    }

    async fn insert_ledger(&mut self, rows: &[LedgerRow]) -> Result<()> {
        insert_ledger(self.conn().await?, rows).await
    }

    async fn insert_flags(&mut self, flags: &[FlagRow]) -> Result<()> {
        insert_flags(self.conn().await?, flags).await
    }

    /// Most pairs may be there already: the cache only knows what this instance saw.
    async fn associate(&mut self, store: &StoreId, cards: &[String]) -> Result<()> {
        associate(self.conn().await?, store, cards).await
    }
}

pub(super) async fn open_lots(c: &Client, cards: &[&CardId], plan: sql::Plan) -> Result<Vec<Lot>> {
    if cards.is_empty() {
        return Ok(Vec::new());
    }
    // Outside a push planned each time: the generic plan made while `lots` was small
    // was a sequential scan comparing every lot with every card of the batch (28 ms
    // for a 500-entry push at 17,000 lots, growing with the table).
    sql::all_as(
        c,
        plan,
        &OPEN_LOTS,
        &[(&keys(cards), Type::TEXT_ARRAY)],
        rows::lot,
    )
    .await
}

/// The rows are locked by this transaction; each takes this transaction's feed
/// position.
pub(super) async fn write_cards(
    c: &Client,
    cards: &[&CardRecord],
    now: OffsetDateTime,
) -> Result<()> {
    if cards.is_empty() {
        return Ok(());
    }
    // Planned each time (see `lock_sorted`): the generic plan made on a small table
    // joined the batch to a sequential scan of every card.
    let updated = CardArrays::of(cards).run(c, WRITE_CARDS, now).await?;
    if updated != cards.len() as u64 {
        return Err(StoreError::corrupt(format!(
            "wrote {updated} of {} locked card rows",
            cards.len()
        )));
    }
    Ok(())
}

/// A unique violation of the cards' primary key.
pub(super) fn is_card_key_clash(e: &StoreError) -> bool {
    retry::driver_error(e)
        .and_then(tokio_postgres::Error::as_db_error)
        .is_some_and(|d| {
            *d.code() == SqlState::UNIQUE_VIOLATION && d.constraint() == Some("cards_pkey")
        })
}

/// The figures of card states as array parameters, in the numbering both
/// [`WRITE_CARDS`] and [`INSERT_NEW_CARDS`] use.
pub(super) struct CardArrays<'a> {
    card: Vec<&'a str>,
    balance: Vec<i64>,
    pending: Vec<i64>,
    tier: Vec<Option<&'a str>>,
    spend: Vec<i64>,
    drops: Vec<Option<i64>>,
    welcome: Vec<bool>,
    seen: Vec<bool>,
    flags: Vec<i64>,
    reserved: Vec<i64>,
    leased: Vec<i64>,
}

impl<'a> CardArrays<'a> {
    pub(super) fn of(cards: &[&'a CardRecord]) -> Self {
        Self {
            card: cards.iter().map(|s| s.card.as_str()).collect(),
            balance: cards.iter().map(|s| s.balance.get()).collect(),
            pending: cards.iter().map(|s| s.pending.get()).collect(),
            tier: cards.iter().map(|s| s.tier.as_deref()).collect(),
            spend: cards.iter().map(|s| s.spend_12m.get()).collect(),
            drops: cards.iter().map(|s| opt_to_db(s.spend_drops_at)).collect(),
            welcome: cards.iter().map(|s| s.welcome_given).collect(),
            seen: cards.iter().map(|s| s.seen).collect(),
            flags: cards.iter().map(|s| i64::from(s.flags.bits())).collect(),
            reserved: cards.iter().map(|s| s.reserved.get()).collect(),
            leased: cards.iter().map(|s| s.leased.get()).collect(),
        }
    }

    /// Runs `sql` (planned for these arrays) with them and `now` as `$10`; answers
    /// the rows it wrote.
    async fn run(&self, c: &Client, sql: &str, now: OffsetDateTime) -> Result<u64> {
        sql::execute_planned(
            c,
            sql,
            &[
                (&self.card, Type::TEXT_ARRAY),
                (&self.balance, Type::INT8_ARRAY),
                (&self.pending, Type::INT8_ARRAY),
                (&self.tier, Type::TEXT_ARRAY),
                (&self.spend, Type::INT8_ARRAY),
                (&self.drops, Type::INT8_ARRAY),
                (&self.welcome, Type::BOOL_ARRAY),
                (&self.seen, Type::BOOL_ARRAY),
                (&self.flags, Type::INT8_ARRAY),
                (&to_db(now), Type::INT8),
                (&self.reserved, Type::INT8_ARRAY),
                (&self.leased, Type::INT8_ARRAY),
            ],
        )
        .await
    }

    /// The arrays and `now`, as the parameters of a cached statement (the types
    /// are those of the statement's casts and columns).
    pub(super) fn owned(self, now: OffsetDateTime) -> sql::Owned<'a> {
        vec![
            Box::new(self.card),
            Box::new(self.balance),
            Box::new(self.pending),
            Box::new(self.tier),
            Box::new(self.spend),
            Box::new(self.drops),
            Box::new(self.welcome),
            Box::new(self.seen),
            Box::new(self.flags),
            Box::new(to_db(now)),
            Box::new(self.reserved),
            Box::new(self.leased),
        ]
    }
}

pub(super) async fn insert_lots(c: &Client, lots: &[Lot]) -> Result<()> {
    if lots.is_empty() {
        return Ok(());
    }
    sql::execute(c, INSERT_LOTS, &sql::refs(&lot_rows(lots))).await?;
    Ok(())
}

/// The parameters of [`INSERT_LOTS`].
pub(super) fn lot_rows(lots: &[Lot]) -> sql::Owned<'_> {
    let card: Vec<&str> = lots.iter().map(|l| l.card.as_str()).collect();
    let kind: Vec<&str> = lots.iter().map(|l| l.kind.as_str()).collect();
    let source: Vec<Option<Uuid>> = lots.iter().map(|l| l.source_entry).collect();
    let earned: Vec<i64> = lots.iter().map(|l| to_db(l.earned_at)).collect();
    let matures: Vec<Option<i64>> = lots.iter().map(|l| opt_to_db(l.matures_at)).collect();
    let matured: Vec<bool> = lots.iter().map(|l| l.matured).collect();
    let expires: Vec<Option<i64>> = lots.iter().map(|l| opt_to_db(l.expires_at)).collect();
    let amount: Vec<i64> = lots.iter().map(|l| l.amount.get()).collect();
    let remaining: Vec<i64> = lots.iter().map(|l| l.remaining.get()).collect();
    vec![
        Box::new(card),
        Box::new(kind),
        Box::new(source),
        Box::new(earned),
        Box::new(matures),
        Box::new(matured),
        Box::new(expires),
        Box::new(amount),
        Box::new(remaining),
    ]
}

pub(super) async fn update_lots(c: &Client, lots: &[Lot]) -> Result<()> {
    if !lots.iter().any(|l| matches!(l.key, LotKey::Stored(_))) {
        return Ok(());
    }
    sql::execute(c, UPDATE_LOTS, &sql::refs(&changed_lot_rows(lots))).await?;
    Ok(())
}

/// The parameters of [`UPDATE_LOTS`]: the stored lots among `lots`.
pub(super) fn changed_lot_rows(lots: &[Lot]) -> sql::Owned<'static> {
    let mut id = Vec::with_capacity(lots.len());
    let mut remaining = Vec::with_capacity(lots.len());
    let mut matured = Vec::with_capacity(lots.len());
    for l in lots {
        if let LotKey::Stored(key) = l.key {
            id.push(key);
            remaining.push(l.remaining.get());
            matured.push(l.matured);
        }
    }
    vec![Box::new(id), Box::new(remaining), Box::new(matured)]
}

pub(super) async fn insert_ledger(c: &Client, rows: &[LedgerRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    sql::execute(c, INSERT_LEDGER, &sql::refs(&ledger_rows(rows))).await?;
    Ok(())
}

/// The parameters of [`INSERT_LEDGER`].
pub(super) fn ledger_rows(rows: &[LedgerRow]) -> sql::Owned<'_> {
    let card: Vec<&str> = rows.iter().map(|r| r.card.as_str()).collect();
    let kind: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let balance: Vec<i64> = rows.iter().map(|r| r.delta_balance.get()).collect();
    let pending: Vec<i64> = rows.iter().map(|r| r.delta_pending.get()).collect();
    let at: Vec<i64> = rows.iter().map(|r| to_db(r.at)).collect();
    let entry: Vec<Option<Uuid>> = rows.iter().map(|r| r.entry_id).collect();
    vec![
        Box::new(card),
        Box::new(kind),
        Box::new(balance),
        Box::new(pending),
        Box::new(at),
        Box::new(entry),
    ]
}

pub(super) async fn insert_flags(c: &Client, flags: &[FlagRow]) -> Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    sql::execute(c, INSERT_FLAGS, &sql::refs(&flag_rows(flags))).await?;
    Ok(())
}

/// The parameters of [`INSERT_FLAGS`].
pub(super) fn flag_rows(flags: &[FlagRow]) -> sql::Owned<'_> {
    let entry: Vec<Uuid> = flags.iter().map(|f| f.entry_id).collect();
    let card: Vec<&str> = flags.iter().map(|f| f.card.as_str()).collect();
    let kind: Vec<&str> = flags.iter().map(|f| f.kind.as_str()).collect();
    let detail: Vec<&str> = flags.iter().map(|f| f.detail.as_str()).collect();
    vec![
        Box::new(entry),
        Box::new(card),
        Box::new(kind),
        Box::new(detail),
    ]
}

/// Most pairs may be there already: the cache only knows what this instance saw.
pub(super) async fn associate(c: &Client, store: &StoreId, cards: &[String]) -> Result<()> {
    if cards.is_empty() {
        return Ok(());
    }
    sql::execute(c, ASSOCIATE, &sql::refs(&store_card_rows(store, cards))).await?;
    Ok(())
}

/// The parameters of [`ASSOCIATE`].
pub(super) fn store_card_rows<'a>(store: &'a StoreId, cards: &'a [String]) -> sql::Owned<'a> {
    vec![Box::new(store.as_str()), Box::new(cards)]
}

/// The statement of [`open_lots`].
pub(super) static OPEN_LOTS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {LOT_COLUMNS} FROM lots WHERE card = ANY($1) AND remaining > 0")
});

/// What [`WRITE_CARDS`] and [`INSERT_NEW_CARDS`] read: the rows of [`CardArrays`]
/// as `u` (its parameter numbering), beside this transaction's feed position `x`.
macro_rules! card_arrays {
    () => {
        "unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[],
                $6::bigint[], $7::bool[], $8::bool[], $9::bigint[], $11::bigint[],
                $12::bigint[])
              AS u(card, balance, pending, tier, spend, drops, welcome, seen, flags,
                   reserved, leased),
              (SELECT loyalty_xid() AS xid) AS x"
    };
}

/// The statement of [`write_cards`].
pub(super) const WRITE_CARDS: &str = concat!(
    "UPDATE cards SET balance = u.balance, pending = u.pending, tier = u.tier,
                spend_12m = u.spend, spend_drops_at = u.drops, welcome_given = u.welcome,
                seen = u.seen, flags = u.flags, reserved = u.reserved, leased = u.leased,
                change_xid = x.xid, updated_at = $10
         FROM ",
    card_arrays!(),
    "
         WHERE cards.card = u.card AND cards.card = ANY($1)"
);

/// Inserts the cards a push found no row for when it locked its cards, with their
/// figures, in card-id order, at this transaction's feed position (a part of the
/// push's writes, `push::write`). A plain INSERT, no `ON CONFLICT`: when another
/// transaction inserted one of them meanwhile, the insert waits for it to commit and
/// fails on the card's key ([`is_card_key_clash`]), which aborts this transaction
/// (the push's `COMMIT` is already on its way in the same flight, and rolls it
/// back), and the push starts over and locks the row. The sorted order makes two
/// such inserts wait for each other in one direction only, as the locks do.
pub(super) const INSERT_NEW_CARDS: &str = concat!(
    "INSERT INTO cards (card, balance, pending, tier, spend_12m, spend_drops_at,
        welcome_given, seen, flags, reserved, leased, change_xid, updated_at)
    SELECT u.card, u.balance, u.pending, u.tier, u.spend, u.drops, u.welcome, u.seen,
           u.flags, u.reserved, u.leased, x.xid, $10
    FROM ",
    card_arrays!(),
    r#"
    ORDER BY u.card COLLATE "C""#
);

/// The statement of [`insert_lots`].
pub(super) const INSERT_LOTS: &str =
    "INSERT INTO lots (card, kind, source_entry, earned_at, matures_at, matured,
                           expires_at, amount, remaining)
         SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::bigint[],
                              $5::bigint[], $6::bool[], $7::bigint[], $8::bigint[],
                              $9::bigint[])";

/// The statement of [`update_lots`].
pub(super) const UPDATE_LOTS: &str = "UPDATE lots SET remaining = u.remaining, matured = u.matured
         FROM unnest($1::bigint[], $2::bigint[], $3::bool[]) AS u(id, remaining, matured)
         WHERE lots.id = u.id AND lots.id = ANY($1)";

/// The statement of [`insert_ledger`].
pub(super) const INSERT_LEDGER: &str =
    "INSERT INTO ledger (card, kind, delta_balance, delta_pending, at, entry_id)
         SELECT card, kind, balance, pending, at, entry
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                     $6::uuid[]) WITH ORDINALITY
              AS u(card, kind, balance, pending, at, entry, n)
         ORDER BY n";

/// The statement of [`insert_flags`].
pub(super) const INSERT_FLAGS: &str = "INSERT INTO flags (entry_id, card, kind, detail)
         SELECT entry, card, kind, detail
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
              WITH ORDINALITY AS u(entry, card, kind, detail, n)
         ORDER BY n";

/// The statement of [`associate`]: the pairs not stored yet, by a plain `INSERT`.
/// `ON CONFLICT` inserts each new row speculatively and then confirms it, one more
/// WAL record per row than a plain insert (with the member-days and first days, 2.6
/// of 24 records per entry of 10-entry pushes: docs/performance.md), and guards
/// against a race
/// that cannot happen here: every writer of a card's `store_cards` rows holds the
/// card's row lock (a push, a quarantine retry), taken in an earlier statement, so
/// this statement's snapshot sees every pair committed for the card, and none can
/// be inserted meanwhile. The scalar subquery stays one probe of the key per card
/// (PostgreSQL never turns it into a join that could read the whole table).
///
/// A new membership takes this transaction's feed position (migration 9): the
/// card's own when this transaction wrote the card (a push writes its cards in the
/// same statement, a quarantine retry before), otherwise above the card's, which
/// only sends the store the card once more. So a card's first change reaches the
/// store's feed, and the triggers on `cards` find nothing to raise.
pub(super) const ASSOCIATE: &str = "INSERT INTO store_cards (store, card, change_xid)
         SELECT $1::text, u.card, x.xid
         FROM unnest($2::text[]) AS u(card), (SELECT loyalty_xid() AS xid) AS x
         WHERE (SELECT TRUE FROM store_cards s WHERE s.store = $1 AND s.card = u.card)
               IS NULL";

#[cfg(test)]
mod tests;
