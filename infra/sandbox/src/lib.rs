//! paygate's provider sandbox: an HTTP server that speaks each provider's
//! API on its real paths (PROVIDERS.md), keeps its own state, and injects
//! faults on demand, so provider clients are tested over real HTTP.
//!
//! Every provider lives under its own prefix (`/directpay/api/...`); the
//! control API is under `/_sandbox/`:
//! - `POST /_sandbox/faults` `{"path": "/directpay/api/pay_cashin", "mode":
//!   "fail" | "delay" | "hang" | "apply_fail" | "apply_hang", "count": 2,
//!   "status": 503, "delay_ms": 100}`: the next `count` calls whose path
//!   starts with `path` fail, wait, or hang past any client timeout without
//!   being applied; `apply_fail` and `apply_hang` apply the call (the refund
//!   is made, the transfer booked) and then lose the answer: a `status`
//!   error instead of it, or no answer before the caller gives up. They
//!   model a call that reached the provider whose answer never came back.
//!   `DELETE /_sandbox/faults` forgets them all.
//! - `GET /_sandbox/calls?path=...`: how many calls reached paths starting
//!   with `path` (faulted ones included).
//! - `POST /_sandbox/trigger` `{"provider", "event", "payment_id"}`: plays
//!   `paid`, `failed`, `expired`, `duplicate` or `out-of-order` for one of
//!   paygate's payments as that provider would (see `trigger`).
//! - `POST /_sandbox/payer/{provider}/{payment_id}`: the buttons of the
//!   payer pages each provider serves where its checkout URL points (see
//!   `payer`).
//! - provider-specific controls under `/_sandbox/<provider>/`.
//!
//! Each provider module builds on `kit` alone and its state implements
//! [`kit::SandboxProvider`] (its routes on its own state, its trigger);
//! this root holds the states and their table ([`Sandbox::providers`]),
//! which the router and the trigger are built from.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

pub mod casino;
pub mod directpay;
pub mod epayment;
pub mod kit;
pub mod payer;
pub mod paygram;
pub mod payment_engine;
pub mod qpay;
pub mod standard_webhooks;
pub mod toyyibpay;
pub mod trigger;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    Fail,
    Delay,
    Hang,
    /// Apply the call, then answer `status` instead of its answer.
    ApplyFail,
    /// Apply the call, then hold the answer past any client timeout.
    ApplyHang,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Fault {
    pub path: String,
    pub mode: FaultMode,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default = "server_error")]
    pub status: u16,
    #[serde(default)]
    pub delay_ms: u64,
}

fn one() -> u32 {
    1
}
fn server_error() -> u16 {
    500
}

/// The sandbox's whole state, shared by every route.
#[derive(Default)]
pub struct Sandbox {
    faults: Mutex<Vec<Fault>>,
    calls: Mutex<HashMap<String, u32>>,
    pub directpay: Arc<directpay::State>,
    pub paygram: Arc<paygram::State>,
    pub casino: Arc<casino::State>,
    pub toyyibpay: Arc<toyyibpay::State>,
    pub epayment: Arc<epayment::State>,
    pub qpay: Arc<qpay::State>,
    pub payment_engine: Arc<payment_engine::State>,
}

pub type Shared = Arc<Sandbox>;

pub use kit::Shape;
use kit::{lock, Event, Guarded, SandboxProvider, TriggerError};
use serde_json::json;
use trigger::{Trigger, PROVIDERS};

impl Sandbox {
    /// The providers' table: each with its routes and its trigger.
    pub fn providers(&self) -> [Arc<dyn SandboxProvider>; 6] {
        [
            self.directpay.clone(),
            self.paygram.clone(),
            self.toyyibpay.clone(),
            self.qpay.clone(),
            self.epayment.clone(),
            self.payment_engine.clone(),
        ]
    }

    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let index = faults.iter().position(|f| path.starts_with(&f.path))?;
        let fault = faults[index].clone();
        faults[index].count -= 1;
        if faults[index].count == 0 {
            faults.remove(index);
        }
        Some(fault)
    }

    fn count_call(&self, path: &str) {
        *lock(&self.calls).entry(path.to_string()).or_default() += 1;
    }

    pub fn calls(&self, prefix: &str) -> u32 {
        lock(&self.calls)
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every credential the sandbox has issued and still honours (bearer,
    /// refresh and payment tokens, session ids and CSRF tokens): tests look
    /// for them where they must never appear.
    pub fn issued_credentials(&self) -> Vec<String> {
        let mut all = Vec::new();
        all.extend(self.directpay.credentials());
        all.extend(self.qpay.credentials());
        all.extend(self.payment_engine.credentials());
        all.extend(self.epayment.credentials());
        all
    }

    pub fn add_fault(&self, fault: Fault) {
        if fault.count > 0 {
            lock(&self.faults).push(fault);
        }
    }
}

async fn faults(State(sandbox): State<Shared>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if path.starts_with("/_sandbox/") {
        return next.run(request).await;
    }
    sandbox.count_call(&path);
    match sandbox.take_fault(&path) {
        Some(Fault {
            mode: FaultMode::Fail,
            status,
            ..
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, "sandbox: injected failure").into_response()
        }
        Some(Fault {
            mode: FaultMode::Delay,
            delay_ms,
            ..
        }) => {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            next.run(request).await
        }
        Some(Fault {
            mode: FaultMode::Hang,
            ..
        }) => {
            // Longer than any client timeout; the client gives up first.
            tokio::time::sleep(Duration::from_secs(600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Some(Fault {
            mode: mode @ (FaultMode::ApplyFail | FaultMode::ApplyHang),
            status,
            ..
        }) => {
            // The handler runs in its own task, so it completes even when
            // the caller gives up and drops the connection.
            let applied = tokio::spawn(next.run(request)).await;
            if matches!(mode, FaultMode::ApplyHang) {
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
            drop(applied);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, "sandbox: injected failure after applying the call").into_response()
        }
        None => next.run(request).await,
    }
}

async fn add_fault(State(sandbox): State<Shared>, Json(fault): Json<Fault>) -> StatusCode {
    sandbox.add_fault(fault);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(sandbox): State<Shared>) -> StatusCode {
    lock(&sandbox.faults).clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct CallsQuery {
    path: String,
}

async fn calls(
    State(sandbox): State<Shared>,
    Query(q): Query<CallsQuery>,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "path": q.path, "calls": sandbox.calls(&q.path) }))
}

/// The whole sandbox as a router: the controls, then every provider's
/// routes on its own state, all behind the fault injector.
pub fn router(sandbox: Shared) -> Router {
    let mut app = Router::new()
        .route("/_sandbox/faults", post(add_fault).delete(clear_faults))
        .route("/_sandbox/calls", get(calls))
        .route("/_sandbox/trigger", post(trigger_handle))
        .route(
            "/_sandbox/payer/{provider}/{payment_id}",
            post(payer_action),
        )
        .with_state(sandbox.clone())
        .merge(casino::router(sandbox.casino.clone()));
    for provider in sandbox.providers() {
        app = app.merge(provider.router());
    }
    app.layer(middleware::from_fn_with_state(sandbox, faults))
}

/// A running sandbox.
pub struct Running {
    pub addr: SocketAddr,
    pub state: Shared,
}

impl Running {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts the sandbox on `addr` (port 0 for a random one) in the background.
pub async fn start(addr: SocketAddr) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state: Shared = Arc::default();
    let app = router(state.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("sandbox stopped: {e}");
        }
    });
    Ok(Running { addr, state })
}

async fn trigger_handle(State(s): State<Shared>, Json(t): Json<Trigger>) -> Response {
    match trigger::run(&s.providers(), &t).await {
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
struct PayerAction {
    event: String,
    #[serde(default)]
    back: String,
}

/// `POST /_sandbox/payer/{provider}/{payment_id}` (a form): the event, then
/// the payer goes `back` (303), or reads that it is done.
async fn payer_action(
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
        if let Err(e) = trigger::run(&s.providers(), &t).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_providers_table_is_the_triggers_list() {
        let sandbox = Sandbox::default();
        let names: Vec<&str> = sandbox.providers().iter().map(|p| p.name()).collect();
        assert_eq!(names, PROVIDERS);
    }

    #[tokio::test]
    async fn the_trigger_finds_providers_by_name_or_alias_only() {
        let sandbox = Sandbox::default();
        let t = |provider: &str| Trigger {
            provider: provider.into(),
            event: Event::Paid,
            payment_id: "pay_unknown".into(),
        };
        for known in ["payment_engine", "payment-engine", "qpay"] {
            assert!(matches!(
                trigger::run(&sandbox.providers(), &t(known)).await,
                Err(TriggerError::UnknownPayment)
            ));
        }
        assert!(matches!(
            trigger::run(&sandbox.providers(), &t("stripe")).await,
            Err(TriggerError::UnknownProvider)
        ));
    }
}
