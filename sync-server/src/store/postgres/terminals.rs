//! Terminals and entries on PostgreSQL.
//!
//! Exactly-once across instances: a push first locks its terminal's row
//! (`SELECT … FOR NO KEY UPDATE`), so a second push of the same terminal, on this
//! instance or another, waits and then reads the `acked_through` and entries the first
//! one committed. The unique `(terminal, seq)` and entry-id constraints back this up
//! inside the database. `NO KEY`: rows that reference the terminal (a reservation
//! written under a card lock) take only a key-share lock on it, which this one leaves
//! free, so a push waiting for that card cannot deadlock with them.

use super::session::PgSession;
use super::sql;
use crate::keys::TokenHash;
use crate::ledger::apply::entry_kind;
use crate::ledger::sequence::StoredEntry;
use crate::store::Result;
use crate::store::encode::{signed, to_db};
use crate::store::rows::{self, Columns};
use crate::store::statements::{
    Clash, EntryHolder, EntryRows, NewEntries, NewTerminal, TerminalName, TerminalRows,
    TerminalState,
};
use crate::store::{TerminalIdentity, TerminalInfo};
use deadpool_postgres::Client;
use deadpool_postgres::GenericClient;
use protocol::{CardId, Seq};
use std::sync::LazyLock;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// A batch of entry rows: the terminal's key, the time received, then one array
/// per column (ids, seqs, times, kinds, cards, spends, rules versions, hashes,
/// bodies). The benchmark's raw baseline writes the same statement.
pub const INSERT_ENTRIES: &str =
    "INSERT INTO entries (id, terminal_ref, seq, at, kind, card, spend_minor,
                             rules_version, content_hash, body, received_at)
    SELECT u.id, $1, u.seq, u.at, u.kind, u.card, u.spend, u.rv, u.hash, u.body, $2
    FROM unnest($3::uuid[], $4::bigint[], $5::bigint[], $6::text[], $7::text[],
                $8::bigint[], $9::bigint[], $10::text[], $11::text[])
         AS u(id, seq, at, kind, card, spend, rv, hash, body)";

impl TerminalRows for PgSession<'_> {
    async fn authenticate(&mut self, hash: &TokenHash) -> Result<Option<TerminalIdentity>> {
        sql::first(
            self.conn().await?,
            &AUTHENTICATE,
            &[&hash.as_str()],
            rows::terminal_identity,
        )
        .await
    }

    async fn lock_terminal(&mut self, key: i64) -> Result<Option<TerminalState>> {
        lock_terminal(self.conn().await?, key).await
    }

    async fn active_acked_through(&mut self, key: i64) -> Result<Option<Seq>> {
        active_acked_through(self.conn().await?, key).await
    }

    async fn ack(&mut self, key: i64, acked: Seq, now: OffsetDateTime) -> Result<()> {
        ack(self.conn().await?, key, acked, now).await
    }

    async fn insert_terminal(&mut self, new: &NewTerminal<'_>) -> Result<bool> {
        let n = sql::execute(
            self.conn().await?,
            "INSERT INTO terminals (store, terminal, token_hash, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (store, terminal) DO NOTHING",
            &[
                &new.name.store.as_str(),
                &new.name.terminal.as_str(),
                &new.hash.as_str(),
                &to_db(new.created_at),
            ],
        )
        .await?;
        Ok(n == 1)
    }

    async fn lock_named_terminal(&mut self, name: TerminalName<'_>) -> Result<(i64, bool)> {
        sql::one(
            self.conn().await?,
            "SELECT id, revoked_at IS NOT NULL FROM terminals
             WHERE store = $1 AND terminal = $2 FOR UPDATE",
            &[&name.store.as_str(), &name.terminal.as_str()],
            |r| Ok((r.int(0)?, r.boolean(1)?)),
        )
        .await
    }

    async fn set_token(&mut self, key: i64, hash: &TokenHash) -> Result<()> {
        sql::execute(
            self.conn().await?,
            "UPDATE terminals SET token_hash = $2, revoked_at = NULL WHERE id = $1",
            &[&key, &hash.as_str()],
        )
        .await?;
        Ok(())
    }

    async fn revoke(&mut self, name: TerminalName<'_>, now: OffsetDateTime) -> Result<u64> {
        sql::execute(
            self.conn().await?,
            "UPDATE terminals SET revoked_at = COALESCE(revoked_at, $3)
             WHERE store = $1 AND terminal = $2",
            &[&name.store.as_str(), &name.terminal.as_str(), &to_db(now)],
        )
        .await
    }

    async fn list_terminals(&mut self) -> Result<Vec<TerminalInfo>> {
        sql::all(
            self.conn().await?,
            "SELECT store, terminal, created_at, revoked_at, acked_through, last_push_at
             FROM terminals ORDER BY store, terminal",
            &[],
            rows::terminal_info,
        )
        .await
    }
}

impl EntryRows for PgSession<'_> {
    async fn held(&mut self, key: i64, from: Seq, to: Seq) -> Result<Vec<(u64, StoredEntry)>> {
        held(self.conn().await?, key, from, to).await
    }

    /// One statement for the whole batch (arrays through `unnest`). A plain INSERT
    /// (no `ON CONFLICT`, whose speculative insertion costs as much again): the
    /// unique constraints abort the transaction on a reused id or seq, and the flow
    /// names the owner after the rollback.
    async fn insert_entries(&mut self, new: &NewEntries<'_>) -> Result<Option<Clash>> {
        insert_entries(self.conn().await?, new).await
    }

    async fn entry_holders(&mut self, ids: &[Uuid]) -> Result<Vec<EntryHolder>> {
        sql::all(
            self.conn().await?,
            "SELECT e.id, e.terminal_ref, e.seq, t.store, t.terminal FROM entries e
             JOIN terminals t ON t.id = e.terminal_ref
             WHERE e.id = ANY($1) ORDER BY e.seq",
            &[&ids],
            rows::entry_holder,
        )
        .await
    }
}

pub(super) async fn lock_terminal(c: &Client, key: i64) -> Result<Option<TerminalState>> {
    sql::first(c, LOCK_TERMINAL, &[&key], rows::terminal_state).await
}

pub(super) async fn ack(c: &Client, key: i64, acked: Seq, now: OffsetDateTime) -> Result<()> {
    sql::execute(c, ACK, &sql::refs(&ack_row(key, acked, now)?)).await?;
    Ok(())
}

pub(super) async fn held(
    c: &Client,
    key: i64,
    from: Seq,
    to: Seq,
) -> Result<Vec<(u64, StoredEntry)>> {
    sql::all(
        c,
        HELD,
        &[&key, &signed(from.get())?, &signed(to.get())?],
        rows::stored_entry,
    )
    .await
}

/// One statement for the whole batch (arrays through `unnest`). A plain INSERT
/// (no `ON CONFLICT`, whose speculative insertion costs as much again): the
/// unique constraints abort the transaction on a reused id or seq, and the flow
/// names the owner after the rollback.
pub(super) async fn insert_entries(c: &Client, new: &NewEntries<'_>) -> Result<Option<Clash>> {
    let stmt = c.prepare_cached(INSERT_ENTRIES).await?;
    match c.execute(&stmt, &sql::refs(&entry_rows(new)?)).await {
        Ok(_) => Ok(None),
        Err(e) => match entry_clash(&e, new) {
            Some(clash) => Ok(Some(clash)),
            None => Err(e.into()),
        },
    }
}

/// The parameters of [`INSERT_ENTRIES`].
pub(super) fn entry_rows<'a>(new: &NewEntries<'a>) -> Result<sql::Owned<'a>> {
    let entries = new.entries;
    let n = entries.len();
    let mut id = Vec::with_capacity(n);
    let mut seq = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut card = Vec::with_capacity(n);
    let mut spend = Vec::with_capacity(n);
    let mut rules_version = Vec::with_capacity(n);
    let mut hash = Vec::with_capacity(n);
    let mut body = Vec::with_capacity(n);
    for (e, (b, h)) in entries.iter().zip(new.encoded) {
        id.push(e.id);
        seq.push(signed(e.seq.get())?);
        at.push(to_db(e.at));
        kind.push(entry_kind(e).as_str());
        card.push(e.card().map(CardId::as_str));
        spend.push(new.spend(e).get());
        rules_version.push(signed(e.rules_version)?);
        hash.push(h.as_str());
        body.push(b.as_str());
    }
    Ok(vec![
        Box::new(new.terminal),
        Box::new(to_db(new.received_at)),
        Box::new(id),
        Box::new(seq),
        Box::new(at),
        Box::new(kind),
        Box::new(card),
        Box::new(spend),
        Box::new(rules_version),
        Box::new(hash),
        Box::new(body),
    ])
}

/// The clash of `new`'s rows with the entries' uniqueness constraints that `e` is,
/// if it is one.
pub(super) fn entry_clash(e: &tokio_postgres::Error, new: &NewEntries<'_>) -> Option<Clash> {
    if e.code() != Some(&SqlState::UNIQUE_VIOLATION) {
        return None;
    }
    match e.as_db_error().and_then(|d| d.constraint()) {
        Some("entries_pkey") => Some(Clash::Id(None)),
        // The terminal's row lock makes this unreachable; the constraint holds
        // anyway.
        Some("entries_terminal_seq") => {
            Some(Clash::Seq(new.entries.first().map_or(Seq(0), |e| e.seq)))
        }
        _ => None,
    }
}

/// The parameters of [`ACK`].
pub(super) fn ack_row(key: i64, acked: Seq, now: OffsetDateTime) -> Result<sql::Owned<'static>> {
    Ok(vec![
        Box::new(key),
        Box::new(signed(acked.get())?),
        Box::new(to_db(now)),
    ])
}

/// The statement of [`lock_terminal`].
pub(super) const LOCK_TERMINAL: &str =
    "SELECT acked_through, revoked_at IS NOT NULL, lease_epoch, token_hash FROM terminals
         WHERE id = $1 FOR NO KEY UPDATE";

/// The statement of [`ack`].
pub(super) const ACK: &str =
    "UPDATE terminals SET acked_through = $2, last_push_at = $3 WHERE id = $1";

/// The statement of [`held`].
pub(super) const HELD: &str = "SELECT seq, id, content_hash FROM entries
         WHERE terminal_ref = $1 AND seq BETWEEN $2 AND $3";

/// `acked_through` of the terminal `key`, `None` once it was revoked.
pub(super) async fn active_acked_through(c: &Client, key: i64) -> Result<Option<Seq>> {
    sql::first(c, ACTIVE_ACKED, &[&key], |r| Ok(Seq(r.counter(0)?))).await
}

/// Who a token authenticates, written once: the active terminal whose token hash is
/// `$1`. Every statement that authenticates says it with this condition.
pub(super) const ACTIVE_TOKEN: &str = "token_hash = $1 AND revoked_at IS NULL";

/// The statement of [`TerminalRows::authenticate`].
static AUTHENTICATE: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT id, store, terminal, token_hash FROM terminals WHERE {ACTIVE_TOKEN}")
});

/// The key and `acked_through` of the active terminal `token` belongs to, if any.
pub(super) async fn token_acked_through(
    c: &Client,
    token: &TokenHash,
) -> Result<Option<(i64, Seq)>> {
    sql::first(c, &TOKEN_ACKED, &[&token.as_str()], |r| {
        Ok((r.int(0)?, Seq(r.counter(1)?)))
    })
    .await
}

/// The statement of [`token_acked_through`].
pub(super) static TOKEN_ACKED: LazyLock<String> =
    LazyLock::new(|| format!("SELECT id, acked_through FROM terminals WHERE {ACTIVE_TOKEN}"));

/// The id of the active terminal of the token hash `$1` (no row when there is none),
/// as a subquery for statements keyed by the token.
pub(super) static TOKEN_TERMINAL: LazyLock<String> =
    LazyLock::new(|| format!("(SELECT id FROM terminals WHERE {ACTIVE_TOKEN})"));

/// The statement of [`active_acked_through`].
pub(super) const ACTIVE_ACKED: &str =
    "SELECT acked_through FROM terminals WHERE id = $1 AND revoked_at IS NULL";
