//! `api-events`: a merchant's webhook endpoints and event log (API.md,
//! "Events to the merchant").
//!
//! - `POST /v1/webhook-endpoints`, `GET /v1/webhook-endpoints`,
//!   `GET|PATCH|DELETE /v1/webhook-endpoints/{id}`,
//!   `POST /v1/webhook-endpoints/{id}/rotate-secret`;
//! - `GET /v1/events`, `GET /v1/events/{id}`, `POST /v1/events/{id}/resend`.
//!
//! Every key is the asking merchant's: another merchant's endpoint or event
//! id is 404. An endpoint's secret is shown only in the answers that make
//! it (create, rotate) and never stored: a replayed answer derives it
//! again (decision 56).

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::handled;
use super::idempotent::{self, Begun};
use crate::events::deliver::{self, EventMessage};
use crate::events::target::TargetError;
use crate::events::{EventType, Subscription};
use crate::ids::{EndpointId, EventId, MerchantId, PaymentId};
use crate::responses::{self, ApiError};
use crate::services::Services;
use crate::store::{
    Delivery, DeliveryStatus, Endpoint, EndpointChange, EndpointStatus, StoredEvent,
};

/// How long a rotated-out secret keeps signing (API.md: 24 hours).
pub const ROTATION_OVERLAP: time::Duration = time::Duration::hours(24);
/// The longest description taken.
const MAX_DESCRIPTION: usize = 255;
/// A log page: at most this many events, 20 unless asked.
const MAX_LIMIT: i32 = 100;
const DEFAULT_LIMIT: i32 = 20;

/// Every route of the function.
pub async fn handle(services: &Services, req: Request) -> Response<Body> {
    let request_id = responses::request_id(&req);
    let path = req.uri().path().trim_end_matches('/').to_string();
    let method = req.method().clone();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (Method::POST, ["v1", "webhook-endpoints"]) => {
            handled("create_endpoint", &request_id, create(services, &req)).await
        }
        (Method::GET, ["v1", "webhook-endpoints"]) => {
            handled("list_endpoints", &request_id, list(services, &req)).await
        }
        (Method::GET, ["v1", "webhook-endpoints", _]) => {
            handled("get_endpoint", &request_id, get(services, &req)).await
        }
        (Method::PATCH, ["v1", "webhook-endpoints", _]) => {
            handled("update_endpoint", &request_id, update(services, &req)).await
        }
        (Method::DELETE, ["v1", "webhook-endpoints", _]) => {
            handled("delete_endpoint", &request_id, delete(services, &req)).await
        }
        (Method::POST, ["v1", "webhook-endpoints", _, "rotate-secret"]) => {
            handled(
                "rotate_endpoint_secret",
                &request_id,
                rotate(services, &req),
            )
            .await
        }
        (Method::GET, ["v1", "events"]) => {
            handled("list_events", &request_id, events(services, &req)).await
        }
        (Method::GET, ["v1", "events", _]) => {
            handled("get_event", &request_id, event(services, &req)).await
        }
        (Method::POST, ["v1", "events", _, "resend"]) => {
            handled("resend_event", &request_id, resend(services, &req)).await
        }
        _ => {
            handled("events", &request_id, async {
                Err(ApiError::not_found("route_not_found", "no such route"))
            })
            .await
        }
    }
}

// ---- endpoints ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default)]
    status: Option<EndpointStatus>,
}

/// A field given as `null` (`Some(None)`), apart from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// An endpoint as the API shows it; `secret` only where it was just made.
#[derive(Serialize)]
struct EndpointView {
    id: String,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    status: EndpointStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl EndpointView {
    fn of(e: &Endpoint) -> EndpointView {
        EndpointView {
            id: e.id.to_string(),
            url: e.url.clone(),
            events: if e.events.is_empty() {
                vec!["*".to_string()]
            } else {
                e.events.iter().map(|s| s.as_str().to_string()).collect()
            },
            description: e.description.clone(),
            status: e.status,
            disabled_reason: e.disabled_reason.clone(),
            created_at: at(e.created_ms),
            updated_at: at(e.updated_ms),
            secret: None,
        }
    }
}

fn subscriptions(events: Option<Vec<String>>) -> Result<Vec<Subscription>, ApiError> {
    let events = events.unwrap_or_default();
    if events.len() > EventType::ALL.len() {
        return Err(ApiError::unprocessable(
            "invalid_events",
            "events names at most 13 types or groups",
        ));
    }
    let mut out: Vec<Subscription> = events
        .into_iter()
        .map(|e| {
            Subscription::try_from(e)
                .map_err(|why| ApiError::unprocessable("unknown_event_type", why))
        })
        .collect::<Result<_, _>>()?;
    out.sort();
    out.dedup();
    // `*` is everything: kept as "no list".
    if out.iter().any(|s| s.as_str() == "*") {
        out.clear();
    }
    Ok(out)
}

fn description(text: Option<String>) -> Result<Option<String>, ApiError> {
    match text {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => Err(ApiError::unprocessable(
            "invalid_description",
            "description is longer than 255 characters",
        )),
        Some(d) if d.chars().any(char::is_control) => Err(ApiError::unprocessable(
            "invalid_description",
            "description holds control characters",
        )),
        other => Ok(other),
    }
}

/// The URL, checked as a delivery would check it (the host's addresses
/// resolved now).
async fn url(services: &Services, text: &str) -> Result<String, ApiError> {
    deliver::targets(services)
        .check(text)
        .await
        .map(|u| u.to_string())
        .map_err(|e| {
            let code = match e {
                TargetError::NotPublic { .. } => "url_not_public",
                TargetError::Unresolvable(_) => "url_unresolvable",
                _ => "invalid_url",
            };
            ApiError::unprocessable(code, e.to_string())
        })
}

fn endpoint_id(req: &Request) -> Result<EndpointId, ApiError> {
    req.path_parameters()
        .first("id")
        .or_else(|| req.uri().path().split('/').nth(3))
        .unwrap_or_default()
        .parse()
        .map_err(|_| ApiError::not_found("endpoint_not_found", "no such webhook endpoint"))
}

fn no_endpoint() -> ApiError {
    ApiError::not_found("endpoint_not_found", "no such webhook endpoint")
}

/// The JSON body, or `{}` for none.
fn body_value(req: &Request) -> Result<Value, ApiError> {
    if req.body().as_ref().is_empty() {
        Ok(json!({}))
    } else {
        responses::json_body(req)
    }
}

fn parse<T: serde::de::DeserializeOwned>(raw: &Value) -> Result<T, ApiError> {
    serde_json::from_value(raw.clone()).map_err(|e| {
        ApiError::bad_request(
            "malformed_body",
            responses::scrub(&e.to_string())
                .chars()
                .take(300)
                .collect::<String>(),
        )
    })
}

/// An answer that carries an endpoint's new secret: kept for replay
/// without it (the generation instead), revealed again when replayed.
async fn with_secret(
    services: &Services,
    status: StatusCode,
    endpoint: &Endpoint,
) -> Result<Response<Body>, ApiError> {
    let secret = deliver::endpoint_secret(services, endpoint.id, endpoint.generation)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let mut view = EndpointView::of(endpoint);
    view.secret = Some(secret.reveal());
    Ok(responses::json(status, &view))
}

/// What is kept of an answer with a secret: the secret replaced by its
/// generation.
fn kept_without_secret(body: &[u8], generation: u32) -> Vec<u8> {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            v["secret"] = json!({"generation": generation});
            serde_json::to_vec(&v).unwrap_or_default()
        }
        Err(_) => Vec::new(),
    }
}

/// A replayed answer with its secret derived again.
async fn revealed(services: &Services, replay: Response<Body>) -> Result<Response<Body>, ApiError> {
    let (parts, body) = replay.into_parts();
    let mut value: Value =
        serde_json::from_slice(body.as_ref()).map_err(|e| ApiError::internal(&e))?;
    let id: Option<EndpointId> = value["id"].as_str().and_then(|s| s.parse().ok());
    let generation = value["secret"]["generation"]
        .as_u64()
        .and_then(|g| u32::try_from(g).ok());
    if let (Some(id), Some(generation)) = (id, generation) {
        let secret = deliver::endpoint_secret(services, id, generation)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        value["secret"] = json!(secret.reveal());
    }
    let bytes = serde_json::to_vec(&value).map_err(|e| ApiError::internal(&e))?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

async fn create(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    idempotent::key(req)?;
    let raw = body_value(req)?;
    let body: CreateBody = parse(&raw)?;
    let events = subscriptions(body.events)?;
    let description = description(body.description)?;
    let url = url(services, &body.url).await?;
    let claim = match idempotent::begin(services, req, &merchant, "create_endpoint", &raw).await? {
        Begun::Run(claim) => claim,
        Begun::Answer(replay) => return revealed(services, replay).await,
    };
    let now = OffsetDateTime::now_utc();
    let endpoint = Endpoint {
        id: EndpointId::generate(),
        merchant: merchant.clone(),
        url,
        events,
        description,
        status: EndpointStatus::Enabled,
        disabled_reason: None,
        created_ms: ms(now),
        updated_ms: ms(now),
        generation: 1,
        previous_generation: None,
        previous_until_ms: None,
    };
    let result = async {
        if !services.store.create_endpoint(&endpoint).await? {
            return Err(ApiError::unprocessable(
                "too_many_endpoints",
                format!(
                    "a merchant has at most {} webhook endpoints",
                    crate::store::MAX_ENDPOINTS
                ),
            ));
        }
        with_secret(services, StatusCode::CREATED, &endpoint).await
    }
    .await;
    idempotent::finish_keeping(services, claim, result, |b| {
        kept_without_secret(b, endpoint.generation)
    })
    .await
}

async fn list(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    let all = services.store.endpoints_of(&merchant).await?;
    let data: Vec<EndpointView> = all.iter().map(EndpointView::of).collect();
    Ok(responses::json(StatusCode::OK, &json!({"data": data})))
}

async fn get(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    let id = endpoint_id(req)?;
    let endpoint = services
        .store
        .endpoint(&merchant, id)
        .await?
        .ok_or_else(no_endpoint)?;
    Ok(responses::json(
        StatusCode::OK,
        &EndpointView::of(&endpoint),
    ))
}

async fn update(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    let id = endpoint_id(req)?;
    let body: UpdateBody = parse(&body_value(req)?)?;
    let mut change = EndpointChange {
        events: body.events.map(|e| subscriptions(Some(e))).transpose()?,
        description: match body.description {
            Some(d) => Some(description(d)?),
            None => None,
        },
        status: body.status,
        ..EndpointChange::default()
    };
    if let Some(text) = body.url {
        change.url = Some(url(services, &text).await?);
    }
    let endpoint = services
        .store
        .update_endpoint(&merchant, id, &change, OffsetDateTime::now_utc())
        .await?
        .ok_or_else(no_endpoint)?;
    Ok(responses::json(
        StatusCode::OK,
        &EndpointView::of(&endpoint),
    ))
}

async fn delete(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    let id = endpoint_id(req)?;
    if !services.store.delete_endpoint(&merchant, id).await? {
        return Err(no_endpoint());
    }
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

async fn rotate(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    idempotent::key(req)?;
    let id = endpoint_id(req)?;
    let raw = body_value(req)?;
    if raw.as_object().is_none_or(|o| !o.is_empty()) {
        return Err(ApiError::bad_request(
            "malformed_body",
            "rotate-secret takes no body",
        ));
    }
    let request = json!({"endpoint": id.to_string()});
    let claim =
        match idempotent::begin(services, req, &merchant, "rotate_endpoint_secret", &request)
            .await?
        {
            Begun::Run(claim) => claim,
            Begun::Answer(replay) => return revealed(services, replay).await,
        };
    let now = OffsetDateTime::now_utc();
    let mut generation = 0;
    let result = async {
        let current = services
            .store
            .endpoint(&merchant, id)
            .await?
            .ok_or_else(no_endpoint)?;
        let rotated = services
            .store
            .rotate_endpoint(
                &merchant,
                id,
                current.generation,
                now + ROTATION_OVERLAP,
                now,
            )
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "rotation_in_progress",
                    "the secret was rotated by another request just now",
                )
            })?;
        generation = rotated.generation;
        let secret = deliver::endpoint_secret(services, id, rotated.generation)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        Ok(responses::json(
            StatusCode::OK,
            &json!({"id": id.to_string(), "secret": secret.reveal()}),
        ))
    }
    .await;
    idempotent::finish_keeping(services, claim, result, |b| {
        kept_without_secret(b, generation)
    })
    .await
}

// ---- the log ----

#[derive(Serialize)]
struct DeliveryView {
    endpoint_id: String,
    status: DeliveryStatus,
    attempts: u32,
    last_attempt_at: Option<String>,
    last_status_code: Option<u16>,
    next_attempt_at: Option<String>,
}

#[derive(Serialize)]
struct AttemptView {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    endpoint_id: String,
    status_code: Option<u16>,
    duration_ms: u64,
    error: Option<String>,
}

fn text_at(ms: i64) -> Option<String> {
    at(ms)
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The event as sent, with its deliveries (and, for one event, every
/// attempt kept).
fn event_view(event: &StoredEvent, deliveries: &[Delivery], attempts: bool) -> Value {
    let mut view: Value = serde_json::from_str(&event.body).unwrap_or_else(|_| json!({}));
    let shown: Vec<DeliveryView> = deliveries
        .iter()
        .map(|d| DeliveryView {
            endpoint_id: d.endpoint_id.to_string(),
            status: d.status,
            attempts: d.sent,
            last_attempt_at: d.last().and_then(|a| text_at(a.at_ms)),
            last_status_code: d.last().and_then(|a| a.status_code),
            next_attempt_at: d.next_ms.and_then(text_at),
        })
        .collect();
    view["deliveries"] = json!(shown);
    if attempts {
        let mut all: Vec<AttemptView> = deliveries
            .iter()
            .flat_map(|d| {
                d.log.iter().map(|a| AttemptView {
                    at: at(a.at_ms),
                    endpoint_id: d.endpoint_id.to_string(),
                    status_code: a.status_code,
                    duration_ms: a.duration_ms,
                    error: a.error.clone(),
                })
            })
            .collect();
        all.sort_by_key(|a| a.at);
        view["attempts"] = json!(all);
    }
    view
}

fn event_id(req: &Request) -> Result<EventId, ApiError> {
    req.path_parameters()
        .first("id")
        .or_else(|| req.uri().path().split('/').nth(3))
        .unwrap_or_default()
        .parse()
        .map_err(|_| no_event())
}

fn no_event() -> ApiError {
    ApiError::not_found("event_not_found", "no such event")
}

/// A log page's cursor (`super::cursor`).
fn cursor_text(position: &str, query: &str) -> String {
    super::cursor::encode(position, query)
}

fn cursor_position(cursor: &str, query: &str) -> Option<String> {
    super::cursor::decode(cursor, query, |position| {
        position.split_once('#').is_some_and(|(time, id)| {
            time.len() == 15
                && time.bytes().all(|b| b.is_ascii_digit())
                && id.parse::<EventId>().is_ok()
        })
    })
}

async fn events(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    let params = req.query_string_parameters();
    let kind = match params.first("type") {
        None => None,
        Some(t) => Some(EventType::parse(t).ok_or_else(|| {
            ApiError::unprocessable("unknown_event_type", "type is not an event type")
        })?),
    };
    let payment: Option<PaymentId> = match params.first("payment_id") {
        None => None,
        Some(p) => Some(p.parse().map_err(|e: crate::ids::IdError| {
            ApiError::bad_request("invalid_payment_id", e.to_string())
        })?),
    };
    let limit = match params.first("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<i32>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::unprocessable("invalid_limit", "limit is 1 to 100"))?,
    };
    let query = format!(
        "{merchant}|{}|{}",
        kind.map(EventType::as_str).unwrap_or_default(),
        payment.map(|p| p.to_string()).unwrap_or_default()
    );
    let after = match params.first("cursor") {
        None => None,
        Some(c) => Some(cursor_position(c, &query).ok_or_else(|| {
            ApiError::bad_request("invalid_cursor", "the cursor is not one this query gave")
        })?),
    };
    let (page, next) = services
        .store
        .events_of(&merchant, kind, payment, limit, after.as_deref())
        .await?;
    let data: Vec<Value> = page.iter().map(|(e, d)| event_view(e, d, false)).collect();
    Ok(responses::json(
        StatusCode::OK,
        &json!({"data": data, "next_cursor": next.map(|p| cursor_text(&p, &query))}),
    ))
}

async fn event(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    let id = event_id(req)?;
    let (event, deliveries) = services
        .store
        .event_with_deliveries(&merchant, id)
        .await?
        .ok_or_else(no_event)?;
    Ok(responses::json(
        StatusCode::OK,
        &event_view(&event, &deliveries, true),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResendBody {
    #[serde(default)]
    endpoint_id: Option<String>,
}

async fn resend(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    idempotent::key(req)?;
    let id = event_id(req)?;
    let raw = body_value(req)?;
    let body: ResendBody = parse(&raw)?;
    let only = delivery_endpoint(body.endpoint_id)?;
    // Each resend is one more attempt: the key keeps a retried request from
    // making two, and is free again once it is answered (202).
    let request = json!({"event": id.to_string(), "body": raw});
    let claim = match idempotent::begin(services, req, &merchant, "resend_event", &request).await? {
        Begun::Run(claim) => claim,
        Begun::Answer(replay) => return Ok(replay),
    };
    let result = resend_now(services, &merchant, id, only).await;
    idempotent::finish(services, claim, result).await
}

/// The endpoint a resend names, if it names one; one that cannot be an
/// endpoint id has no delivery (404).
pub(crate) fn delivery_endpoint(text: Option<String>) -> Result<Option<EndpointId>, ApiError> {
    text.map(|e| {
        e.parse().map_err(|_| {
            ApiError::not_found(
                "delivery_not_found",
                "the event has no delivery to that endpoint",
            )
        })
    })
    .transpose()
}

/// One more attempt now of the event's deliveries (or of the one to
/// `only`), outside their schedule; 202.
pub async fn resend_now(
    services: &Services,
    merchant: &MerchantId,
    id: EventId,
    only: Option<EndpointId>,
) -> Result<Response<Body>, ApiError> {
    let (event, deliveries) = services
        .store
        .event_with_deliveries(merchant, id)
        .await?
        .ok_or_else(no_event)?;
    let chosen: Vec<&Delivery> = deliveries
        .iter()
        .filter(|d| only.is_none_or(|e| d.endpoint_id == e))
        .collect();
    if chosen.is_empty() {
        return Err(ApiError::not_found(
            "delivery_not_found",
            "the event has no delivery to that endpoint",
        ));
    }
    let now = OffsetDateTime::now_utc();
    let mut resent = Vec::new();
    for d in chosen {
        if services
            .store
            .resend_delivery(d, event.created_at(), now)
            .await?
        {
            // Lost, the message is made up for by the sweep (the delivery is
            // due now in the table).
            if let Err(e) = deliver::send_message(
                services,
                &EventMessage::Delivery {
                    merchant: merchant.clone(),
                    event_id: id,
                    endpoint_id: d.endpoint_id,
                },
                std::time::Duration::ZERO,
            )
            .await
            {
                tracing::warn!(error = %e, "resend queued in the table only; the sweep sends it");
            }
            resent.push(d.endpoint_id.to_string());
        }
    }
    Ok(responses::json(
        StatusCode::ACCEPTED,
        &json!({"id": id.to_string(), "resent": resent}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_belongs_to_its_query() {
        let position = format!("{:015}#{}", 1_765_000_000_000u64, EventId::generate());
        let c = cursor_text(&position, "m_1|payment.completed|");
        assert_eq!(
            cursor_position(&c, "m_1|payment.completed|"),
            Some(position)
        );
        assert_eq!(cursor_position(&c, "m_1||"), None);
        assert_eq!(cursor_position(&c, "m_2|payment.completed|"), None);
        assert_eq!(cursor_position("not a cursor", "m_1||"), None);
    }

    #[test]
    fn subscriptions_are_checked_sorted_and_star_is_everything() {
        let s = subscriptions(Some(vec![
            "refund.*".into(),
            "payment.completed".into(),
            "refund.*".into(),
        ]))
        .unwrap();
        assert_eq!(
            s.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            ["payment.completed", "refund.*"]
        );
        assert!(subscriptions(Some(vec!["*".into(), "refund.*".into()]))
            .unwrap()
            .is_empty());
        let e = subscriptions(Some(vec!["payment.paid".into()])).unwrap_err();
        assert_eq!(e.code, "unknown_event_type");
    }

    #[test]
    fn a_kept_answer_holds_the_generation_not_the_secret() {
        let body = br#"{"id":"we_1","secret":"whsec_abc"}"#;
        let kept = kept_without_secret(body, 3);
        let v: Value = serde_json::from_slice(&kept).unwrap();
        assert_eq!(v["secret"], json!({"generation": 3}));
        assert!(!String::from_utf8(kept).unwrap().contains("whsec_"));
    }
}
