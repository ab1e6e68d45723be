//! A local stand-in for API Gateway, for tests: HTTP on a random loopback
//! port, with template.yaml's routes (read from it, as devstack's gateway
//! does), merchant routes behind the authorizer, each request handed to the
//! same handler its function runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_lambda_events::event::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayV2CustomAuthorizerV2Request,
    ApiGatewayV2httpRequestContext,
};
use axum::body::{to_bytes, Body as AxBody};
use axum::extract::{Path, Request as AxRequest, State};
use axum::response::Response as AxResponse;
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use shared::api::authorizer::{authorize, ApiKeys};
use shared::payment::Provider;
use shared::providers::registry;
use shared::services::Services;

#[derive(Clone)]
struct App {
    /// Each function's own clients, by binary.
    functions: Arc<BTreeMap<String, Services>>,
    keys: Arc<ApiKeys>,
}

/// A route of template.yaml: the function it runs, and whether it sits
/// behind the authorizer.
#[derive(Clone)]
struct Route {
    binary: String,
    public: bool,
}

/// The functions the tests can run: each as its binary does.
fn known(binary: &str) -> bool {
    webhook_provider(binary).is_some()
        || matches!(
            binary,
            "api-create-payment"
                | "api-cancel-payment"
                | "api-refund-payment"
                | "api-get-payment"
                | "api-wallet"
                | "api-casino-user"
                | "api-ops"
                | "api-health"
                | "api-pay-page"
                | "api-events"
                | "api-console"
        )
}

/// The provider whose callbacks `webhook-<route>` takes.
fn webhook_provider(binary: &str) -> Option<Provider> {
    let route = binary.strip_prefix("webhook-")?;
    registry::all()
        .find(|d| d.route == route)
        .map(|d| d.provider)
}

/// Serves the API on `listener` with one set of clients for every
/// function (`services`, a test's own instance).
pub async fn serve(listener: tokio::net::TcpListener, services: Services) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let template = devstack::Template::load(&root.join("template.yaml")).expect("template.yaml");
    let functions = template
        .functions
        .iter()
        .map(|f| (f.binary.clone(), services.clone()))
        .collect();
    serve_functions(listener, &functions).await
}

/// Serves the API on `listener`: template.yaml's routes, each handed to
/// the handler its function runs, with that function's own clients
/// (`functions`, by binary); the API keys are read as the authorizer.
pub async fn serve_functions(
    listener: tokio::net::TcpListener,
    functions: &BTreeMap<String, Services>,
) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let template = devstack::Template::load(&root.join("template.yaml")).expect("template.yaml");
    let authorizer = template
        .authorizer
        .as_deref()
        .and_then(|a| functions.get(a))
        .expect("the HTTP API's authorizer function");
    let keys = ApiKeys::load(&authorizer.secrets, &authorizer.settings.secret_prefix)
        .await
        .expect("api keys secret, read as the authorizer");
    let app = App {
        functions: Arc::new(functions.clone()),
        keys: Arc::new(keys),
    };
    let mut paths: BTreeMap<String, MethodRouter<App>> = BTreeMap::new();
    for function in &template.functions {
        for r in &function.routes {
            assert!(
                known(&function.binary),
                "template.yaml routes {} {} to {}, which the tests' router cannot run",
                r.method,
                r.path,
                function.binary
            );
            let route = Route {
                binary: function.binary.clone(),
                public: r.public,
            };
            let handler = move |State(app): State<App>,
                                params: Option<Path<HashMap<String, String>>>,
                                req: AxRequest| {
                dispatch(app, route, params.map(|p| p.0).unwrap_or_default(), req)
            };
            let method = axum::http::Method::from_bytes(r.method.as_bytes()).expect("method");
            let filter = MethodFilter::try_from(method).expect("method filter");
            let methods = paths.remove(&r.path).unwrap_or_default();
            paths.insert(r.path.clone(), methods.on(filter, handler));
        }
    }
    let router = paths
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(&path, methods)
        })
        .with_state(app);
    tokio::spawn(async move {
        axum::serve(listener, router).await.ok();
    });
}

/// The stack a handler runs on here: a Lambda process's main thread's.
const HANDLER_STACK: usize = 8 * 1024 * 1024;

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
    if !route.public {
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

    let Some(services) = app.functions.get(&route.binary).cloned() else {
        unreachable!("serve() checked {}", route.binary)
    };
    let thread = format!("handler {}", route.binary);
    let handled = async move {
        let s = &services;
        match route.binary.as_str() {
            "api-create-payment" => shared::api::payments::create(s, req).await,
            "api-cancel-payment" => shared::api::payments::cancel(s, req).await,
            "api-refund-payment" => shared::api::payments::refund(s, req).await,
            "api-get-payment" => shared::api::payments::read(s, req).await,
            "api-wallet" => shared::api::wallets::wallet(s, req).await,
            "api-casino-user" => shared::api::wallets::casino_user(s, req).await,
            "api-ops" => shared::api::ops::handle(s, req).await,
            "api-health" => shared::api::health::health(s, req).await,
            "api-pay-page" => shared::api::pay_page::handle(s, req).await,
            "api-events" => shared::api::events::handle(s, req).await,
            "api-console" => shared::api::console::handle(req).await,
            webhook => match webhook_provider(webhook) {
                Some(p) => shared::api::webhooks::handle(s, p, req).await,
                None => unreachable!("serve() checked {webhook}"),
            },
        }
    };
    // On a thread of its own with a Lambda-sized stack, as the function's
    // handler runs on its process's main thread: a cold instance's first
    // request (clients built, secrets read) nests deeper than a runtime
    // worker's 2 MiB allow in a debug build.
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(thread)
        .stack_size(HANDLER_STACK)
        .spawn(move || {
            let _ = tx.send(runtime.block_on(handled));
        })
        .expect("a handler thread");
    let response = rx.await.expect("the handler finished");
    let (parts, body) = response.into_parts();
    let mut out = AxResponse::builder().status(parts.status.as_u16());
    for (name, value) in &parts.headers {
        out = out.header(name.as_str(), value.as_bytes());
    }
    out.body(AxBody::from(body.as_ref().to_vec())).unwrap()
}
