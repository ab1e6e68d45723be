//! Paygram's two public APIs (shared/tests/fixtures/paygram/SOURCES.md),
//! each under its own base as on its own host, each refusing a request in
//! the other's form as its server would:
//! - the official SDK's, under `/paygram/PayGramUsers/`:
//!   `POST {token}/IssueInvoice/?cursym=PHPT&amt=100&cd=...` and
//!   `InvoiceInfo/?invguid=...`, parameters in the query (the body is not
//!   read), PascalCase replies with numeric enums and default values left
//!   out, errors as a `ResponseCode` (552 bad token, 553 not found, 500 a
//!   request it cannot take);
//! - the older one (`api.pay-gram.org`), under `/paygram/`:
//!   `POST {token}/IssueInvoice` and `InvoiceInfo` with a JSON body of the
//!   capture's media types carrying `requestId` and `userCliId`, camelCase
//!   replies with every property, refusals as the capture's
//!   `{"message", "type": 0, "success": false}` ("Invalid Token").
//!
//! Both share one book of invoices (codes are GUIDs, as Paygram's).
//!
//! Controls under `/_sandbox/paygram/`: `callback-url` `{"url"}` sets where
//! callbacks go (Paygram keeps it per merchant, not per invoice);
//! `invoices/{code}/status` `{"status": 2, "callback": "real"|"seed"|"none"}`
//! sets an invoice's state and sends the callback; `invoices/{code}/callback`
//! `{"shape", "status"}` sends one again (or a forged one); `callbacks`
//! `{"type": "balance"|"withdraw"|"money_sent"}` sends a callback about no
//! invoice, as the SDK's `UserCallbackInfo` types them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::kit::{self, deliver, lock, Event, Report, Shape};

/// Handlers share this provider's state only.
type Shared = std::sync::Arc<State>;

pub const TOKEN: &str = "sandbox-paygram-token";

/// The user invoices are issued to in the official API (the token's own
/// user), and the payer the sandbox's pay page pays as.
const TOKEN_USER: &str = "sandbox-merchant";
const PAYER: &str = "sandbox-payer";

/// Every invoice's times: fixed, the sandbox keeps no clock.
const CREATED_UTC: &str = "2025-12-07T10:00:00.0000000Z";

#[derive(Debug, Clone, Default)]
pub struct Invoice {
    /// The legacy API's `requestId` (empty for an official invoice, which
    /// has none).
    pub request_id: String,
    pub currency_code: u32,
    pub amount: String,
    pub callback_data: String,
    pub status: i64,
    /// Whom the invoice pays (`toUser`): the legacy request's `userCliId`,
    /// the token's user in the official API.
    pub to_user: String,
}

#[derive(Default)]
pub struct State {
    pub invoices: Mutex<HashMap<String, Invoice>>,
    pub callback_url: Mutex<Option<String>>,
    /// The last callback's `Id`.
    callbacks: AtomicI64,
}

impl State {
    /// Where Paygram sends callbacks (set once per merchant at Paygram).
    pub fn set_callback_url(&self, url: String) {
        *lock(&self.callback_url) = Some(url);
    }
}

pub fn routes() -> Router<Shared> {
    Router::new()
        // The SDK's endpoint is `{base}{token}/{method}/{?query}`: a `/`
        // before the query. ASP.NET routes either.
        .route("/PayGramUsers/{token}/{method}", post(official))
        .route("/PayGramUsers/{token}/{method}/", post(official))
        .route("/{token}/{method}", post(legacy))
        .route("/{token}/{method}/", post(legacy))
        .route("/pay/{code}", axum::routing::get(pay_page))
}

pub fn controls() -> Router<Shared> {
    Router::new()
        .route("/callback-url", post(set_callback_url))
        .route("/invoices/{code}/status", post(set_status))
        .route("/invoices/{code}/callback", post(send_callback))
        .route("/callbacks", post(send_other_callback))
}

/// The invoice's pay page (PayGram's bot, in a browser).
async fn pay_page(AxState(s): AxState<Shared>, Path(code): Path<String>) -> Response {
    let Some(i) = lock(&s.invoices).get(&code).cloned() else {
        return crate::payer::unknown();
    };
    crate::payer::page(crate::payer::Page {
        provider: "paygram",
        title: "PayGram: pay the invoice",
        amount: &format!("{} {}", i.amount, symbol(i.currency_code)),
        payment_id: &i.callback_data,
        back: crate::payer::Back::default(),
    })
}

/// The SDK's `Currencies` (fixtures/paygram/enums.json): the two Paygram
/// invoices here are in.
fn symbol(code: u32) -> &'static str {
    if code == 5 {
        "USDT"
    } else {
        "PHPT"
    }
}

/// A currency as ASP.NET binds the `Currencies` enum from a query
/// parameter: its name in any case, or its number.
fn currency_from_query(text: &str) -> Option<u32> {
    match text.trim().to_ascii_uppercase().as_str() {
        "PHPT" | "11" => Some(11),
        "USDT" | "5" => Some(5),
        _ => None,
    }
}

/// A positive amount with no more decimals than the currency has, as
/// given; `None` otherwise.
fn amount_of(text: &str, currency_code: u32) -> Option<String> {
    let decimals = if currency_code == 5 { 6 } else { 2 };
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let ok = !int.is_empty()
        && digits(int)
        && digits(frac)
        && frac.len() <= decimals
        && (!text.contains('.') || !frac.is_empty())
        && text.bytes().any(|b| (b'1'..=b'9').contains(&b));
    ok.then(|| text.to_string())
}

/// An amount as Newtonsoft writes a C# decimal: always with a decimal
/// point (`100.0`).
fn newtonsoft_decimal(amount: &str) -> Value {
    let text = if amount.contains('.') {
        amount.to_string()
    } else {
        format!("{amount}.0")
    };
    text.parse::<serde_json::Number>()
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn json_number(amount: &str) -> Value {
    amount
        .parse::<serde_json::Number>()
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A GUID, as Paygram's invoice codes are.
fn guid() -> String {
    let hex = format!("{:032x}", ulid::Ulid::new().0);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn issue_invoice(s: &Shared, invoice: Invoice) -> (String, Invoice) {
    let code = guid();
    lock(&s.invoices).insert(code.clone(), invoice.clone());
    (code, invoice)
}

// ---- The official API -------------------------------------------------

/// A refusal in the official form: the SDK's `PaygramResponse(code)` with
/// `Message` and `ResponseCode` (fixtures/paygram/official.error.*).
fn official_refusal(code: i64, message: &str) -> Response {
    Json(json!({"Message": message, "ResponseCode": code})).into_response()
}

async fn official(
    AxState(s): AxState<Shared>,
    Path((token, method)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if token != TOKEN {
        return official_refusal(552, "AuthError");
    }
    match method.as_str() {
        "IssueInvoice" => official_issue(&s, &query, &crate::payer::origin(&headers)),
        "InvoiceInfo" => official_info(&s, &query),
        _ => (StatusCode::NOT_FOUND, "unknown method").into_response(),
    }
}

/// `IssueInvoice(string token, [FromQuery] decimal amt, [FromQuery]
/// Currencies cursym, [FromQuery] string? callbackData)` (the SDK's
/// comment): a request without them (a JSON body instead) is refused.
fn official_issue(s: &Shared, query: &HashMap<String, String>, origin: &str) -> Response {
    let Some(currency_code) = query.get("cursym").and_then(|c| currency_from_query(c)) else {
        return official_refusal(500, "cursym is not a Paygram currency");
    };
    let Some(amount) = query.get("amt").and_then(|a| amount_of(a, currency_code)) else {
        return official_refusal(500, "amt must be a positive amount");
    };
    let (code, i) = issue_invoice(
        s,
        Invoice {
            request_id: String::new(),
            currency_code,
            amount,
            callback_data: query.get("cd").cloned().unwrap_or_default(),
            status: 4,
            to_user: TOKEN_USER.into(),
        },
    );
    let mut reply = official_invoice(&code, &i, "ResponseIssueInvoice", 14);
    // The real PayUrl opens PayGram's Telegram bot; the sandbox's opens its
    // own pay page (`pay_page`).
    reply["PayUrl"] = json!(format!("{origin}/paygram/pay/{code}"));
    Json(reply).into_response()
}

fn official_info(s: &Shared, query: &HashMap<String, String>) -> Response {
    // A missing or malformed invguid binds as Guid.Empty: no such invoice.
    let code = query
        .get("invguid")
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let Some(i) = lock(&s.invoices).get(&code).cloned() else {
        return official_refusal(553, "NotFound");
    };
    let mut reply = official_invoice(&code, &i, "ResponseInvoiceInfo", 6);
    reply["OriginatingUser"] = json!(i.to_user);
    reply["InvoiceType"] = json!(3);
    Json(reply).into_response()
}

/// `ResponseInvoiceInfo` as the SDK serializes it: PascalCase, enums as
/// numbers, null, 0 and false left out
/// (fixtures/paygram/official.*.reply.*.json).
fn official_invoice(code: &str, i: &Invoice, type_name: &str, type_code: i64) -> Value {
    let mut reply = json!({
        "InvoiceCode": code,
        "Status": i.status,
        "LastEventUtc": CREATED_UTC,
        "CreatedUtc": CREATED_UTC,
        "Amount": newtonsoft_decimal(&i.amount),
        "CurrencyCode": i.currency_code,
        "ToUser": i.to_user,
        "Message": type_name,
        "Type": type_code,
        "ResponseCode": 200,
        "Success": true,
    });
    if !i.callback_data.is_empty() {
        reply["CallbackData"] = json!(i.callback_data);
    }
    if i.status == 2 {
        reply["FromUser"] = json!(PAYER);
        reply["IsPaid"] = json!(true);
        reply["IsRedeemed"] = json!(true);
    }
    reply
}

// ---- The older API ----------------------------------------------------

/// A refusal in the older API's form: the capture's one refusal
/// (fixtures/paygram/legacy.error.invalid_token.json).
fn legacy_refusal(message: &str) -> Response {
    Json(json!({"message": message, "type": 0, "success": false})).into_response()
}

/// The request media types the capture's page lists for every method.
fn legacy_media_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        mime.as_str(),
        "application/json-patch+json" | "application/json" | "text/json"
    ) || (mime.starts_with("application/") && mime.ends_with("+json"))
}

async fn legacy(
    AxState(s): AxState<Shared>,
    Path((token, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !legacy_media_type(&headers) {
        // ASP.NET's answer to a [FromBody] of a type it does not take.
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    if token != TOKEN {
        return legacy_refusal("Invalid Token");
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return legacy_refusal("the request body is not a JSON object");
    };
    // Every call in the capture carries both.
    let Some(request_id) = body.get("requestId").and_then(Value::as_i64) else {
        return legacy_refusal("requestId must be a 64-bit integer");
    };
    let Some(user) = body
        .get("userCliId")
        .and_then(Value::as_str)
        .filter(|u| !u.trim().is_empty())
    else {
        return legacy_refusal("userCliId is required");
    };
    match method.as_str() {
        "IssueInvoice" => {
            legacy_issue(&s, &body, request_id, user, &crate::payer::origin(&headers))
        }
        "InvoiceInfo" => legacy_info(&s, &body),
        _ => (StatusCode::NOT_FOUND, "unknown method").into_response(),
    }
}

fn legacy_issue(
    s: &Shared,
    body: &serde_json::Map<String, Value>,
    request_id: i64,
    user: &str,
    origin: &str,
) -> Response {
    let currency_code = body
        .get("currencyCode")
        .and_then(Value::as_u64)
        .unwrap_or(0) as u32;
    if currency_code != 11 && currency_code != 5 {
        return legacy_refusal("unsupported currency");
    }
    let Some(amount) = body
        .get("amount")
        .and_then(|a| a.as_number())
        .and_then(|n| amount_of(&n.to_string(), currency_code))
    else {
        return legacy_refusal("invalid amount");
    };
    let request_id = request_id.to_string();
    if lock(&s.invoices)
        .values()
        .any(|i| i.request_id == request_id)
    {
        return legacy_refusal("The request was alredy processed or it's being processed.");
    }
    let (code, i) = issue_invoice(
        s,
        Invoice {
            request_id,
            currency_code,
            amount,
            callback_data: body
                .get("callbackData")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            status: 4,
            to_user: user.to_string(),
        },
    );
    let mut reply = legacy_invoice(&code, &i, 14);
    // The capture's reply has `payUrl: null`; the sandbox gives its own
    // pay page (`pay_page`) so the invoice can be paid at all.
    reply["payUrl"] = json!(format!("{origin}/paygram/pay/{code}"));
    reply["originatingUser"] = Value::Null;
    reply["invoiceType"] = json!(0);
    Json(reply).into_response()
}

fn legacy_info(s: &Shared, body: &serde_json::Map<String, Value>) -> Response {
    let code = body
        .get("invoiceCode")
        .and_then(Value::as_str)
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let Some(i) = lock(&s.invoices).get(&code).cloned() else {
        // The capture has no such answer; the one refusal's form.
        return legacy_refusal("invoice not found");
    };
    Json(legacy_invoice(&code, &i, 6)).into_response()
}

/// The capture's InvoiceInfo reply: camelCase, every property, nulls
/// included (fixtures/paygram/legacy.*.reply.json).
fn legacy_invoice(code: &str, i: &Invoice, type_code: i64) -> Value {
    let paid = i.status == 2;
    json!({
        "invoiceCode": code,
        "status": i.status,
        "lastEventUtc": CREATED_UTC,
        "createdUtc": CREATED_UTC,
        "amount": json_number(&i.amount),
        "expectedFee": 0,
        "callbackData": i.callback_data,
        "currencyCode": i.currency_code,
        "fromUser": if paid { json!(PAYER) } else { Value::Null },
        "toUser": i.to_user,
        "originatingUser": i.to_user,
        "isPaid": paid,
        "isRedeemed": paid,
        "invoiceType": 3,
        "type": type_code,
        "success": true,
    })
}

// ---- Controls and callbacks -------------------------------------------

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

/// The head of the SDK's `UserCallbackInfo` (`Id`, `DateUtc`, `Timestamp`,
/// `UserCliId`), as its `ToJson` writes it.
fn callback_head(s: &Shared, user: &str) -> serde_json::Map<String, Value> {
    let id = s.callbacks.fetch_add(1, Ordering::Relaxed) + 1;
    let mut head = serde_json::Map::new();
    head.insert("Id".into(), json!(id));
    head.insert("DateUtc".into(), json!("2025-12-07T10:00:00Z"));
    head.insert("Timestamp".into(), json!(1_765_101_600));
    head.insert("UserCliId".into(), json!(user));
    head
}

async fn send(s: &Shared, code: &str, i: &Invoice, status: &str, shape: Shape) -> u16 {
    let Some(url) = lock(&s.callback_url).clone() else {
        return 0;
    };
    let body = match shape {
        // fixtures/paygram/callback.invoice.assembled.json
        Shape::Real => {
            let mut body = callback_head(s, &i.to_user);
            if !i.callback_data.is_empty() {
                body.insert("CallbackData".into(), json!(i.callback_data));
            }
            body.insert(
                "InvoiceInfo".into(),
                json!({
                    "InvoiceCode": code,
                    "Balance": newtonsoft_decimal(&i.amount),
                    "TransactionAmount": newtonsoft_decimal(&i.amount),
                    "Currency": i.currency_code,
                }),
            );
            body.insert("CallbackType".into(), json!(2));
            Value::Object(body)
        }
        Shape::Seed => json!({
            "invoice_code": code,
            "status": status,
            "amount": i.amount,
            "currency": symbol(i.currency_code),
            "timestamp": "2025-12-07T10:00:00Z",
        }),
    };
    deliver(&url, &body).await
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum OtherCallback {
    Balance,
    Withdraw,
    MoneySent,
}

#[derive(Deserialize)]
struct Other {
    #[serde(rename = "type")]
    kind: OtherCallback,
}

/// A callback about no invoice (fixtures/paygram/callback.balance,
/// .withdraw, .money_sent.assembled.json): a balance change (its
/// `CallbackType`, 0, left out as a default), a withdrawal, money sent.
async fn send_other_callback(AxState(s): AxState<Shared>, Json(other): Json<Other>) -> Json<Value> {
    let Some(url) = lock(&s.callback_url).clone() else {
        return kit::delivered(0);
    };
    let mut body = callback_head(&s, TOKEN_USER);
    match other.kind {
        OtherCallback::Balance => {
            body.insert(
                "BalanceInfo".into(),
                json!({"Balance": 100.0, "TransactionAmount": 100.0, "Currency": 11}),
            );
        }
        OtherCallback::Withdraw => {
            body.insert(
                "WithdrawInfo".into(),
                json!({"Balance": 50.0, "TransactionAmount": -50.0, "Currency": 11}),
            );
            body.insert("CallbackType".into(), json!(1));
        }
        OtherCallback::MoneySent => {
            body.insert(
                "MoneySentInfo".into(),
                json!({"UserCliToId": PAYER, "Balance": 40.0, "TransactionAmount": -10.0, "Currency": 11}),
            );
            body.insert("CallbackType".into(), json!(4));
        }
    }
    kit::delivered(deliver(&url, &Value::Object(body)).await)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_positive_with_the_currencys_decimals() {
        assert_eq!(amount_of("100", 11).as_deref(), Some("100"));
        assert_eq!(amount_of("12.5", 5).as_deref(), Some("12.5"));
        assert_eq!(amount_of("1.234567", 5).as_deref(), Some("1.234567"));
        for bad in ["", "0", "0.00", "-1", "1.", ".5", "1.234", "1e2", "1,5"] {
            assert_eq!(amount_of(bad, 11), None, "{bad}");
        }
        assert_eq!(newtonsoft_decimal("100"), json!(100.0));
        assert_eq!(newtonsoft_decimal("12.5"), json!(12.5));
        assert_eq!(guid().len(), 36);
        assert_eq!(currency_from_query("usdt"), Some(5));
        assert_eq!(currency_from_query("11"), Some(11));
        assert_eq!(currency_from_query("BTC"), None);
    }
}
