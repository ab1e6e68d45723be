//! `devstack wait`: wait until DynamoDB Local and moto answer.
//! `devstack bootstrap`: create template.yaml's table and queues and the
//! sample secrets, and print the environment that reaches them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use devstack::{bootstrap, LocalStack, Template};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("wait") => wait(Duration::from_secs(60)).await,
        Some("bootstrap") => run_bootstrap().await,
        _ => Err("usage: devstack wait | bootstrap".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devstack: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait(limit: Duration) -> Result<(), String> {
    let stack = LocalStack::connect().await;
    let start = Instant::now();
    loop {
        let dynamo = stack.dynamodb.list_tables().limit(1).send().await;
        let sqs = stack.sqs.list_queues().send().await;
        let secrets = stack.secrets.list_secrets().max_results(1).send().await;
        if dynamo.is_ok() && sqs.is_ok() && secrets.is_ok() {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(format!(
                "local stack not ready after {limit:?} (dynamodb ok: {}, sqs ok: {}, secrets manager ok: {})",
                dynamo.is_ok(),
                sqs.is_ok(),
                secrets.is_ok()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn run_bootstrap() -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let template = Template::load(&root.join("template.yaml")).map_err(|e| e.to_string())?;
    let stack = LocalStack::connect().await;
    let done = bootstrap(&stack, &template, &root.join("infra/local/secrets"))
        .await
        .map_err(|e| e.to_string())?;
    println!("PAYGATE_TABLE={}", done.table);
    println!("PAYGATE_TOPUP_QUEUE_URL={}", done.topup_queue_url);
    println!("PAYGATE_TOPUP_DLQ_URL={}", done.topup_dlq_url);
    for s in &done.secrets {
        println!("# secret {s}");
    }
    Ok(())
}
