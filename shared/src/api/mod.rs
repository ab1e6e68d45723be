//! The handlers behind every function: plain async functions over
//! `lambda_http` requests and Lambda events, so tests call them in-process
//! with the samples in `events/`. Each function's `main.rs` builds
//! [`Services`](crate::services::Services) once and hands requests here.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::payment::{Checkout, HistoryEntry, Payment};
use crate::responses::ApiError;
use crate::store::{TopUp, TopUpStatus};

pub mod authorizer;
pub mod console;
mod cursor;
pub mod events;
pub mod events_worker;
pub mod health;
mod idempotent;
pub mod jobs;
mod listing;
pub mod ops;
pub mod pay_page;
pub mod payments;
pub mod reconcile;
pub mod wallets;
pub mod webhooks;
pub mod worker;

fn respond(request_id: &str, result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(|e| e.into_response(request_id))
}

/// Asks the payment's provider where it stands, through its client.
pub(crate) async fn ask(
    services: &crate::services::Services,
    payment: &Payment,
) -> Result<crate::flow::Asked, crate::providers::ProviderError> {
    let gateway = services.gateway(payment.provider).await?;
    match crate::flow::ask_provider(gateway.as_ref(), payment).await {
        // Our credentials refused (after the client's own login renewal):
        // the secret may have been rotated. Read it again, at most once a
        // minute, and ask once more.
        Err(crate::providers::ProviderError::Auth { .. })
            if services.reload_secret(payment.provider).await =>
        {
            let gateway = services.gateway(payment.provider).await?;
            crate::flow::ask_provider(gateway.as_ref(), payment).await
        }
        other => other,
    }
}

/// The span every request runs in: its route and request id, and the
/// provider and payment once known ([`note_payment`]), so each log line
/// of the request carries them.
pub(crate) fn request_span(route: &'static str, request_id: &str) -> tracing::Span {
    tracing::info_span!(
        "request",
        route,
        request_id,
        provider = tracing::field::Empty,
        payment_id = tracing::field::Empty
    )
}

/// Names the payment (and its provider) on the current request's span.
pub(crate) fn note_payment(payment: &Payment) {
    let span = tracing::Span::current();
    span.record("payment_id", tracing::field::display(payment.id));
    span.record("provider", payment.provider.as_str());
}

/// Runs a handler in its request span and logs the answer's status.
async fn handled(
    route: &'static str,
    request_id: &str,
    handler: impl std::future::Future<Output = Result<Response<Body>, ApiError>>,
) -> Response<Body> {
    use tracing::Instrument;
    async {
        let result = handler.await;
        // The error's code beside its status (never its message, which may
        // quote what the caller sent).
        let code = result.as_ref().err().map(|e| e.code);
        let response = respond(request_id, result);
        tracing::info!(status = response.status().as_u16(), code, "answered");
        response
    }
    .instrument(request_span(route, request_id))
    .await
}

/// Times as API.md writes them: RFC 3339, UTC.
mod rfc3339 {
    pub use time::serde::rfc3339::*;
}

#[derive(Serialize)]
pub struct TopUpView {
    pub status: TopUpStatus,
    pub casino_transaction_id: Option<String>,
    pub attempts: u32,
    /// Why the latest attempt failed or has no known outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One refund of a payment, as the API shows it.
#[derive(Serialize)]
pub struct RefundView {
    pub id: String,
    pub amount: i64,
    pub status: crate::store::RefundStatus,
    #[serde(with = "rfc3339")]
    pub created_at: time::OffsetDateTime,
}

/// A payment as the API shows it.
#[derive(Serialize)]
pub struct PaymentView {
    pub id: String,
    pub status: crate::payment::PaymentStatus,
    pub provider: crate::payment::Provider,
    pub amount: i64,
    pub currency: crate::money::Currency,
    pub reference: String,
    /// The merchant's description, on a single payment's answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub provider_reference: Option<String>,
    pub provider_status: Option<String>,
    /// What the provider confirmed was paid, where it was recorded apart
    /// from `amount` (a payment that went to review).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_amount: Option<i64>,
    pub refunded_amount: i64,
    /// Refunds sent whose outcome is not recorded yet.
    pub refund_pending: i64,
    /// The payment's refunds, where it has any (refund and get answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunds: Option<Vec<RefundView>>,
    pub checkout: Checkout,
    pub wallet_user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub casino: Option<serde_json::Value>,
    #[serde(with = "rfc3339")]
    pub expires_at: time::OffsetDateTime,
    #[serde(with = "rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "rfc3339")]
    pub updated_at: time::OffsetDateTime,
    pub history: Vec<HistoryEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topup: Option<TopUpView>,
    /// Whether the history names the operators who decided (operators'
    /// answers) or only that an operator did (merchants').
    #[serde(skip)]
    names_operators: bool,
}

/// A history entry as a merchant sees it: that an operator decided and
/// why, not who.
fn without_operator(mut entry: HistoryEntry) -> HistoryEntry {
    entry.by = None;
    entry
}

impl PaymentView {
    pub fn of(p: &Payment, topup: Option<&TopUp>) -> PaymentView {
        PaymentView {
            id: p.id.to_string(),
            status: p.status,
            provider: p.provider,
            amount: p.amount.minor(),
            currency: p.amount.currency(),
            reference: p.reference.to_string(),
            description: None,
            provider_reference: p.provider_reference.as_ref().map(|r| r.to_string()),
            provider_status: p.provider_status.clone(),
            confirmed_amount: p.confirmed_amount.map(|m| m.minor()),
            refunded_amount: p.refunded_amount.minor(),
            refund_pending: p.refund_pending().minor(),
            refunds: None,
            checkout: p.checkout.clone(),
            wallet_user_id: p.wallet_user_id.as_ref().map(|w| w.to_string()),
            casino: p
                .casino_username
                .as_ref()
                .map(|u| serde_json::json!({"username": u.as_str()})),
            expires_at: p.expires_at,
            created_at: p.created_at,
            updated_at: p.updated_at,
            // A merchant sees that an operator decided, and why, not who.
            history: p.history.iter().cloned().map(without_operator).collect(),
            topup: topup.map(|t| TopUpView {
                status: t.status,
                casino_transaction_id: t.casino_transaction_id.clone(),
                attempts: t.attempts,
                last_error: t.last_error.clone(),
            }),
            names_operators: false,
        }
    }
}

impl PaymentView {
    /// The view as operators see it: the history names who decided.
    pub fn naming_operators(mut self, p: &Payment) -> PaymentView {
        self.history = p.history.clone();
        self.names_operators = true;
        self
    }

    /// The view with what the payment keeps in items of its own: its
    /// refunds, where it has any, and the history past what its item
    /// carries.
    pub async fn complete(
        mut self,
        services: &crate::services::Services,
        p: &Payment,
    ) -> Result<PaymentView, crate::store::StoreError> {
        self.description = p.description.clone();
        if p.history_apart > 0 {
            let apart = services.store.history_apart(p.id).await?;
            let names = self.names_operators;
            self.history.extend(
                apart
                    .into_iter()
                    .map(|e| if names { e } else { without_operator(e) }),
            );
        }
        if !p.refunded_amount.is_zero() || !p.refund_pending().is_zero() {
            self.refunds = Some(
                services
                    .store
                    .refunds_of(p.id)
                    .await?
                    .into_iter()
                    .map(|r| RefundView {
                        id: format!("ref_{}", r.refund_id),
                        amount: r.amount.minor(),
                        status: r.status,
                        created_at: r.created_at,
                    })
                    .collect(),
            );
        }
        Ok(self)
    }
}

/// 404 with API.md's shape, for routes that name a missing thing.
pub fn not_found(request_id: &str, code: &'static str, message: &str) -> Response<Body> {
    ApiError::new(StatusCode::NOT_FOUND, code, message).into_response(request_id)
}
