//! The HQ public keys that verify app QR tokens at this till, kept in the journal
//! (so they survive restarts and work offline) and shared with the scanner threads.

use crate::journal::JournalError;
use protocol::token::{KeyId, KeyRing, PublicKey, decode_public_key};
use protocol::wire::PublicKeyInfo;
use rusqlite::{Connection, params};
use std::sync::{Arc, RwLock};
use time::OffsetDateTime;

/// Shared handle to the key ring.
#[derive(Clone, Debug, Default)]
pub struct KeyRingHandle(Arc<RwLock<Arc<KeyRing>>>);

impl KeyRingHandle {
    /// A handle holding `ring`.
    pub fn new(ring: KeyRing) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(ring))))
    }

    /// The keys in force.
    pub fn current(&self) -> Arc<KeyRing> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the keys.
    pub fn replace(&self, ring: KeyRing) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
    }
}

/// Loads the stored keys. A key that no longer parses is skipped with a warning.
pub fn load(conn: &Connection) -> Result<KeyRing, JournalError> {
    let mut stmt = conn.prepare("SELECT key_id, public_key, valid_until FROM signing_keys")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    let mut ring = KeyRing::new();
    for row in rows {
        let (id, key, until) = row?;
        let Ok(key) = decode_public_key(&key) else {
            tracing::warn!(key_id = id, "stored HQ key does not parse; skipped");
            continue;
        };
        let valid_until = until
            .map(|u| OffsetDateTime::parse(&u, &time::format_description::well_known::Rfc3339))
            .transpose()
            .map_err(JournalError::data)?;
        ring.insert(KeyId(id), PublicKey { key, valid_until });
    }
    Ok(ring)
}

/// Replaces the stored keys with HQ's list (HQ always sends every key).
pub fn store(conn: &Connection, keys: &[PublicKeyInfo]) -> Result<(), JournalError> {
    conn.execute("DELETE FROM signing_keys", [])?;
    for k in keys {
        let until = k
            .valid_until
            .map(|u| u.format(&time::format_description::well_known::Rfc3339))
            .transpose()
            .map_err(JournalError::data)?;
        conn.execute(
            "INSERT INTO signing_keys (key_id, public_key, valid_until) VALUES (?1, ?2, ?3)",
            params![k.key_id.0, k.public_key, until],
        )?;
    }
    Ok(())
}
