//! Program rules versions on PostgreSQL.

use super::session::PgSession;
use super::sql;
use crate::store::Result;
use crate::store::encode::{signed, to_db};
use crate::store::rows::Columns;
use crate::store::statements::RulesRows;
use deadpool_postgres::Client;
use deadpool_postgres::GenericClient;
use time::OffsetDateTime;

impl RulesRows for PgSession<'_> {
    async fn rules_version(&mut self) -> Result<u64> {
        rules_version(self.conn().await?).await
    }

    async fn rules_body(&mut self, version: u64) -> Result<Option<String>> {
        sql::first(
            self.conn().await?,
            "SELECT body FROM rules WHERE version = $1",
            &[&signed(version)?],
            |r| r.text(0),
        )
        .await
    }

    /// Readers are not blocked by this mode.
    async fn lock_rules(&mut self) -> Result<()> {
        self.conn()
            .await?
            .batch_execute("LOCK TABLE rules IN SHARE ROW EXCLUSIVE MODE")
            .await?;
        Ok(())
    }

    async fn insert_rules(&mut self, version: u64, body: &str, now: OffsetDateTime) -> Result<()> {
        sql::execute(
            self.conn().await?,
            "INSERT INTO rules (version, body, set_at) VALUES ($1, $2, $3)",
            &[&signed(version)?, &body, &to_db(now)],
        )
        .await?;
        Ok(())
    }
}

pub(super) async fn rules_version(c: &Client) -> Result<u64> {
    sql::one(c, RULES_VERSION, &[], |r| r.counter(0)).await
}

/// The statement of [`rules_version`].
pub(super) const RULES_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM rules";
