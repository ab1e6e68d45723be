//! DirectPay (GCash cash-in), as integrations seen in public code use it:
//! `GET /csrf_token` (sets `PHPSESSID`, unless told not to), `POST
//! /create/login` with the CSRF header (and the cookie, which is checked
//! when sent but not required: the public client shown working against
//! DirectPay's sandbox host logs in with the header alone), then bearer
//! calls `POST /pay_cashin` and `GET /cashin_transactions_status/{id}`
//! (404 with a JSON body for a transaction it does not have).
//!
//! The seed's older variant is served beside it: `GET /login` (the CSRF
//! token in a meta tag), `POST /login`, `POST /generate-gcash-qr`,
//! `GET /payment/{reference}/status`.
//!
//! Controls: `POST /_sandbox/directpay/transactions/{id}/status`
//! `{"status": "SUCCESS"}` sets a transaction's status;
//! `POST /_sandbox/directpay/expire-tokens` makes every issued token invalid;
//! `POST /_sandbox/directpay/settings` `{"session_cookie": false,
//! "cash_in_under_data": true}`: `/csrf_token` sets no cookie; `pay_cashin`
//! answers with the cash-in under `data` (both shapes public clients read).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Path, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::kit::{self, deliver, lock, Authorised, Event, Guarded, Report, Shape, TokenBook};

/// Handlers share this provider's state only.
type Shared = std::sync::Arc<State>;

/// The one merchant login the sandbox accepts.
pub const USERNAME: &str = "sandbox-merchant";
pub const PASSWORD: &str = "sandbox-password";

#[derive(Debug, Clone)]
pub struct Transaction {
    pub amount: String,
    pub status: String,
    pub reference: String,
    pub webhook: String,
    /// Where the payment page sends the payer afterwards.
    pub redirect_url: String,
}

/// How this DirectPay answers (`/_sandbox/directpay/settings`).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Settings {
    /// `/csrf_token` sets a `PHPSESSID` cookie.
    #[serde(default = "yes")]
    pub session_cookie: bool,
    /// `pay_cashin` answers `{status, message, data: {transactionId, ..}}`
    /// instead of the fields at the top level.
    #[serde(default)]
    pub cash_in_under_data: bool,
}

fn yes() -> bool {
    true
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            session_cookie: true,
            cash_in_under_data: false,
        }
    }
}

#[derive(Default)]
pub struct State {
    /// Each CSRF token issued, with the PHPSESSID set beside it (if any).
    sessions: Mutex<HashMap<String, Option<String>>>,
    pub settings: Mutex<Settings>,
    tokens: TokenBook,
    pub logins: Mutex<u32>,
    pub transactions: Mutex<HashMap<String, Transaction>>,
}

impl Guarded for State {
    fn access(&self) -> &TokenBook {
        &self.tokens
    }

    /// Its bearer tokens, and the session ids and CSRF tokens of logins.
    fn credentials(&self) -> Vec<String> {
        let mut all = self.tokens.all();
        for (csrf, session) in lock(&self.sessions).iter() {
            all.push(csrf.clone());
            all.extend(session.clone());
        }
        all
    }

    fn refusal(&self) -> Response {
        error(StatusCode::UNAUTHORIZED, "Unauthenticated.")
    }
}

/// The page DirectPay's `link` opens: GCash's checkout.
pub fn payer_routes() -> Router<Shared> {
    Router::new().route("/{id}", get(payment_page))
}

async fn payment_page(AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    let Some(t) = lock(&s.transactions).get(&id).cloned() else {
        return crate::payer::unknown();
    };
    let back = (!t.redirect_url.is_empty()).then(|| t.redirect_url.clone());
    crate::payer::page(crate::payer::Page {
        provider: "directpay",
        title: "GCash: pay the merchant",
        amount: &format!("PHP {}", t.amount),
        payment_id: &t.reference,
        back: crate::payer::Back {
            paid: back.clone(),
            failed: back.clone(),
            abandoned: back,
        },
    })
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/csrf_token", get(csrf_token))
        .route("/create/login", post(login))
        .route("/pay_cashin", post(pay_cashin))
        .route("/cashin_transactions_status/{id}", get(status))
        // The seed's older variant of the same API.
        .route("/login", get(legacy_login_page).post(legacy_login))
        .route("/generate-gcash-qr", post(legacy_generate_qr))
        .route("/payment/{reference}/status", get(legacy_status))
        .fallback(unknown_route)
}

/// A path DirectPay does not serve: its web server's HTML 404 page, as the
/// sandbox host answers one (fixtures/directpay/unknown_route.reply.html).
async fn unknown_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html>\n<head><title>Error</title></head>\n<body>\n<pre>Cannot {method} /api{}</pre>\n</body>\n</html>\n",
        uri.path()
    );
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

pub fn controls() -> Router<Shared> {
    Router::new()
        .route("/transactions/{id}/status", post(set_status))
        .route("/transactions/{id}/callback", post(send_callback))
        .route("/expire-tokens", post(kit::expire_tokens::<State>))
        .route("/settings", post(set_settings))
}

async fn set_settings(AxState(s): AxState<Shared>, Json(body): Json<Settings>) -> Json<Value> {
    *lock(&s.settings) = body;
    Json(json!({"session_cookie": body.session_cookie,
                "cash_in_under_data": body.cash_in_under_data}))
}

fn new_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"status": "error", "message": message}))).into_response()
}

/// A new CSRF token, and the `Set-Cookie` of the session issued with it
/// unless this DirectPay sets none.
fn new_session(s: &Shared) -> (Option<String>, String) {
    let session = lock(&s.settings).session_cookie.then(new_id);
    let csrf = new_id();
    lock(&s.sessions).insert(csrf.clone(), session.clone());
    (
        session.map(|id| format!("PHPSESSID={id}; path=/; HttpOnly")),
        csrf,
    )
}

/// The answer with its `Set-Cookie`, when there is one.
fn with_cookie(cookie: Option<String>, answer: impl IntoResponse) -> Response {
    let mut response = answer.into_response();
    if let Some(value) = cookie.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn csrf_token(AxState(s): AxState<Shared>) -> Response {
    let (cookie, csrf) = new_session(&s);
    // DirectPay's reply (fixtures/directpay/csrf_token.reply.json).
    with_cookie(
        cookie,
        Json(json!({ "message": "Done", "csrf_token": csrf })),
    )
}

async fn legacy_login_page(AxState(s): AxState<Shared>) -> Response {
    let (cookie, csrf) = new_session(&s);
    let page = format!(
        "<!doctype html><html><head><title>DirectPay</title>\n<meta charset=\"utf-8\">\n\
         <meta name=\"csrf-token\" content=\"{csrf}\">\n</head><body>login</body></html>"
    );
    with_cookie(cookie, ([(header::CONTENT_TYPE, "text/html")], page))
}

async fn legacy_login(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    body: Json<Login>,
) -> Response {
    match check_login(&s, &headers, &body) {
        Ok(token) => Json(json!({ "token": token })).into_response(),
        Err((status, message)) => error(status, message),
    }
}

async fn legacy_generate_qr(
    _: Authorised,
    AxState(s): AxState<Shared>,
    Json(body): Json<Value>,
) -> Response {
    let Some(amount) = body
        .get("amount")
        .and_then(|a| a.as_number())
        .map(|n| n.to_string())
    else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "amount is required");
    };
    let id = open(&s, "DPL", amount, &body, ("webhook_url", "redirect_url"));
    Json(json!({
        "success": true,
        "qrCodeUrl": format!("https://sandbox.directpayph.com/qr/{id}.png"),
        "reference": id,
    }))
    .into_response()
}

/// Opens a pending cash-in of `amount` (its id `prefix` and a new id)
/// with the request's merchant reference and its webhook and redirect URLs
/// under the keys the variant names them by.
fn open(s: &State, prefix: &str, amount: String, body: &Value, keys: (&str, &str)) -> String {
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let id = format!("{prefix}{}", new_id().to_uppercase());
    let t = Transaction {
        amount,
        status: "PENDING".into(),
        reference: text("merchantpaymentreferences"),
        webhook: text(keys.0),
        redirect_url: text(keys.1),
    };
    lock(&s.transactions).insert(id.clone(), t);
    id
}

async fn legacy_status(
    _: Authorised,
    AxState(s): AxState<Shared>,
    Path(reference): Path<String>,
) -> Response {
    let Some(t) = lock(&s.transactions).get(&reference).cloned() else {
        return error(StatusCode::NOT_FOUND, "payment not found");
    };
    let word = match t.status.as_str() {
        "SUCCESS" => "completed",
        "FAILED" => "failed",
        "EXPIRED" => "expired",
        _ => "pending",
    };
    Json(json!({ "status": word, "details": {"amount": t.amount} })).into_response()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

fn check_login(
    s: &Shared,
    headers: &HeaderMap,
    body: &Login,
) -> Result<String, (StatusCode, &'static str)> {
    // The CSRF token must be one this DirectPay issued; a session cookie,
    // when sent, must be the one issued with it. None is needed: the public
    // client shown working logs in with the header alone.
    let csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let issued = lock(&s.sessions).get(csrf).cloned();
    let matches = match (issued, cookie(headers, "PHPSESSID")) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(with), Some(sent)) => with.as_deref() == Some(sent.as_str()),
    };
    if !matches {
        return Err((StatusCode::FORBIDDEN, "CSRF token mismatch"));
    }
    if body.username != USERNAME || body.password != PASSWORD {
        return Err((StatusCode::UNAUTHORIZED, "invalid credentials"));
    }
    *lock(&s.logins) += 1;
    let token = new_id();
    s.tokens.issue(&token);
    Ok(token)
}

async fn login(AxState(s): AxState<Shared>, headers: HeaderMap, body: Json<Login>) -> Response {
    match check_login(&s, &headers, &body) {
        // fixtures/directpay/login.reply.json
        Ok(token) => Json(
            json!({"status": "success", "message": "Logged in successfully.",
                                 "data": {"username": body.username, "token": token}}),
        )
        .into_response(),
        Err((status, message)) => error(status, message),
    }
}

async fn pay_cashin(
    _: Authorised,
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    // The amount is pesos as a JSON number, at most 2 decimals, positive.
    let amount = match body.get("amount") {
        Some(Value::Number(n)) => n.to_string(),
        _ => return error(StatusCode::UNPROCESSABLE_ENTITY, "amount is required"),
    };
    let valid = amount
        .split_once('.')
        .is_none_or(|(_, frac)| frac.len() <= 2)
        && !amount.starts_with('-')
        && !amount.trim_start_matches(['0', '.']).is_empty();
    if !valid {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid amount");
    }
    let id = open(&s, "DP", amount, &body, ("webhook", "redirectUrl"));
    // The keys public clients read from this reply (fixtures/directpay
    // SOURCES.md, D6): the checkout URL as both `link` and `redirectionurl`.
    let fields = json!({
        "status": "success",
        "transactionId": id,
        // The real link is DirectPay's checkout host; the sandbox's serves
        // its own payment page (`payer_routes`).
        "link": format!("{}/directpay/pay/{id}", crate::payer::origin(&headers)),
        "redirectionurl": format!("{}/directpay/pay/{id}", crate::payer::origin(&headers)),
        "qrphraw": format!("00020101021228SANDBOX{id}6304ABCD"),
    });
    if lock(&s.settings).cash_in_under_data {
        // The other shape D6 reads (`response.data.data`;
        // fixtures/directpay/pay_cashin.reply.under_data.assembled.json).
        return Json(json!({"status": "success", "data": fields})).into_response();
    }
    Json(fields).into_response()
}

async fn status(_: Authorised, AxState(s): AxState<Shared>, Path(id): Path<String>) -> Response {
    let Some(t) = lock(&s.transactions).get(&id).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"success": false, "message": "transaction not found"})),
        )
            .into_response();
    };
    Json(json!({
        "success": true,
        "reference_number": id,
        "merchantpaymentreferences": t.reference,
        "total_amount": t.amount,
        "transaction_status": t.status,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct SetStatus {
    status: String,
    /// Send the callback too (default), in this shape; `"none"` drops it.
    #[serde(default)]
    callback: Option<String>,
}

/// Sets a transaction's status and, unless told not to, sends DirectPay's
/// callback to the webhook URL given at creation. Answers with the status
/// the webhook answered (0: not sent or no answer).
async fn set_status(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Json(body): Json<SetStatus>,
) -> Result<Json<Value>, StatusCode> {
    let t = kit::change(&s.transactions, &id, |t| {
        t.status = body.status.clone();
        t.clone()
    })?;
    let shape = match body.callback.as_deref() {
        Some("none") => return Ok(kit::delivered(0)),
        Some("seed") => Shape::Seed,
        _ => Shape::Real,
    };
    let callback = callback_body(&id, &t, &body.status, shape);
    Ok(kit::delivered(deliver(&t.webhook, &callback).await))
}

/// Sends a callback again, or one that disagrees with the stored status.
async fn send_callback(
    AxState(s): AxState<Shared>,
    Path(id): Path<String>,
    Json(body): Json<kit::Again>,
) -> Result<Json<Value>, StatusCode> {
    let t = kit::copy_of(&s.transactions, &id)?;
    let status = body.status.unwrap_or_else(|| t.status.clone());
    let callback = callback_body(&id, &t, &status, body.shape);
    Ok(kit::delivered(deliver(&t.webhook, &callback).await))
}

fn callback_body(id: &str, t: &Transaction, status: &str, shape: Shape) -> Value {
    match shape {
        // The captured callback's shape (fixtures/directpay/callback.real.*):
        // the cash-in's transaction id as `refId`, DirectPay's numeric
        // `txnId` beside it, the amount as a string, no merchant reference.
        Shape::Real => json!({
            "amount": t.amount,
            "currency": "PHP",
            "refId": id,
            "invoiceNo": if status.eq_ignore_ascii_case("FAILED") { "The QR code has expired.".to_string() } else { format!("INV-{id}") },
            "txnDesc": format!("Add Funds via GCASH QR|refId:{id}"),
            "txnDate": "1733565000000",
            "txnId": txn_number(id),
            "status": status,
            "merchant_id": "SANDBOX",
        }),
        Shape::Seed => json!({
            "reference": id,
            "status": status.to_ascii_lowercase(),
            "amount": t.amount,
            "timestamp": "2025-12-07T10:00:00Z",
        }),
    }
}

/// DirectPay's numeric transaction number for a cash-in (a string of
/// digits, as `txnId` is in the captured callbacks), stable per cash-in.
fn txn_number(id: &str) -> String {
    let n = id
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!("{}", 1_000_000 + n % 9_000_000)
}

/// `trigger` for DirectPay: the transaction whose merchant reference is our
/// payment id; callbacks in DirectPay's real shape.
pub(crate) async fn trigger(s: &Shared, event: Event, payment_id: &str) -> kit::Played {
    let (id, _) = kit::record_of(&s.transactions, |t| t.reference == payment_id)?;
    let set = |status: &str, callback: Option<&str>| {
        set_status(
            AxState(s.clone()),
            Path(id.clone()),
            Json(SetStatus {
                status: status.into(),
                callback: callback.map(str::to_string),
            }),
        )
    };
    let again = |status: Option<&str>| {
        send_callback(
            AxState(s.clone()),
            Path(id.clone()),
            Json(kit::Again {
                shape: Shape::Real,
                status: status.map(str::to_string),
            }),
        )
    };
    let mut report = Report::new(&id);
    match event {
        Event::Paid => report.sent("SUCCESS", set("SUCCESS", None).await).await,
        Event::Failed => report.sent("FAILED", set("FAILED", None).await).await,
        Event::Expired => report.sent("EXPIRED", set("EXPIRED", None).await).await,
        Event::Duplicate => {
            report.sent("SUCCESS", set("SUCCESS", None).await).await;
            report.sent("SUCCESS again", again(None).await).await;
        }
        Event::OutOfOrder => {
            report.sent("SUCCESS", set("SUCCESS", None).await).await;
            report
                .sent("PENDING (late)", again(Some("PENDING")).await)
                .await;
        }
    }
    Ok(report)
}

crate::kit::sandbox_provider!("directpay";
    "/directpay/api" => routes(),
    "/directpay/pay" => payer_routes(),
    "/_sandbox/directpay" => controls(),
);
