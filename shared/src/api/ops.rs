//! The operator's side: `GET /v1/ops/queue`, everything that waits for a
//! person, for every merchant. Operator keys only (403 for a merchant's).
//!
//! What waits: payments in `needs_review`, refunds whose outcome is not
//! recorded, casino top-ups whose outcome is unknown, top-ups given up
//! (their money sits in the wallet), and reconcile differences not yet
//! acknowledged. Each item says what can be done with it. Newest first;
//! `?kind=` and `?provider=` filter; `?limit=` and `?cursor=` page.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use time::OffsetDateTime;

use super::handled;
use crate::payment::Provider;
use crate::responses::{self, ApiError};
use crate::services::Services;
use crate::store::{Item, StoreError};

/// The most items one page of the queue holds.
pub const MAX_LIMIT: usize = 200;

/// What waits for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    PaymentReview,
    RefundPending,
    TopupUnknown,
    TopupGivenUp,
    ReconcileDifference,
    PaymentStale,
    /// An event to a merchant that failed every attempt.
    DeliveryFailed,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::PaymentReview,
        Kind::RefundPending,
        Kind::TopupUnknown,
        Kind::TopupGivenUp,
        Kind::ReconcileDifference,
        Kind::PaymentStale,
        Kind::DeliveryFailed,
    ];

    fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::PaymentReview => "payment_review",
            Kind::RefundPending => "refund_pending",
            Kind::TopupUnknown => "topup_unknown",
            Kind::TopupGivenUp => "topup_given_up",
            Kind::ReconcileDifference => "reconcile_difference",
            Kind::PaymentStale => "payment_stale",
            Kind::DeliveryFailed => "delivery_failed",
        }
    }

    /// What an operator can do with an item of this kind.
    fn actions(self) -> &'static [&'static str] {
        match self {
            // A stale payment: the operator asks the provider, then accepts
            // what it shows was paid or rejects it.
            Kind::PaymentReview | Kind::PaymentStale => &["accept", "reject"],
            Kind::RefundPending => &["check", "mark_refunded", "mark_not_refunded"],
            Kind::TopupUnknown | Kind::TopupGivenUp => &["mark_sent", "mark_not_sent"],
            Kind::ReconcileDifference => &["acknowledge"],
            Kind::DeliveryFailed => &["resend"],
        }
    }
}

/// One item of the queue.
#[derive(Debug, Clone, Serialize)]
pub struct QueueItem {
    pub kind: Kind,
    pub payment_id: String,
    pub merchant_id: String,
    pub provider: Provider,
    /// The payment's amount (review), the refund's, or the top-up's.
    pub amount: i64,
    pub currency: crate::money::Currency,
    /// For a payment in review: what the provider confirmed was paid (absent
    /// when its answer carried no amount).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_amount: Option<i64>,
    /// The payment's, refund's or top-up's own status.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// For a reconcile difference: what we have and what the provider says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference: Option<DifferenceView>,
    /// For a failed delivery: the event and the merchant's endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    pub actions: &'static [&'static str],
}

/// A reconcile difference in the queue.
#[derive(Debug, Clone, Serialize)]
pub struct DifferenceView {
    pub id: String,
    pub kind: String,
    pub ours: String,
    pub theirs: String,
}

impl QueueItem {
    /// An item of `kind` about `p` as it stands; the other kinds replace
    /// what is theirs (a refund's amount, a top-up's status, ...).
    fn of_payment(kind: Kind, p: &crate::payment::Payment) -> QueueItem {
        QueueItem {
            kind,
            payment_id: p.id.to_string(),
            merchant_id: p.merchant_id.to_string(),
            provider: p.provider,
            amount: p.amount.minor(),
            currency: p.amount.currency(),
            confirmed_amount: p.confirmed_amount.map(|m| m.minor()),
            status: p.status.as_str().to_string(),
            provider_status: p.provider_status.clone(),
            refund_id: None,
            last_error: None,
            difference: None,
            event_id: None,
            endpoint_id: None,
            since: p.updated_at,
            actions: kind.actions(),
        }
    }

    /// The item's place in the queue: newest first, then by kind and ids.
    fn order(&self) -> (std::cmp::Reverse<i128>, &'static str, &str, String) {
        (
            std::cmp::Reverse(self.since.unix_timestamp_nanos()),
            self.kind.as_str(),
            &self.payment_id,
            self.sub_id(),
        )
    }

    fn sub_id(&self) -> String {
        match (&self.event_id, &self.endpoint_id) {
            (Some(e), Some(w)) => format!("{e}-{w}"),
            _ => self
                .refund_id
                .as_deref()
                .or(self.difference.as_ref().map(|d| d.id.as_str()))
                .unwrap_or("-")
                .to_string(),
        }
    }

    /// The cursor that continues after this item.
    fn cursor(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.since.unix_timestamp_nanos(),
            self.kind.as_str(),
            self.payment_id,
            self.sub_id()
        )
    }
}

/// Where a page of the queue starts: after the item a cursor names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct After {
    since: i128,
    kind: String,
    payment_id: String,
    sub: String,
}

impl After {
    fn decode(text: &str) -> Option<After> {
        let mut parts = text.split('.');
        let after = After {
            since: parts.next()?.parse().ok()?,
            kind: Kind::parse(parts.next()?)?.as_str().to_string(),
            payment_id: parts.next().filter(|p| p.len() <= 64)?.to_string(),
            sub: parts.next().filter(|p| p.len() <= 64)?.to_string(),
        };
        parts.next().is_none().then_some(after)
    }

    fn precedes(&self, item: &QueueItem) -> bool {
        let mine = (
            std::cmp::Reverse(self.since),
            self.kind.as_str(),
            self.payment_id.as_str(),
            self.sub.clone(),
        );
        mine < item.order()
    }
}

/// Reads one kind's index page by page, all of it: the queue is newest
/// first, so a backlog must not hide its newest items behind the oldest.
/// Each item is then read once per answer; the alarms on what waits keep a
/// backlog from growing unseen.
async fn ids<T, F, Fut>(mut page: F) -> Result<Vec<T>, StoreError>
where
    F: FnMut(Option<Item>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<Item>), StoreError>>,
{
    let mut all = Vec::new();
    let mut start = None;
    loop {
        let (mut got, next) = page(start).await?;
        all.append(&mut got);
        match next {
            Some(key) => start = Some(key),
            None => return Ok(all),
        }
    }
}

/// Everything of `kinds` that waits for a person, newest first.
pub async fn queue(
    services: &Services,
    kinds: &[Kind],
    provider: Option<Provider>,
) -> Result<Vec<QueueItem>, StoreError> {
    let store = &services.store;
    let mut items = Vec::new();
    for &kind in kinds {
        match kind {
            Kind::PaymentReview => {
                for id in ids(|start| store.review_payments(100, start)).await? {
                    if let Some(p) = store.payment(id).await? {
                        items.push(QueueItem::of_payment(kind, &p));
                    }
                }
            }
            Kind::PaymentStale => {
                for id in ids(|start| store.stale_payments(None, 100, start)).await? {
                    let Some(p) = store.payment(id).await? else {
                        continue;
                    };
                    items.push(QueueItem {
                        last_error: p.last_check_error.clone(),
                        since: p.stale_since.unwrap_or(p.updated_at),
                        ..QueueItem::of_payment(kind, &p)
                    });
                }
            }
            Kind::RefundPending => {
                let far = OffsetDateTime::now_utc() + time::Duration::days(3650);
                for (payment_id, refund_id) in
                    ids(|start| store.open_refunds(far, 100, start)).await?
                {
                    let (Some(p), Some(r)) = (
                        store.payment(payment_id).await?,
                        store.refund(payment_id, refund_id).await?,
                    ) else {
                        continue;
                    };
                    items.push(QueueItem {
                        amount: r.amount.minor(),
                        currency: r.amount.currency(),
                        confirmed_amount: None,
                        status: r.status.as_str().to_string(),
                        provider_status: r.provider_code.clone(),
                        refund_id: Some(format!("ref_{refund_id}")),
                        last_error: r.last_error.clone(),
                        since: r.last_attempt_at.unwrap_or(p.updated_at),
                        ..QueueItem::of_payment(kind, &p)
                    });
                }
            }
            Kind::TopupUnknown | Kind::TopupGivenUp => {
                let given_up = kind == Kind::TopupGivenUp;
                for id in ids(|start| store.held_topups(given_up, 100, start)).await? {
                    let (Some(p), Some(t)) = (store.payment(id).await?, store.topup(id).await?)
                    else {
                        continue;
                    };
                    items.push(QueueItem {
                        merchant_id: t.merchant_id.to_string(),
                        amount: t.amount.minor(),
                        currency: t.amount.currency(),
                        confirmed_amount: None,
                        status: t.status.as_str().to_string(),
                        provider_status: None,
                        last_error: t.last_error.clone(),
                        since: t.updated_at,
                        ..QueueItem::of_payment(kind, &p)
                    });
                }
            }
            Kind::DeliveryFailed => {
                for (merchant, event_id, endpoint_id) in
                    ids(|start| store.failed_deliveries(100, start)).await?
                {
                    let Some((event, deliveries)) =
                        store.event_with_deliveries(&merchant, event_id).await?
                    else {
                        continue;
                    };
                    let (Some(p), Some(d)) = (
                        store.payment(event.payment_id).await?,
                        deliveries.iter().find(|d| d.endpoint_id == endpoint_id),
                    ) else {
                        continue;
                    };
                    let last = d.last();
                    items.push(QueueItem {
                        status: "failed".into(),
                        provider_status: None,
                        last_error: last.map(|a| match (&a.error, a.status_code) {
                            (Some(e), _) => e.clone(),
                            (None, Some(code)) => format!("the endpoint answered {code}"),
                            (None, None) => "no answer".into(),
                        }),
                        event_id: Some(event_id.to_string()),
                        endpoint_id: Some(endpoint_id.to_string()),
                        since: last
                            .and_then(|a| {
                                OffsetDateTime::from_unix_timestamp_nanos(
                                    i128::from(a.at_ms) * 1_000_000,
                                )
                                .ok()
                            })
                            .unwrap_or(p.updated_at),
                        ..QueueItem::of_payment(kind, &p)
                    });
                }
            }
            Kind::ReconcileDifference => {
                for (payment_id, diff) in ids(|start| store.open_differences(100, start)).await? {
                    let (Some(p), Some(d)) = (
                        store.payment(payment_id).await?,
                        store.difference(payment_id, &diff).await?,
                    ) else {
                        continue;
                    };
                    items.push(QueueItem {
                        difference: Some(DifferenceView {
                            id: d.id,
                            kind: d.kind,
                            ours: d.ours,
                            theirs: d.theirs,
                        }),
                        since: d.found_at,
                        ..QueueItem::of_payment(kind, &p)
                    });
                }
            }
        }
    }
    items.retain(|i| provider.is_none_or(|p| i.provider == p));
    items.sort_by(|a, b| a.order().cmp(&b.order()));
    Ok(items)
}

#[derive(Serialize)]
struct QueueView {
    data: Vec<QueueItem>,
    /// Where the next page starts (`?cursor=`), when there is one.
    next_cursor: Option<String>,
}

/// Items per page unless `?limit=` says otherwise.
pub const DEFAULT_LIMIT: usize = 50;

/// `GET /v1/ops/queue[?kind=][&provider=]`.
pub async fn get_queue(services: &Services, req: Request) -> Response<Body> {
    let request_id = responses::request_id(&req);
    handled("ops_queue", &request_id, queue_inner(services, &req)).await
}

async fn queue_inner(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let operator = responses::operator(req)?;
    let query = req.query_string_parameters();
    let kinds: Vec<Kind> = match query.first("kind") {
        None => Kind::ALL.to_vec(),
        Some(text) => vec![Kind::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_kind",
                "kind is payment_review, refund_pending, topup_unknown, topup_given_up, \
                 reconcile_difference, payment_stale or delivery_failed",
            )
        })?],
    };
    let provider = query
        .first("provider")
        .map(|p| {
            p.parse::<Provider>()
                .map_err(|e| ApiError::bad_request("invalid_provider", e.to_string()))
        })
        .transpose()?;
    let limit = match query.first("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_limit", format!("limit is 1 to {MAX_LIMIT}"))
            })?,
    };
    let after = query
        .first("cursor")
        .map(|c| {
            After::decode(c)
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "not a queue cursor"))
        })
        .transpose()?;
    let mut data = queue(services, &kinds, provider).await?;
    if let Some(after) = after {
        data.retain(|i| after.precedes(i));
    }
    let next_cursor = (data.len() > limit).then(|| data[limit - 1].cursor());
    data.truncate(limit);
    tracing::info!(operator, items = data.len(), "queue read");
    Ok(responses::json(
        StatusCode::OK,
        &QueueView { data, next_cursor },
    ))
}

/// An operator's decision, from the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Accept,
    Reject,
    Refunded,
    NotRefunded,
    Sent,
    NotSent,
    Acknowledge,
    Check,
    Resend,
}

impl Mark {
    fn of(path: &str) -> Option<Mark> {
        let last = path.trim_end_matches('/').rsplit('/').next()?;
        let under = |p: &str| path.contains(p);
        match last {
            "accept" if under("/v1/ops/payments/") => Some(Mark::Accept),
            "reject" if under("/v1/ops/payments/") => Some(Mark::Reject),
            "mark-refunded" if under("/v1/ops/refunds/") => Some(Mark::Refunded),
            "mark-not-refunded" if under("/v1/ops/refunds/") => Some(Mark::NotRefunded),
            "mark-sent" if under("/v1/ops/topups/") => Some(Mark::Sent),
            "mark-not-sent" if under("/v1/ops/topups/") => Some(Mark::NotSent),
            "acknowledge" if under("/v1/ops/differences/") => Some(Mark::Acknowledge),
            "check" if under("/v1/ops/refunds/") => Some(Mark::Check),
            "resend" if under("/v1/ops/payments/") && under("/events/") => Some(Mark::Resend),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mark::Accept => "ops_accept",
            Mark::Reject => "ops_reject",
            Mark::Refunded => "ops_mark_refunded",
            Mark::NotRefunded => "ops_mark_not_refunded",
            Mark::Sent => "ops_mark_sent",
            Mark::NotSent => "ops_mark_not_sent",
            Mark::Acknowledge => "ops_acknowledge",
            Mark::Check => "ops_check_refund",
            Mark::Resend => "ops_resend_event",
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    reason: String,
    #[serde(default)]
    casino_transaction_id: Option<String>,
    /// Accept only: the amount the provider shows, in minor units, for a
    /// payment it confirmed without one.
    #[serde(default)]
    amount: Option<i64>,
    /// Resend only: the one endpoint to send to (every delivery of the
    /// event when left out).
    #[serde(default)]
    endpoint_id: Option<String>,
}

/// Every route of the api-ops function: the queue, and the actions that
/// settle what it lists.
pub async fn handle(services: &Services, req: Request) -> Response<Body> {
    if req.method() == lambda_http::http::Method::GET {
        if req
            .uri()
            .path()
            .trim_end_matches('/')
            .ends_with("/balances")
        {
            return get_balances(services, req).await;
        }
        return get_queue(services, req).await;
    }
    let request_id = responses::request_id(&req);
    let route = Mark::of(req.uri().path()).map_or("ops_action", Mark::name);
    handled(route, &request_id, action_inner(services, &req)).await
}

async fn action_inner(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    use super::idempotent::{self, Begun};
    let operator = responses::operator(req)?;
    let action = Mark::of(req.uri().path())
        .ok_or_else(|| ApiError::not_found("route_not_found", "no such operator action"))?;
    idempotent::key(req)?;
    let body: ActionBody = responses::json_body(req)?;
    let reason = body.reason.trim().to_string();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "reason is required, at most 500 characters",
        ));
    }
    match (action, &body.casino_transaction_id) {
        (Mark::Sent, None) => {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "mark-sent needs the casino's casino_transaction_id",
            ))
        }
        (Mark::Sent, Some(_)) => {}
        (_, Some(_)) => {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "casino_transaction_id belongs to mark-sent only",
            ))
        }
        _ => {}
    }
    match (action, body.amount) {
        (Mark::Accept, Some(a)) if a <= 0 => {
            return Err(ApiError::unprocessable(
                "invalid_amount",
                "amount must be a positive number of minor units",
            ))
        }
        (Mark::Accept, _) | (_, None) => {}
        (_, Some(_)) => {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "amount belongs to accept only",
            ))
        }
    }
    let params = req.path_parameters();
    let payment_id: crate::ids::PaymentId = params
        .first("payment_id")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| ApiError::not_found("payment_not_found", "no such payment"))?;
    let payment = services
        .store
        .payment(payment_id)
        .await?
        .ok_or_else(|| ApiError::not_found("payment_not_found", "no such payment"))?;
    super::note_payment(&payment);
    // Idempotency keys are the operator's own: one operator's key never
    // replays another's action.
    let scope: crate::ids::MerchantId =
        format!("ops.{}", &crate::api::authorizer::hash_key(&operator)[..16])
            .parse()
            .map_err(|_| ApiError::internal(&"operator scope"))?;
    if body.endpoint_id.is_some() && action != Mark::Resend {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "endpoint_id belongs to resend only",
        ));
    }
    let request = serde_json::json!({"path": req.uri().path(), "reason": reason,
                                     "casino_transaction_id": body.casino_transaction_id,
                                     "amount": body.amount, "endpoint_id": body.endpoint_id});
    let claim = match idempotent::begin(services, req, &scope, action.name(), &request).await? {
        Begun::Run(claim) => claim,
        Begun::Answer(response) => return Ok(response),
    };
    let by = (operator, reason);
    let result = match action {
        Mark::Accept | Mark::Reject => review(services, payment, action, body.amount, by).await,
        Mark::Refunded | Mark::NotRefunded | Mark::Check => {
            mark_refund(services, req, payment, action, by).await
        }
        Mark::Sent | Mark::NotSent => {
            mark_topup(services, payment, body.casino_transaction_id, by).await
        }
        Mark::Acknowledge => acknowledge(services, req, payment, by).await,
        Mark::Resend => resend_event(services, req, payment, body.endpoint_id, by).await,
    };
    idempotent::finish(services, claim, result).await
}

/// One more attempt now of an event about `payment` that its merchant's
/// endpoint did not take (202).
async fn resend_event(
    services: &Services,
    req: &Request,
    payment: crate::payment::Payment,
    endpoint: Option<String>,
    (operator, reason): (String, String),
) -> Result<Response<Body>, ApiError> {
    let missing = || ApiError::not_found("event_not_found", "no such event of this payment");
    let event_id: crate::ids::EventId = req
        .path_parameters()
        .first("event_id")
        .and_then(|e| e.parse().ok())
        .ok_or_else(missing)?;
    let event = services
        .store
        .event(&payment.merchant_id, event_id)
        .await?
        .filter(|e| e.payment_id == payment.id)
        .ok_or_else(missing)?;
    let endpoint = super::events::delivery_endpoint(endpoint)?;
    tracing::info!(operator, reason, event_id = %event.id, "operator resends an event");
    crate::telemetry::operator_action("resend_event");
    super::events::resend_now(services, &payment.merchant_id, event.id, endpoint).await
}

async fn mark_refund(
    services: &Services,
    req: &Request,
    payment: crate::payment::Payment,
    action: Mark,
    by: (String, String),
) -> Result<Response<Body>, ApiError> {
    let refund_id = req
        .path_parameters()
        .first("refund_id")
        .and_then(|r| r.strip_prefix("ref_"))
        .and_then(|r| ulid::Ulid::from_string(r).ok())
        .ok_or_else(|| ApiError::not_found("refund_not_found", "no such refund"))?;
    let refund = services
        .store
        .refund(payment.id, refund_id)
        .await?
        .ok_or_else(|| ApiError::not_found("refund_not_found", "no such refund"))?;
    let payment = if action == Mark::Check {
        // Asks the provider now and settles on a clear answer, as reconcile
        // does; an answer that cannot tell leaves the refund pending.
        tracing::info!(operator = by.0, refund_id = %refund_id, "refund checked by an operator");
        let now = OffsetDateTime::now_utc();
        match crate::refunds::resume(services, payment.clone(), refund, now).await? {
            crate::refunds::Resumed::Done(p) | crate::refunds::Resumed::Pending(p) => p,
            crate::refunds::Resumed::Refused(_) => {
                services.store.payment(payment.id).await?.unwrap_or(payment)
            }
        }
    } else {
        let refunded = action == Mark::Refunded;
        tracing::warn!(operator = by.0, refunded, refund_id = %refund_id, "refund settled by an operator");
        crate::refunds::mark(services, payment, refund, refunded, by).await?
    };
    let view = super::PaymentView::of(&payment, None)
        .naming_operators(&payment)
        .complete(services, &payment)
        .await?;
    Ok(responses::json(StatusCode::OK, &view))
}

async fn mark_topup(
    services: &Services,
    payment: crate::payment::Payment,
    sent: Option<String>,
    by: (String, String),
) -> Result<Response<Body>, ApiError> {
    let (operator, reason) = by;
    let sent = sent.map(|t| t.trim().to_string());
    if sent
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.chars().count() > 128)
    {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "casino_transaction_id is 1 to 128 characters",
        ));
    }
    if services.store.topup(payment.id).await?.is_none() {
        return Err(ApiError::not_found(
            "topup_not_found",
            "this payment has no casino top-up",
        ));
    }
    let now = OffsetDateTime::now_utc();
    let by = (operator.as_str(), reason.as_str());
    match crate::flow::mark_topup(
        crate::flow::Books::of(services),
        payment.id,
        sent.as_deref(),
        by,
        now,
    )
    .await?
    {
        Ok(topup) => {
            crate::telemetry::operator_action(if sent.is_some() {
                "mark_sent"
            } else {
                "mark_not_sent"
            });
            let payment = services.store.payment(payment.id).await?.unwrap_or(payment);
            let view = super::PaymentView::of(&payment, Some(&topup)).naming_operators(&payment);
            Ok(responses::json(StatusCode::OK, &view))
        }
        Err(why) => Err(ApiError::new(StatusCode::CONFLICT, "invalid_state", why)),
    }
}

/// The Idempotency-Key under which a rejected payment's refund is made: one
/// per payment, so a retried reject resumes the same refund.
const REJECT_REFUND_KEY: &str = "paygate-operator-reject";

/// Accepts or rejects a payment in review.
///
/// A rejected payment whose provider took money it can refund is completed
/// without a casino top-up (the wallet credited what was paid) and refunded
/// in full through the merchants' refund path (the hold takes the credit
/// back): 200 when refunded, 202 while the provider's answer is unknown. A
/// retried reject whose refund did not finish resumes it. Elsewhere a
/// rejected payment fails, and any money stays with the provider.
async fn review(
    services: &Services,
    payment: crate::payment::Payment,
    action: Mark,
    amount: Option<i64>,
    by: (String, String),
) -> Result<Response<Body>, ApiError> {
    use crate::flow::{decide_review, Books, Review};
    use crate::payment::{PaymentStatus, RefundSupport};
    let conflict = |p: &crate::payment::Payment, why: &str| {
        ApiError::new(StatusCode::CONFLICT, "invalid_state", why.to_string())
            .with_details(serde_json::json!({"status": p.status}))
    };
    let decision = match action {
        Mark::Accept => Review::Accept {
            stated: amount
                .map(|a| crate::money::Money::new(a, payment.amount.currency()))
                .transpose()
                .map_err(|e| ApiError::unprocessable("invalid_amount", e.to_string()))?,
        },
        _ => Review::Reject {
            refund: crate::providers::registry::describe(payment.provider)
                .operations
                .refund
                != RefundSupport::None
                && payment.confirmed_amount.is_some(),
        },
    };
    let resumed = action == Mark::Reject
        && payment.status == PaymentStatus::Completed
        && payment
            .history
            .last()
            .is_some_and(|e| e.action.as_deref() == Some("reject"));
    let decided = if resumed {
        payment
    } else {
        match decide_review(Books::of(services), &payment, &decision, by).await? {
            Ok(p) => p,
            Err((p, why)) => return Err(conflict(&p, why)),
        }
    };
    if action == Mark::Accept || decided.status != PaymentStatus::Completed {
        let topup = services.store.topup(decided.id).await?;
        let view = super::PaymentView::of(&decided, topup.as_ref()).naming_operators(&decided);
        return Ok(responses::json(StatusCode::OK, &view));
    }
    let key: crate::ids::IdempotencyKey = REJECT_REFUND_KEY
        .parse()
        .map_err(|_| ApiError::internal(&"reject refund key"))?;
    let merchant = decided.merchant_id.clone();
    let (status, refunded) =
        match crate::refunds::request(services, decided, None, &merchant, &key).await? {
            crate::refunds::RefundResult::Done(p) => (StatusCode::OK, p),
            crate::refunds::RefundResult::Pending(p) => (StatusCode::ACCEPTED, p),
        };
    let view = super::PaymentView::of(&refunded, None)
        .naming_operators(&refunded)
        .complete(services, &refunded)
        .await?;
    Ok(responses::json(status, &view))
}

/// An operator's acknowledgement of a reconcile difference, with their note:
/// it leaves the queue (a later run finding the same two sides keeps it
/// acknowledged; a changed difference is a new item).
async fn acknowledge(
    services: &Services,
    req: &Request,
    payment: crate::payment::Payment,
    by: (String, String),
) -> Result<Response<Body>, ApiError> {
    let id = req
        .path_parameters()
        .first("difference_id")
        .map(str::to_string)
        .ok_or_else(|| ApiError::not_found("difference_not_found", "no such difference"))?;
    let not_found = || ApiError::not_found("difference_not_found", "no such difference");
    if id.len() > 64 {
        return Err(not_found());
    }
    let kept = services
        .store
        .difference(payment.id, &id)
        .await?
        .ok_or_else(not_found)?;
    let (operator, reason) = by;
    let note = crate::payment::HistoryEntry {
        status: payment.status,
        at: OffsetDateTime::now_utc(),
        source: crate::payment::ChangeSource::Operator,
        by: Some(operator.clone()),
        reason: Some(reason),
        action: Some("acknowledge".into()),
    };
    match services.store.acknowledge_difference(&kept, &note).await? {
        Ok(done) => {
            tracing::warn!(
                operator,
                difference = done.id,
                "reconcile difference acknowledged"
            );
            crate::telemetry::operator_action("acknowledge");
            Ok(responses::json(StatusCode::OK, &done))
        }
        Err(found) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_state",
            "the difference is acknowledged already",
        )
        .with_details(serde_json::json!({
            "acknowledged_by": found.and_then(|f| f.acknowledged_by),
        }))),
    }
}

/// One balance a provider reports, as read just now.
#[derive(Debug, Clone, Serialize)]
pub struct BalanceView {
    /// The provider, or `casino` for an agent's float.
    pub source: String,
    /// The account: the Payment Engine account, the casino agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<crate::money::Currency>,
    /// Why there is no amount (the call failed); never the provider's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(with = "time::serde::rfc3339")]
    pub read_at: OffsetDateTime,
}

impl BalanceView {
    fn of(
        source: &str,
        account: Option<String>,
        read: Result<crate::money::Money, crate::providers::ProviderError>,
    ) -> BalanceView {
        let (amount, currency, error) = match read {
            Ok(m) => (Some(m.minor()), Some(m.currency()), None),
            Err(e) => {
                tracing::warn!(source, error = %e, "balance not read");
                (None, None, Some(balance_error(&e)))
            }
        };
        BalanceView {
            source: source.to_string(),
            account,
            amount,
            currency,
            error,
            read_at: OffsetDateTime::now_utc(),
        }
    }
}

fn balance_error(e: &crate::providers::ProviderError) -> &'static str {
    use crate::providers::ProviderError as E;
    match e {
        e if e.is_unavailable() => "no_answer",
        E::Auth { .. } => "authentication_failed",
        E::NotFound { .. } => "account_not_found",
        E::Rejected { .. } => "refused",
        _ => "unreadable_answer",
    }
}

#[derive(Serialize)]
struct BalancesView {
    data: Vec<BalanceView>,
    /// Providers whose API has no balance call.
    not_reported: Vec<Provider>,
}

/// `GET /v1/ops/balances`: what each provider that reports a balance says
/// now (the Payment Engine account, every casino agent's float), read on
/// each request, so operators see a float running low before top-ups fail.
pub async fn get_balances(services: &Services, req: Request) -> Response<Body> {
    let request_id = responses::request_id(&req);
    handled("ops_balances", &request_id, balances_inner(services, &req)).await
}

async fn balances_inner(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let operator = responses::operator(req)?;
    let mut data = Vec::new();
    let mut not_reported = Vec::new();
    for provider in Provider::ALL {
        let read = match services.gateway(provider).await {
            Ok(g) => g.balance().await,
            Err(e) => Err(e),
        };
        match read {
            Ok(None) => not_reported.push(provider),
            Ok(Some((account, money))) => {
                data.push(BalanceView::of(provider.as_str(), Some(account), Ok(money)))
            }
            Err(e) => data.push(BalanceView::of(provider.as_str(), None, Err(e))),
        }
    }
    match services.casino().await {
        Ok(casino) => {
            for (agent, read) in casino.agent_balances().await {
                data.push(BalanceView::of("casino", Some(agent), read));
            }
        }
        Err(e) => data.push(BalanceView::of("casino", None, Err(e))),
    }
    tracing::info!(operator, balances = data.len(), "balances read");
    Ok(responses::json(
        StatusCode::OK,
        &BalancesView { data, not_reported },
    ))
}
