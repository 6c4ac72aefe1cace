//! The import files, parsed once: CSV with a header line, every row checked and
//! typed, every problem named with its line. A file with any bad row is refused as a
//! whole (the caller writes nothing).
//!
//! Purchases: `card,at,receipt_id,amount_minor` and optionally `store` and `points`
//! (any column order; `card` empty for an anonymous sale). Balances:
//! `card,balance` and optionally `at` and `store`.

use protocol::{CardId, Money, Points, ReceiptId, StoreId};
use std::collections::HashMap;
use std::io::Read;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// Largest amount one imported receipt may carry (10 billion major units): far above
/// any real receipt, far below where sums of a card's history could overflow.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;
/// Largest points figure one row may carry.
pub const MAX_POINTS: i64 = 1_000_000_000_000;
/// Most problems listed before the parser stops looking.
const MAX_PROBLEMS: usize = 20;

/// Why an import file was refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowsError {
    /// The file has no header line.
    #[error("the file is empty: it needs a header line ({expected})")]
    Empty {
        /// The columns it should name.
        expected: &'static str,
    },
    /// A required column is not in the header.
    #[error("line 1: missing column {column:?} (the header must name {expected})")]
    MissingColumn {
        /// The column.
        column: &'static str,
        /// Every required column.
        expected: &'static str,
    },
    /// The header names a column this import does not know, or one twice.
    #[error("line 1: column {column:?} is unknown or repeated (known: {known})")]
    BadColumn {
        /// The column.
        column: String,
        /// The columns this import reads.
        known: &'static str,
    },
    /// Rows failed their checks; each problem is `line N: column: reason`.
    #[error("{} bad row(s):\n{}", problems.len(), problems.join("\n"))]
    Rows {
        /// The problems, in file order (at most 20).
        problems: Vec<String>,
    },
}

/// One past purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRow {
    /// Its line in the file.
    pub line: u64,
    /// The member's card; `None` for an anonymous sale.
    pub card: Option<CardId>,
    /// When it happened (a bare date is midnight UTC).
    pub at: OffsetDateTime,
    /// The old system's receipt number: the idempotency key within its store.
    pub receipt_id: ReceiptId,
    /// The receipt total, paid in money.
    pub amount: Money,
    /// The store it was sold in (`None`: the import's default store).
    pub store: Option<StoreId>,
    /// Points it accrued in the old system (0 when the column is absent).
    pub points: Points,
}

/// One card's opening balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    /// Its line in the file.
    pub line: u64,
    /// The card.
    pub card: CardId,
    /// Points the card holds in the old system.
    pub balance: Points,
    /// As of when (`None`: the moment of the import).
    pub at: Option<OffsetDateTime>,
    /// The store whose balance feed gets the card (`None`: the import's default store).
    pub store: Option<StoreId>,
}

const PURCHASE_REQUIRED: &[&str] = &["card", "at", "receipt_id", "amount_minor"];
const PURCHASE_OPTIONAL: &[&str] = &["store", "points"];
const PURCHASE_COLUMNS: &str = "card,at,receipt_id,amount_minor[,store][,points]";
const BALANCE_REQUIRED: &[&str] = &["card", "balance"];
const BALANCE_OPTIONAL: &[&str] = &["at", "store"];
const BALANCE_COLUMNS: &str = "card,balance[,at][,store]";

/// Parses a purchases file. Receipt ids must be unique per store within the file.
pub fn purchases(input: impl Read) -> Result<Vec<PurchaseRow>, RowsError> {
    let mut seen: HashMap<(Option<StoreId>, ReceiptId), u64> = HashMap::new();
    parse(
        input,
        PURCHASE_REQUIRED,
        PURCHASE_OPTIONAL,
        PURCHASE_COLUMNS,
        |row| {
            let card = match row.get("card") {
                "" => None,
                text => Some(row.field("card", CardId::parse(text))?),
            };
            let parsed = PurchaseRow {
                line: row.line,
                card,
                at: row.field("at", parse_time(row.get("at")))?,
                receipt_id: row.field("receipt_id", ReceiptId::parse(row.get("receipt_id")))?,
                amount: Money(row.bounded("amount_minor", MAX_AMOUNT_MINOR)?),
                store: row.optional_store()?,
                points: Points(match row.get("points") {
                    "" => 0,
                    _ => row.bounded("points", MAX_POINTS)?,
                }),
            };
            let key = (parsed.store.clone(), parsed.receipt_id.clone());
            if let Some(first) = seen.insert(key, row.line) {
                return Err(format!(
                    "line {}: receipt_id: {} already appears on line {first} for the same store",
                    row.line, parsed.receipt_id
                ));
            }
            Ok(parsed)
        },
    )
}

/// Parses a balances file. A card may appear once.
pub fn balances(input: impl Read) -> Result<Vec<BalanceRow>, RowsError> {
    let mut seen: HashMap<CardId, u64> = HashMap::new();
    parse(
        input,
        BALANCE_REQUIRED,
        BALANCE_OPTIONAL,
        BALANCE_COLUMNS,
        |row| {
            let parsed = BalanceRow {
                line: row.line,
                card: row.field("card", CardId::parse(row.get("card")))?,
                balance: Points(row.bounded("balance", MAX_POINTS)?),
                at: match row.get("at") {
                    "" => None,
                    text => Some(row.field("at", parse_time(text))?),
                },
                store: row.optional_store()?,
            };
            if let Some(first) = seen.insert(parsed.card.clone(), row.line) {
                return Err(format!(
                    "line {}: card: {} already appears on line {first}",
                    row.line,
                    parsed.card.masked()
                ));
            }
            Ok(parsed)
        },
    )
}

/// `2024-03-01T10:00:00Z` (RFC 3339) or `2024-03-01` (midnight UTC).
pub fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    Date::parse(text, format_description!("[year]-[month]-[day]"))
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| "must be an RFC 3339 time or a YYYY-MM-DD date".to_owned())
}

/// One data row with the header's column positions.
struct Row<'a> {
    line: u64,
    record: &'a csv::StringRecord,
    columns: &'a HashMap<&'static str, usize>,
}

impl Row<'_> {
    /// The trimmed field of `column`; empty when the column is absent.
    fn get(&self, column: &str) -> &str {
        self.columns
            .get(column)
            .and_then(|&i| self.record.get(i))
            .map_or("", str::trim)
    }

    fn field<T, E: std::fmt::Display>(
        &self,
        column: &str,
        parsed: Result<T, E>,
    ) -> Result<T, String> {
        parsed.map_err(|e| format!("line {}: {column}: {e}", self.line))
    }

    /// An integer in `0..=max`.
    fn bounded(&self, column: &str, max: i64) -> Result<i64, String> {
        let value = self.field(
            column,
            self.get(column)
                .parse::<i64>()
                .map_err(|_| "must be a whole number (minor units, no separators)"),
        )?;
        if (0..=max).contains(&value) {
            Ok(value)
        } else {
            Err(format!("line {}: {column}: must be 0 to {max}", self.line))
        }
    }

    fn optional_store(&self) -> Result<Option<StoreId>, String> {
        match self.get("store") {
            "" => Ok(None),
            text => self.field("store", StoreId::parse(text)).map(Some),
        }
    }
}

/// Reads the header, checks the columns, then every row through `row_of`, collecting
/// up to [`MAX_PROBLEMS`] problems.
fn parse<T>(
    input: impl Read,
    required: &'static [&'static str],
    optional: &'static [&'static str],
    expected: &'static str,
    mut row_of: impl FnMut(&Row<'_>) -> Result<T, String>,
) -> Result<Vec<T>, RowsError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut records = reader.records();
    let header = match records.next() {
        None => return Err(RowsError::Empty { expected }),
        Some(Err(e)) => {
            return Err(RowsError::Rows {
                problems: vec![format!("line 1: {e}")],
            });
        }
        Some(Ok(h)) => h,
    };
    let mut columns: HashMap<&'static str, usize> = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        let name = name.trim().trim_start_matches('\u{feff}');
        let known = required.iter().chain(optional).find(|c| **c == name);
        match known {
            Some(&c) if !columns.contains_key(c) => {
                columns.insert(c, i);
            }
            _ => {
                return Err(RowsError::BadColumn {
                    column: name.to_owned(),
                    known: expected,
                });
            }
        }
    }
    if let Some(&column) = required.iter().find(|c| !columns.contains_key(*c)) {
        return Err(RowsError::MissingColumn { column, expected });
    }
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                problems.push(format!("line {line}: {e}"));
                if problems.len() >= MAX_PROBLEMS {
                    break;
                }
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if record.len() != header.len() {
            problems.push(format!(
                "line {line}: {} fields, the header has {}",
                record.len(),
                header.len()
            ));
        } else {
            match row_of(&Row {
                line,
                record: &record,
                columns: &columns,
            }) {
                Ok(row) => rows.push(row),
                Err(problem) => problems.push(problem),
            }
        }
        if problems.len() >= MAX_PROBLEMS {
            break;
        }
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(RowsError::Rows { problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(e: RowsError) -> Vec<String> {
        match e {
            RowsError::Rows { problems } => problems,
            other => panic!("expected row problems, got {other}"),
        }
    }

    #[test]
    fn purchases_parse_in_any_column_order_with_optional_columns() {
        let text = "receipt_id,amount_minor,card,at,points,store\n\
                    R-1,2933,4006381333931,1997-01-01,29,store-7\n\
                    R-2,100,,2024-03-01T10:00:00+02:00,,\n";
        let rows = purchases(text.as_bytes()).expect("valid file");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(
            rows[0].card.as_ref().map(CardId::as_str),
            Some("4006381333931")
        );
        assert_eq!(rows[0].amount, Money(2933));
        assert_eq!(rows[0].points, Points(29));
        assert_eq!(rows[0].store.as_ref().map(StoreId::as_str), Some("store-7"));
        assert_eq!(rows[0].at, time::macros::datetime!(1997-01-01 0:00 UTC));
        assert_eq!(rows[1].card, None);
        assert_eq!(rows[1].points, Points(0));
        assert_eq!(rows[1].at, time::macros::datetime!(2024-03-01 8:00 UTC));
    }

    #[test]
    fn every_bad_row_is_named_with_its_line_and_column() {
        let text = "card,at,receipt_id,amount_minor\n\
                    4006381333931,1997-01-01,R-1,100\n\
                    12,1997-01-01,R-2,100\n\
                    4006381333931,yesterday,R-3,100\n\
                    4006381333931,1997-01-01,R-4,-5\n\
                    4006381333931,1997-01-01,R-1,100\n\
                    4006381333931,1997-01-01,R-6\n";
        let found = problems(purchases(text.as_bytes()).expect_err("bad rows"));
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found[0].starts_with("line 3: card:"), "{}", found[0]);
        assert!(found[1].starts_with("line 4: at:"), "{}", found[1]);
        assert!(
            found[2].starts_with("line 5: amount_minor: must be 0 to"),
            "{}",
            found[2]
        );
        assert!(
            found[3].contains("already appears on line 2"),
            "{}",
            found[3]
        );
        assert!(found[4].starts_with("line 7: 3 fields"), "{}", found[4]);
    }

    #[test]
    fn a_header_without_a_required_column_or_with_an_unknown_one_is_refused() {
        assert!(matches!(
            purchases("card,at,amount_minor\n".as_bytes()),
            Err(RowsError::MissingColumn {
                column: "receipt_id",
                ..
            })
        ));
        assert!(matches!(
            purchases("card,at,receipt_id,amount_minor,colour\n".as_bytes()),
            Err(RowsError::BadColumn { .. })
        ));
        assert!(matches!(
            purchases("".as_bytes()),
            Err(RowsError::Empty { .. })
        ));
    }

    #[test]
    fn balances_parse_and_a_card_may_appear_once() {
        let rows =
            balances("card,balance,at\n4006381333931,120,2024-01-31\n123456,0,\n".as_bytes())
                .expect("valid file");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].balance, Points(120));
        assert!(rows[0].at.is_some());
        assert_eq!(rows[1].at, None);
        let found = problems(
            balances("card,balance\n123456,1\n123456,2\n123456,x\n".as_bytes())
                .expect_err("repeated card"),
        );
        assert_eq!(found.len(), 2);
        assert!(
            found[0].contains("line 3") && found[0].contains("line 2"),
            "{}",
            found[0]
        );
        assert!(
            !found[0].contains("123456"),
            "card numbers are masked: {}",
            found[0]
        );
        assert!(found[1].starts_with("line 4: balance:"), "{}", found[1]);
    }
}
