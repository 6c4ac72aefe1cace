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
//! The first operation of a group runs without a savepoint: rolling the transaction
//! back (and opening it again for the others) undoes it alone, and a savepoint costs
//! a copy of every page the operation changes, into SQLite's sub-journal. A backlog's
//! pushes come one at a time, each a group of its own, and pay none.
//!
//! The foreign keys of the tables a push fills with multi-row inserts are checked at
//! `COMMIT` (schema migrations 9 and 10; since migration 11 only the entries' key on
//! their terminal is left), not at each statement nor at a savepoint's
//! release: an operation that broke one (a bug, never normal traffic) makes its
//! group's `COMMIT` fail. The writer then rolls the group back and runs its
//! operations again one transaction each, so that only the faulty one fails, with
//! the key's error as its own.
//!
//! An operation undone because its group failed did not fail itself: it is answered
//! [`StoreError::Unavailable`] (run it again), never the internal error of the one
//! that broke the group, so that a push does not take the group's failure for its
//! own and quarantine good entries (`flow::quarantine`).

use super::checkpoint::WalWatch;
use super::session::is_deferred_key_violation;
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
            .spawn(move || {
                raise_priority();
                serve(conn, &caches, &watch, &rx)
            })?;
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

/// The writer thread's nice value, when the process may lower it.
#[cfg(target_os = "linux")]
const WRITER_NICE: i32 = -10;

/// Puts the calling thread (the writer) ahead of HQ's other threads for a core.
///
/// Why: the writer is HQ's one serial point, and while it waits for a core every
/// push queued behind it waits too, where the HTTP threads' work is spread over
/// many pushes at once. Under the push benchmark's 50 % load on 2 cores, the writer
/// spent about half of its groups' time runnable but without a core (its
/// `/proc/thread-self/schedstat`), most of the latency of the slow pushes
/// (docs/performance.md, *The 50 % tail*). Lowering a nice value takes `root`,
/// `CAP_SYS_NICE` or an `RLIMIT_NICE` (systemd's `LimitNICE=`); without them the
/// writer keeps the process's priority, which is said once in the log.
fn raise_priority() {
    #[cfg(target_os = "linux")]
    {
        let me = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(me), WRITER_NICE) {
            tracing::info!(error = %e, nice = WRITER_NICE,
                "the SQLite writer keeps the process's priority: lowering its nice value needs CAP_SYS_NICE or LimitNICE");
        }
    }
}

/// An operation waiting in the writer's queue, type-erased.
trait Job: Send {
    /// Runs the operation in the group's transaction, undone alone as `undo` says.
    /// An error here means the savepoint or the transaction itself failed: the group
    /// cannot go on.
    fn run(&mut self, session: &mut SqliteSession<'_>, undo: Undo) -> Result<()>;
    /// Records that the operation panicked: its own failure, unlike its group's.
    fn panicked(&mut self);
    /// Records that the operation, committed alone, broke a foreign key: its own
    /// failure, found at `COMMIT`.
    fn broke_key(&mut self, e: StoreError);
    /// Answers the caller once the group's transaction ended with `commit`.
    fn finish(self: Box<Self>, caches: &Caches, commit: &Result<(), String>);
}

struct Pending<O: Op> {
    op: O,
    /// The operation's own answer, once it ran.
    out: Option<Result<O::Out>>,
    reply: oneshot::Sender<Result<O::Out>>,
}

/// How an operation's writes are undone alone, should it fail or start over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undo {
    /// It runs first in the transaction: rolling the transaction back (and opening
    /// it again) undoes only it.
    Transaction,
    /// Others wrote before it: its own savepoint.
    Savepoint,
}

impl Undo {
    fn start(self, session: &SqliteSession<'_>) -> Result<()> {
        match self {
            Self::Transaction => Ok(()),
            Self::Savepoint => session.savepoint(),
        }
    }

    fn keep(self, session: &SqliteSession<'_>) -> Result<()> {
        match self {
            Self::Transaction => Ok(()),
            Self::Savepoint => session.release_savepoint(),
        }
    }

    fn undo(self, session: &mut SqliteSession<'_>) -> Result<()> {
        match self {
            Self::Transaction => {
                block_on(session.rollback())?;
                block_on(session.begin(TxKind::Write))
            }
            Self::Savepoint => session.rollback_to_savepoint(),
        }
    }
}

impl<O: Op> Job for Pending<O> {
    fn run(&mut self, session: &mut SqliteSession<'_>, undo: Undo) -> Result<()> {
        loop {
            undo.start(session)?;
            match block_on(self.op.run(session)) {
                Ok(Attempt::Done(out)) => {
                    undo.keep(session)?;
                    self.out = Some(Ok(out));
                    return Ok(());
                }
                Ok(Attempt::StartOver) => undo.undo(session)?,
                Err(e) => {
                    undo.undo(session)?;
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

    fn broke_key(&mut self, e: StoreError) {
        self.out = Some(Err(e));
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
    // An operation that arrived while the last group committed: the next group's first.
    let mut waiting = None;
    loop {
        let first = match waiting.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let committed = run_and_answer(&mut conn, caches, group);
        if committed {
            // After the answers, so a restart of the WAL delays no one's reply; and
            // only while nobody waits for the writer, unless the WAL has grown far past
            // its limit (`checkpoint::Limits`): a restart takes milliseconds (it copies
            // what the checkpointer has not and waits for readers), which every push
            // queued behind it would add to its latency.
            waiting = rx.try_recv().ok();
            if let Err(e) = watch.committed(&conn, waiting.is_some()) {
                tracing::warn!(error = %e, "reading the WAL's size after a commit failed");
            }
        }
    }
}

/// Runs a group, or its operations one transaction each when the group broke a
/// foreign key, and answers every operation; true when anything committed.
fn run_and_answer(conn: &mut Connection, caches: &Caches, mut group: Vec<Box<dyn Job>>) -> bool {
    // The session's drop rolls back a group that did not commit, before anything
    // of it runs again.
    let commit = {
        let mut session = SqliteSession::new(conn, caches);
        run_group(&mut session, &mut group)
    };
    let commit = match commit {
        Ok(()) => Ok(()),
        Err(Failed::Group(why)) => Err(why),
        Err(Failed::Key(e)) => {
            if group.len() > 1 {
                // Which operation broke it is not known: each alone tells.
                let mut committed = false;
                for job in group {
                    committed |= run_and_answer(conn, caches, vec![job]);
                }
                return committed;
            }
            let why = e.to_string();
            if let Some(job) = group.first_mut() {
                job.broke_key(e);
            }
            Err(why)
        }
    };
    for job in group {
        job.finish(caches, &commit);
    }
    commit.is_ok()
}

/// Why a group's transaction did not commit.
#[derive(Debug)]
enum Failed {
    /// A deferred foreign key was left broken at `COMMIT`: by one of the group's
    /// operations, which one is not known.
    Key(StoreError),
    /// Anything else: what every operation of the group is told.
    Group(String),
}

/// Runs a group in one transaction and commits it; on any failure of the group as a
/// whole, the transaction is rolled back (the session's drop does it).
fn run_group(session: &mut SqliteSession<'_>, group: &mut [Box<dyn Job>]) -> Result<(), Failed> {
    let aborted = |e: StoreError| Failed::Group(format!("group transaction aborted: {e}"));
    block_on(session.begin(TxKind::Write)).map_err(|e| Failed::Group(e.to_string()))?;
    for (i, job) in group.iter_mut().enumerate() {
        let undo = if i == 0 {
            Undo::Transaction
        } else {
            Undo::Savepoint
        };
        match catch_unwind(AssertUnwindSafe(|| job.run(session, undo))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(aborted(e)),
            Err(_) => {
                job.panicked();
                return Err(Failed::Group(
                    "group transaction aborted: an operation panicked".into(),
                ));
            }
        }
    }
    block_on(session.commit()).map_err(|e| {
        if is_deferred_key_violation(&e) {
            Failed::Key(e)
        } else {
            Failed::Group(e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::apply::tests::{CARD, sale};
    use crate::store::backend::Access;
    use crate::store::sqlite::checkpoint::{Checkpointer, Limits};
    use crate::store::statements::{NewEntries, Statements};
    use crate::store::{Anomaly, AnomalyKind};
    use protocol::{StoreId, TerminalId};
    use time::OffsetDateTime;

    /// Records an anomaly named `n`; then fails, panics, stores an entry of a
    /// terminal HQ does not hold (a broken foreign key) or starts over once when
    /// asked.
    struct Record {
        n: u32,
        fail: bool,
        panic: bool,
        orphan: bool,
        start_over: bool,
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
            if self.orphan {
                let entry = sale(u64::from(self.n), CARD, 0, 1);
                c.insert_entries(&NewEntries {
                    terminal: 999,
                    entries: std::slice::from_ref(&entry),
                    encoded: &[("{}".to_owned(), "hash".to_owned())],
                    received_at: OffsetDateTime::UNIX_EPOCH,
                    quarantined: &[],
                })
                .await?;
            }
            assert!(!self.panic, "a panicking operation");
            if std::mem::take(&mut self.start_over) {
                return Ok(Attempt::StartOver);
            }
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
        super::super::enforce_foreign_keys(&conn).unwrap();
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
            orphan: false,
            start_over: false,
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
        assert!(commit.is_ok(), "{commit:?}");
        // Committed (another connection sees it) without the failed one's row, and
        // nobody answered yet: answers come only after the commit.
        assert_eq!(recorded(&path), vec![1, 3]);
        for answer in [&mut one_answer, &mut two_answer, &mut three_answer] {
            assert!(answer.try_recv().is_err());
        }
        for job in group {
            job.finish(&caches, &Ok(()));
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
            panic: true,
            ..record(2, false)
        };
        let (bad, bad_answer) = pending(panicking);
        let (late, late_answer) = pending(record(3, false));
        let mut group = vec![good, bad, late];
        let commit = {
            let mut session = SqliteSession::new(&mut conn, &caches);
            run_group(&mut session, &mut group)
        };
        let Err(Failed::Group(commit)) = commit else {
            panic!("{commit:?}");
        };
        let commit = Err(commit);
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
            panic: true,
            ..record(1, false)
        };
        let out = w.run(panicking).await;
        assert!(matches!(out, Err(StoreError::Backend(_))), "{out:?}");
        assert_eq!(w.run(record(2, false)).await.unwrap(), 2);
        assert_eq!(recorded(&path), vec![2]);
    }

    /// A group of `ops` run and answered by the writer's own code, on a fresh
    /// database: the answers, and the anomalies committed.
    fn answered(ops: Vec<Record>) -> (Vec<Result<u32>>, Vec<u32>) {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, path) = database(&dir);
        let caches = Caches::default();
        let (group, answers): (Vec<_>, Vec<_>) = ops.into_iter().map(pending).unzip();
        run_and_answer(&mut conn, &caches, group);
        let answers = answers
            .into_iter()
            .map(|a| a.blocking_recv().unwrap())
            .collect();
        (answers, recorded(&path))
    }

    /// The first operation of a group runs without a savepoint: a failure or a
    /// start-over rolls back the transaction, which undoes only it.
    #[test]
    fn a_failed_first_operation_undoes_only_itself_and_the_others_still_commit() {
        let (answers, kept) = answered(vec![record(1, true), record(2, false), record(3, false)]);
        assert!(
            matches!(answers[0], Err(StoreError::Corrupt(_))),
            "{answers:?}"
        );
        assert_eq!(answers[1].as_ref().unwrap(), &2);
        assert_eq!(answers[2].as_ref().unwrap(), &3);
        assert_eq!(kept, vec![2, 3]);
        let again = |n| Record {
            start_over: true,
            ..record(n, false)
        };
        let (answers, kept) = answered(vec![again(4), again(5)]);
        assert_eq!(answers[0].as_ref().unwrap(), &4);
        assert_eq!(answers[1].as_ref().unwrap(), &5);
        assert_eq!(kept, vec![4, 5]);
    }

    /// A foreign key broken by one operation of a group is found only at `COMMIT`:
    /// the group is run again one operation at a time, the others commit and only
    /// the faulty one fails, with the key's error as its own.
    #[test]
    fn a_broken_foreign_key_fails_only_the_operation_that_broke_it() {
        let orphan = |n| Record {
            orphan: true,
            ..record(n, false)
        };
        let (answers, kept) = answered(vec![
            record(1, false),
            orphan(2),
            record(3, true),
            record(4, false),
        ]);
        assert_eq!(answers[0].as_ref().unwrap(), &1);
        let broke = &answers[1];
        assert!(
            matches!(broke, Err(e @ StoreError::Backend(_)) if e.to_string().contains("FOREIGN KEY")),
            "{broke:?}"
        );
        assert!(
            matches!(answers[2], Err(StoreError::Corrupt(_))),
            "{answers:?}"
        );
        assert_eq!(answers[3].as_ref().unwrap(), &4);
        assert_eq!(kept, vec![1, 4]);
        // Alone in its group (a backlog's push), the faulty one fails the same way.
        let (answers, kept) = answered(vec![orphan(5)]);
        assert!(
            matches!(answers[0], Err(StoreError::Backend(_))),
            "{answers:?}"
        );
        assert!(kept.is_empty());
    }
}
