//! The signed app QR token: what the chain's app shows as a QR code instead of a card.
//!
//! HQ signs `(card, issued_at, expires_at, key_id)` with Ed25519; the agent verifies it
//! offline with the public keys it pulled from HQ. The text form is
//! `LT1:` followed by RFC 4648 base32 (no padding) of
//!
//! ```text
//! version u8 = 1 | key_id u32 BE | issued_at i64 BE | expires_at i64 BE |
//! card_len u8 | card ASCII digits | signature [64]
//! ```
//!
//! The signature covers a domain-separation tag and every byte before it. Base32
//! upper-case stays inside the QR alphanumeric character set: a 13-digit card gives
//! 163 characters, a 19-digit one 172, both within the 221 characters of a version-7
//! QR code at error-correction level M.

use crate::ids::CardId;
use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Prefix of every token's text form.
pub const TOKEN_PREFIX: &str = "LT1:";
const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"loyalty-app-token/v1";
/// Tolerated clock difference between the phone's issuer (HQ) and the till, so a token
/// issued "in the future" by a few seconds is not refused.
pub const CLOCK_SKEW_SECS: i64 = 120;
const HEADER_LEN: usize = 1 + 4 + 8 + 8 + 1;
const SIGNATURE_LEN: usize = 64;

/// Identifies one HQ signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub u32);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The claims inside a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppToken {
    /// The loyalty card the token stands for.
    pub card: CardId,
    /// Unix seconds when HQ issued it.
    pub issued_at: i64,
    /// Unix seconds from which it is no longer valid.
    pub expires_at: i64,
    /// Which HQ key signed it.
    pub key_id: KeyId,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not the token text form (bad prefix, encoding, length or fields).
    #[error("malformed app token: {0}")]
    Malformed(&'static str),
    /// Signed with a key this terminal does not know.
    #[error("app token signed with unknown key {0}")]
    UnknownKey(KeyId),
    /// Signed with a key whose grace period after rotation has ended.
    #[error("app token signed with retired key {0}")]
    RetiredKey(KeyId),
    /// The signature does not match: forged or altered.
    #[error("app token has a bad signature")]
    BadSignature,
    /// Past its expiry.
    #[error("app token expired")]
    Expired,
    /// Issued in the future (beyond the tolerated clock skew).
    #[error("app token not yet valid")]
    NotYetValid,
}

/// A public key the agent holds, with the end of its validity if HQ retired it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The Ed25519 key.
    pub key: VerifyingKey,
    /// Tokens signed by this key are refused from this instant on (rotation grace end).
    pub valid_until: Option<OffsetDateTime>,
}

/// The set of HQ public keys a verifier trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: BTreeMap<KeyId, PublicKey>,
}

impl KeyRing {
    /// An empty ring: every token is refused with `UnknownKey`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a key.
    pub fn insert(&mut self, id: KeyId, key: PublicKey) {
        self.keys.insert(id, key);
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Encodes a public key for the wire and config files (base32, 52 characters).
pub fn encode_public_key(key: &VerifyingKey) -> String {
    BASE32_NOPAD.encode(key.as_bytes())
}

/// Parses a public key written by [`encode_public_key`].
pub fn decode_public_key(s: &str) -> Result<VerifyingKey, TokenError> {
    let bytes = BASE32_NOPAD
        .decode(s.as_bytes())
        .map_err(|_| TokenError::Malformed("public key is not base32"))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| TokenError::Malformed("public key is not 32 bytes"))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| TokenError::Malformed("public key is invalid"))
}

fn signed_message(header_and_card: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(DOMAIN.len() + header_and_card.len());
    msg.extend_from_slice(DOMAIN);
    msg.extend_from_slice(header_and_card);
    msg
}

impl AppToken {
    /// Signs the token and returns its text form.
    pub fn sign(&self, key: &SigningKey) -> String {
        let card = self.card.as_str().as_bytes();
        let mut bytes = Vec::with_capacity(HEADER_LEN + card.len() + SIGNATURE_LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.key_id.0.to_be_bytes());
        bytes.extend_from_slice(&self.issued_at.to_be_bytes());
        bytes.extend_from_slice(&self.expires_at.to_be_bytes());
        // A CardId is at most 19 digits, so the length fits a byte.
        bytes.push(card.len() as u8);
        bytes.extend_from_slice(card);
        let signature = key.sign(&signed_message(&bytes));
        bytes.extend_from_slice(&signature.to_bytes());
        format!("{TOKEN_PREFIX}{}", BASE32_NOPAD.encode(&bytes))
    }

    /// Parses and verifies a token's text form against `keys` at time `now`
    /// (unix seconds).
    pub fn verify(text: &str, keys: &KeyRing, now: i64) -> Result<Self, TokenError> {
        let bytes = decode_text(text)?;
        let (token, signed, signature) = split(&bytes)?;
        let public = keys
            .keys
            .get(&token.key_id)
            .ok_or(TokenError::UnknownKey(token.key_id))?;
        if let Some(until) = public.valid_until
            && now >= until.unix_timestamp()
        {
            return Err(TokenError::RetiredKey(token.key_id));
        }
        public
            .key
            .verify_strict(&signed_message(signed), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        if now >= token.expires_at {
            return Err(TokenError::Expired);
        }
        if token.issued_at > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(TokenError::NotYetValid);
        }
        Ok(token)
    }

    /// The token's id: the first 16 bytes of SHA-256 over its claims, in hex. Two
    /// tokens with the same id are the same token (Ed25519 signing is deterministic),
    /// so HQ records uses by id without ever storing the token, which would let anyone
    /// reading the database replay it.
    pub fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"loyalty-app-token-id/v1");
        h.update(self.key_id.0.to_be_bytes());
        h.update(self.issued_at.to_be_bytes());
        h.update(self.expires_at.to_be_bytes());
        h.update(self.card.as_str().as_bytes());
        data_encoding::HEXLOWER.encode(&h.finalize()[..16])
    }

    /// True when `text` looks like a token (its prefix), whether valid or not.
    pub fn looks_like_token(text: &str) -> bool {
        text.starts_with(TOKEN_PREFIX)
    }
}

fn decode_text(text: &str) -> Result<Vec<u8>, TokenError> {
    let body = text
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(TokenError::Malformed("missing LT1: prefix"))?;
    if body.len() > 256 {
        return Err(TokenError::Malformed("too long"));
    }
    BASE32_NOPAD
        .decode(body.as_bytes())
        .map_err(|_| TokenError::Malformed("not base32"))
}

/// Splits decoded bytes into the claims, the signed part and the signature.
fn split(bytes: &[u8]) -> Result<(AppToken, &[u8], Signature), TokenError> {
    if bytes.len() < HEADER_LEN + SIGNATURE_LEN {
        return Err(TokenError::Malformed("too short"));
    }
    if bytes[0] != VERSION {
        return Err(TokenError::Malformed("unknown token version"));
    }
    let be4 = |at: usize| -> [u8; 4] { [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]] };
    let be8 = |at: usize| -> [u8; 8] {
        let mut a = [0u8; 8];
        a.copy_from_slice(&bytes[at..at + 8]);
        a
    };
    let key_id = KeyId(u32::from_be_bytes(be4(1)));
    let issued_at = i64::from_be_bytes(be8(5));
    let expires_at = i64::from_be_bytes(be8(13));
    let card_len = usize::from(bytes[21]);
    if bytes.len() != HEADER_LEN + card_len + SIGNATURE_LEN {
        return Err(TokenError::Malformed("length does not match card length"));
    }
    let card_bytes = &bytes[HEADER_LEN..HEADER_LEN + card_len];
    let card = std::str::from_utf8(card_bytes)
        .ok()
        .and_then(|s| CardId::parse(s).ok())
        .ok_or(TokenError::Malformed("card is not 6 to 19 digits"))?;
    if expires_at <= issued_at {
        return Err(TokenError::Malformed("expiry before issue time"));
    }
    let signed = &bytes[..HEADER_LEN + card_len];
    let mut sig = [0u8; SIGNATURE_LEN];
    sig.copy_from_slice(&bytes[HEADER_LEN + card_len..]);
    Ok((
        AppToken {
            card,
            issued_at,
            expires_at,
            key_id,
        },
        signed,
        Signature::from_bytes(&sig),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_id_names_the_claims_and_nothing_else() {
        let card = CardId::parse("4006381333931").unwrap();
        let t = AppToken {
            card: card.clone(),
            issued_at: 1_000,
            expires_at: 1_060,
            key_id: KeyId(1),
        };
        assert_eq!(t.id().len(), 32);
        assert_eq!(t.id(), t.clone().id());
        let later = AppToken {
            issued_at: 1_001,
            ..t.clone()
        };
        assert_ne!(t.id(), later.id());
        assert!(!t.id().contains(card.as_str()));
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn ring_with(id: u32, k: &SigningKey, valid_until: Option<OffsetDateTime>) -> KeyRing {
        let mut ring = KeyRing::new();
        ring.insert(
            KeyId(id),
            PublicKey {
                key: k.verifying_key(),
                valid_until,
            },
        );
        ring
    }

    fn token(card: &str, issued_at: i64, expires_at: i64, key_id: u32) -> AppToken {
        AppToken {
            card: CardId::parse(card).unwrap(),
            issued_at,
            expires_at,
            key_id: KeyId(key_id),
        }
    }

    #[test]
    fn a_signed_token_verifies_and_returns_its_card() {
        let k = key(7);
        let text = token("4006381333931", 1_000, 2_000, 3).sign(&k);
        assert!(text.starts_with(TOKEN_PREFIX));
        let got = AppToken::verify(&text, &ring_with(3, &k, None), 1_500).unwrap();
        assert_eq!(got.card.as_str(), "4006381333931");
        assert_eq!(got.key_id, KeyId(3));
    }

    #[test]
    fn token_text_fits_a_qr_code_in_alphanumeric_mode() {
        let text = token("1234567890123456789", 1_000, 2_000, 1).sign(&key(1));
        assert_eq!(text.len(), 172);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b':')
        );
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused_as_forged() {
        let text = token("4006381333931", 1_000, 2_000, 3).sign(&key(8));
        let err = AppToken::verify(&text, &ring_with(3, &key(7), None), 1_500).unwrap_err();
        assert_eq!(err, TokenError::BadSignature);
    }

    #[test]
    fn an_altered_card_number_breaks_the_signature() {
        let k = key(7);
        let text = token("4006381333931", 1_000, 2_000, 3).sign(&k);
        let mut bytes = decode_text(&text).unwrap();
        bytes[HEADER_LEN] = b'9';
        let forged = format!("{TOKEN_PREFIX}{}", BASE32_NOPAD.encode(&bytes));
        let err = AppToken::verify(&forged, &ring_with(3, &k, None), 1_500).unwrap_err();
        assert_eq!(err, TokenError::BadSignature);
    }

    #[test]
    fn expired_not_yet_valid_and_unknown_key_tokens_are_refused_with_their_reason() {
        let k = key(7);
        let ring = ring_with(3, &k, None);
        let text = token("4006381333931", 1_000, 2_000, 3).sign(&k);
        assert_eq!(
            AppToken::verify(&text, &ring, 2_000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            AppToken::verify(&text, &ring, 1_000 - CLOCK_SKEW_SECS - 1),
            Err(TokenError::NotYetValid)
        );
        assert!(AppToken::verify(&text, &ring, 1_000 - CLOCK_SKEW_SECS).is_ok());
        let other = token("4006381333931", 1_000, 2_000, 4).sign(&k);
        assert_eq!(
            AppToken::verify(&other, &ring, 1_500),
            Err(TokenError::UnknownKey(KeyId(4)))
        );
    }

    #[test]
    fn a_retired_key_is_refused_after_its_grace_period() {
        let k = key(7);
        let until = OffsetDateTime::from_unix_timestamp(1_600).unwrap();
        let ring = ring_with(3, &k, Some(until));
        let text = token("4006381333931", 1_000, 2_000, 3).sign(&k);
        assert!(AppToken::verify(&text, &ring, 1_599).is_ok());
        assert_eq!(
            AppToken::verify(&text, &ring, 1_600),
            Err(TokenError::RetiredKey(KeyId(3)))
        );
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        let ring = ring_with(3, &key(7), None);
        for text in [
            "",
            "LT1:",
            "LT1:!!!!",
            "LT2:AAAA",
            "LT1:AAAAAAAA",
            "4006381333931",
        ] {
            assert!(matches!(
                AppToken::verify(text, &ring, 0),
                Err(TokenError::Malformed(_))
            ));
        }
    }

    #[test]
    fn public_keys_round_trip_through_text() {
        let k = key(9).verifying_key();
        assert_eq!(decode_public_key(&encode_public_key(&k)).unwrap(), k);
        assert!(decode_public_key("AAAA").is_err());
    }
}
