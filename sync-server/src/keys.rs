//! Secrets HQ creates: terminal bearer tokens (HQ keeps only their SHA-256) and the
//! Ed25519 keys that sign app QR tokens. Neither is ever logged.

use data_encoding::{BASE32_NOPAD, HEXLOWER};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use std::fmt;

/// Prefix of terminal tokens, so a leaked one is recognisable in a secret scanner.
pub const TERMINAL_TOKEN_PREFIX: &str = "lt_";

/// The operating system's random generator failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no randomness from the operating system: {0}")]
pub struct RandomError(String);

fn random_32() -> Result<[u8; 32], RandomError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
    Ok(bytes)
}

/// 32 random bytes in lower-case base32: session ids and CSRF tokens.
pub fn random_secret() -> Result<String, RandomError> {
    Ok(BASE32_NOPAD.encode(&random_32()?).to_ascii_lowercase())
}

/// A terminal's bearer token in its text form. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct TerminalToken(String);

impl TerminalToken {
    /// A fresh token: `lt_` and 32 random bytes in lower-case base32.
    pub fn generate() -> Result<Self, RandomError> {
        let text = BASE32_NOPAD.encode(&random_32()?).to_ascii_lowercase();
        Ok(Self(format!("{TERMINAL_TOKEN_PREFIX}{text}")))
    }

    /// The text to give the store, once.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// What HQ stores.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for TerminalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TerminalToken(***)")
    }
}

/// SHA-256 of a bearer token, lower-case hex: the only form HQ stores or compares.
/// `Debug` hides it too: a terminal's identity carries it (a push checks it again in
/// its transaction), and no log names a token in any form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(***)")
    }
}

impl TokenHash {
    /// Hashes a presented token.
    pub fn of(token: &str) -> Self {
        Self(HEXLOWER.encode(&Sha256::digest(token.as_bytes())))
    }

    /// From the stored hex.
    pub fn from_hex(hex: String) -> Self {
        Self(hex)
    }

    /// The hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A fresh Ed25519 signing key.
pub fn generate_signing_key() -> Result<SigningKey, RandomError> {
    Ok(SigningKey::from_bytes(&random_32()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed_to_hex() {
        let a = TerminalToken::generate().unwrap();
        let b = TerminalToken::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.reveal().starts_with("lt_"));
        assert_eq!(a.reveal().len(), 3 + 52);
        assert_eq!(a.hash(), TokenHash::of(a.reveal()));
        assert_eq!(a.hash().as_str().len(), 64);
        assert_eq!(format!("{a:?}"), "TerminalToken(***)");
        assert_eq!(format!("{:?}", a.hash()), "TokenHash(***)");
    }

    #[test]
    fn signing_keys_are_fresh() {
        let a = generate_signing_key().unwrap();
        let b = generate_signing_key().unwrap();
        assert_ne!(a.to_bytes(), b.to_bytes());
    }
}
