//! Request bodies as JSON numbers mean them: `2.0` is the integer 2.
//!
//! JSON has one number type, and JSON Schema counts a number with a zero fraction as
//! an integer, so a client (a JavaScript till, a generator working from the OpenAPI
//! document) may well send `2.0` where serde expects an integer. [`from_slice`]
//! parses strictly first (one pass, the normal path), and only when that fails reads
//! whole-valued floats as the integers they spell and tries again.

use serde::de::DeserializeOwned;
use serde_json::{Number, Value};

/// Parses `bytes` as `T`, reading a whole-valued float (`2.0`, `-3e2`) as an integer.
/// A number with a fraction is still refused wherever an integer is expected.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let strict = match serde_json::from_slice(bytes) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(bytes) else {
        return Err(strict);
    };
    if !whole_floats_to_integers(&mut value) {
        return Err(strict);
    }
    serde_json::from_value(value)
}

/// Replaces every whole-valued float within the 64-bit integer range by that integer;
/// true when any was replaced.
fn whole_floats_to_integers(value: &mut Value) -> bool {
    match value {
        Value::Number(n) => match n.as_f64().filter(|_| n.is_f64()).and_then(whole) {
            Some(integer) => {
                *n = integer;
                true
            }
            None => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, v| whole_floats_to_integers(v) | any),
        Value::Object(fields) => fields
            .values_mut()
            .fold(false, |any, v| whole_floats_to_integers(v) | any),
        Value::Null | Value::Bool(_) | Value::String(_) => false,
    }
}

/// `f` as an integer, when it has no fraction and fits 64 bits.
fn whole(f: f64) -> Option<Number> {
    if f.fract() != 0.0 || !f.is_finite() {
        return None;
    }
    // 2^63 and 2^64 are exact as f64; every whole float below them converts exactly.
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        #[allow(clippy::cast_possible_truncation)]
        Some(Number::from(f as i64))
    } else if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(Number::from(f as u64))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        qty: u32,
        amount: i64,
        share: f64,
    }

    #[test]
    fn a_whole_float_is_the_integer_it_spells() {
        let line: Line = from_slice(br#"{"qty": 1762.0, "amount": -3e2, "share": 2.0}"#).unwrap();
        assert_eq!(
            line,
            Line {
                qty: 1762,
                amount: -300,
                share: 2.0
            }
        );
    }

    #[test]
    fn a_large_whole_float_is_read_exactly() {
        // Found by schemathesis: parsed without `float_roundtrip`, this came out as
        // 1808803138815719.2 and was refused.
        let line: Line =
            from_slice(br#"{"qty": 1, "amount": 1808803138815719.0, "share": 0}"#).unwrap();
        assert_eq!(line.amount, 1_808_803_138_815_719);
    }

    #[test]
    fn a_fraction_is_still_refused_where_an_integer_is_expected() {
        let e = from_slice::<Line>(br#"{"qty": 1.5, "amount": 1, "share": 0.5}"#).unwrap_err();
        assert!(e.to_string().contains("expected u32"), "{e}");
    }

    #[test]
    fn an_integer_out_of_range_is_refused_as_before() {
        let e = from_slice::<Line>(br#"{"qty": 1e10, "amount": 1, "share": 0}"#).unwrap_err();
        assert!(e.to_string().contains("u32"), "{e}");
        let e = from_slice::<Line>(br#"{"qty": 1, "amount": 1e30, "share": 0}"#).unwrap_err();
        assert!(e.to_string().contains("i64"), "{e}");
    }

    #[test]
    fn other_errors_keep_their_position() {
        let e = from_slice::<Line>(br#"{"qty": 1, "amount": 1, "share": 0, "x": 1}"#).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
