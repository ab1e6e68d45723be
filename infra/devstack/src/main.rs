//! `devstack wait`: wait until DynamoDB Local and moto answer.
//! `devstack bootstrap`: create template.yaml's table and queues and the
//! sample secrets, and print the environment that reaches them.
//! `devstack gateway`: serve template.yaml's HTTP routes through the Lambda
//! emulator (`cargo lambda watch`), and feed queues to their functions.
//! `devstack iam`: the IAM check (devstack::iam) in front of DynamoDB Local
//! and moto, on `PAYGATE_IAM_ADDR` (127.0.0.1:4580): each function's calls
//! held to its policy in template.yaml.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use std::sync::Arc;

use devstack::api_gateway::{self, ApiGateway};
use devstack::{bootstrap, LocalStack, Template};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("wait") => wait(Duration::from_secs(60)).await,
        Some("bootstrap") => run_bootstrap().await,
        Some("gateway") => run_gateway().await,
        Some("iam") => run_iam().await,
        _ => Err("usage: devstack wait | bootstrap | gateway | iam".to_string()),
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
    println!("PAYGATE_EVENTS_QUEUE_URL={}", done.events_queue_url);
    for s in &done.secrets {
        println!("# secret {s}");
    }
    Ok(())
}

async fn run_iam() -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("template.yaml")).map_err(|e| e.to_string())?;
    let policies = devstack::iam::Policies::from_template(&text, &devstack::iam::LocalNames::dev())
        .map_err(|e| e.to_string())?;
    let addr = std::env::var("PAYGATE_IAM_ADDR").unwrap_or_else(|_| "127.0.0.1:4580".into());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let (dynamodb, moto) = (LocalStack::dynamodb_url(), LocalStack::sqs_url());
    println!(
        "paygate IAM check on http://{addr}, in front of {dynamodb} and {moto}, for {} functions",
        policies.functions().count()
    );
    let _guard = devstack::iam::Guard::on(listener, policies, &dynamodb, &moto, None)?;
    // Refusals are printed as they happen; this serves until stopped.
    std::future::pending::<()>().await;
    Ok(())
}

async fn run_gateway() -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let template = Template::load(&root.join("template.yaml")).map_err(|e| e.to_string())?;
    let lambda =
        std::env::var("PAYGATE_LAMBDA_URL").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    let addr = std::env::var("PAYGATE_GATEWAY_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let gateway = Arc::new(ApiGateway::new(&template, &lambda));
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!("paygate API on http://{addr} (functions through {lambda})");
    for line in gateway.describe() {
        println!("  {line}");
    }
    let stack = LocalStack::connect().await;
    let local_names = [
        ("TopUpQueue", devstack::TOPUP_QUEUE),
        ("EventsQueue", devstack::EVENTS_QUEUE),
    ];
    for function in template.functions.iter().filter(|f| !f.queues.is_empty()) {
        for queue in &function.queues {
            let Some((_, name)) = local_names.iter().find(|(id, _)| id == queue) else {
                return Err(format!("no local queue for {queue}"));
            };
            let url = stack
                .sqs
                .get_queue_url()
                .queue_name(*name)
                .send()
                .await
                .map_err(|e| format!("queue {name}: {e}"))?
                .queue_url
                .unwrap_or_default();
            println!("  SQS    {name:<34} -> {}", function.binary);
            let (g, sqs, f) = (gateway.clone(), stack.sqs.clone(), function.clone());
            tokio::spawn(async move { g.poll(sqs, url, f).await });
        }
    }
    for function in template.functions.iter() {
        for source in &function.streams {
            if source.table != "PaymentsTable" {
                return Err(format!("no local table for {}", source.table));
            }
            let reader = devstack::streams::StreamReader::open(
                &LocalStack::dynamodb_url(),
                devstack::TABLE,
                false,
            )
            .await
            .map_err(|e| format!("the table's stream: {e}"))?;
            println!("  STREAM {:<34} -> {}", devstack::TABLE, function.binary);
            let (g, s, f) = (gateway.clone(), source.clone(), function.clone());
            tokio::spawn(async move { g.poll_stream(reader, s, f).await });
        }
    }
    // Schedules run on a compressed clock locally: every minute by default.
    let every = std::env::var("PAYGATE_SCHEDULE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(60));
    for function in template
        .functions
        .iter()
        .filter(|f| !f.schedules.is_empty())
    {
        println!(
            "  EVERY  {:<34} -> {}",
            format!("{}s ({})", every.as_secs(), function.schedules.join(", ")),
            function.binary
        );
        let (g, f) = (gateway.clone(), function.clone());
        tokio::spawn(async move { g.schedule(f, every).await });
    }
    api_gateway::serve(gateway, listener)
        .await
        .map_err(|e| e.to_string())
}
