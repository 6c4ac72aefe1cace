//! From text to typed value: read the file, parse the TOML keeping spans, let serde
//! build the config type (unknown keys refused), and turn each key serde refuses into
//! a [`ConfigError`] with line and key, leaving it out to read the rest. Validation
//! comes after, in [`crate::validate`].

use crate::error::{ConfigError, ConfigErrors, ErrorKind};
use crate::explain::{deserialize_error, syntax_error};
use crate::locate::{KeyPath, Segment, SourceMap};
use crate::validate::Problem;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use toml_edit::{Document, DocumentMut, Item, TableLike, Value};

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

/// At most this many keys are refused and left out before parsing gives up (a file
/// of garbage would otherwise take one deserialization per key).
const MAX_REFUSED: usize = 100;

/// Parses `text` into `T`. A syntax error stops there (the rest of the file cannot
/// be read reliably); otherwise each key serde refuses (unknown, wrong type, bad
/// value) is reported, left out, and parsing goes on with the rest, so that one run
/// names every such key. Returns the value, the [`SourceMap`] of the file as written
/// (to locate validation errors) and the refusals; `Err` when no value could be
/// built (a required key missing or wrong), with every refusal found.
pub(crate) fn parse<T: DeserializeOwned>(
    text: &str,
    file: &str,
) -> Result<(T, SourceMap, Vec<ConfigError>), ConfigErrors> {
    let doc = Document::parse(text.to_owned())
        .map_err(|e| ConfigErrors::one(syntax_error(&e, text, file)))?;
    let map = SourceMap::new(quote_bare_dates(doc));
    let mut refused: Vec<ConfigError> = Vec::new();
    // The text with the refused keys left out, once there are any.
    let mut rest: Option<SourceMap> = None;
    loop {
        let view = rest.as_ref().unwrap_or(&map);
        let error = match toml::from_str(view.text()) {
            Ok(value) => return Ok((value, map, refused)),
            Err(e) => deserialize_error(&e, view, file),
        };
        let left_out = |key: &str| refused.iter().any(|r| r.key.as_deref() == Some(key));
        if error.kind == ErrorKind::MissingKey && error.key.as_deref().is_some_and(left_out) {
            // Missing only because it was refused and left out: already reported.
            break;
        }
        let path = error.key.as_deref().map(KeyPath::parse);
        let next = path.as_ref().and_then(|path| without(view.text(), path));
        let mut error = error;
        // Lines of the file as written (leaving keys out keeps no blank lines).
        if let Some(line) = path.as_ref().and_then(|path| map.line_of_path(path)) {
            error.line = Some(line);
        }
        refused.push(error);
        match next {
            Some(next) if refused.len() < MAX_REFUSED => rest = Some(next),
            _ => break,
        }
    }
    Err(in_line_order(refused))
}

/// `text` without the key at `path`; `None` when there is no such key in a table
/// (a missing key, an array element) or the result does not parse.
fn without(text: &str, path: &KeyPath) -> Option<SourceMap> {
    let mut doc: DocumentMut = text.parse().ok()?;
    let (Segment::Key(last), parents) = path.0.split_last()? else {
        return None;
    };
    let mut table: &mut dyn TableLike = doc.as_table_mut();
    let mut steps = parents.iter().peekable();
    while let Some(step) = steps.next() {
        let Segment::Key(key) = step else { return None };
        let item = table.get_mut(key)?;
        table = match (steps.peek(), item) {
            (Some(Segment::Index(i)), Item::ArrayOfTables(tables)) => {
                let i = *i;
                steps.next();
                tables.get_mut(i)? as &mut dyn TableLike
            }
            (Some(Segment::Index(i)), Item::Value(Value::Array(array))) => {
                let i = *i;
                steps.next();
                array.get_mut(i)?.as_inline_table_mut()? as &mut dyn TableLike
            }
            (Some(Segment::Index(_)), _) => return None,
            (_, item) => item.as_table_like_mut()?,
        };
    }
    table.remove(last)?;
    Document::parse(doc.to_string()).ok().map(SourceMap::new)
}

/// `errors` sorted by line (stable: errors on one line keep the order they were found
/// in; errors without a line come last).
pub(crate) fn in_line_order(mut errors: Vec<ConfigError>) -> ConfigErrors {
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    ConfigErrors(errors)
}

/// Turns validation problems into errors located in the file.
pub(crate) fn locate(problems: Vec<Problem>, map: &SourceMap, file: &str) -> Vec<ConfigError> {
    problems
        .into_iter()
        .map(|problem| ConfigError {
            file: file.to_owned(),
            line: map.line_of_path(&problem.key),
            message: format!("{}: {}", problem.key, problem.message),
            key: Some(problem.key.to_string()),
            kind: ErrorKind::InvalidValue,
        })
        .collect()
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
