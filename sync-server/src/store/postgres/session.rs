//! A PostgreSQL connection as the flows see it: [`PgSession`] runs statements on a
//! pooled connection (through its prepared-statement cache, [`super::sql`]) and
//! the transactions around them.
//!
//! Transactions are `START TRANSACTION` / `COMMIT` on the session's own connection,
//! exactly what the driver's transaction type sends. The `START TRANSACTION` of a
//! write transaction is held back until the first statement ([`PgSession::conn`]), or
//! sent in the same flight as the push's first statements ([`PgSession::take_begin`]),
//! so it costs no round trip of its own; the `COMMIT` of a reservation or a push
//! goes in the flight of its last statements ([`commit_in_flight`]), so that its
//! locks are released with that flight's answer. A session dropped inside a
//! transaction (a cancelled request, an attempt that failed before it could roll
//! back) cannot wait for a `ROLLBACK`, so it takes its connection out of the pool
//! and closes it: the server rolls the transaction back, and no later request ever
//! finds itself inside it.

use super::bound::FeedWatch;
use crate::store::backend::{Session, TxKind};
use crate::store::caches::Caches;
use crate::store::rows::{Columns, Raw};
use crate::store::statements::Statements;
use crate::store::{Result, StoreError};
use deadpool_postgres::{Client, GenericClient};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

/// A pooled connection lent to one operation, inside a transaction when `open`.
pub struct PgSession<'c> {
    /// Always `Some` until the session is dropped.
    client: Option<Client>,
    caches: &'c Caches,
    feed: &'c FeedWatch,
    /// A transaction was begun on the server (or its `START TRANSACTION` sent).
    open: bool,
    /// The `START TRANSACTION` not sent yet.
    pending: Option<&'static str>,
}

impl<'c> PgSession<'c> {
    /// A session on `client`.
    pub fn new(client: Client, caches: &'c Caches, feed: &'c FeedWatch) -> Self {
        Self {
            client: Some(client),
            caches,
            feed,
            open: false,
            pending: None,
        }
    }

    /// What watches the change feed's bound across this store's pulls.
    pub fn feed_watch(&self) -> &FeedWatch {
        self.feed
    }

    /// The connection, as it is: a held-back `START TRANSACTION` is not sent. Only
    /// for the statements of a flight that sent it ([`Self::take_begin`]).
    pub fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a session holds its client until it is dropped")
    }

    /// The connection, inside the transaction begun (a held-back `START
    /// TRANSACTION` is sent first).
    pub async fn conn(&mut self) -> Result<&Client> {
        if let Some(begin) = self.take_begin() {
            self.client().batch_execute(begin).await?;
        }
        Ok(self.client())
    }

    /// The held-back `START TRANSACTION`, if any, for the caller to send ahead of its
    /// statements in one flight; the transaction counts as open from now on.
    pub fn take_begin(&mut self) -> Option<&'static str> {
        let begin = self.pending.take();
        if begin.is_some() {
            self.open = true;
        }
        begin
    }

    /// The transaction ended by a `COMMIT` sent in a flight ([`commit_in_flight`]) that
    /// answered: nothing is left to commit or roll back.
    pub fn ended(&mut self) {
        self.open = false;
    }

    /// Sends `sql`, counting the transaction as open until it answered: a session
    /// dropped while waiting discards its connection.
    async fn end(&mut self, sql: &str) -> Result<()> {
        self.client().batch_execute(sql).await?;
        self.open = false;
        Ok(())
    }
}

/// The `COMMIT` of a flight that ends its transaction, sent after the flight's
/// statements: `began` says the transaction is the flight's to end (a flight that
/// also sent the `START TRANSACTION` of an operation whose reads all fit in it, or
/// the last statements of a write transaction). Nothing when it is not (the
/// transaction is the operation's, to commit at its end). After a failed statement
/// of the flight the server answers it by rolling back. Once it answered, the
/// caller calls [`PgSession::ended`].
pub async fn commit_in_flight(c: &Client, began: bool) -> Result<()> {
    if began {
        c.batch_execute("COMMIT").await?;
    }
    Ok(())
}

impl Session for PgSession<'_> {
    /// Sends nothing yet: see the module documentation.
    async fn begin(&mut self, kind: TxKind) -> Result<()> {
        self.pending = Some(match kind {
            TxKind::Snapshot => "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            // READ COMMITTED: a writer's consistency comes from the row locks it
            // takes in a fixed order (terminal, then cards by id).
            TxKind::Write => "START TRANSACTION",
        });
        Ok(())
    }

    /// A transaction that never sent a statement has nothing to commit.
    async fn commit(&mut self) -> Result<()> {
        self.pending = None;
        if self.open {
            self.end("COMMIT").await?;
        }
        Ok(())
    }

    async fn rollback(&mut self) -> Result<()> {
        self.pending = None;
        if self.open {
            self.end("ROLLBACK").await?;
        }
        Ok(())
    }
}

impl Drop for PgSession<'_> {
    fn drop(&mut self) {
        if self.open
            && let Some(client) = self.client.take()
        {
            tracing::debug!("closing a connection left inside a transaction");
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

impl Statements for PgSession<'_> {
    fn caches(&self) -> &Caches {
        self.caches
    }
}

impl Columns for Row {
    /// Read by the column's type: the schema uses only these.
    fn raw(&self, i: usize) -> Result<Raw> {
        let ty = self
            .columns()
            .get(i)
            .map(|c| c.type_())
            .ok_or_else(|| StoreError::corrupt(format!("no column {i}")))?;
        Ok(if *ty == Type::INT8 {
            self.try_get::<_, Option<i64>>(i)?
                .map_or(Raw::Null, Raw::Int)
        } else if *ty == Type::INT4 {
            self.try_get::<_, Option<i32>>(i)?
                .map_or(Raw::Null, |n| Raw::Int(i64::from(n)))
        } else if *ty == Type::BOOL {
            self.try_get::<_, Option<bool>>(i)?
                .map_or(Raw::Null, Raw::Bool)
        } else if *ty == Type::UUID {
            self.try_get::<_, Option<Uuid>>(i)?
                .map_or(Raw::Null, Raw::Uuid)
        } else {
            self.try_get::<_, Option<String>>(i)?
                .map_or(Raw::Null, Raw::Text)
        })
    }
}
