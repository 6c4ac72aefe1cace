//! Card rows and what hangs off them (lots, ledger rows, flags, spend), read and
//! written in bulk: one statement per table with array parameters (`unnest`), so a
//! batch of 500 entries costs a dozen round trips, not thousands.
//!
//! Concurrency: every transaction that changes a card first locks its row with
//! [`lock_cards`] / [`lock_existing_cards`], always in card-id order (collation "C"),
//! so pushes from many terminals and the ledger job queue up per card instead of
//! deadlocking, and each reads lots and spend only after it holds the lock.

use super::rows::{card_row, lot_row};
use super::sql;
use crate::ledger::{
    CardState, FlagRow, LedgerRow, Lot, LotKey, SPEND_WINDOW, Spend, spend_window_start,
};
use crate::store::StoreError;
use crate::store::encode::{CARD_COLUMNS, LOT_COLUMNS, card, from_db, opt_to_db, to_db};
use deadpool_postgres::Transaction;
use protocol::{CardId, Money};
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;
use uuid::Uuid;

/// Locked cards.
pub struct Locked {
    /// State of every locked card.
    pub states: HashMap<CardId, CardState>,
    /// Cards that had no row before this transaction (now a blank one).
    pub created: HashSet<String>,
}

/// What [`lock_cards`] does about cards HQ holds no row for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Lock the cards only if all exist; otherwise answer `None` (nothing else was
    /// locked out of order: the caller rolls back and comes again with `Create`).
    Report,
    /// Create blank rows for them first.
    Create,
}

fn sorted_keys<'a>(cards: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut keys: Vec<&str> = cards.into_iter().collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Locks `cards` for the rest of the transaction, in card-id order.
///
/// Cards HQ never held get blank rows first (`Missing::Create`), in the same order, so
/// that two first sights of one card also queue up instead of both writing a "new"
/// card; a blank row is exactly `CardState::new`, so the ledger decides as it would
/// for an absent card. The common case, every card known, costs only the locking
/// query (`Missing::Report`). Either way a transaction takes its card locks in one
/// sorted pass, so transactions never wait for each other in a cycle.
pub async fn lock_cards(
    tx: &Transaction<'_>,
    cards: &[&CardId],
    missing: Missing,
    now: OffsetDateTime,
) -> Result<Option<Locked>, StoreError> {
    let keys = sorted_keys(cards.iter().map(|c| c.as_str()));
    let created = match missing {
        Missing::Report => HashSet::new(),
        Missing::Create => sql::query(
            tx,
            r#"INSERT INTO cards (card, balance, pending, spend_12m, welcome_given, seen,
                                  change_xid, updated_at)
               SELECT c, 0, 0, 0, FALSE, FALSE, loyalty_xid(), $2
               FROM unnest($1::text[]) AS u(c) ORDER BY c COLLATE "C"
               ON CONFLICT (card) DO NOTHING
               RETURNING card"#,
            &[&keys, &to_db(now)],
        )
        .await?
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<HashSet<_>, _>>()?,
    };
    let states = lock_sorted(tx, &keys).await?;
    if states.len() < keys.len() {
        return match missing {
            Missing::Report => Ok(None),
            Missing::Create => Err(StoreError::Corrupt(format!(
                "locked {} of {} card rows just created",
                states.len(),
                keys.len()
            ))),
        };
    }
    Ok(Some(Locked { states, created }))
}

/// Locks the existing rows among `cards` (the job only touches cards HQ holds).
pub async fn lock_existing_cards(
    tx: &Transaction<'_>,
    cards: &[String],
) -> Result<HashMap<CardId, CardState>, StoreError> {
    let keys = sorted_keys(cards.iter().map(String::as_str));
    lock_sorted(tx, &keys).await
}

async fn lock_sorted(
    tx: &Transaction<'_>,
    keys: &[&str],
) -> Result<HashMap<CardId, CardState>, StoreError> {
    // ORDER BY below the locking step: rows are locked in this order.
    let rows = sql::query(
        tx,
        &format!("SELECT {CARD_COLUMNS} FROM cards WHERE card = ANY($1) ORDER BY card FOR UPDATE"),
        &[&keys],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let s = card_row(r, 0)?.into_state()?;
            Ok((s.card.clone(), s))
        })
        .collect()
}

/// `(store, card)` pairs known to be in `store_cards`. A pair is never deleted, so a
/// pair seen after a commit needs no insert ever again; the cache saves a statement
/// per push once a store's regular cards are known. Bounded: emptied when full.
#[derive(Default)]
pub struct Associations {
    known: std::sync::Mutex<HashSet<(String, String)>>,
}

/// Pairs kept before the cache starts over.
const MAX_ASSOCIATIONS: usize = 1_000_000;

impl Associations {
    /// The cards among `cards` not known to be in `store`'s feed.
    pub fn unknown(&self, store: &str, cards: &[&CardId]) -> Vec<String> {
        let known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cards
            .iter()
            .filter(|c| !known.contains(&(store.to_owned(), c.as_str().to_owned())))
            .map(|c| c.as_str().to_owned())
            .collect()
    }

    /// Records pairs a committed transaction made sure of.
    pub fn remember(&self, store: &str, cards: Vec<String>) {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() + cards.len() > MAX_ASSOCIATIONS {
            known.clear();
        }
        known.extend(cards.into_iter().map(|c| (store.to_owned(), c)));
    }
}

/// The lots of `cards` with points remaining.
pub async fn load_open_lots(
    tx: &Transaction<'_>,
    cards: &[&CardId],
) -> Result<Vec<Lot>, StoreError> {
    if cards.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = cards.iter().map(|c| c.as_str()).collect();
    sql::query(
        tx,
        &format!("SELECT {LOT_COLUMNS} FROM lots WHERE card = ANY($1) AND remaining > 0"),
        &[&keys],
    )
    .await?
    .iter()
    .map(|r| lot_row(r)?.into_lot())
    .collect()
}

/// The lots with these ids.
pub async fn load_lots(tx: &Transaction<'_>, ids: &[i64]) -> Result<Vec<Lot>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sql::query(
        tx,
        &format!("SELECT {LOT_COLUMNS} FROM lots WHERE id = ANY($1)"),
        &[&ids],
    )
    .await?
    .iter()
    .map(|r| lot_row(r)?.into_lot())
    .collect()
}

/// Spend over the window ending at `now` of `cards` (locked), for the ledger.
///
/// A card's cached `spend_12m` is exact until its `spend_drops_at`: until then no
/// entry it counts has left the window, and an entry outside the window when it was
/// applied never enters it again. (The ledger job relies on the same fact to recompute
/// only the cards whose moment has come.) So only the cards past that moment are
/// summed from their entries.
pub async fn spend_of_locked(
    tx: &Transaction<'_>,
    cards: &HashMap<CardId, CardState>,
    now: OffsetDateTime,
) -> Result<HashMap<CardId, Spend>, StoreError> {
    let mut spend = HashMap::with_capacity(cards.len());
    let mut stale = Vec::new();
    for (id, state) in cards {
        match state.spend_drops_at {
            Some(drops) if drops <= now => stale.push(id.as_str()),
            drops => {
                let earliest = drops.and_then(|d| d.checked_sub(SPEND_WINDOW));
                spend.insert(
                    id.clone(),
                    Spend {
                        total: state.spend_12m,
                        earliest,
                    },
                );
            }
        }
    }
    spend.extend(load_spend(tx, stale, spend_window_start(now)).await?);
    Ok(spend)
}

/// Spend of `cards` from stored entries after `since` (the window excludes its start).
pub async fn load_spend<'a>(
    tx: &Transaction<'_>,
    cards: impl IntoIterator<Item = &'a str>,
    since: OffsetDateTime,
) -> Result<HashMap<CardId, Spend>, StoreError> {
    let keys: Vec<&str> = cards.into_iter().collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sql::query(
        tx,
        "SELECT card, SUM(spend_minor)::bigint, MIN(at) FROM entries
         WHERE card = ANY($1) AND at > $2 GROUP BY card",
        &[&keys, &to_db(since)],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let c: String = r.try_get(0)?;
            let spend = Spend {
                total: Money(r.try_get(1)?),
                earliest: Some(from_db(r.try_get(2)?)?),
            };
            Ok((card(&c)?, spend))
        })
        .collect()
}

/// Stores card states (rows locked by this transaction) under this transaction's
/// feed position. `blocked` belongs to the admin commands and is never written here.
pub async fn write_cards(
    tx: &Transaction<'_>,
    states: &[&CardState],
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    if states.is_empty() {
        return Ok(());
    }
    let card: Vec<&str> = states.iter().map(|s| s.card.as_str()).collect();
    let balance: Vec<i64> = states.iter().map(|s| s.balance.get()).collect();
    let pending: Vec<i64> = states.iter().map(|s| s.pending.get()).collect();
    let tier: Vec<Option<&str>> = states.iter().map(|s| s.tier.as_deref()).collect();
    let spend: Vec<i64> = states.iter().map(|s| s.spend_12m.get()).collect();
    let drops: Vec<Option<i64>> = states.iter().map(|s| opt_to_db(s.spend_drops_at)).collect();
    let welcome: Vec<bool> = states.iter().map(|s| s.welcome_given).collect();
    let seen: Vec<bool> = states.iter().map(|s| s.seen).collect();
    let flags: Vec<i64> = states.iter().map(|s| i64::from(s.flags.bits())).collect();
    let updated = sql::execute(
        tx,
        "UPDATE cards SET balance = u.balance, pending = u.pending, tier = u.tier,
                spend_12m = u.spend, spend_drops_at = u.drops, welcome_given = u.welcome,
                seen = u.seen, flags = u.flags, change_xid = x.xid, updated_at = $10
         FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[],
                     $6::bigint[], $7::bool[], $8::bool[], $9::bigint[])
              AS u(card, balance, pending, tier, spend, drops, welcome, seen, flags),
              (SELECT loyalty_xid() AS xid) AS x
         WHERE cards.card = u.card",
        &[
            &card,
            &balance,
            &pending,
            &tier,
            &spend,
            &drops,
            &welcome,
            &seen,
            &flags,
            &to_db(now),
        ],
    )
    .await?;
    if updated != states.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "wrote {updated} of {} locked card rows",
            states.len()
        )));
    }
    Ok(())
}

/// Inserts new lots.
pub async fn insert_lots(tx: &Transaction<'_>, lots: &[Lot]) -> Result<(), StoreError> {
    if lots.is_empty() {
        return Ok(());
    }
    let card: Vec<&str> = lots.iter().map(|l| l.card.as_str()).collect();
    let kind: Vec<&str> = lots.iter().map(|l| l.kind.as_str()).collect();
    let source: Vec<Option<Uuid>> = lots.iter().map(|l| l.source_entry).collect();
    let earned: Vec<i64> = lots.iter().map(|l| to_db(l.earned_at)).collect();
    let matures: Vec<Option<i64>> = lots.iter().map(|l| opt_to_db(l.matures_at)).collect();
    let matured: Vec<bool> = lots.iter().map(|l| l.matured).collect();
    let expires: Vec<Option<i64>> = lots.iter().map(|l| opt_to_db(l.expires_at)).collect();
    let amount: Vec<i64> = lots.iter().map(|l| l.amount.get()).collect();
    let remaining: Vec<i64> = lots.iter().map(|l| l.remaining.get()).collect();
    sql::execute(
        tx,
        "INSERT INTO lots (card, kind, source_entry, earned_at, matures_at, matured,
                           expires_at, amount, remaining)
         SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::bigint[],
                              $5::bigint[], $6::bool[], $7::bigint[], $8::bigint[],
                              $9::bigint[])",
        &[
            &card, &kind, &source, &earned, &matures, &matured, &expires, &amount, &remaining,
        ],
    )
    .await?;
    Ok(())
}

/// Stores the new remaining points and maturity of stored lots.
pub async fn update_lots(tx: &Transaction<'_>, lots: &[Lot]) -> Result<(), StoreError> {
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
    if id.is_empty() {
        return Ok(());
    }
    sql::execute(
        tx,
        "UPDATE lots SET remaining = u.remaining, matured = u.matured
         FROM unnest($1::bigint[], $2::bigint[], $3::bool[]) AS u(id, remaining, matured)
         WHERE lots.id = u.id",
        &[&id, &remaining, &matured],
    )
    .await?;
    Ok(())
}

/// Appends ledger rows, in order.
pub async fn insert_ledger(tx: &Transaction<'_>, rows: &[LedgerRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let card: Vec<&str> = rows.iter().map(|r| r.card.as_str()).collect();
    let kind: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let balance: Vec<i64> = rows.iter().map(|r| r.delta_balance.get()).collect();
    let pending: Vec<i64> = rows.iter().map(|r| r.delta_pending.get()).collect();
    let at: Vec<i64> = rows.iter().map(|r| to_db(r.at)).collect();
    let entry: Vec<Option<Uuid>> = rows.iter().map(|r| r.entry_id).collect();
    // WITH ORDINALITY: ids follow the plan's order, which `card show` lists.
    sql::execute(
        tx,
        "INSERT INTO ledger (card, kind, delta_balance, delta_pending, at, entry_id)
         SELECT card, kind, balance, pending, at, entry
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                     $6::uuid[]) WITH ORDINALITY
              AS u(card, kind, balance, pending, at, entry, n)
         ORDER BY n",
        &[&card, &kind, &balance, &pending, &at, &entry],
    )
    .await?;
    Ok(())
}

/// Inserts flagged entries.
pub async fn insert_flags(tx: &Transaction<'_>, flags: &[FlagRow]) -> Result<(), StoreError> {
    if flags.is_empty() {
        return Ok(());
    }
    let entry: Vec<Uuid> = flags.iter().map(|f| f.entry_id).collect();
    let card: Vec<&str> = flags.iter().map(|f| f.card.as_str()).collect();
    let kind: Vec<&str> = flags.iter().map(|f| f.kind.as_str()).collect();
    let detail: Vec<&str> = flags.iter().map(|f| f.detail.as_str()).collect();
    sql::execute(
        tx,
        "INSERT INTO flags (entry_id, card, kind, detail)
         SELECT entry, card, kind, detail
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
              WITH ORDINALITY AS u(entry, card, kind, detail, n)
         ORDER BY n",
        &[&entry, &card, &kind, &detail],
    )
    .await?;
    Ok(())
}
