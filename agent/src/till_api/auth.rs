//! The till token check (`[till_api] token_hash_file`): every request must carry
//! `Authorization: Bearer TOKEN`; a missing or wrong one is answered 401 with the
//! usual JSON error and `WWW-Authenticate: Bearer`, before any handler runs.

use super::error::ApiError;
use crate::till_token::TokenCheck;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Middleware: lets the request through only with the current till token.
pub async fn require_token(
    State(check): State<Arc<TokenCheck>>,
    req: Request,
    next: Next,
) -> Response {
    match http_serve::bearer_token(req.headers()) {
        Some(token) if check.admits(token) => next.run(req).await,
        Some(_) => ApiError::Unauthorized("wrong till token").into_response(),
        None => ApiError::Unauthorized(
            "missing till token: send Authorization: Bearer TOKEN (`pos-agent till-token rotate` makes one)",
        )
        .into_response(),
    }
}
