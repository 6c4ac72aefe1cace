//! The HQ dashboard under `/admin/` and the admin API under `/v1/admin/`, served by
//! `sync-server run` when `[admin]` is configured: KPI pages with server-rendered SVG
//! charts, card lookup with block/unblock, terminals, flags, overdrafts, quarantine. Plain HTML
//! forms, no script; every figure comes from the same code as the CLI's reports.
//!
//! Who may: [`session`] (the login, sessions, cookies, CSRF). What they see:
//! [`pages`] (one handler per page), drawn with [`html`] and [`charts`].

pub mod charts;
pub mod html;
pub mod pages;
pub mod promotions;
pub mod session;

use crate::store::Store;
use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use config::clock::Clock;
use config::server::AdminSection;
use session::{BadHash, Password, Sessions};
use std::sync::Arc;
use std::time::Duration;

/// What every dashboard handler gets.
pub struct Dashboard {
    /// The ledger store.
    pub store: Arc<dyn Store>,
    /// The server's clock.
    pub clock: Clock,
    /// The admin password's hash.
    pub password: Password,
    /// Live sessions.
    pub sessions: Sessions,
    /// Idle time after which a session ends.
    pub session_ttl: Duration,
    /// Cookies get `Secure` (the server is reached over TLS, here or in front).
    pub secure: bool,
}

impl Dashboard {
    /// The dashboard of `[admin]`; `secure` when browsers reach it over TLS.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Clock,
        admin: &AdminSection,
        secure: bool,
    ) -> Result<Self, BadHash> {
        let session_ttl = Duration::from_secs(u64::from(admin.session_minutes) * 60);
        Ok(Self {
            store,
            clock,
            password: Password::new(&admin.password_hash)?,
            sessions: Sessions::new(session_ttl),
            session_ttl,
            secure,
        })
    }
}

/// The dashboard's routes, to merge into the server's router.
pub fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/admin", get(pages::to_dashboard))
        .route("/admin/", get(pages::kpis))
        .route("/admin/login", get(pages::login_form).post(pages::login))
        .route("/admin/logout", post(pages::logout))
        .route("/admin/cards", get(pages::card))
        .route("/admin/cards/lookup", post(pages::card_lookup))
        .route("/admin/cards/block", post(pages::card_block))
        .route("/admin/terminals", get(pages::terminals))
        .route("/admin/flags", get(pages::flags))
        .route("/admin/overdrafts", get(pages::overdrafts))
        .route("/admin/quarantine", get(pages::quarantine))
        .route("/v1/admin/kpi", get(pages::kpi_json))
        .with_state(dashboard)
}

/// An HTML answer with the headers every dashboard page carries: no caching (pages
/// show balances), no sniffing, and a policy that allows no script at all.
pub fn html_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}
