//! A local stand-in for API Gateway and the SQS event source, for `make dev`.
//!
//! Routes come from template.yaml (each function's `HttpApi` events). A
//! request is turned into an API Gateway HTTP API (payload 2.0) event and
//! sent to the function through the Lambda emulator's invoke endpoint
//! (`cargo lambda watch`); merchant routes first go to the Lambda
//! authorizer, as in AWS: no `Authorization` header is 401 without calling
//! it, a refusal is 403. Queue-triggered functions get SQS batches from a
//! poller, and their partial batch failures are honoured.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::template::{FunctionDef, Template};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    method: String,
    path: String,
    segments: Vec<Segment>,
    function: String,
    public: bool,
}

/// The routes of the template and where to send them.
#[derive(Debug, Clone)]
pub struct ApiGateway {
    routes: Vec<Route>,
    authorizer: Option<String>,
    lambda: String,
    client: reqwest::Client,
}

fn segments(path: &str) -> Vec<Segment> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(s.to_string()),
            },
        )
        .collect()
}

impl ApiGateway {
    /// `lambda` is the emulator's base URL (`http://127.0.0.1:9000`).
    pub fn new(template: &Template, lambda: &str) -> ApiGateway {
        let routes = template
            .functions
            .iter()
            .flat_map(|f| {
                f.routes.iter().map(|r| Route {
                    method: r.method.clone(),
                    path: r.path.clone(),
                    segments: segments(&r.path),
                    function: f.binary.clone(),
                    public: r.public,
                })
            })
            .collect();
        ApiGateway {
            routes,
            authorizer: template.authorizer.clone(),
            lambda: lambda.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                // The emulator compiles a function on its first invocation.
                .timeout(Duration::from_secs(600))
                .build()
                .unwrap_or_default(),
        }
    }

    /// `METHOD /path -> function` for every route, for printing.
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                format!(
                    "{:<6} {:<34} -> {}{}",
                    r.method,
                    r.path,
                    r.function,
                    if r.public { "" } else { "  (API key)" }
                )
            })
            .collect();
        lines.sort();
        lines
    }

    /// The route for a request and its path parameters.
    pub fn route(&self, method: &str, path: &str) -> Option<(&Route, HashMap<String, String>)> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.routes.iter().find_map(|r| {
            if r.method != method || r.segments.len() != parts.len() {
                return None;
            }
            let mut params = HashMap::new();
            for (seg, part) in r.segments.iter().zip(&parts) {
                match seg {
                    Segment::Literal(l) if l == part => {}
                    Segment::Literal(_) => return None,
                    Segment::Param(name) => {
                        params.insert(name.clone(), percent_decode(part));
                    }
                }
            }
            Some((r, params))
        })
    }

    async fn invoke(&self, function: &str, event: &Value) -> Result<Value, String> {
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.lambda
        );
        let started = std::time::Instant::now();
        let response = self
            .client
            .post(url)
            .json(event)
            .send()
            .await
            .map_err(|e| format!("invoke {function}: {e}"))?;
        if started.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "gateway: {function} took {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("invoke {function}: answer is not JSON: {e}"))?;
        if !status.is_success() || body.get("errorType").is_some() {
            return Err(format!("{function} failed: {body}"));
        }
        Ok(body)
    }

    /// Answers one HTTP request.
    pub async fn handle(&self, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let method = parts.method.as_str().to_string();
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().unwrap_or_default().to_string();
        let Some((route, params)) = self.route(&method, &path) else {
            return message(StatusCode::NOT_FOUND, "Not Found");
        };
        let body = match to_bytes(body, 10 * 1024 * 1024).await {
            Ok(b) => b,
            Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
        };
        let route_key = format!("{} {}", route.method, route.path);
        let mut context = http_context(&method, &path, &route_key);

        if !route.public {
            if let Some(authorizer) = &self.authorizer {
                let Some(identity) =
                    header(&parts.headers, "authorization").filter(|v| !v.is_empty())
                else {
                    return message(StatusCode::UNAUTHORIZED, "Unauthorized");
                };
                let event = json!({
                    "version": "2.0",
                    "type": "REQUEST",
                    "routeArn": format!("arn:aws:execute-api:us-east-1:000000000000:local/$default/{method}{path}"),
                    "identitySource": [identity],
                    "routeKey": route_key,
                    "rawPath": path,
                    "rawQueryString": query,
                    "headers": headers_json(&parts.headers),
                    "queryStringParameters": query_json(&query),
                    "pathParameters": params,
                    "requestContext": context,
                });
                match self.invoke(authorizer, &event).await {
                    Ok(decision) if decision["isAuthorized"] == json!(true) => {
                        context["authorizer"] = json!({"lambda": decision["context"]});
                    }
                    Ok(_) => return message(StatusCode::FORBIDDEN, "Forbidden"),
                    Err(e) => {
                        eprintln!("gateway: {e}");
                        return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
                    }
                }
            }
        }

        let (body_text, base64) = match std::str::from_utf8(&body) {
            Ok(text) => (text.to_string(), false),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&body),
                true,
            ),
        };
        let mut event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": path,
            "rawQueryString": query,
            "headers": headers_json(&parts.headers),
            "requestContext": context,
            "isBase64Encoded": base64,
        });
        if !body.is_empty() {
            event["body"] = json!(body_text);
        }
        if !params.is_empty() {
            event["pathParameters"] = json!(params);
        }
        if !query.is_empty() {
            event["queryStringParameters"] = query_json(&query);
        }
        match self.invoke(&route.function, &event).await {
            Ok(answer) => to_response(&answer),
            Err(e) => {
                eprintln!("gateway: {e}");
                message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }

    /// Feeds a table's stream to a function, forever, as Lambda's event
    /// source mapping does: records that pass the function's filters, in
    /// batches; a batch that fails, or the records from the first one it
    /// reports failed, are handed on again (three times, then dropped with a
    /// message, where AWS would send them to the mapping's on-failure
    /// destination).
    pub async fn poll_stream(
        &self,
        mut reader: crate::streams::StreamReader,
        source: crate::template::StreamSourceDef,
        function: FunctionDef,
    ) {
        loop {
            let records = match reader.read().await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("stream poller {}: {e}", function.binary);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            let records: Vec<Value> = records
                .into_iter()
                .filter(|r| crate::streams::passes(&source.filters, r))
                .collect();
            if records.is_empty() {
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            for batch in records.chunks(source.batch_size.max(1)) {
                let mut pending = batch.to_vec();
                for attempt in 0..4 {
                    let failed_from = match self
                        .invoke(&function.binary, &json!({"Records": pending}))
                        .await
                    {
                        Ok(answer) => answer["batchItemFailures"]
                            .as_array()
                            .and_then(|f| f.first())
                            .and_then(|f| f["itemIdentifier"].as_str())
                            .and_then(|id| {
                                pending
                                    .iter()
                                    .position(|r| r["dynamodb"]["SequenceNumber"] == id)
                            }),
                        Err(e) => {
                            eprintln!("stream poller: {e}");
                            Some(0)
                        }
                    };
                    match failed_from {
                        None => break,
                        Some(_) if attempt == 3 => eprintln!(
                            "stream poller {}: {} records dropped after 4 tries (the sweep finds what they asked for)",
                            function.binary,
                            pending.len()
                        ),
                        Some(from) => {
                            pending.drain(..from);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        }
    }

    /// Feeds a queue to a function in SQS batches, forever; deletes what the
    /// function did not report as failed.
    pub async fn poll(&self, sqs: aws_sdk_sqs::Client, queue_url: String, function: FunctionDef) {
        loop {
            let received = sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await;
            let messages = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => {
                    eprintln!(
                        "poller {}: {}",
                        function.binary,
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    );
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            let records: Vec<Value> = messages
                .iter()
                .map(|m| {
                    json!({
                        "messageId": m.message_id,
                        "receiptHandle": m.receipt_handle,
                        "body": m.body,
                        "attributes": {},
                        "messageAttributes": {},
                        "eventSource": "aws:sqs",
                        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:local",
                        "awsRegion": "us-east-1",
                    })
                })
                .collect();
            let failed: Vec<String> = match self
                .invoke(&function.binary, &json!({"Records": records}))
                .await
            {
                Ok(answer) => answer["batchItemFailures"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .filter_map(|i| i["itemIdentifier"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                Err(e) => {
                    eprintln!("poller: {e}");
                    messages
                        .iter()
                        .filter_map(|m| m.message_id.clone())
                        .collect()
                }
            };
            for m in &messages {
                let keep = m.message_id.as_ref().is_some_and(|id| failed.contains(id));
                if let (false, Some(handle)) = (keep, &m.receipt_handle) {
                    let _ = sqs
                        .delete_message()
                        .queue_url(&queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await;
                }
            }
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        if let Ok(v) = value.to_str() {
            let key = name.as_str().to_ascii_lowercase();
            match map.get_mut(&key) {
                Some(Value::String(existing)) => {
                    existing.push(',');
                    existing.push_str(v);
                }
                _ => {
                    map.insert(key, json!(v));
                }
            }
        }
    }
    Value::Object(map)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_json(query: &str) -> Value {
    let map: serde_json::Map<String, Value> = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), json!(percent_decode(v)))
        })
        .collect();
    Value::Object(map)
}

fn http_context(method: &str, path: &str, route_key: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    json!({
        "accountId": "000000000000",
        "apiId": "local",
        "domainName": "127.0.0.1",
        "domainPrefix": "local",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "local"},
        "requestId": ulid::Ulid::new().to_string(),
        "routeKey": route_key,
        "stage": "$default",
        "time": "",
        "timeEpoch": now,
    })
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"message": text}).to_string(),
    )
        .into_response()
}

/// A function's API Gateway response (payload 2.0) as HTTP.
fn to_response(answer: &Value) -> Response {
    let status = answer["statusCode"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let body = answer["body"].as_str().unwrap_or_default();
    let bytes = if answer["isBase64Encoded"] == json!(true) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(headers) = answer["headers"].as_object() {
        for (k, v) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                v.as_str().map(axum::http::HeaderValue::from_str),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

impl ApiGateway {
    /// Invokes a scheduled function every `every`, as EventBridge would on
    /// its (here compressed) schedule, forever.
    pub async fn schedule(&self, function: FunctionDef, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let event = json!({
                "version": "0", "id": ulid::Ulid::new().to_string(), "detail-type": "Scheduled Event",
                "source": "aws.events", "account": "000000000000", "region": "us-east-1",
                "resources": [format!("arn:aws:events:us-east-1:000000000000:rule/{}", function.binary)],
                "detail": {},
            });
            match self.invoke(&function.binary, &event).await {
                Ok(answer) => println!("schedule {}: {answer}", function.binary),
                Err(e) => eprintln!("schedule {}: {e}", function.binary),
            }
        }
    }
}

/// Serves the gateway on `listener` until the process ends.
pub async fn serve(
    gateway: Arc<ApiGateway>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .fallback(
            |State(g): State<Arc<ApiGateway>>, req: Request| async move { g.handle(req).await },
        )
        .with_state(gateway);
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> ApiGateway {
        let template = Template::load(&crate::template::default_path()).unwrap();
        ApiGateway::new(&template, "http://127.0.0.1:9")
    }

    #[test]
    fn routes_come_from_the_template() {
        let g = gateway();
        let (r, params) = g.route("GET", "/v1/payments/pay_123").unwrap();
        assert_eq!(r.function, "api-get-payment");
        assert_eq!(params["id"], "pay_123");
        let (r, _) = g.route("GET", "/v1/payments").unwrap();
        assert_eq!(r.function, "api-get-payment");
        let (r, _) = g.route("POST", "/v1/payments").unwrap();
        assert_eq!(r.function, "api-create-payment");
        assert!(!r.public);
        let (r, params) = g.route("POST", "/webhooks/paygram/s%23cret").unwrap();
        assert!(r.public);
        assert_eq!(params["secret"], "s#cret");
        assert!(g.route("DELETE", "/v1/payments").is_none());
        assert!(g.route("GET", "/v1/payments/a/b").is_none());
    }

    #[test]
    fn queries_and_escapes_are_decoded() {
        assert_eq!(
            query_json("reference=ORD%2D1&x="),
            json!({"reference": "ORD-1", "x": ""})
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
