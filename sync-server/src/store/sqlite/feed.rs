//! What agents read: the change feed (`pull`) and live balances, each in one read
//! transaction so `acked_through` and the balances come from the same snapshot.
//!
//! The cursor is the decimal change position: every card change and block event
//! takes the next position in its writing transaction, and with a single writer
//! commit order is position order, so "everything after position N" is exact.

use super::Inner;
use super::rows::{CARD_COLUMNS, card_row, unsigned};
use super::{admin, rules};
use crate::store::encode::{card_balance, unseen_card_balance};
use crate::store::{PullRequest, StoreError, TerminalIdentity};
use protocol::wire::{
    BlockChange, LiveBalanceResponse, PROTOCOL_VERSION, PublicKeyInfo, PullResponse,
};
use protocol::{CardId, Seq};
use rusqlite::{Connection, OptionalExtension};
use time::OffsetDateTime;

fn acked_through(conn: &Connection, terminal: &TerminalIdentity) -> Result<Seq, StoreError> {
    let acked: Option<i64> = conn
        .prepare_cached("SELECT acked_through FROM terminals WHERE id = ?1 AND revoked_at IS NULL")?
        .query_row([terminal.key], |r| r.get(0))
        .optional()?;
    match acked {
        Some(a) => Ok(Seq(unsigned(a)?)),
        None => Err(StoreError::Revoked(terminal.to_string())),
    }
}

fn parse_cursor(cursor: Option<&str>) -> Result<i64, StoreError> {
    match cursor.map(str::trim) {
        None | Some("") => Ok(0),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| StoreError::BadCursor(s.to_owned())),
    }
}

/// See [`crate::store::Store::pull`].
pub fn pull(
    conn: &mut Connection,
    inner: &Inner,
    terminal: &TerminalIdentity,
    request: PullRequest<'_>,
    now: OffsetDateTime,
) -> Result<PullResponse, StoreError> {
    let cursor = parse_cursor(request.cursor)?;
    let page = i64::from(request.page_size.max(1));
    let tx = conn.transaction()?;
    let acked = acked_through(&tx, terminal)?;
    let head: i64 = tx
        .prepare_cached("SELECT pos FROM change_counter WHERE id = 1")?
        .query_row([], |r| r.get(0))?;
    // A cursor from the future (HQ restored from a backup) cannot be trusted: the
    // agent gets everything again.
    let cursor = if cursor > head { 0 } else { cursor };
    let current = rules::current(&tx, inner)?;
    let rules = (current.version > request.rules_version).then(|| (*current).clone());
    let keys = admin::list_keys(&tx)?
        .into_iter()
        .map(|k| PublicKeyInfo {
            key_id: k.key_id,
            public_key: k.public_key,
            valid_until: k.valid_until,
        })
        .collect();
    let mut balances = Vec::new();
    let mut last_pos = cursor;
    {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT c.change_pos, {CARD_COLUMNS} FROM cards c
             WHERE c.change_pos > ?2
               AND EXISTS (SELECT 1 FROM store_cards s WHERE s.store = ?1 AND s.card = c.card)
             ORDER BY c.change_pos LIMIT ?3"
        ))?;
        let mut rows = stmt.query((terminal.store.as_str(), cursor, page))?;
        while let Some(r) = rows.next()? {
            last_pos = r.get(0)?;
            let state = card_row(r, 1)?.into_state()?;
            balances.push(card_balance(state, now));
        }
    }
    let more = i64::try_from(balances.len()).unwrap_or(i64::MAX) >= page;
    let upto = if more { last_pos } else { head };
    let mut blocked = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT card, blocked FROM block_events WHERE pos > ?1 AND pos <= ?2 ORDER BY pos",
        )?;
        let mut rows = stmt.query((cursor, upto))?;
        while let Some(r) = rows.next()? {
            let card: String = r.get(0)?;
            blocked.push(BlockChange {
                card: super::rows::card(&card)?,
                blocked: r.get(1)?,
            });
        }
    }
    tx.commit()?;
    Ok(PullResponse {
        protocol: PROTOCOL_VERSION,
        cursor: upto.to_string(),
        more,
        acked_through: acked,
        rules,
        blocked,
        keys,
        balances,
    })
}

/// See [`crate::store::Store::live_balance`].
pub fn live_balance(
    conn: &mut Connection,
    terminal: &TerminalIdentity,
    card: &CardId,
    now: OffsetDateTime,
) -> Result<LiveBalanceResponse, StoreError> {
    let tx = conn.transaction()?;
    let acked = acked_through(&tx, terminal)?;
    let row = tx
        .prepare_cached(&format!("SELECT {CARD_COLUMNS} FROM cards WHERE card = ?1"))?
        .query_row([card.as_str()], |r| card_row(r, 0))
        .optional()?;
    tx.commit()?;
    let balance = match row {
        Some(row) => card_balance(row.into_state()?, now),
        None => unseen_card_balance(card, now),
    };
    Ok(LiveBalanceResponse {
        protocol: PROTOCOL_VERSION,
        acked_through: acked,
        balance,
    })
}
