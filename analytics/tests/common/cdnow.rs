//! Reads the CDNOW purchase files in `shared/data/cdnow/` (see its README.md) into
//! [`Purchase`]s: one per row, customer id as the key, dollars to cents.
//!
//! Used by the CDNOW tests and the `cdnow_fit` example (through `#[path]`), so the file
//! format is read in one place. A missing file is an error that says where it looked.

use std::path::PathBuf;

use analytics::summary::Purchase;
use time::{Date, Month};

/// Calibration end of Fader, Hardie & Lee (2005): the first 39 weeks of 1997.
pub const CALIBRATION_END: (i32, Month, u8) = (1997, Month::September, 30);
/// Last day of the data: the hold-out period is the 39 weeks after the calibration end.
pub const DATA_END: (i32, Month, u8) = (1998, Month::June, 30);

pub fn date((year, month, day): (i32, Month, u8)) -> Date {
    Date::from_calendar_date(year, month, day).expect("a valid constant date")
}

/// `shared/data/cdnow/<file>`, beside the repository (`../shared` from the workspace
/// root: a symlink in a worktree, a sibling directory of the main checkout).
pub fn path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/cdnow")
        .join(file)
}

/// The sample (`customer_id sample_id date number_of_cds dollar_value`, no header) or
/// the master file (`customer_id date number_of_cds dollar_value`, one header line).
pub fn load(file: &str) -> Result<Vec<Purchase<u32>>, String> {
    let path = path(file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read the CDNOW data at {}: {e} (it ships in shared/data/cdnow/ beside the repository)",
            path.display()
        )
    })?;
    let mut purchases = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || fields[0] == "customer_id" {
            continue;
        }
        let at = |what: &str| format!("{}:{}: bad {what}: {line:?}", path.display(), number + 1);
        let (customer, date, dollars) = match fields.len() {
            5 => (fields[0], fields[2], fields[4]),
            4 => (fields[0], fields[1], fields[3]),
            _ => return Err(at("field count")),
        };
        purchases.push(Purchase {
            customer: customer.parse().map_err(|_| at("customer id"))?,
            day: parse_day(date).ok_or_else(|| at("date"))?,
            amount_minor: parse_cents(dollars).ok_or_else(|| at("dollar value"))?,
        });
    }
    Ok(purchases)
}

fn parse_day(yyyymmdd: &str) -> Option<Date> {
    if yyyymmdd.len() != 8 {
        return None;
    }
    let year = yyyymmdd[..4].parse().ok()?;
    let month = Month::try_from(yyyymmdd[4..6].parse::<u8>().ok()?).ok()?;
    let day = yyyymmdd[6..].parse().ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

/// "29.33" → 2933, exactly (no float).
fn parse_cents(dollars: &str) -> Option<i64> {
    let (whole, fraction) = dollars.split_once('.').unwrap_or((dollars, ""));
    if fraction.len() > 2 {
        return None;
    }
    let cents: i64 = format!("{fraction:0<2}").parse().ok()?;
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents)
}

// Used by the cdnow_csv example and sync-server's import tests, not by every includer.
#[allow(dead_code)]
/// The card number a CDNOW customer gets: `97` and the customer id on 10 digits.
pub fn card_of(customer: u32) -> String {
    format!("97{customer:010}")
}

#[allow(dead_code)]
/// The purchases as the CSV `sync-server import purchases` reads: one card per
/// customer ([`card_of`]), one sale per purchase (`cdnow-<customer>-<n>`, `n` counting
/// the customer's purchases in file order), the day as `at`, the amount in cents.
pub fn import_csv(purchases: &[Purchase<u32>]) -> String {
    let mut counts = std::collections::HashMap::<u32, u32>::new();
    let mut csv = String::from("card,at,receipt_id,amount_minor\n");
    for p in purchases {
        let n = counts.entry(p.customer).or_default();
        *n += 1;
        csv.push_str(&format!(
            "{},{},cdnow-{}-{},{}\n",
            card_of(p.customer),
            p.day,
            p.customer,
            n,
            p.amount_minor
        ));
    }
    csv
}
