//! Receipt lines as the till sends them, checked once at the edge.

use crate::money::Money;
use serde::{Deserialize, Serialize};

/// Most lines one receipt may carry; a guard against absurd bodies, not a business rule.
pub const MAX_LINES: usize = 1_000;

/// One receipt line. `amount_minor` is the line total (price x quantity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// Stock-keeping unit.
    #[schema(pattern = r"^[^\u0000-\u001f\u007f-\u009f]{1,64}$")]
    pub sku: String,
    /// Category, matched against the rules' category lists.
    #[schema(pattern = r"^[^\u0000-\u001f\u007f-\u009f]{1,64}$")]
    pub category: String,
    /// Line total in minor units; never negative, at most `[limits] max_line_minor`
    /// (the generated document states the default, [`crate::limits::Limits::DEFAULT`];
    /// an agent serves its own).
    #[schema(value_type = i64, minimum = 0, maximum = 1_000_000_000)]
    pub amount_minor: Money,
    /// Quantity in whole units (weighed goods: 1); at least 1.
    #[schema(minimum = 1, maximum = 4_294_967_295_i64, format = Int64)]
    pub qty: u32,
}

/// Why a receipt's lines were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// No lines at all.
    #[error("a receipt needs at least one line")]
    Empty,
    /// More than [`MAX_LINES`] lines.
    #[error("a receipt may have at most {MAX_LINES} lines")]
    TooManyLines,
    /// A line field is bad.
    #[error("lines[{index}].{field}: {reason}")]
    BadLine {
        /// Index of the line.
        index: usize,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The receipt total does not fit in 64 bits.
    #[error("receipt total overflows")]
    Overflow,
}

/// Checks a receipt's lines and returns its total.
pub fn validate_lines(lines: &[Line]) -> Result<Money, ReceiptError> {
    if lines.is_empty() {
        return Err(ReceiptError::Empty);
    }
    if lines.len() > MAX_LINES {
        return Err(ReceiptError::TooManyLines);
    }
    for (index, line) in lines.iter().enumerate() {
        let bad = |field, reason| ReceiptError::BadLine {
            index,
            field,
            reason,
        };
        if !valid_text(&line.sku) {
            return Err(bad("sku", "must be 1 to 64 printable characters"));
        }
        if !valid_text(&line.category) {
            return Err(bad("category", "must be 1 to 64 printable characters"));
        }
        if line.amount_minor.is_negative() {
            return Err(bad("amount_minor", "must not be negative"));
        }
        if line.qty == 0 {
            return Err(bad("qty", "must be at least 1"));
        }
    }
    Money::checked_sum(lines.iter().map(|l| l.amount_minor)).map_err(|_| ReceiptError::Overflow)
}

/// 1 to 64 characters (not bytes: a name in Cyrillic or Greek is as long as one in
/// Latin letters), none of them a control character.
fn valid_text(s: &str) -> bool {
    (1..=64).contains(&s.chars().count()) && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(amount: i64, qty: u32) -> Line {
        Line {
            sku: "sku-1".into(),
            category: "food".into(),
            amount_minor: Money(amount),
            qty,
        }
    }

    #[test]
    fn names_are_counted_in_characters_not_bytes() {
        // Found by schemathesis: 64 characters are 64 characters in any script.
        let mut l = line(100, 1);
        l.sku = "я".repeat(64);
        l.category = "Ω".repeat(64);
        assert_eq!(validate_lines(std::slice::from_ref(&l)), Ok(Money(100)));
        l.sku = "я".repeat(65);
        assert!(matches!(
            validate_lines(&[l]),
            Err(ReceiptError::BadLine { field: "sku", .. })
        ));
    }

    #[test]
    fn valid_lines_give_their_total() {
        assert_eq!(
            validate_lines(&[line(100, 1), line(250, 2)]),
            Ok(Money(350))
        );
    }

    #[test]
    fn empty_negative_zero_quantity_and_overflowing_receipts_are_refused() {
        assert_eq!(validate_lines(&[]), Err(ReceiptError::Empty));
        assert!(matches!(
            validate_lines(&[line(-1, 1)]),
            Err(ReceiptError::BadLine {
                field: "amount_minor",
                ..
            })
        ));
        assert!(matches!(
            validate_lines(&[line(1, 0)]),
            Err(ReceiptError::BadLine { field: "qty", .. })
        ));
        assert_eq!(
            validate_lines(&[line(i64::MAX, 1), line(1, 1)]),
            Err(ReceiptError::Overflow)
        );
    }

    #[test]
    fn unknown_line_fields_are_refused() {
        let err = serde_json::from_str::<Line>(
            r#"{"sku":"a","category":"b","amount_minor":1,"qty":1,"price":3}"#,
        );
        assert!(err.is_err());
    }
}
