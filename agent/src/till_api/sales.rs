//! `POST /v1/quote`, `POST /v1/sales`, `…/commit`, `…/cancel`, `POST /v1/returns`.

use super::AppState;
use super::body::{JsonBody, PathId};
use super::error::ApiError;
use crate::cards::{self, CardView};
use crate::policy::{self, Mode};
use crate::sales::hold::{self, HoldContext, LiveBalance};
use crate::sales::{Answer, ReturnRequest, SaleRequest, request_hash, returns, settle};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use protocol::evaluate::{Quote, quote};
use protocol::receipt::Line;
use protocol::{CardId, Points, ReceiptId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/quote", post(quote_receipt))
        .route("/v1/sales", post(open_sale))
        .route("/v1/sales/{receipt_id}/commit", post(commit_sale))
        .route("/v1/sales/{receipt_id}/cancel", post(cancel_sale))
        .route("/v1/returns", post(record_return))
}

fn answer(a: Answer) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        a.json,
    )
        .into_response()
}

impl AppState {
    /// Decides how a redemption of `redeem` points on `card` is checked: standalone,
    /// online with HQ's live balance, or offline with the caps.
    pub(crate) async fn redemption_mode(
        &self,
        card: Option<&CardId>,
        redeem: Points,
    ) -> (Mode, Option<LiveBalance>) {
        let Some(hq) = &self.hq else {
            return (Mode::Standalone, None);
        };
        let Some(card) = card.filter(|_| redeem > Points::ZERO) else {
            return (Mode::Online, None);
        };
        match self.live_balance(hq, card).await {
            Some(live) => (Mode::Online, Some(live)),
            None => (Mode::Offline, None),
        }
    }

    /// HQ's live balance of `card`, or `None` when HQ does not answer in time.
    pub(crate) async fn live_balance(
        &self,
        hq: &crate::hq_client::HqClient,
        card: &CardId,
    ) -> Option<LiveBalance> {
        let timeout = Duration::from_millis(
            self.config
                .sync
                .as_ref()
                .map_or(800, |s| s.live_balance_timeout_ms),
        );
        match hq.live_balance(card, timeout).await {
            Ok(resp) if resp.balance.card == *card => {
                self.link.mark_online();
                Some(LiveBalance {
                    balance: resp.balance,
                    acked_through: resp.acked_through,
                })
            }
            Ok(_) => {
                tracing::warn!(card = %card.masked(), "HQ answered a live balance for another card; ignored");
                None
            }
            Err(e) => {
                tracing::info!(card = %card.masked(), error = %e, "live balance unavailable, using the cache");
                self.link.mark_offline(e.to_string());
                None
            }
        }
    }

    fn hold_context(&self, mode: Mode, live: Option<LiveBalance>) -> HoldContext {
        let now = self.clock.now();
        HoldContext {
            now,
            day: self.clock.store_day(now),
            day_start_unix: self.clock.store_day_start_unix(now),
            rules: self.rules.current(),
            mode,
            live,
            limits: self.config.offline.clone(),
            hold_timeout_secs: self.config.till_api.hold_timeout_secs,
        }
    }
}

async fn open_sale(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<SaleRequest>,
) -> Result<Response, ApiError> {
    let hash = request_hash(&req);
    let (mode, live) = state
        .redemption_mode(req.card.as_ref(), req.redeem_points)
        .await;
    let ctx = state.hold_context(mode, live);
    let answer = state
        .journal
        .write(move |tx| hold::hold(tx, &req, &hash, &ctx))
        .await??;
    if !answer.replayed {
        state.metrics.sale("held");
    }
    Ok(self::answer(answer))
}

async fn commit_sale(
    State(state): State<AppState>,
    PathId(receipt): PathId<ReceiptId>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    // Without HQ, the till grants the welcome bonus itself.
    let welcome = state
        .hq
        .is_none()
        .then(|| state.rules.current().welcome_bonus_points);
    let answer = state
        .journal
        .write(move |tx| settle::commit(tx, &receipt, now, welcome))
        .await??;
    if !answer.replayed {
        state.metrics.sale("committed");
        count_commit(&state, &answer);
        state.link.wake();
    }
    Ok(self::answer(answer))
}

/// Bumps the redemption/accrual counters from a fresh commit answer.
fn count_commit(state: &AppState, answer: &Answer) {
    #[derive(Deserialize)]
    struct Committed {
        redeemed_points: i64,
        accrued_points: i64,
    }
    if let Ok(c) = serde_json::from_str::<Committed>(&answer.json) {
        if c.redeemed_points > 0 {
            state.metrics.redemptions.inc();
            state
                .metrics
                .redeemed_points
                .inc_by(c.redeemed_points.unsigned_abs());
        }
        if c.accrued_points > 0 {
            state.metrics.accruals.inc();
            state
                .metrics
                .accrued_points
                .inc_by(c.accrued_points.unsigned_abs());
        }
    }
}

async fn cancel_sale(
    State(state): State<AppState>,
    PathId(receipt): PathId<ReceiptId>,
) -> Result<Response, ApiError> {
    let answer = state
        .journal
        .write(move |tx| settle::cancel(tx, &receipt))
        .await??;
    if !answer.replayed {
        state.metrics.sale("cancelled");
    }
    Ok(self::answer(answer))
}

async fn record_return(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ReturnRequest>,
) -> Result<Response, ApiError> {
    let hash = request_hash(&req);
    let now = state.clock.now();
    let answer = state
        .journal
        .write(move |tx| returns::record_return(tx, &req, &hash, now))
        .await??;
    if !answer.replayed {
        state.metrics.returns.inc();
        state.link.wake();
    }
    Ok(self::answer(answer))
}

/// `POST /v1/quote` body: a receipt, nothing written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteRequest {
    // The till may send its sale body as is: the receipt id and the points it means
    // to redeem are checked like a sale's but play no part in a quote.
    #[serde(default, rename = "receipt_id")]
    _receipt_id: Option<ReceiptId>,
    #[serde(default)]
    card: Option<CardId>,
    lines: Vec<Line>,
    #[serde(default, rename = "redeem_points")]
    _redeem_points: Points,
}

/// `POST /v1/quote` answer.
#[derive(Debug, Serialize)]
struct QuoteResponse {
    #[serde(flatten)]
    quote: Quote,
    /// What bounds `max_redeem_points`: `rules`, `balance` or an offline cap code.
    limited_by: String,
    /// True when HQ is unreachable and the offline caps apply.
    offline: bool,
    /// The card, if one was given.
    card: Option<CardView>,
}

async fn quote_receipt(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<QuoteRequest>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let day = state.clock.store_day(now);
    let rules = state.rules.current();
    let offline = state.hq.is_some() && !state.link.online();
    let ctx = state.hold_context(if offline { Mode::Offline } else { Mode::Online }, None);
    let card = req.card.clone();
    let (view, usage) = state
        .journal
        .call(move |conn| -> Result<_, crate::journal::JournalError> {
            let Some(card) = card else {
                return Ok((None, None));
            };
            let view = cards::view(conn, &card, now)?;
            let usage = if offline {
                Some(hold::offline_usage(conn, &card, &ctx)?)
            } else {
                None
            };
            Ok((Some(view), usage))
        })
        .await??;
    let state_for_rules = view.as_ref().map(hold::card_state);
    let mut q = quote(&rules, &req.lines, state_for_rules.as_ref(), day)
        .map_err(|e| ApiError::bad_request("bad_request", e.to_string()))?;
    // The rules' cap in points: the redeemable amount in whole points.
    let rule_cap = Points(q.redeemable_minor.get() / rules.point_value_minor.get());
    let mut limited_by = if view.is_some() && q.max_redeem_points < rule_cap {
        "balance".to_owned()
    } else {
        "rules".to_owned()
    };
    if let Some(usage) = usage {
        let headroom = policy::offline_headroom(&usage, &state.config.offline);
        let cap = match &headroom {
            Ok(p) => *p,
            Err(_) => Points::ZERO,
        };
        if cap < q.max_redeem_points {
            q.max_redeem_points = cap;
            limited_by = match headroom {
                Err(r) => r.code.to_owned(),
                Ok(_) => "offline_caps".to_owned(),
            };
        }
    }
    if view.as_ref().is_some_and(|v| v.blocked) {
        q.max_redeem_points = Points::ZERO;
        limited_by = "card_blocked".to_owned();
    }
    let card = view.map(|mut v| {
        v.offline = offline;
        v
    });
    Ok(axum::Json(QuoteResponse {
        quote: q,
        limited_by,
        offline,
        card,
    })
    .into_response())
}
