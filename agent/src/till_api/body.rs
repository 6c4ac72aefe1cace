//! Request extractors that answer bad input with the API's JSON errors (axum's own
//! rejections are plain text and use 422 for some malformed bodies).

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use protocol::ids::Scrubbed;
use serde::de::DeserializeOwned;
use std::str::FromStr;

/// A JSON body parsed into `T` (unknown fields, wrong types and bad ids are 400).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        protocol::json::from_slice(&bytes)
            .map(JsonBody)
            // serde's messages quote the offending value (a card sent as a number).
            .map_err(|e| ApiError::BadJson(Scrubbed::new(e)))
    }
}

/// A body the route has no use for (commit and cancel are named by their path; tills
/// often send `{}`), read to its end all the same: hyper answers `Connection: close`
/// when a handler dropped the request body unread, and the till would then open a
/// new connection for each sale.
pub struct UnusedBody;

impl<S: Send + Sync> FromRequest<S> for UnusedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        read_body(req, state).await.map(|_| Self)
    }
}

/// The whole body, within the router's body limit.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge { limit: None }
        } else {
            ApiError::BadBody(Scrubbed::new(e.body_text()))
        }
    })
}

/// A path segment parsed with `FromStr` (e.g. a card or receipt id); 400 when invalid.
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T> FromRequestParts<S> for PathId<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::BadPath(Scrubbed::new(e.body_text())))?;
        match raw.parse::<T>() {
            Ok(id) => Ok(PathId(id)),
            Err(e) => Err(ApiError::BadId {
                reason: e.to_string(),
                raw,
            }),
        }
    }
}
