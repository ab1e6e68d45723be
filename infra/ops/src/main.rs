//! `ops`: the operators' command line over paygate's HTTP API, against any
//! deployment: `PAYGATE_URL` (the API's base URL; `make dev`'s
//! `http://127.0.0.1:3000` when unset) and `PAYGATE_OPERATOR_KEY` (an
//! operator's API key; never printed).
//!
//! - `ops queue [--kind K] [--provider P]`: everything that waits for a
//!   person, one JSON line per item, every page.
//! - `ops balances`: what each provider that reports a balance says now.
//! - `ops accept <payment> --reason R [--amount MINOR]`,
//!   `ops reject <payment> --reason R`: a payment in review.
//! - `ops refund <payment> <refund> check|refunded|not-refunded --reason R`.
//! - `ops topup <payment> sent <casino transaction id> --reason R`,
//!   `ops topup <payment> not-sent --reason R`.
//! - `ops acknowledge <payment> <difference> --reason R`.
//!
//! Each action sends an Idempotency-Key derived from the action itself
//! (route, reason, amount): running the same command again replays the
//! first answer instead of acting twice (`--key K` chooses another). The
//! answer's JSON is printed; an error answer exits non-zero.

use std::process::ExitCode;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const USAGE: &str = "usage (PAYGATE_URL, PAYGATE_OPERATOR_KEY):
  ops queue [--kind K] [--provider P]
  ops balances
  ops accept <payment id> --reason R [--amount MINOR]
  ops reject <payment id> --reason R
  ops refund <payment id> <refund id> check|refunded|not-refunded --reason R
  ops topup <payment id> sent <casino transaction id> --reason R
  ops topup <payment id> not-sent --reason R
  ops acknowledge <payment id> <difference id> --reason R
  (every action also takes --key K, its Idempotency-Key)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ops: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A command as parsed: what to call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Queue {
        query: Vec<(String, String)>,
    },
    Balances,
    Action {
        path: String,
        body: Value,
        key: Option<String>,
    },
}

/// `--name value` options after the positional words.
fn options(rest: &[String]) -> Result<Vec<(&str, &str)>, String> {
    let mut out = Vec::new();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected {flag:?}\n{USAGE}"))?;
        let value = it
            .next()
            .ok_or_else(|| format!("--{name} needs a value\n{USAGE}"))?;
        out.push((name, value.as_str()));
    }
    Ok(out)
}

fn action(path: String, rest: &[String], allowed: &[&str]) -> Result<Command, String> {
    let mut body = serde_json::Map::new();
    let mut key = None;
    for (name, value) in options(rest)? {
        match name {
            "reason" => {
                body.insert("reason".into(), json!(value));
            }
            "key" => key = Some(value.to_string()),
            "amount" if allowed.contains(&"amount") => {
                let minor: i64 = value
                    .parse()
                    .map_err(|_| "--amount is a whole number of minor units".to_string())?;
                body.insert("amount".into(), json!(minor));
            }
            _ => return Err(format!("--{name} does not belong here\n{USAGE}")),
        }
    }
    if !body.contains_key("reason") {
        return Err(format!("say why with --reason\n{USAGE}"));
    }
    Ok(Command::Action {
        path,
        body: Value::Object(body),
        key,
    })
}

fn parse(args: &[String]) -> Result<Command, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["queue", ..] => {
            let mut query = Vec::new();
            for (name, value) in options(&args[1..])? {
                match name {
                    "kind" | "provider" => query.push((name.to_string(), value.to_string())),
                    _ => return Err(format!("--{name} does not belong here\n{USAGE}")),
                }
            }
            Ok(Command::Queue { query })
        }
        ["balances"] => Ok(Command::Balances),
        ["accept", payment, ..] => action(
            format!("/v1/ops/payments/{payment}/accept"),
            &args[2..],
            &["amount"],
        ),
        ["reject", payment, ..] => action(
            format!("/v1/ops/payments/{payment}/reject"),
            &args[2..],
            &[],
        ),
        ["refund", payment, refund, what, ..] => {
            let verb = match *what {
                "check" => "check",
                "refunded" => "mark-refunded",
                "not-refunded" => "mark-not-refunded",
                _ => return Err(USAGE.to_string()),
            };
            action(
                format!("/v1/ops/refunds/{payment}/{refund}/{verb}"),
                &args[4..],
                &[],
            )
        }
        ["topup", payment, "sent", txn, ..] if !txn.starts_with("--") => {
            let mut command = action(
                format!("/v1/ops/topups/{payment}/mark-sent"),
                &args[4..],
                &[],
            )?;
            if let Command::Action { body, .. } = &mut command {
                body["casino_transaction_id"] = json!(txn);
            }
            Ok(command)
        }
        ["topup", payment, "not-sent", ..] => action(
            format!("/v1/ops/topups/{payment}/mark-not-sent"),
            &args[3..],
            &[],
        ),
        ["acknowledge", payment, difference, ..] => action(
            format!("/v1/ops/differences/{payment}/{difference}/acknowledge"),
            &args[3..],
            &[],
        ),
        _ => Err(USAGE.to_string()),
    }
}

/// The Idempotency-Key of an action: the same command, the same key.
fn derived_key(path: &str, body: &Value) -> String {
    let digest = Sha256::digest(format!("paygate ops\n{path}\n{body}"));
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("ops-{hex}")
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn from_env() -> Result<Api, String> {
        let base = std::env::var("PAYGATE_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:3000".into())
            .trim_end_matches('/')
            .to_string();
        let key = std::env::var("PAYGATE_OPERATOR_KEY")
            .map_err(|_| "set PAYGATE_OPERATOR_KEY to an operator's API key".to_string())?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Api { http, base, key })
    }

    /// Sends a request; the answer's JSON, or an error naming paygate's
    /// error code and message.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
        let reply = request
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| format!("paygate did not answer: {}", e.without_url()))?;
        let status = reply.status().as_u16();
        let text = reply.text().await.map_err(|e| e.to_string())?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            let error = &body["error"];
            return Err(format!(
                "HTTP {status} {}: {}",
                error["code"].as_str().unwrap_or("error"),
                error["message"].as_str().unwrap_or_default()
            ));
        }
        Ok((status, body))
    }
}

async fn run(args: &[String]) -> Result<(), String> {
    let command = parse(args)?;
    let api = Api::from_env()?;
    match command {
        Command::Queue { query } => {
            let mut cursor: Option<String> = None;
            loop {
                let mut page = query.clone();
                page.push(("limit".into(), "200".into()));
                if let Some(c) = &cursor {
                    page.push(("cursor".into(), c.clone()));
                }
                let url = format!("{}/v1/ops/queue", api.base);
                let (_, body) = api.send(api.http.get(&url).query(&page)).await?;
                for item in body["data"].as_array().into_iter().flatten() {
                    println!("{item}");
                }
                match body["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_string()),
                    None => return Ok(()),
                }
            }
        }
        Command::Balances => {
            let url = format!("{}/v1/ops/balances", api.base);
            let (_, body) = api.send(api.http.get(&url)).await?;
            println!("{body:#}");
            Ok(())
        }
        Command::Action { path, body, key } => {
            let key = key.unwrap_or_else(|| derived_key(&path, &body));
            eprintln!("ops: POST {path} (Idempotency-Key {key})");
            let url = format!("{}{path}", api.base);
            let request = api
                .http
                .post(&url)
                .header("Idempotency-Key", &key)
                .json(&body);
            let (status, answer) = api.send(request).await?;
            if status == 202 {
                eprintln!(
                    "ops: accepted, the provider's answer is not known yet; run it again later"
                );
            }
            println!("{answer:#}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn commands_become_their_routes_and_bodies() {
        assert_eq!(
            parse(&words("accept pay_1 --reason paid --amount 9900")).unwrap(),
            Command::Action {
                path: "/v1/ops/payments/pay_1/accept".into(),
                body: json!({"reason": "paid", "amount": 9900}),
                key: None,
            }
        );
        assert_eq!(
            parse(&words("topup pay_1 sent C-9 --reason seen --key k1")).unwrap(),
            Command::Action {
                path: "/v1/ops/topups/pay_1/mark-sent".into(),
                body: json!({"reason": "seen", "casino_transaction_id": "C-9"}),
                key: Some("k1".into()),
            }
        );
        assert_eq!(
            parse(&words("refund pay_1 ref_2 not-refunded --reason none")).unwrap(),
            Command::Action {
                path: "/v1/ops/refunds/pay_1/ref_2/mark-not-refunded".into(),
                body: json!({"reason": "none"}),
                key: None,
            }
        );
        assert_eq!(
            parse(&words("queue --kind payment_review")).unwrap(),
            Command::Queue {
                query: vec![("kind".into(), "payment_review".into())]
            }
        );
    }

    #[test]
    fn a_command_without_a_reason_or_with_a_stray_option_is_refused() {
        assert!(parse(&words("reject pay_1")).is_err());
        assert!(parse(&words("reject pay_1 --amount 5 --reason x")).is_err());
        assert!(parse(&words("accept pay_1 --reason x --amount ten")).is_err());
        assert!(parse(&words("topup pay_1 sent --reason x")).is_err());
        assert!(parse(&words("queue --limit 3")).is_err());
        assert!(parse(&words("refund pay_1 ref_2 maybe --reason x")).is_err());
    }

    #[test]
    fn the_same_action_keeps_its_key_and_another_gets_another() {
        let a = derived_key("/v1/ops/payments/pay_1/accept", &json!({"reason": "x"}));
        assert_eq!(
            a,
            derived_key("/v1/ops/payments/pay_1/accept", &json!({"reason": "x"}))
        );
        assert_ne!(
            a,
            derived_key("/v1/ops/payments/pay_1/reject", &json!({"reason": "x"}))
        );
        assert!(a.len() <= 64 && a.starts_with("ops-"));
    }
}
