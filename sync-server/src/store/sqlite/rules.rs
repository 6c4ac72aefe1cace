//! Program rules versions in SQLite. `BEGIN IMMEDIATE` already keeps a second
//! `rules set` out, so locking the table is nothing here.

use super::session::SqliteSession;
use crate::store::Result;
use crate::store::encode::{signed, to_db};
use crate::store::rows::Columns;
use crate::store::statements::RulesRows;
use time::OffsetDateTime;

impl RulesRows for SqliteSession<'_> {
    async fn rules_version(&mut self) -> Result<u64> {
        self.one("SELECT COALESCE(MAX(version), 0) FROM rules", [], |r| {
            r.counter(0)
        })
    }

    async fn rules_body(&mut self, version: u64) -> Result<Option<String>> {
        self.first(
            "SELECT body FROM rules WHERE version = ?1",
            [signed(version)?],
            |r| r.text(0),
        )
    }

    async fn lock_rules(&mut self) -> Result<()> {
        Ok(())
    }

    async fn insert_rules(&mut self, version: u64, body: &str, now: OffsetDateTime) -> Result<()> {
        self.execute(
            "INSERT INTO rules (version, body, set_at) VALUES (?1, ?2, ?3)",
            (signed(version)?, body, to_db(now)),
        )?;
        Ok(())
    }
}
