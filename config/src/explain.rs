//! Turns the errors of the TOML parser and of serde into [`ConfigError`]s a store
//! manager can act on: the line from the error's span, the key path from what sits at
//! that span, and serde's type jargon (`expected u32`) rewritten in TOML words (`an
//! integer`), with a "did you mean" for misspelt keys.

use crate::error::{ConfigError, ErrorKind};
use crate::locate::{KeyPath, SourceMap, key_on_line, line_of_offset};

/// A TOML syntax error (including duplicate keys and tables).
pub(crate) fn syntax_error(error: &toml_edit::TomlError, text: &str, file: &str) -> ConfigError {
    let line = error.span().map(|span| line_of_offset(text, span.start));
    let key = line.and_then(|line| key_on_line(text, line));
    let what = error.message().trim_end();
    let hint = line
        .and_then(|line| quote_hint(text, line))
        .unwrap_or_default();
    let message = match &key {
        Some(key) => format!("{key}: invalid TOML: {what}{hint}"),
        None => format!("invalid TOML: {what}{hint}"),
    };
    ConfigError {
        file: file.to_owned(),
        line,
        key,
        message,
        kind: ErrorKind::Syntax,
    }
}

/// The parser reports an unquoted word (`terminal_id = till-3`) as a bad boolean or
/// number; the usual cause is forgotten quotes, so say so.
fn quote_hint(text: &str, line: usize) -> Option<String> {
    let content = text.lines().nth(line.checked_sub(1)?)?;
    let (key, value) = content.split_once('=')?;
    let value = value.split('#').next().unwrap_or_default().trim();
    let is_word = value.starts_with(|c: char| c.is_ascii_alphabetic())
        && !matches!(value, "true" | "false" | "inf" | "nan");
    is_word.then(|| format!(" (text must be in quotes: {} = \"{value}\")", key.trim()))
}

/// An error of deserializing valid TOML into the config types: unknown or missing
/// key, wrong type, or a value a type refused while parsing (a bad store id).
pub(crate) fn deserialize_error(
    error: &toml::de::Error,
    map: &SourceMap,
    file: &str,
) -> ConfigError {
    let offset = error.span().map(|span| span.start);
    let line = offset.map(|offset| map.line_of_offset(offset));
    let path = offset.and_then(|offset| map.path_at(offset));
    let is_datetime = offset.is_some_and(|offset| map.is_datetime_at(offset));
    let (kind, key, message) = explain(error.message(), path, is_datetime);
    ConfigError {
        file: file.to_owned(),
        line,
        key,
        message,
        kind,
    }
}

/// Kind, key path and message for serde's `raw` message about the value at `path`.
fn explain(
    raw: &str,
    path: Option<KeyPath>,
    is_datetime: bool,
) -> (ErrorKind, Option<String>, String) {
    let path = path.unwrap_or_default();
    let key = (!path.is_root()).then(|| path.to_string());
    let prefix = key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default();
    let with_key = |text: String| format!("{prefix}{text}");

    if let Some(rest) = raw.strip_prefix("unknown field ") {
        let names = backticked(rest);
        let Some((unknown, known)) = names.split_first() else {
            return (ErrorKind::UnknownKey, key, with_key(raw.to_owned()));
        };
        let table = path.parent();
        let mut message = format!("unknown key '{unknown}'");
        if !table.is_root() {
            message.push_str(&format!(" in {}", table.table_name()));
        }
        message.push_str(&suggestion(unknown, known));
        return (ErrorKind::UnknownKey, key, message);
    }
    if let Some(rest) = raw.strip_prefix("missing field ") {
        let name = backticked(rest).into_iter().next().unwrap_or_default();
        let message = format!("missing key '{name}' in {}", path.table_name());
        return (
            ErrorKind::MissingKey,
            Some(path.child(&name).to_string()),
            message,
        );
    }
    if let Some(rest) = raw.strip_prefix("unknown variant ") {
        let names = backticked(rest);
        if let Some((given, allowed)) = names.split_first() {
            let message = format!("'{given}' is not one of: {}", allowed.join(", "));
            return (ErrorKind::InvalidValue, key, with_key(message));
        }
    }
    if let Some((found, expected)) = raw
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.rsplit_once(", expected "))
    {
        let found = if is_datetime && found == "map" {
            "a date-time".to_owned()
        } else {
            describe_found(found)
        };
        let message = format!("expected {}, found {found}", describe_expected(expected));
        return (ErrorKind::WrongType, key, with_key(message));
    }
    if let Some((found, expected)) = raw
        .strip_prefix("invalid value: ")
        .and_then(|rest| rest.rsplit_once(", expected "))
    {
        let value = backticked(found)
            .into_iter()
            .next()
            .unwrap_or(found.to_owned());
        let range =
            integer_range(expected).map_or_else(|| describe_expected(expected), str::to_owned);
        let message = format!("{value} is out of range: expected {range}");
        return (ErrorKind::WrongType, key, with_key(message));
    }
    (ErrorKind::InvalidValue, key, with_key(raw.to_owned()))
}

/// The `` `quoted` `` words of a serde message, in order.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// serde's name of an expected type, in TOML words.
fn describe_expected(expected: &str) -> String {
    if integer_range(expected).is_some() {
        return "an integer".to_owned();
    }
    match expected {
        "a boolean" => "true or false".to_owned(),
        "a string" | "path string" | "a borrowed string" => "a string".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a `Date`" => "a date like \"2026-11-01\"".to_owned(),
        "variant identifier" => "one of the listed words, as a string".to_owned(),
        other if other.starts_with("struct ") => "a table".to_owned(),
        other => other.to_owned(),
    }
}

/// The values a Rust integer type named by serde holds, in words.
fn integer_range(expected: &str) -> Option<&'static str> {
    Some(match expected {
        "u8" => "an integer from 0 to 255",
        "u16" => "an integer from 0 to 65535",
        "u32" => "an integer from 0 to 4294967295",
        "u64" | "usize" => "an integer of at least 0",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer that fits in 64 bits",
        _ => return None,
    })
}

/// serde's description of an unexpected value, in TOML words.
fn describe_found(found: &str) -> String {
    let value = backticked(found).into_iter().next();
    let with_value = |what: &str| match &value {
        Some(v) => format!("{what} ({v})"),
        None => what.to_owned(),
    };
    match found.split([' ', '`']).next().unwrap_or_default() {
        "string" => format!(
            "a string{}",
            found.strip_prefix("string").unwrap_or_default()
        ),
        "integer" => with_value("an integer"),
        "floating" => with_value("a float"),
        "boolean" => with_value("a boolean"),
        "map" => "a table".to_owned(),
        "sequence" => "an array".to_owned(),
        _ => found.to_owned(),
    }
}

/// `, did you mean 'terminal_id'?` for a near miss, else the list of known keys.
fn suggestion(unknown: &str, known: &[String]) -> String {
    if known.is_empty() {
        return " (this table takes no keys)".to_owned();
    }
    let best = known
        .iter()
        .map(|k| (edit_distance(unknown, k), k))
        .min_by_key(|(distance, _)| *distance);
    match best {
        Some((distance, name)) if distance <= 2.max(unknown.len() / 4) => {
            format!(", did you mean '{name}'?")
        }
        _ => format!(" (known keys: {})", known.join(", ")),
    }
}

/// Levenshtein distance (keys are short, so the quadratic table is fine).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(raw: &str, path: &str) -> (ErrorKind, Option<String>, String) {
        explain(raw, Some(KeyPath::parse(path)), false)
    }

    #[test]
    fn unknown_field_becomes_unknown_key_with_suggestion() {
        let (kind, key, message) = run(
            "unknown field `terminal_idd`, expected one of `store_id`, `terminal_id`, `utc_offset`",
            "store.terminal_idd",
        );
        assert_eq!(kind, ErrorKind::UnknownKey);
        assert_eq!(key.as_deref(), Some("store.terminal_idd"));
        assert_eq!(
            message,
            "unknown key 'terminal_idd' in [store], did you mean 'terminal_id'?"
        );
    }

    #[test]
    fn unknown_field_far_from_any_key_lists_known_keys() {
        let (_, _, message) = run(
            "unknown field `colour`, expected `name`",
            "scanner[0].colour",
        );
        assert_eq!(
            message,
            "unknown key 'colour' in scanner[0] (known keys: name)"
        );
    }

    #[test]
    fn type_errors_speak_toml() {
        let (kind, _, message) = run(
            "invalid type: string \"fast\", expected u32",
            "scanner[0].baud",
        );
        assert_eq!(kind, ErrorKind::WrongType);
        assert_eq!(
            message,
            "scanner[0].baud: expected an integer, found a string \"fast\""
        );
        let (_, _, message) = run(
            "invalid value: integer `-1`, expected u64",
            "sync.interval_secs",
        );
        assert_eq!(
            message,
            "sync.interval_secs: -1 is out of range: expected an integer of at least 0"
        );
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("terminal_idd", "terminal_id"), 1);
        assert_eq!(edit_distance("baud", "bauds"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
