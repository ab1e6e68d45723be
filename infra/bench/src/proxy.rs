//! A counting proxy in front of DynamoDB Local and moto: every AWS call a
//! function makes, by service and operation (`dynamodb GetItem`), counted
//! on the wire, with the sizes of the items written.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Tally {
    /// Calls by `service operation`.
    pub calls: BTreeMap<String, u32>,
    /// The size of each item written (PutItem and transaction puts), in
    /// bytes as DynamoDB counts them.
    pub items_written: Vec<usize>,
    /// Items in transactions (puts, updates, condition checks).
    pub transaction_items: u32,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    client: reqwest::Client,
    tally: Arc<Mutex<Tally>>,
}

/// A running proxy.
pub struct Counting {
    pub url: String,
    tally: Arc<Mutex<Tally>>,
}

impl Counting {
    pub async fn start(upstream: &str) -> Result<Counting, String> {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let proxy = Proxy {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            tally: tally.clone(),
        };
        let app = Router::new().fallback(forward).with_state(proxy);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| e.to_string())?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Counting { url, tally })
    }

    /// What was counted since the last take.
    pub fn take(&self) -> Tally {
        std::mem::take(&mut *sandbox::kit::lock(&self.tally))
    }
}

/// `service operation` of a request: the JSON protocols' `X-Amz-Target`
/// (`DynamoDB_20120810.GetItem`, `AmazonSQS.SendMessage`,
/// `secretsmanager.GetSecretValue`), or the query protocol's `Action`.
fn operation(headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (service, op) = target.split_once('.').unwrap_or(("?", target));
        let service = match service {
            s if s.starts_with("DynamoDB") => "dynamodb",
            "AmazonSQS" => "sqs",
            "secretsmanager" => "secretsmanager",
            other => other,
        };
        return format!("{service} {op}");
    }
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .map(|a| format!("sqs {a}"))
        .unwrap_or_else(|| "? ?".into())
}

/// An attribute value's size as DynamoDB bills it: names and values in
/// UTF-8 bytes, numbers about one byte per two digits plus one, containers
/// three bytes plus their elements.
fn value_size(v: &Value) -> usize {
    let Some(obj) = v.as_object() else { return 0 };
    let Some((kind, inner)) = obj.iter().next() else {
        return 0;
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => inner
            .as_str()
            .map_or(0, |n| n.trim_start_matches('-').len().div_ceil(2) + 1),
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "BOOL" | "NULL" => 1,
        "M" => {
            3 + inner
                .as_object()
                .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
        }
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |l| l.iter().map(|v| 1 + value_size(v)).sum())
        }
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |l| {
            l.iter().map(|v| v.as_str().map_or(0, str::len)).sum()
        }),
        _ => 0,
    }
}

fn item_size(item: &Value) -> usize {
    item.as_object()
        .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
}

fn written_items(op: &str, body: &[u8]) -> Vec<usize> {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return vec![];
    };
    match op {
        "dynamodb PutItem" => vec![item_size(&json["Item"])],
        "dynamodb TransactWriteItems" => json["TransactItems"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|t| t.get("Put").is_some())
                    .map(|t| item_size(&t["Put"]["Item"]))
                    .collect()
            })
            .unwrap_or_default(),
        _ => vec![],
    }
}

async fn forward(State(p): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let op = operation(&parts.headers, &body);
    {
        let mut tally = sandbox::kit::lock(&p.tally);
        *tally.calls.entry(op.clone()).or_default() += 1;
        let sizes = written_items(&op, &body);
        tally.items_written.extend(sizes);
        if op == "dynamodb TransactWriteItems" {
            tally.transaction_items += serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|j| j["TransactItems"].as_array().map(|a| a.len() as u32))
                .unwrap_or(0);
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut out = p
        .client
        .request(parts.method.clone(), format!("{}{path}", p.upstream));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            out = out.header(name, value);
        }
    }
    match out.body(Bytes::from(body.to_vec())).send().await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_sizes_follow_dynamodbs_rules() {
        let item =
            serde_json::json!({"pk": {"S": "PAY#1"}, "n": {"N": "12345"}, "ok": {"BOOL": true}});
        // pk 2 + 5, n 1 + 4, ok 2 + 1
        assert_eq!(item_size(&item), 15);
        let op = operation(&HeaderMap::new(), b"Action=SendMessage&QueueUrl=x");
        assert_eq!(op, "sqs SendMessage");
    }
}
