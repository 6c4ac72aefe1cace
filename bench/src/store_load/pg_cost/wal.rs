//! Where a measured window's WAL went, by relation: `pg_waldump` over the window's
//! LSN range, its records grouped by resource manager, the relation of their first
//! block and the kind of record (`INSERT`, `HOT_UPDATE`, `INSERT_LEAF`…), kept for
//! this database only (other databases of the cluster write into the same WAL).
//! Each record is one heap row version or one index entry written (or a page's
//! housekeeping), so the table says which tables and indexes a push really writes.

use std::collections::BTreeMap;

/// Records and bytes of one (resource manager, relation, kind).
#[derive(Default)]
struct Group {
    records: u64,
    bytes: u64,
}

/// One record of `pg_waldump`'s output.
#[derive(Debug, PartialEq)]
struct Record<'a> {
    rmgr: &'a str,
    /// Its total length (with any full-page image).
    bytes: u64,
    /// The first word of its description.
    kind: &'a str,
    /// Database and relfilenode of its first block reference, if any.
    rel: Option<(u32, u32)>,
}

/// One line of `pg_waldump`.
fn parse(line: &str) -> Option<Record<'_>> {
    let rest = line.strip_prefix("rmgr: ")?;
    let (rmgr, rest) = rest.split_once(char::is_whitespace)?;
    let bytes = rest
        .split_once("len (rec/tot):")?
        .1
        .split_once('/')?
        .1
        .split_once(',')?
        .0
        .trim()
        .parse()
        .ok()?;
    let desc = rest.split_once("desc: ")?.1;
    let kind = desc.split_whitespace().next().unwrap_or("");
    let rel = desc.split_once("rel ").and_then(|(_, r)| {
        let mut parts = r.split_whitespace().next()?.split('/');
        let _tablespace = parts.next()?;
        let db = parts.next()?.parse().ok()?;
        let node = parts.next()?.trim_end_matches(',').parse().ok()?;
        Some((db, node))
    });
    Some(Record {
        rmgr,
        bytes,
        kind,
        rel,
    })
}

/// Prints the window `[from, to)` of the cluster's WAL for database `db`, per push
/// and per entry, each relation named by `names` (relfilenode → name).
pub fn print(
    wal_dir: &str,
    from: &str,
    to: &str,
    db: u32,
    names: &BTreeMap<u32, String>,
    pushes: u64,
    entries: u64,
) {
    let out = match std::process::Command::new("pg_waldump")
        .args(["-p", wal_dir, "-s", from, "-e", to])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            println!("pg_waldump did not run ({e}); is it on PATH?");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut groups: BTreeMap<(String, String, String), Group> = BTreeMap::new();
    let mut others = 0_u64;
    for r in text.lines().filter_map(parse) {
        let name = match r.rel {
            Some((d, node)) if d == db => names
                .get(&node)
                .cloned()
                .unwrap_or_else(|| node.to_string()),
            // Another database's (or a shared catalog's) block.
            Some(_) => {
                others += 1;
                continue;
            }
            // Commits and other records of no relation (of every database).
            None => "-".to_owned(),
        };
        let g = groups
            .entry((name, r.rmgr.to_owned(), r.kind.to_owned()))
            .or_default();
        g.records += 1;
        g.bytes += r.bytes;
    }
    println!(
        "WAL {from}..{to}, database {db}: {} records of other databases left out",
        others
    );
    println!(
        "{:>9} {:>9} {:>9}  relation / rmgr / kind",
        "rec/push", "rec/entry", "B/push"
    );
    for ((name, rmgr, kind), g) in &groups {
        println!(
            "{:>9.2} {:>9.3} {:>9.0}  {name} / {rmgr} / {kind}",
            g.records as f64 / pushes as f64,
            g.records as f64 / entries as f64,
            g.bytes as f64 / pushes as f64,
        );
    }
    if !out.status.success() {
        // It reports the end of the window it could not read past, harmlessly, when
        // `to` is the current insert position.
        println!(
            "pg_waldump: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{Record, parse};

    #[test]
    fn waldump_lines_are_read() {
        let heap = "rmgr: Heap        len (rec/tot):     79/    79, tx:        751, lsn: \
                    0/01A2B3C8, prev 0/01A2B390, desc: HOT_UPDATE off 5 xmax 751 flags \
                    0x10 ; new off 7 xmax 0, blkref #0: rel 1663/16384/16390 blk 12";
        let record = |rmgr, bytes, kind, rel| Record {
            rmgr,
            bytes,
            kind,
            rel,
        };
        assert_eq!(
            parse(heap),
            Some(record("Heap", 79, "HOT_UPDATE", Some((16384, 16390))))
        );
        let commit = "rmgr: Transaction len (rec/tot):     34/    34, tx:        751, lsn: \
                      0/01A2B400, prev 0/01A2B3C8, desc: COMMIT 2026-12-02 01:00:00 UTC";
        assert_eq!(
            parse(commit),
            Some(record("Transaction", 34, "COMMIT", None))
        );
        assert_eq!(parse("pg_waldump: error: ..."), None);
    }
}
