//! Paygram: `POST /paygram/{token}/IssueInvoice` and `.../InvoiceInfo`, as
//! the official SDK calls them. Errors are HTTP 200 with a responseCode
//! (551 duplicate requestId, 552 bad token, 553 not found).
//!
//! Controls under `/_sandbox/paygram/`: `callback-url` `{"url"}` sets where
//! callbacks go (Paygram keeps it per merchant, not per invoice);
//! `invoices/{code}/status` `{"status": 2, "callback": "real"|"seed"|"none"}`
//! sets an invoice's state and sends the callback; `invoices/{code}/callback`
//! `{"shape", "status"}` sends one again (or a forged one).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::kit::{self, deliver, lock, Event, Report, Shape};

/// Handlers share this provider's state only.
type Shared = std::sync::Arc<State>;

pub const TOKEN: &str = "sandbox-paygram-token";

#[derive(Debug, Clone)]
pub struct Invoice {
    pub request_id: String,
    pub currency_code: u32,
    pub amount: String,
    pub callback_data: String,
    pub status: i64,
}

#[derive(Default)]
pub struct State {
    pub invoices: Mutex<HashMap<String, Invoice>>,
    pub callback_url: Mutex<Option<String>>,
}

impl State {
    /// Where Paygram sends callbacks (set once per merchant at Paygram).
    pub fn set_callback_url(&self, url: String) {
        *lock(&self.callback_url) = Some(url);
    }
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/{token}/{method}", post(call))
        .route("/pay/{code}", axum::routing::get(pay_page))
}

pub fn controls() -> Router<Shared> {
    Router::new()
        .route("/callback-url", post(set_callback_url))
        .route("/invoices/{code}/status", post(set_status))
        .route("/invoices/{code}/callback", post(send_callback))
}

/// The invoice's pay page (PayGram's bot, in a browser).
async fn pay_page(AxState(s): AxState<Shared>, Path(code): Path<String>) -> Response {
    let Some(i) = lock(&s.invoices).get(&code).cloned() else {
        return crate::payer::unknown();
    };
    let currency = if i.currency_code == 5 { "USDT" } else { "PHPT" };
    crate::payer::page(crate::payer::Page {
        provider: "paygram",
        title: "PayGram: pay the invoice",
        amount: &format!("{} {currency}", i.amount),
        payment_id: &i.callback_data,
        back: crate::payer::Back::default(),
    })
}

/// A refusal: `responseCode` is one of the SDK's `ResponseCodes`
/// (fixtures/paygram/enums.json); a request it cannot take is 500
/// (`ResponseGenericError`), as no narrower code exists.
fn reply(code: i64, message: &str) -> Response {
    Json(json!({"success": false, "responseCode": code, "message": message})).into_response()
}

async fn call(
    AxState(s): AxState<Shared>,
    Path((token, method)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if token != TOKEN {
        return reply(552, "authorization failed");
    }
    match method.as_str() {
        "IssueInvoice" => issue(&s, &body, &crate::payer::origin(&headers)),
        "InvoiceInfo" => info(&s, &body),
        _ => (StatusCode::NOT_FOUND, "unknown method").into_response(),
    }
}

fn issue(s: &Shared, body: &Value, origin: &str) -> Response {
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    // The SDK's requestId is a C# long: a JSON integer, not a string.
    let Some(request_id) = body
        .get("requestId")
        .and_then(Value::as_i64)
        .map(|n| n.to_string())
    else {
        return reply(500, "requestId must be a 64-bit integer");
    };
    let currency_code = body
        .get("currencyCode")
        .and_then(Value::as_u64)
        .unwrap_or(0) as u32;
    if currency_code != 11 && currency_code != 5 {
        return reply(500, "unsupported currency");
    }
    let amount = match body.get("amount") {
        Some(Value::Number(n)) => n.to_string(),
        _ => return reply(500, "amount is required"),
    };
    let decimals = if currency_code == 5 { 6 } else { 2 };
    if amount.starts_with('-')
        || amount
            .split_once('.')
            .is_some_and(|(_, f)| f.len() > decimals)
    {
        return reply(500, "invalid amount");
    }
    let mut invoices = lock(&s.invoices);
    if invoices.values().any(|i| i.request_id == request_id) {
        return reply(551, "duplicate requestId");
    }
    let code = format!("PG{}", &ulid::Ulid::new().to_string()[..16]);
    let invoice = Invoice {
        request_id,
        currency_code,
        amount: amount.clone(),
        callback_data: text("callbackData").unwrap_or_default(),
        status: 1,
    };
    invoices.insert(code.clone(), invoice);
    Json(json!({
        "success": true,
        "responseCode": 200,
        "invoiceCode": code,
        // The real payUrl opens PayGram's Telegram bot; the sandbox's opens
        // its own pay page (`pay_page`).
        "payUrl": format!("{origin}/paygram/pay/{code}"),
        "status": 1,
        "amount": amount.parse::<serde_json::Number>().ok(),
        "currencyCode": currency_code,
    }))
    .into_response()
}

fn info(s: &Shared, body: &Value) -> Response {
    let code = body
        .get("invoiceCode")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(i) = lock(&s.invoices).get(code).cloned() else {
        return reply(553, "invoice not found");
    };
    // Answer in the SDK's PascalCase, which the client must accept too.
    Json(json!({
        "Success": true,
        "ResponseCode": 200,
        "InvoiceCode": code,
        "Status": i.status,
        "Amount": i.amount.parse::<serde_json::Number>().ok(),
        "CurrencyCode": i.currency_code,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct CallbackUrl {
    url: String,
}

async fn set_callback_url(
    AxState(s): AxState<Shared>,
    Json(body): Json<CallbackUrl>,
) -> StatusCode {
    *lock(&s.callback_url) = Some(body.url);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct SetStatus {
    status: i64,
    #[serde(default)]
    callback: Option<String>,
}

async fn set_status(
    AxState(s): AxState<Shared>,
    Path(code): Path<String>,
    Json(body): Json<SetStatus>,
) -> Result<Json<Value>, StatusCode> {
    let invoice = kit::change(&s.invoices, &code, |i| {
        i.status = body.status;
        i.clone()
    })?;
    let shape = match body.callback.as_deref() {
        Some("none") => return Ok(kit::delivered(0)),
        Some("seed") => Shape::Seed,
        _ => Shape::Real,
    };
    Ok(kit::delivered(
        send(&s, &code, &invoice, word(body.status), shape).await,
    ))
}

async fn send_callback(
    AxState(s): AxState<Shared>,
    Path(code): Path<String>,
    Json(body): Json<kit::Again>,
) -> Result<Json<Value>, StatusCode> {
    let invoice = kit::copy_of(&s.invoices, &code)?;
    let status = body
        .status
        .unwrap_or_else(|| word(invoice.status).to_string());
    Ok(kit::delivered(
        send(&s, &code, &invoice, &status, body.shape).await,
    ))
}

fn word(status: i64) -> &'static str {
    match status {
        2 => "paid",
        3 => "cancelled",
        5 | 7 => "failed",
        _ => "unpaid",
    }
}

async fn send(s: &Shared, code: &str, i: &Invoice, status: &str, shape: Shape) -> u16 {
    let Some(url) = lock(&s.callback_url).clone() else {
        return 0;
    };
    let body = match shape {
        Shape::Real => json!({
            "DateUtc": "2025-12-07T10:00:00Z",
            "CallbackData": i.callback_data,
            "UserCliId": 424242,
            "InvoiceInfo": {
                "InvoiceCode": code,
                "TransactionAmount": i.amount.parse::<serde_json::Number>().ok(),
                "Balance": 0,
            },
        }),
        Shape::Seed => json!({
            "invoice_code": code,
            "status": status,
            "amount": i.amount,
            "currency": if i.currency_code == 5 { "USDT" } else { "PHPT" },
            "timestamp": "2025-12-07T10:00:00Z",
        }),
    };
    deliver(&url, &body).await
}

/// `trigger` for Paygram: the invoice whose callbackData is our payment id.
/// Paygram's real callback carries no status (the receiver asks
/// InvoiceInfo), so a late one is the same callback again; an unpaid
/// invoice that lapses becomes cancelled (3).
pub(crate) async fn trigger(s: &Shared, event: Event, payment_id: &str) -> kit::Played {
    let (code, _) = kit::record_of(&s.invoices, |i| i.callback_data == payment_id)?;
    let set = |status: i64| {
        set_status(
            AxState(s.clone()),
            Path(code.clone()),
            Json(SetStatus {
                status,
                callback: None,
            }),
        )
    };
    let again = || {
        send_callback(
            AxState(s.clone()),
            Path(code.clone()),
            Json(kit::Again {
                shape: Shape::Real,
                status: None,
            }),
        )
    };
    let mut report = Report::new(&code);
    match event {
        Event::Paid => report.sent("paid (2)", set(2).await).await,
        Event::Failed => report.sent("failed (5)", set(5).await).await,
        Event::Expired => report.sent("cancelled (3)", set(3).await).await,
        Event::Duplicate => {
            report.sent("paid (2)", set(2).await).await;
            report.sent("paid (2) again", again().await).await;
        }
        Event::OutOfOrder => {
            report.sent("paid (2)", set(2).await).await;
            report
                .sent("an earlier callback (late)", again().await)
                .await;
            report =
                report.note("Paygram's callback carries no status; the late one is the same ping");
        }
    }
    Ok(report)
}

crate::kit::sandbox_provider!("paygram";
    "/paygram" => routes(),
    "/_sandbox/paygram" => controls(),
);
