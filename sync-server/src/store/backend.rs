//! How a backend runs an operation, and the one place that decides what a
//! transaction is.
//!
//! An operation ([`Op`]) is one of the flows of [`super::flow`]: a value holding its
//! inputs, with a `run` generic over the backend's [`Statements`]. A backend
//! ([`Backend`]) only provides a [`Session`] (a connection with its statements, able
//! to begin and commit transactions) and runs [`drive`] on it in its own way:
//!
//! * SQLite runs the whole operation on a blocking thread, holding the writer or a
//!   reader connection, and polls the flow's future there with a small executor
//!   (`sqlite::session::block_on`): its statements are synchronous, so the future
//!   never waits on SQLite and no tokio worker ever does either;
//! * PostgreSQL awaits it on a pooled connection and runs it again from the start
//!   when the database reports a serialization failure or a deadlock
//!   (`postgres::retry`).
//!
//! Why an async flow over a sync adapter rather than a flow written as a state
//! machine: the flow then reads top to bottom like the transaction it is, and the
//! only cost on SQLite is a future that is ready at its first poll.

use super::caches::Caches;
use super::statements::{Fut, Statements};
use crate::store::Result;

/// What kind of connection and transaction an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads, each statement on its own (no transaction); SQLite: a reader connection.
    Read,
    /// Reads from one snapshot (a read-only transaction); SQLite: a reader connection.
    Snapshot,
    /// One statement that writes, on its own; SQLite: the writer connection.
    WriteOne,
    /// One write transaction (SQLite: `BEGIN IMMEDIATE` on the writer connection;
    /// PostgreSQL: READ COMMITTED, consistency from row locks).
    Write,
}

impl Access {
    /// True when the operation writes.
    pub const fn writes(self) -> bool {
        matches!(self, Self::WriteOne | Self::Write)
    }

    /// The transaction to open, if any.
    const fn transaction(self) -> Option<TxKind> {
        match self {
            Self::Read | Self::WriteOne => None,
            Self::Snapshot => Some(TxKind::Snapshot),
            Self::Write => Some(TxKind::Write),
        }
    }
}

/// A transaction [`Session::begin`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    /// Read-only, one snapshot for every statement.
    Snapshot,
    /// Read-write.
    Write,
}

/// How one run of an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt<T> {
    /// Done: commit, then answer this.
    Done(T),
    /// Roll back and run the operation again (it changed its own state to do
    /// something else the next time, e.g. a push that found a card HQ never held).
    StartOver,
}

/// One operation of the [`crate::store::Store`] contract, written once for every
/// backend.
pub trait Op: Send + 'static {
    /// The answer.
    type Out: Send + 'static;
    /// What it needs.
    const ACCESS: Access;
    /// Runs it on `c` (inside the transaction `ACCESS` asks for). May run more than
    /// once: after [`Attempt::StartOver`], and on PostgreSQL after a conflict.
    fn run<C: Statements>(&mut self, c: &mut C) -> impl Fut<Attempt<Self::Out>>;
    /// Called once the run that answered `Done` committed (caches learn here).
    fn committed(&mut self, _caches: &Caches) {}
}

/// A backend's connection lent to one operation: its statements, and the
/// transaction around them. Dropping a session inside a transaction rolls it back
/// (or, where that cannot be done without waiting, discards the connection), so an
/// operation that fails, panics or is cancelled leaves nothing behind.
pub trait Session: Statements {
    /// Opens a transaction.
    fn begin(&mut self, kind: TxKind) -> impl Fut<()>;
    /// Commits the open transaction.
    fn commit(&mut self) -> impl Fut<()>;
    /// Rolls the open transaction back (nothing when none is open).
    fn rollback(&mut self) -> impl Fut<()>;
}

/// Runs `op` on `session` in the transaction its [`Op::ACCESS`] asks for: commits
/// only what answered [`Attempt::Done`], and rolls back and runs it again on
/// [`Attempt::StartOver`].
pub async fn drive<S: Session, O: Op>(session: &mut S, op: &mut O) -> Result<O::Out> {
    loop {
        let kind = O::ACCESS.transaction();
        if let Some(kind) = kind {
            session.begin(kind).await?;
        }
        let attempt = match op.run(session).await {
            Ok(attempt) => attempt,
            Err(e) => {
                if let Err(rollback) = session.rollback().await {
                    // The op's error is the one to answer; the session's drop
                    // deals with a transaction that is still open.
                    tracing::warn!(error = %rollback, "rollback after a failed operation failed");
                }
                return Err(e);
            }
        };
        match attempt {
            Attempt::Done(out) => {
                if kind.is_some() {
                    session.commit().await?;
                }
                op.committed(session.caches());
                return Ok(out);
            }
            Attempt::StartOver => session.rollback().await?,
        }
    }
}

/// A storage backend: runs operations. [`crate::store::Store`] is implemented once
/// for every backend, in [`super::flow`].
pub trait Backend: Send + Sync + 'static {
    /// Runs `op` to its answer (see the module documentation for how each backend
    /// does).
    fn run<O: Op>(&self, op: O) -> impl Fut<O::Out>;

    /// The connection pool's metrics; a backend without a pool keeps them at zero.
    fn pool_metrics(&self) -> crate::metrics::PoolMetrics {
        crate::metrics::PoolMetrics::default()
    }
}
