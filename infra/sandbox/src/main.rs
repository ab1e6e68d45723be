//! The sandbox's command line.
//!
//! - `cargo run -p sandbox` (or `... -- serve`): serve every provider's
//!   sandbox on `PAYGATE_SANDBOX_ADDR` (default 127.0.0.1:8900). Paygram and
//!   the Payment Engine keep one callback URL per merchant:
//!   `PAYGATE_SANDBOX_PAYGRAM_CALLBACK_URL` and
//!   `PAYGATE_SANDBOX_PAYMENT_ENGINE_WEBHOOK_URL` set them.
//! - `... -- trigger <provider> <paid|failed|expired|duplicate|out-of-order> <payment id>`:
//!   the provider plays that event for one of paygate's payments.
//! - `... -- faults <path prefix> <fail|delay|hang|apply_fail|apply_hang> [--count N] [--status S] [--delay-ms MS]`:
//!   the next calls to that provider path fail, wait or hang;
//!   `... -- faults clear` forgets every fault.
//! - `... -- calls <path prefix>`: how many calls reached that path.
//! - `... -- listen [<event types>]`: registers a loopback endpoint with a
//!   running paygate (`PAYGATE_API_URL`, default `http://127.0.0.1:3000`,
//!   with `PAYGATE_API_KEY`, default the local key) and prints each event as
//!   it arrives, its Standard Webhooks signature checked; Ctrl-C removes
//!   the endpoint.
//!
//! The client commands talk to a running sandbox at `PAYGATE_SANDBOX_URL`
//! (default `http://127.0.0.1:8900`).

use std::net::SocketAddr;
use std::process::ExitCode;

use sandbox::trigger::{Event, PROVIDERS};
use serde_json::{json, Value};

const USAGE: &str = "usage:
  sandbox [serve]
  sandbox trigger <provider> <paid|failed|expired|duplicate|out-of-order> <payment id>
  sandbox faults <path prefix> <fail|delay|hang|apply_fail|apply_hang> [--count N] [--status S] [--delay-ms MS]
  sandbox faults clear
  sandbox calls <path prefix>
  sandbox listen [<event types, comma-separated: payment.*,refund.succeeded,...>]
providers: directpay, paygram, toyyibpay, qpay, epayment, payment_engine
a running sandbox is found at PAYGATE_SANDBOX_URL (default http://127.0.0.1:8900)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        [] | ["serve"] => return serve().await,
        ["trigger", provider, event, payment_id] => trigger(provider, event, payment_id).await,
        ["faults", "clear"] => client("DELETE", "/_sandbox/faults", None).await,
        ["faults", path, mode, options @ ..] => faults(path, mode, options).await,
        ["calls", path] => {
            let query = format!("/_sandbox/calls?path={}", encode(path));
            client("GET", &query, None).await
        }
        ["listen"] => return listen("*").await,
        ["listen", events] => return listen(events).await,
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(format!("unknown command\n{USAGE}")),
    };
    match result {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("sandbox: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn trigger(provider: &str, event: &str, payment_id: &str) -> Result<Value, String> {
    if !PROVIDERS.contains(&provider) && provider != "payment-engine" {
        return Err(format!(
            "unknown provider {provider:?}; one of {}",
            PROVIDERS.join(", ")
        ));
    }
    if Event::parse(event).is_none() {
        let events: Vec<&str> = Event::ALL.iter().map(|(w, _)| *w).collect();
        return Err(format!(
            "unknown event {event:?}; one of {}",
            events.join(", ")
        ));
    }
    let body = json!({"provider": provider, "event": event, "payment_id": payment_id});
    client("POST", "/_sandbox/trigger", Some(body)).await
}

async fn faults(path: &str, mode: &str, options: &[&str]) -> Result<Value, String> {
    if !matches!(
        mode,
        "fail" | "delay" | "hang" | "apply_fail" | "apply_hang"
    ) {
        return Err(format!(
            "unknown fault {mode:?}; one of fail, delay, hang, apply_fail, apply_hang"
        ));
    }
    let mut fault = json!({"path": path, "mode": mode});
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let key = match *option {
            "--count" => "count",
            "--status" => "status",
            "--delay-ms" => "delay_ms",
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        };
        let value: u64 = rest
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{option} needs a whole number"))?;
        fault[key] = value.into();
    }
    client("POST", "/_sandbox/faults", Some(fault.clone())).await?;
    Ok(json!({"added": fault}))
}

/// One call to a running sandbox's control API.
async fn client(method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let base =
        std::env::var("PAYGATE_SANDBOX_URL").unwrap_or_else(|_| "http://127.0.0.1:8900".into());
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = reqwest::Client::new().request(method, &url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| {
        format!("no sandbox at {base} ({e}); start it with `make dev` or `cargo run -p sandbox`")
    })?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    let answer = if text.is_empty() {
        json!({"status": status.as_u16()})
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if status.is_success() {
        Ok(answer)
    } else {
        Err(format!("{status}: {answer}"))
    }
}

/// `listen`: an endpoint on loopback for `events`, printing what arrives.
async fn listen(events: &str) -> ExitCode {
    match listen_inner(events).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sandbox listen: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn listen_inner(events: &str) -> Result<(), String> {
    let api = std::env::var("PAYGATE_API_URL").unwrap_or_else(|_| "http://127.0.0.1:3000".into());
    let key =
        std::env::var("PAYGATE_API_KEY").unwrap_or_else(|_| "pk_local_paygate_dev_key".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/events",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let http = reqwest::Client::new();
    let types: Vec<&str> = events.split(',').map(str::trim).collect();
    let created: Value = http
        .post(format!("{api}/v1/webhook-endpoints"))
        .bearer_auth(&key)
        .header("idempotency-key", ulid::Ulid::new().to_string())
        .json(&json!({"url": url, "events": types, "description": "sandbox listen"}))
        .send()
        .await
        .map_err(|e| format!("no paygate at {api} ({e}); start it with `make dev`"))?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let (Some(id), Some(secret)) = (created["id"].as_str(), created["secret"].as_str()) else {
        return Err(format!("paygate refused the endpoint: {created}"));
    };
    println!("listening on {url} as endpoint {id} for {events}; Ctrl-C stops (and removes it)");
    let secret = secret.to_string();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let secret = secret.clone();
            async move {
                print_event(&secret, &headers, &body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let served = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    served.await.map_err(|e| e.to_string())?;
    let _ = http
        .delete(format!("{api}/v1/webhook-endpoints/{id}"))
        .bearer_auth(&key)
        .send()
        .await;
    println!("endpoint {id} removed");
    Ok(())
}

/// One line per event: when, its type and id, whether the signature
/// verifies, and what it is about.
fn print_event(secret: &str, headers: &axum::http::HeaderMap, body: &str) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let verified = sandbox::standard_webhooks::verifies(
        secret,
        header("webhook-id"),
        header("webhook-timestamp"),
        body,
        header("webhook-signature"),
    );
    let event: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    println!(
        "{} {} {} {} {} {}",
        event["created_at"].as_str().unwrap_or("-"),
        event["type"].as_str().unwrap_or("?"),
        header("webhook-id"),
        if verified {
            "signature ok"
        } else {
            "SIGNATURE DOES NOT VERIFY"
        },
        event["data"]["id"]
            .as_str()
            .or(event["data"]["payment_id"].as_str())
            .unwrap_or("-"),
        event["data"]["status"].as_str().unwrap_or("-"),
    );
}

/// Percent-encodes a path prefix for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn serve() -> ExitCode {
    let addr = std::env::var("PAYGATE_SANDBOX_ADDR").unwrap_or_else(|_| "127.0.0.1:8900".into());
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sandbox: PAYGATE_SANDBOX_ADDR {addr:?}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match sandbox::start(addr).await {
        Ok(running) => {
            if let Ok(url) = std::env::var("PAYGATE_SANDBOX_PAYGRAM_CALLBACK_URL") {
                running.state.paygram.set_callback_url(url);
            }
            if let Ok(url) = std::env::var("PAYGATE_SANDBOX_PAYMENT_ENGINE_WEBHOOK_URL") {
                running.state.payment_engine.set_webhook_url(url);
            }
            println!("sandbox listening on {}", running.url());
            for (name, path) in [
                ("DirectPay", "/directpay/api"),
                ("Paygram", "/paygram/PayGramUsers/"),
                ("Paygram legacy", "/paygram"),
                ("ToyyibPay", "/toyyibpay"),
                ("QPay", "/qpay"),
                ("epayment.kz", "/epayment"),
                ("Payment Engine", "/payment-engine"),
                ("Casino", "/casino"),
                ("Controls", "/_sandbox/..."),
            ] {
                println!("  {name:<15} {}{path}", running.url());
            }
            std::future::pending::<()>().await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sandbox: cannot listen on {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}
