//! What every provider module of the sandbox is built from, and imports
//! nothing else of the sandbox for: the trigger's events and report,
//! callback delivery, locking, the token book, and the trait each provider
//! implements ([`SandboxProvider`]: its routes and its trigger). The crate
//! root puts the providers together; `trigger` dispatches through their
//! table; no provider module imports either.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::to_bytes;
use axum::extract::{FromRequestParts, State as AxState};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Locks a mutex, recovering from a panicked holder (the sandbox's state
/// stays usable for the rest of a test run).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// The tokens a provider has issued and still honours.
#[derive(Debug, Default)]
pub struct TokenBook(Mutex<HashSet<String>>);

impl TokenBook {
    pub fn issue(&self, token: &str) {
        lock(&self.0).insert(token.to_string());
    }

    pub fn honours(&self, token: &str) -> bool {
        lock(&self.0).contains(token)
    }

    /// Whether the request's bearer token is one of these.
    pub fn honours_bearer(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|t| self.honours(t))
    }

    /// Takes a token out (a refresh token is good once); whether it was in.
    pub fn spend(&self, token: &str) -> bool {
        lock(&self.0).remove(token)
    }

    /// Every token lapses at once (the `expire` controls): 204.
    pub fn expire_all(&self) -> StatusCode {
        lock(&self.0).clear();
        StatusCode::NO_CONTENT
    }

    pub fn all(&self) -> Vec<String> {
        lock(&self.0).iter().cloned().collect()
    }
}

/// Every token these books hold (a provider's issued credentials).
pub fn issued(books: &[&TokenBook]) -> Vec<String> {
    books.iter().flat_map(|b| b.all()).collect()
}

/// A provider whose API answers only requests bearing a credential from
/// its login.
pub trait Guarded: Send + Sync + 'static {
    /// The access tokens it honours (the `expire-tokens` control lapses
    /// them).
    fn access(&self) -> &TokenBook;

    /// Every credential it has handed out and still honours (tests look
    /// for them where they must never appear).
    fn credentials(&self) -> Vec<String> {
        self.access().all()
    }

    /// Whether a request's headers carry a credential it honours.
    fn admits(&self, headers: &HeaderMap) -> bool {
        self.access().honours_bearer(headers)
    }

    /// Its answer to a request that carries none, in its own error shape.
    fn refusal(&self) -> Response;
}

/// A request the provider admits: as a handler's argument, any other
/// request is answered with the provider's refusal before the handler runs.
pub struct Authorised;

impl<G: Guarded> FromRequestParts<Arc<G>> for Authorised {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<G>) -> Result<Self, Response> {
        if state.admits(&parts.headers) {
            Ok(Authorised)
        } else {
            Err(state.refusal())
        }
    }
}

/// `POST /_sandbox/<provider>/expire-tokens`: every access token lapses
/// at once, so the client must log in (or refresh) again. 204.
pub async fn expire_tokens<G: Guarded>(AxState(s): AxState<Arc<G>>) -> StatusCode {
    s.access().expire_all()
}

/// A copy of one record, or 404 (a control naming an unknown record).
pub fn copy_of<V: Clone>(records: &Mutex<HashMap<String, V>>, id: &str) -> Result<V, StatusCode> {
    lock(records).get(id).cloned().ok_or(StatusCode::NOT_FOUND)
}

/// Changes one record under the lock and gives back what `f` returns, or
/// 404 when there is no such record.
pub fn change<V, R>(
    records: &Mutex<HashMap<String, V>>,
    id: &str,
    f: impl FnOnce(&mut V) -> R,
) -> Result<R, StatusCode> {
    lock(records)
        .get_mut(id)
        .map(f)
        .ok_or(StatusCode::NOT_FOUND)
}

/// A control's answer: the status paygate's webhook answered its callback
/// with (0: not sent, or no answer).
pub fn delivered(answer: u16) -> Json<Value> {
    Json(json!({ "delivered": answer }))
}

/// Which shape a callback takes: the provider's real one or the seed's.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    #[default]
    Real,
    Seed,
}

/// A control's request to send a record's callback again: in this shape,
/// claiming this status word (by default the stored one; another makes a
/// forged or out-of-order callback, the stored status unchanged).
#[derive(Debug, Default, Deserialize)]
pub struct Again {
    #[serde(default)]
    pub shape: Shape,
    #[serde(default)]
    pub status: Option<String>,
}

/// Posts a callback as the provider would and reports the answer's status
/// (0 when nothing answered).
pub async fn deliver(url: &str, body: &Value) -> u16 {
    answered(reqwest::Client::new().post(url).json(body)).await
}

/// Sends a callback (a provider's own request, headers and all) and
/// reports the answer's status (0 when nothing answered).
pub async fn answered(request: reqwest::RequestBuilder) -> u16 {
    match request.timeout(Duration::from_secs(30)).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// The provider's record of one of paygate's payments: the key and a copy
/// of the first record `names_it` picks, or the trigger's unknown payment.
pub fn record_of<V: Clone>(
    records: &Mutex<std::collections::HashMap<String, V>>,
    names_it: impl Fn(&V) -> bool,
) -> Result<(String, V), TriggerError> {
    lock(records)
        .iter()
        .find(|(_, v)| names_it(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .ok_or(TriggerError::UnknownPayment)
}

/// The provider's record of one of paygate's payments whose URL (`url_of`)
/// carries `payment_id=<payment_id>`, as paygate builds its callback URLs.
pub fn record_linked<V: Clone>(
    records: &Mutex<HashMap<String, V>>,
    payment_id: &str,
    url_of: impl Fn(&V) -> &str,
) -> Result<(String, V), TriggerError> {
    let needle = format!("payment_id={payment_id}");
    record_of(records, |v| url_of(v).contains(&needle))
}

/// What the trigger plays for a payment (see `trigger`).
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

/// One thing the provider sent: what it claimed and paygate's answer
/// (0 when nothing answered).
#[derive(Debug, Serialize)]
pub struct Delivery {
    pub callback: String,
    pub answer: u16,
}

/// What a trigger did.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The provider's own id for the payment.
    pub provider_reference: String,
    pub deliveries: Vec<Delivery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Report {
    pub fn new(provider_reference: &str) -> Report {
        Report {
            provider_reference: provider_reference.to_string(),
            ..Report::default()
        }
    }

    /// Records a control handler's answer (`{"delivered": status}`).
    pub async fn sent(&mut self, callback: &str, response: impl IntoResponse) {
        let body = to_bytes(response.into_response().into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        let answer = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("delivered").and_then(Value::as_u64))
            .unwrap_or(0) as u16;
        self.delivered(callback, answer);
    }

    pub fn delivered(&mut self, callback: &str, answer: u16) {
        self.deliveries.push(Delivery {
            callback: callback.to_string(),
            answer,
        });
    }

    pub fn note(mut self, note: &str) -> Report {
        self.note = Some(note.to_string());
        self
    }
}

#[derive(Debug)]
pub enum TriggerError {
    UnknownProvider,
    UnknownPayment,
}

/// What a trigger played, or why it could not.
pub type Played = Result<Report, TriggerError>;

/// A trigger under way.
pub type Triggered = Pin<Box<dyn Future<Output = Played> + Send>>;

/// One provider of the sandbox: its state is the implementor.
pub trait SandboxProvider: Send + Sync {
    /// The name paygate's API gives it.
    fn name(&self) -> &'static str;

    /// Other names the trigger takes for it.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// Its API, payer pages and `/_sandbox/` controls, under their
    /// prefixes, on its state.
    fn router(self: Arc<Self>) -> Router;

    /// Plays `event` for one of paygate's payments, as the provider would.
    fn trigger(self: Arc<Self>, event: Event, payment_id: String) -> Triggered;
}

/// Implements [`Guarded`] for the calling module's `State`: bearer tokens
/// from its `$access` book, the listed books' tokens as its credentials,
/// `$refusal` for a request without a token it honours.
macro_rules! guarded {
    ($access:ident $(, $more:ident)*; $refusal:expr) => {
        impl $crate::kit::Guarded for State {
            fn access(&self) -> &$crate::kit::TokenBook {
                &self.$access
            }

            fn credentials(&self) -> Vec<String> {
                $crate::kit::issued(&[&self.$access $(, &self.$more)*])
            }

            fn refusal(&self) -> axum::response::Response {
                $refusal
            }
        }
    };
}
pub(crate) use guarded;

/// Implements [`SandboxProvider`] for the calling module's `State`: its
/// name (and the trigger's other names for it), its routers nested under
/// their prefixes, and its module's `trigger` function.
macro_rules! sandbox_provider {
    ($name:literal $(aka [$($alias:literal),*])?; $($prefix:literal => $routes:expr),+ $(,)?) => {
        impl $crate::kit::SandboxProvider for State {
            fn name(&self) -> &'static str {
                $name
            }

            fn aliases(&self) -> &'static [&'static str] {
                &[$($($alias),*)?]
            }

            fn router(self: std::sync::Arc<Self>) -> axum::Router {
                axum::Router::new()$(.nest($prefix, $routes))+.with_state(self)
            }

            fn trigger(
                self: std::sync::Arc<Self>,
                event: $crate::kit::Event,
                payment_id: String,
            ) -> $crate::kit::Triggered {
                Box::pin(async move { trigger(&self, event, &payment_id).await })
            }
        }
    };
}
pub(crate) use sandbox_provider;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_book_honours_what_it_issued_until_it_lapses() {
        let book = TokenBook::default();
        book.issue("t1");
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer t1".parse().unwrap());
        assert!(book.honours_bearer(&headers));
        headers.insert("authorization", "Bearer t2".parse().unwrap());
        assert!(!book.honours_bearer(&headers));
        assert!(book.spend("t1") && !book.spend("t1"));
        book.issue("t3");
        assert_eq!(book.expire_all(), StatusCode::NO_CONTENT);
        assert!(book.all().is_empty());
    }
}
