//! The HQ public keys that verify app QR tokens at this till, kept in the journal
//! (so they survive restarts and work offline) and shared with the scanner threads.

use protocol::token::{KeyRing, PublicKey, decode_public_key};
use protocol::wire::PublicKeyInfo;
use std::sync::{Arc, RwLock};

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

/// The key ring of HQ's keys as stored. A key that no longer parses is skipped with a
/// warning: the others still verify their tokens.
pub fn ring(keys: &[PublicKeyInfo]) -> KeyRing {
    let mut ring = KeyRing::new();
    for info in keys {
        let Ok(key) = decode_public_key(&info.public_key) else {
            tracing::warn!(
                key_id = info.key_id.0,
                "stored HQ key does not parse; skipped"
            );
            continue;
        };
        ring.insert(
            info.key_id,
            PublicKey {
                key,
                valid_until: info.valid_until,
            },
        );
    }
    ring
}
