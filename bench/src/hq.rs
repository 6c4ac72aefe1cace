//! Which database HQ runs on in a benchmark: a SQLite file in the run's directory,
//! or a fresh PostgreSQL database made for the run and dropped after it.
//!
//! `POS_BENCH_PG_COMMIT_DELAY=µs` (and optionally `POS_BENCH_PG_COMMIT_SIBLINGS=n`)
//! sets PostgreSQL's group commit on each such database (`ALTER DATABASE … SET
//! commit_delay`, a superuser setting: the bench's maintenance user must be one), to
//! measure what it does to the push loads (docs/performance.md, *The live balance's
//! tail, the card lock waits, and group commit*). Off by default: the bench measures
//! the server as PostgreSQL ships.

use crate::store_load::Target;
use std::path::Path;
use testkit::hq::Server;
use testkit::pg::TestDatabase;

/// HQ's database for one measurement.
pub enum HqDb {
    /// SQLite, `hq.db` in the server's directory.
    Sqlite,
    /// A throwaway PostgreSQL database (dropped with this value).
    Postgres(TestDatabase),
}

impl HqDb {
    /// A fresh PostgreSQL database, or `None` with the reason when PostgreSQL is not
    /// reachable (the PostgreSQL figures are then left out).
    pub fn postgres() -> Result<Self, String> {
        match TestDatabase::create_blocking() {
            Ok(Some(db)) => {
                group_commit(&db, |var| std::env::var(var).ok())?;
                Ok(Self::Postgres(db))
            }
            Ok(None) => Err("SKIP_PG_TESTS=1".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Starts a real `sync-server` on this database in `dir`.
    pub fn start_server(&self, dir: &Path) -> Server {
        match self {
            Self::Sqlite => Server::start(dir, ""),
            Self::Postgres(db) => Server::start_on(dir, db.url(), ""),
        }
    }

    /// The store-level benchmark target (`file` for SQLite).
    pub fn target(&self, file: &Path) -> Target {
        match self {
            Self::Sqlite => Target::Sqlite(file.to_path_buf()),
            Self::Postgres(db) => Target::Postgres(db.url().to_owned()),
        }
    }
}

/// The variables naming the group commit's settings, with PostgreSQL's name of each.
const GROUP_COMMIT: [(&str, &str); 2] = [
    ("POS_BENCH_PG_COMMIT_DELAY", "commit_delay"),
    ("POS_BENCH_PG_COMMIT_SIBLINGS", "commit_siblings"),
];

/// Sets on `db` the group commit settings `var` (the environment) asks for, none by
/// default; every connection opened afterwards (the servers') runs with them. Every
/// value is checked before any is set.
fn group_commit(db: &TestDatabase, var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    let mut settings = Vec::new();
    for (name, setting) in GROUP_COMMIT {
        if let Some(value) = var(name) {
            let n: u32 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name}={value} is not a whole number"))?;
            settings.push((name, setting, n));
        }
    }
    for (name, setting, n) in settings {
        db.execute_blocking(&format!("ALTER DATABASE {} SET {setting} = {n}", db.name()))
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value a new connection to `db` runs with.
    fn shown(db: &TestDatabase, setting: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = db.client().await.unwrap();
            let row = client
                .query_one(&format!("SHOW {setting}"), &[])
                .await
                .unwrap();
            row.get::<_, String>(0)
        })
    }

    #[test]
    fn the_group_commit_variables_reach_new_connections_and_bad_ones_set_nothing() {
        let Some(db) = TestDatabase::create_blocking().unwrap() else {
            return;
        };
        let bad = |name: &str| match name {
            "POS_BENCH_PG_COMMIT_DELAY" => Some("250".to_owned()),
            _ => Some("many".to_owned()),
        };
        let err = group_commit(&db, bad).unwrap_err();
        assert!(err.contains("POS_BENCH_PG_COMMIT_SIBLINGS=many"), "{err}");
        assert_eq!(shown(&db, "commit_delay"), "0");
        group_commit(&db, |_| None).unwrap();
        assert_eq!(shown(&db, "commit_delay"), "0");
        let good = |name: &str| match name {
            "POS_BENCH_PG_COMMIT_DELAY" => Some("250".to_owned()),
            _ => Some(" 2".to_owned()),
        };
        group_commit(&db, good).unwrap();
        assert_eq!(shown(&db, "commit_delay"), "250");
        assert_eq!(shown(&db, "commit_siblings"), "2");
    }
}
