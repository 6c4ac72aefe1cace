//! Identifiers parsed once at the edge: card ids, store and terminal ids, receipt and
//! return ids, journal sequence numbers.
//!
//! Each is a newtype whose constructor checks the format, and whose `Deserialize`
//! goes through that constructor, so a value of the type is always valid.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A card id must be 6 to 19 ASCII digits.
    #[error("card id must be 6 to 19 digits")]
    BadCardId,
    /// Store, terminal, receipt and return ids: 1 to 64 characters of `A-Z a-z 0-9 . _ - : /`.
    #[error("{kind} must be 1 to 64 characters of letters, digits and . _ - : /")]
    BadName {
        /// Which kind of id.
        kind: &'static str,
    },
}

/// A loyalty card number: 6 to 19 ASCII digits (EAN-13, Code 128 numeric, a track-2
/// PAN, or the card inside an app token).
///
/// Its `Display` prints the full number, for the till and HQ. Logs must use
/// [`CardId::masked`] instead.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct CardId(String);

impl CardId {
    /// Parses a card number.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if (6..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::BadCardId)
        }
    }

    /// The full number.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with all but the last four digits hidden, for logs: `****1234`.
    pub fn masked(&self) -> MaskedCard<'_> {
        MaskedCard(&self.0)
    }
}

impl fmt::Display for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CardId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for CardId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A card number shown as `****` and its last four digits.
#[derive(Debug, Clone, Copy)]
pub struct MaskedCard<'a>(&'a str);

impl fmt::Display for MaskedCard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        mask_digits(self.0, f)
    }
}

/// Writes `s` with everything but its last four characters replaced by one `****`.
/// Used for card ids and for raw scanner payloads that may hold a card number.
pub fn mask_digits(s: &str, f: &mut dyn fmt::Write) -> fmt::Result {
    let chars: Vec<char> = s.chars().collect();
    let keep = chars.len().min(4);
    if chars.len() > keep {
        f.write_str("****")?;
    }
    for c in &chars[chars.len() - keep..] {
        f.write_char(*c)?;
    }
    Ok(())
}

/// `s` masked as [`mask_digits`] does, as a `String`.
pub fn masked(s: &str) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = mask_digits(s, &mut out);
    out
}

/// `text` with every run of six or more ASCII digits (anything that may be a card
/// number) masked as [`mask_digits`] does: for text from outside (an HTTP client's
/// error with its URL, a server's answer) before it reaches a log, an error body or
/// the health output.
pub fn redact_card_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 6 {
            out.push_str(&masked(digits));
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// Text from outside (a parser's or a database driver's message, an HTTP client's
/// error with its URL, a peer's answer) with every card number masked by
/// [`redact_card_numbers`]. The only way to make one is [`Scrubbed::new`], so an
/// error that carries outside text as a `Scrubbed` cannot put a card number in an
/// error body or a log line. Both servers' errors and the agent's texts about HQ use
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubbed(String);

impl Scrubbed {
    /// Masks every card number in `text`.
    pub fn new(text: impl fmt::Display) -> Self {
        Self(redact_card_numbers(&text.to_string()))
    }

    /// The masked text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Scrubbed {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for Scrubbed {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl fmt::Display for Scrubbed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'))
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses the id.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                if valid_name(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError::BadName { kind: $kind })
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

name_id!(
    /// A store, as HQ knows it (`store-042`).
    StoreId,
    "store id"
);
name_id!(
    /// A till within a store (`till-3`).
    TerminalId,
    "terminal id"
);
name_id!(
    /// The till's receipt number; the idempotency key of a sale.
    ReceiptId,
    "receipt id"
);
name_id!(
    /// The till's return number; the idempotency key of a return.
    ReturnId,
    "return id"
);

/// A terminal's journal sequence number: 1, 2, 3, … with no gaps.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The next number.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_ids_are_six_to_nineteen_digits() {
        assert!(CardId::parse("123456").is_ok());
        assert!(CardId::parse("1234567890123456789").is_ok());
        assert_eq!(CardId::parse("12345"), Err(IdError::BadCardId));
        assert_eq!(
            CardId::parse("12345678901234567890"),
            Err(IdError::BadCardId)
        );
        assert_eq!(CardId::parse("12345a7"), Err(IdError::BadCardId));
        assert_eq!(CardId::parse("１２３４５６"), Err(IdError::BadCardId));
    }

    #[test]
    fn card_numbers_in_free_text_are_masked_and_short_numbers_kept() {
        assert_eq!(
            redact_card_numbers(
                "error sending request for url (http://127.0.0.1:9/v1/cards/4006381333931): port 9"
            ),
            "error sending request for url (http://127.0.0.1:9/v1/cards/****3931): port 9"
        );
        assert_eq!(
            redact_card_numbers("seq 12345 at 2026-11-24"),
            "seq 12345 at 2026-11-24"
        );
        assert_eq!(redact_card_numbers("123456"), "****3456");
    }

    #[test]
    fn scrubbed_text_is_masked_when_it_is_made() {
        let serde = "invalid type: integer `4006381333931`, expected a string at line 1";
        assert_eq!(
            Scrubbed::new(serde).as_str(),
            "invalid type: integer `****3931`, expected a string at line 1"
        );
        assert_eq!(
            Scrubbed::from(String::from("x 40063813339312")).to_string(),
            "x ****9312"
        );
    }

    #[test]
    fn masked_card_shows_only_the_last_four_digits() {
        let card = CardId::parse("4006381333931").unwrap();
        assert_eq!(card.masked().to_string(), "****3931");
        assert_eq!(masked("12"), "12");
    }

    #[test]
    fn card_id_deserialization_validates() {
        assert!(serde_json::from_str::<CardId>("\"4006381333931\"").is_ok());
        assert!(serde_json::from_str::<CardId>("\"40063x\"").is_err());
    }

    #[test]
    fn names_refuse_spaces_empty_and_overlong_values() {
        assert!(ReceiptId::parse("R-2026/000123").is_ok());
        assert!(ReceiptId::parse("").is_err());
        assert!(ReceiptId::parse("a b").is_err());
        assert!(StoreId::parse(&"x".repeat(65)).is_err());
    }
}
