//! Opening a journal file: identity checks, pragmas and numbered migrations.
//!
//! A journal belongs to one terminal forever: its store and terminal ids are written
//! at creation and checked at every start, so a journal copied to another till (or a
//! config edited to another terminal id) is refused instead of mixing two sequences.
//! A file that is not a pos-agent journal is refused and never overwritten.

use super::JournalError;
use protocol::{StoreId, TerminalId};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use rusqlite_migration::{HookError, HookResult, M, Migrations};
use std::path::Path;
use std::sync::LazyLock;

/// `PRAGMA application_id` of every journal: "LOYA".
pub const APPLICATION_ID: i32 = 0x4C4F_5941;

/// The journal's numbered migrations, oldest first.
pub static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![
        M::up(include_str!("migrations/001_journal.sql")),
        M::up(include_str!("migrations/002_hq_cache.sql")),
        M::up(include_str!("migrations/003_used_tokens.sql")),
        M::up(include_str!("migrations/004_card_running_totals.sql")),
        M::up(include_str!("migrations/005_escrow.sql")),
        M::up(include_str!("migrations/006_hq_quarantine.sql")),
        M::up(include_str!("migrations/007_fewer_pages_per_sale.sql")),
        M::up_with_hook(
            include_str!("migrations/008_sale_state_check.sql"),
            sale_state_check_without_in_list,
        ),
        M::up(include_str!("migrations/009_recent_cards_folded.sql")),
        M::up(include_str!("migrations/010_entries_without_id_index.sql")).foreign_key_check(),
        M::up(include_str!(
            "migrations/011_open_holds_from_the_newest_sale.sql"
        )),
    ])
});

/// Number of migrations: the schema version of a journal this build writes.
pub fn latest_version() -> usize {
    11
}

/// The check of a sale's state as migration 1 declared it, and as migration 8 rewrites it.
const SALE_STATE_IN_LIST: &str = "CHECK (state IN ('held', 'committed', 'cancelled', 'returned'))";
const SALE_STATE_COMPARISONS: &str =
    "CHECK (state = 'held' OR state = 'committed' OR state = 'cancelled' OR state = 'returned')";

/// Migration 8: the declaration of `sales` with its state check as comparisons (see
/// the migration's comment), edited in place the way SQLite documents for a CHECK
/// constraint: `writable_schema`, the new text, then a new schema version so that
/// every connection (this one included) reads the declaration again.
fn sale_state_check_without_in_list(tx: &rusqlite::Transaction<'_>) -> HookResult {
    let version: i64 = tx.pragma_query_value(None, "schema_version", |r| r.get(0))?;
    tx.pragma_update(None, "writable_schema", true)?;
    let changed = tx.execute(
        "UPDATE sqlite_schema SET sql = replace(sql, ?1, ?2)
         WHERE type = 'table' AND name = 'sales' AND instr(sql, ?1) > 0",
        [SALE_STATE_IN_LIST, SALE_STATE_COMPARISONS],
    );
    // Off again whatever happened: the flag belongs to the connection, not to the
    // transaction.
    tx.pragma_update(None, "writable_schema", false)?;
    if changed? != 1 {
        return Err(HookError::Hook(format!(
            "the declaration of table sales has no `{SALE_STATE_IN_LIST}` to rewrite"
        )));
    }
    tx.pragma_update(None, "schema_version", version + 1)?;
    Ok(())
}

/// Opens (creating if needed) the journal at `path` for this terminal, migrated to the
/// latest schema.
pub(super) fn open(
    path: &Path,
    store: &StoreId,
    terminal: &TerminalId,
) -> Result<Connection, JournalError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| JournalError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| JournalError::open(path, e))?;
    check_identity_of_file(&conn, path)?;
    apply_pragmas(&conn).map_err(|e| JournalError::open(path, e))?;
    let fresh = application_id(&conn).map_err(|e| JournalError::open(path, e))? == 0;
    if fresh {
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(|e| JournalError::open(path, e))?;
    }
    // Foreign keys off while migrating: a migration that rebuilds a table other tables
    // refer to (10) is SQLite's documented procedure only so, and the switch is a no-op
    // inside the migration's own transaction. Such a migration checks the keys itself
    // before it commits (`foreign_key_check`); they are enforced again right after.
    conn.pragma_update(None, "foreign_keys", "OFF")
        .map_err(|e| JournalError::open(path, e))?;
    MIGRATIONS
        .to_latest(&mut conn)
        .map_err(|e| JournalError::Migration {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| JournalError::open(path, e))?;
    claim_terminal(&conn, path, store, terminal)?;
    Ok(conn)
}

/// Prepared statements a journal connection keeps compiled. The journal has some 40
/// cached statements, more than rusqlite's default cache of 16 keeps, and the profile
/// of a till sale showed SQLite compiling SQL again at about twice the CPU of running
/// it (docs/performance.md, *Till sales*): with room for all of them each is compiled once.
const STATEMENT_CACHE: usize = 128;

/// WAL so readers never block the writer; `synchronous=FULL` so a committed
/// transaction survives power loss, which is what the till's 2xx promises.
pub fn apply_pragmas(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

fn application_id(conn: &Connection) -> rusqlite::Result<i32> {
    conn.pragma_query_value(None, "application_id", |r| r.get(0))
}

/// Refuses files that are not SQLite, are damaged, or are some other program's database.
fn check_identity_of_file(conn: &Connection, path: &Path) -> Result<(), JournalError> {
    // Reading the schema is the first access to the file's pages: a non-SQLite or
    // damaged file fails here ("file is not a database").
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|e| JournalError::NotAJournal {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let app_id = application_id(conn).map_err(|e| JournalError::open(path, e))?;
    if app_id == APPLICATION_ID {
        let check: String = conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(|e| JournalError::NotAJournal {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        if check != "ok" {
            return Err(JournalError::NotAJournal {
                path: path.display().to_string(),
                reason: format!("integrity check failed: {check}"),
            });
        }
        return Ok(());
    }
    if app_id == 0 && tables == 0 {
        return Ok(()); // a new, empty file
    }
    Err(JournalError::NotAJournal {
        path: path.display().to_string(),
        reason: format!(
            "it is a SQLite database of another program (application_id {app_id:#x}, {tables} schema objects)"
        ),
    })
}

/// Records the terminal on first open; afterwards refuses any other terminal.
fn claim_terminal(
    conn: &Connection,
    path: &Path,
    store: &StoreId,
    terminal: &TerminalId,
) -> Result<(), JournalError> {
    let get = |key: &str| -> Result<Option<String>, JournalError> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| JournalError::open(path, e))
    };
    match (get("store_id")?, get("terminal_id")?) {
        (Some(s), Some(t)) if s == store.as_str() && t == terminal.as_str() => Ok(()),
        (Some(s), Some(t)) => Err(JournalError::OtherTerminal {
            path: path.display().to_string(),
            journal: format!("{s}/{t}"),
            config: format!("{store}/{terminal}"),
        }),
        _ => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('store_id', ?1), ('terminal_id', ?2), ('created_at', datetime('now'))",
                params![store.as_str(), terminal.as_str()],
            )
            .map_err(|e| JournalError::open(path, e))?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (StoreId, TerminalId) {
        (
            StoreId::parse("s1").unwrap(),
            TerminalId::parse("t1").unwrap(),
        )
    }

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
    }

    #[test]
    fn a_new_file_becomes_a_journal_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let (s, t) = ids();
        drop(open(&path, &s, &t).unwrap());
        let conn = open(&path, &s, &t).unwrap();
        let v: usize = MIGRATIONS.current_version(&conn).unwrap().into();
        assert_eq!(v, latest_version());
    }

    #[test]
    fn a_journal_of_another_terminal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let (s, t) = ids();
        drop(open(&path, &s, &t).unwrap());
        let other = TerminalId::parse("t2").unwrap();
        assert!(matches!(
            open(&path, &s, &other),
            Err(JournalError::OtherTerminal { .. })
        ));
    }

    #[test]
    fn a_foreign_sqlite_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE photos (x); INSERT INTO photos VALUES (1);")
            .unwrap();
        drop(c);
        let (s, t) = ids();
        assert!(matches!(
            open(&path, &s, &t),
            Err(JournalError::NotAJournal { .. })
        ));
        let c = Connection::open(&path).unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM photos", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.db");
        let junk = vec![0xAB_u8; 8192];
        std::fs::write(&path, &junk).unwrap();
        let (s, t) = ids();
        assert!(matches!(
            open(&path, &s, &t),
            Err(JournalError::NotAJournal { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), junk);
    }

    /// The indexes of `table`, by name.
    fn indexes(conn: &Connection, table: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?1 ORDER BY name")
            .unwrap();
        stmt.query_map([table], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A sale's priced receipt of one line, as a journal stores it.
    const ONE_LINE_PRICED: &str = r#"{"lines":[{"sku":"a","category":"g","amount_minor":1000,"qty":1,"discount_minor":0,"paid_minor":1000,"redeemed_points":0,"accrued_points":10}],"total_minor":1000,"discount_minor":0,"paid_minor":1000,"redeemed_points":0,"accrued_points":10}"#;

    /// A journal file at `path` migrated to `version` only, for rows of that schema.
    fn journal_of_version(path: &Path, version: usize) -> Connection {
        let mut c = Connection::open(path).unwrap();
        c.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        MIGRATIONS.to_version(&mut c, version).unwrap();
        c
    }

    /// Rows of a journal of version 9 or later: this terminal, a sale of card 12345670
    /// committed with entry 1 (its running total and stored answer), and a return of
    /// it, entry 2.
    fn a_returned_sale() -> String {
        format!(
            "INSERT INTO meta (key, value) VALUES ('store_id', 's1'), ('terminal_id', 't1');
             INSERT INTO entries (seq, id, kind, card, at_unix, delta_balance, body)
             VALUES (1, '01900000-0000-7000-8000-000000000001', 'sale', '12345670', 1795514400, 10,
                     '{{\"at\":\"2026-11-24T10:00:00Z\"}}'),
                    (2, '01900000-0000-7000-8000-000000000002', 'return', '12345670', 1795514500, -4,
                     '{{\"at\":\"2026-11-24T10:01:40Z\"}}');
             INSERT INTO card_running (card, seq, running) VALUES ('12345670', 1, 10), ('12345670', 2, 6);
             INSERT INTO sales (receipt_id, request_hash, state, card, redeem_points, offline, held_at_unix,
                                rules_version, priced, hold_response, entry_seq, commit_response)
             VALUES ('R-1', 'h', 'returned', '12345670', 0, 0, 1795514300, 0, '{ONE_LINE_PRICED}', '{{}}', 1,
                     '{{\"stored\":1}}');
             INSERT INTO returns (return_id, receipt_id, request_hash, entry_seq, response)
             VALUES ('RT-1', 'R-1', 'h', 2, '{{}}');"
        )
    }

    /// A migrated file passes SQLite's integrity check and breaks no foreign key.
    fn assert_intact(conn: &Connection) {
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let violations: i64 = conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(violations, 0);
    }

    #[test]
    fn a_journal_of_version_6_drops_the_indexes_a_sale_wrote_for_nothing_and_reads_the_same() {
        use crate::journal::{JournalError, JournalFile};
        use protocol::{CardId, Points};
        use time::macros::datetime;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.db");
        {
            let mut c = Connection::open(&path).unwrap();
            c.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            MIGRATIONS.to_version(&mut c, 6).unwrap();
            assert!(indexes(&c, "entries").contains(&"entries_by_card".to_owned()));
            assert!(indexes(&c, "sales").contains(&"sales_holds_by_card".to_owned()));
            c.execute_batch(
                "INSERT INTO meta (key, value) VALUES ('store_id', 's1'), ('terminal_id', 't1');
                 INSERT INTO entries (seq, id, kind, card, at_unix, delta_balance, body)
                 VALUES (1, 'e1', 'welcome', '4006381333931', 1795514400, 5, '{\"at\":\"2026-11-24T10:00:00Z\"}');
                 INSERT INTO card_running (card, seq, running) VALUES ('4006381333931', 1, 5);
                 INSERT INTO sales (receipt_id, request_hash, state, card, redeem_points, offline,
                                    held_at_unix, rules_version, priced, hold_response)
                 VALUES ('R-1', 'h', 'held', '4006381333931', 3, 0, 1795514400, 0, '{}', '{}');",
            )
            .unwrap();
        }
        let (s, t) = ids();
        let mut file = JournalFile::open(&path, &s, &t).unwrap();
        let card = CardId::parse("4006381333931").unwrap();
        let (held, figures) = file
            .read(|tx| -> Result<_, JournalError> {
                Ok((
                    tx.held_points(&card)?,
                    tx.card_figures(&card, datetime!(2026-11-24 11:00 UTC))?,
                ))
            })
            .unwrap();
        assert_eq!(held, Points(3));
        assert_eq!(figures.local_balance, Points(5));
        assert_eq!(figures.local_as_of, Some(datetime!(2026-11-24 10:00 UTC)));
        let conn = open(&path, &s, &t).unwrap();
        assert_eq!(
            indexes(&conn, "entries"),
            ["entries_offline_redemptions", "entries_pending_by_card"]
        );
        assert_eq!(
            indexes(&conn, "sales"),
            ["sales_by_lease", "sqlite_autoindex_sales_1"]
        );
    }

    #[test]
    fn a_journal_of_version_7_checks_sale_states_without_an_in_list_and_keeps_its_sales() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v7.db");
        {
            let mut c = Connection::open(&path).unwrap();
            c.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            MIGRATIONS.to_version(&mut c, 7).unwrap();
            c.execute_batch(
                "INSERT INTO meta (key, value) VALUES ('store_id', 's1'), ('terminal_id', 't1');
                 INSERT INTO sales (receipt_id, request_hash, state, card, redeem_points, offline,
                                    held_at_unix, rules_version, priced, hold_response)
                 VALUES ('R-1', 'h', 'held', NULL, 0, 0, 1795514400, 0, '{}', '{}');",
            )
            .unwrap();
        }
        let (s, t) = ids();
        let conn = open(&path, &s, &t).unwrap();
        let declared: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'sales'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!declared.contains(SALE_STATE_IN_LIST), "{declared}");
        assert!(declared.contains(SALE_STATE_COMPARISONS), "{declared}");
        // The same states pass and any other is refused, by this connection too.
        for state in ["committed", "returned", "cancelled", "held"] {
            conn.execute(
                "UPDATE sales SET state = ?1 WHERE receipt_id = 'R-1'",
                [state],
            )
            .unwrap();
        }
        let refused = conn
            .execute(
                "UPDATE sales SET state = 'lost' WHERE receipt_id = 'R-1'",
                [],
            )
            .unwrap_err();
        assert!(
            refused.to_string().contains("CHECK constraint failed"),
            "{refused}"
        );
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let kept: String = conn
            .query_row(
                "SELECT state FROM sales WHERE receipt_id = 'R-1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, "held");
    }

    #[test]
    fn an_old_schema_migrates_forward_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let mut c = Connection::open(&path).unwrap();
            c.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            MIGRATIONS.to_version(&mut c, 1).unwrap();
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('store_id', 's1'), ('terminal_id', 't1')",
                [],
            )
            .unwrap();
            c.execute(
                "INSERT INTO entries (seq, id, kind, at_unix, body) VALUES (1, 'x', 'sale', 0, '{}')",
                [],
            )
            .unwrap();
        }
        let (s, t) = ids();
        let conn = open(&path, &s, &t).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let cursor: String = conn
            .query_row("SELECT pull_cursor FROM sync_state", [], |r| r.get(0))
            .unwrap();
        assert_eq!(cursor, "");
    }

    #[test]
    fn a_journal_of_version_8_keeps_its_recent_cards_without_the_index_of_sales_by_time() {
        use crate::journal::JournalFile;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v8.db");
        {
            let mut c = Connection::open(&path).unwrap();
            c.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            MIGRATIONS.to_version(&mut c, 8).unwrap();
            // A committed sale with a return, a cancelled one, an open hold and a sale
            // without a card; card A shopped twice.
            c.execute_batch(
                "INSERT INTO meta (key, value) VALUES ('store_id', 's1'), ('terminal_id', 't1');
                 INSERT INTO entries (seq, id, kind, card, at_unix, body)
                 VALUES (1, 'e1', 'sale', '12345670', 1000, '{}'),
                        (2, 'e2', 'return', '12345670', 1500, '{}');
                 INSERT INTO card_running (card, seq, running) VALUES ('12345670', 1, 5), ('12345670', 2, 4);
                 INSERT INTO sales (receipt_id, request_hash, state, card, redeem_points, offline,
                                    held_at_unix, rules_version, priced, hold_response, entry_seq)
                 VALUES ('R-1', 'h', 'returned', '12345670', 0, 0, 990, 0, '{}', '{}', 1),
                        ('R-2', 'h', 'cancelled', '96385074', 0, 0, 2000, 0, '{}', '{}', NULL),
                        ('R-3', 'h', 'held', '4006381333931', 0, 0, 3000, 0, '{}', '{}', NULL),
                        ('R-4', 'h', 'held', '12345670', 0, 0, 500, 0, '{}', '{}', NULL),
                        ('R-5', 'h', 'committed', NULL, 0, 0, 4000, 0, '{}', '{}', NULL);
                 INSERT INTO returns (return_id, receipt_id, request_hash, entry_seq, response)
                 VALUES ('RT-1', 'R-1', 'h', 2, '{}');",
            )
            .unwrap();
        }
        let (s, t) = ids();
        let conn = open(&path, &s, &t).unwrap();
        assert!(!indexes(&conn, "sales").contains(&"sales_cards_by_time".to_owned()));
        let seeded: Vec<(String, i64)> = conn
            .prepare("SELECT card, last_seen_unix FROM recent_cards ORDER BY card")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let seeded: Vec<(&str, i64)> = seeded.iter().map(|(c, t)| (c.as_str(), *t)).collect();
        assert_eq!(
            seeded,
            [
                ("12345670", 990),
                ("4006381333931", 3000),
                ("96385074", 2000)
            ]
        );
        let through: i64 = conn
            .query_row("SELECT recent_cards_through_seq FROM sync_state", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(through, 2, "entries before the migration are in the seed");
        assert_intact(&conn);
        let sales: i64 = conn
            .query_row("SELECT count(*) FROM sales", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sales, 5);
        drop(conn);
        // The lease sync's answer is the one the index gave.
        let mut file = JournalFile::open(&path, &s, &t).unwrap();
        let recent = file.write(|tx| tx.recent_cards(900, 10)).unwrap();
        let recent: Vec<&str> = recent.iter().map(protocol::CardId::as_str).collect();
        assert_eq!(recent, ["4006381333931", "96385074", "12345670"]);
    }

    #[test]
    fn a_journal_of_version_9_loses_the_index_of_entry_ids_and_keeps_its_sales_working() {
        use crate::journal::JournalFile;
        use crate::sales::commit::commit;
        use protocol::ReceiptId;
        use time::macros::datetime;

        let priced = ONE_LINE_PRICED;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v9.db");
        {
            let c = journal_of_version(&path, 9);
            // A committed sale (its entry, running total and stored answer), a return of
            // it, and an open hold of the same card.
            c.execute_batch(&a_returned_sale()).unwrap();
            c.execute_batch(&format!(
                "INSERT INTO sales (receipt_id, request_hash, state, card, redeem_points, offline, held_at_unix,
                                    rules_version, priced, hold_response, entry_seq, commit_response)
                 VALUES ('R-2', 'h', 'held', '12345670', 0, 0, 1795514600, 0, '{priced}', '{{}}', NULL, NULL);"
            ))
            .unwrap();
            assert!(indexes(&c, "entries").contains(&"sqlite_autoindex_entries_1".to_owned()));
        }
        let (s, t) = ids();
        let conn = open(&path, &s, &t).unwrap();
        assert_eq!(
            indexes(&conn, "entries"),
            ["entries_offline_redemptions", "entries_pending_by_card"]
        );
        assert_intact(&conn);
        let enforced: bool = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert!(enforced, "foreign keys are enforced again after migrating");
        // Entries are still facts: never edited, never deleted.
        for refused in ["UPDATE entries SET kind = 'x'", "DELETE FROM entries"] {
            let e = conn.execute(refused, []).unwrap_err().to_string();
            assert!(e.contains("journal entries are"), "{refused}: {e}");
        }
        drop(conn);
        let mut file = JournalFile::open(&path, &s, &t).unwrap();
        let now = datetime!(2026-11-24 11:00 UTC);
        let committed = ReceiptId::parse("R-1").unwrap();
        let again = file.write(|tx| commit(tx, &committed, now, None)).unwrap();
        assert_eq!(
            (again.json.as_str(), again.replayed),
            ("{\"stored\":1}", true)
        );
        let held = ReceiptId::parse("R-2").unwrap();
        let first = file.write(|tx| commit(tx, &held, now, None)).unwrap();
        let seq = file
            .read(|tx| tx.sale(&held))
            .unwrap()
            .unwrap()
            .entry_seq
            .unwrap();
        assert_eq!(seq.get(), 3, "the entry after the kept ones");
        let retried = file.write(|tx| commit(tx, &held, now, None)).unwrap();
        assert_eq!((retried.json, retried.replayed), (first.json, true));
        let card = protocol::CardId::parse("12345670").unwrap();
        let figures = file.read(|tx| tx.card_figures(&card, now)).unwrap();
        assert_eq!(figures.local_balance.get(), 16);
    }

    #[test]
    fn a_journal_of_version_10_finds_its_open_holds_from_the_newest_sale_without_their_index() {
        use crate::journal::JournalFile;
        use crate::journal::sales::NewHold;
        use crate::sales::commit::commit;
        use protocol::evaluate::PricedSale;
        use protocol::{CardId, Points, ReceiptId};
        use time::macros::datetime;

        let priced = ONE_LINE_PRICED;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v10.db");
        {
            let c = journal_of_version(&path, 10);
            // A committed sale and a return of it, an open hold of the same card
            // (3 points), then a committed sale after the hold: the open hold is not
            // the newest sale.
            c.execute_batch(&a_returned_sale()).unwrap();
            c.execute_batch(&format!(
                "INSERT INTO entries (seq, id, kind, card, at_unix, delta_balance, body)
                 VALUES (3, '01900000-0000-7000-8000-000000000003', 'sale', '12345670', 1795514700, 10,
                         '{{\"at\":\"2026-11-24T10:05:00Z\"}}');
                 INSERT INTO card_running (card, seq, running) VALUES ('12345670', 3, 16);
                 INSERT INTO sales (receipt_id, request_hash, state, card, redeem_points, offline, held_at_unix,
                                    rules_version, priced, hold_response, entry_seq, commit_response)
                 VALUES ('R-2', 'h', 'held', '12345670', 3, 0, 1795514600, 0, '{priced}', '{{}}', NULL, NULL),
                        ('R-3', 'h', 'committed', '12345670', 0, 0, 1795514650, 0, '{priced}', '{{}}', 3, '{{}}');"
            ))
            .unwrap();
            assert!(indexes(&c, "sales").contains(&"sales_open_holds".to_owned()));
        }
        let (s, t) = ids();
        let conn = open(&path, &s, &t).unwrap();
        assert_eq!(
            indexes(&conn, "sales"),
            ["sales_by_lease", "sqlite_autoindex_sales_1"]
        );
        let open_back: Vec<Option<i64>> = conn
            .prepare("SELECT open_back FROM sales ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            open_back,
            [None, None, Some(1)],
            "R-3 is one sale after R-2"
        );
        assert_intact(&conn);
        drop(conn);

        let mut file = JournalFile::open(&path, &s, &t).unwrap();
        let card = CardId::parse("12345670").unwrap();
        let now = datetime!(2026-11-24 11:00 UTC);
        assert_eq!(file.read(|tx| tx.held_points(&card)).unwrap(), Points(3));
        let expired = file
            .read(|tx| tx.expired_holds(now.unix_timestamp()))
            .unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].receipt_id.as_str(), "R-2");
        // A new hold records the distance back to R-2; committing R-2 leaves it held.
        let priced: PricedSale = serde_json::from_str(priced).unwrap();
        let r4 = ReceiptId::parse("R-4").unwrap();
        file.write(|tx| {
            tx.insert_hold(&NewHold {
                receipt_id: &r4,
                request_hash: "h",
                card: Some(&card),
                redeem_points: Points(5),
                offline: false,
                reserved_points: Points::ZERO,
                lease: None,
                held_at: now,
                rules_version: 0,
                matures_at: None,
                priced: &priced,
                answer: "{}",
            })
        })
        .unwrap();
        assert_eq!(file.read(|tx| tx.held_points(&card)).unwrap(), Points(8));
        let r2 = ReceiptId::parse("R-2").unwrap();
        file.write(|tx| commit(tx, &r2, now, None)).unwrap();
        assert_eq!(file.read(|tx| tx.held_points(&card)).unwrap(), Points(5));
        let r1 = ReceiptId::parse("R-1").unwrap();
        let again = file.write(|tx| commit(tx, &r1, now, None)).unwrap();
        assert_eq!(
            (again.json.as_str(), again.replayed),
            ("{\"stored\":1}", true)
        );
        let figures = file.read(|tx| tx.card_figures(&card, now)).unwrap();
        assert_eq!((figures.local_balance.get(), figures.held), (26, Points(5)));
    }
}
