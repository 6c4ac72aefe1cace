//! From text to typed value: read the file, parse the TOML keeping spans, let serde
//! build the config type (unknown keys refused), and turn the first parse or type
//! error into a [`ConfigError`] with line and key. Validation comes after, in
//! [`crate::validate`].

use crate::error::{ConfigError, ConfigErrors, ErrorKind};
use crate::explain::{deserialize_error, syntax_error};
use crate::locate::SourceMap;
use crate::validate::Problem;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use toml_edit::{Document, Item, Value};

/// Reads `path` as UTF-8 text. Returns the text and the directory relative paths in
/// the file are resolved against.
pub(crate) fn read(path: &Path) -> Result<(String, PathBuf), ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::one(ConfigError {
            file,
            line: None,
            key: None,
            message: format!("cannot read the file: {e}"),
            kind: ErrorKind::Read,
        })
    })?;
    Ok((text, base_dir(path)))
}

/// The directory of the config file, absolute when the current directory is
/// known, so that resolved paths stay right if the process changes directory.
fn base_dir(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    absolute.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Parses `text` into `T`, or names the first syntax or type error. The returned
/// [`SourceMap`] locates keys for validation errors.
pub(crate) fn parse<T: DeserializeOwned>(
    text: &str,
    file: &str,
) -> Result<(T, SourceMap), ConfigErrors> {
    let doc = Document::parse(text.to_owned())
        .map_err(|e| ConfigErrors::one(syntax_error(&e, text, file)))?;
    let map = SourceMap::new(quote_bare_dates(doc));
    let value = toml::from_str(map.text())
        .map_err(|e| ConfigErrors::one(deserialize_error(&e, &map, file)))?;
    Ok((value, map))
}

/// Turns validation problems into errors located in the file, in line order.
pub(crate) fn locate(problems: Vec<Problem>, map: &SourceMap, file: &str) -> ConfigErrors {
    let mut errors: Vec<ConfigError> = problems
        .into_iter()
        .map(|problem| ConfigError {
            file: file.to_owned(),
            line: map.line_of_path(&problem.key),
            message: format!("{}: {}", problem.key, problem.message),
            key: Some(problem.key.to_string()),
            kind: ErrorKind::InvalidValue,
        })
        .collect();
    // Stable: problems on one line keep the order the checks found them in.
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    ConfigErrors(errors)
}

/// Keys whose values are calendar dates (promotion `starts` and `ends`).
const DATE_KEYS: [&str; 2] = ["starts", "ends"];

/// Promotion dates may be written as TOML local dates (`starts = 2026-11-01`) or as
/// strings (`starts = "2026-11-01"`); the date type reads only strings, so bare dates
/// are quoted in the text before serde sees it. Quoting adds characters but no
/// lines, so line numbers stay those of the user's file.
fn quote_bare_dates(doc: Document<String>) -> Document<String> {
    let mut spans = Vec::new();
    collect_bare_dates(doc.as_item(), &mut spans);
    if spans.is_empty() {
        return doc;
    }
    spans.sort_by_key(|span| span.start);
    let mut text = doc.raw().to_owned();
    for span in spans.iter().rev() {
        text.insert(span.end, '"');
        text.insert(span.start, '"');
    }
    // Quoting a valid local date leaves valid TOML; should it ever not, the original
    // document still parses and serde reports the date as a type error.
    Document::parse(text).unwrap_or(doc)
}

fn collect_bare_dates(item: &Item, spans: &mut Vec<std::ops::Range<usize>>) {
    match item {
        Item::Table(table) => {
            for (key, child) in table.iter() {
                collect_date_value(key, child.as_value(), spans);
                collect_bare_dates(child, spans);
            }
        }
        Item::ArrayOfTables(tables) => {
            for table in tables.iter() {
                for (key, child) in table.iter() {
                    collect_date_value(key, child.as_value(), spans);
                    collect_bare_dates(child, spans);
                }
            }
        }
        Item::Value(value) => collect_in_value(value, spans),
        Item::None => {}
    }
}

fn collect_in_value(value: &Value, spans: &mut Vec<std::ops::Range<usize>>) {
    match value {
        Value::Array(array) => array.iter().for_each(|v| collect_in_value(v, spans)),
        Value::InlineTable(table) => {
            for (key, child) in table.iter() {
                collect_date_value(key, Some(child), spans);
                collect_in_value(child, spans);
            }
        }
        _ => {}
    }
}

fn collect_date_value(key: &str, value: Option<&Value>, spans: &mut Vec<std::ops::Range<usize>>) {
    let Some(value) = value else { return };
    let is_local_date = value
        .as_datetime()
        .is_some_and(|d| d.date.is_some() && d.time.is_none() && d.offset.is_none());
    if DATE_KEYS.contains(&key)
        && is_local_date
        && let Some(span) = value.span()
    {
        spans.push(span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_promotion_dates_are_quoted_in_place() {
        let text = "[[promotion]]\nstarts = 2026-11-01\nends = 2026-11-30 # end\n";
        let doc = Document::parse(text.to_owned()).expect("valid TOML");
        let quoted = quote_bare_dates(doc);
        assert_eq!(
            quoted.raw(),
            "[[promotion]]\nstarts = \"2026-11-01\"\nends = \"2026-11-30\" # end\n"
        );
    }

    #[test]
    fn other_dates_are_left_alone() {
        let text = "when = 2026-11-01\nstarts = 2026-11-01T10:00:00\n";
        let doc = Document::parse(text.to_owned()).expect("valid TOML");
        assert_eq!(quote_bare_dates(doc).raw(), text);
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let path = Path::new("/nonexistent/agent.toml");
        let errors = read(path).expect_err("file does not exist");
        let error = &errors.0[0];
        assert_eq!(error.kind, ErrorKind::Read);
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent/agent.toml: cannot read the file: "),
            "{error}"
        );
    }
}
