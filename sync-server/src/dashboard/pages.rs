//! One handler per dashboard page and form. Pages need a session (else they redirect
//! to the login); forms also need the session's CSRF token. Card numbers appear
//! masked; the card an admin looked up is kept in the session, so no page or URL
//! carries its number.

use super::charts::{Bar, stacked_bars};
use super::html::{csrf_field, escape, page, table, td, td_num};
use super::promotions::promotions_table;
use super::session::{
    LOGIN_COOKIE, SESSION_COOKIE, Session, basic_password, cookie, same_secret, set_cookie,
};
use super::{Dashboard, html_response};
use crate::admin::fmt_time;
use crate::keys::random_secret;
use crate::ledger::kpi::Period;
use crate::reports::{self, kpi};
use axum::Form;
use axum::extract::{Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use protocol::wire::ErrorBody;
use protocol::{CardId, StoreId};
use serde::Deserialize;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;
use time::Date;

type Dash = State<Arc<Dashboard>>;

/// A redirect after a form (303: the browser follows with GET).
fn see_other(to: &'static str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(LOCATION, HeaderValue::from_static(to));
    r
}

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(SET_COOKIE, v);
    }
    r
}

/// The request's session, or the redirect to the login page.
// The error is the page's whole answer, built once per request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn session(d: &Dashboard, headers: &HeaderMap) -> Result<Session, Response> {
    d.sessions
        .find(headers)
        .ok_or_else(|| see_other("/admin/login"))
}

/// The session, if the form carries its CSRF token.
#[allow(clippy::result_large_err)] // As for `session`.
fn checked(d: &Dashboard, headers: &HeaderMap, csrf: &str) -> Result<Session, Response> {
    let s = session(d, headers)?;
    if same_secret(&s.csrf, csrf) {
        Ok(s)
    } else {
        Err(html_response(
            StatusCode::FORBIDDEN,
            page(
                "refused",
                Some(&s.csrf),
                "<p class=\"error\">The form is stale or forged (CSRF token mismatch); nothing was changed.</p>",
            ),
        ))
    }
}

/// An error page for a failure that is not the user's (details in the log only).
fn internal(s: &Session, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "dashboard page failed");
    html_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        page(
            "error",
            Some(&s.csrf),
            "<p class=\"error\">Internal error; see the server log.</p>",
        ),
    )
}

/// `/admin` → `/admin/`.
pub async fn to_dashboard() -> Response {
    see_other("/admin/")
}

/// The login form, with a fresh double-submit token.
pub async fn login_form(State(d): Dash) -> Response {
    login_page(&d, StatusCode::OK, "")
}

fn login_page(d: &Dashboard, status: StatusCode, error: &str) -> Response {
    let Ok(token) = random_secret() else {
        return html_response(
            StatusCode::SERVICE_UNAVAILABLE,
            page(
                "login",
                None,
                "<p class=\"error\">No randomness; try again.</p>",
            ),
        );
    };
    let error = if error.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\">{}</p>", escape(error))
    };
    let body = format!(
        "{error}<form method=\"post\" action=\"/admin/login\">{}\
         <label>Password <input type=\"password\" name=\"password\" id=\"password\" autofocus></label> \
         <button id=\"login\">log in</button></form>",
        csrf_field(&token)
    );
    with_cookie(
        html_response(status, page("login", None, &body)),
        &set_cookie(LOGIN_COOKIE, &token, Duration::from_secs(900), d.secure),
    )
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    password: String,
    csrf: String,
}

/// Checks the password; starts a session.
pub async fn login(State(d): Dash, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let fresh = cookie(&headers, LOGIN_COOKIE).is_some_and(|c| same_secret(c, &form.csrf));
    if !fresh {
        return login_page(
            &d,
            StatusCode::BAD_REQUEST,
            "The login form expired; log in again.",
        );
    }
    if !check_password(&d, form.password).await {
        tracing::warn!("admin login refused: wrong password");
        return login_page(&d, StatusCode::UNAUTHORIZED, "Wrong password.");
    }
    let Ok(id) = d.sessions.start() else {
        return login_page(
            &d,
            StatusCode::SERVICE_UNAVAILABLE,
            "No randomness; try again.",
        );
    };
    tracing::info!("admin logged in");
    let r = with_cookie(
        see_other("/admin/"),
        &set_cookie(SESSION_COOKIE, &id, d.session_ttl, d.secure),
    );
    with_cookie(r, &set_cookie(LOGIN_COOKIE, "", Duration::ZERO, d.secure))
}

/// Argon2 on a blocking thread: it is slow on purpose.
async fn check_password(d: &Arc<Dashboard>, given: String) -> bool {
    let d = Arc::clone(d);
    tokio::task::spawn_blocking(move || d.password.matches(&given))
        .await
        .unwrap_or(false)
}

/// A form that carries only its CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// Ends the session.
pub async fn logout(State(d): Dash, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    match checked(&d, &headers, &form.csrf) {
        Ok(s) => {
            d.sessions.end(&s);
            with_cookie(
                see_other("/admin/login"),
                &set_cookie(SESSION_COOKIE, "", Duration::ZERO, d.secure),
            )
        }
        Err(r) => r,
    }
}

/// The KPI page's query: a period and a store, all optional.
#[derive(Debug, Default, Deserialize)]
pub struct KpiQuery {
    from: Option<String>,
    to: Option<String>,
    store: Option<String>,
}

/// The period and store of a KPI query; default the 30 days up to today.
fn kpi_scope(q: &KpiQuery, today: Date) -> Result<(Period, Option<StoreId>), String> {
    let date = |name: &str, v: &Option<String>, default: Date| match v.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(text) => Date::parse(
            text,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .map_err(|_| format!("{name} must be a date (YYYY-MM-DD)")),
    };
    let to = date("to", &q.to, today)?;
    let from = date("from", &q.from, to.saturating_sub(time::Duration::days(29)))?;
    let store = match q.store.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(StoreId::parse(s).map_err(|e| format!("store: {e}"))?),
    };
    Ok((Period::new(from, to)?, store))
}

/// The KPI page: the period form, the figures and the charts.
pub async fn kpis(State(d): Dash, headers: HeaderMap, Query(q): Query<KpiQuery>) -> Response {
    let s = match session(&d, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let now = d.clock.now();
    let form = |q: &KpiQuery| {
        let v = |o: &Option<String>| escape(o.as_deref().unwrap_or(""));
        format!(
            "<form method=\"get\" action=\"/admin/\">from <input name=\"from\" value=\"{}\" placeholder=\"YYYY-MM-DD\"> \
             to <input name=\"to\" value=\"{}\" placeholder=\"YYYY-MM-DD\"> store <input name=\"store\" value=\"{}\" placeholder=\"all\"> \
             <button>show</button></form>",
            v(&q.from),
            v(&q.to),
            v(&q.store)
        )
    };
    let (period, store) = match kpi_scope(&q, now.date()) {
        Ok(x) => x,
        Err(e) => {
            let body = format!("{}<p class=\"error\">{}</p>", form(&q), escape(&e));
            return html_response(StatusCode::BAD_REQUEST, page("KPIs", Some(&s.csrf), &body));
        }
    };
    let report = match reports::load_kpi(&*d.store, period, store.as_ref(), now).await {
        Ok(r) => r,
        Err(e) => return internal(&s, &e),
    };
    let mut body = form(&q);
    let _ = write!(
        body,
        "<p id=\"period\">{} to {} ({}), definitions in the README's \"KPI definitions\"</p>",
        escape(&report.from),
        escape(&report.to),
        escape(report.store.as_deref().unwrap_or("all stores"))
    );
    // One bar per day of the period, so the x axis is time: days without a receipt
    // are not in the report's `daily` and draw as empty bars.
    let by_day: std::collections::HashMap<&str, &kpi::Day> =
        report.daily.iter().map(|d| (d.day.as_str(), d)).collect();
    let (first, last) = period.days();
    let days: Vec<String> = (first..=last)
        .filter_map(|n| time::Date::from_julian_day(n).ok())
        .map(|d| d.to_string())
        .collect();
    let bars = |f: fn(&kpi::Day) -> (i64, i64)| -> Vec<Bar> {
        days.iter()
            .map(|day| {
                let (members, non_members) = by_day.get(day.as_str()).map_or((0, 0), |d| f(d));
                Bar {
                    label: day.clone(),
                    members,
                    non_members,
                }
            })
            .collect()
    };
    body.push_str(&stacked_bars(
        "Revenue per day (minor units)",
        &bars(|d| (d.member_revenue_minor, d.non_member_revenue_minor)),
    ));
    body.push_str(&stacked_bars(
        "Receipts per day",
        &bars(|d| (d.member_receipts, d.non_member_receipts)),
    ));
    body.push_str(&promotions_table(&report.promotions));
    let rows: Vec<String> = kpi::figures(&report)
        .iter()
        .map(|(name, value)| {
            format!(
                "{}<td class=\"n\" data-figure=\"{}\">{}</td>",
                td(name),
                escape(name),
                escape(value)
            )
        })
        .collect();
    body.push_str(&table(&["figure", "value"], &rows));
    html_response(StatusCode::OK, page("KPIs", Some(&s.csrf), &body))
}

/// `GET /v1/admin/kpi`: the KPI report as JSON, for a session or HTTP Basic
/// (`admin:<password>`).
pub async fn kpi_json(State(d): Dash, headers: HeaderMap, Query(q): Query<KpiQuery>) -> Response {
    let allowed = match d.sessions.find(&headers) {
        Some(_) => true,
        None => match basic_password(&headers) {
            Some(given) => check_password(&d, given).await,
            None => false,
        },
    };
    let error = |status: StatusCode, code: &str, message: String| {
        (status, axum::Json(ErrorBody::new(code, message))).into_response()
    };
    if !allowed {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "log in at /admin/login or send HTTP Basic admin:<password>".to_owned(),
        );
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Basic realm=\"loyalty HQ\""),
        );
        return r;
    }
    let now = d.clock.now();
    let (period, store) = match kpi_scope(&q, now.date()) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e),
    };
    match reports::load_kpi(&*d.store, period, store.as_ref(), now).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "KPI report failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the report could not be computed; see the server log".to_owned(),
            )
        }
    }
}

/// The card page: the lookup form and the looked-up card.
pub async fn card(State(d): Dash, headers: HeaderMap) -> Response {
    let s = match session(&d, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut body = format!(
        "<form method=\"post\" action=\"/admin/cards/lookup\">{}<label>Card number \
         <input name=\"card\" id=\"card\" autocomplete=\"off\"></label> <button id=\"lookup\">look up</button></form>",
        csrf_field(&s.csrf)
    );
    if let Some(card) = &s.card {
        match d.store.card_report(card, 50).await {
            Err(e) => return internal(&s, &e),
            Ok(None) => {
                let _ = write!(
                    body,
                    "<p>Card {}: HQ holds no record of it.</p>",
                    card.masked()
                );
            }
            Ok(Some(r)) => {
                let c = &r.state;
                let _ = write!(
                    body,
                    "<h2>Card <span id=\"masked\">{}</span></h2>{}",
                    card.masked(),
                    table(
                        &[
                            "balance",
                            "pending",
                            "available",
                            "tier",
                            "blocked",
                            "flags"
                        ],
                        &[format!(
                            "{}{}{}{}{}{}",
                            td_num(c.balance),
                            td_num(c.pending),
                            td_num(c.available()),
                            td(c.tier.as_deref().unwrap_or("-")),
                            td(&match (&c.blocked, &r.block_reason) {
                                (false, _) => "no".to_owned(),
                                (true, reason) =>
                                    format!("yes {}", reason.as_deref().unwrap_or("")),
                            }),
                            td(&c.flags.to_string()),
                        )]
                    )
                );
                let (action, label) = if c.blocked {
                    ("unblock", "unblock")
                } else {
                    ("block", "block")
                };
                let _ = write!(
                    body,
                    "<form method=\"post\" action=\"/admin/cards/block\">{}<input type=\"hidden\" name=\"action\" value=\"{action}\">\
                     <input name=\"reason\" placeholder=\"reason\"> <button id=\"block\">{label}</button></form>",
                    csrf_field(&s.csrf)
                );
                let rows: Vec<String> = r
                    .recent
                    .iter()
                    .map(|l| {
                        format!(
                            "{}{}{}{}",
                            td(&fmt_time(l.at)),
                            td(l.kind.as_str()),
                            td_num(l.delta_balance),
                            td_num(l.delta_pending)
                        )
                    })
                    .collect();
                body.push_str(&table(&["at", "kind", "balance", "pending"], &rows));
            }
        }
    }
    html_response(StatusCode::OK, page("cards", Some(&s.csrf), &body))
}

/// The card lookup form.
#[derive(Deserialize)]
pub struct LookupForm {
    csrf: String,
    card: String,
}

/// Remembers the card to show, in the session.
pub async fn card_lookup(
    State(d): Dash,
    headers: HeaderMap,
    Form(form): Form<LookupForm>,
) -> Response {
    let s = match checked(&d, &headers, &form.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match CardId::parse(form.card.trim()) {
        Ok(card) => {
            d.sessions.set_card(&s, Some(card));
            see_other("/admin/cards")
        }
        Err(e) => html_response(
            StatusCode::BAD_REQUEST,
            page(
                "cards",
                Some(&s.csrf),
                &format!(
                    "<p class=\"error\">{}</p><p><a href=\"/admin/cards\">back</a></p>",
                    escape(&e.to_string())
                ),
            ),
        ),
    }
}

/// The block/unblock form.
#[derive(Deserialize)]
pub struct BlockForm {
    csrf: String,
    action: String,
    #[serde(default)]
    reason: String,
}

/// Blocks or unblocks the session's card.
pub async fn card_block(
    State(d): Dash,
    headers: HeaderMap,
    Form(form): Form<BlockForm>,
) -> Response {
    let s = match checked(&d, &headers, &form.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let blocked = match form.action.as_str() {
        "block" => true,
        "unblock" => false,
        _ => {
            return html_response(
                StatusCode::BAD_REQUEST,
                page(
                    "cards",
                    Some(&s.csrf),
                    "<p class=\"error\">action must be block or unblock</p>",
                ),
            );
        }
    };
    let Some(card) = &s.card else {
        return see_other("/admin/cards");
    };
    let reason = form.reason.trim();
    let reason = (blocked && !reason.is_empty()).then_some(reason);
    if let Err(e) = d
        .store
        .set_blocked(card, blocked, reason, d.clock.now())
        .await
    {
        return internal(&s, &e);
    }
    tracing::info!(card = %card.masked(), blocked, "card block changed from the dashboard");
    see_other("/admin/cards")
}

/// Every terminal with its last push.
pub async fn terminals(State(d): Dash, headers: HeaderMap) -> Response {
    let s = match session(&d, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let list = match d.store.list_terminals().await {
        Ok(l) => l,
        Err(e) => return internal(&s, &e),
    };
    let rows: Vec<String> = list
        .iter()
        .map(|t| {
            format!(
                "{}{}{}{}{}",
                td(&format!("{}/{}", t.store, t.terminal)),
                td_num(t.acked_through),
                td(&t.last_push_at.map_or_else(|| "never".to_owned(), fmt_time)),
                td(&fmt_time(t.created_at)),
                td(&t.revoked_at.map_or_else(
                    || "active".to_owned(),
                    |r| format!("revoked {}", fmt_time(r))
                )),
            )
        })
        .collect();
    let body = table(
        &["terminal", "acked through", "last push", "added", "state"],
        &rows,
    );
    html_response(StatusCode::OK, page("terminals", Some(&s.csrf), &body))
}

/// Every flagged entry.
pub async fn flags(State(d): Dash, headers: HeaderMap) -> Response {
    let s = match session(&d, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let list = match d.store.flagged_entries().await {
        Ok(l) => l,
        Err(e) => return internal(&s, &e),
    };
    let rows: Vec<String> = list
        .iter()
        .map(|f| {
            format!(
                "{}{}{}{}{}",
                td(&fmt_time(f.at)),
                td(&format!("{}/{} seq {}", f.store, f.terminal, f.seq)),
                td(&f.card.masked().to_string()),
                td(&f.kind.to_string()),
                td(&f.detail),
            )
        })
        .collect();
    let body = table(&["at", "entry", "card", "rule", "detail"], &rows);
    html_response(StatusCode::OK, page("flags", Some(&s.csrf), &body))
}

/// Cards with a negative balance.
pub async fn overdrafts(State(d): Dash, headers: HeaderMap) -> Response {
    let s = match session(&d, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let list = match d.store.overdrafts().await {
        Ok(l) => l,
        Err(e) => return internal(&s, &e),
    };
    let rows: Vec<String> = list
        .iter()
        .map(|o| {
            format!(
                "{}{}{}",
                td(&o.card.masked().to_string()),
                td_num(o.balance),
                td_num(o.flagged.len())
            )
        })
        .collect();
    let body = table(&["card", "balance", "flagged entries"], &rows);
    html_response(StatusCode::OK, page("overdrafts", Some(&s.csrf), &body))
}

/// Entries HQ could not apply (quarantined), newest first as the store lists them;
/// `sync-server quarantine retry ID` re-applies one after a fix.
pub async fn quarantine(State(d): Dash, headers: HeaderMap) -> Response {
    let s = match session(&d, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let list = match d.store.quarantined().await {
        Ok(l) => l,
        Err(e) => return internal(&s, &e),
    };
    let rows: Vec<String> = list
        .iter()
        .map(|q| {
            let state = q.released_at.map_or_else(
                || "quarantined".to_owned(),
                |at| format!("applied by a retry at {}", fmt_time(at)),
            );
            format!(
                "{}{}{}{}{}{}{}",
                td_num(q.id),
                td(&fmt_time(q.quarantined_at)),
                td(&format!("{}/{} seq {}", q.store, q.terminal, q.seq)),
                td(&q
                    .card
                    .as_ref()
                    .map_or("-".to_owned(), |c| c.masked().to_string())),
                td(&q.kind.to_string()),
                td(&q.reason),
                td(&state),
            )
        })
        .collect();
    let body = format!(
        "<p>Entries HQ could not apply: nothing of them is in any balance; the till moved on. \
         After a fix, <code>sync-server quarantine retry ID</code> applies one.</p>{}",
        table(
            &["id", "at", "entry", "card", "kind", "reason", "state"],
            &rows
        )
    );
    html_response(StatusCode::OK, page("quarantine", Some(&s.csrf), &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::AUTHORIZATION;
    use time::macros::date;

    #[test]
    fn a_kpi_query_defaults_to_the_last_30_days_and_checks_its_fields() {
        let today = date!(2026 - 11 - 30);
        let (p, store) = kpi_scope(&KpiQuery::default(), today).expect("defaults");
        assert_eq!((p.from, p.to, store), (date!(2026 - 11 - 01), today, None));
        let q = KpiQuery {
            from: Some("1997-01-01".into()),
            to: Some("1997-12-31".into()),
            store: Some("store-1".into()),
        };
        let (p, store) = kpi_scope(&q, today).expect("explicit");
        assert_eq!(
            (p.from, p.to),
            (date!(1997 - 01 - 01), date!(1997 - 12 - 31))
        );
        assert_eq!(
            store.map(|s| s.as_str().to_owned()),
            Some("store-1".to_owned())
        );
        let bad = KpiQuery {
            from: Some("yesterday".into()),
            ..KpiQuery::default()
        };
        assert!(kpi_scope(&bad, today).is_err());
    }

    #[test]
    fn basic_auth_names_the_admin_user() {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic YWRtaW46czNjcmV0"),
        ); // admin:s3cret
        assert_eq!(basic_password(&h).as_deref(), Some("s3cret"));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic cm9vdDpzM2NyZXQ="),
        ); // root:s3cret
        assert_eq!(basic_password(&h), None);
    }
}
