//! The Payment Engine (seed 002) under `/payment-engine/api/v1`: login and
//! refresh (or `X-API-Key`), transactions, their status, account balances,
//! errors as `{"error": {"code", "message", "details", "timestamp",
//! "requestId"}}`.
//!
//! Controls under `/_sandbox/payment-engine/`: `webhook` `{"url"}`;
//! `transactions/{id}/settle` `{"status": "COMPLETED"|"FAILED",
//! "scheme": "sha256"|"standard", "event_id"?, "timestamp_offset"?,
//! "amount"?}` sends the signed event (the same event_id again is a
//! replay); `balance-event` sends account.balance.updated; `expire-tokens`.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::kit::{self, lock, Authorised, Event, Guarded, Report, TokenBook};

/// Handlers share this provider's state only.
type Shared = std::sync::Arc<State>;

pub const USERNAME: &str = "sandbox-pe-user";
pub const PASSWORD: &str = "sandbox-pe-password";
pub const API_KEY: &str = "sandbox-pe-api-key";
pub const WEBHOOK_SECRET: &str = "sandbox-pe-webhook-secret";
/// `whsec_` + base64 of the Standard Webhooks key.
pub const STANDARD_SECRET: &str = "whsec_c2FuZGJveC1zdGFuZGFyZC13ZWJob29rcy1rZXk=";
pub const ACCOUNT: &str = "acc_merchant_001";

#[derive(Debug, Clone)]
pub struct Transaction {
    pub amount: String,
    pub currency: String,
    pub external_reference: String,
    pub status: String,
}

#[derive(Default)]
pub struct State {
    access: TokenBook,
    refresh: TokenBook,
    pub logins: Mutex<u32>,
    pub refreshes: Mutex<u32>,
    pub transactions: Mutex<HashMap<String, Transaction>>,
    webhook: Mutex<Option<String>>,
}

impl State {
    pub fn set_webhook_url(&self, url: String) {
        *lock(&self.webhook) = Some(url);
    }
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/transactions", post(create))
        .route("/api/v1/transactions/{id}/status", get(status))
        .route("/api/v1/accounts/{id}/balance", get(balance))
}

pub fn controls() -> Router<Shared> {
    Router::new()
        .route("/webhook", post(set_webhook))
        .route("/transactions/{id}/settle", post(settle))
        .route("/balance-event", post(balance_event))
        .route("/expire-tokens", post(kit::expire_tokens::<State>))
}

/// The guide's error body and codes (fixtures/payment_engine/error.reply.json;
/// its table: INVALID_REQUEST 400, UNAUTHORIZED 401, NOT_FOUND 404, ...).
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message, "details": {},
                               "timestamp": "2025-12-07T10:00:00Z", "requestId": ulid::Ulid::new().to_string()}})),
    )
        .into_response()
}

fn tokens(s: &Shared) -> Value {
    let access = format!("pe-a-{}", ulid::Ulid::new());
    let refresh = format!("pe-r-{}", ulid::Ulid::new());
    s.access.issue(&access);
    s.refresh.issue(&refresh);
    json!({"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": 3600,
           "scope": "transaction:read transaction:create account:read"})
}

async fn login(AxState(s): AxState<Shared>, Json(body): Json<Value>) -> Response {
    if body["username"] != USERNAME || body["password"] != PASSWORD {
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "invalid username or password",
        );
    }
    *lock(&s.logins) += 1;
    Json(tokens(&s)).into_response()
}

async fn refresh(AxState(s): AxState<Shared>, Json(body): Json<Value>) -> Response {
    let token = body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !s.refresh.spend(&token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "refresh token is not valid",
        );
    }
    *lock(&s.refreshes) += 1;
    Json(tokens(&s)).into_response()
}

impl Guarded for State {
    fn access(&self) -> &TokenBook {
        &self.access
    }

    fn credentials(&self) -> Vec<String> {
        kit::issued(&[&self.access, &self.refresh])
    }

    /// A bearer token from the login, or the merchant's API key.
    fn admits(&self, headers: &HeaderMap) -> bool {
        headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(API_KEY)
            || self.access.honours_bearer(headers)
    }

    fn refusal(&self) -> Response {
        error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
        )
    }
}

async fn create(_: Authorised, AxState(s): AxState<Shared>, Json(body): Json<Value>) -> Response {
    if body["toAccountId"] != ACCOUNT {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "toAccountId is unknown");
    }
    let Some(amount) = body["amount"].as_number().map(|n| n.to_string()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "amount is required",
        );
    };
    let id = format!("txn_{}", ulid::Ulid::new().to_string().to_lowercase());
    lock(&s.transactions).insert(
        id.clone(),
        Transaction {
            amount: amount.clone(),
            currency: body["currencyCode"].as_str().unwrap_or("USD").to_string(),
            external_reference: body["externalReference"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            status: "PENDING".into(),
        },
    );
    (StatusCode::CREATED, Json(json!({"id": id, "status": "PENDING", "amount": amount.parse::<serde_json::Number>().ok()}))).into_response()
}

async fn status(_: Authorised, AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    match lock(&s.transactions).get(&id).cloned() {
        Some(t) => Json(json!({"id": id, "status": t.status, "amount": t.amount.parse::<serde_json::Number>().ok(),
                                "currencyCode": t.currency})).into_response(),
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such transaction"),
    }
}

async fn balance(_: Authorised, Path(id): Path<String>) -> Response {
    if id != ACCOUNT {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such account");
    }
    // The assembled shape (fixtures/payment_engine/balance.reply.assembled.json):
    // the amount a JSON number, as the guide's error details print it.
    let available: serde_json::Number = "1250.75".parse().unwrap_or_else(|_| 0.into());
    Json(json!({"accountId": id, "availableBalance": available, "currencyCode": "USD"}))
        .into_response()
}

#[derive(Deserialize)]
struct Url {
    url: String,
}

async fn set_webhook(AxState(s): AxState<Shared>, Json(body): Json<Url>) -> StatusCode {
    s.set_webhook_url(body.url);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Settle {
    status: String,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    timestamp_offset: i64,
    #[serde(default)]
    amount: Option<String>,
}

async fn settle(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Settle>,
) -> Result<Json<Value>, StatusCode> {
    let t = kit::change(&s.transactions, &id, |t| {
        t.status = body.status.clone();
        t.clone()
    })?;
    let event_type = if body.status == "COMPLETED" {
        "transaction.completed"
    } else {
        "transaction.failed"
    };
    let event_id = body
        .event_id
        .unwrap_or_else(|| format!("evt_{}", ulid::Ulid::new()));
    let event = json!({
        "eventId": event_id, "eventType": event_type, "timestamp": "2025-12-07T10:00:00Z",
        "data": {"transactionId": id, "transactionReference": t.external_reference, "status": t.status,
                 "amount": body.amount.unwrap_or(t.amount).parse::<serde_json::Number>().ok(), "currencyCode": t.currency},
    });
    let delivered = send(
        &s,
        &event,
        body.scheme.as_deref(),
        &event_id,
        body.timestamp_offset,
    )
    .await;
    Ok(Json(json!({"delivered": delivered, "event_id": event_id})))
}

async fn balance_event(AxState(s): AxState<Shared>) -> Response {
    let event_id = format!("evt_{}", ulid::Ulid::new());
    let event = json!({"eventId": event_id, "eventType": "account.balance.updated", "timestamp": "2025-12-07T10:00:00Z",
                       "data": {"accountId": ACCOUNT, "availableBalance": "1250.75", "currencyCode": "USD"}});
    let delivered = send(&s, &event, None, &event_id, 0).await;
    Json(json!({"delivered": delivered, "event_id": event_id})).into_response()
}

async fn send(s: &Shared, event: &Value, scheme: Option<&str>, event_id: &str, offset: i64) -> u16 {
    let Some(url) = lock(&s.webhook).clone() else {
        return 0;
    };
    let body = event.to_string();
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json");
    if scheme == Some("standard") {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
            + offset;
        let Some(signature) = crate::standard_webhooks::sign(STANDARD_SECRET, event_id, ts, &body)
        else {
            return 0;
        };
        request = request
            .header("webhook-id", event_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature);
    } else {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()) else {
            return 0;
        };
        mac.update(body.as_bytes());
        request = request.header(
            "x-webhook-signature",
            format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        );
    }
    kit::answered(request.body(body)).await
}

/// `trigger` for the Payment Engine: the transaction whose
/// externalReference is our payment id; events signed with the sha256
/// scheme. It has no expiry event. `duplicate` replays the same eventId;
/// `out-of-order` follows the completion with an older, contradicting
/// `transaction.failed` event (the sandbox's record stays COMPLETED).
pub(crate) async fn trigger(s: &Shared, event: Event, payment_id: &str) -> kit::Played {
    let (id, t) = kit::record_of(&s.transactions, |t| t.external_reference == payment_id)?;
    let event_id = format!("evt_{}", ulid::Ulid::new());
    let settle_as = |status: &str| {
        settle(
            AxState(s.clone()),
            Path(id.clone()),
            Json(Settle {
                status: status.into(),
                scheme: None,
                event_id: Some(event_id.clone()),
                timestamp_offset: 0,
                amount: None,
            }),
        )
    };
    let mut report = Report::new(&id);
    match event {
        Event::Paid => {
            report
                .sent("transaction.completed", settle_as("COMPLETED").await)
                .await
        }
        Event::Failed => {
            report
                .sent("transaction.failed", settle_as("FAILED").await)
                .await
        }
        Event::Expired => {
            report = report.note("the Payment Engine sends no event for an expired transaction");
        }
        Event::Duplicate => {
            report
                .sent("transaction.completed", settle_as("COMPLETED").await)
                .await;
            report
                .sent("the same event again", settle_as("COMPLETED").await)
                .await;
        }
        Event::OutOfOrder => {
            report
                .sent("transaction.completed", settle_as("COMPLETED").await)
                .await;
            let stale_id = format!("evt_{}", ulid::Ulid::new());
            let stale = json!({
                "eventId": stale_id, "eventType": "transaction.failed", "timestamp": "2025-12-07T09:59:00Z",
                "data": {"transactionId": id, "transactionReference": t.external_reference, "status": "FAILED",
                         "amount": t.amount.parse::<serde_json::Number>().ok(), "currencyCode": t.currency},
            });
            let answer = send(s, &stale, None, &stale_id, 0).await;
            report.delivered("transaction.failed (older, late)", answer);
        }
    }
    Ok(report)
}

crate::kit::sandbox_provider!("payment_engine" aka ["payment-engine"];
    "/payment-engine" => routes(),
    "/_sandbox/payment-engine" => controls(),
);
