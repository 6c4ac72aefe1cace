//! The sync API's OpenAPI 3.1 document, generated from the handlers' annotations and
//! the wire types, served at `GET /v1/openapi.json` (no token: it describes the API,
//! nothing of any terminal) and printed by `sync-server openapi` (committed as
//! `docs/openapi/sync-api.json`).

use super::{cards, escrow, health, metrics, pull, push};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's root: every route of [`super::router`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sync-server sync API",
        description = "The API terminals (pos-agent) call at HQ. Every call but `/v1/health`, \
            `/metrics` and this document carries the terminal's token (`Authorization: Bearer …`, \
            from `sync-server terminal add`). Request bodies carry the protocol version in \
            `protocol`, requests without a body in the `x-loyalty-protocol` header; bodies may be \
            gzip-encoded. Every error answers `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        push::push,
        pull::pull,
        cards::live_balance,
        escrow::reserve,
        escrow::lease_sync,
        escrow::use_token,
        health::health,
        metrics::metrics,
        openapi_json,
    ),
    // Every error answer's body; `answers` refer to it without registering it.
    components(schemas(protocol::wire::ErrorBody)),
    modifiers(&Schemes),
)]
pub struct SyncApiDoc;

/// Declares the terminal token's bearer scheme and `/metrics`' admin password.
struct Schemes;

impl Modify for Schemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "terminal_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A terminal's token, printed once by `sync-server terminal add`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "`admin:<password>` of `[admin]` (a peer on this host needs none).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The error answers the terminal endpoints share, each described once (status, meaning,
/// `ErrorBody`): a handler lists those it can give after its success, as
/// `responses((status = 200, …), answers::BadRequest, answers::Unauthorized, …)`.
/// An answer only one handler gives stays in that handler's list.
pub mod answers {
    use protocol::wire::ErrorBody;

    /// 400.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 400,
        description = "Malformed request (JSON, query, cursor, card number, figures out of range) or a protocol version this server does not speak (`unsupported_protocol`)."
    )]
    pub struct BadRequest(pub ErrorBody);

    /// 401.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 401,
        description = "Missing, unknown or revoked terminal token."
    )]
    pub struct Unauthorized(pub ErrorBody);

    /// 409.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 409,
        description = "Refused: the batch does not follow what HQ holds (`seq_gap`, `seq_conflict`, `id_conflict`; the error carries `acked_through`), or an escrow refusal (`insufficient_points` with `spendable`, `card_blocked`, `reservation_settled`, `stale_epoch`, `push_first`, `token_used`)."
    )]
    pub struct Conflict(pub ErrorBody);

    /// 413.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 413,
        description = "The (decompressed) body is larger than the server accepts."
    )]
    pub struct TooLarge(pub ErrorBody);

    /// 415.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 415, description = "A `Content-Encoding` other than gzip.")]
    pub struct UnsupportedEncoding(pub ErrorBody);

    /// 500.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 500,
        description = "A bug or a broken database at HQ (details in the server log)."
    )]
    pub struct Internal(pub ErrorBody);

    /// 503.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 503,
        description = "The database is not available; retry later."
    )]
    pub struct Unavailable(pub ErrorBody);
}

/// The document as pretty JSON with a final newline, as committed.
pub fn document() -> String {
    let mut json = SyncApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}

/// This document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object),
    )
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(SyncApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::wire::PROTOCOL_VERSION;
    use serde_json::Value;

    fn committed_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi/sync-api.json")
    }

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let checked = protocol::schema::check_committed_document(
            &committed_path(),
            &document(),
            "`UPDATE_OPENAPI=1 cargo test -p sync-server --lib openapi` \
             (or `sync-server openapi > docs/openapi/sync-api.json`)",
        );
        assert_eq!(checked, Ok(()));
    }

    #[test]
    fn every_request_states_the_protocol_version_this_build_speaks() {
        let doc: Value = serde_json::to_value(SyncApiDoc::openapi()).unwrap();
        for request in [
            "PushRequest",
            "ReserveRequest",
            "LeaseSyncRequest",
            "TokenUseRequest",
        ] {
            let protocol = &doc["components"]["schemas"][request]["properties"]["protocol"];
            assert_eq!(protocol["minimum"], PROTOCOL_VERSION, "{request}");
            assert_eq!(protocol["maximum"], PROTOCOL_VERSION, "{request}");
        }
        let schemas = &doc["components"]["schemas"];
        for (schema, field) in [
            ("ReserveRequest", "points"),
            ("LeaseSyncRequest", "max_total"),
            ("LeaseWant", "max_points"),
        ] {
            let bound = &schemas[schema]["properties"][field]["maximum"];
            assert_eq!(*bound, escrow::MAX_POINTS, "{schema}.{field}");
        }
        assert_eq!(
            schemas["LeaseSyncRequest"]["properties"]["want"]["maxItems"],
            escrow::MAX_WANTED
        );
        let pull = &doc["paths"]["/v1/sync/pull"]["get"]["parameters"];
        let header = pull
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "x-loyalty-protocol")
            .unwrap();
        assert_eq!(header["schema"]["minimum"], PROTOCOL_VERSION);
    }
}
