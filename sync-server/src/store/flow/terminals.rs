//! Terminals: authentication by token hash, and `terminal add`, `revoke`, `list`.

use super::done;
use crate::keys::TokenHash;
use crate::store::Result;
use crate::store::backend::{Access, Attempt, Op};
use crate::store::statements::{NewTerminal, Statements, TerminalName};
use crate::store::{StoreError, TerminalAdded, TerminalIdentity, TerminalInfo};
use protocol::{StoreId, TerminalId};
use time::OffsetDateTime;

/// The active terminal a token hash belongs to.
pub struct Authenticate(pub TokenHash);

impl Op for Authenticate {
    type Out = Option<TerminalIdentity>;
    const ACCESS: Access = Access::Read;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Option<TerminalIdentity>>> {
        done(c.authenticate(&self.0).await)
    }
}

/// `terminal add`: see [`crate::store::Store::add_terminal`].
pub struct Add {
    /// Its store.
    pub store: StoreId,
    /// Its name in the store.
    pub terminal: TerminalId,
    /// Its new token's hash.
    pub hash: TokenHash,
    /// Replace the token of an active terminal.
    pub rotate: bool,
    /// The server's time.
    pub now: OffsetDateTime,
}

impl Op for Add {
    type Out = TerminalAdded;
    const ACCESS: Access = Access::Write;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<TerminalAdded>> {
        // Insert-or-nothing first: two `terminal add` at once cannot both create it.
        let name = TerminalName {
            store: &self.store,
            terminal: &self.terminal,
        };
        let new = NewTerminal {
            name,
            hash: &self.hash,
            created_at: self.now,
        };
        if c.insert_terminal(&new).await? {
            return done(Ok(TerminalAdded::Created));
        }
        let (key, revoked) = c.lock_named_terminal(name).await?;
        if !revoked && !self.rotate {
            return Err(StoreError::TerminalActive {
                store: self.store.clone(),
                terminal: self.terminal.clone(),
            });
        }
        c.set_token(key, &self.hash).await?;
        done(Ok(if revoked {
            TerminalAdded::Reactivated
        } else {
            TerminalAdded::Rotated
        }))
    }
}

/// `terminal revoke`: its token stops working at once.
pub struct Revoke {
    /// Its store.
    pub store: StoreId,
    /// Its name in the store.
    pub terminal: TerminalId,
    /// The server's time.
    pub now: OffsetDateTime,
}

impl Op for Revoke {
    type Out = ();
    const ACCESS: Access = Access::WriteOne;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<()>> {
        let name = TerminalName {
            store: &self.store,
            terminal: &self.terminal,
        };
        if c.revoke(name, self.now).await? == 0 {
            return Err(StoreError::UnknownTerminal {
                store: self.store.clone(),
                terminal: self.terminal.clone(),
            });
        }
        done(Ok(()))
    }
}

/// `terminal list`.
pub struct List;

impl Op for List {
    type Out = Vec<TerminalInfo>;
    const ACCESS: Access = Access::Read;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Vec<TerminalInfo>>> {
        done(c.list_terminals().await)
    }
}
