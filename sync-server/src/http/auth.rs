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
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Most tokens [`KnownTokens`] holds (a few hundred bytes each); when full it starts
/// afresh, and each till's next push looks its token up again.
const KNOWN_TOKENS: usize = 100_000;

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

/// The terminals that pushed lately, by their token's hash: a push whose token is
/// here skips the lookup (on SQLite a hand-off to a blocking thread and a read
/// transaction, on PostgreSQL a pooled connection and a round trip).
///
/// A token held here is only a claim: the token may have been revoked or rotated
/// since, on this instance or another, or by `sync-server terminal` in another
/// process. The push's own transaction checks that the terminal's row still admits
/// the token ([`crate::store::statements::TerminalState::admits`]), and an answer
/// given before that transaction is preceded by a fresh lookup ([`Caller::confirm`]),
/// so a token no longer active is refused as at once as when it was looked up for
/// every request, and with the same answer. Only pushes use it: every other
/// endpoint still looks the token up (or reads under it) in its own request.
#[derive(Default)]
pub struct KnownTokens {
    known: Mutex<HashMap<TokenHash, TerminalIdentity>>,
}

impl KnownTokens {
    fn get(&self, token: &TokenHash) -> Option<TerminalIdentity> {
        self.lock().get(token).cloned()
    }

    fn remember(&self, identity: &TerminalIdentity) {
        let mut known = self.lock();
        if known.len() >= KNOWN_TOKENS {
            known.clear();
        }
        known.insert(identity.token.clone(), identity.clone());
    }

    fn forget(&self, token: &TokenHash) {
        self.lock().remove(token);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, TerminalIdentity>> {
        // Every update is a single map operation: a panic cannot leave it half done.
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The terminal a push comes from: its token looked up for this request, or found in
/// [`KnownTokens`] (confirmed by the push's transaction, or by [`Self::confirm`]).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The terminal.
    pub terminal: TerminalIdentity,
    /// True when it came from [`KnownTokens`], not from a lookup for this request.
    remembered: bool,
}

impl Caller {
    /// The terminal of `token`, or [`ApiError::Unauthorized`].
    pub async fn of(state: &AppState, token: &Bearer) -> Result<Self, ApiError> {
        if let Some(terminal) = state.known_tokens.get(&token.0) {
            return Ok(Self {
                terminal,
                remembered: true,
            });
        }
        let Terminal(terminal) = Terminal::of(state, token).await?;
        state.known_tokens.remember(&terminal);
        Ok(Self {
            terminal,
            remembered: false,
        })
    }

    /// Ok when the token is an active terminal's: at once when it was looked up for
    /// this request, else by looking it up now. For an answer given before the
    /// push's transaction checked the token: a token no longer active is told
    /// [`ApiError::Unauthorized`] first, as when it is looked up before the body is
    /// read.
    pub async fn confirm(&self, state: &AppState) -> Result<(), ApiError> {
        if !self.remembered {
            return Ok(());
        }
        let token = Bearer(self.terminal.token.clone());
        match Terminal::of(state, &token).await {
            Ok(Terminal(found)) if found.key == self.terminal.key => Ok(()),
            Ok(_) | Err(ApiError::Unauthorized) => {
                self.forget(state);
                Err(ApiError::Unauthorized)
            }
            Err(e) => Err(e),
        }
    }

    /// `refusal`, once [`Self::confirm`] found the token active.
    pub async fn refuse(&self, state: &AppState, refusal: ApiError) -> ApiError {
        match self.confirm(state).await {
            Ok(()) => refusal,
            Err(e) => e,
        }
    }

    /// Drops the token from [`KnownTokens`]: the push's transaction found it no
    /// longer admitted.
    pub fn forget(&self, state: &AppState) {
        state.known_tokens.forget(&self.terminal.token);
    }
}

/// Before the body is read, as [`Terminal`]: a caller that is not a terminal is
/// refused without reading its body.
impl FromRequestParts<AppState> for Caller {
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
