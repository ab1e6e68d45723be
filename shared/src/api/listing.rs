//! `GET /v1/payments?created_from=&created_to=&status=&provider=&limit=&cursor=`:
//! the merchant's payments, newest first, a page at a time (API.md,
//! "Listing payments"; the store's `payments_of`).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::PaymentView;
use crate::payment::{PaymentStatus, Provider};
use crate::responses::{self, ApiError};
use crate::services::Services;
use crate::store::{is_position, PaymentFilter};

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

fn time_param(text: Option<&str>, name: &'static str) -> Result<Option<OffsetDateTime>, ApiError> {
    text.map(|t| {
        OffsetDateTime::parse(t, &Rfc3339).map_err(|_| {
            ApiError::bad_request(
                if name == "created_from" {
                    "invalid_created_from"
                } else {
                    "invalid_created_to"
                },
                format!("{name} is not an RFC 3339 time"),
            )
        })
    })
    .transpose()
}

/// The filter and page size a request asks for.
fn asked(req: &Request) -> Result<(PaymentFilter, usize), ApiError> {
    let params = req.query_string_parameters();
    let status = match params.first("status") {
        None => None,
        Some(s) => Some(
            serde_json::from_value::<PaymentStatus>(Value::String(s.to_string())).map_err(
                |_| ApiError::unprocessable("unknown_status", "status is not a payment status"),
            )?,
        ),
    };
    let provider = match params.first("provider") {
        None => None,
        Some(p) => Some(p.parse::<Provider>().map_err(|_| {
            ApiError::unprocessable("unknown_provider", "provider is not a provider")
        })?),
    };
    let created_from = time_param(params.first("created_from"), "created_from")?;
    let created_to = time_param(params.first("created_to"), "created_to")?;
    if let (Some(from), Some(to)) = (created_from, created_to) {
        if from >= to {
            return Err(ApiError::unprocessable(
                "invalid_time_range",
                "created_from must be before created_to",
            ));
        }
    }
    let limit = match params.first("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::unprocessable("invalid_limit", "limit is 1 to 100"))?,
    };
    Ok((
        PaymentFilter {
            status,
            provider,
            created_from,
            created_to,
        },
        limit,
    ))
}

/// What a cursor is bound to: the merchant and every filter (not the page
/// size, which may change between pages).
fn query_text(merchant: &crate::ids::MerchantId, f: &PaymentFilter) -> String {
    let nanos = |t: Option<OffsetDateTime>| t.map(|t| t.unix_timestamp_nanos().to_string());
    format!(
        "payments|{merchant}|{}|{}|{}|{}",
        f.status
            .map(|s| serde_json::to_string(&s).unwrap_or_default())
            .unwrap_or_default(),
        f.provider.map(Provider::as_str).unwrap_or_default(),
        nanos(f.created_from).unwrap_or_default(),
        nanos(f.created_to).unwrap_or_default(),
    )
}

pub(super) async fn page(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    let (filter, limit) = asked(req)?;
    let query = query_text(&merchant, &filter);
    let after = match req.query_string_parameters().first("cursor") {
        None => None,
        Some(c) => Some(
            super::cursor::decode(c, &query, is_position).ok_or_else(|| {
                ApiError::bad_request("invalid_cursor", "the cursor is not one this query gave")
            })?,
        ),
    };
    let page = services
        .store
        .payments_of(&merchant, &filter, limit, after.as_deref())
        .await?;
    let data: Vec<PaymentView> = page
        .payments
        .iter()
        .map(|p| PaymentView::of(p, None))
        .collect();
    let next = page.next.map(|p| super::cursor::encode(&p, &query));
    Ok(responses::json(
        StatusCode::OK,
        &json!({"data": data, "next_cursor": next}),
    ))
}
