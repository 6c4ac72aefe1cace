//! Terminals and entries in SQLite. The single writer connection serializes pushes,
//! so locking a terminal is a plain read inside the `BEGIN IMMEDIATE` transaction.

use super::session::{Param, SqliteSession, int, opt_text, owned_text, text};
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
use protocol::{CardId, Seq};
use rusqlite::ErrorCode;
use time::OffsetDateTime;
use uuid::Uuid;

impl TerminalRows for SqliteSession<'_> {
    async fn authenticate(&mut self, hash: &TokenHash) -> Result<Option<TerminalIdentity>> {
        self.first(
            "SELECT id, store, terminal FROM terminals
             WHERE token_hash = ?1 AND revoked_at IS NULL",
            [hash.as_str()],
            |r| rows::terminal_identity(r),
        )
    }

    async fn lock_terminal(&mut self, key: i64) -> Result<Option<TerminalState>> {
        self.first(
            "SELECT acked_through, revoked_at IS NOT NULL, lease_epoch FROM terminals WHERE id = ?1",
            [key],
            |r| {
                Ok(TerminalState {
                    acked_through: Seq(r.counter(0)?),
                    revoked: r.boolean(1)?,
                    lease_epoch: r.counter(2)?,
                })
            },
        )
    }

    async fn active_acked_through(&mut self, key: i64) -> Result<Option<Seq>> {
        self.first(
            "SELECT acked_through FROM terminals WHERE id = ?1 AND revoked_at IS NULL",
            [key],
            |r| Ok(Seq(r.counter(0)?)),
        )
    }

    async fn ack(&mut self, key: i64, acked: Seq, now: OffsetDateTime) -> Result<()> {
        self.execute(
            "UPDATE terminals SET acked_through = ?2, last_push_at = ?3 WHERE id = ?1",
            (key, signed(acked.get())?, to_db(now)),
        )?;
        Ok(())
    }

    async fn insert_terminal(&mut self, new: &NewTerminal<'_>) -> Result<bool> {
        let n = self.execute(
            "INSERT INTO terminals (store, terminal, token_hash, created_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (store, terminal) DO NOTHING",
            (
                new.name.store.as_str(),
                new.name.terminal.as_str(),
                new.hash.as_str(),
                to_db(new.created_at),
            ),
        )?;
        Ok(n == 1)
    }

    async fn lock_named_terminal(&mut self, name: TerminalName<'_>) -> Result<(i64, bool)> {
        self.one(
            "SELECT id, revoked_at IS NOT NULL FROM terminals WHERE store = ?1 AND terminal = ?2",
            (name.store.as_str(), name.terminal.as_str()),
            |r| Ok((r.int(0)?, r.boolean(1)?)),
        )
    }

    async fn set_token(&mut self, key: i64, hash: &TokenHash) -> Result<()> {
        self.execute(
            "UPDATE terminals SET token_hash = ?2, revoked_at = NULL WHERE id = ?1",
            (key, hash.as_str()),
        )?;
        Ok(())
    }

    async fn revoke(&mut self, name: TerminalName<'_>, now: OffsetDateTime) -> Result<u64> {
        let n = self.execute(
            "UPDATE terminals SET revoked_at = COALESCE(revoked_at, ?3)
             WHERE store = ?1 AND terminal = ?2",
            (name.store.as_str(), name.terminal.as_str(), to_db(now)),
        )?;
        Ok(n as u64)
    }

    async fn list_terminals(&mut self) -> Result<Vec<TerminalInfo>> {
        self.all(
            "SELECT store, terminal, created_at, revoked_at, acked_through, last_push_at
             FROM terminals ORDER BY store, terminal",
            [],
            |r| rows::terminal_info(r),
        )
    }
}

fn is_unique_violation(e: &rusqlite::Error, column: &str) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, Some(msg))
        if f.code == ErrorCode::ConstraintViolation && msg.contains(column))
}

impl EntryRows for SqliteSession<'_> {
    async fn held(&mut self, key: i64, from: Seq, to: Seq) -> Result<Vec<(u64, StoredEntry)>> {
        self.all(
            "SELECT seq, id, content_hash FROM entries
             WHERE terminal_ref = ?1 AND seq BETWEEN ?2 AND ?3",
            (key, signed(from.get())?, signed(to.get())?),
            |r| rows::stored_entry(r),
        )
    }

    /// Multi-row inserts (`SqliteSession::insert_rows`): a statement's set-up (a
    /// cursor on the table and each of its three indexes, its parameters) is paid
    /// once per 32 rows instead of once per entry. The clash still names its entry:
    /// the failed row is the one its statement stopped at.
    async fn insert_entries(&mut self, new: &NewEntries<'_>) -> Result<Option<Clash>> {
        let received_at = to_db(new.received_at);
        let rows = new
            .entries
            .iter()
            .zip(new.encoded)
            .map(|(e, (body, hash))| {
                Ok([
                    owned_text(e.id.to_string()),
                    int(new.terminal),
                    int(signed(e.seq.get())?),
                    int(to_db(e.at)),
                    text(entry_kind(e).as_str()),
                    opt_text(e.card().map(CardId::as_str)),
                    int(new.spend(e).get()),
                    int(signed(e.rules_version)?),
                    text(hash),
                    text(body),
                    int(received_at),
                ])
            })
            .collect::<Result<Vec<_>>>()?;
        let Err(failed) = self.insert_rows(
            "INSERT INTO entries (id, terminal_ref, seq, at, kind, card, spend_minor,
                                  rules_version, content_hash, body, received_at)",
            "",
            &rows,
        ) else {
            return Ok(None);
        };
        let clashed = new.entries.get(failed.row);
        match (clashed, &failed.error) {
            (Some(e), err) if is_unique_violation(err, "entries.id") => {
                Ok(Some(Clash::Id(Some(e.id))))
            }
            (Some(e), err) if is_unique_violation(err, "entries.terminal_ref") => {
                Ok(Some(Clash::Seq(e.seq)))
            }
            _ => Err(failed.error.into()),
        }
    }

    async fn entry_holders(&mut self, ids: &[Uuid]) -> Result<Vec<EntryHolder>> {
        let keys: Vec<Param<'_>> = ids.iter().map(|id| owned_text(id.to_string())).collect();
        let mut holders = self.query_in(
            "SELECT e.id, e.terminal_ref, e.seq, t.store, t.terminal FROM entries e
             JOIN terminals t ON t.id = e.terminal_ref WHERE e.id IN ({keys})",
            &keys,
            &[],
            |r| rows::entry_holder(r),
        )?;
        holders.sort_by_key(|h| h.seq);
        Ok(holders)
    }
}
