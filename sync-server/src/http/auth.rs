//! Who is calling: the bearer token names the terminal, never the body. Also the
//! protocol-version header that GET requests carry.

use super::AppState;
use super::error::ApiError;
use crate::keys::TokenHash;
use crate::store::TerminalIdentity;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use protocol::ids::Scrubbed;
use protocol::wire::{PROTOCOL_HEADER, PROTOCOL_VERSION};

/// The authenticated, active terminal of a request.
#[derive(Debug, Clone)]
pub struct Terminal(pub TerminalIdentity);

impl Terminal {
    /// The active terminal `token` belongs to, or [`ApiError::Unauthorized`].
    pub async fn of(state: &AppState, token: &Bearer) -> Result<Self, ApiError> {
        let identity = state
            .store
            .authenticate(&token.0)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Self(identity))
    }
}

impl FromRequestParts<AppState> for Terminal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = Bearer::from_request_parts(parts, state).await?;
        Self::of(state, &token).await
    }
}

/// The hash of a request's bearer token, not authenticated yet: for a handler that
/// authenticates it in the same database round trip as its reads (and answers
/// [`ApiError::Unauthorized`] when that finds no active terminal).
#[derive(Debug, Clone)]
pub struct Bearer(pub TokenHash);

impl Bearer {
    /// `refusal`, the answer to a request found bad before it was authenticated, once
    /// the token is found to be an active terminal's: a caller that is not a terminal
    /// is told so first ([`ApiError::Unauthorized`]), as by every endpoint.
    pub async fn refuse(&self, state: &AppState, refusal: ApiError) -> ApiError {
        match Terminal::of(state, self).await {
            Ok(_) => refusal,
            Err(e) => e,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let token = http_serve::bearer_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        Ok(Self(TokenHash::of(token)))
    }
}

/// Proof that a request without a body declared the protocol version this server
/// speaks in [`PROTOCOL_HEADER`].
#[derive(Debug, Clone, Copy)]
pub struct ProtocolHeader;

impl<S: Send + Sync> FromRequestParts<S> for ProtocolHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let value = parts.headers.get(PROTOCOL_HEADER).map(|v| v.to_str());
        match value {
            Some(Ok(v)) if v.trim() == PROTOCOL_VERSION.to_string() => Ok(Self),
            Some(Ok(v)) => Err(ApiError::UnsupportedProtocol(Scrubbed::new(format_args!(
                "protocol {v:?} is not supported; this server speaks {PROTOCOL_VERSION}"
            )))),
            Some(Err(_)) => Err(ApiError::UnsupportedProtocol(Scrubbed::new(format_args!(
                "{PROTOCOL_HEADER} is not readable text"
            )))),
            None => Err(ApiError::UnsupportedProtocol(Scrubbed::new(format_args!(
                "missing {PROTOCOL_HEADER} header (this server speaks {PROTOCOL_VERSION})"
            )))),
        }
    }
}
