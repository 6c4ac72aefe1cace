//! A SQLite connection as the flows see it: [`SqliteSession`] runs statements
//! (through the connection's prepared-statement cache) and transactions, and
//! [`block_on`] polls a flow's future on the store's blocking thread.
//!
//! SQLite's statements are synchronous, so every statement future is ready at its
//! first poll and `block_on` only ever parks for a future that is not SQLite's (the
//! push waiting for its entries' encoding). Transactions are `BEGIN`/`COMMIT`
//! statements on the connection the session borrows mutably, which keeps a session
//! `Send` (a rusqlite `Transaction` holds a shared reference to a connection, which
//! is not); dropping a session inside a transaction rolls it back, also when a flow
//! panics.

use crate::store::Result;
use crate::store::StoreError;
use crate::store::backend::{Session, TxKind};
use crate::store::caches::Caches;
use crate::store::rows::{Columns, Raw};
use crate::store::statements::{PushRows, Statements};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, Params, Row, params_from_iter};
use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Backend(Box::new(e))
    }
}

impl From<rusqlite_migration::Error> for StoreError {
    fn from(e: rusqlite_migration::Error) -> Self {
        Self::Backend(Box::new(e))
    }
}

/// True when `e` is a `COMMIT` refused for a deferred foreign key left broken.
pub fn is_deferred_key_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend(b)
        if b.downcast_ref::<rusqlite::Error>().is_some_and(|e| matches!(e,
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)))
}

/// Wakes the thread that polls.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this (blocking) thread.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            // A wake-up may come before the park or spuriously; either way the
            // future is polled again.
            Poll::Pending => thread::park(),
        }
    }
}

/// A connection lent to one operation, inside a transaction when `open`.
pub struct SqliteSession<'c> {
    conn: &'c mut Connection,
    caches: &'c Caches,
    open: bool,
}

impl<'c> SqliteSession<'c> {
    /// A session on `conn`.
    pub fn new(conn: &'c mut Connection, caches: &'c Caches) -> Self {
        Self {
            conn,
            caches,
            open: false,
        }
    }
}

/// `BEGIN` and `COMMIT` go through the statement cache, as every other statement:
/// `execute_batch` parsed and prepared them afresh for each transaction, about 15,000
/// instructions of the writer's fixed cost per group.
impl Session for SqliteSession<'_> {
    async fn begin(&mut self, kind: TxKind) -> Result<()> {
        self.execute(
            match kind {
                TxKind::Snapshot => "BEGIN DEFERRED",
                // The write lock up front: the transaction never fails half-way for
                // want of it.
                TxKind::Write => "BEGIN IMMEDIATE",
            },
            [],
        )?;
        self.open = true;
        Ok(())
    }

    /// A failed commit leaves the transaction open: the drop rolls it back.
    async fn commit(&mut self) -> Result<()> {
        self.execute("COMMIT", [])?;
        self.open = false;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<()> {
        if self.open {
            self.conn.execute_batch("ROLLBACK")?;
            self.open = false;
        }
        Ok(())
    }
}

/// Savepoints inside the open transaction, one operation at a time (the group
/// commit's: see `super::group`).
impl SqliteSession<'_> {
    /// Starts the current operation's savepoint. Prepared once, as `RELEASE`: twice
    /// per push, `execute_batch` parsed them afresh every time.
    pub fn savepoint(&self) -> Result<()> {
        self.execute("SAVEPOINT op", [])?;
        Ok(())
    }

    /// Keeps what the current operation wrote (in the open transaction).
    pub fn release_savepoint(&self) -> Result<()> {
        self.execute("RELEASE op", [])?;
        Ok(())
    }

    /// Undoes what the current operation wrote, and ends its savepoint.
    pub fn rollback_to_savepoint(&self) -> Result<()> {
        Ok(self.conn.execute_batch("ROLLBACK TO op; RELEASE op")?)
    }
}

impl Drop for SqliteSession<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing more to do about a failed rollback: the connection's next
            // BEGIN fails and says so.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Most keys per chunked `IN (…)` query.
pub const CHUNK: usize = 64;

/// Rows per multi-row `INSERT`: one statement spreads SQLite's per-statement setup
/// (a cursor on the table and on each index, foreign-key checks) over many rows.
const ROWS_PER_INSERT: usize = 32;

/// Each statement on its own, in order: no network to save round trips on.
impl PushRows for SqliteSession<'_> {}

impl Statements for SqliteSession<'_> {
    fn caches(&self) -> &Caches {
        self.caches
    }
}

impl SqliteSession<'_> {
    /// The connection (tests count the rows a statement changed).
    #[cfg(test)]
    pub fn conn(&self) -> &Connection {
        self.conn
    }

    /// Every row of a cached statement, decoded.
    pub fn all<T>(
        &self,
        sql: &str,
        params: impl Params,
        mut decode: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(decode(r)?);
        }
        Ok(out)
    }

    /// The first row of a cached statement, decoded, if any.
    pub fn first<T>(
        &self,
        sql: &str,
        params: impl Params,
        decode: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        rows.next()?.map(decode).transpose()
    }

    /// The one row of a cached statement, decoded.
    pub fn one<T>(
        &self,
        sql: &str,
        params: impl Params,
        decode: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.first(sql, params, decode)?
            .ok_or(StoreError::Backend(Box::new(
                rusqlite::Error::QueryReturnedNoRows,
            )))
    }

    /// Runs a cached statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        Ok(self.conn.prepare_cached(sql)?.execute(params)?)
    }

    /// Runs `template` (whose `{keys}` becomes `?1 …`, at most `?64`, and whose
    /// further parameters are `?65 …`) once per chunk of `keys`.
    pub fn query_in<T>(
        &self,
        template: &str,
        keys: &[Param<'_>],
        extra: &[Param<'_>],
        mut decode: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for chunk in keys.chunks(CHUNK) {
            // The list names only as many keys as the chunk needs, rounded up to a
            // power of two (seven cached statements): a push of a few cards does not
            // look up 64. Down to one key: a list padded with `NULL`s to 8 cost about
            // 30,000 instructions per statement whatever the keys (the reservations
            // of a push's one or two redeeming receipts, its one consuming card's
            // lots), where SQLite runs `IN (?1)` as `= ?1`. The parameters stay
            // numbered as the template says.
            let listed = chunk.len().next_power_of_two();
            let sql = made_once(template, "", listed, 0, || {
                template
                    .replace("{keys}", &placeholders(1, listed))
                    .replace("{rows}", &value_rows(listed))
            });
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut params = chunk.to_vec();
            // Unlisted keys up to the extras' numbers are bound as NULL.
            params.resize(stmt.parameter_count().saturating_sub(extra.len()), NULL);
            params.extend(extra.iter().cloned());
            let mut rows = stmt.query(params_from_iter(params))?;
            while let Some(r) = rows.next()? {
                out.push(decode(r)?);
            }
        }
        Ok(out)
    }

    /// Inserts `rows` (each the same number of values) in multi-row statements
    /// `head VALUES (…), (…) tail`, `head`'s `INSERT INTO` run as `INSERT OR FAIL
    /// INTO`: a uniqueness, `NOT NULL` or `CHECK` failure stops the statement without
    /// undoing the rows it already wrote, which spares SQLite a statement journal (a
    /// copy of every page the statement touches, to undo it alone) wherever nothing
    /// else needs one (an immediate foreign key would: the tables filled this way
    /// have deferred ones or none, `super::schema`'s migrations 9 to 11). The error reaches the
    /// operation, which is then undone with those rows (`super::group`); no flow goes
    /// on after a failed insert.
    ///
    /// Each row is an array of parameters bound by reference: no row and no text is
    /// copied on its way to SQLite but by SQLite itself.
    pub fn insert_many<const N: usize>(
        &self,
        head: &str,
        tail: &str,
        rows: &[[Param<'_>; N]],
    ) -> Result<()> {
        self.insert_counted(head, tail, rows).map(drop)
    }

    /// [`Self::insert_many`], answering how many rows the statements changed (with
    /// `ON CONFLICT DO NOTHING`, the rows inserted).
    pub fn insert_counted<const N: usize>(
        &self,
        head: &str,
        tail: &str,
        rows: &[[Param<'_>; N]],
    ) -> Result<usize> {
        self.insert_rows(head, tail, rows)
            .map_err(|failed| failed.error.into())
    }

    /// [`Self::insert_many`], answering which row a failed statement stopped at.
    pub fn insert_rows<const N: usize>(
        &self,
        head: &str,
        tail: &str,
        rows: &[[Param<'_>; N]],
    ) -> std::result::Result<usize, FailedRow> {
        let (mut done, mut changed) = (0, 0);
        while done < rows.len() {
            let chunk = &rows[done..done + insert_chunk(rows.len() - done)];
            let sql = multi_insert_sql(head, tail, N, chunk.len());
            let mut stmt = self
                .conn
                .prepare_cached(&sql)
                .map_err(|error| FailedRow { row: done, error })?;
            match stmt.execute(params_from_iter(chunk.iter().flatten())) {
                Ok(n) => changed += n,
                Err(error) => {
                    // `OR FAIL` keeps the rows before the one that failed, and SQLite
                    // counts them as the statement's changes: the failed row is next.
                    let written = usize::try_from(self.conn.changes()).unwrap_or(0);
                    return Err(FailedRow {
                        row: done + written.min(chunk.len()),
                        error,
                    });
                }
            }
            done += chunk.len();
        }
        Ok(changed)
    }
}

/// Why [`SqliteSession::insert_rows`] stopped: the error, and the index among the
/// rows of the row it failed on when it was a constraint of that row (the rows
/// before it are written; the caller's savepoint undoes them).
#[derive(Debug)]
pub struct FailedRow {
    /// The row's index.
    pub row: usize,
    /// SQLite's error.
    pub error: rusqlite::Error,
}

/// Rows in the next multi-row `INSERT` when `left` remain: full statements of
/// [`ROWS_PER_INSERT`], then the remainder by powers of two (16, 8, …, 1). Every
/// size is one of six, so every statement stays in the connection's cache: a push of
/// a few entries (a till's usual) would otherwise prepare each of its inserts afresh,
/// which costs more than running them.
fn insert_chunk(left: usize) -> usize {
    if left >= ROWS_PER_INSERT {
        ROWS_PER_INSERT
    } else {
        // The highest power of two not above `left` (`left` ≥ 1 here).
        1 << left.max(1).ilog2()
    }
}

/// `?first, …` for `n` parameters.
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The SQL of every multi-row statement [`made_once`] wrote on this thread.
#[cfg(test)]
pub fn made_statements() -> Vec<String> {
    MADE.with_borrow(|made| made.iter().map(|m| m.sql.to_string()).collect())
}

/// `(?1), (?2), …`: `n` one-column rows of a `VALUES` list.
fn value_rows(n: usize) -> String {
    (1..=n)
        .map(|i| format!("(?{i})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A statement's SQL made from two texts and two sizes, once per thread
/// ([`made_once`]).
struct Made {
    a: String,
    b: String,
    x: usize,
    y: usize,
    sql: Rc<str>,
}

thread_local! {
    /// Every statement text this thread made: a few dozen (a handful of tables, six
    /// sizes of multi-row insert each, four sizes of `IN` list per query).
    static MADE: RefCell<Vec<Made>> = const { RefCell::new(Vec::new()) };
}

/// The SQL `make` writes for `(a, b, x, y)`, made once per thread: writing hundreds of
/// numbered placeholders for every statement, only to find it in the statement
/// cache, was about 6 % of the writer's time in a backlog (multi-row inserts), and
/// about 2 % more for the `IN` lists of the push's reads.
fn made_once(a: &str, b: &str, x: usize, y: usize, make: impl FnOnce() -> String) -> Rc<str> {
    MADE.with_borrow_mut(|made| {
        if let Some(m) = made
            .iter()
            .find(|m| m.x == x && m.y == y && m.a == a && m.b == b)
        {
            return Rc::clone(&m.sql);
        }
        let sql: Rc<str> = make().into();
        made.push(Made {
            a: a.to_owned(),
            b: b.to_owned(),
            x,
            y,
            sql: Rc::clone(&sql),
        });
        sql
    })
}

/// `head VALUES (…), (…) tail` for `rows` rows of `cols` columns ([`made_once`]).
fn multi_insert_sql(head: &str, tail: &str, cols: usize, rows: usize) -> Rc<str> {
    made_once(head, tail, rows, cols, || {
        write_multi_insert_sql(head, tail, cols, rows)
    })
}

/// [`multi_insert_sql`]'s text (see [`SqliteSession::insert_many`] for `OR FAIL`).
fn write_multi_insert_sql(head: &str, tail: &str, cols: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * cols * 6);
    match head.strip_prefix("INSERT INTO ") {
        Some(rest) => {
            sql.push_str("INSERT OR FAIL INTO ");
            sql.push_str(rest);
        }
        None => sql.push_str(head),
    }
    sql.push_str(" VALUES ");
    // Anonymous `?`s, numbered by SQLite in order: the text is half as long as with
    // `?123`s, and the statement cache hashes and compares all of it at every run.
    let row = format!("({})", vec!["?"; cols].join(", "));
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// A statement parameter: a text is bound from the caller's string, an integer or
/// NULL costs no allocation (a backlog's push binds tens of thousands).
pub type Param<'a> = ToSqlOutput<'a>;

/// NULL.
pub const NULL: Param<'static> = ToSqlOutput::Owned(Value::Null);

/// A text, bound from `s`.
pub fn text(s: &str) -> Param<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
}

/// A text made for the statement (an id's string).
pub fn owned_text(s: String) -> Param<'static> {
    ToSqlOutput::Owned(Value::Text(s))
}

/// A nullable text, bound from `s`.
pub fn opt_text(s: Option<&str>) -> Param<'_> {
    s.map_or(NULL, text)
}

/// An integer value.
pub fn int(n: i64) -> Param<'static> {
    ToSqlOutput::Owned(Value::Integer(n))
}

/// A nullable integer value.
pub fn opt_int(n: Option<i64>) -> Param<'static> {
    n.map_or(NULL, int)
}

/// A boolean value (0/1).
pub fn boolean(b: bool) -> Param<'static> {
    int(i64::from(b))
}

impl Columns for Row<'_> {
    fn raw(&self, i: usize) -> Result<Raw> {
        Ok(match self.get_ref(i)? {
            ValueRef::Null => Raw::Null,
            ValueRef::Integer(n) => Raw::Int(n),
            ValueRef::Text(t) => Raw::Text(
                std::str::from_utf8(t)
                    .map_err(|e| StoreError::corrupt(format!("column {i}: {e}")))?
                    .to_owned(),
            ),
            ValueRef::Real(_) | ValueRef::Blob(_) => {
                return Err(StoreError::corrupt(format!(
                    "column {i}: a real or a blob, which HQ never stores"
                )));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_count_from_the_first() {
        assert_eq!(placeholders(2, 3), "?2, ?3, ?4");
        assert_eq!(
            &*multi_insert_sql("INSERT INTO t (a, b)", "", 2, 2),
            "INSERT OR FAIL INTO t (a, b) VALUES (?, ?), (?, ?) "
        );
        assert_eq!(
            &*multi_insert_sql("INSERT INTO t (a, b)", "", 2, 1),
            "INSERT OR FAIL INTO t (a, b) VALUES (?, ?) "
        );
        assert_eq!(
            &*multi_insert_sql("INSERT INTO u (a, b)", "", 2, 2),
            "INSERT OR FAIL INTO u (a, b) VALUES (?, ?), (?, ?) "
        );
    }

    #[test]
    fn inserts_come_in_six_sizes_that_add_up_in_order() {
        let sizes = |mut n: usize| {
            let mut out = Vec::new();
            while n > 0 {
                let k = insert_chunk(n);
                out.push(k);
                n -= k;
            }
            out
        };
        assert_eq!(sizes(75), vec![32, 32, 8, 2, 1]);
        assert_eq!(sizes(10), vec![8, 2]);
        assert_eq!(sizes(1), vec![1]);
        assert!(sizes(0).is_empty());
        for n in 1..200 {
            let s = sizes(n);
            assert_eq!(s.iter().sum::<usize>(), n);
            assert!(s.iter().all(|k| [1, 2, 4, 8, 16, 32].contains(k)), "{s:?}");
        }
    }

    #[test]
    fn an_in_query_finds_its_keys_whatever_their_count_with_its_further_parameters() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER, v INTEGER)")
            .unwrap();
        for k in 0..200 {
            conn.execute("INSERT INTO t VALUES (?1, ?2)", (k, k % 2))
                .unwrap();
        }
        let caches = Caches::default();
        let session = SqliteSession::new(&mut conn, &caches);
        for n in [1_i64, 3, 8, 9, 64, 65, 150] {
            let keys: Vec<Param<'_>> = (0..n).map(int).collect();
            let mut all = session
                .query_in("SELECT k FROM t WHERE k IN ({keys})", &keys, &[], |r| {
                    Ok(r.get::<_, i64>(0)?)
                })
                .unwrap();
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>());
            let odd = session
                .query_in(
                    &format!(
                        "SELECT k FROM t WHERE k IN ({{keys}}) AND v = ?{}",
                        CHUNK + 1
                    ),
                    &keys,
                    &[int(1)],
                    |r| Ok(r.get::<_, i64>(0)?),
                )
                .unwrap();
            assert_eq!(odd.len(), usize::try_from(n / 2).unwrap(), "{n} keys");
        }
    }

    /// A few keys are listed as they are (a power of two), not padded to 8 with
    /// `NULL`s: one key is `IN (?1)`, which SQLite runs as `= ?1`.
    #[test]
    fn a_few_keys_make_a_short_in_list() {
        let template = "SELECT k FROM t WHERE k IN ({keys}) -- short lists";
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER)").unwrap();
        let caches = Caches::default();
        let session = SqliteSession::new(&mut conn, &caches);
        for n in [1_i64, 2, 3] {
            let keys: Vec<Param<'_>> = (0..n).map(int).collect();
            session.query_in(template, &keys, &[], |_| Ok(())).unwrap();
        }
        let made: Vec<String> = MADE.with_borrow(|made| {
            made.iter()
                .filter(|m| m.a == template)
                .map(|m| m.sql.to_string())
                .collect()
        });
        let list = |n| template.replace("{keys}", &placeholders(1, n));
        assert_eq!(made, vec![list(1), list(2), list(4)]);
    }

    #[test]
    fn a_failed_multi_row_insert_leaves_its_rows_to_the_savepoint_rollback() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (100);")
            .unwrap();
        let caches = Caches::default();
        let mut session = SqliteSession::new(&mut conn, &caches);
        block_on(session.begin(TxKind::Write)).unwrap();
        session.savepoint().unwrap();
        let count = |s: &SqliteSession<'_>| {
            s.one("SELECT COUNT(*) FROM t", [], |r| Ok(r.get::<_, i64>(0)?))
                .unwrap()
        };
        // 40 rows: a statement of 32, then one of 8 whose sixth row clashes.
        let rows: Vec<[Param<'_>; 1]> = (1..=40)
            .map(|k| [int(if k == 38 { 100 } else { k })])
            .collect();
        assert!(session.insert_many("INSERT INTO t (k)", "", &rows).is_err());
        // The failed statement kept its first five rows (no statement journal)...
        assert_eq!(count(&session), 1 + 32 + 5);
        // ...which the operation's savepoint undoes with the rest.
        session.rollback_to_savepoint().unwrap();
        assert_eq!(count(&session), 1);
        block_on(session.commit()).unwrap();
    }

    #[test]
    fn block_on_waits_for_a_future_woken_from_another_thread() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = thread::spawn(move || tx.send(7));
        assert_eq!(block_on(rx), Ok(7));
        sender.join().unwrap().unwrap();
    }
}
