//! App-token signing keys: rotation with a grace period, the public list agents pull,
//! and the current secret `card token` signs with.

use super::done;
use crate::store::Result;
use crate::store::backend::{Access, Attempt, Op};
use crate::store::rows::key_id;
use crate::store::statements::{NewKey, Statements};
use crate::store::{KeyInfo, StoreError};
use data_encoding::HEXLOWER;
use ed25519_dalek::SigningKey;
use protocol::token::{KeyId, encode_public_key};
use time::{Duration, OffsetDateTime};

/// `keys rotate`: see [`crate::store::Store::rotate_keys`].
pub struct Rotate {
    /// The new key.
    pub key: SigningKey,
    /// How long the previous current key stays valid.
    pub grace: Duration,
    /// The server's time.
    pub now: OffsetDateTime,
}

impl Op for Rotate {
    type Out = KeyInfo;
    const ACCESS: Access = Access::Write;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<KeyInfo>> {
        // One rotation at a time: two would both pick "highest + 1".
        c.lock_keys().await?;
        c.end_current_key(self.now.checked_add(self.grace).unwrap_or(self.now))
            .await?;
        let next = c.next_key_id().await?;
        let key_id = key_id(next)?;
        let public_key = encode_public_key(&self.key.verifying_key());
        c.insert_key(&NewKey {
            id: next,
            secret_hex: &HEXLOWER.encode(&self.key.to_bytes()),
            public_key: &public_key,
            created_at: self.now,
        })
        .await?;
        done(Ok(KeyInfo {
            key_id,
            public_key,
            created_at: self.now,
            valid_until: None,
        }))
    }
}

/// Every key's public half.
pub struct List;

impl Op for List {
    type Out = Vec<KeyInfo>;
    const ACCESS: Access = Access::Read;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Vec<KeyInfo>>> {
        done(c.list_keys().await)
    }
}

/// The current signing key.
pub struct Current;

impl Op for Current {
    type Out = Option<(KeyId, SigningKey)>;
    const ACCESS: Access = Access::Read;

    async fn run<C: Statements>(
        &mut self,
        c: &mut C,
    ) -> Result<Attempt<Option<(KeyId, SigningKey)>>> {
        let Some((id, hex)) = c.current_key().await? else {
            return done(Ok(None));
        };
        let corrupt = || StoreError::corrupt(format!("signing key {id}"));
        let bytes: [u8; 32] = HEXLOWER
            .decode(hex.as_bytes())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(corrupt)?;
        let id = u32::try_from(id).map_err(|_| corrupt())?;
        done(Ok(Some((KeyId(id), SigningKey::from_bytes(&bytes)))))
    }
}
