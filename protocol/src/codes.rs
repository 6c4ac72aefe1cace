//! Scan codes: AIM symbology identifiers and the card-id formats a scanner delivers.
//!
//! A scanner frame is an optional AIM prefix (`]` + code letter + modifier, e.g. `]E0`)
//! and a payload. [`decode_frame`] turns a frame into a [`CardScan`] or a
//! [`CodeError`] that says why it is not a card: every input, however broken, ends in
//! one of the two.

use crate::ids::CardId;
use crate::token::{AppToken, KeyRing, TokenError};
use serde::{Deserialize, Serialize};

/// The barcode family a code came in, as the till API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Symbology {
    /// EAN-13 (`]E0`).
    Ean13,
    /// Code 128 (`]C0`, `]C1`, `]C2`, `]C4`).
    Code128,
    /// QR code (`]Q0`..`]Q6`).
    Qr,
    /// Magnetic-stripe track 2 (no AIM identifier; recognised by its sentinels).
    Track2,
    /// Any other AIM identifier; the payload decides whether it is a card.
    Other,
}

impl Symbology {
    /// The lowercase name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ean13 => "ean13",
            Self::Code128 => "code128",
            Self::Qr => "qr",
            Self::Track2 => "track2",
            Self::Other => "other",
        }
    }
}

/// An AIM symbology identifier: `]`, a code character and a modifier character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AimId {
    /// The code character (`E`, `C`, `Q`, …).
    pub code: u8,
    /// The modifier character (`0`..`9`, `A`..`Z`, …).
    pub modifier: u8,
}

impl AimId {
    /// The symbology this identifier names.
    pub fn symbology(self) -> Symbology {
        match (self.code, self.modifier) {
            (b'E', b'0') => Symbology::Ean13,
            (b'C', b'0' | b'1' | b'2' | b'4') => Symbology::Code128,
            (b'Q', b'0'..=b'6') => Symbology::Qr,
            _ => Symbology::Other,
        }
    }
}

/// Why a frame is not a card scan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Nothing after the prefix.
    #[error("empty payload")]
    Empty,
    /// The frame should start with an AIM identifier but does not.
    #[error("missing or malformed AIM symbology identifier")]
    BadAimPrefix,
    /// Payload bytes are not printable ASCII.
    #[error("payload is not printable ASCII")]
    NotPrintable,
    /// EAN-13 with a wrong check digit.
    #[error("bad EAN-13 check digit")]
    BadCheckDigit,
    /// EAN-13 that is not 13 digits.
    #[error("EAN-13 must be 13 digits")]
    BadEan13,
    /// Track 2 without `;`, `=` or `?` in place, or a PAN that is not a card id.
    #[error("malformed track 2 data")]
    BadTrack2,
    /// A numeric code whose length is not a card id (6 to 19 digits).
    #[error("numeric code is not 6 to 19 digits")]
    BadLength,
    /// Not any card format this agent knows.
    #[error("unknown code format")]
    UnknownFormat,
    /// An app token that failed verification.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// What a scan decoded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardScan {
    /// The symbology the card came in.
    pub symbology: Symbology,
    /// The card.
    pub card: CardId,
    /// Set when the card came from a verified app token: its claims, for replay checks.
    pub token: Option<AppToken>,
}

/// Splits an AIM identifier off the front of a frame.
pub fn split_aim(frame: &[u8]) -> Result<(AimId, &[u8]), CodeError> {
    match frame {
        [b']', code, modifier, rest @ ..]
            if code.is_ascii_alphabetic() && modifier.is_ascii_alphanumeric() =>
        {
            Ok((
                AimId {
                    code: *code,
                    modifier: *modifier,
                },
                rest,
            ))
        }
        _ => Err(CodeError::BadAimPrefix),
    }
}

/// Decodes one scanner frame (without its terminator) into a card.
///
/// With `aim_prefix` the frame must start with an AIM identifier, which fixes the
/// symbology, except magnetic-stripe track 2 (`;…=…?`): card readers send no AIM
/// identifier, and track 2's start sentinel `;` is never the `]` of one, so such a
/// frame is track 2 either way. Without `aim_prefix` the symbology is inferred from
/// the payload: `LT1:` is an app token, `;…=…?` track 2, 13 digits EAN-13 (check digit
/// verified), other digit strings Code 128. `keys` and `now` (unix seconds) verify app
/// tokens.
pub fn decode_frame(
    frame: &[u8],
    aim_prefix: bool,
    keys: &KeyRing,
    now: i64,
) -> Result<CardScan, CodeError> {
    let (declared, payload) = if frame.starts_with(b";") {
        (Some(Symbology::Track2), frame)
    } else if aim_prefix {
        let (aim, rest) = split_aim(frame)?;
        (Some(aim.symbology()), rest)
    } else {
        (None, frame)
    };
    if payload.is_empty() {
        return Err(CodeError::Empty);
    }
    if !payload.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(CodeError::NotPrintable);
    }
    // Checked printable ASCII just above, so this is valid UTF-8.
    let text = std::str::from_utf8(payload).map_err(|_| CodeError::NotPrintable)?;
    decode_payload(declared, text, keys, now)
}

fn decode_payload(
    declared: Option<Symbology>,
    text: &str,
    keys: &KeyRing,
    now: i64,
) -> Result<CardScan, CodeError> {
    let plain = |symbology, card| {
        Ok(CardScan {
            symbology,
            card,
            token: None,
        })
    };
    let all_digits = text.bytes().all(|b| b.is_ascii_digit());
    match declared {
        Some(Symbology::Ean13) => plain(Symbology::Ean13, parse_ean13(text)?),
        Some(Symbology::Code128) if all_digits => plain(Symbology::Code128, parse_numeric(text)?),
        Some(Symbology::Code128) => Err(CodeError::UnknownFormat),
        Some(Symbology::Qr) if AppToken::looks_like_token(text) => verified_token(text, keys, now),
        Some(Symbology::Qr) if all_digits => plain(Symbology::Qr, parse_numeric(text)?),
        Some(Symbology::Qr) => Err(CodeError::UnknownFormat),
        Some(Symbology::Track2) => plain(Symbology::Track2, parse_track2(text)?),
        Some(Symbology::Other) | None => infer(text, all_digits, keys, now),
    }
}

fn infer(text: &str, all_digits: bool, keys: &KeyRing, now: i64) -> Result<CardScan, CodeError> {
    let plain = |symbology, card| {
        Ok(CardScan {
            symbology,
            card,
            token: None,
        })
    };
    if AppToken::looks_like_token(text) {
        verified_token(text, keys, now)
    } else if text.starts_with(';') {
        plain(Symbology::Track2, parse_track2(text)?)
    } else if all_digits && text.len() == 13 {
        plain(Symbology::Ean13, parse_ean13(text)?)
    } else if all_digits {
        plain(Symbology::Code128, parse_numeric(text)?)
    } else {
        Err(CodeError::UnknownFormat)
    }
}

fn verified_token(text: &str, keys: &KeyRing, now: i64) -> Result<CardScan, CodeError> {
    let token = AppToken::verify(text, keys, now)?;
    Ok(CardScan {
        symbology: Symbology::Qr,
        card: token.card.clone(),
        token: Some(token),
    })
}

/// The EAN-13 check digit for the first twelve digits (weights 1, 3, 1, 3, …).
pub fn ean13_check_digit(first12: &[u8]) -> u8 {
    let sum: u32 = first12
        .iter()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    // (10 - sum mod 10) mod 10 is a single digit.
    ((10 - sum % 10) % 10) as u8
}

/// Parses a 13-digit EAN-13 and verifies its check digit.
pub fn parse_ean13(text: &str) -> Result<CardId, CodeError> {
    let b = text.as_bytes();
    if b.len() != 13 || !b.iter().all(u8::is_ascii_digit) {
        return Err(CodeError::BadEan13);
    }
    if ean13_check_digit(&b[..12]) != b[12] - b'0' {
        return Err(CodeError::BadCheckDigit);
    }
    CardId::parse(text).map_err(|_| CodeError::BadEan13)
}

/// Parses a numeric code (Code 128 numeric, digits-only QR) as a card id.
pub fn parse_numeric(text: &str) -> Result<CardId, CodeError> {
    CardId::parse(text).map_err(|_| CodeError::BadLength)
}

/// Parses magnetic-stripe track 2: `;PAN=rest?` with an optional LRC byte after `?`.
pub fn parse_track2(text: &str) -> Result<CardId, CodeError> {
    let body = text.strip_prefix(';').ok_or(CodeError::BadTrack2)?;
    let end = body.find('?').ok_or(CodeError::BadTrack2)?;
    // At most one LRC character may follow the end sentinel.
    if body.len() - end > 2 {
        return Err(CodeError::BadTrack2);
    }
    let data = &body[..end];
    let (pan, rest) = data.split_once('=').ok_or(CodeError::BadTrack2)?;
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CodeError::BadTrack2);
    }
    CardId::parse(pan).map_err(|_| CodeError::BadTrack2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{KeyId, PublicKey};
    use ed25519_dalek::SigningKey;

    fn no_keys() -> KeyRing {
        KeyRing::new()
    }

    fn decode(frame: &str, aim: bool) -> Result<CardScan, CodeError> {
        decode_frame(frame.as_bytes(), aim, &no_keys(), 0)
    }

    #[test]
    fn ean13_with_aim_prefix_decodes_with_its_check_digit() {
        let scan = decode("]E04006381333931", true).unwrap();
        assert_eq!(scan.symbology, Symbology::Ean13);
        assert_eq!(scan.card.as_str(), "4006381333931");
    }

    #[test]
    fn ean13_with_a_wrong_check_digit_is_refused() {
        assert_eq!(
            decode("]E04006381333932", true),
            Err(CodeError::BadCheckDigit)
        );
        assert_eq!(
            decode("4006381333932", false),
            Err(CodeError::BadCheckDigit)
        );
        assert_eq!(decode("]E0400638133393", true), Err(CodeError::BadEan13));
    }

    #[test]
    fn code128_numeric_is_a_card_and_text_is_not() {
        let scan = decode("]C012345678", true).unwrap();
        assert_eq!(scan.symbology, Symbology::Code128);
        assert_eq!(scan.card.as_str(), "12345678");
        assert_eq!(decode("]C1ABC123", true), Err(CodeError::UnknownFormat));
        assert_eq!(decode("]C01234", true), Err(CodeError::BadLength));
    }

    #[test]
    fn track2_gives_the_pan() {
        let scan = decode(";6037990000001234=2512101?", false).unwrap();
        assert_eq!(scan.symbology, Symbology::Track2);
        assert_eq!(scan.card.as_str(), "6037990000001234");
        assert!(decode(";6037990000001234=2512101?7", false).is_ok());
        for bad in [
            ";6037990000001234",
            ";=2512?",
            ";60379900=25x?",
            ";60379900=25?12",
        ] {
            assert_eq!(decode(bad, false), Err(CodeError::BadTrack2), "{bad}");
        }
    }

    #[test]
    fn symbology_is_inferred_without_aim_prefix() {
        assert_eq!(
            decode("4006381333931", false).unwrap().symbology,
            Symbology::Ean13
        );
        assert_eq!(
            decode("12345678", false).unwrap().symbology,
            Symbology::Code128
        );
        assert_eq!(decode("hello", false), Err(CodeError::UnknownFormat));
    }

    #[test]
    fn unknown_aim_identifiers_pass_through_as_other_and_the_payload_decides() {
        let (aim, rest) = split_aim(b"]A0123456").unwrap();
        assert_eq!(aim.symbology(), Symbology::Other);
        assert_eq!(rest, b"123456");
        assert_eq!(
            decode("]A0123456", true).unwrap().symbology,
            Symbology::Code128
        );
    }

    #[test]
    fn aim_prefix_is_required_when_configured() {
        assert_eq!(decode("4006381333931", true), Err(CodeError::BadAimPrefix));
        assert_eq!(decode("]E", true), Err(CodeError::BadAimPrefix));
        assert_eq!(decode("]E0", true), Err(CodeError::Empty));
    }

    #[test]
    fn track2_needs_no_aim_identifier_even_when_codes_carry_one() {
        let scan = decode(";4006381333931=2512?", true).unwrap();
        assert_eq!(scan.symbology, Symbology::Track2);
        assert_eq!(scan.card.as_str(), "4006381333931");
        assert_eq!(decode(";4006381333931?", true), Err(CodeError::BadTrack2));
    }

    #[test]
    fn control_and_non_ascii_bytes_are_refused() {
        assert_eq!(
            decode_frame(b"4006\x07381333931", false, &no_keys(), 0),
            Err(CodeError::NotPrintable)
        );
        assert_eq!(
            decode_frame("40063813339é".as_bytes(), false, &no_keys(), 0),
            Err(CodeError::NotPrintable)
        );
    }

    #[test]
    fn qr_app_token_is_verified_with_the_key_ring() {
        let signing = SigningKey::from_bytes(&[5; 32]);
        let mut ring = KeyRing::new();
        ring.insert(
            KeyId(1),
            PublicKey {
                key: signing.verifying_key(),
                valid_until: None,
            },
        );
        let token = AppToken {
            card: CardId::parse("4006381333931").unwrap(),
            issued_at: 100,
            expires_at: 400,
            key_id: KeyId(1),
        };
        let text = format!("]Q1{}", token.sign(&signing));
        let scan = decode_frame(text.as_bytes(), true, &ring, 200).unwrap();
        assert_eq!(scan.symbology, Symbology::Qr);
        assert_eq!(scan.token, Some(token));
        assert_eq!(
            decode_frame(text.as_bytes(), true, &ring, 500),
            Err(CodeError::Token(TokenError::Expired))
        );
    }

    #[test]
    fn ean13_check_digit_matches_known_codes() {
        assert_eq!(ean13_check_digit(b"400638133393"), 1);
        assert_eq!(ean13_check_digit(b"590123412345"), 7);
    }
}
