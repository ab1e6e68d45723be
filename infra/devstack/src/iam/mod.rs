//! The local stand-in for IAM: an endpoint in front of DynamoDB Local and
//! moto that checks every call a function makes against that function's
//! `Policies` in template.yaml, and refuses what AWS would refuse.
//!
//! Each function signs with credentials of its own: the access key id is
//! its binary's name (`api-get-payment`). The endpoint reads it from the
//! SigV4 `Authorization` header, works out the IAM actions and resources
//! of the call ([`request`]), and evaluates them against the function's
//! statements ([`policy`]). A call outside the policy is answered as AWS
//! answers it (`AccessDeniedException`, HTTP 400; SQS's query protocol
//! `AccessDenied`, 403) and never reaches the service. Calls signed by a
//! key that names no function (the tests' own set-up and inspection, the
//! local event source) pass through unchecked.
//!
//! `make dev`, `make bench` and the cargo tests that run handlers put it
//! in front of the local stack; the bench also counts calls through it
//! (an [`Observer`]).

pub mod policy;
pub mod request;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;

pub use policy::{Check, Decision, LocalNames, Policies};
pub use request::{Call, Service};

/// Sees every call the endpoint forwards (the bench's tally).
pub type Observer = Arc<dyn Fn(&Call, &[u8]) + Send + Sync>;

/// A call the endpoint refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The function (its binary) that made it.
    pub function: String,
    pub action: String,
    pub resource: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} may not {} on {}",
            self.function, self.action, self.resource
        )
    }
}

struct Inner {
    policies: Policies,
    dynamodb: String,
    moto: String,
    client: reqwest::Client,
    /// Secret name to its ARN (with the random suffix).
    secret_arns: Mutex<HashMap<String, String>>,
    refusals: Arc<Mutex<Vec<Refusal>>>,
    observer: Option<Observer>,
}

/// A running endpoint.
pub struct Guard {
    /// Where the functions' AWS SDKs point (every service: calls are
    /// routed by their `X-Amz-Target`).
    pub url: String,
    refusals: Arc<Mutex<Vec<Refusal>>>,
}

impl Guard {
    /// Listens on a free loopback port, in front of `dynamodb` (DynamoDB
    /// Local's URL) and `moto` (SQS and Secrets Manager).
    pub async fn start(
        policies: Policies,
        dynamodb: &str,
        moto: &str,
        observer: Option<Observer>,
    ) -> Result<Guard, String> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| e.to_string())?;
        Guard::on(listener, policies, dynamodb, moto, observer)
    }

    /// Serves on `listener`.
    pub fn on(
        listener: tokio::net::TcpListener,
        policies: Policies,
        dynamodb: &str,
        moto: &str,
        observer: Option<Observer>,
    ) -> Result<Guard, String> {
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let inner = Arc::new(Inner {
            policies,
            dynamodb: dynamodb.trim_end_matches('/').to_string(),
            moto: moto.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            secret_arns: Mutex::new(HashMap::new()),
            refusals: refusals.clone(),
            observer,
        });
        let app = Router::new().fallback(handle).with_state(inner);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Guard { url, refusals })
    }

    /// Every call refused so far.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every call refused since the last take.
    pub fn take_refusals(&self) -> Vec<Refusal> {
        std::mem::take(&mut *self.refusals.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The access key id of a SigV4 `Authorization` header.
pub fn access_key_id(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    let key = credential.split('/').next()?;
    Some(key.trim().to_string())
}

/// The access key the local services see: DynamoDB Local takes only
/// letters and digits in one (and checks no signature), so a function's
/// key is replaced once the check is done.
pub const UPSTREAM_KEY: &str = "local";

fn upstream_authorization(value: &axum::http::HeaderValue) -> axum::http::HeaderValue {
    let Ok(text) = value.to_str() else {
        return value.clone();
    };
    let Some((head, rest)) = text.split_once("Credential=") else {
        return value.clone();
    };
    let tail = rest.split_once('/').map_or("", |(_, t)| t);
    format!("{head}Credential={UPSTREAM_KEY}/{tail}")
        .parse()
        .unwrap_or_else(|_| value.clone())
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    let call = Call::read(target, &body);
    if let Some(function) = access_key_id(&parts.headers).filter(|k| inner.policies.is_function(k))
    {
        if let Some(refused) = inner.refusal(&function, &call, parts.uri.path()).await {
            eprintln!("paygate-iam: refused: {refused}");
            let answer = denied(&call, &refused);
            inner
                .refusals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(refused);
            return answer;
        }
    }
    if let Some(observe) = &inner.observer {
        observe(&call, &body);
    }
    let upstream = match call.service {
        Service::DynamoDb => &inner.dynamodb,
        _ => &inner.moto,
    };
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut out = inner
        .client
        .request(parts.method.clone(), format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name == "authorization" {
            out = out.header(name, upstream_authorization(value));
        } else if name != "host" && name != "content-length" {
            out = out.header(name, value);
        }
    }
    match out.body(body).send().await {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            let bytes = r.bytes().await.unwrap_or_default();
            let mut response = (status, bytes).into_response();
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

impl Inner {
    /// The first check of the call the function's policy does not allow.
    async fn refusal(&self, function: &str, call: &Call, path: &str) -> Option<Refusal> {
        let names = &self.policies.names;
        let partition_key = |t: &str| self.policies.partition_keys.get(t).cloned();
        for wanted in request::checks(call, path, names, &partition_key) {
            let check = match wanted {
                request::Wanted::Ready(c) => c,
                request::Wanted::Secret { action, secret_id } => Check {
                    action,
                    resource: self.secret_arn(&secret_id).await,
                    leading_keys: None,
                },
            };
            if self.policies.decide(function, &check) != Decision::Allowed {
                return Some(Refusal {
                    function: function.to_string(),
                    action: check.action,
                    resource: check.resource,
                });
            }
        }
        None
    }

    /// A secret's ARN, with the random six characters Secrets Manager
    /// appends to its name; for a secret that does not exist, its name
    /// with `-??????` (a policy that would grant it, grants it).
    async fn secret_arn(&self, id: &str) -> String {
        if id.starts_with("arn:") {
            return id.to_string();
        }
        if let Some(arn) = self
            .secret_arns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
        {
            return arn.clone();
        }
        let region = &self.policies.names.region;
        let described = self
            .client
            .post(format!("{}/", self.moto))
            .header("x-amz-target", "secretsmanager.DescribeSecret")
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=paygate-iam/20260101/{region}/secretsmanager/aws4_request, SignedHeaders=host, Signature=0"
                ),
            )
            .body(json!({ "SecretId": id }).to_string())
            .send()
            .await;
        let arn = match described {
            Ok(r) if r.status().is_success() => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["ARN"].as_str().map(str::to_string)),
            _ => None,
        };
        match arn {
            Some(arn) => {
                self.secret_arns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(id.to_string(), arn.clone());
                arn
            }
            None => self.policies.names.secret_arn(&format!("{id}-??????")),
        }
    }
}

/// AWS's refusal, in the shape of the call's protocol.
fn denied(call: &Call, refused: &Refusal) -> Response {
    let message = format!(
        "User: arn:aws:sts::{account}:assumed-role/{f}-role/{f} is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action",
        account = policy::ACCOUNT,
        f = refused.function,
        action = refused.action,
        resource = refused.resource,
    );
    let request_id = ulid::Ulid::new().to_string();
    let json_answer = |content_type: &str, body: serde_json::Value| {
        let mut r = (StatusCode::BAD_REQUEST, body.to_string()).into_response();
        let h = r.headers_mut();
        if let Ok(v) = content_type.parse() {
            h.insert("content-type", v);
        }
        if let Ok(v) = request_id.parse() {
            h.insert("x-amzn-requestid", v);
        }
        r
    };
    match call.service {
        Service::DynamoDb => json_answer(
            "application/x-amz-json-1.0",
            json!({"__type": "com.amazon.coral.service#AccessDeniedException", "Message": message}),
        ),
        Service::SqsJson => {
            let mut r = json_answer(
                "application/x-amz-json-1.0",
                json!({"__type": "com.amazon.coral.service#AccessDeniedException", "message": message}),
            );
            if let Ok(v) = "AccessDenied;Sender".parse() {
                r.headers_mut().insert("x-amzn-query-error", v);
            }
            r
        }
        Service::SecretsManager | Service::Unknown => json_answer(
            "application/x-amz-json-1.1",
            json!({"__type": "AccessDeniedException", "Message": message}),
        ),
        Service::SqsQuery => {
            let body = format!(
                "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{}</Message><Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
                message.replace('&', "&amp;").replace('<', "&lt;")
            );
            let mut r = (StatusCode::FORBIDDEN, body).into_response();
            if let Ok(v) = "text/xml".parse() {
                r.headers_mut().insert("content-type", v);
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_key_is_read_from_sigv4() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=api-get-payment/20261204/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"
                .parse()
                .unwrap(),
        );
        assert_eq!(access_key_id(&h).as_deref(), Some("api-get-payment"));
        assert_eq!(access_key_id(&HeaderMap::new()), None);
    }
}
