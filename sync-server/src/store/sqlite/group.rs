//! Group commit: every write operation goes to one writer thread, which runs all the
//! operations waiting at that moment in one transaction, each inside its own
//! savepoint, and answers each only after the `COMMIT` that holds it.
//!
//! Why: with `synchronous=FULL` every commit is an fsync, and one fsync per push
//! bounds a single writer at the disk's sync rate however small the pushes are.
//! Pushes that arrive while the writer is busy wait anyway; running them together
//! costs each nothing in latency and shares one fsync among them.
//!
//! What stays true: operations still run one after the other on one connection, in
//! arrival order, so each sees everything the earlier ones wrote (as with one
//! transaction each); an operation that fails or starts over rolls back only its
//! savepoint; nobody is answered before the commit, and if the commit fails every
//! operation of the group is answered with the error (each is idempotent, so the
//! callers' retries are safe). A panic inside an operation rolls back the whole group
//! and the writer goes on with the next one.
//!
//! An operation undone because its group failed did not fail itself: it is answered
//! [`StoreError::Unavailable`] (run it again), never the internal error of the one
//! that broke the group, so that a push does not take the group's failure for its
//! own and quarantine good entries (`flow::quarantine`).

use super::checkpoint::WalWatch;
use super::session::{SqliteSession, block_on};
use crate::store::Result;
use crate::store::StoreError;
use crate::store::backend::{Attempt, Op, Session, TxKind};
use crate::store::caches::Caches;
use rusqlite::Connection;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use tokio::sync::oneshot;

/// Most operations in one transaction: bounds how long the first of a group waits
/// for the others' work before its commit.
const MAX_GROUP: usize = 64;

/// The handle the store keeps: sends write operations to the writer thread.
pub struct Writer {
    jobs: Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer thread, which owns `conn` until every handle is dropped and
    /// leaves the WAL's checkpoints to `watch`'s checkpointer.
    pub fn start(conn: Connection, caches: Arc<Caches>, watch: WalWatch) -> std::io::Result<Self> {
        watch.take_over(&conn).map_err(std::io::Error::other)?;
        let (jobs, rx) = channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(conn, &caches, &watch, &rx))?;
        Ok(Self { jobs })
    }

    /// Runs `op` in the next group and waits for its commit.
    pub async fn run<O: Op>(&self, op: O) -> Result<O::Out> {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            op,
            out: None,
            reply,
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Backend("the SQLite writer thread has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Backend("the SQLite writer dropped an operation unanswered".into())
        })?
    }
}

/// An operation waiting in the writer's queue, type-erased.
trait Job: Send {
    /// Runs the operation inside its own savepoint of the group's transaction. An
    /// error here means the savepoint itself failed: the group cannot go on.
    fn run(&mut self, session: &mut SqliteSession<'_>) -> Result<()>;
    /// Records that the operation panicked: its own failure, unlike its group's.
    fn panicked(&mut self);
    /// Answers the caller once the group's transaction ended with `commit`.
    fn finish(self: Box<Self>, caches: &Caches, commit: &Result<(), String>);
}

struct Pending<O: Op> {
    op: O,
    /// The operation's own answer, once it ran.
    out: Option<Result<O::Out>>,
    reply: oneshot::Sender<Result<O::Out>>,
}

impl<O: Op> Job for Pending<O> {
    fn run(&mut self, session: &mut SqliteSession<'_>) -> Result<()> {
        loop {
            session.savepoint()?;
            match block_on(self.op.run(session)) {
                Ok(Attempt::Done(out)) => {
                    session.release_savepoint()?;
                    self.out = Some(Ok(out));
                    return Ok(());
                }
                Ok(Attempt::StartOver) => session.rollback_to_savepoint()?,
                Err(e) => {
                    session.rollback_to_savepoint()?;
                    self.out = Some(Err(e));
                    return Ok(());
                }
            }
        }
    }

    fn panicked(&mut self) {
        self.out = Some(Err(StoreError::Backend(
            "the operation panicked; its group was rolled back".into(),
        )));
    }

    fn finish(mut self: Box<Self>, caches: &Caches, commit: &Result<(), String>) {
        let answer = match (self.out.take(), commit) {
            // The operation's own failure stands whatever happened to the group.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(out)), Ok(())) => {
                self.op.committed(caches);
                Ok(out)
            }
            // Undone with its group, through no fault of its own: run it again.
            (_, Err(why)) => Err(StoreError::Unavailable(why.as_str().into())),
            (None, Ok(())) => Err(StoreError::Backend(
                "the SQLite writer did not run the operation".into(),
            )),
        };
        // A caller that went away (a cancelled request) needs no answer; what its
        // operation committed stands, as with any request cancelled mid-flight.
        let _ = self.reply.send(answer);
    }
}

/// The writer thread: a group per wake-up, until every [`Writer`] is dropped.
fn serve(mut conn: Connection, caches: &Caches, watch: &WalWatch, rx: &Receiver<Box<dyn Job>>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let commit = {
            let mut session = SqliteSession::new(&mut conn, caches);
            run_group(&mut session, &mut group)
        };
        for job in group {
            job.finish(caches, &commit);
        }
        // After the answers: a restart of the WAL, when due, delays no one's reply.
        if commit.is_ok()
            && let Err(e) = watch.committed(&conn)
        {
            tracing::warn!(error = %e, "reading the WAL's size after a commit failed");
        }
    }
}

/// Runs a group in one transaction and commits it; on any failure of the group as a
/// whole, the transaction is rolled back (the session's drop does it).
fn run_group(session: &mut SqliteSession<'_>, group: &mut [Box<dyn Job>]) -> Result<(), String> {
    block_on(session.begin(TxKind::Write)).map_err(|e| e.to_string())?;
    for job in group.iter_mut() {
        match catch_unwind(AssertUnwindSafe(|| job.run(session))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("group transaction aborted: {e}")),
            Err(_) => {
                job.panicked();
                return Err("group transaction aborted: an operation panicked".into());
            }
        }
    }
    block_on(session.commit()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::Access;
    use crate::store::sqlite::checkpoint::{Checkpointer, Limits};
    use crate::store::statements::Statements;
    use crate::store::{Anomaly, AnomalyKind};
    use protocol::{StoreId, TerminalId};
    use time::OffsetDateTime;

    /// Records an anomaly named `n`; then fails or panics when asked.
    struct Record {
        n: u32,
        fail: bool,
        panic: bool,
    }

    impl Op for Record {
        type Out = u32;
        const ACCESS: Access = Access::Write;

        async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<u32>> {
            c.insert_anomaly(&Anomaly {
                at: OffsetDateTime::UNIX_EPOCH,
                store: StoreId::parse("s1").unwrap(),
                terminal: TerminalId::parse("t1").unwrap(),
                kind: AnomalyKind::Gap,
                detail: self.n.to_string(),
            })
            .await?;
            assert!(!self.panic, "a panicking operation");
            if self.fail {
                return Err(StoreError::corrupt("refused"));
            }
            Ok(Attempt::Done(self.n))
        }
    }

    /// The anomalies' names, in insertion order, read on a connection of their own.
    fn recorded(path: &std::path::Path) -> Vec<u32> {
        let conn = Connection::open(path).unwrap();
        let mut st = conn
            .prepare("SELECT detail FROM anomalies ORDER BY rowid")
            .unwrap();
        st.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|d| d.unwrap().parse().unwrap())
            .collect()
    }

    /// A migrated HQ database in `dir`: a connection to it and its path.
    fn database(dir: &tempfile::TempDir) -> (Connection, std::path::PathBuf) {
        let path = dir.path().join("hq.db");
        let mut conn = super::super::connect(&path).unwrap();
        super::super::schema::migrations()
            .to_latest(&mut conn)
            .unwrap();
        (conn, path)
    }

    fn store(dir: &tempfile::TempDir) -> (Writer, Checkpointer, std::path::PathBuf) {
        let (conn, path) = database(dir);
        let checkpointer =
            Checkpointer::start(super::super::connect(&path).unwrap(), Limits::default()).unwrap();
        let writer = Writer::start(conn, Arc::default(), checkpointer.watch()).unwrap();
        (writer, checkpointer, path)
    }

    fn record(n: u32, fail: bool) -> Record {
        Record {
            n,
            fail,
            panic: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_operation_rolls_back_only_its_own_savepoint() {
        let dir = tempfile::tempdir().unwrap();
        let (w, _checkpointer, path) = store(&dir);
        let w = Arc::new(w);
        let tasks: Vec<_> = (1..=300)
            .map(|n| {
                let w = Arc::clone(&w);
                tokio::spawn(async move {
                    let fail = n % 7 == 0;
                    (n, fail, w.run(record(n, fail)).await)
                })
            })
            .collect();
        let mut kept = Vec::new();
        for t in tasks {
            let (n, fail, out) = t.await.unwrap();
            if fail {
                assert!(matches!(out, Err(StoreError::Corrupt(_))), "{out:?}");
            } else {
                assert_eq!(out.unwrap(), n);
                kept.push(n);
            }
        }
        let mut got = recorded(&path);
        got.sort_unstable();
        assert_eq!(got, kept);
    }

    fn pending(op: Record) -> (Box<dyn Job>, oneshot::Receiver<Result<u32>>) {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            op,
            out: None,
            reply,
        });
        (job, answer)
    }

    #[test]
    fn a_group_commits_once_and_answers_after_the_commit_its_failure_alone_undone() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, path) = database(&dir);
        let caches = Caches::default();
        let (one, mut one_answer) = pending(record(1, false));
        let (two, mut two_answer) = pending(record(2, true));
        let (three, mut three_answer) = pending(record(3, false));
        let mut group = vec![one, two, three];
        let commit = {
            let mut session = SqliteSession::new(&mut conn, &caches);
            run_group(&mut session, &mut group)
        };
        assert_eq!(commit, Ok(()));
        // Committed (another connection sees it) without the failed one's row, and
        // nobody answered yet: answers come only after the commit.
        assert_eq!(recorded(&path), vec![1, 3]);
        for answer in [&mut one_answer, &mut two_answer, &mut three_answer] {
            assert!(answer.try_recv().is_err());
        }
        for job in group {
            job.finish(&caches, &commit);
        }
        assert_eq!(one_answer.blocking_recv().unwrap().unwrap(), 1);
        let two = two_answer.blocking_recv().unwrap();
        assert!(matches!(two, Err(StoreError::Corrupt(_))), "{two:?}");
        assert_eq!(three_answer.blocking_recv().unwrap().unwrap(), 3);
    }

    #[test]
    fn the_others_of_a_failed_group_are_told_to_run_again_not_that_they_failed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, path) = database(&dir);
        let caches = Caches::default();
        let (good, good_answer) = pending(record(1, false));
        let panicking = Record {
            n: 2,
            fail: false,
            panic: true,
        };
        let (bad, bad_answer) = pending(panicking);
        let (late, late_answer) = pending(record(3, false));
        let mut group = vec![good, bad, late];
        let commit = {
            let mut session = SqliteSession::new(&mut conn, &caches);
            run_group(&mut session, &mut group)
        };
        assert!(commit.is_err());
        for job in group {
            job.finish(&caches, &commit);
        }
        let good = good_answer.blocking_recv().unwrap();
        assert!(matches!(good, Err(StoreError::Unavailable(_))), "{good:?}");
        let late = late_answer.blocking_recv().unwrap();
        assert!(matches!(late, Err(StoreError::Unavailable(_))), "{late:?}");
        let bad = bad_answer.blocking_recv().unwrap();
        assert!(matches!(bad, Err(StoreError::Backend(_))), "{bad:?}");
        assert!(recorded(&path).is_empty());
    }

    #[tokio::test]
    async fn a_panic_fails_its_group_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (w, _checkpointer, path) = store(&dir);
        let panicking = Record {
            n: 1,
            fail: false,
            panic: true,
        };
        let out = w.run(panicking).await;
        assert!(matches!(out, Err(StoreError::Backend(_))), "{out:?}");
        assert_eq!(w.run(record(2, false)).await.unwrap(), 2);
        assert_eq!(recorded(&path), vec![2]);
    }
}
