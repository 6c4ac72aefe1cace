//! The till API's OpenAPI 3.1 document, generated from the handlers' annotations and
//! the request and answer types, served at `GET /v1/openapi.json` and printed by
//! `pos-agent openapi` (committed as `docs/openapi/till-api.json`).

use super::{cards, sales, scans, status};
use crate::policy::OfflineLimit;
use crate::sales::quote::LimitedBy;
use crate::sales::{CancelReason, SaleState};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use protocol::limits::Limits;
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's root: every route of [`super::router`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "pos-agent till API",
        description = "The HTTP/JSON API the till calls on the agent beside it. On loopback \
            no token is needed; bound beyond loopback, every request carries the till token \
            (`Authorization: Bearer …`). Every error answers `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        cards::card,
        sales::quote_receipt,
        sales::open_sale,
        sales::commit_sale,
        sales::cancel_sale,
        sales::record_return,
        status::health,
        status::metrics,
        scans::last,
        scans::stream,
        openapi_json,
    ),
    // Every error answer's body; `answers` refer to it without registering it.
    components(schemas(protocol::wire::ErrorBody)),
    modifiers(&TillToken),
    // The empty requirement: on loopback without a token file, no token is needed.
    security((), ("till_token" = [])),
)]
pub struct TillApiDoc;

/// The error answers the till endpoints share, each described once (status, meaning,
/// `ErrorBody`): a handler lists those it can give after its success, as
/// `responses((status = 200, …), answers::BadRequest, answers::Unauthorized, …)`.
/// An answer only one handler gives stays in that handler's list.
pub mod answers {
    use protocol::wire::ErrorBody;

    /// 400.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 400,
        description = "The request is malformed (bad JSON, id, card number or figure); nothing was recorded."
    )]
    pub struct BadRequest(pub ErrorBody);

    /// 401.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 401,
        description = "Missing or wrong till token (only when the API is bound beyond loopback)."
    )]
    pub struct Unauthorized(pub ErrorBody);

    /// 404.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 404, description = "No sale under this receipt number.")]
    pub struct UnknownReceipt(pub ErrorBody);

    /// 409.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 409,
        description = "In conflict with earlier requests (idempotency key reused with another body, sale already cancelled/committed/returned)."
    )]
    pub struct Conflict(pub ErrorBody);

    /// 413.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 413,
        description = "The body is larger than `[till_api] max_body_bytes`."
    )]
    pub struct TooLarge(pub ErrorBody);

    /// 415.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 415,
        description = "The body is encoded (`Content-Encoding`); send plain JSON."
    )]
    pub struct UnsupportedEncoding(pub ErrorBody);

    /// 422.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 422,
        description = "Refused by a rule (card blocked, too few points, above a cap, offline limit)."
    )]
    pub struct Refused(pub ErrorBody);

    /// 503.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 503,
        description = "The journal cannot record now (disk full, busy, shutting down); retry later."
    )]
    pub struct JournalUnavailable(pub ErrorBody);
}

/// Declares the till token's bearer scheme.
struct TillToken;

impl Modify for TillToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "till_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The till token (`[till_api] token_hash_file`), required when the API is bound beyond loopback.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as pretty JSON with a final newline, as committed.
pub fn document() -> String {
    let mut json = TillApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}

/// The route of the document.
pub fn routes() -> Router<super::TillState> {
    Router::new().route("/v1/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object),
        (status = 401, description = "Missing or wrong till token.", body = protocol::wire::ErrorBody),
    )
)]
pub async fn openapi_json(State(state): State<super::TillState>) -> Json<Value> {
    Json(served(&state.settings.figure_limits))
}

/// The bounds of the document that are `[limits]` keys: where each sits, and its value
/// in `limits`. The generated document (and the committed copy) states the defaults.
fn configured_bounds(limits: &Limits) -> [(&'static str, i64); 2] {
    [
        (
            "/components/schemas/Line/properties/amount_minor/maximum",
            limits.max_line_minor.get(),
        ),
        (
            "/components/schemas/SaleRequest/properties/redeem_points/maximum",
            limits.max_entry_points.get(),
        ),
    ]
}

/// The document this agent serves: the generated one with this till's own `[limits]`
/// in place of the defaults. A till may be configured below them, and a client built
/// from the served document must not send a figure this agent refuses as above a limit.
pub fn served(limits: &Limits) -> Value {
    let mut doc = match serde_json::to_value(TillApiDoc::openapi()) {
        Ok(doc) => doc,
        Err(e) => return serde_json::json!({ "error": e.to_string() }),
    };
    for (pointer, max) in configured_bounds(limits) {
        if let Some(bound) = doc.pointer_mut(pointer) {
            *bound = max.into();
        }
    }
    doc
}

/// A string schema with one of `values`.
fn string_enum<'a>(description: &str, values: impl IntoIterator<Item = &'a str>) -> RefOr<Schema> {
    let mut values: Vec<&str> = values.into_iter().collect();
    values.dedup();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values))
        .into()
}

impl utoipa::PartialSchema for SaleState {
    fn schema() -> RefOr<Schema> {
        let all = [
            Self::Held,
            Self::Committed,
            Self::Cancelled(CancelReason::Till),
            Self::Cancelled(CancelReason::HoldTimeout),
            Self::Returned,
        ];
        string_enum("Where a sale stands.", all.map(Self::as_str))
    }
}
impl utoipa::ToSchema for SaleState {}

impl utoipa::PartialSchema for LimitedBy {
    fn schema() -> RefOr<Schema> {
        let all = [
            Self::Rules,
            Self::Balance,
            Self::OfflineCaps,
            Self::OfflineAllowance,
            Self::CardBlocked,
        ]
        .into_iter()
        .chain(OfflineLimit::ALL.map(Self::Offline));
        string_enum(
            "What bounds `max_redeem_points`.",
            all.map(Self::as_str).collect::<Vec<_>>(),
        )
    }
}
impl utoipa::ToSchema for LimitedBy {}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::money::{Money, Points};
    use protocol::receipt::MAX_LINES;

    /// The committed copy, `docs/openapi/till-api.json`.
    fn committed_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi/till-api.json")
    }

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let checked = protocol::schema::check_committed_document(
            &committed_path(),
            &document(),
            "`UPDATE_OPENAPI=1 cargo test -p agent --lib openapi` \
             (or `pos-agent openapi > docs/openapi/till-api.json`)",
        );
        assert_eq!(checked, Ok(()));
    }

    fn schema(doc: &Value, name: &str) -> Value {
        doc["components"]["schemas"][name].clone()
    }

    #[test]
    fn the_documented_bounds_are_the_default_limits() {
        let doc = serde_json::to_value(TillApiDoc::openapi()).unwrap();
        let line = schema(&doc, "Line");
        assert_eq!(
            line["properties"]["amount_minor"]["maximum"],
            Limits::DEFAULT.max_line_minor.get()
        );
        for request in ["SaleRequest", "QuoteRequest"] {
            let request = schema(&doc, request);
            assert_eq!(request["properties"]["lines"]["maxItems"], MAX_LINES);
        }
        assert_eq!(
            schema(&doc, "SaleRequest")["properties"]["redeem_points"]["maximum"],
            Limits::DEFAULT.max_entry_points.get()
        );
        let ret = schema(&doc, "ReturnLineRequest");
        assert_eq!(ret["properties"]["line"]["maximum"], MAX_LINES - 1);
    }

    #[test]
    fn the_served_document_states_this_till_s_own_limits() {
        let generated = serde_json::to_value(TillApiDoc::openapi()).unwrap();
        // Every bound it replaces is in the generated document, at its default: a
        // renamed schema or field cannot leave the served document silently unchanged.
        for (pointer, default) in configured_bounds(&Limits::DEFAULT) {
            assert_eq!(
                generated.pointer(pointer),
                Some(&Value::from(default)),
                "{pointer}"
            );
        }
        assert_eq!(served(&Limits::DEFAULT), generated);

        let mut lower = Limits::DEFAULT;
        lower.max_line_minor = Money(50_000);
        lower.max_entry_points = Points(2_000);
        let doc = served(&lower);
        let line = schema(&doc, "Line");
        assert_eq!(line["properties"]["amount_minor"]["maximum"], 50_000);
        let sale = schema(&doc, "SaleRequest");
        assert_eq!(sale["properties"]["redeem_points"]["maximum"], 2_000);
        // Nothing else moved.
        let mut back = doc.clone();
        for (pointer, default) in configured_bounds(&Limits::DEFAULT) {
            *back.pointer_mut(pointer).unwrap() = default.into();
        }
        assert_eq!(back, generated);
    }

    #[test]
    fn every_state_and_bound_is_listed() {
        let doc = serde_json::to_value(TillApiDoc::openapi()).unwrap();
        assert_eq!(
            schema(&doc, "SaleState")["enum"],
            serde_json::json!(["held", "committed", "cancelled", "returned"])
        );
        let bounds = schema(&doc, "LimitedBy")["enum"].as_array().unwrap().len();
        assert_eq!(bounds, 5 + OfflineLimit::ALL.len());
    }
}
