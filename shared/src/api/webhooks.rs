//! Provider callbacks: verify, find the payment, confirm with the provider,
//! apply exactly once, answer as the provider expects.

use std::collections::HashMap;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};

use crate::payment::{ChangeSource, Payment, PaymentStatus, Provider};
use crate::providers::description::CallbackAnswer;
use crate::providers::registry::describe;
use crate::providers::{PaymentRef, WebhookError, WebhookRequest};
use crate::responses::{self, ApiError};
use crate::services::Services;

/// The answer each provider expects for an accepted callback.
fn accepted(provider: Provider) -> Response<Body> {
    match describe(provider).callback_answer {
        CallbackAnswer::Json(text) => responses::json_text(StatusCode::OK, text),
        CallbackAnswer::Text(text) => responses::text(StatusCode::OK, text),
    }
}

/// The raw callback, as the provider sent it.
pub fn webhook_request(req: &Request) -> WebhookRequest {
    let to_map =
        |q: lambda_http::aws_lambda_events::query_map::QueryMap| -> HashMap<String, String> {
            q.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
    WebhookRequest {
        method: req.method().to_string(),
        path: to_map(req.path_parameters()),
        query: to_map(req.query_string_parameters()),
        headers: req
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().ok()?.to_string(),
                ))
            })
            .collect(),
        body: req.body().as_ref().to_vec(),
    }
}

/// Handles one callback of `provider`.
pub async fn handle(services: &Services, provider: Provider, req: Request) -> Response<Body> {
    use tracing::Instrument;
    let request_id = responses::request_id(&req);
    let span = super::request_span("webhook", &request_id);
    span.record("provider", provider.as_str());
    async {
        match handle_inner(services, provider, &req).await {
            Ok(r) => {
                tracing::info!(status = r.status().as_u16(), "callback answered");
                r
            }
            Err(e) => {
                if e.status.is_client_error() {
                    tracing::warn!(
                        code = e.code,
                        status = e.status.as_u16(),
                        "callback rejected"
                    );
                    crate::telemetry::webhook_rejected(provider.as_str(), e.code);
                } else {
                    tracing::warn!(
                        code = e.code,
                        status = e.status.as_u16(),
                        "callback not processed; the provider will send it again"
                    );
                }
                e.into_response(&request_id)
            }
        }
    }
    .instrument(span)
    .await
}

/// The provider's callback parser; none (no secret, say) is a 503, so the
/// provider sends the callback again later.
async fn parser(
    services: &Services,
    provider: Provider,
) -> Result<std::sync::Arc<dyn crate::providers::WebhookSource>, ApiError> {
    services.webhooks(provider).await.map_err(|e| {
        tracing::error!(error = %e, "webhook source unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "provider_unavailable",
            "try again later",
        )
    })
}

async fn handle_inner(
    services: &Services,
    provider: Provider,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    responses::body_bytes(req)?;
    let source = parser(services, provider).await?;
    let request = webhook_request(req);
    let parsed = match source.parse(&request) {
        // Signed with a secret we do not hold: it may have been rotated
        // since this instance read it. Read it again (at most once a
        // minute) and judge the callback once more.
        Err(WebhookError::Unauthenticated(_)) if services.reload_secret(provider).await => {
            parser(services, provider).await?.parse(&request)
        }
        other => other,
    };
    let event = parsed.map_err(|e| match e {
        WebhookError::Unauthenticated(what) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            format!("the {what} does not match"),
        ),
        WebhookError::Malformed(why) => {
            ApiError::bad_request("malformed_callback", responses::scrub(&why))
        }
    })?;
    let now = time::OffsetDateTime::now_utc();
    if let Some(id) = &event.event_id {
        // A delivery seen before has had its effect: answer, change nothing.
        if services.store.delivery_seen(provider, id, now).await? {
            return Ok(accepted(provider));
        }
    }
    if event.payment == PaymentRef::None {
        // About no payment (an account balance): recorded, nothing to apply.
        record(services, provider, &event, now).await?;
        return Ok(accepted(provider));
    }
    let payment = find(services, provider, &event.payment)
        .await?
        .ok_or_else(|| {
            ApiError::not_found("payment_not_found", "no payment matches this callback")
        })?;
    super::note_payment(&payment);
    match settle(services, provider, &event, &payment, now).await {
        // The provider forbids any other answer (QPay): what the callback
        // could not settle, the sweep and the merchant's GET will.
        Err(e) if describe(provider).answers_always => {
            tracing::warn!(
                payment_id = %payment.id,
                code = e.code,
                status = e.status.as_u16(),
                "callback not settled; answered as the provider requires, the sweep and GET settle the payment"
            );
            // The sweep asks about it within minutes instead of at its
            // expiry (an early check that finds it unpaid leaves it be).
            let due = (now + EARLY_RECHECK).min(payment.expires_at);
            if let Err(e) = services.store.recheck_payment_at(payment.id, due).await {
                tracing::warn!(payment_id = %payment.id, error = %e, "could not bring the sweep's check forward; it comes at the payment's expiry");
            }
            Ok(accepted(provider))
        }
        other => other,
    }
}

/// A callback about a known payment: confirmed (unless signed) and applied
/// once.
async fn settle(
    services: &Services,
    provider: Provider,
    event: &crate::providers::WebhookEvent,
    payment: &Payment,
    now: time::OffsetDateTime,
) -> Result<Response<Body>, ApiError> {
    if already_settled(payment, event.status) {
        // A duplicate or a late callback: one read, no provider call, no write.
        record(services, provider, event, now).await?;
        return Ok(accepted(provider));
    }
    let confirmation = if event.verified {
        // A signed event is the provider's word, but only about the
        // transaction we stored for this payment.
        let stored = payment.provider_reference.as_ref().map(|r| r.as_str());
        if event.provider_reference.is_none() || event.provider_reference.as_deref() != stored {
            return Err(ApiError::bad_request(
                "reference_mismatch",
                "the event names another transaction than the payment's",
            ));
        }
        crate::providers::Confirmation {
            status: event.status,
            amount: event.amount,
            provider_status: event.provider_status.clone(),
        }
    } else {
        // An unverified callback is a hint: ask the provider, at most once
        // per payment, claimed status and window, whoever sends how many.
        if !services
            .store
            .claim_provider_check(payment.id, event.status.as_str(), now, CONFIRM_WINDOW)
            .await?
        {
            tracing::info!(payment_id = %payment.id, "provider asked about this payment moments ago; callback left for the provider's retry");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "confirmation_throttled",
                "this payment was checked with the provider moments ago; retry later",
            ));
        }
        // The same question as GET, the sweep and reconcile; a transaction
        // the provider does not know yet is not "nothing paid" here: the
        // callback outran its status API, and the provider sends it again.
        let retry = || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_unavailable",
                "could not confirm; retry later",
            )
        };
        match super::ask(services, payment).await {
            Ok(crate::flow::Asked::Knows(confirmation)) => confirmation,
            Ok(crate::flow::Asked::Unknown) => {
                tracing::warn!(payment_id = %payment.id, "the provider does not know this payment yet; the provider will retry");
                return Err(retry());
            }
            Err(e) => {
                tracing::warn!(payment_id = %payment.id, error = %e, "could not confirm a callback; the provider will retry");
                return Err(retry());
            }
        }
    };
    if confirmation.status != event.status {
        tracing::warn!(
            payment_id = %payment.id,
            claimed = %event.status,
            confirmed = %confirmation.status,
            "callback disagrees with the provider; the provider's answer counts"
        );
    }
    // The delivery record commits with the change it causes: one
    // transaction, and a replay finds it.
    let also = match &event.event_id {
        Some(id) => vec![services
            .store
            .delivery_write(provider, id, now, now + DELIVERY_TTL)?],
        None => vec![],
    };
    match crate::flow::apply_confirmation(
        crate::flow::Books::of(services),
        payment,
        &confirmation,
        ChangeSource::Webhook,
        also,
    )
    .await
    {
        Ok(crate::flow::Applied::Moved(_)) => {}
        // Nothing moved, so nothing recorded the delivery yet.
        Ok(crate::flow::Applied::Unchanged(_)) => record(services, provider, event, now).await?,
        // The same delivery committed concurrently: it had its effect.
        Err(crate::store::StoreError::Refused(crate::store::ItemKind::WebhookDelivery)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(accepted(provider))
}

/// How soon the sweep asks about a payment whose callback was answered
/// without being settled (decision 55).
const EARLY_RECHECK: time::Duration = time::Duration::minutes(1);

/// Unverified callbacks claiming one status make at most one provider
/// confirmation per payment in this window.
pub const CONFIRM_WINDOW: time::Duration = time::Duration::seconds(5);

/// Deliveries are remembered for 30 days, longer than any provider retries.
const DELIVERY_TTL: time::Duration = time::Duration::days(30);

async fn record(
    services: &Services,
    provider: Provider,
    event: &crate::providers::WebhookEvent,
    now: time::OffsetDateTime,
) -> Result<(), ApiError> {
    if let Some(id) = &event.event_id {
        services
            .store
            .record_delivery(provider, id, now, now + DELIVERY_TTL)
            .await?;
    }
    Ok(())
}

/// Nothing a callback says can change a payment in these states, or the
/// callback repeats the state the payment is in.
fn already_settled(payment: &Payment, claimed: PaymentStatus) -> bool {
    payment.status == claimed
        || matches!(
            payment.status,
            PaymentStatus::Completed
                | PaymentStatus::Refunded
                | PaymentStatus::PartiallyRefunded
                | PaymentStatus::NeedsReview
        )
}

async fn find(
    services: &Services,
    provider: Provider,
    reference: &PaymentRef,
) -> Result<Option<Payment>, ApiError> {
    let payment = match reference {
        PaymentRef::Ours(id) => services.store.payment(*id).await?,
        PaymentRef::Provider(r) => services.store.payment_by_provider_ref(provider, r).await?,
        PaymentRef::ProviderOneOf(candidates) => {
            let mut found = None;
            for r in candidates {
                found = services.store.payment_by_provider_ref(provider, r).await?;
                if found.is_some() {
                    break;
                }
            }
            found
        }
        PaymentRef::None => None,
    };
    // A callback of one provider never touches another provider's payment.
    Ok(payment.filter(|p| p.provider == provider))
}
