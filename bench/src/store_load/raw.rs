//! The baselines a push is measured against: the same entry rows written straight
//! into the same `entries` table (same indexes and constraints), one transaction per
//! batch like a push, with no exactly-once check, ledger, lots or cards. Canonical
//! JSON and hashes are computed before the clock starts: only database work counts.

use super::{BenchError, Target};
use futures_util::SinkExt;
use protocol::CardId;
use protocol::journal::JournalEntry;
use std::fmt;
use std::time::Instant;
use sync_server::ledger::apply::{entry_kind, spend_of};
use sync_server::store::encode::{entry_body_and_hash, signed, to_db};
use sync_server::store::postgres::INSERT_ENTRIES;
use sync_server::store::postgres::retry::describe;
use time::OffsetDateTime;
use tokio_postgres::NoTls;
use uuid::Uuid;

/// How rows are written raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// SQLite: one cached prepared `INSERT` per row inside `BEGIN IMMEDIATE`.
    SqliteInsert,
    /// PostgreSQL: one `INSERT … SELECT FROM unnest(…)` per batch.
    PgInsert,
    /// PostgreSQL: one `COPY entries FROM STDIN` per batch, PostgreSQL's fastest
    /// way in.
    PgCopy,
}

impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SqliteInsert => "batched INSERT",
            Self::PgInsert => "batched INSERT (unnest)",
            Self::PgCopy => "COPY",
        })
    }
}

/// An entry's columns, ready to write.
struct Row {
    id: Uuid,
    seq: i64,
    at: i64,
    kind: &'static str,
    card: Option<String>,
    spend: i64,
    rules_version: i64,
    hash: String,
    body: String,
}

fn rows(entries: &[JournalEntry]) -> Result<Vec<Row>, BenchError> {
    entries
        .iter()
        .map(|e| {
            let (body, hash) = entry_body_and_hash(e)?;
            Ok(Row {
                id: e.id,
                seq: signed(e.seq.get())?,
                at: to_db(e.at),
                kind: entry_kind(e).as_str(),
                card: e.card().map(|c: &CardId| c.as_str().to_owned()),
                spend: spend_of(e).get(),
                rules_version: signed(e.rules_version)?,
                hash,
                body,
            })
        })
        .collect()
}

/// Writes `entries` raw into `target` (an empty database) in batches of `batch`;
/// returns the seconds the writes took.
pub async fn write(
    baseline: Baseline,
    target: &Target,
    entries: &[JournalEntry],
    batch: usize,
) -> Result<f64, BenchError> {
    // The schema and a terminal row, as the server makes them.
    let store = target.open().await?;
    let terminal = super::enroll(store.as_ref(), "store-1", "till-1")
        .await?
        .key;
    drop(store);
    let rows = rows(entries)?;
    let received = to_db(OffsetDateTime::now_utc());
    target.checkpoint().await;
    match (baseline, target) {
        (Baseline::SqliteInsert, Target::Sqlite(path)) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                sqlite_insert(&path, terminal, &rows, batch, received)
            })
            .await?
        }
        (Baseline::PgInsert | Baseline::PgCopy, Target::Postgres(url)) => {
            let (client, connection) = tokio_postgres::connect(url, NoTls)
                .await
                .map_err(|e| BenchError::Raw(describe(&e)))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            if baseline == Baseline::PgInsert {
                pg_insert(client, terminal, &rows, batch, received).await
            } else {
                pg_copy(client, terminal, &rows, batch, received).await
            }
        }
        _ => Err(BenchError::Raw(format!(
            "{baseline} does not apply to {target:?}"
        ))),
    }
}

fn sqlite_insert(
    path: &std::path::Path,
    terminal: i64,
    rows: &[Row],
    batch: usize,
    received: i64,
) -> Result<f64, BenchError> {
    let fail = |e: rusqlite::Error| BenchError::Raw(e.to_string());
    let mut conn = rusqlite::Connection::open(path).map_err(fail)?;
    // The server's own settings: WAL, and every commit durable.
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .map_err(fail)?;
    let started = Instant::now();
    for chunk in rows.chunks(batch) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO entries (id, terminal_ref, seq, at, kind, card, spend_minor,
                                          rules_version, content_hash, body, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(fail)?;
            for r in chunk {
                stmt.execute((
                    r.id.to_string(),
                    terminal,
                    r.seq,
                    r.at,
                    r.kind,
                    r.card.as_deref(),
                    r.spend,
                    r.rules_version,
                    &r.hash,
                    &r.body,
                    received,
                ))
                .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)?;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn pg_insert(
    mut client: tokio_postgres::Client,
    terminal: i64,
    rows: &[Row],
    batch: usize,
    received: i64,
) -> Result<f64, BenchError> {
    let fail = |e: tokio_postgres::Error| BenchError::Raw(describe(&e));
    let stmt = client.prepare(INSERT_ENTRIES).await.map_err(fail)?;
    let started = Instant::now();
    for chunk in rows.chunks(batch) {
        let id: Vec<Uuid> = chunk.iter().map(|r| r.id).collect();
        let seq: Vec<i64> = chunk.iter().map(|r| r.seq).collect();
        let at: Vec<i64> = chunk.iter().map(|r| r.at).collect();
        let kind: Vec<&str> = chunk.iter().map(|r| r.kind).collect();
        let card: Vec<Option<&str>> = chunk.iter().map(|r| r.card.as_deref()).collect();
        let spend: Vec<i64> = chunk.iter().map(|r| r.spend).collect();
        let rv: Vec<i64> = chunk.iter().map(|r| r.rules_version).collect();
        let hash: Vec<&str> = chunk.iter().map(|r| r.hash.as_str()).collect();
        let body: Vec<&str> = chunk.iter().map(|r| r.body.as_str()).collect();
        let tx = client.transaction().await.map_err(fail)?;
        tx.execute(
            &stmt,
            &[
                &terminal, &received, &id, &seq, &at, &kind, &card, &spend, &rv, &hash, &body,
            ],
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Appends `s` as one field of COPY's text format.
fn copy_field(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

async fn pg_copy(
    mut client: tokio_postgres::Client,
    terminal: i64,
    rows: &[Row],
    batch: usize,
    received: i64,
) -> Result<f64, BenchError> {
    let fail = |e: tokio_postgres::Error| BenchError::Raw(describe(&e));
    // The COPY text is built before the clock starts, like the JSON.
    let chunks: Vec<Vec<u8>> = rows
        .chunks(batch)
        .map(|chunk| {
            let mut out = Vec::with_capacity(chunk.len() * 1024);
            for r in chunk {
                let fields = [
                    r.id.to_string(),
                    terminal.to_string(),
                    r.seq.to_string(),
                    r.at.to_string(),
                    r.kind.to_owned(),
                ];
                for f in &fields {
                    copy_field(&mut out, f);
                    out.push(b'\t');
                }
                match &r.card {
                    Some(c) => copy_field(&mut out, c),
                    None => out.extend_from_slice(b"\\N"),
                }
                for f in [
                    r.spend.to_string(),
                    r.rules_version.to_string(),
                    r.hash.clone(),
                    r.body.clone(),
                    received.to_string(),
                ] {
                    out.push(b'\t');
                    copy_field(&mut out, &f);
                }
                out.push(b'\n');
            }
            out
        })
        .collect();
    let started = Instant::now();
    for data in chunks {
        let tx = client.transaction().await.map_err(fail)?;
        let sink = tx
            .copy_in(
                "COPY entries (id, terminal_ref, seq, at, kind, card, spend_minor,
                               rules_version, content_hash, body, received_at) FROM STDIN",
            )
            .await
            .map_err(fail)?;
        let mut sink = std::pin::pin!(sink);
        sink.send(std::io::Cursor::new(data)).await.map_err(fail)?;
        sink.as_mut().finish().await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
    }
    Ok(started.elapsed().as_secs_f64())
}
