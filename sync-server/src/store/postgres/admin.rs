//! Terminals, cards, keys and reports on PostgreSQL: what the admin commands and
//! authentication read and write.

use super::cards::{Missing, lock_cards};
use super::rows::card_row;
use super::sql;
use crate::keys::TokenHash;
use crate::ledger::{FlagKind, LedgerKind};
use crate::store::encode::{
    CARD_COLUMNS, card, from_db, opt_from_db, store_id, terminal_id, to_db, unsigned,
};
use crate::store::{
    Anomaly, CardReport, FlaggedEntry, KeyInfo, LedgerView, Overdraft, StoreError, TerminalAdded,
    TerminalIdentity, TerminalInfo,
};
use data_encoding::HEXLOWER;
use deadpool_postgres::{Client, GenericClient};
use ed25519_dalek::SigningKey;
use protocol::token::{KeyId, encode_public_key};
use protocol::{CardId, Points, Seq, StoreId, TerminalId};
use time::{Duration, OffsetDateTime};
use tokio_postgres::IsolationLevel;
use uuid::Uuid;

/// The active terminal of a token hash.
pub async fn authenticate(
    c: &impl GenericClient,
    hash: &TokenHash,
) -> Result<Option<TerminalIdentity>, StoreError> {
    let row = sql::query_opt(
        c,
        "SELECT id, store, terminal FROM terminals WHERE token_hash = $1 AND revoked_at IS NULL",
        &[&hash.as_str()],
    )
    .await?;
    row.map(|r| {
        let (s, t): (String, String) = (r.try_get(1)?, r.try_get(2)?);
        Ok(TerminalIdentity {
            key: r.try_get(0)?,
            store: store_id(&s)?,
            terminal: terminal_id(&t)?,
        })
    })
    .transpose()
}

/// See [`crate::store::Store::add_terminal`].
pub async fn add_terminal(
    client: &mut Client,
    store: &StoreId,
    terminal: &TerminalId,
    hash: &TokenHash,
    rotate: bool,
    now: OffsetDateTime,
) -> Result<TerminalAdded, StoreError> {
    let tx = client.transaction().await?;
    // Insert-or-nothing first: two `terminal add` at once cannot both create it.
    let created = sql::execute(
        &tx,
        "INSERT INTO terminals (store, terminal, token_hash, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (store, terminal) DO NOTHING",
        &[
            &store.as_str(),
            &terminal.as_str(),
            &hash.as_str(),
            &to_db(now),
        ],
    )
    .await?;
    let added = if created == 1 {
        TerminalAdded::Created
    } else {
        let row = sql::query_one(
            &tx,
            "SELECT id, revoked_at FROM terminals WHERE store = $1 AND terminal = $2 FOR UPDATE",
            &[&store.as_str(), &terminal.as_str()],
        )
        .await?;
        let (id, revoked): (i64, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
        if revoked.is_none() && !rotate {
            return Err(StoreError::TerminalActive {
                store: store.clone(),
                terminal: terminal.clone(),
            });
        }
        sql::execute(
            &tx,
            "UPDATE terminals SET token_hash = $2, revoked_at = NULL WHERE id = $1",
            &[&id, &hash.as_str()],
        )
        .await?;
        if revoked.is_some() {
            TerminalAdded::Reactivated
        } else {
            TerminalAdded::Rotated
        }
    };
    tx.commit().await?;
    Ok(added)
}

/// See [`crate::store::Store::revoke_terminal`].
pub async fn revoke_terminal(
    c: &impl GenericClient,
    store: &StoreId,
    terminal: &TerminalId,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let n = sql::execute(
        c,
        "UPDATE terminals SET revoked_at = COALESCE(revoked_at, $3)
         WHERE store = $1 AND terminal = $2",
        &[&store.as_str(), &terminal.as_str(), &to_db(now)],
    )
    .await?;
    if n == 0 {
        return Err(StoreError::UnknownTerminal {
            store: store.clone(),
            terminal: terminal.clone(),
        });
    }
    Ok(())
}

/// Every terminal, by store and name.
pub async fn list_terminals(c: &impl GenericClient) -> Result<Vec<TerminalInfo>, StoreError> {
    let rows = sql::query(
        c,
        "SELECT store, terminal, created_at, revoked_at, acked_through, last_push_at
         FROM terminals ORDER BY store, terminal",
        &[],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let (s, t): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            Ok(TerminalInfo {
                store: store_id(&s)?,
                terminal: terminal_id(&t)?,
                created_at: from_db(r.try_get(2)?)?,
                revoked_at: opt_from_db(r.try_get(3)?)?,
                acked_through: Seq(unsigned(r.try_get(4)?)?),
                last_push_at: opt_from_db(r.try_get(5)?)?,
            })
        })
        .collect()
}

/// Appends an anomaly.
pub async fn record_anomaly(c: &impl GenericClient, a: &Anomaly) -> Result<(), StoreError> {
    sql::execute(
        c,
        "INSERT INTO anomalies (at, store, terminal, kind, detail) VALUES ($1, $2, $3, $4, $5)",
        &[
            &to_db(a.at),
            &a.store.as_str(),
            &a.terminal.as_str(),
            &a.kind.as_str(),
            &a.detail.as_str(),
        ],
    )
    .await?;
    Ok(())
}

/// Every anomaly, oldest first.
pub async fn anomalies(c: &impl GenericClient) -> Result<Vec<Anomaly>, StoreError> {
    let rows = sql::query(
        c,
        "SELECT at, store, terminal, kind, detail FROM anomalies ORDER BY id",
        &[],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let (s, t): (String, String) = (r.try_get(1)?, r.try_get(2)?);
            Ok(Anomaly {
                at: from_db(r.try_get(0)?)?,
                store: store_id(&s)?,
                terminal: terminal_id(&t)?,
                kind: r.try_get(3)?,
                detail: r.try_get(4)?,
            })
        })
        .collect()
}

/// See [`crate::store::Store::set_blocked`]. The card row is locked first (as every
/// writer of a card does), so the event's id orders the events of one card, and the
/// card row takes this transaction's feed position too.
pub async fn set_blocked(
    client: &mut Client,
    card_id: &CardId,
    blocked: bool,
    reason: Option<&str>,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    let locked = lock_cards(&tx, &[card_id], Missing::Create, now)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("card {card_id} could not be locked")))?;
    let existed = !locked.created.contains(card_id.as_str());
    let already = locked
        .states
        .get(card_id)
        .is_some_and(|s| s.blocked == blocked);
    if existed && already {
        // Rolled back on drop: nothing changed.
        return Ok(false);
    }
    sql::execute(
        &tx,
        "INSERT INTO block_events (xid, card, blocked, reason, at)
         VALUES (loyalty_xid(), $1, $2, $3, $4)",
        &[&card_id.as_str(), &blocked, &reason, &to_db(now)],
    )
    .await?;
    sql::execute(
        &tx,
        "UPDATE cards SET blocked = $2, block_reason = $3, change_xid = loyalty_xid(),
                          updated_at = $4
         WHERE card = $1",
        &[
            &card_id.as_str(),
            &blocked,
            &if blocked { reason } else { None },
            &to_db(now),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// See [`crate::store::Store::card_report`].
pub async fn card_report(
    client: &mut Client,
    card_id: &CardId,
    recent: u32,
) -> Result<Option<CardReport>, StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let row = sql::query_opt(
        &tx,
        &format!("SELECT {CARD_COLUMNS}, block_reason, updated_at FROM cards WHERE card = $1"),
        &[&card_id.as_str()],
    )
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let rows = sql::query(
        &tx,
        "SELECT kind, delta_balance, delta_pending, at, entry_id FROM ledger
         WHERE card = $1 ORDER BY id DESC LIMIT $2",
        &[&card_id.as_str(), &i64::from(recent)],
    )
    .await?;
    tx.commit().await?;
    let recent = rows
        .iter()
        .map(|r| {
            let kind: String = r.try_get(0)?;
            Ok(LedgerView {
                kind: LedgerKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("ledger kind {kind:?}")))?,
                delta_balance: Points(r.try_get(1)?),
                delta_pending: Points(r.try_get(2)?),
                at: from_db(r.try_get(3)?)?,
                entry_id: r.try_get::<_, Option<Uuid>>(4)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(CardReport {
        state: card_row(&row, 0)?.into_state()?,
        block_reason: row.try_get(10)?,
        updated_at: from_db(row.try_get(11)?)?,
        recent,
    }))
}

/// See [`crate::store::Store::rotate_keys`].
pub async fn rotate_keys(
    client: &mut Client,
    key: &SigningKey,
    grace: Duration,
    now: OffsetDateTime,
) -> Result<KeyInfo, StoreError> {
    let tx = client.transaction().await?;
    // One rotation at a time: two would both pick "highest + 1".
    tx.batch_execute("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
        .await?;
    let until = now.checked_add(grace).unwrap_or(now);
    sql::execute(
        &tx,
        "UPDATE signing_keys SET valid_until = $1 WHERE valid_until IS NULL",
        &[&to_db(until)],
    )
    .await?;
    let next: i64 = sql::query_one(
        &tx,
        "SELECT COALESCE(MAX(key_id), 0) + 1 FROM signing_keys",
        &[],
    )
    .await?
    .try_get(0)?;
    let key_id =
        KeyId(u32::try_from(next).map_err(|_| StoreError::Corrupt(format!("key id {next}")))?);
    let public_key = encode_public_key(&key.verifying_key());
    sql::execute(
        &tx,
        "INSERT INTO signing_keys (key_id, secret_hex, public_key, created_at, valid_until)
         VALUES ($1, $2, $3, $4, NULL)",
        &[
            &next,
            &HEXLOWER.encode(&key.to_bytes()),
            &public_key.as_str(),
            &to_db(now),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(KeyInfo {
        key_id,
        public_key,
        created_at: now,
        valid_until: None,
    })
}

/// Every key's public half, oldest first.
pub async fn list_keys(c: &impl GenericClient) -> Result<Vec<KeyInfo>, StoreError> {
    let rows = sql::query(
        c,
        "SELECT key_id, public_key, created_at, valid_until FROM signing_keys ORDER BY key_id",
        &[],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.try_get(0)?;
            Ok(KeyInfo {
                key_id: KeyId(
                    u32::try_from(id).map_err(|_| StoreError::Corrupt(format!("key id {id}")))?,
                ),
                public_key: r.try_get(1)?,
                created_at: from_db(r.try_get(2)?)?,
                valid_until: opt_from_db(r.try_get(3)?)?,
            })
        })
        .collect()
}

/// The current signing key.
pub async fn current_signing_key(
    c: &impl GenericClient,
) -> Result<Option<(KeyId, SigningKey)>, StoreError> {
    let row = sql::query_opt(
        c,
        "SELECT key_id, secret_hex FROM signing_keys
         WHERE valid_until IS NULL ORDER BY key_id DESC LIMIT 1",
        &[],
    )
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (id, hex): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
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
pub async fn flagged_entries(
    c: &impl GenericClient,
    card_id: Option<&CardId>,
) -> Result<Vec<FlaggedEntry>, StoreError> {
    let rows = sql::query(
        c,
        "SELECT e.at, t.store, t.terminal, e.seq, f.entry_id, f.card, f.kind, f.detail
         FROM flags f
         JOIN entries e ON e.id = f.entry_id
         JOIN terminals t ON t.id = e.terminal_ref
         WHERE $1::text IS NULL OR f.card = $1
         ORDER BY f.id",
        &[&card_id.map(CardId::as_str)],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let (s, t, c, kind): (String, String, String, String) =
                (r.try_get(1)?, r.try_get(2)?, r.try_get(5)?, r.try_get(6)?);
            Ok(FlaggedEntry {
                at: from_db(r.try_get(0)?)?,
                store: store_id(&s)?,
                terminal: terminal_id(&t)?,
                seq: Seq(unsigned(r.try_get(3)?)?),
                entry_id: r.try_get(4)?,
                card: card(&c)?,
                kind: FlagKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("flag kind {kind:?}")))?,
                detail: r.try_get(7)?,
            })
        })
        .collect()
}

/// Cards with a negative balance, most negative first, with their flagged entries.
pub async fn overdrafts(client: &mut Client) -> Result<Vec<Overdraft>, StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let rows = sql::query(
        &tx,
        "SELECT card, balance FROM cards WHERE balance < 0 ORDER BY balance, card",
        &[],
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let c: String = r.try_get(0)?;
        let c = card(&c)?;
        let flagged = flagged_entries(&tx, Some(&c)).await?;
        out.push(Overdraft {
            card: c,
            balance: Points(r.try_get(1)?),
            flagged,
        });
    }
    tx.commit().await?;
    Ok(out)
}
