//! Terminals, cards, keys and reports in SQLite: what the admin commands and
//! authentication read and write.

use super::push::write_cards;
use super::rows::{
    CARD_COLUMNS, card_row, from_db, opt_from_db, store_id, terminal_id, to_db, unsigned, uuid,
};
use crate::keys::TokenHash;
use crate::ledger::{CardState, FlagKind, LedgerKind};
use crate::store::{
    Anomaly, CardReport, FlaggedEntry, KeyInfo, LedgerView, Overdraft, StoreError, TerminalAdded,
    TerminalIdentity, TerminalInfo,
};
use data_encoding::HEXLOWER;
use ed25519_dalek::SigningKey;
use protocol::token::{KeyId, encode_public_key};
use protocol::{CardId, Points, Seq, StoreId, TerminalId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use time::{Duration, OffsetDateTime};

/// The active terminal of a token hash.
pub fn authenticate(
    conn: &Connection,
    hash: &TokenHash,
) -> Result<Option<TerminalIdentity>, StoreError> {
    let row: Option<(i64, String, String)> = conn
        .prepare_cached(
            "SELECT id, store, terminal FROM terminals
             WHERE token_hash = ?1 AND revoked_at IS NULL",
        )?
        .query_row([hash.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    row.map(|(key, s, t)| {
        Ok(TerminalIdentity {
            key,
            store: store_id(&s)?,
            terminal: terminal_id(&t)?,
        })
    })
    .transpose()
}

/// See [`crate::store::Store::add_terminal`].
pub fn add_terminal(
    conn: &mut Connection,
    store: &StoreId,
    terminal: &TerminalId,
    hash: &TokenHash,
    rotate: bool,
    now: OffsetDateTime,
) -> Result<TerminalAdded, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existing: Option<(i64, Option<i64>)> = tx
        .query_row(
            "SELECT id, revoked_at FROM terminals WHERE store = ?1 AND terminal = ?2",
            (store.as_str(), terminal.as_str()),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let added = match existing {
        None => {
            tx.execute(
                "INSERT INTO terminals (store, terminal, token_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                (store.as_str(), terminal.as_str(), hash.as_str(), to_db(now)),
            )?;
            TerminalAdded::Created
        }
        Some((_, None)) if !rotate => {
            return Err(StoreError::TerminalActive {
                store: store.clone(),
                terminal: terminal.clone(),
            });
        }
        Some((id, revoked)) => {
            tx.execute(
                "UPDATE terminals SET token_hash = ?2, revoked_at = NULL WHERE id = ?1",
                (id, hash.as_str()),
            )?;
            if revoked.is_some() {
                TerminalAdded::Reactivated
            } else {
                TerminalAdded::Rotated
            }
        }
    };
    tx.commit()?;
    Ok(added)
}

/// See [`crate::store::Store::revoke_terminal`].
pub fn revoke_terminal(
    conn: &mut Connection,
    store: &StoreId,
    terminal: &TerminalId,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE terminals SET revoked_at = COALESCE(revoked_at, ?3)
         WHERE store = ?1 AND terminal = ?2",
        (store.as_str(), terminal.as_str(), to_db(now)),
    )?;
    if n == 0 {
        return Err(StoreError::UnknownTerminal {
            store: store.clone(),
            terminal: terminal.clone(),
        });
    }
    Ok(())
}

/// Every terminal, by store and name.
pub fn list_terminals(conn: &Connection) -> Result<Vec<TerminalInfo>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT store, terminal, created_at, revoked_at, acked_through, last_push_at
         FROM terminals ORDER BY store, terminal",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let (s, t): (String, String) = (r.get(0)?, r.get(1)?);
        out.push(TerminalInfo {
            store: store_id(&s)?,
            terminal: terminal_id(&t)?,
            created_at: from_db(r.get(2)?)?,
            revoked_at: opt_from_db(r.get(3)?)?,
            acked_through: Seq(unsigned(r.get(4)?)?),
            last_push_at: opt_from_db(r.get(5)?)?,
        });
    }
    Ok(out)
}

/// Appends an anomaly.
pub fn record_anomaly(conn: &mut Connection, a: &Anomaly) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO anomalies (at, store, terminal, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute((
        to_db(a.at),
        a.store.as_str(),
        a.terminal.as_str(),
        a.kind.as_str(),
        a.detail.as_str(),
    ))?;
    Ok(())
}

/// Every anomaly, oldest first.
pub fn anomalies(conn: &Connection) -> Result<Vec<Anomaly>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT at, store, terminal, kind, detail FROM anomalies ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let (s, t): (String, String) = (r.get(1)?, r.get(2)?);
        out.push(Anomaly {
            at: from_db(r.get(0)?)?,
            store: store_id(&s)?,
            terminal: terminal_id(&t)?,
            kind: r.get(3)?,
            detail: r.get(4)?,
        });
    }
    Ok(out)
}

/// See [`crate::store::Store::set_blocked`]. The block event and the card row each
/// take a change position, so agents see both the event and the card's new state.
pub fn set_blocked(
    conn: &mut Connection,
    card: &CardId,
    blocked: bool,
    reason: Option<&str>,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let state = tx
        .query_row(
            &format!("SELECT {CARD_COLUMNS} FROM cards WHERE card = ?1"),
            [card.as_str()],
            |r| card_row(r, 0),
        )
        .optional()?
        .map(|r| r.into_state())
        .transpose()?;
    if state.as_ref().is_some_and(|s| s.blocked == blocked) {
        return Ok(false);
    }
    let pos: i64 = tx.query_row(
        "UPDATE change_counter SET pos = pos + 1 WHERE id = 1 RETURNING pos",
        [],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO block_events (pos, card, blocked, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        (pos, card.as_str(), blocked, reason, to_db(now)),
    )?;
    let mut state = state.unwrap_or_else(|| CardState::new(card.clone()));
    state.blocked = blocked;
    // write_cards never changes `blocked` of an existing card; set it here.
    write_cards(&tx, &[&state], now)?;
    tx.execute(
        "UPDATE cards SET blocked = ?2, block_reason = ?3 WHERE card = ?1",
        (card.as_str(), blocked, if blocked { reason } else { None }),
    )?;
    tx.commit()?;
    Ok(true)
}

/// See [`crate::store::Store::card_report`].
pub fn card_report(
    conn: &mut Connection,
    card: &CardId,
    recent: u32,
) -> Result<Option<CardReport>, StoreError> {
    let tx = conn.transaction()?;
    let row = tx
        .query_row(
            &format!("SELECT {CARD_COLUMNS}, block_reason, updated_at FROM cards WHERE card = ?1"),
            [card.as_str()],
            |r| {
                Ok((
                    card_row(r, 0)?,
                    r.get::<_, Option<String>>(10)?,
                    r.get::<_, i64>(11)?,
                ))
            },
        )
        .optional()?;
    let Some((row, block_reason, updated_at)) = row else {
        return Ok(None);
    };
    let mut stmt = tx.prepare(
        "SELECT kind, delta_balance, delta_pending, at, entry_id FROM ledger
         WHERE card = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let mut rows = stmt.query((card.as_str(), i64::from(recent)))?;
    let mut ledger = Vec::new();
    while let Some(r) = rows.next()? {
        let kind: String = r.get(0)?;
        let entry: Option<String> = r.get(4)?;
        ledger.push(LedgerView {
            kind: LedgerKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("ledger kind {kind:?}")))?,
            delta_balance: Points(r.get(1)?),
            delta_pending: Points(r.get(2)?),
            at: from_db(r.get(3)?)?,
            entry_id: entry.as_deref().map(uuid).transpose()?,
        });
    }
    Ok(Some(CardReport {
        state: row.into_state()?,
        block_reason,
        updated_at: from_db(updated_at)?,
        recent: ledger,
    }))
}

/// See [`crate::store::Store::rotate_keys`].
pub fn rotate_keys(
    conn: &mut Connection,
    key: &SigningKey,
    grace: Duration,
    now: OffsetDateTime,
) -> Result<KeyInfo, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let until = now.checked_add(grace).unwrap_or(now);
    tx.execute(
        "UPDATE signing_keys SET valid_until = ?1 WHERE valid_until IS NULL",
        [to_db(until)],
    )?;
    let next: i64 = tx.query_row(
        "SELECT COALESCE(MAX(key_id), 0) + 1 FROM signing_keys",
        [],
        |r| r.get(0),
    )?;
    let key_id =
        KeyId(u32::try_from(next).map_err(|_| StoreError::Corrupt(format!("key id {next}")))?);
    let public_key = encode_public_key(&key.verifying_key());
    tx.execute(
        "INSERT INTO signing_keys (key_id, secret_hex, public_key, created_at, valid_until)
         VALUES (?1, ?2, ?3, ?4, NULL)",
        (
            next,
            HEXLOWER.encode(&key.to_bytes()),
            public_key.as_str(),
            to_db(now),
        ),
    )?;
    tx.commit()?;
    Ok(KeyInfo {
        key_id,
        public_key,
        created_at: now,
        valid_until: None,
    })
}

/// Every key's public half, oldest first.
pub fn list_keys(conn: &Connection) -> Result<Vec<KeyInfo>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT key_id, public_key, created_at, valid_until FROM signing_keys ORDER BY key_id",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        out.push(KeyInfo {
            key_id: KeyId(
                u32::try_from(id).map_err(|_| StoreError::Corrupt(format!("key id {id}")))?,
            ),
            public_key: r.get(1)?,
            created_at: from_db(r.get(2)?)?,
            valid_until: opt_from_db(r.get(3)?)?,
        });
    }
    Ok(out)
}

/// The current signing key.
pub fn current_signing_key(conn: &Connection) -> Result<Option<(KeyId, SigningKey)>, StoreError> {
    let row: Option<(i64, String)> = conn
        .query_row(
            "SELECT key_id, secret_hex FROM signing_keys
             WHERE valid_until IS NULL ORDER BY key_id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((id, hex)) = row else {
        return Ok(None);
    };
    let corrupt = || StoreError::Corrupt(format!("signing key {id}"));
    let bytes: [u8; 32] = HEXLOWER
        .decode(hex.as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(corrupt)?;
    let id = u32::try_from(id).map_err(|_| corrupt())?;
    Ok(Some((KeyId(id), SigningKey::from_bytes(&bytes))))
}

/// Flagged entries, oldest first; of one card when `card` is given.
pub fn flagged_entries(
    conn: &Connection,
    card: Option<&CardId>,
) -> Result<Vec<FlaggedEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.at, t.store, t.terminal, e.seq, f.entry_id, f.card, f.kind, f.detail
         FROM flags f
         JOIN entries e ON e.id = f.entry_id
         JOIN terminals t ON t.id = e.terminal_ref
         WHERE ?1 IS NULL OR f.card = ?1
         ORDER BY f.id",
    )?;
    let mut rows = stmt.query([card.map(CardId::as_str)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let (s, t, id, c, kind): (String, String, String, String, String) =
            (r.get(1)?, r.get(2)?, r.get(4)?, r.get(5)?, r.get(6)?);
        out.push(FlaggedEntry {
            at: from_db(r.get(0)?)?,
            store: store_id(&s)?,
            terminal: terminal_id(&t)?,
            seq: Seq(unsigned(r.get(3)?)?),
            entry_id: uuid(&id)?,
            card: super::rows::card(&c)?,
            kind: FlagKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("flag kind {kind:?}")))?,
            detail: r.get(7)?,
        });
    }
    Ok(out)
}

/// Cards with a negative balance, most negative first, with their flagged entries.
pub fn overdrafts(conn: &mut Connection) -> Result<Vec<Overdraft>, StoreError> {
    let tx = conn.transaction()?;
    let cards: Vec<(String, i64)> = {
        let mut stmt =
            tx.prepare("SELECT card, balance FROM cards WHERE balance < 0 ORDER BY balance, card")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Vec::with_capacity(cards.len());
    for (card, balance) in cards {
        let card = super::rows::card(&card)?;
        let flagged = flagged_entries(&tx, Some(&card))?;
        out.push(Overdraft {
            card,
            balance: Points(balance),
            flagged,
        });
    }
    Ok(out)
}
