//! Fanning an event out to its merchant's endpoints, and each attempt to
//! deliver it (API.md: the headers, the signature, 2xx within 15 s, the
//! retry schedule, 410 Gone disables the endpoint).
//!
//! A delivery is claimed before it is sent (a lease in its item), so two
//! workers never send it at once; the attempt and what follows it are
//! recorded only while the claim is the sender's. A retry waits in the
//! events queue (SQS delays, at most 15 minutes a hop); the sweep sends
//! again any delivery due for over a minute and any event never fanned
//! out, so a lost message or a dead worker delays a delivery and loses
//! none.

use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::signature::{header, EndpointSecret};
use super::subscribed;
use super::target::{Targets, ANSWER_LIMIT};
use crate::ids::{EndpointId, EventId, MerchantId};
use crate::secrets::Secret;
use crate::services::Services;
use crate::store::{
    Attempt, AttemptEnd, Claim, Delivery, DeliveryStatus, Endpoint, EndpointStatus, StoreError,
    StoredEvent,
};

/// How long a claimed attempt is the claimer's: the delivery's 15 s and a
/// margin for recording it.
pub const ATTEMPT_LEASE: Duration = Duration::from_secs(30);
/// The longest wait SQS holds a message for (DelaySeconds).
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);

/// What the events queue carries: an event to fan out (its key), or a
/// delivery whose next attempt is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventMessage {
    Delivery {
        merchant: MerchantId,
        event_id: EventId,
        endpoint_id: EndpointId,
    },
    FanOut {
        event: String,
    },
}

/// paygate's key that every endpoint's secret is derived from
/// (`<prefix>webhook-signing`: `{"key": "<base64, at least 32 bytes>"}`).
#[derive(Deserialize)]
struct SigningKey {
    key: Secret<String>,
}

/// Why a delivery could not even be tried (not the merchant's answer:
/// that is recorded).
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the signing key: {0}")]
    Key(String),
    #[error("the events queue: {0}")]
    Queue(String),
}

/// The signing key's bytes.
pub async fn signing_key(services: &Services) -> Result<Vec<u8>, DeliverError> {
    let name = format!("{}webhook-signing", services.settings.secret_prefix);
    let key: SigningKey = services
        .secrets
        .get_json(&name)
        .await
        .map_err(|e| DeliverError::Key(e.to_string()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key.key.expose().trim())
        .map_err(|_| DeliverError::Key("not base64".into()))?;
    if bytes.len() < 32 {
        return Err(DeliverError::Key("shorter than 32 bytes".into()));
    }
    Ok(bytes)
}

/// The secret of an endpoint's `generation`.
pub async fn endpoint_secret(
    services: &Services,
    endpoint: EndpointId,
    generation: u32,
) -> Result<EndpointSecret, DeliverError> {
    Ok(EndpointSecret::derive(
        &signing_key(services).await?,
        endpoint,
        generation,
    ))
}

/// What paygate takes as an endpoint's URL here.
pub fn targets(services: &Services) -> Targets {
    Targets {
        local: services.settings.local_return_urls(),
    }
}

/// Hands `event` to its merchant's enabled endpoints that take its type,
/// then attempts every delivery of it that is due. An event still open
/// is sent to each endpoint first and its deliveries written after, as
/// each attempt ended, with the event closed, in one transaction: a
/// delivery taken at once is written settled and never becomes due work
/// (no lease, no second write). A worker that dies between its sends and
/// that write leaves the event open, and it is sent again under the same
/// `webhook-id` (at least once, as every delivery).
pub async fn fan_out(
    services: &Services,
    event: &StoredEvent,
    now: OffsetDateTime,
) -> Result<(), DeliverError> {
    if event.open {
        let endpoints: Vec<Endpoint> = services
            .store
            .endpoints_of(&event.merchant)
            .await?
            .into_iter()
            .filter(|e| e.status == EndpointStatus::Enabled && subscribed(&e.events, event.kind))
            .collect();
        return first_attempts(services, event, &endpoints, now).await;
    }
    // Fanned out before (a retried stream record, the sweep): whatever is
    // due goes.
    let Some((_, deliveries)) = services
        .store
        .event_with_deliveries(&event.merchant, event.id)
        .await?
    else {
        return Ok(());
    };
    let mut tasks = tokio::task::JoinSet::new();
    for d in deliveries {
        if d.status == DeliveryStatus::Pending {
            let services = services.clone();
            tasks.spawn(
                async move { attempt(&services, &d.merchant, d.event_id, d.endpoint_id).await },
            );
        }
    }
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "event delivery could not be tried");
                first_error.get_or_insert(e);
            }
            Err(e) => tracing::error!(error = %e, "event delivery task failed"),
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The first attempt to each of `endpoints`, side by side, then their
/// deliveries written as the attempts ended and the event closed. An
/// attempt that could not be made (a store or secret error before sending)
/// is written pending, due now, and queued.
async fn first_attempts(
    services: &Services,
    event: &StoredEvent,
    endpoints: &[Endpoint],
    now: OffsetDateTime,
) -> Result<(), DeliverError> {
    let mut tasks = tokio::task::JoinSet::new();
    for (place, endpoint) in endpoints.iter().enumerate() {
        let (services, endpoint, event) = (services.clone(), endpoint.clone(), event.clone());
        tasks.spawn(async move {
            let sent = send_to(&services, &endpoint, &event, now).await;
            (place, sent)
        });
    }
    let mut sent: Vec<Option<(Attempt, Sent)>> = endpoints.iter().map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((place, Ok(attempt))) => sent[place] = Some(attempt),
            Ok((_, Err(e))) => tracing::warn!(error = %e, "event delivery could not be tried"),
            Err(e) => tracing::error!(error = %e, "event delivery task failed"),
        }
    }
    let schedule_len = services.settings.events.retry.len() as u32;
    let mut deliveries = Vec::with_capacity(endpoints.len());
    for (endpoint, sent) in endpoints.iter().zip(sent) {
        let mut d = Delivery {
            event_id: event.id,
            merchant: event.merchant.clone(),
            endpoint_id: endpoint.id,
            status: DeliveryStatus::Pending,
            attempts: 0,
            sent: 0,
            next_ms: Some(millis(now)),
            resend: false,
            lease_ms: None,
            log: vec![],
            on_event: false,
        };
        if let Some((attempt, how)) = sent {
            d.attempts = 1;
            d.sent = 1;
            d.log.push(attempt);
            match end_of(services, how, 1, schedule_len) {
                AttemptEnd::Delivered => {
                    d.status = DeliveryStatus::Delivered;
                    d.next_ms = None;
                }
                AttemptEnd::Failed => {
                    d.status = DeliveryStatus::Failed;
                    d.next_ms = None;
                }
                AttemptEnd::Retry(due) => d.next_ms = Some(due),
            }
        }
        deliveries.push(d);
    }
    if !services.store.fan_out(event, &deliveries, now).await? {
        // Another worker handed it out first; its deliveries stand (ours
        // were extra sends of the same webhook-id).
        return Ok(());
    }
    for d in &deliveries {
        match (d.status, d.next_ms) {
            (DeliveryStatus::Delivered, _) => crate::telemetry::event_delivery("delivered"),
            (DeliveryStatus::Failed, _) => {
                tracing::warn!(event_id = %d.event_id, endpoint_id = %d.endpoint_id, "event delivery failed at its first attempt");
                crate::telemetry::event_delivery("failed");
            }
            (DeliveryStatus::Pending, due) => {
                if d.sent > 0 {
                    crate::telemetry::event_delivery("retry");
                }
                let due = due.unwrap_or_else(|| millis(now));
                schedule(services, &d.merchant, d.event_id, d.endpoint_id, due, now).await?;
            }
        }
    }
    Ok(())
}

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// How an attempt that was `made`th on a schedule of `schedule_len` waits
/// ends: taken, given up, or retried after the schedule's wait.
fn end_of(services: &Services, sent: Sent, made: u32, schedule_len: u32) -> AttemptEnd {
    match sent {
        Sent::Delivered => AttemptEnd::Delivered,
        Sent::Gone => AttemptEnd::Failed,
        Sent::Refused if made <= schedule_len => {
            let wait = services.settings.events.retry[(made.max(1) - 1) as usize];
            AttemptEnd::Retry(millis(OffsetDateTime::now_utc() + wait))
        }
        Sent::Refused => AttemptEnd::Failed,
    }
}

/// The next attempt of one delivery, if it is due and nobody else is
/// making it; what follows is recorded and, for a retry, queued.
pub async fn attempt(
    services: &Services,
    merchant: &MerchantId,
    event_id: EventId,
    endpoint_id: EndpointId,
) -> Result<(), DeliverError> {
    let now = OffsetDateTime::now_utc();
    let lease = now + ATTEMPT_LEASE;
    let claimed = match services
        .store
        .claim_delivery(merchant, event_id, endpoint_id, now, lease)
        .await?
    {
        Claim::Claimed(d) => d,
        Claim::NotDue(due) => {
            // An early message (a hop of a long wait): wait again.
            return schedule(services, merchant, event_id, endpoint_id, due, now).await;
        }
        Claim::Elsewhere => return Ok(()),
    };
    let schedule_len = services.settings.events.retry.len() as u32;
    let scheduled = !claimed.resend;
    let made = claimed.attempts + u32::from(scheduled);
    let (attempt, sent) = send(services, &claimed, now).await?;
    let end = end_of(services, sent, made, schedule_len);
    let recorded = services
        .store
        .record_attempt(
            &claimed,
            attempt,
            scheduled,
            &end,
            OffsetDateTime::now_utc(),
        )
        .await?;
    if !recorded {
        // The lease ran out and another worker took the delivery: it sends
        // again and records that.
        tracing::warn!(event_id = %event_id, endpoint_id = %endpoint_id, "event delivery lease lost");
        return Ok(());
    }
    match end {
        AttemptEnd::Delivered => crate::telemetry::event_delivery("delivered"),
        AttemptEnd::Failed => {
            tracing::warn!(event_id = %event_id, endpoint_id = %endpoint_id, "event delivery failed: no attempts left");
            crate::telemetry::event_delivery("failed");
        }
        AttemptEnd::Retry(due) => {
            crate::telemetry::event_delivery("retry");
            schedule(services, merchant, event_id, endpoint_id, due, now).await?;
        }
    }
    Ok(())
}

/// How one send ended.
enum Sent {
    /// A 2xx.
    Delivered,
    /// 410 Gone: the endpoint is disabled, the delivery failed.
    Gone,
    /// Anything else: no answer in time, a refused connection, a non-2xx,
    /// a URL that no longer resolves to a public address.
    Refused,
}

/// Sends the event of `claimed` to its endpoint once (both read again:
/// either may have changed since the delivery was written).
async fn send(
    services: &Services,
    claimed: &Delivery,
    now: OffsetDateTime,
) -> Result<(Attempt, Sent), DeliverError> {
    let at_ms = millis(now);
    let endpoint = services
        .store
        .endpoint(&claimed.merchant, claimed.endpoint_id)
        .await?;
    let endpoint = match endpoint {
        Some(e) if e.status == EndpointStatus::Enabled => e,
        Some(_) => return Ok(gone(at_ms, "the endpoint is disabled")),
        None => return Ok(gone(at_ms, "the endpoint was deleted")),
    };
    let Some(event) = services
        .store
        .event(&claimed.merchant, claimed.event_id)
        .await?
    else {
        return Ok(gone(at_ms, "the event is no longer kept"));
    };
    send_to(services, &endpoint, &event, now).await
}

/// Sends `event` to `endpoint` once.
async fn send_to(
    services: &Services,
    endpoint: &Endpoint,
    event: &StoredEvent,
    now: OffsetDateTime,
) -> Result<(Attempt, Sent), DeliverError> {
    let at_ms = millis(now);
    let refused = |error: String| {
        (
            Attempt {
                at_ms,
                status_code: None,
                duration_ms: 0,
                error: Some(error),
                answer: None,
            },
            Sent::Refused,
        )
    };
    let targets = targets(services);
    // A URL that names an address is not resolved by the client: checked
    // here, as a name's addresses are (again, at this delivery).
    if let Err(e) = targets.check(&endpoint.url).await {
        return Ok(refused(format!("not sent: {e}")));
    }
    let key = signing_key(services).await?;
    let secrets: Vec<EndpointSecret> = endpoint
        .signing_generations(now)
        .into_iter()
        .map(|g| EndpointSecret::derive(&key, endpoint.id, g))
        .collect();
    let id = event.id.to_string();
    let timestamp = now.unix_timestamp();
    let signature = header(&secrets, &id, timestamp, event.body.as_bytes());
    let client = targets
        .client()
        .map_err(|e| DeliverError::Queue(format!("building the delivery client: {e}")))?;
    let started = Instant::now();
    let result = client
        .post(&endpoint.url)
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .header("content-type", "application/json")
        .body(event.body.clone())
        .send()
        .await;
    let mut response = match result {
        Ok(r) => r,
        Err(e) => {
            let mut a = refused(describe(&e)).0;
            a.duration_ms = started.elapsed().as_millis() as u64;
            return Ok((a, Sent::Refused));
        }
    };
    let status = response.status();
    let mut answer = Vec::new();
    while answer.len() < ANSWER_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => answer.extend_from_slice(&chunk),
            _ => break,
        }
    }
    answer.truncate(ANSWER_LIMIT);
    let attempt = Attempt {
        at_ms,
        status_code: Some(status.as_u16()),
        duration_ms: started.elapsed().as_millis() as u64,
        error: None,
        answer: (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned()),
    };
    let sent = if status.is_success() {
        Sent::Delivered
    } else if status == reqwest::StatusCode::GONE {
        services
            .store
            .disable_endpoint(
                &endpoint.merchant,
                endpoint.id,
                "the endpoint answered 410 Gone",
                OffsetDateTime::now_utc(),
            )
            .await?;
        Sent::Gone
    } else {
        Sent::Refused
    };
    Ok((attempt, sent))
}

/// An attempt that could not be made and will not be retried.
fn gone(at_ms: i64, why: &str) -> (Attempt, Sent) {
    (
        Attempt {
            at_ms,
            status_code: None,
            duration_ms: 0,
            error: Some(why.to_string()),
            answer: None,
        },
        Sent::Gone,
    )
}

/// A transport failure in a few words, without the URL (it may carry the
/// merchant's own secrets in its path).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer within 15 s".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_redirect() {
        "redirected (redirects are not followed)".into()
    } else {
        "the request failed".into()
    }
}

/// Queues the delivery's next attempt for `due` (epoch ms): SQS holds it up
/// to 15 minutes; a longer wait takes several hops.
pub async fn schedule(
    services: &Services,
    merchant: &MerchantId,
    event_id: EventId,
    endpoint_id: EndpointId,
    due: i64,
    now: OffsetDateTime,
) -> Result<(), DeliverError> {
    let wait_ms = (i128::from(due) - now.unix_timestamp_nanos() / 1_000_000).max(0);
    let wait = Duration::from_millis(wait_ms as u64).min(MAX_QUEUE_DELAY);
    send_message(
        services,
        &EventMessage::Delivery {
            merchant: merchant.clone(),
            event_id,
            endpoint_id,
        },
        wait,
    )
    .await
}

/// Puts `message` on the events queue, to be received after `delay`.
pub async fn send_message(
    services: &Services,
    message: &EventMessage,
    delay: Duration,
) -> Result<(), DeliverError> {
    let Some(url) = &services.settings.events.queue_url else {
        return Err(DeliverError::Queue(
            "PAYGATE_EVENTS_QUEUE_URL is not set".into(),
        ));
    };
    let body = serde_json::to_string(message).map_err(|e| DeliverError::Queue(e.to_string()))?;
    // Whole seconds, rounded up, so a message is never early by design.
    let seconds = delay.as_millis().div_ceil(1000).min(900) as i32;
    services
        .queue
        .sqs()
        .send_message()
        .queue_url(url)
        .message_body(body)
        .delay_seconds(seconds)
        .send()
        .await
        .map_err(|e| {
            DeliverError::Queue(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_messages_read_back_as_what_they_ask() {
        let d = EventMessage::Delivery {
            merchant: "m_1".parse().unwrap(),
            event_id: EventId::generate(),
            endpoint_id: EndpointId::generate(),
        };
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<EventMessage>(&text).unwrap(), d);
        let f = EventMessage::FanOut {
            event: "EVENT#m_1#evt_X".into(),
        };
        let text = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<EventMessage>(&text).unwrap(), f);
    }
}
