//! `GET /v1/health` (no API key): each provider's health as its client
//! calls have found it (`crate::provider_health`), and `"degraded"` when any one has
//! failed [`UNHEALTHY_AFTER`](crate::provider_health::UNHEALTHY_AFTER) times in a
//! row. The answer is 200 either way (the body says which); only when the
//! table itself cannot be read is it 503, so a load balancer's check
//! fails then and only then.

use std::collections::BTreeMap;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use crate::provider_health::{ProviderView, PROVIDERS};
use crate::responses::{self, ApiError};
use crate::services::Services;

#[derive(Serialize)]
struct HealthView {
    status: &'static str,
    providers: BTreeMap<&'static str, ProviderView>,
    #[serde(with = "time::serde::rfc3339")]
    time: time::OffsetDateTime,
}

pub async fn health(services: &Services, req: Request) -> Response<Body> {
    let request_id = responses::request_id(&req);
    let stored = match services.store.provider_health(&PROVIDERS).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(error = %e, "health cannot read the table");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "paygate cannot read its own state",
            )
            .into_response(&request_id);
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let providers: BTreeMap<&'static str, ProviderView> = PROVIDERS
        .iter()
        .zip(stored.iter())
        .map(|(name, h)| (*name, ProviderView::of(h, now)))
        .collect();
    let status = if providers.values().all(|p| p.healthy) {
        "ok"
    } else {
        "degraded"
    };
    responses::json(
        StatusCode::OK,
        &HealthView {
            status,
            providers,
            time: time::OffsetDateTime::now_utc(),
        },
    )
}
