//! `GET /v1/wallets/{user_id}` and `GET /v1/casino/users/{username}`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use super::handled;
use crate::ids::{CasinoUsername, WalletUserId};
use crate::responses::{self, ApiError};
use crate::services::Services;
use crate::store::{EntryCursor, EntryKind};

/// How many ledger entries a page of the wallet view shows.
const ENTRIES: i32 = 50;

#[derive(Serialize)]
struct BalanceView {
    currency: crate::money::Currency,
    amount: i64,
}

#[derive(Serialize)]
struct EntryView {
    id: String,
    payment_id: String,
    kind: EntryKind,
    amount: i64,
    currency: crate::money::Currency,
    #[serde(with = "time::serde::rfc3339")]
    at: time::OffsetDateTime,
    memo: String,
}

#[derive(Serialize)]
struct WalletView {
    user_id: String,
    balances: Vec<BalanceView>,
    entries: Vec<EntryView>,
    /// Give it as `?cursor=` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// `GET /v1/wallets/{user_id}[?cursor=]`: balances per currency and a page
/// of 50 entries, newest first, with the cursor of the next page, so the
/// whole history can be read. The wallet is the asking merchant's user's:
/// another merchant's user of the same id is another, empty, wallet.
pub async fn wallet(services: &Services, req: Request) -> Response<Body> {
    let request_id = responses::request_id(&req);
    handled("wallet", &request_id, wallet_inner(services, &req)).await
}

async fn wallet_inner(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    let user: WalletUserId = req
        .path_parameters()
        .first("user_id")
        .ok_or_else(|| ApiError::bad_request("missing_user_id", "the wallet user id is missing"))?
        .parse()
        .map_err(|e: crate::ids::IdError| {
            ApiError::bad_request("invalid_user_id", e.to_string())
        })?;
    let cursor = match req.query_string_parameters().first("cursor") {
        None => None,
        Some(text) => Some(EntryCursor::decode(text).ok_or_else(|| {
            ApiError::bad_request("invalid_cursor", "the cursor is not one this API gave")
        })?),
    };
    let mut balances: Vec<BalanceView> = services
        .store
        .balances(&merchant, &user)
        .await?
        .into_iter()
        .map(|b| BalanceView {
            currency: b.amount.currency(),
            amount: b.amount.minor(),
        })
        .collect();
    balances.sort_by_key(|b| b.currency);
    let (entries, next) = services
        .store
        .ledger_entries(&merchant, &user, ENTRIES, cursor.as_ref())
        .await?;
    let entries = entries
        .into_iter()
        .map(|e| EntryView {
            id: e.id(),
            payment_id: e.payment_id.to_string(),
            kind: e.kind(),
            amount: e.amount.minor(),
            currency: e.amount.currency(),
            at: e.at,
            memo: e.memo,
        })
        .collect();
    Ok(responses::json(
        StatusCode::OK,
        &WalletView {
            user_id: user.to_string(),
            balances,
            entries,
            next_cursor: next.map(|c| c.encode()),
        },
    ))
}

#[derive(Serialize)]
struct CasinoBalance {
    amount: i64,
    currency: crate::money::Currency,
}

#[derive(Serialize)]
struct CasinoUserView {
    username: String,
    client_id: String,
    user_type: Option<String>,
    top_manager: String,
    immediate_manager: Option<String>,
    balance: CasinoBalance,
}

/// `GET /v1/casino/users/{username}`.
pub async fn casino_user(services: &Services, req: Request) -> Response<Body> {
    let request_id = responses::request_id(&req);
    handled(
        "casino_user",
        &request_id,
        casino_user_inner(services, &req),
    )
    .await
}

async fn casino_user_inner(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    responses::merchant(req)?;
    let not_found =
        || ApiError::not_found("casino_user_not_found", "the casino has no such player");
    let username: CasinoUsername = req
        .path_parameters()
        .first("username")
        .ok_or_else(not_found)?
        .parse()
        .map_err(|_| not_found())?;
    let unavailable = |e: crate::providers::ProviderError| {
        tracing::warn!(error = %e, "casino lookup failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "provider_unavailable",
            "the casino did not answer",
        )
    };
    let casino = services.casino().await.map_err(unavailable)?;
    let player = casino
        .lookup(&username)
        .await
        .map_err(unavailable)?
        .ok_or_else(not_found)?;
    Ok(responses::json(
        StatusCode::OK,
        &CasinoUserView {
            username: player.username,
            client_id: player.client_id,
            user_type: player.user_type,
            top_manager: player.top_manager,
            immediate_manager: player.immediate_manager,
            balance: CasinoBalance {
                amount: player.balance.minor(),
                currency: player.balance.currency(),
            },
        },
    ))
}
