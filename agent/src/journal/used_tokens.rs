//! The `used_tokens` table: app QR tokens already accepted at this terminal, written
//! behind by the scan gate and read back at start, so a restart does not let a
//! screenshot be replayed (see `crate::scanner::replay`).

use super::{JournalError, Tx};
use crate::scanner::replay::UsedToken;
use rusqlite::params;

impl Tx<'_> {
    /// Forgets tokens that expired at or before `expired_by` and returns the others.
    pub fn used_tokens(&self, expired_by: i64) -> Result<Vec<UsedToken>, JournalError> {
        self.forget_used_tokens(expired_by)?;
        let mut stmt = self
            .inner
            .prepare("SELECT token_hash, expires_at_unix FROM used_tokens")?;
        let rows = stmt.query_map([], |r| {
            Ok(UsedToken {
                hash: r.get(0)?,
                expires_at: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a used token and forgets those that expired at or before `expired_by`.
    pub fn record_used_token(
        &self,
        token: &UsedToken,
        expired_by: i64,
    ) -> Result<(), JournalError> {
        self.inner
            .prepare_cached(
                "INSERT OR IGNORE INTO used_tokens (token_hash, expires_at_unix) VALUES (?1, ?2)",
            )?
            .execute(params![token.hash, token.expires_at])?;
        self.forget_used_tokens(expired_by)
    }

    fn forget_used_tokens(&self, expired_by: i64) -> Result<(), JournalError> {
        self.inner
            .prepare_cached("DELETE FROM used_tokens WHERE expires_at_unix <= ?1")?
            .execute([expired_by])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::journal::JournalFile;
    use crate::scanner::replay::{UsedToken, UsedTokens};
    use protocol::token::CLOCK_SKEW_SECS;
    use protocol::{StoreId, TerminalId};

    fn token(hash: char, expires_at: i64) -> UsedToken {
        UsedToken {
            hash: hash.to_string().repeat(64),
            expires_at,
        }
    }

    #[test]
    fn used_tokens_survive_in_the_table_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = JournalFile::open(
            &dir.path().join("j.db"),
            &StoreId::parse("s").unwrap(),
            &TerminalId::parse("t").unwrap(),
        )
        .unwrap();
        let live = token('a', 5_000);
        let dead = token('b', 1_200);
        file.write(|tx| {
            tx.record_used_token(&live, UsedToken::expired_by(1_100))?;
            tx.record_used_token(&dead, UsedToken::expired_by(1_100))?;
            tx.record_used_token(&live, UsedToken::expired_by(1_100))
        })
        .unwrap();
        let load = |file: &mut JournalFile, now| {
            file.write(|tx| tx.used_tokens(UsedToken::expired_by(now)))
                .unwrap()
        };
        assert_eq!(load(&mut file, 1_150).len(), 2);
        let loaded = load(&mut file, 1_200 + CLOCK_SKEW_SECS);
        assert_eq!(loaded, vec![live.clone()]);
        let mut used = UsedTokens::new(loaded);
        assert!(!used.first_use(&live, 1_300 + CLOCK_SKEW_SECS));
    }
}
