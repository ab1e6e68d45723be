//! `POST /_sandbox/trigger` `{"provider", "event", "payment_id"}`: what a
//! payment provider's CLI trigger does, for one of our payments. The
//! sandbox finds the provider's record by the reference paygate gave it
//! (our payment id) and plays the event as that provider would:
//!
//! - `paid`, `failed`, `expired`: the provider's record moves to that state
//!   and the provider's callback goes out (or none, where that provider
//!   sends none for the event; the report says so).
//! - `duplicate`: paid, and the same callback delivered twice.
//! - `out-of-order`: paid, the final callback first, then one that claims
//!   an earlier state (or, for a signed provider, a later contradicting
//!   event), as a provider's retry queue can deliver them.
//!
//! The answer lists each delivery and the HTTP status paygate answered.

use axum::body::to_bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::Shared;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    Paid,
    Failed,
    Expired,
    Duplicate,
    OutOfOrder,
}

impl Event {
    pub const ALL: [(&'static str, Event); 5] = [
        ("paid", Event::Paid),
        ("failed", Event::Failed),
        ("expired", Event::Expired),
        ("duplicate", Event::Duplicate),
        ("out-of-order", Event::OutOfOrder),
    ];

    pub fn parse(word: &str) -> Option<Event> {
        Event::ALL.iter().find(|(w, _)| *w == word).map(|(_, e)| *e)
    }
}

/// Providers the trigger knows, by the name paygate's API uses.
pub const PROVIDERS: [&str; 6] = [
    "directpay",
    "paygram",
    "toyyibpay",
    "qpay",
    "epayment",
    "payment_engine",
];

#[derive(Debug, Deserialize)]
pub struct Trigger {
    pub provider: String,
    pub event: Event,
    pub payment_id: String,
}

/// One thing the provider sent: what it claimed and paygate's answer
/// (0 when nothing answered).
#[derive(Debug, Serialize)]
pub struct Delivery {
    pub callback: String,
    pub answer: u16,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The provider's own id for the payment.
    pub provider_reference: String,
    pub deliveries: Vec<Delivery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Report {
    pub(crate) fn new(provider_reference: &str) -> Report {
        Report {
            provider_reference: provider_reference.to_string(),
            ..Report::default()
        }
    }

    /// Records a control handler's answer (`{"delivered": status}`).
    pub(crate) async fn sent(&mut self, callback: &str, response: Response) {
        let body = to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        let answer = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("delivered").and_then(Value::as_u64))
            .unwrap_or(0) as u16;
        self.delivered(callback, answer);
    }

    pub(crate) fn delivered(&mut self, callback: &str, answer: u16) {
        self.deliveries.push(Delivery {
            callback: callback.to_string(),
            answer,
        });
    }

    pub(crate) fn note(mut self, note: &str) -> Report {
        self.note = Some(note.to_string());
        self
    }
}

#[derive(Debug)]
pub enum TriggerError {
    UnknownProvider,
    UnknownPayment,
}

/// Runs one trigger against the sandbox's state.
pub async fn run(s: &Shared, t: &Trigger) -> Result<Report, TriggerError> {
    let id = t.payment_id.as_str();
    match t.provider.as_str() {
        "directpay" => crate::directpay::trigger(s, t.event, id).await,
        "paygram" => crate::paygram::trigger(s, t.event, id).await,
        "toyyibpay" => crate::toyyibpay::trigger(s, t.event, id).await,
        "qpay" => crate::qpay::trigger(s, t.event, id).await,
        "epayment" => crate::epayment::trigger(s, t.event, id).await,
        "payment_engine" | "payment-engine" => crate::payment_engine::trigger(s, t.event, id).await,
        _ => Err(TriggerError::UnknownProvider),
    }
}

pub(crate) async fn handle(State(s): State<Shared>, Json(t): Json<Trigger>) -> Response {
    match run(&s, &t).await {
        Ok(report) => Json(report).into_response(),
        Err(TriggerError::UnknownProvider) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("unknown provider {:?}; one of {}", t.provider, PROVIDERS.join(", "))})),
        )
            .into_response(),
        Err(TriggerError::UnknownPayment) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("{} has no payment {}", t.provider, t.payment_id)})),
        )
            .into_response(),
    }
}

/// A payer's button on a provider's page (`payer`): `paid` and `failed` play
/// the trigger's event, `abandon` does nothing at the provider.
#[derive(Debug, Deserialize)]
pub(crate) struct PayerAction {
    event: String,
    #[serde(default)]
    back: String,
}

/// `POST /_sandbox/payer/{provider}/{payment_id}` (a form): the event, then
/// the payer goes `back` (303), or reads that it is done.
pub(crate) async fn payer_action(
    State(s): State<Shared>,
    axum::extract::Path((provider, payment_id)): axum::extract::Path<(String, String)>,
    axum::Form(action): axum::Form<PayerAction>,
) -> Response {
    let event = match action.event.as_str() {
        "abandon" => None,
        word => match Event::parse(word) {
            Some(e @ (Event::Paid | Event::Failed)) => Some(e),
            _ => {
                return (StatusCode::BAD_REQUEST, "event: paid, failed or abandon").into_response()
            }
        },
    };
    if let Some(event) = event {
        let t = Trigger {
            provider,
            event,
            payment_id,
        };
        if let Err(e) = run(&s, &t).await {
            let why = match e {
                TriggerError::UnknownProvider => "unknown provider",
                TriggerError::UnknownPayment => "unknown payment",
            };
            return (StatusCode::NOT_FOUND, why).into_response();
        }
    }
    let back = action.back.trim();
    if back.starts_with("http://") || back.starts_with("https://") {
        return axum::response::Redirect::to(back).into_response();
    }
    crate::payer::done(match event {
        Some(Event::Paid) => "Paid",
        Some(_) => "The payment failed",
        None => "Cancelled",
    })
}
