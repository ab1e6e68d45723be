//! The operator's side: `GET /v1/ops/queue`, everything that waits for a
//! person, for every merchant. Operator keys only (403 for a merchant's).
//!
//! What waits: payments in `needs_review`, refunds whose outcome is not
//! recorded, casino top-ups whose outcome is unknown, and top-ups given up
//! (their money sits in the wallet). Each item says what can be done with
//! it. Newest first; `?kind=` and `?provider=` filter.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use time::OffsetDateTime;

use super::handled;
use crate::http::{self, ApiError};
use crate::payment::Provider;
use crate::services::Services;
use crate::store::{Item, StoreError};

/// How many items of each kind one answer reads at most.
pub const PER_KIND: usize = 200;

/// What waits for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    PaymentReview,
    RefundPending,
    TopupUnknown,
    TopupGivenUp,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::PaymentReview,
        Kind::RefundPending,
        Kind::TopupUnknown,
        Kind::TopupGivenUp,
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
        }
    }

    /// What an operator can do with an item of this kind.
    fn actions(self) -> &'static [&'static str] {
        match self {
            Kind::PaymentReview => &["accept", "reject"],
            Kind::RefundPending => &["check", "mark_refunded", "mark_not_refunded"],
            Kind::TopupUnknown | Kind::TopupGivenUp => &["mark_sent", "mark_not_sent"],
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
    /// The payment's, refund's or top-up's own status.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    pub actions: &'static [&'static str],
}

/// Reads one kind's index page by page, up to [`PER_KIND`] ids.
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
            Some(key) if all.len() < PER_KIND => start = Some(key),
            _ => break,
        }
    }
    all.truncate(PER_KIND);
    Ok(all)
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
                        items.push(QueueItem {
                            kind,
                            payment_id: p.id.to_string(),
                            merchant_id: p.merchant_id.to_string(),
                            provider: p.provider,
                            amount: p.amount.minor(),
                            currency: p.amount.currency(),
                            status: p.status.as_str().to_string(),
                            provider_status: p.provider_status.clone(),
                            refund_id: None,
                            last_error: None,
                            since: p.updated_at,
                            actions: kind.actions(),
                        });
                    }
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
                        kind,
                        payment_id: p.id.to_string(),
                        merchant_id: p.merchant_id.to_string(),
                        provider: p.provider,
                        amount: r.amount.minor(),
                        currency: r.amount.currency(),
                        status: r.status.as_str().to_string(),
                        provider_status: r.provider_code.clone(),
                        refund_id: Some(format!("ref_{refund_id}")),
                        last_error: r.last_error.clone(),
                        since: r.last_attempt_at.unwrap_or(p.updated_at),
                        actions: kind.actions(),
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
                        kind,
                        payment_id: p.id.to_string(),
                        merchant_id: t.merchant_id.to_string(),
                        provider: p.provider,
                        amount: t.amount.minor(),
                        currency: t.amount.currency(),
                        status: t.status.as_str().to_string(),
                        provider_status: None,
                        refund_id: None,
                        last_error: t.last_error.clone(),
                        since: t.updated_at,
                        actions: kind.actions(),
                    });
                }
            }
        }
    }
    items.retain(|i| provider.is_none_or(|p| i.provider == p));
    items.sort_by_key(|i| std::cmp::Reverse(i.since));
    Ok(items)
}

#[derive(Serialize)]
struct QueueView {
    data: Vec<QueueItem>,
}

/// `GET /v1/ops/queue[?kind=][&provider=]`.
pub async fn get_queue(services: &Services, req: Request) -> Response<Body> {
    let request_id = http::request_id(&req);
    handled("ops_queue", &request_id, queue_inner(services, &req)).await
}

async fn queue_inner(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let operator = http::operator(req)?;
    let query = req.query_string_parameters();
    let kinds: Vec<Kind> = match query.first("kind") {
        None => Kind::ALL.to_vec(),
        Some(text) => vec![Kind::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_kind",
                "kind is payment_review, refund_pending, topup_unknown or topup_given_up",
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
    let data = queue(services, &kinds, provider).await?;
    tracing::info!(operator, items = data.len(), "queue read");
    Ok(http::json(StatusCode::OK, &QueueView { data }))
}
