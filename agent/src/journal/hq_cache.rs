//! What the agent learned from HQ and keeps across restarts: card balances (`cards`),
//! blocked cards, program rules and the public keys that verify app tokens.

use super::{JournalError, Tx};
use protocol::rules::ProgramRules;
use protocol::token::KeyId;
use protocol::wire::{CardBalance, PublicKeyInfo};
use protocol::{CardId, Seq};
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

impl Tx<'_> {
    /// Stores HQ's figures for a card, which include this terminal's entries through
    /// `acked_through`. Older news (a lower `acked_through` than what is cached) is
    /// ignored, so an answer that arrives late cannot roll the balance back.
    pub fn apply_hq_balance(
        &self,
        b: &CardBalance,
        acked_through: Seq,
    ) -> Result<(), JournalError> {
        let as_of = b.as_of.format(&Rfc3339).map_err(JournalError::data)?;
        let changed = self
            .inner
            .prepare_cached(
                "INSERT INTO cards (card, balance, pending, tier, as_of, as_of_us, included_seq, reserved, leased)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (card) DO UPDATE SET
                     balance = excluded.balance, pending = excluded.pending, tier = excluded.tier,
                     as_of = excluded.as_of, as_of_us = excluded.as_of_us,
                     included_seq = excluded.included_seq,
                     reserved = excluded.reserved, leased = excluded.leased
                 WHERE excluded.included_seq > cards.included_seq
                    OR (excluded.included_seq = cards.included_seq AND excluded.as_of_us >= cards.as_of_us)",
            )?
            .execute(params![
                b.card.as_str(),
                b.balance.get(),
                b.pending.get(),
                b.tier,
                as_of,
                micros(b.as_of),
                acked_through.get(),
                b.reserved.get().max(0),
                b.leased.get().max(0),
            ])?;
        if changed > 0 {
            self.set_blocked(&b.card, b.blocked, b.as_of)?;
        }
        Ok(())
    }

    /// Marks a card blocked or not.
    pub fn set_blocked(
        &self,
        card: &CardId,
        blocked: bool,
        at: OffsetDateTime,
    ) -> Result<(), JournalError> {
        if blocked {
            self.inner
                .prepare_cached(
                    "INSERT OR IGNORE INTO blocked_cards (card, since_unix) VALUES (?1, ?2)",
                )?
                .execute(params![card.as_str(), at.unix_timestamp()])?;
        } else {
            self.inner
                .prepare_cached("DELETE FROM blocked_cards WHERE card = ?1")?
                .execute([card.as_str()])?;
        }
        Ok(())
    }

    /// HQ's latest rules, if any were received.
    pub fn latest_rules(&self) -> Result<Option<ProgramRules>, JournalError> {
        let body: Option<String> = self
            .inner
            .query_row(
                "SELECT body FROM rules ORDER BY version DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        body.map(|b| serde_json::from_str(&b).map_err(JournalError::data))
            .transpose()
    }

    /// Stores HQ's rules.
    pub fn store_rules(&self, rules: &ProgramRules, now_unix: i64) -> Result<(), JournalError> {
        let body = serde_json::to_string(rules).map_err(JournalError::data)?;
        self.inner.execute(
            "INSERT OR REPLACE INTO rules (version, body, received_unix) VALUES (?1, ?2, ?3)",
            params![rules.version, body, now_unix],
        )?;
        Ok(())
    }

    /// The stored HQ signing keys, as HQ sent them.
    pub fn signing_keys(&self) -> Result<Vec<PublicKeyInfo>, JournalError> {
        let mut stmt = self
            .inner
            .prepare("SELECT key_id, public_key, valid_until FROM signing_keys")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut keys = Vec::new();
        for row in rows {
            let (id, public_key, until) = row?;
            let valid_until = until
                .map(|u| OffsetDateTime::parse(&u, &Rfc3339))
                .transpose()
                .map_err(JournalError::data)?;
            keys.push(PublicKeyInfo {
                key_id: KeyId(id),
                public_key,
                valid_until,
            });
        }
        Ok(keys)
    }

    /// Replaces the stored keys with HQ's list (HQ always sends every key).
    pub fn replace_signing_keys(&self, keys: &[PublicKeyInfo]) -> Result<(), JournalError> {
        self.inner.execute("DELETE FROM signing_keys", [])?;
        for k in keys {
            let until = k
                .valid_until
                .map(|u| u.format(&Rfc3339))
                .transpose()
                .map_err(JournalError::data)?;
            self.inner.execute(
                "INSERT INTO signing_keys (key_id, public_key, valid_until) VALUES (?1, ?2, ?3)",
                params![k.key_id.0, k.public_key, until],
            )?;
        }
        Ok(())
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}
