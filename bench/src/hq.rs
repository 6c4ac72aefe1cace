//! Which database HQ runs on in a benchmark: a SQLite file in the run's directory,
//! or a fresh PostgreSQL database made for the run and dropped after it.

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
            Ok(Some(db)) => Ok(Self::Postgres(db)),
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
