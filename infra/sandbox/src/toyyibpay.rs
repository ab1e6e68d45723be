//! ToyyibPay: `POST /toyyibpay/index.php/api/{createCategory, createBill,
//! getBillTransactions, inactiveBill}` with form fields, answering as the
//! real API does (JSON arrays, inactiveBill's object; errors as `[FALSE]`,
//! `[KEY-DID-NOT-EXIST]`, `[{"msg": ..}]` or, for createBill's
//! validation, `{"status": "error", "msg": ..}`, all with HTTP 200).
//!
//! Controls under `/_sandbox/toyyibpay/`: `bills/{code}/attempt`
//! `{"status": 1|2|3, "amount_sen": 9990?, "callback": "urlencoded" |
//! "multipart" | "none", "hash": false?}` records a payment attempt and
//! sends the callback to the bill's callback URL (without `hash` when
//! told, as the official API reference lists the callback's parameters);
//! `bills/{code}/callback` `{"status", "shape", "tamper": true?, "hash":
//! false?}` sends one again (or a forged one); `hmac-key` `{"key"}`
//! makes callbacks carry the seed's `x-signature`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::kit::{self, lock, Event, Report};

/// Handlers share this provider's state only.
type Shared = std::sync::Arc<State>;

pub const SECRET_KEY: &str = "sandbox-toyyibpay-secret";

#[derive(Debug, Clone)]
pub struct Attempt {
    pub status: u8,
    pub amount_sen: i64,
    pub refno: String,
}

#[derive(Debug, Clone, Default)]
pub struct Bill {
    pub amount_sen: i64,
    pub name: String,
    pub description: String,
    /// billTo, billEmail, billPhone as given.
    pub payer: (String, String, String),
    pub external_reference: String,
    pub callback_url: String,
    /// billReturnUrl: where the bill page sends the payer afterwards.
    pub return_url: String,
    pub active: bool,
    /// billExpiryDate as given (`17-12-2020 17:00:00`), if it was.
    pub expiry_date: Option<String>,
    pub attempts: Vec<Attempt>,
}

#[derive(Default)]
pub struct State {
    pub categories: Mutex<HashMap<String, String>>,
    pub bills: Mutex<HashMap<String, Bill>>,
    pub hmac_key: Mutex<Option<String>>,
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/index.php/api/{method}", post(call))
        // The payment page, `{base}/{BillCode}` (PROVIDERS.md).
        .route("/{code}", axum::routing::get(bill_page))
}

/// A bill as the sandbox holds it (tests read what paygate sent).
pub fn bill(s: &State, code: &str) -> Option<Bill> {
    lock(&s.bills).get(code).cloned()
}

/// The bill's payment page: FPX, then back to billReturnUrl with
/// `status_id` (1 paid, 3 failed), `billcode` and `order_id`.
async fn bill_page(AxState(s): AxState<Shared>, Path(code): Path<String>) -> Response {
    let Some(bill) = bill(&s, &code) else {
        return crate::payer::unknown();
    };
    let back = |status: u8| {
        (!bill.return_url.is_empty()).then(|| {
            let query = serde_urlencoded::to_string([
                ("status_id", status.to_string()),
                ("billcode", code.clone()),
                ("order_id", bill.external_reference.clone()),
            ])
            .unwrap_or_default();
            let joint = if bill.return_url.contains('?') {
                '&'
            } else {
                '?'
            };
            format!("{}{joint}{query}", bill.return_url)
        })
    };
    let amount = format!("RM {}.{:02}", bill.amount_sen / 100, bill.amount_sen % 100);
    crate::payer::page(crate::payer::Page {
        provider: "toyyibpay",
        title: "FPX online banking: choose your bank",
        amount: &amount,
        payment_id: &bill.external_reference,
        back: crate::payer::Back {
            paid: back(1),
            failed: back(3),
            abandoned: back(3),
        },
    })
}

pub fn controls() -> Router<Shared> {
    Router::new()
        .route("/bills/{code}/attempt", post(attempt))
        .route("/bills/{code}/callback", post(resend))
        .route("/hmac-key", post(set_hmac_key))
}

fn text(s: &str) -> Response {
    (StatusCode::OK, s.to_string()).into_response()
}

fn msg(m: &str) -> Response {
    Json(json!([{ "msg": m }])).into_response()
}

fn ringgit(sen: i64) -> String {
    format!("{}.{:02}", sen / 100, sen % 100)
}

fn allowed(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.chars().count() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '_')
}

async fn call(
    AxState(t): AxState<Shared>,
    Path(method): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let key_ok = get("userSecretKey") == SECRET_KEY || get("secretKey") == SECRET_KEY;
    // getBillTransactions takes no secret key: the bill code is enough
    // (fixtures/toyyibpay/get_bill_transactions.request.form).
    if !key_ok && method != "getBillTransactions" {
        return text("[KEY-DID-NOT-EXIST]");
    }
    match method.as_str() {
        "createCategory" => {
            let name = get("catname");
            if name.is_empty() {
                return text("[FALSE]");
            }
            let mut categories = lock(&t.categories);
            if let Some(code) = categories.get(&name) {
                // An object, not an array, for a name that exists
                // (fixtures/toyyibpay/create_category.reply.exists.object.json).
                return Json(
                    json!({"status": "Category name already exist!", "CategoryCode": code}),
                )
                .into_response();
            }
            let code = ulid::Ulid::new().to_string()[18..].to_lowercase();
            categories.insert(name, code.clone());
            Json(json!([{ "CategoryCode": code }])).into_response()
        }
        "createBill" => {
            if !lock(&t.categories)
                .values()
                .any(|c| *c == get("categoryCode"))
            {
                return msg("Category code not found");
            }
            if !allowed(&get("billName"), 30) || !allowed(&get("billDescription"), 100) {
                // A createBill refusal as an object, as integrators have
                // seen it (fixtures/toyyibpay/create_bill.reply.error_object.described.json).
                return Json(json!({"status": "error",
                    "msg": "Bill name or description contains characters that are not allowed"}))
                .into_response();
            }
            let Ok(sen) = get("billAmount").parse::<i64>() else {
                return text("[FALSE]");
            };
            if sen <= 0 {
                return text("[FALSE]");
            }
            let code = ulid::Ulid::new().to_string()[18..].to_lowercase();
            lock(&t.bills).insert(
                code.clone(),
                Bill {
                    amount_sen: sen,
                    name: get("billName"),
                    description: get("billDescription"),
                    payer: (get("billTo"), get("billEmail"), get("billPhone")),
                    external_reference: get("billExternalReferenceNo"),
                    callback_url: get("billCallbackUrl"),
                    return_url: get("billReturnUrl"),
                    active: true,
                    expiry_date: Some(get("billExpiryDate")).filter(|d| !d.is_empty()),
                    attempts: Vec::new(),
                },
            );
            Json(json!([{ "BillCode": code }])).into_response()
        }
        "getBillTransactions" => {
            let Some(bill) = lock(&t.bills).get(&get("billCode")).cloned() else {
                return text("[FALSE]");
            };
            // Every key of the documented row, every value a string
            // (fixtures/toyyibpay/get_bill_transactions.reply.json); the
            // request may ask for one billpaymentStatus only.
            let wanted = get("billpaymentStatus");
            let rows: Vec<Value> = bill
                .attempts
                .iter()
                .filter(|a| wanted.is_empty() || a.status.to_string() == wanted)
                .map(|a| {
                    json!({
                        "billName": bill.name,
                        "billDescription": bill.description,
                        "billTo": bill.payer.0,
                        "billEmail": bill.payer.1,
                        "billPhone": bill.payer.2,
                        "billStatus": if bill.active { "1" } else { "0" },
                        "billpaymentStatus": a.status.to_string(),
                        "billpaymentChannel": "FPX",
                        "billpaymentAmount": ringgit(a.amount_sen),
                        "billpaymentInvoiceNo": a.refno,
                        "billSplitPayment": "0",
                        "billSplitPaymentArgs": "",
                        "billpaymentSettlement": "Pending Settlement",
                        "billpaymentSettlementDate": "0000-00-00 00:00:00",
                        "SettlementReferenceNo": "",
                        "billPaymentDate": "07-12-2025 10:30:00",
                        "billExternalReferenceNo": bill.external_reference,
                    })
                })
                .collect();
            Json(rows).into_response()
        }
        // inactiveBill answers with an object, not an array
        // (shared/tests/fixtures/toyyibpay/inactive_bill.reply.*.json).
        "inactiveBill" => {
            let answer = |status: &str, result: &str| {
                Json(json!({"status": status, "result": result})).into_response()
            };
            match lock(&t.bills).get_mut(&get("billCode")) {
                Some(bill) if !bill.active => answer("failed", "Bill is inactive"),
                Some(bill) if bill.attempts.iter().any(|a| a.status == 1) => {
                    answer("failed", "Bill has been paid and cannot be inactivated")
                }
                Some(bill) if bill.attempts.iter().any(|a| matches!(a.status, 2 | 4)) => {
                    answer("failed", "Bill has pending transaction process")
                }
                Some(bill) => {
                    bill.active = false;
                    answer("success", "Bill status changed to inactive")
                }
                None => text("[FALSE]"),
            }
        }
        _ => (StatusCode::NOT_FOUND, "unknown method").into_response(),
    }
}

#[derive(Deserialize)]
struct AttemptBody {
    status: u8,
    #[serde(default)]
    amount_sen: Option<i64>,
    #[serde(default)]
    callback: Option<String>,
    /// The callback carries `hash` (the plugin's); `false` sends only the
    /// parameters the official API reference lists, without it.
    #[serde(default = "yes")]
    hash: bool,
}

fn yes() -> bool {
    true
}

async fn attempt(
    AxState(s): AxState<Shared>,
    Path(code): Path<String>,
    Json(body): Json<AttemptBody>,
) -> Result<Json<Value>, StatusCode> {
    let (bill, a) = kit::change(&s.bills, &code, |bill| {
        let a = Attempt {
            status: body.status,
            amount_sen: body.amount_sen.unwrap_or(bill.amount_sen),
            refno: format!("TP{}", &ulid::Ulid::new().to_string()[16..]),
        };
        bill.attempts.push(a.clone());
        (bill.clone(), a)
    })?;
    let delivered = match body.callback.as_deref().unwrap_or("urlencoded") {
        "none" => 0,
        shape => send(&s, &code, &bill, &a, a.status, shape, Hash::of(body.hash)).await,
    };
    Ok(Json(json!({"delivered": delivered, "refno": a.refno})))
}

#[derive(Deserialize)]
struct Resend {
    #[serde(default)]
    status: Option<u8>,
    #[serde(default)]
    shape: Option<String>,
    #[serde(default)]
    tamper: bool,
    #[serde(default = "yes")]
    hash: bool,
}

/// What a callback's `hash` is: right, another status's (tampered), or
/// absent (the official reference's parameters).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hash {
    Right,
    Tampered,
    Absent,
}

impl Hash {
    fn of(present: bool) -> Hash {
        if present {
            Hash::Right
        } else {
            Hash::Absent
        }
    }
}

async fn resend(
    AxState(s): AxState<Shared>,
    Path(code): Path<String>,
    Json(body): Json<Resend>,
) -> Result<Json<Value>, StatusCode> {
    let bill = kit::copy_of(&s.bills, &code)?;
    let a = bill.attempts.last().cloned().unwrap_or(Attempt {
        status: 2,
        amount_sen: bill.amount_sen,
        refno: "TP-NONE".into(),
    });
    let status = body.status.unwrap_or(a.status);
    let shape = body.shape.unwrap_or_else(|| "urlencoded".into());
    Ok(kit::delivered(
        send(
            &s,
            &code,
            &bill,
            &a,
            status,
            &shape,
            if body.tamper {
                Hash::Tampered
            } else {
                Hash::of(body.hash)
            },
        )
        .await,
    ))
}

#[derive(Deserialize)]
struct HmacKey {
    key: String,
}

async fn set_hmac_key(AxState(s): AxState<Shared>, Json(body): Json<HmacKey>) -> StatusCode {
    *lock(&s.hmac_key) = Some(body.key);
    StatusCode::NO_CONTENT
}

fn hash(status: &str, order_id: &str, refno: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(format!("{SECRET_KEY}{status}{order_id}{refno}ok").as_bytes());
    hex::encode(md5.finalize())
}

async fn send(
    s: &Shared,
    code: &str,
    bill: &Bill,
    a: &Attempt,
    status: u8,
    shape: &str,
    hashed: Hash,
) -> u16 {
    let status_text = status.to_string();
    // A tampered callback claims `status` with the hash of another status.
    let hashed_status = if hashed == Hash::Tampered {
        if status == 1 {
            "3".into()
        } else {
            "1".into()
        }
    } else {
        status_text.clone()
    };
    let mut fields = vec![
        ("refno", a.refno.clone()),
        ("status", status_text),
        (
            "reason",
            if status == 1 {
                "Approved".into()
            } else {
                "Pending or failed".into()
            },
        ),
        ("billcode", code.to_string()),
        ("order_id", bill.external_reference.clone()),
        ("amount", ringgit(a.amount_sen)),
        ("transaction_time", "2025-12-07 10:30:00".into()),
        (
            "hash",
            hash(&hashed_status, &bill.external_reference, &a.refno),
        ),
    ];
    if hashed == Hash::Absent {
        fields.retain(|(k, _)| *k != "hash");
    }
    let (body, content_type) = if shape == "multipart" {
        let boundary = "----sandbox".to_string() + &ulid::Ulid::new().to_string();
        let mut body = String::new();
        for (k, v) in &fields {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        (body, format!("multipart/form-data; boundary={boundary}"))
    } else {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        (body, "application/x-www-form-urlencoded".to_string())
    };
    let mut request = reqwest::Client::new()
        .post(&bill.callback_url)
        .header("content-type", content_type)
        .timeout(Duration::from_secs(30));
    if let Some(key) = lock(&s.hmac_key).clone() {
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
            mac.update(body.as_bytes());
            request = request.header("x-signature", hex::encode(mac.finalize().into_bytes()));
        }
    }
    kit::answered(request.body(body)).await
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `trigger` for ToyyibPay: the bill whose external reference is our
/// payment id. ToyyibPay sends no callback when a bill lapses; `expired`
/// deactivates the bill and leaves the asking to paygate's sweep.
pub(crate) async fn trigger(s: &Shared, event: Event, payment_id: &str) -> kit::Played {
    let (code, _) = kit::record_of(&s.bills, |b| b.external_reference == payment_id)?;
    let pay = |status: u8| {
        attempt(
            AxState(s.clone()),
            Path(code.clone()),
            Json(AttemptBody {
                status,
                amount_sen: None,
                callback: None,
                hash: true,
            }),
        )
    };
    let again = |status: Option<u8>| {
        resend(
            AxState(s.clone()),
            Path(code.clone()),
            Json(Resend {
                status,
                shape: None,
                tamper: false,
                hash: true,
            }),
        )
    };
    let mut report = Report::new(&code);
    match event {
        Event::Paid => report.sent("status_id 1", pay(1).await).await,
        Event::Failed => report.sent("status_id 3", pay(3).await).await,
        Event::Expired => {
            if let Some(bill) = lock(&s.bills).get_mut(&code) {
                bill.active = false;
            }
            report = report.note("bill deactivated; ToyyibPay sends no callback for a lapsed bill");
        }
        Event::Duplicate => {
            report.sent("status_id 1", pay(1).await).await;
            report.sent("status_id 1 again", again(None).await).await;
        }
        Event::OutOfOrder => {
            report.sent("status_id 1", pay(1).await).await;
            report
                .sent("status_id 2 (late)", again(Some(2)).await)
                .await;
        }
    }
    Ok(report)
}

crate::kit::sandbox_provider!("toyyibpay";
    "/toyyibpay" => routes(),
    "/_sandbox/toyyibpay" => controls(),
);
