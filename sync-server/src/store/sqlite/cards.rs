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
use crate::store::Result;
use crate::store::encode::{opt_to_db, to_db};
use crate::store::rows::{self, CARD_COLUMNS, LOT_COLUMNS, split_sum};
use crate::store::statements::{CardRows, Locked, Missing};
use protocol::{CardId, StoreId};
use std::collections::HashMap;
use time::OffsetDateTime;

fn card_keys<'a>(cards: &[&'a CardId]) -> Vec<Param<'a>> {
    cards.iter().map(|c| text(c.as_str())).collect()
}

impl SqliteSession<'_> {
    /// The stored states of `cards` (absent cards are left out).
    fn load_cards(&self, cards: &[&CardId]) -> Result<HashMap<CardId, CardRecord>> {
        let states = self.query_in(
            &format!("SELECT {CARD_COLUMNS} FROM cards WHERE card IN ({{keys}})"),
            &card_keys(cards),
            &[],
            |r| rows::card_record(r, 0),
        )?;
        Ok(rows::by_card(states))
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
            &format!("SELECT {LOT_COLUMNS} FROM lots WHERE card IN ({{keys}}) AND remaining > 0"),
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
        if cards.is_empty() {
            return Ok(());
        }
        let n = i64::try_from(cards.len()).unwrap_or(i64::MAX);
        let last: i64 = self.one(
            "UPDATE change_counter SET pos = pos + ?1 WHERE id = 1 RETURNING pos",
            [n],
            |r| Ok(r.get(0)?),
        )?;
        let values: Vec<_> = cards
            .iter()
            .zip(last - n + 1..)
            .map(|(s, pos)| {
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
            })
            .collect();
        self.insert_many(
            "INSERT INTO cards (card, balance, pending, tier, spend_12m, spend_drops_at,
                                welcome_given, seen, blocked, flags, reserved, leased,
                                change_pos, updated_at)",
            "ON CONFLICT (card) DO UPDATE SET
                balance = excluded.balance, pending = excluded.pending, tier = excluded.tier,
                spend_12m = excluded.spend_12m, spend_drops_at = excluded.spend_drops_at,
                welcome_given = excluded.welcome_given,
                seen = excluded.seen, flags = excluded.flags, reserved = excluded.reserved,
                leased = excluded.leased, change_pos = excluded.change_pos,
                updated_at = excluded.updated_at",
            &values,
        )
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

    async fn associate(&mut self, store: &StoreId, cards: &[String]) -> Result<()> {
        let values: Vec<_> = cards
            .iter()
            .map(|c| [text(store.as_str()), text(c)])
            .collect();
        self.insert_many(
            "INSERT INTO store_cards (store, card)",
            "ON CONFLICT DO NOTHING",
            &values,
        )
    }
}
