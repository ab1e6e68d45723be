//! epayment.kz (Halyk): OAuth2 client credentials at
//! `/epayment/oauth/oauth2/token` (a payment token when an invoiceID is
//! given), `GET /epayment/api/check-status/payment/transaction/{invoice}`,
//! `POST /epayment/api/operation/{id}/refund[?amount=&externalID=]` and
//! `.../cancel`.
//!
//! check-status answers resultCode 100 with the transaction, 101 for a
//! declined one (REJECT), 102 for an invoice with none, 107 when busy; the
//! results other than 100 come with HTTP 200, or 400 once told so.
//!
//! Controls under `/_sandbox/epayment/`: `invoices/{invoice}/pay`
//! `{"status": "CHARGE"|"AUTH"|"FAILED"|"REJECT"|"CANCEL_OLD", "amount":
//! "99.5"?, "callback": false?}` makes the payer pay and posts the callback
//! to the postLink (the failurePostLink for a decline);
//! `busy` `{"count"}` answers the next check-status calls with resultCode
//! 107; `settings` `{"result_http": 400}` sends results other than 100
//! with that HTTP status; `expire-tokens`.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::kit::{self, deliver, lock, Authorised, Event, Report, TokenBook};

/// Handlers share this provider's state only.
type Shared = std::sync::Arc<State>;

pub const CLIENT_ID: &str = "sandbox-epay-client";
pub const CLIENT_SECRET: &str = "sandbox-epay-secret";
/// The terminal's id, in the bank's form (a UUID, as the official test
/// terminal `67e34d63-…` and the captured postLink's `terminal` are).
pub const TERMINAL: &str = "5a4db0c5-0000-4000-8000-00000000e9a7";

#[derive(Debug, Clone)]
pub struct Invoice {
    pub amount: String,
    pub currency: String,
    pub post_link: String,
    pub failure_post_link: String,
    pub secret_hash: String,
    pub transaction: Option<Transaction>,
}

#[derive(Debug, Clone)]
pub struct Transaction {
    /// A UUID, as the bank's ids are.
    pub id: String,
    pub status: String,
    pub amount: String,
    /// Tiyn refunded so far.
    pub refunded: i64,
    /// The card network's reference: 12 digits (fixtures/epayment).
    pub reference: String,
}

/// The card the sandbox's payer pays with, masked as the bank masks it
/// (`552204...6736` in the captured postLink).
const CARD_MASK: &str = "440043...6531";
const APPROVAL_CODE: &str = "170243";

#[derive(Debug, Clone)]
pub struct Refund {
    pub transaction_id: String,
    pub amount: Option<String>,
    pub external_id: Option<String>,
}

#[derive(Default)]
pub struct State {
    pub invoices: Mutex<HashMap<String, Invoice>>,
    tokens: TokenBook,
    refresh_tokens: TokenBook,
    pub tokens_issued: Mutex<u32>,
    /// Of those, the tokens not bound to an invoice (the `webapi` login
    /// that status checks, refunds and cancels use).
    pub webapi_tokens: Mutex<u32>,
    busy: Mutex<u32>,
    pub refunds: Mutex<Vec<Refund>>,
    /// A two-stage terminal: the payer's payment ends in AUTH and the
    /// merchant captures it (`/operation/{id}/charge`).
    pub two_stage: Mutex<bool>,
    /// Captures made (`/operation/{id}/charge`).
    pub charges: Mutex<u32>,
    /// The HTTP status of check-status results other than 100 (200 by
    /// default; the bank also sends them with 400).
    result_http: Mutex<Option<u16>>,
}

/// A new id in the bank's form: a UUID, as check-status's `transaction.id`
/// and the captured postLink's `id` are (fixtures/epayment).
fn uuid() -> String {
    let hex = format!("{:032x}", ulid::Ulid::new().0);
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// A check-status result other than 100: its code and message, with the
/// HTTP status the bank is set to send it with.
fn result(s: &Shared, code: &str, message: &str) -> Response {
    let status = lock(&s.result_http)
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    (
        status,
        Json(json!({"resultCode": code, "resultMessage": message})),
    )
        .into_response()
}

kit::guarded!(tokens, refresh_tokens; error(StatusCode::UNAUTHORIZED, "invalid token"));

/// The Halyk payment widget's script (`payment-api.js`): a stand-in whose
/// `halyk.pay(paymentObject)` opens a card form over the merchant's page.
/// Its buttons post to the sandbox's payer route and the payer lands on
/// `backLink` (paid) or `failureBackLink` (failed, cancelled), as the bank's
/// widget sends them.
pub fn widget_routes() -> Router<Shared> {
    Router::new().route("/payment-api.js", get(widget_script))
}

async fn widget_script() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/javascript; charset=utf-8",
        )],
        WIDGET_SCRIPT,
    )
        .into_response()
}

const WIDGET_SCRIPT: &str = r##"(function () {
  var script = document.currentScript;
  var base = script ? new URL(script.src).origin : "";
  function el(tag, text) { var e = document.createElement(tag); if (text) { e.textContent = text; } return e; }
  function pay(o) {
    var m = /[?&]payment_id=([^&]+)/.exec(o.postLink || "");
    var paymentId = m ? decodeURIComponent(m[1]) : "";
    var overlay = el("div");
    overlay.id = "halyk-widget";
    overlay.style.position = "fixed"; overlay.style.inset = "0"; overlay.style.background = "rgba(0,0,0,.5)";
    overlay.style.display = "flex"; overlay.style.alignItems = "center"; overlay.style.justifyContent = "center";
    var box = el("div");
    box.style.background = "#fff"; box.style.padding = "1.25rem"; box.style.borderRadius = "10px";
    box.style.width = "min(22rem, 92vw)"; box.style.font = "16px system-ui, sans-serif";
    box.appendChild(el("p", "paygate sandbox: Halyk card form"));
    box.appendChild(el("h2", (o.amount || "") + " " + (o.currency || "KZT")));
    [["Card number", "4405 6450 0000 6150"], ["Expiry", "12/30"], ["CVC", "123"]].forEach(function (f) {
      var label = el("label", f[0]); var input = el("input"); input.value = f[1];
      input.style.display = "block"; input.style.width = "100%"; input.style.margin = ".25rem 0 .75rem";
      label.appendChild(input); box.appendChild(label);
    });
    [["paid", "Pay", o.backLink], ["failed", "Decline (the payment fails)", o.failureBackLink || o.backLink],
     ["abandon", "Cancel", o.failureBackLink || o.backLink]].forEach(function (b) {
      var form = el("form"); form.method = "post";
      form.action = base + "/_sandbox/payer/epayment/" + encodeURIComponent(paymentId);
      var event = el("input"); event.type = "hidden"; event.name = "event"; event.value = b[0];
      var back = el("input"); back.type = "hidden"; back.name = "back"; back.value = b[2] || "";
      var button = el("button", b[1]); button.type = "submit"; button.id = "sandbox-" + b[0];
      button.style.display = "block"; button.style.width = "100%"; button.style.padding = ".7rem"; button.style.margin = ".4rem 0";
      form.appendChild(event); form.appendChild(back); form.appendChild(button); box.appendChild(form);
    });
    overlay.appendChild(box);
    document.body.appendChild(overlay);
  }
  window.halyk = { pay: pay, showPaymentWidget: function (o) { pay(o); } };
})();
"##;

pub fn oauth_routes() -> Router<Shared> {
    Router::new().route("/oauth2/token", post(token))
}

pub fn api_routes() -> Router<Shared> {
    Router::new()
        .route("/check-status/payment/transaction/{invoice}", get(check))
        .route("/operation/{id}/refund", post(refund))
        .route("/operation/{id}/cancel", post(cancel))
        .route("/operation/{id}/charge", post(charge))
}

pub fn controls() -> Router<Shared> {
    Router::new()
        .route("/invoices/{invoice}/pay", post(pay))
        .route("/busy", post(busy))
        .route("/terminal", post(terminal))
        .route("/settings", post(settings))
        .route("/expire-tokens", post(kit::expire_tokens::<State>))
}

/// The bank's error body: `{"code": <number>, "message": ..}`. The code is
/// the bank's own, not the HTTP status; the official refund, cancel, charge
/// and operation pages all show `100` (fixtures/epayment/*.error.json), the
/// only value any source gives, so the sandbox answers with it.
pub const ERROR_CODE: u16 = 100;

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"code": ERROR_CODE, "message": message})),
    )
        .into_response()
}

/// Tiyn from a KZT decimal text with at most 2 decimals.
fn tiyn(text: &str) -> Option<i64> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 2 || int.starts_with('-') {
        return None;
    }
    int.parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(format!("{frac:0<2}").parse().ok()?)
}

async fn token(AxState(s): AxState<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let invoice = get("invoiceID");
    // A payment token (one bound to an invoice) names the terminal; a
    // `webapi` token for status, refund and cancel needs none, but may.
    let terminal_ok = match f.get("terminal") {
        Some(t) => t == TERMINAL,
        None => invoice.is_empty(),
    };
    if get("grant_type") != "client_credentials"
        || get("client_id") != CLIENT_ID
        || get("client_secret") != CLIENT_SECRET
        || !terminal_ok
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let token = format!("epay-{}", ulid::Ulid::new());
    let webapi = invoice.is_empty();
    if !invoice.is_empty() {
        let digits = invoice.len() >= 6
            && invoice.len() <= 15
            && invoice.bytes().all(|b| b.is_ascii_digit());
        if !digits || tiyn(&get("amount")).is_none() {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_request"})),
            )
                .into_response();
        }
        // The bank's rule: an invoiceID longer than 6 digits must be unique
        // in its last 6 digits too.
        let last6 = |i: &str| i[i.len() - 6..].to_string();
        let clash = lock(&s.invoices).keys().any(|other| {
            other != &invoice
                && (invoice.len() > 6 || other.len() > 6)
                && last6(other) == last6(&invoice)
        });
        if clash {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_request",
                            "error_description": "invoiceID must be unique in its last 6 digits"})),
            )
                .into_response();
        }
        lock(&s.invoices).insert(
            invoice,
            Invoice {
                amount: get("amount"),
                currency: get("currency"),
                post_link: get("postLink"),
                failure_post_link: get("failurePostLink"),
                secret_hash: get("secret_hash"),
                transaction: None,
            },
        );
    }
    s.tokens.issue(&token);
    *lock(&s.tokens_issued) += 1;
    if webapi {
        *lock(&s.webapi_tokens) += 1;
    }
    // The documented reply's fields; expires_in as a string, as the real
    // service sometimes sends it.
    let refresh = format!("epay-refresh-{}", ulid::Ulid::new());
    s.refresh_tokens.issue(&refresh);
    Json(
        json!({"access_token": token, "token_type": "Bearer", "expires_in": "7200",
                "refresh_token": refresh, "scope": get("scope")}),
    )
    .into_response()
}

async fn check(
    _: Authorised,
    AxState(s): AxState<Shared>,
    Path(invoice): Path<String>,
) -> Response {
    {
        let mut busy = lock(&s.busy);
        if *busy > 0 {
            *busy -= 1;
            // fixtures/epayment/check_status.busy.seed.json
            return result(&s, "107", "Try again later");
        }
    }
    let Some(t) = lock(&s.invoices)
        .get(&invoice)
        .and_then(|i| i.transaction.clone())
    else {
        // fixtures/epayment/check_status.not_found.seed.json
        return result(&s, "102", "Invoice not found");
    };
    if t.status == "REJECT" {
        // The seed's table: 101, the payment rejected
        // (fixtures/epayment/check_status.reject.seed.json).
        return result(&s, "101", "Reject");
    }
    Json(json!({
        "resultCode": "100",
        "resultMessage": "SUCCESS",
        // Every key of the documented reply (fixtures/epayment/
        // check_status.reply.json), and those past where our copy of the
        // page is cut off that clients read.
        "transaction": {
            "id": t.id, "createdDate": "2025-12-07T10:00:00.000000+06:00",
            "invoiceID": invoice, "amount": t.amount.parse::<serde_json::Number>().ok(),
            "amountBonus": 0, "payoutAmount": 0, "orgAmount": 0, "data": "{}",
            "currency": "KZT", "terminal": "98120001", "terminalID": TERMINAL, "accountID": "",
            "statusName": t.status, "cardMask": CARD_MASK,
            "reference": t.reference, "reasonCode": "00", "approvalCode": APPROVAL_CODE,
        }
    }))
    .into_response()
}

#[derive(Deserialize)]
struct RefundQuery {
    #[serde(default)]
    amount: Option<String>,
    #[serde(default, rename = "externalID")]
    external_id: Option<String>,
}

async fn refund(
    _: Authorised,
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<RefundQuery>,
) -> Response {
    let mut invoices = lock(&s.invoices);
    let Some(t) = invoices
        .values_mut()
        .filter_map(|i| i.transaction.as_mut())
        .find(|t| t.id == id)
    else {
        return error(StatusCode::BAD_REQUEST, "Transaction not found");
    };
    if t.status != "CHARGE" {
        return error(StatusCode::BAD_REQUEST, "Invalid transaction status");
    }
    let total = tiyn(&t.amount).unwrap_or(0);
    let amount = match &q.amount {
        Some(a) => match tiyn(a) {
            Some(v) if v >= 1_000 => v,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Partial refund must be at least 10 KZT",
                )
            }
        },
        None => total - t.refunded,
    };
    if amount <= 0 || t.refunded + amount > total {
        return error(
            StatusCode::BAD_REQUEST,
            "Refund exceeds the transaction amount",
        );
    }
    t.refunded += amount;
    if t.refunded == total {
        t.status = "REFUND".into();
    }
    lock(&s.refunds).push(Refund {
        transaction_id: id,
        amount: q.amount,
        external_id: q.external_id,
    });
    StatusCode::OK.into_response()
}

async fn cancel(_: Authorised, AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    move_authorised(&s, &id, "CANCEL", "Transaction cannot be cancelled")
}

/// `POST /operation/{id}/charge`: captures an authorised transaction (the
/// whole of it; a partial capture is not modelled). Only from AUTH.
async fn charge(_: Authorised, AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    let answer = move_authorised(&s, &id, "CHARGE", "Transaction cannot be charged");
    if answer.status().is_success() {
        *lock(&s.charges) += 1;
    }
    answer
}

/// Moves an authorised transaction to `to` (cancel and charge act only
/// from AUTH), or refuses with `refusal`.
fn move_authorised(s: &Shared, id: &str, to: &str, refusal: &str) -> Response {
    let mut invoices = lock(&s.invoices);
    match invoices
        .values_mut()
        .filter_map(|i| i.transaction.as_mut())
        .find(|t| t.id == id)
    {
        Some(t) if t.status == "AUTH" => {
            t.status = to.into();
            StatusCode::OK.into_response()
        }
        Some(_) => error(StatusCode::BAD_REQUEST, refusal),
        None => error(StatusCode::BAD_REQUEST, "Transaction not found"),
    }
}

#[derive(Deserialize)]
struct Terminal {
    two_stage: bool,
}

/// `POST /_sandbox/epayment/terminal` `{"two_stage": true}`: the terminal's mode.
async fn terminal(
    AxState(s): AxState<Shared>,
    Json(body): Json<Terminal>,
) -> Json<serde_json::Value> {
    *lock(&s.two_stage) = body.two_stage;
    Json(json!({"two_stage": body.two_stage}))
}

#[derive(Deserialize)]
struct Pay {
    status: String,
    #[serde(default)]
    amount: Option<String>,
    #[serde(default = "yes")]
    callback: bool,
}

fn yes() -> bool {
    true
}

async fn pay(
    AxState(s): AxState<Shared>,
    Path(invoice): Path<String>,
    Json(body): Json<Pay>,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let (i, t) = kit::change(&s.invoices, &invoice, |i| {
        let t = Transaction {
            id: uuid(),
            reference: format!("{:012}", ulid::Ulid::new().0 % 1_000_000_000_000),
            // On a two-stage terminal a card payment is only authorised.
            status: if body.status == "CHARGE" && *lock(&s.two_stage) {
                "AUTH".into()
            } else {
                body.status.clone()
            },
            amount: body.amount.clone().unwrap_or_else(|| i.amount.clone()),
            refunded: 0,
        };
        i.transaction = Some(t.clone());
        (i.clone(), t)
    })?;
    let delivered = match body.callback {
        true => post_callback(&invoice, &i, &t).await,
        false => 0,
    };
    Ok(Json(
        json!({"delivered": delivered, "transaction_id": t.id}),
    ))
}

/// Posts the bank's callback for a transaction: the postLink on success,
/// the failurePostLink on a decline. Every key of the captured postLink
/// (fixtures/epayment/callback.real.json), of the same types: ids in the
/// bank's form, `reasonCode` a number; the `secret_hash` given with the
/// payment token beside them.
async fn post_callback(invoice: &str, i: &Invoice, t: &Transaction) -> u16 {
    let failed = matches!(t.status.as_str(), "FAILED" | "REJECT");
    let callback = json!({
        "accountId": "", "amount": t.amount.parse::<serde_json::Number>().ok(),
        "approvalCode": if failed { None } else { Some(APPROVAL_CODE) },
        "cardId": null, "cardMask": CARD_MASK, "cardType": "VISA",
        "code": if failed { "error" } else { "ok" }, "currency": i.currency,
        "dateTime": "2025-12-07T10:00:00.000000000+05:00", "description": "paygate payment",
        "email": "payer@example.com", "id": t.id, "invoiceId": invoice, "ip": "192.0.2.10",
        "ipCity": null, "ipCountry": null, "ipDistrict": null,
        "ipLatitude": 0, "ipLongitude": 0, "ipRegion": null,
        "issuer": "SANDBOX BANK", "issuerBankCountry": null, "language": "RUS",
        "name": "CARD HOLDER", "phone": null,
        "reason": if failed { "declined" } else { "success" },
        // 0 on success, as captured; the decline's number is ours.
        "reasonCode": if failed { 5 } else { 0 },
        "reference": t.reference, "secure": "no", "secureDetails": null,
        "terminal": TERMINAL,
        "secret_hash": i.secret_hash,
    });
    let url = if failed {
        &i.failure_post_link
    } else {
        &i.post_link
    };
    deliver(url, &callback).await
}

#[derive(Deserialize)]
struct Settings {
    #[serde(default)]
    result_http: Option<u16>,
}

/// `POST /_sandbox/epayment/settings` `{"result_http": 400}`: the HTTP
/// status of check-status results other than 100.
async fn settings(
    AxState(s): AxState<Shared>,
    Json(body): Json<Settings>,
) -> Json<serde_json::Value> {
    *lock(&s.result_http) = body.result_http;
    Json(json!({"result_http": body.result_http}))
}

#[derive(Deserialize)]
struct Busy {
    count: u32,
}

async fn busy(AxState(s): AxState<Shared>, Json(b): Json<Busy>) -> StatusCode {
    *lock(&s.busy) = b.count;
    StatusCode::NO_CONTENT
}

/// `trigger` for epayment.kz: the invoice paygate derives from the payment
/// id (its ULID modulo 10^15, fifteen digits, as the client makes it). The bank
/// sends nothing when an unpaid invoice lapses. A late callback is the
/// AUTH (hold) notice arriving after the CHARGE.
pub(crate) async fn trigger(s: &Shared, event: Event, payment_id: &str) -> kit::Played {
    // paygate puts its payment id in the postLink it gives with the token.
    let (invoice, _) = kit::record_linked(&s.invoices, payment_id, |i| &i.post_link)?;
    let charge = |status: &str| {
        pay(
            AxState(s.clone()),
            Path(invoice.clone()),
            Json(Pay {
                status: status.into(),
                amount: None,
                callback: true,
            }),
        )
    };
    let again = |status: &str| {
        let found = lock(&s.invoices).get(&invoice).cloned();
        let status = status.to_string();
        let invoice = invoice.clone();
        async move {
            let Some(i) = found else { return 0 };
            let Some(mut t) = i.transaction.clone() else {
                return 0;
            };
            t.status = status;
            post_callback(&invoice, &i, &t).await
        }
    };
    let mut report = Report::new(&invoice);
    match event {
        Event::Paid => report.sent("CHARGE", charge("CHARGE").await).await,
        Event::Failed => report.sent("FAILED", charge("FAILED").await).await,
        Event::Expired => {
            report = report.note("epayment.kz sends no callback for a lapsed invoice");
        }
        Event::Duplicate => {
            report.sent("CHARGE", charge("CHARGE").await).await;
            let answer = again("CHARGE").await;
            report.delivered("CHARGE again", answer);
        }
        Event::OutOfOrder => {
            report.sent("CHARGE", charge("CHARGE").await).await;
            let answer = again("AUTH").await;
            report.delivered("AUTH (late)", answer);
        }
    }
    Ok(report)
}

crate::kit::sandbox_provider!("epayment";
    "/epayment/oauth" => oauth_routes(),
    "/epayment/api" => api_routes(),
    "/epayment/payform" => widget_routes(),
    "/_sandbox/epayment" => controls(),
);
