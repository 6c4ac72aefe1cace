//! `POST /v1/quote`, `POST /v1/sales`, `…/commit`, `…/cancel`, `POST /v1/returns`:
//! the HTTP side of [`crate::sales`].

use super::TillState;
use super::body::{JsonBody, PathId, UnusedBody};
use super::error::ApiError;
use super::openapi::answers;
use crate::journal::JournalError;
use crate::redemption::{Authorised, Funding, LiveBalance};
use crate::sales::quote::QuoteRequest;
use crate::sales::{
    Answer, CancelReason, ReturnRequest, SaleContext, SaleRequest, SaleState, cancel, commit, hold,
    quote, request_hash, returns,
};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use protocol::{CardId, Points, ReceiptId};
use serde::Deserialize;
use time::OffsetDateTime;

/// The routes of this module.
pub fn routes() -> Router<TillState> {
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

impl TillState {
    fn sale_context(
        &self,
        now: OffsetDateTime,
        funding: Funding,
        live: Option<LiveBalance>,
    ) -> SaleContext {
        SaleContext {
            now,
            day: self.clock.store_day(now),
            day_start_unix: self.clock.store_day_start_unix(now),
            rules: self.rules.current(),
            mode: funding.mode(self.redemption.standalone()),
            funding,
            live,
            limits: self.settings.offline.clone(),
            figure_limits: self.settings.figure_limits,
            hold_timeout_secs: self.settings.hold_timeout_secs,
        }
    }
}

#[utoipa::path(
    post,
    path = "/v1/sales",
    tag = "sales",
    request_body = crate::sales::SaleRequest,
    responses(
        (status = 200, description = "The sale is held (or the stored answer of the same request).", body = crate::sales::hold::HoldResponse,
            links(
                ("commit" = (operation_id = "commit_sale", parameters(("receipt_id" = "$response.body#/receipt_id")))),
                ("cancel" = (operation_id = "cancel_sale", parameters(("receipt_id" = "$response.body#/receipt_id")))),
            )
        ),
        answers::BadRequest,
        answers::Unauthorized,
        answers::Conflict,
        answers::TooLarge,
        answers::UnsupportedEncoding,
        answers::Refused,
        answers::JournalUnavailable,
    )
)]
pub async fn open_sale(
    State(state): State<TillState>,
    JsonBody(req): JsonBody<SaleRequest>,
) -> Result<Response, ApiError> {
    let hash = request_hash(&req);
    let now = state.clock.now();
    let hold_secs = i64::try_from(state.settings.hold_timeout_secs).unwrap_or(i64::MAX / 2);
    let hold_expires_at = now + time::Duration::seconds(hold_secs);
    let authorised = match &req.card {
        Some(card) if state.redemption.asks_hq(req.redeem_points) => {
            authorise_with_hq(&state, &req, card, now, hold_expires_at).await?
        }
        // Decided in the hold's one write transaction: a single journal round trip.
        _ => Authorised {
            funding: Funding::Local,
            live: None,
        },
    };
    let reserved = match authorised.funding {
        Funding::Online { reserved, .. } => reserved,
        Funding::Local | Funding::Offline(_) => Points::ZERO,
    };
    let ctx = state.sale_context(now, authorised.funding, authorised.live);
    let (receipt, card) = (req.receipt_id.clone(), req.card.clone());
    let rules_version = ctx.rules.version;
    let held = state
        .journal
        .write(move |tx| hold::hold(tx, &req, &hash, &ctx))
        .await;
    let answer = match held {
        Ok(answer) => answer,
        Err(e) => {
            // HQ holds points for a hold the till refused: tell it durably, like a cancel.
            if reserved > Points::ZERO
                && let Some(card) = card
            {
                let released = state
                    .journal
                    .write(move |tx| {
                        cancel::release_unheld(tx, &receipt, &card, reserved, now, rules_version)
                    })
                    .await;
                if let Err(re) = released {
                    tracing::error!(error = %re, "cannot record the release of a refused hold's reservation; HQ releases it when it is abandoned");
                }
                state.link.wake();
            }
            return Err(e.into());
        }
    };
    if !answer.replayed {
        state.metrics.sale(SaleState::Held);
    }
    Ok(self::answer(answer))
}

/// Asks HQ to authorise the redemption `req` asks of `card`. A receipt opened before
/// is answered from the journal (the same answer, or a conflict) without asking HQ
/// again; a new one is first checked for what the till refuses on its face.
async fn authorise_with_hq(
    state: &TillState,
    req: &SaleRequest,
    card: &CardId,
    now: OffsetDateTime,
    hold_expires_at: OffsetDateTime,
) -> Result<Authorised, ApiError> {
    let (receipt, read_card) = (req.receipt_id.clone(), card.clone());
    let (opened, lease) = state
        .journal
        .read(move |tx| -> Result<_, JournalError> {
            Ok((
                tx.hold_request(&receipt)?.is_some(),
                tx.open_lease_of(&read_card)?,
            ))
        })
        .await?;
    if opened {
        return Ok(Authorised {
            funding: Funding::Local,
            live: None,
        });
    }
    hold::refused_on_its_face(
        req,
        &state.rules.current(),
        state.clock.store_day(now),
        &state.settings.figure_limits,
    )?;
    Ok(state
        .redemption
        .authorise(
            card,
            &req.receipt_id,
            req.redeem_points,
            lease.as_ref().map(|l| &l.lease),
            hold_expires_at,
        )
        .await?)
}

#[utoipa::path(
    post,
    path = "/v1/sales/{receipt_id}/commit",
    tag = "sales",
    params(("receipt_id" = protocol::ReceiptId, Path, description = "The receipt number the sale was opened with.")),
    responses(
        (status = 200, description = "The sale is committed (or was: the same answer).", body = crate::sales::commit::CommitResponse),
        answers::BadRequest,
        answers::Unauthorized,
        answers::UnknownReceipt,
        answers::Conflict,
        answers::Refused,
        answers::JournalUnavailable,
    )
)]
pub async fn commit_sale(
    State(state): State<TillState>,
    PathId(receipt): PathId<ReceiptId>,
    _: UnusedBody,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    // Without HQ, the till grants the welcome bonus itself.
    let welcome = state
        .redemption
        .standalone()
        .then(|| state.rules.current().welcome_bonus_points);
    let answer = state
        .journal
        .write(move |tx| commit::commit(tx, &receipt, now, welcome))
        .await?;
    if !answer.replayed {
        state.metrics.sale(SaleState::Committed);
        count_commit(&state, &answer);
        state.link.wake();
    }
    Ok(self::answer(answer))
}

/// Bumps the redemption/accrual counters from a fresh commit answer.
fn count_commit(state: &TillState, answer: &Answer) {
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

#[utoipa::path(
    post,
    path = "/v1/sales/{receipt_id}/cancel",
    tag = "sales",
    params(("receipt_id" = protocol::ReceiptId, Path, description = "The receipt number the sale was opened with.")),
    responses(
        (status = 200, description = "The sale is cancelled (or was: the same answer).", body = crate::sales::cancel::CancelResponse),
        answers::BadRequest,
        answers::Unauthorized,
        answers::UnknownReceipt,
        answers::Conflict,
        answers::JournalUnavailable,
    )
)]
pub async fn cancel_sale(
    State(state): State<TillState>,
    PathId(receipt): PathId<ReceiptId>,
    _: UnusedBody,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let answer = state
        .journal
        .write(move |tx| cancel::cancel(tx, &receipt, now))
        .await?;
    if !answer.replayed {
        state.link.wake();
        state.metrics.sale(SaleState::Cancelled(CancelReason::Till));
    }
    Ok(self::answer(answer))
}

#[utoipa::path(
    post,
    path = "/v1/returns",
    tag = "sales",
    request_body = crate::sales::ReturnRequest,
    responses(
        (status = 200, description = "The return is recorded (or was: the same answer).", body = crate::sales::returns::ReturnResponse),
        answers::BadRequest,
        answers::Unauthorized,
        answers::UnknownReceipt,
        answers::Conflict,
        answers::TooLarge,
        answers::UnsupportedEncoding,
        answers::Refused,
        answers::JournalUnavailable,
    )
)]
pub async fn record_return(
    State(state): State<TillState>,
    JsonBody(req): JsonBody<ReturnRequest>,
) -> Result<Response, ApiError> {
    let hash = request_hash(&req);
    let now = state.clock.now();
    let answer = state
        .journal
        .write(move |tx| returns::record_return(tx, &req, &hash, now))
        .await?;
    if !answer.replayed {
        state.metrics.returns.inc();
        state.link.wake();
    }
    Ok(self::answer(answer))
}

#[utoipa::path(
    post,
    path = "/v1/quote",
    tag = "sales",
    request_body = crate::sales::quote::QuoteRequest,
    responses(
        (status = 200, description = "What the receipt would accrue and may redeem; nothing is recorded.", body = crate::sales::quote::QuoteResponse),
        answers::BadRequest,
        answers::Unauthorized,
        answers::TooLarge,
        answers::UnsupportedEncoding,
        answers::Refused,
        answers::JournalUnavailable,
    )
)]
pub async fn quote_receipt(
    State(state): State<TillState>,
    JsonBody(req): JsonBody<QuoteRequest>,
) -> Result<Response, ApiError> {
    if let Some(card) = &req.card {
        state.check_card_number(card)?;
    }
    let funding = if state.redemption.offline_now() {
        Funding::Offline(state.redemption.offline_rules())
    } else {
        Funding::Local
    };
    let ctx = state.sale_context(state.clock.now(), funding, None);
    let quoted = state
        .journal
        .read(move |tx| quote::quote(tx, &req, &ctx))
        .await?;
    Ok(axum::Json(quoted).into_response())
}
