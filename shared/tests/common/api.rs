//! A local stand-in for API Gateway, for tests: HTTP on a random loopback
//! port, routed like template.yaml, merchant routes behind the authorizer,
//! each request handed to the same handler a function runs.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayV2CustomAuthorizerV2Request,
    ApiGatewayV2httpRequestContext,
};
use axum::body::{to_bytes, Body as AxBody};
use axum::extract::{Path, Request as AxRequest, State};
use axum::response::Response as AxResponse;
use axum::routing::{get, post};
use axum::Router;
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use shared::api::authorizer::{authorize, ApiKeys};
use shared::payment::Provider;
use shared::services::Services;

#[derive(Clone)]
struct App {
    services: Services,
    keys: Arc<ApiKeys>,
}

#[derive(Clone, Copy)]
enum Route {
    CreatePayment,
    CancelPayment,
    RefundPayment,
    GetPayment,
    ListPayments,
    Wallet,
    CasinoUser,
    Ops,
    Health,
    PayPage,
    PayStatus,
    Webhook(Provider),
}

impl Route {
    fn needs_key(self) -> bool {
        !matches!(
            self,
            Route::Webhook(_) | Route::Health | Route::PayPage | Route::PayStatus
        )
    }
}

/// Serves the API on `listener`.
pub async fn serve(listener: tokio::net::TcpListener, services: Services) {
    let keys = ApiKeys::load(&services.secrets, &services.settings.secret_prefix)
        .await
        .expect("api keys secret");
    let app = App {
        services,
        keys: Arc::new(keys),
    };
    let r = |route: Route| {
        move |State(app): State<App>,
              params: Option<Path<HashMap<String, String>>>,
              req: AxRequest| {
            dispatch(app, route, params.map(|p| p.0).unwrap_or_default(), req)
        }
    };
    let router = Router::new()
        .route(
            "/v1/payments",
            post(r(Route::CreatePayment)).get(r(Route::ListPayments)),
        )
        .route("/v1/payments/{id}", get(r(Route::GetPayment)))
        .route("/v1/payments/{id}/cancel", post(r(Route::CancelPayment)))
        .route("/v1/payments/{id}/refund", post(r(Route::RefundPayment)))
        .route("/v1/wallets/{user_id}", get(r(Route::Wallet)))
        .route("/v1/casino/users/{username}", get(r(Route::CasinoUser)))
        .route("/v1/ops/queue", get(r(Route::Ops)))
        .route("/v1/ops/balances", get(r(Route::Ops)))
        .route(
            "/v1/ops/refunds/{payment_id}/{refund_id}/check",
            post(r(Route::Ops)),
        )
        .route(
            "/v1/ops/differences/{payment_id}/{difference_id}/acknowledge",
            post(r(Route::Ops)),
        )
        .route("/v1/ops/payments/{payment_id}/accept", post(r(Route::Ops)))
        .route("/v1/ops/payments/{payment_id}/reject", post(r(Route::Ops)))
        .route(
            "/v1/ops/refunds/{payment_id}/{refund_id}/mark-refunded",
            post(r(Route::Ops)),
        )
        .route(
            "/v1/ops/refunds/{payment_id}/{refund_id}/mark-not-refunded",
            post(r(Route::Ops)),
        )
        .route("/v1/ops/topups/{payment_id}/mark-sent", post(r(Route::Ops)))
        .route(
            "/v1/ops/topups/{payment_id}/mark-not-sent",
            post(r(Route::Ops)),
        )
        .route("/v1/health", get(r(Route::Health)))
        .route("/pay/{token}", get(r(Route::PayPage)))
        .route("/pay/{token}/status", get(r(Route::PayStatus)))
        .route(
            "/webhooks/directpay",
            post(r(Route::Webhook(Provider::Directpay))),
        )
        .route(
            "/webhooks/paygram/{secret}",
            post(r(Route::Webhook(Provider::Paygram))),
        )
        .route(
            "/webhooks/qpay",
            get(r(Route::Webhook(Provider::Qpay))).post(r(Route::Webhook(Provider::Qpay))),
        )
        .route(
            "/webhooks/payment-engine",
            post(r(Route::Webhook(Provider::PaymentEngine))),
        )
        .route(
            "/webhooks/epayment",
            post(r(Route::Webhook(Provider::Epayment))),
        )
        .route(
            "/webhooks/toyyibpay",
            post(r(Route::Webhook(Provider::Toyyibpay))),
        )
        .with_state(app);
    tokio::spawn(async move {
        axum::serve(listener, router).await.ok();
    });
}

async fn dispatch(
    app: App,
    route: Route,
    params: HashMap<String, String>,
    req: AxRequest,
) -> AxResponse {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let query: HashMap<String, String> = axum::extract::Query::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();

    let mut ctx = ApiGatewayV2httpRequestContext::default();
    ctx.request_id = Some(ulid::Ulid::new().to_string());
    if route.needs_key() {
        // As API Gateway does: no Authorization header is 401 without asking
        // the authorizer; a refusal is 403 (docs/decisions.md).
        if parts.headers.get("authorization").is_none() {
            return AxResponse::builder()
                .status(401)
                .header("content-type", "application/json")
                .body(AxBody::from(r#"{"message":"Unauthorized"}"#))
                .unwrap();
        }
        let mut auth_request = ApiGatewayV2CustomAuthorizerV2Request::default();
        auth_request.headers = parts.headers.clone();
        let decision = authorize(&app.keys, &auth_request);
        if !decision.is_authorized {
            return AxResponse::builder()
                .status(403)
                .header("content-type", "application/json")
                .body(AxBody::from(r#"{"message":"Forbidden"}"#))
                .unwrap();
        }
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        if let serde_json::Value::Object(fields) = decision.context {
            authorizer.fields = fields.into_iter().collect();
        }
        ctx.authorizer = Some(authorizer);
    }

    let mut builder = lambda_http::http::Request::builder()
        .method(parts.method.as_str())
        .uri(parts.uri.to_string());
    for (name, value) in &parts.headers {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    let req = builder
        .body(if bytes.is_empty() {
            Body::Empty
        } else {
            Body::from(bytes.to_vec())
        })
        .unwrap()
        .with_path_parameters(params)
        .with_query_string_parameters(query)
        .with_request_context(RequestContext::ApiGatewayV2(ctx));

    let s = &app.services;
    let response = match route {
        Route::CreatePayment => shared::api::payments::create(s, req).await,
        Route::CancelPayment => shared::api::payments::cancel(s, req).await,
        Route::RefundPayment => shared::api::payments::refund(s, req).await,
        Route::GetPayment => shared::api::payments::get(s, req).await,
        Route::ListPayments => shared::api::payments::list(s, req).await,
        Route::Wallet => shared::api::wallets::wallet(s, req).await,
        Route::CasinoUser => shared::api::wallets::casino_user(s, req).await,
        Route::Ops => shared::api::ops::handle(s, req).await,
        Route::Health => shared::api::health::health(s, req).await,
        Route::PayPage => shared::api::pay_page::page(s, req).await,
        Route::PayStatus => shared::api::pay_page::status(s, req).await,
        Route::Webhook(p) => shared::api::webhooks::handle(s, p, req).await,
    };
    let (parts, body) = response.into_parts();
    let mut out = AxResponse::builder().status(parts.status.as_u16());
    for (name, value) in &parts.headers {
        out = out.header(name.as_str(), value.as_bytes());
    }
    out.body(AxBody::from(body.as_ref().to_vec())).unwrap()
}
