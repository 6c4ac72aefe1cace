//! What a valid card number of the program is (`[card_numbers]` of the rules), so
//! that a number typed by hand with a typo is refused at the till instead of
//! becoming a new, empty card.
//!
//! Scanned codes keep their own checks (`crate::codes`: the EAN-13 check digit of
//! the symbology, token signatures); these rules are the program's, checked on every
//! number the till sends.

use crate::codes::ean13_check_digit;
use crate::ids::CardId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The check the digits of a card number must pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CardCheck {
    /// Any 6 to 19 digits (no check digit).
    #[default]
    Digits,
    /// 13 digits whose last is the EAN-13 check digit.
    Ean13,
    /// Digits whose last is the Luhn (mod 10) check digit, as on payment cards.
    Luhn,
}

/// A range of prefixes: `"2990"` (that prefix) or `"2990-2999"` (every prefix from
/// the first to the last, both of the same length, inclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
pub struct PrefixRange {
    first: String,
    last: String,
}

impl PrefixRange {
    /// Parses `"2990"` or `"2990-2999"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (first, last) = text.split_once('-').unwrap_or((text, text));
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(first) || !digits(last) {
            return Err(format!(
                "{text:?} is not a prefix range (digits, or two prefixes of the same length joined by '-')"
            ));
        }
        if first.len() != last.len() {
            return Err(format!("{text:?}: both ends must have the same length"));
        }
        // Same length, all digits: the text order is the numeric order.
        if first > last {
            return Err(format!("{text:?}: the first prefix is above the last"));
        }
        Ok(Self {
            first: first.to_owned(),
            last: last.to_owned(),
        })
    }

    /// True when `number` starts with a prefix of the range.
    pub fn contains(&self, number: &str) -> bool {
        number
            .get(..self.first.len())
            .is_some_and(|head| self.first.as_str() <= head && head <= self.last.as_str())
    }
}

impl TryFrom<String> for PrefixRange {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<PrefixRange> for String {
    fn from(range: PrefixRange) -> Self {
        range.to_string()
    }
}

impl fmt::Display for PrefixRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            f.write_str(&self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// `[card_numbers]`: the check, and the prefix ranges the program's cards use (none:
/// any prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CardNumberRules {
    /// The check the digits must pass.
    pub check: CardCheck,
    /// The number must start with a prefix of one of these ranges.
    pub prefixes: Vec<PrefixRange>,
}

/// Why a card number is not one of the program's. The texts never repeat the number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardNumberError {
    /// The program's cards are EAN-13: 13 digits.
    #[error("the program's card numbers have 13 digits (EAN-13), this one has {0}")]
    Ean13Length(usize),
    /// The last digit is not the EAN-13 check digit.
    #[error("the EAN-13 check digit does not match: a digit was mistyped")]
    Ean13CheckDigit,
    /// The last digit is not the Luhn check digit.
    #[error("the Luhn check digit does not match: a digit was mistyped")]
    LuhnCheckDigit,
    /// No prefix range of the program holds the number.
    #[error("the number does not start with a prefix of the program's cards ({0})")]
    Prefix(String),
}

impl CardNumberRules {
    /// Checks `card` against the rules.
    pub fn check(&self, card: &CardId) -> Result<(), CardNumberError> {
        let number = card.as_str();
        match self.check {
            CardCheck::Digits => {}
            CardCheck::Ean13 => {
                if number.len() != 13 {
                    return Err(CardNumberError::Ean13Length(number.len()));
                }
                let digits = number.as_bytes();
                if ean13_check_digit(&digits[..12]) != digits[12] - b'0' {
                    return Err(CardNumberError::Ean13CheckDigit);
                }
            }
            CardCheck::Luhn => {
                if !luhn_valid(number) {
                    return Err(CardNumberError::LuhnCheckDigit);
                }
            }
        }
        if !self.prefixes.is_empty() && !self.prefixes.iter().any(|p| p.contains(number)) {
            let ranges: Vec<String> = self.prefixes.iter().map(ToString::to_string).collect();
            return Err(CardNumberError::Prefix(ranges.join(", ")));
        }
        Ok(())
    }
}

/// The Luhn check over ASCII digits (the caller's `CardId` guarantees them): from the
/// right, every second digit doubled (minus 9 above 9), the sum a multiple of 10.
fn luhn_valid(number: &str) -> bool {
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(s: &str) -> CardId {
        CardId::parse(s).unwrap()
    }

    fn rules(check: CardCheck, prefixes: &[&str]) -> CardNumberRules {
        CardNumberRules {
            check,
            prefixes: prefixes
                .iter()
                .map(|p| PrefixRange::parse(p).unwrap())
                .collect(),
        }
    }

    #[test]
    fn digits_accept_any_card_number() {
        let any = CardNumberRules::default();
        assert_eq!(any.check(&card("123456")), Ok(()));
        assert_eq!(any.check(&card("4006381333932")), Ok(()));
    }

    #[test]
    fn ean13_needs_thirteen_digits_and_the_check_digit() {
        let ean = rules(CardCheck::Ean13, &[]);
        assert_eq!(ean.check(&card("4006381333931")), Ok(()));
        // One digit mistyped, and two neighbours swapped.
        assert_eq!(
            ean.check(&card("4006381333932")),
            Err(CardNumberError::Ean13CheckDigit)
        );
        assert_eq!(
            ean.check(&card("4006381339331")),
            Err(CardNumberError::Ean13CheckDigit)
        );
        assert_eq!(
            ean.check(&card("400638133393")),
            Err(CardNumberError::Ean13Length(12))
        );
    }

    #[test]
    fn luhn_catches_a_mistyped_digit() {
        let luhn = rules(CardCheck::Luhn, &[]);
        // The classic test numbers.
        assert_eq!(luhn.check(&card("79927398713")), Ok(()));
        assert_eq!(luhn.check(&card("4111111111111111")), Ok(()));
        for typo in ["79927398710", "79927398714", "4111111111111112"] {
            assert_eq!(
                luhn.check(&card(typo)),
                Err(CardNumberError::LuhnCheckDigit),
                "{typo}"
            );
        }
    }

    #[test]
    fn prefix_ranges_hold_their_ends_and_nothing_outside() {
        let ranged = rules(CardCheck::Digits, &["2990-2995", "97"]);
        for inside in ["2990000001", "2995999999", "2993123456", "97000001"] {
            assert_eq!(ranged.check(&card(inside)), Ok(()), "{inside}");
        }
        for outside in ["2989999999", "2996000000", "98000001"] {
            let err = ranged.check(&card(outside)).unwrap_err();
            assert_eq!(err, CardNumberError::Prefix("2990-2995, 97".to_owned()));
            assert!(!err.to_string().contains(outside));
        }
    }

    #[test]
    fn a_check_and_prefixes_both_apply() {
        let both = rules(CardCheck::Ean13, &["400"]);
        assert_eq!(both.check(&card("4006381333931")), Ok(()));
        assert!(matches!(
            both.check(&card("5901234123457")),
            Err(CardNumberError::Prefix(_))
        ));
    }

    #[test]
    fn bad_prefix_ranges_are_refused() {
        for bad in ["", "29a0", "2990-299", "2999-2990", "-", "1-"] {
            assert!(PrefixRange::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_section_reads_from_toml_and_round_trips() {
        let parsed: CardNumberRules =
            toml::from_str("check = \"luhn\"\nprefixes = [\"2990-2995\", \"97\"]\n").unwrap();
        assert_eq!(parsed, rules(CardCheck::Luhn, &["2990-2995", "97"]));
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(
            serde_json::from_str::<CardNumberRules>(&json).unwrap(),
            parsed
        );
        assert!(toml::from_str::<CardNumberRules>("check = \"crc\"\n").is_err());
        assert!(toml::from_str::<CardNumberRules>("prefixes = [\"9-1\"]\n").is_err());
    }
}
