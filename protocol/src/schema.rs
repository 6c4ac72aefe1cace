//! OpenAPI schemas of the newtypes whose JSON is a plain string or integer with a
//! format of its own (ids, amounts). Each pattern or bound is the one the type's
//! parser enforces ([`crate::ids`], [`crate::money`]), so a client generating values
//! from the document (schemathesis) sends only what the APIs accept.

use crate::ids::{CardId, ReceiptId, ReturnId, Seq, StoreId, TerminalId};
use crate::money::{BasisPoints, Money, Points};
use crate::token::KeyId;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};

/// The pattern of a card number (see [`CardId::parse`]).
pub const CARD_ID_PATTERN: &str = "^[0-9]{6,19}$";

/// The pattern of a store, terminal, receipt or return id (see [`crate::ids`]).
pub const NAME_ID_PATTERN: &str = "^[A-Za-z0-9._:/-]{1,64}$";

fn string(description: &str, pattern: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .into()
}

/// An integer between `minimum` and `maximum` (JSON numbers of 64 bits at most).
fn integer(description: &str, minimum: Option<i64>, maximum: Option<u64>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some(description))
        .minimum(minimum)
        .maximum(maximum)
        .into()
}

macro_rules! schema {
    ($name:ty, $schema:expr) => {
        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}

schema!(
    CardId,
    string("A loyalty card number: 6 to 19 digits.", CARD_ID_PATTERN)
);
schema!(StoreId, string("A store id.", NAME_ID_PATTERN));
schema!(
    TerminalId,
    string("A terminal (till) id within a store.", NAME_ID_PATTERN)
);
schema!(
    ReceiptId,
    string(
        "The till's receipt number: the idempotency key of a sale.",
        NAME_ID_PATTERN
    )
);
schema!(
    ReturnId,
    string(
        "The till's return number: the idempotency key of a return.",
        NAME_ID_PATTERN
    )
);
// HQ stores sequence numbers as signed 64-bit integers.
schema!(
    Seq,
    integer(
        "A terminal's journal sequence number.",
        Some(0),
        Some(i64::MAX.unsigned_abs())
    )
);
schema!(
    Money,
    integer("An amount of money in minor units (cents).", None, None)
);
schema!(Points, integer("A number of loyalty points.", None, None));
schema!(
    BasisPoints,
    integer(
        "A rate in basis points (10000 = 100 %).",
        Some(0),
        Some(u32::MAX.into())
    )
);
schema!(
    KeyId,
    integer(
        "The id of an HQ key that signs app tokens.",
        Some(0),
        Some(u32::MAX.into())
    )
);

/// Checks an API's generated OpenAPI document against its committed copy (the tests
/// of both servers): with `UPDATE_OPENAPI` set, writes the copy first. `Err` names
/// the copy and how to update it.
pub fn check_committed_document(
    committed: &std::path::Path,
    generated: &str,
    update_with: &str,
) -> Result<(), String> {
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(committed, generated).map_err(|e| e.to_string())?;
    }
    let copy = std::fs::read_to_string(committed).unwrap_or_default();
    if copy == generated {
        Ok(())
    } else {
        Err(format!(
            "{} is not the document the code generates; update it with {update_with}",
            committed.display()
        ))
    }
}
