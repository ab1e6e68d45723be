//! `ops`: what waits for a person, and how to settle it, against any
//! deployment the environment points at (`AWS_*` credentials and region,
//! `PAYGATE_TABLE`, `PAYGATE_TOPUP_QUEUE_URL`; locally `eval "$(make -s env)"`).
//!
//! - `ops pending`: refunds whose outcome is not recorded and casino
//!   top-ups whose outcome is unknown, one JSON line each.
//! - `ops refund <payment id> check`: asks the provider about the payment's
//!   pending refunds now and settles each one its answer proves (recorded,
//!   or released when the provider shows it never made it).
//! - `ops topup <payment id> sent <casino transaction id> --by <name>`: the
//!   player's casino history shows the transfer: the top-up is done and the
//!   wallet debited, once.
//! - `ops topup <payment id> not-sent --by <name>`: the casino has no such
//!   transfer: the top-up is queued again and sent with the same nonce.
//!
//! Every change is a conditional write on the item's current state: two
//! people settling one item at once, one wins and the other is told.

use std::process::ExitCode;

use serde_json::json;
use shared::ids::PaymentId;
use shared::queue::TopUpQueue;
use shared::secrets::SecretsCache;
use shared::services::{Services, Settings};
use shared::store::{RefundStatus, Store};
use time::OffsetDateTime;

const USAGE: &str = "usage:
  ops pending
  ops refund <payment id> check
  ops topup <payment id> sent <casino transaction id> --by <name>
  ops topup <payment id> not-sent --by <name>";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ops: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn services() -> Result<Services, String> {
    let sdk = shared::config::aws().await;
    let store = Store::from_env(aws_sdk_dynamodb::Client::new(&sdk)).map_err(|e| e.to_string())?;
    let queue = TopUpQueue::from_env(aws_sdk_sqs::Client::new(&sdk)).map_err(|e| e.to_string())?;
    let secrets = SecretsCache::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        SecretsCache::DEFAULT_TTL,
    );
    let settings = Settings {
        public_base_url: std::env::var("PAYGATE_PUBLIC_BASE_URL").unwrap_or_default(),
        secret_prefix: std::env::var("PAYGATE_SECRET_PREFIX").unwrap_or_else(|_| "paygate/".into()),
        payment_ttl: time::Duration::minutes(30),
        http: shared::providers::http::HttpPolicy::background(),
    };
    Ok(Services::new(store, queue, secrets, settings))
}

fn payment_id(text: &str) -> Result<PaymentId, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a payment id (pay_...)"))
}

fn by(options: &[&str]) -> Result<String, String> {
    match options {
        ["--by", name] if !name.trim().is_empty() => Ok(format!("operator {name}")),
        _ => Err(format!("say who decides with --by <name>\n{USAGE}")),
    }
}

async fn run(args: &[&str]) -> Result<(), String> {
    let store_error = |e: shared::store::StoreError| e.to_string();
    match args {
        ["pending"] => {
            let services = services().await?;
            let now = OffsetDateTime::now_utc();
            let mut start = None;
            loop {
                let (ids, next) = services
                    .store
                    .open_refunds(now, 100, start)
                    .await
                    .map_err(store_error)?;
                for (payment, refund) in ids {
                    if let Some(r) = services
                        .store
                        .refund(payment, refund)
                        .await
                        .map_err(store_error)?
                    {
                        println!(
                            "{}",
                            json!({"kind": "refund", "payment_id": payment.to_string(),
                                   "refund_id": format!("ref_{refund}"), "amount": r.amount.minor(),
                                   "currency": r.amount.currency().code(), "attempts": r.attempts,
                                   "last_error": r.last_error})
                        );
                    }
                }
                match next {
                    Some(key) => start = Some(key),
                    None => break,
                }
            }
            for id in services
                .store
                .unknown_topups(1_000)
                .await
                .map_err(store_error)?
            {
                if let Some(t) = services.store.topup(id).await.map_err(store_error)? {
                    println!(
                        "{}",
                        json!({"kind": "topup", "payment_id": id.to_string(), "status": t.status.as_str(),
                               "username": t.username.to_string(), "amount": t.amount.minor(),
                               "nonce": t.nonce, "attempts": t.attempts, "last_error": t.last_error})
                    );
                }
            }
            Ok(())
        }
        ["refund", id, "check"] => {
            let services = services().await?;
            let id = payment_id(id)?;
            let mut payment = services
                .store
                .payment(id)
                .await
                .map_err(store_error)?
                .ok_or("no such payment")?;
            for refund in services.store.refunds_of(id).await.map_err(store_error)? {
                if refund.status != RefundStatus::Pending {
                    continue;
                }
                let refund_id = refund.refund_id;
                let outcome = shared::refunds::resume(
                    &services,
                    payment.clone(),
                    refund,
                    false,
                    OffsetDateTime::now_utc(),
                )
                .await
                .map_err(|e| format!("{} {}", e.code, e.message))?;
                let word = match outcome {
                    shared::refunds::Resumed::Done(_) => "refunded: recorded",
                    shared::refunds::Resumed::Refused(_) => "not refunded: released",
                    shared::refunds::Resumed::Pending(_) => {
                        "unknown: the provider's answer cannot tell; ask the provider's support"
                    }
                };
                println!("ref_{refund_id}: {word}");
                payment = services
                    .store
                    .payment(id)
                    .await
                    .map_err(store_error)?
                    .ok_or("no such payment")?;
            }
            Ok(())
        }
        ["topup", id, "sent", txn, options @ ..] => {
            let who = by(options)?;
            mark(payment_id(id)?, Some(txn), &who).await
        }
        ["topup", id, "not-sent", options @ ..] => {
            let who = by(options)?;
            mark(payment_id(id)?, None, &who).await
        }
        _ => Err(USAGE.to_string()),
    }
}

async fn mark(id: PaymentId, sent: Option<&str>, who: &str) -> Result<(), String> {
    let services = services().await?;
    let by = (who, "settled with the ops command line");
    match shared::flow::mark_topup(&services, id, sent, by, OffsetDateTime::now_utc())
        .await
        .map_err(|e| e.to_string())?
    {
        Ok(t) => {
            println!(
                "{}",
                json!({"payment_id": id.to_string(), "status": t.status.as_str(),
                       "casino_transaction_id": t.casino_transaction_id, "settled_by": t.settled_by})
            );
            Ok(())
        }
        Err(why) => Err(why),
    }
}
