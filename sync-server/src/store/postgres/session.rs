//! A PostgreSQL connection as the flows see it: [`PgSession`] runs statements on a
//! pooled connection (through its prepared-statement cache, [`super::sql`]) and
//! the transactions around them.
//!
//! Transactions are `START TRANSACTION` / `COMMIT` on the session's own connection,
//! exactly what the driver's transaction type sends. A session dropped inside a
//! transaction (a cancelled request, an attempt that failed before it could roll
//! back) cannot wait for a `ROLLBACK`, so it takes its connection out of the pool
//! and closes it: the server rolls the transaction back, and no later request ever
//! finds itself inside it.

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
    open: bool,
}

impl<'c> PgSession<'c> {
    /// A session on `client`.
    pub fn new(client: Client, caches: &'c Caches) -> Self {
        Self {
            client: Some(client),
            caches,
            open: false,
        }
    }

    /// The connection.
    pub fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a session holds its client until it is dropped")
    }

    /// Sends `sql`, counting the transaction as open until it answered: a session
    /// dropped while waiting discards its connection.
    async fn end(&mut self, sql: &str) -> Result<()> {
        self.client().batch_execute(sql).await?;
        self.open = false;
        Ok(())
    }
}

impl Session for PgSession<'_> {
    async fn begin(&mut self, kind: TxKind) -> Result<()> {
        self.open = true;
        self.client()
            .batch_execute(match kind {
                TxKind::Snapshot => "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                // READ COMMITTED: a writer's consistency comes from the row locks it
                // takes in a fixed order (terminal, then cards by id).
                TxKind::Write => "START TRANSACTION",
            })
            .await?;
        Ok(())
    }

    async fn commit(&mut self) -> Result<()> {
        self.end("COMMIT").await
    }

    async fn rollback(&mut self) -> Result<()> {
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
