//! An app QR token is accepted once per terminal within its validity.
//!
//! A screenshot of the app's QR code is as good as the phone, so a token already
//! accepted here is refused as replayed until it expires. The set of used tokens is
//! kept in memory (checked and updated by the one task that admits scans, so the
//! check-and-insert is atomic across scanners) and written behind to the journal's
//! `used_tokens` table, so a restart does not reopen the door. Rows are pruned once
//! the token has expired (plus the tolerated clock skew: a till whose clock is
//! corrected backwards must not see a pruned token as fresh).

use protocol::token::{AppToken, CLOCK_SKEW_SECS};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// In-memory pruning runs at most this often (seconds).
const PRUNE_EVERY_SECS: i64 = 60;

/// A used token: the hash of its claims and when it expires (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedToken {
    /// Hex SHA-256 of the claims (see [`token_hash`]).
    pub hash: String,
    /// Unix seconds from which the token is no longer valid.
    pub expires_at: i64,
}

impl UsedToken {
    /// The record of `token`.
    pub fn of(token: &AppToken) -> Self {
        Self {
            hash: token_hash(token),
            expires_at: token.expires_at,
        }
    }

    /// Tokens that expired at or before this unix time can be forgotten at `now`:
    /// verification refuses them anyway, even on a clock corrected backwards by the
    /// tolerated skew.
    pub fn expired_by(now: i64) -> i64 {
        now.saturating_sub(CLOCK_SKEW_SECS)
    }
}

/// Identifies a token by its signed claims rather than its text, so the same token
/// read with another AIM identifier (or any other spelling of the same claims) is
/// still the same token. Only the hash is stored: the journal holds no usable token.
pub fn token_hash(token: &AppToken) -> String {
    let claims = format!(
        "{}|{}|{}|{}",
        token.key_id, token.issued_at, token.expires_at, token.card
    );
    data_encoding::HEXLOWER.encode(&Sha256::digest(claims.as_bytes()))
}

/// The tokens accepted at this terminal and not yet expired.
#[derive(Debug, Default)]
pub struct UsedTokens {
    expiry_by_hash: HashMap<String, i64>,
    next_prune: i64,
}

impl UsedTokens {
    /// A set holding `tokens` (as loaded from the journal).
    pub fn new(tokens: impl IntoIterator<Item = UsedToken>) -> Self {
        Self {
            expiry_by_hash: tokens.into_iter().map(|t| (t.hash, t.expires_at)).collect(),
            next_prune: 0,
        }
    }

    /// Marks `token` used at `now` (unix seconds). True on its first use; false when
    /// it was already used (a replay).
    pub fn first_use(&mut self, token: &UsedToken, now: i64) -> bool {
        let expired_by = UsedToken::expired_by(now);
        if now >= self.next_prune {
            self.expiry_by_hash
                .retain(|_, expires_at| *expires_at > expired_by);
            self.next_prune = now.saturating_add(PRUNE_EVERY_SECS);
        }
        match self.expiry_by_hash.get(&token.hash) {
            Some(expires_at) if *expires_at > expired_by => false,
            _ => {
                self.expiry_by_hash
                    .insert(token.hash.clone(), token.expires_at);
                true
            }
        }
    }

    /// Number of tokens remembered.
    pub fn len(&self) -> usize {
        self.expiry_by_hash.len()
    }

    /// True when no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.expiry_by_hash.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::CardId;
    use protocol::token::KeyId;

    fn token(card: &str, expires_at: i64) -> AppToken {
        AppToken {
            card: CardId::parse(card).unwrap(),
            issued_at: 1_000,
            expires_at,
            key_id: KeyId(1),
        }
    }

    #[test]
    fn a_token_is_accepted_once_until_it_expires() {
        let mut used = UsedTokens::default();
        let t = UsedToken::of(&token("4006381333931", 2_000));
        assert!(used.first_use(&t, 1_500));
        assert!(!used.first_use(&t, 1_600));
        assert!(!used.first_use(&t, 2_000 + CLOCK_SKEW_SECS - 1));
        // Long expired: forgotten (verification refuses it anyway).
        assert!(used.first_use(&t, 2_000 + CLOCK_SKEW_SECS + 1));
    }

    #[test]
    fn tokens_differ_by_their_claims() {
        let a = UsedToken::of(&token("4006381333931", 2_000));
        let b = UsedToken::of(&token("4006381333931", 2_001));
        let c = UsedToken::of(&token("5901234123457", 2_000));
        assert_ne!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
        assert_eq!(a, UsedToken::of(&token("4006381333931", 2_000)));
        assert_eq!(a.hash.len(), 64);
    }

    #[test]
    fn expired_tokens_are_pruned_from_memory() {
        let mut used = UsedTokens::default();
        for i in 0..10 {
            let t = UsedToken::of(&token("4006381333931", 1_100 + i));
            assert!(used.first_use(&t, 1_050));
        }
        assert_eq!(used.len(), 10);
        let fresh = UsedToken::of(&token("5901234123457", 9_000));
        assert!(used.first_use(&fresh, 5_000));
        assert_eq!(used.len(), 1);
    }
}
