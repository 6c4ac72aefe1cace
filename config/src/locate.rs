//! Where things are in a TOML file: the line of a byte offset, the key path at a
//! byte offset (to name the key of a deserialization error) and the line of a key
//! path (to point validation errors at the value the user wrote).
//!
//! Key paths are written `scanner[1].baud`: table keys joined by `.`, array and
//! array-of-tables elements as `[index]` counted from 0.

use std::fmt;
use std::ops::Range;
use toml_edit::{Array, ArrayOfTables, Document, Item, TableLike, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// A key of a table.
    Key(String),
    /// An element of an array or array of tables.
    Index(usize),
}

/// A path from the document root to a key or array element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub(crate) Vec<Segment>);

impl KeyPath {
    /// Parses `program.tier[0].accrual_bp`. Anything after a malformed index is kept
    /// as a key, which at worst makes the lookup stop early.
    pub(crate) fn parse(text: &str) -> Self {
        let mut segments = Vec::new();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
            if !name.is_empty() {
                segments.push(Segment::Key(name.to_owned()));
            }
            while let Some((index, after)) = rest.split_once(']') {
                match index.parse() {
                    Ok(i) => segments.push(Segment::Index(i)),
                    Err(_) => segments.push(Segment::Key(index.to_owned())),
                }
                rest = after.strip_prefix('[').unwrap_or(after);
            }
        }
        Self(segments)
    }

    /// The path without its last step (the table that holds the key).
    pub(crate) fn parent(&self) -> Self {
        let mut segments = self.0.clone();
        segments.pop();
        Self(segments)
    }

    /// The path with `key` appended.
    pub(crate) fn child(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// True for the document root.
    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// How to name the table this path is, in a message: `[store]`, `scanner[1]`,
    /// or `the top level`.
    pub(crate) fn table_name(&self) -> String {
        match self.0.last() {
            None => "the top level".to_owned(),
            Some(Segment::Index(_)) => self.to_string(),
            Some(Segment::Key(_)) => format!("[{self}]"),
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A parsed TOML text with the spans of its keys and values.
pub(crate) struct SourceMap {
    doc: Document<String>,
}

impl SourceMap {
    /// Wraps a document parsed by `toml_edit` (which keeps spans).
    pub(crate) fn new(doc: Document<String>) -> Self {
        Self { doc }
    }

    /// The TOML text.
    pub(crate) fn text(&self) -> &str {
        self.doc.raw()
    }

    /// The 1-based line of byte `offset`.
    pub(crate) fn line_of_offset(&self, offset: usize) -> usize {
        line_of_offset(self.text(), offset)
    }

    /// The 1-based line where `path` is written: the line of its key (or array
    /// element), or of the nearest enclosing table that is written when the key
    /// itself is not (a default that failed validation). `None` when nothing of the
    /// path is in the file.
    pub(crate) fn line_of_path(&self, path: &KeyPath) -> Option<usize> {
        let mut node = Node::of_item(self.doc.as_item());
        let mut found = None;
        for segment in &path.0 {
            let (start, next) = match (segment, node) {
                (Segment::Key(key), Node::Table(table, _)) => {
                    let Some((key, item)) = table.get_key_value(key) else {
                        break;
                    };
                    (key.span().map(|s| s.start), Node::of_item(item))
                }
                (Segment::Index(i), Node::Array(array)) => {
                    let Some(value) = array.get(*i) else { break };
                    (value.span().map(|s| s.start), Node::of_value(value))
                }
                (Segment::Index(i), Node::Tables(tables)) => {
                    let Some(table) = tables.get(*i) else { break };
                    (
                        table.span().map(|s| s.start),
                        Node::Table(table, table.span()),
                    )
                }
                _ => break,
            };
            if let Some(start) = start {
                found = Some(start);
            }
            node = next;
        }
        found.map(|offset| self.line_of_offset(offset))
    }

    /// The key path of the key, value or table header at byte `offset`, if any.
    pub(crate) fn path_at(&self, offset: usize) -> Option<KeyPath> {
        let mut path = Vec::new();
        let Node::Table(root, _) = Node::of_item(self.doc.as_item()) else {
            return None;
        };
        find_in_table(root, offset, &mut path).then_some(KeyPath(path))
    }

    /// True when the value at byte `offset` is a TOML date-time (which serde
    /// describes as a "map").
    pub(crate) fn is_datetime_at(&self, offset: usize) -> bool {
        leaf_in_item(self.doc.as_item(), offset).is_some_and(Value::is_datetime)
    }
}

/// The 1-based line of byte `offset` in `text` (offsets past the end count as the
/// last line).
pub(crate) fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key a line of a (possibly broken) TOML text is about, read from the text
/// alone: the table header in effect joined with the key before `=` on that line, or
/// the header itself when the line is one. Used for syntax errors, where there is no
/// parsed document to ask.
pub(crate) fn key_on_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    let mut seen_arrays: Vec<(String, usize)> = Vec::new();
    for (number, content) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if let Some(name) = header_name(content) {
            table = if content.starts_with("[[") {
                let count = match seen_arrays.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, count)) => {
                        *count += 1;
                        *count
                    }
                    None => {
                        seen_arrays.push((name.clone(), 0));
                        0
                    }
                };
                format!("{name}[{count}]")
            } else {
                name
            };
            if number == line {
                return Some(table);
            }
        } else if number == line {
            let (key, _) = content.split_once('=')?;
            let key: String = key
                .split('.')
                .map(|part| part.trim().trim_matches(|c| c == '"' || c == '\''))
                .collect::<Vec<_>>()
                .join(".");
            if key.is_empty() || key.contains(char::is_whitespace) {
                return None;
            }
            return Some(if table.is_empty() {
                key
            } else {
                format!("{table}.{key}")
            });
        }
    }
    None
}

/// `store` for `[store]`, `scanner` for `[[scanner]] # front`.
fn header_name(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let end = inner.find(']')?;
    let name: Vec<&str> = inner[..end]
        .split('.')
        .map(|part| part.trim().trim_matches(|c| c == '"' || c == '\''))
        .collect();
    Some(name.join("."))
}

/// A TOML item seen as the shape that matters for walking a key path.
#[derive(Clone)]
enum Node<'a> {
    /// A table or inline table, with the span of its header (tables) or of the whole
    /// `{ … }` (inline tables).
    Table(&'a dyn TableLike, Option<Range<usize>>),
    /// An array value.
    Array(&'a Array),
    /// An array of tables (`[[scanner]]`).
    Tables(&'a ArrayOfTables),
    /// Anything else, with its span.
    Leaf(Option<Range<usize>>),
}

impl<'a> Node<'a> {
    fn of_item(item: &'a Item) -> Self {
        match item {
            Item::Table(table) => Node::Table(table, table.span()),
            Item::ArrayOfTables(tables) => Node::Tables(tables),
            Item::Value(value) => Node::of_value(value),
            Item::None => Node::Leaf(None),
        }
    }

    fn of_value(value: &'a Value) -> Self {
        match value {
            Value::InlineTable(table) => Node::Table(table, table.span()),
            Value::Array(array) => Node::Array(array),
            other => Node::Leaf(other.span()),
        }
    }
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

/// Pushes onto `path` the steps to whatever in `node` is at `offset`.
fn find(node: Node<'_>, offset: usize, path: &mut Vec<Segment>) -> bool {
    match node {
        Node::Leaf(span) => contains(span, offset),
        Node::Table(table, span) => find_in_table(table, offset, path) || contains(span, offset),
        Node::Array(array) => {
            for (i, value) in array.iter().enumerate() {
                path.push(Segment::Index(i));
                if find(Node::of_value(value), offset, path) {
                    return true;
                }
                path.pop();
            }
            contains(array.span(), offset)
        }
        Node::Tables(tables) => {
            for (i, table) in tables.iter().enumerate() {
                path.push(Segment::Index(i));
                if find(Node::Table(table, table.span()), offset, path) {
                    return true;
                }
                path.pop();
            }
            false
        }
    }
}

/// The scalar value (not table or array) at `offset`.
fn leaf_in_item(item: &Item, offset: usize) -> Option<&Value> {
    match item {
        Item::Value(value) => leaf_in_value(value, offset),
        Item::Table(table) => table.iter().find_map(|(_, i)| leaf_in_item(i, offset)),
        Item::ArrayOfTables(tables) => tables
            .iter()
            .flat_map(|t| t.iter())
            .find_map(|(_, i)| leaf_in_item(i, offset)),
        Item::None => None,
    }
}

fn leaf_in_value(value: &Value, offset: usize) -> Option<&Value> {
    match value {
        Value::Array(array) => array.iter().find_map(|v| leaf_in_value(v, offset)),
        Value::InlineTable(table) => table.iter().find_map(|(_, v)| leaf_in_value(v, offset)),
        scalar => contains(scalar.span(), offset).then_some(scalar),
    }
}

fn find_in_table(table: &dyn TableLike, offset: usize, path: &mut Vec<Segment>) -> bool {
    for (name, _) in table.iter() {
        let Some((key, item)) = table.get_key_value(name) else {
            continue;
        };
        path.push(Segment::Key(name.to_owned()));
        if contains(key.span(), offset) || find(Node::of_item(item), offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
top = 1
[store]
store_id = \"s1\"
terminal_id = \"t\"
[[scanner]]
name = \"a\"
[[scanner]]
name = \"b\"
baud = 9600
[program]
excluded_categories = [\"tobacco\", \"alcohol\"]
tier = [{ name = \"gold\", accrual_bp = 700 }]
";

    fn map() -> SourceMap {
        SourceMap::new(Document::parse(TEXT.to_owned()).expect("test text is valid TOML"))
    }

    #[test]
    fn key_paths_round_trip_through_text() {
        for text in [
            "store.store_id",
            "scanner[1].baud",
            "program.tier[0].name",
            "a[1][2]",
        ] {
            assert_eq!(KeyPath::parse(text).to_string(), text);
        }
    }

    #[test]
    fn line_of_path_finds_keys_elements_and_tables() {
        let map = map();
        let line = |p: &str| map.line_of_path(&KeyPath::parse(p));
        assert_eq!(line("top"), Some(1));
        assert_eq!(line("store.terminal_id"), Some(4));
        assert_eq!(line("scanner[1].baud"), Some(9));
        assert_eq!(
            line("scanner[1].data_bits"),
            Some(7),
            "falls back to the table"
        );
        assert_eq!(line("program.excluded_categories[1]"), Some(11));
        assert_eq!(line("program.tier[0].accrual_bp"), Some(12));
        assert_eq!(line("sync.url"), None);
    }

    #[test]
    fn path_at_names_keys_values_and_headers() {
        let map = map();
        let at = |needle: &str| {
            let offset = TEXT.find(needle).expect("needle is in the text");
            map.path_at(offset).map(|p| p.to_string())
        };
        assert_eq!(at("terminal_id").as_deref(), Some("store.terminal_id"));
        assert_eq!(at("9600").as_deref(), Some("scanner[1].baud"));
        assert_eq!(
            at("\"alcohol\"").as_deref(),
            Some("program.excluded_categories[1]")
        );
        assert_eq!(at("700").as_deref(), Some("program.tier[0].accrual_bp"));
        assert_eq!(at("[program]").as_deref(), Some("program"));
    }

    #[test]
    fn key_on_line_reads_broken_text() {
        let text = "[store]\nstore_id = \n[[scanner]]\n[[scanner]]\nbaud = = 3\n";
        assert_eq!(key_on_line(text, 2).as_deref(), Some("store.store_id"));
        assert_eq!(key_on_line(text, 4).as_deref(), Some("scanner[1]"));
        assert_eq!(key_on_line(text, 5).as_deref(), Some("scanner[1].baud"));
    }
}
