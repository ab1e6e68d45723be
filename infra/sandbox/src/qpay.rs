//! QPay v2: `/qpay/v2/auth/token` (Basic), `/qpay/v2/auth/refresh`
//! (Bearer refresh token), `/qpay/v2/invoice`, `/qpay/v2/payment/check`,
//! `DELETE /qpay/v2/invoice/{id}`, `DELETE /qpay/v2/payment/refund/{id}`.
//! `expires_in` and `refresh_expires_in` are Unix times. Errors are
//! `{"error": "INVOICE_NOTFOUND", "message": ..}` with a 4xx.
//!
//! payment/check answers each row in the full shape of QPay's
//! specification sheet (fixtures/qpay/payment_check.reply.paid.*.json:
//! `trx_fee`, `card_transactions`, `p2p_transactions` in every row, which
//! the published Python client requires), `paid_amount` a number;
//! `DELETE /invoice/{id}` answers `{}`.
//!
//! Controls under `/_sandbox/qpay/`: `invoices/{id}/pay` `{"amount"?,
//! "type": "CARD"|"P2P", "status": "PAID"|"NEW"?, "callback":
//! "get"|"post"|"none"}`;
//! `invoices/{id}/callback` `{"method": "get"|"post"}`; `expire-tokens`
//! (access tokens only, so the client must refresh); `settings`
//! `{"refresh_answers_empty": true}`: `/auth/refresh` answers `{}`, as the
//! developer page shows it.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Path, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::kit::{self, deliver, lock, Authorised, Event, Report, TokenBook};

/// Handlers share this provider's state only.
type Shared = std::sync::Arc<State>;

pub const CLIENT_ID: &str = "sandbox-qpay-client";
pub const CLIENT_SECRET: &str = "sandbox-qpay-secret";
pub const INVOICE_CODE: &str = "SANDBOX_INVOICE";

#[derive(Debug, Clone)]
pub struct Payment {
    pub id: String,
    pub status: String,
    pub amount: String,
    pub kind: String,
}

#[derive(Debug, Clone)]
pub struct Invoice {
    pub amount: String,
    pub callback_url: String,
    pub sender_invoice_no: String,
    pub deleted: bool,
    pub payments: Vec<Payment>,
}

#[derive(Default)]
pub struct State {
    access: TokenBook,
    refresh: TokenBook,
    pub logins: Mutex<u32>,
    pub refreshes: Mutex<u32>,
    pub invoices: Mutex<HashMap<String, Invoice>>,
    /// `/auth/refresh` answers `{}` (QPay's developer page's Response).
    refresh_answers_empty: Mutex<bool>,
}

kit::guarded!(access, refresh; error(StatusCode::UNAUTHORIZED, "AUTHENTICATION_FAILED"));

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v2/auth/token", post(token))
        .route("/v2/auth/refresh", post(refresh))
        .route("/v2/invoice", post(invoice))
        .route("/v2/invoice/{id}", delete(delete_invoice))
        .route("/v2/payment/check", post(check))
        .route("/v2/payment/refund/{id}", delete(refund))
        .route("/v2/payment/cancel/{id}", delete(cancel_payment))
}

/// QPay's short link (the invoice's pay page) and the bank logos.
pub fn payer_routes() -> Router<Shared> {
    Router::new()
        .route("/s/{id}", axum::routing::get(short_link))
        .route("/logo/{name}", axum::routing::get(logo))
}

async fn short_link(AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    let Some(i) = lock(&s.invoices).get(&id).cloned() else {
        return crate::payer::unknown();
    };
    let payment_id = i
        .callback_url
        .split_once("payment_id=")
        .map(|(_, rest)| rest.split('&').next().unwrap_or_default().to_string())
        .unwrap_or_default();
    crate::payer::page(crate::payer::Page {
        provider: "qpay",
        title: "QPay: pay the invoice",
        amount: &format!("MNT {}", i.amount),
        payment_id: &payment_id,
        back: crate::payer::Back::default(),
    })
}

/// A bank's logo: a small square with its initial.
async fn logo(Path(name): Path<String>) -> Response {
    let initial = name
        .chars()
        .next()
        .filter(char::is_ascii_alphabetic)
        .unwrap_or('Q')
        .to_ascii_uppercase();
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\"><rect width=\"32\" height=\"32\" rx=\"6\" fill=\"#1f6feb\"/>\
             <text x=\"16\" y=\"22\" font-size=\"18\" text-anchor=\"middle\" fill=\"#fff\">{initial}</text></svg>"
        ),
    )
        .into_response()
}

pub fn controls() -> Router<Shared> {
    Router::new()
        .route("/invoices/{id}/pay", post(pay))
        .route("/invoices/{id}/callback", post(callback))
        .route("/expire-tokens", post(kit::expire_tokens::<State>))
        .route("/settings", post(settings))
}

#[derive(Deserialize)]
struct Settings {
    #[serde(default)]
    refresh_answers_empty: bool,
}

async fn settings(AxState(s): AxState<Shared>, Json(body): Json<Settings>) -> Json<Value> {
    *lock(&s.refresh_answers_empty) = body.refresh_answers_empty;
    Json(json!({"refresh_answers_empty": body.refresh_answers_empty}))
}

/// QPay's error body, `{"error": CODE, "message": CODE}`, as its
/// specification shows it (fixtures/qpay/error.payment_settled.json).
fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({"error": code, "message": code}))).into_response()
}

/// An unknown object: QPay's specification lists NOT_FOUND_ERROR under
/// HTTP 422, not 404 (fixtures/qpay/SOURCES.md, "Status codes").
fn not_found(code: &str) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, code)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn issue(s: &Shared) -> Value {
    let access = format!("qa-{}", ulid::Ulid::new());
    let refresh = format!("qr-{}", ulid::Ulid::new());
    s.access.issue(&access);
    s.refresh.issue(&refresh);
    json!({
        "token_type": "bearer",
        "access_token": access,
        "expires_in": now() + 86_400,
        "refresh_token": refresh,
        "refresh_expires_in": now() + 2 * 86_400,
        // Every field of the documented reply (a Keycloak token answer),
        // as shared/tests/fixtures/qpay/token.reply.json shows it.
        "scope": "get_token",
        "not-before-policy": "0",
        "session_state": "sandbox",
    })
}

async fn token(AxState(s): AxState<Shared>, headers: HeaderMap) -> Response {
    use base64::Engine as _;
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given != Some(&format!("Basic {expected}")) {
        return error(StatusCode::UNAUTHORIZED, "AUTHENTICATION_FAILED");
    }
    *lock(&s.logins) += 1;
    Json(issue(&s)).into_response()
}

async fn refresh(AxState(s): AxState<Shared>, headers: HeaderMap) -> Response {
    let Some(t) = crate::kit::bearer(&headers).map(str::to_string) else {
        return error(StatusCode::UNAUTHORIZED, "AUTHENTICATION_FAILED");
    };
    if !s.refresh.spend(&t) {
        return error(StatusCode::UNAUTHORIZED, "AUTHENTICATION_FAILED");
    }
    *lock(&s.refreshes) += 1;
    if *lock(&s.refresh_answers_empty) {
        // fixtures/qpay/auth_refresh.reply.official.json
        return Json(json!({})).into_response();
    }
    Json(issue(&s)).into_response()
}

async fn invoice(
    _: Authorised,
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if text("invoice_code") != INVOICE_CODE {
        return error(StatusCode::BAD_REQUEST, "INVOICE_CODE_INVALID");
    }
    let sender = text("sender_invoice_no");
    if sender.is_empty() || sender.len() > 45 {
        return error(StatusCode::BAD_REQUEST, "SENDER_INVOICE_NO_INVALID");
    }
    // Published clients send a number or a decimal string: both are taken.
    let amount = match body.get("amount") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(t))
            if !t.is_empty()
                && t.split_once('.')
                    .map_or(t.as_str(), |(i, f)| {
                        if f.bytes().all(|b| b.is_ascii_digit()) {
                            i
                        } else {
                            "x"
                        }
                    })
                    .bytes()
                    .all(|b| b.is_ascii_digit()) =>
        {
            Some(t.clone())
        }
        _ => None,
    };
    let Some(amount) = amount else {
        return error(StatusCode::BAD_REQUEST, "INVALID_AMOUNT");
    };
    // QPay does not enforce sender_invoice_no's uniqueness: a repeat gets a
    // new invoice (fixtures/qpay/SOURCES.md), so neither does the sandbox.
    let origin = crate::payer::origin(&headers);
    let mut invoices = lock(&s.invoices);
    let id = ulid::Ulid::new().to_string().to_lowercase();
    invoices.insert(
        id.clone(),
        Invoice {
            amount,
            callback_url: text("callback_url"),
            sender_invoice_no: sender,
            deleted: false,
            payments: Vec::new(),
        },
    );
    Json(json!({
        "invoice_id": id,
        "qr_text": format!("0002010102121531SANDBOXQPAY{id}"),
        "qr_image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        // The real short link and logos are on QPay's hosts; the sandbox's
        // are its own (`payer_routes`).
        "qPay_shortUrl": format!("{origin}/qpay/s/{id}"),
        // Bank-app links with name, description, logo and link, as QPay's
        // reply carries them (shared/tests/fixtures/qpay/invoice.reply.json).
        "urls": [
            {"name": "Khan bank", "description": "Хаан банк", "logo": format!("{origin}/qpay/logo/khanbank.svg"),
             "link": format!("khanbank://q?qPay_QRcode=0002010102121531SANDBOXQPAY{id}")},
            {"name": "State bank", "description": "Төрийн банк", "logo": format!("{origin}/qpay/logo/statebank.svg"),
             "link": format!("statebank://q?qPay_QRcode=0002010102121531SANDBOXQPAY{id}")},
        ],
    }))
    .into_response()
}

async fn delete_invoice(
    _: Authorised,
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
) -> Response {
    match lock(&s.invoices).get_mut(&id) {
        Some(i) if i.payments.iter().any(|p| p.status == "PAID") => {
            error(StatusCode::BAD_REQUEST, "INVOICE_PAID")
        }
        Some(i) => {
            i.deleted = true;
            // HTTP 200 and `{}` (fixtures/qpay/invoice_cancel.reply.json).
            Json(json!({})).into_response()
        }
        None => not_found("INVOICE_NOTFOUND"),
    }
}

async fn check(_: Authorised, AxState(s): AxState<Shared>, Json(body): Json<Value>) -> Response {
    let id = body
        .get("object_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(i) = lock(&s.invoices).get(id).cloned() else {
        return not_found("INVOICE_NOTFOUND");
    };
    let rows: Vec<Value> = i.payments.iter().map(row).collect();
    if rows.is_empty() {
        // fixtures/qpay/payment_check.reply.unpaid.json: no paid_amount.
        return Json(json!({"count": 0, "rows": []})).into_response();
    }
    // paid_amount: what the PAID rows come to, a JSON number (100 for a
    // row of "100.00" in the sheet).
    let paid: i64 = i
        .payments
        .iter()
        .filter(|p| p.status == "PAID")
        .filter_map(|p| cents(&p.amount))
        .sum();
    let paid_amount: serde_json::Number = format!("{}.{:02}", paid / 100, paid % 100)
        .trim_end_matches(".00")
        .parse()
        .unwrap_or_else(|_| 0.into());
    Json(json!({"count": rows.len(), "paid_amount": paid_amount, "rows": rows})).into_response()
}

/// Hundredths of a decimal text with at most 2 decimals.
fn cents(text: &str) -> Option<i64> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 2 {
        return None;
    }
    int.parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(format!("{frac:0<2}").parse().ok()?)
}

/// A payment/check row in the full shape of QPay's sheet
/// (fixtures/qpay/payment_check.reply.paid.p2p.json and .card.json): the
/// amount as a decimal string with two places, `trx_fee`, both
/// transaction lists, the one of its type filled.
fn row(p: &Payment) -> Value {
    let amount = cents(&p.amount)
        .map(|c| format!("{}.{:02}", c / 100, c % 100))
        .unwrap_or_else(|| p.amount.clone());
    let status = if p.status == "PAID" {
        "SUCCESS"
    } else {
        "PENDING"
    };
    let (card, p2p) = if p.kind == "CARD" {
        let card = json!({
            "card_type": "UNIONPAY", "is_cross_border": false, "amount": amount,
            "currency": "MNT", "date": "2025-12-07T10:00:00.000Z", "status": status,
            "settlement_status": "PENDING", "settlement_status_date": "2025-12-07T10:00:00.001Z",
        });
        (vec![card], vec![])
    } else {
        let p2p = json!({
            "transaction_bank_code": "050000", "account_bank_code": "050000",
            "account_bank_name": "Хаан банк", "account_number": "50*******",
            "status": status, "amount": amount, "currency": "MNT",
            "settlement_status": "SETTLED",
        });
        (vec![], vec![p2p])
    };
    json!({
        "payment_id": p.id, "payment_status": p.status, "payment_amount": amount,
        "trx_fee": "0.00", "payment_currency": "MNT", "payment_wallet": "sandbox",
        "payment_type": p.kind, "next_payment_date": null, "next_payment_datetime": null,
        "card_transactions": card, "p2p_transactions": p2p,
    })
}

async fn refund(_: Authorised, AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    move_card_payment(&s, &id, "PAID", "REFUNDED", "PAYMENT_NOT_REFUNDABLE")
}

async fn cancel_payment(
    _: Authorised,
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
) -> Response {
    // Paid card payments only; an unpaid one is PAYMENT_NOT_PAID (QPay's
    // specification, shared/tests/fixtures/qpay/SOURCES.md).
    move_card_payment(&s, &id, "PAID", "CANCELLED", "PAYMENT_NOT_PAID")
}

/// Moves a card payment from `from` to `to` (QPay refunds and cancels
/// only card payments, whole), or refuses with `refusal`.
fn move_card_payment(s: &Shared, id: &str, from: &str, to: &str, refusal: &str) -> Response {
    let mut invoices = lock(&s.invoices);
    match invoices
        .values_mut()
        .flat_map(|i| i.payments.iter_mut())
        .find(|p| p.id == id)
    {
        Some(p) if p.status == from && p.kind == "CARD" => {
            p.status = to.into();
            Json(json!({"message": "ok"})).into_response()
        }
        Some(_) => error(StatusCode::BAD_REQUEST, refusal),
        None => not_found("PAYMENT_NOTFOUND"),
    }
}

#[derive(Deserialize)]
struct Pay {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    amount: Option<String>,
    #[serde(default)]
    r#type: Option<String>,
    #[serde(default)]
    callback: Option<String>,
}

async fn pay(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Pay>,
) -> Result<Json<Value>, StatusCode> {
    let (invoice, payment) = kit::change(&s.invoices, &id, |i| {
        let p = Payment {
            id: format!("{}", 900_000_000 + ulid::Ulid::new().0 % 100_000_000),
            status: body.status.unwrap_or_else(|| "PAID".into()),
            amount: body.amount.unwrap_or_else(|| i.amount.clone()),
            kind: body.r#type.unwrap_or_else(|| "P2P".into()),
        };
        i.payments.push(p.clone());
        (i.clone(), p)
    })?;
    let delivered = send(
        &invoice,
        &id,
        &payment,
        body.callback.as_deref().unwrap_or("get"),
    )
    .await;
    Ok(Json(
        json!({"delivered": delivered, "payment_id": payment.id}),
    ))
}

#[derive(Deserialize)]
struct Again {
    #[serde(default)]
    method: Option<String>,
}

async fn callback(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Again>,
) -> Result<Json<Value>, StatusCode> {
    let i = kit::copy_of(&s.invoices, &id)?;
    let p = i.payments.last().cloned().unwrap_or(Payment {
        id: "0".into(),
        status: "NEW".into(),
        amount: i.amount.clone(),
        kind: "P2P".into(),
    });
    let method = body.method.as_deref().unwrap_or("get");
    Ok(kit::delivered(send(&i, &id, &p, method).await))
}

/// QPay's callback: GET with `qpay_payment_id` appended (real), or the
/// seed's POST with a JSON body.
async fn send(i: &Invoice, invoice_id: &str, p: &Payment, method: &str) -> u16 {
    let sep = if i.callback_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!("{}{sep}qpay_payment_id={}", i.callback_url, p.id);
    match method {
        "none" => 0,
        "post" => {
            let body = json!({"payment_id": p.id, "payment_status": p.status, "payment_amount": p.amount,
                              "object_type": "INVOICE", "object_id": invoice_id});
            deliver(&url, &body).await
        }
        _ => match reqwest::Client::new().get(&url).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                // QPay wants the body SUCCESS; anything else counts as a failure.
                match r.text().await {
                    Ok(text) if text == "SUCCESS" => status,
                    _ if status == 200 => 299,
                    _ => status,
                }
            }
            Err(_) => 0,
        },
    }
}

/// `trigger` for QPay: the invoice whose callback URL names our payment.
/// QPay's callback is a bare ping (the receiver asks payment/check), it
/// sends none when an invoice lapses, and `failed` records a FAILED payment
/// attempt (which leaves the invoice payable).
pub(crate) async fn trigger(s: &Shared, event: Event, payment_id: &str) -> kit::Played {
    let (id, _) = kit::record_linked(&s.invoices, payment_id, |i| &i.callback_url)?;
    let pay_with = |status: &str| {
        pay(
            AxState(s.clone()),
            Path(id.clone()),
            Json(Pay {
                status: Some(status.into()),
                amount: None,
                r#type: None,
                callback: None,
            }),
        )
    };
    let again = || {
        callback(
            AxState(s.clone()),
            Path(id.clone()),
            Json(Again { method: None }),
        )
    };
    let mut report = Report::new(&id);
    match event {
        Event::Paid => report.sent("PAID", pay_with("PAID").await).await,
        Event::Failed => {
            report.sent("FAILED", pay_with("FAILED").await).await;
            report = report
                .note("a failed attempt leaves a QPay invoice open: the payer may scan again");
        }
        Event::Expired => {
            if let Some(i) = lock(&s.invoices).get_mut(&id) {
                i.deleted = true;
            }
            report = report.note("invoice closed; QPay sends no callback for a lapsed invoice");
        }
        Event::Duplicate => {
            report.sent("PAID", pay_with("PAID").await).await;
            report.sent("PAID again", again().await).await;
        }
        Event::OutOfOrder => {
            report.sent("PAID", pay_with("PAID").await).await;
            report.sent("an earlier ping (late)", again().await).await;
            report =
                report.note("QPay's callback carries no status; the late one is the same ping");
        }
    }
    Ok(report)
}

crate::kit::sandbox_provider!("qpay";
    "/qpay" => routes().merge(payer_routes()),
    "/_sandbox/qpay" => controls(),
);
