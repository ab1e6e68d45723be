//! `make bench`: what a payment costs, in milliseconds, calls and dollars.
//!
//! Run under the local stack (`infra/bench/bench.sh` starts it), with
//! release builds of the functions in `target/release`. Each function
//! measured starts under the Runtime API emulator (`runtime`) the way
//! Lambda starts it, its AWS calls go through a counting proxy (`proxy`),
//! the provider sandbox runs in-process on its usual address. The events
//! are real flows: payments created, paid at the sandbox, their callbacks
//! completing them, the duplicates, the casino top-ups, the reads.
//!
//! Prints the tables, writes the raw results to `.local/bench/` and the
//! tables into docs/performance.md between its bench markers.

mod common;
mod cost;
mod parts;
mod proxy;
mod runtime;
mod storm;
mod transactions;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use common::{ms, percentile, root, say, sizing};
use proxy::{Counting, Tally};
use runtime::{Instance, Outcome};
use sandbox::kit::lock;

const SANDBOX: &str = "127.0.0.1:8900";

/// One function's timings.
#[derive(Debug, Serialize)]
struct FunctionResult {
    function: String,
    memory_mb: u32,
    init_ms: f64,
    first_invoke_ms: f64,
    warm_p50_ms: f64,
    warm_p99_ms: f64,
    /// Of the p50 invocation's time, how long it waited on DynamoDB (calls
    /// side by side counted once); the rest is the provider, the
    /// function's own work and the runtime.
    warm_p50_dynamodb_ms: f64,
    warm_invocations: usize,
    peak_rss_mib: f64,
}

/// One flow's AWS calls.
#[derive(Debug, Serialize)]
struct FlowResult {
    flow: String,
    calls: BTreeMap<String, u32>,
    items_written: Vec<usize>,
    transaction_items: u32,
    read_units: f64,
    write_units: f64,
    index_write_units: f64,
    write_parts: parts::Parts,
}

#[derive(Debug, Serialize)]
struct Results {
    machine: String,
    date: String,
    rustc: String,
    functions: Vec<FunctionResult>,
    flows: Vec<FlowResult>,
    directpay_logins: u32,
    payments: usize,
    directpay_logins_per_1000_payments: f64,
    cost: cost::Estimate,
    node_twin_cost: cost::Estimate,
    node_twin_memory_mb: u32,
    storm: storm::StormResult,
}

fn sample(name: &str) -> Result<Value, String> {
    let path = root().join(format!("events/{name}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// An API Gateway answer's status and JSON body.
fn answer(outcome: &Outcome) -> Result<(u16, Value), String> {
    match outcome {
        Outcome::Response(v) => {
            let status = v["statusCode"].as_u64().unwrap_or(0) as u16;
            let body = v["body"]
                .as_str()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null);
            Ok((status, body))
        }
        Outcome::Error(e) => Err(format!("invocation error: {e}")),
    }
}

/// A check that an invocation answered HTTP `want`.
fn answered(want: u16) -> impl Fn(&Outcome) -> Result<(), String> {
    move |o: &Outcome| match answer(o) {
        Ok((got, _)) if got == want => Ok(()),
        Ok((got, body)) => Err(format!("answered {got}: {body}")),
        Err(e) => Err(e),
    }
}

/// A merchant's endpoint on loopback that answers every event 200: its
/// URL.
async fn receiver() -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/events",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let app = axum::Router::new().route("/events", axum::routing::post(|| async { "" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Registers `url` as the local merchant's endpoint for every event.
async fn register_endpoint(url: &str) -> Result<(), String> {
    let stack = devstack::LocalStack::connect().await;
    let table = std::env::var("PAYGATE_TABLE").map_err(|e| e.to_string())?;
    let store = shared::store::Store::new(stack.dynamodb.clone(), table);
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let endpoint = shared::store::Endpoint {
        id: shared::ids::EndpointId::generate(),
        merchant: "m_local".parse().map_err(|e| format!("{e}"))?,
        url: url.to_string(),
        events: vec![],
        description: Some("make bench".into()),
        status: shared::store::EndpointStatus::Enabled,
        disabled_reason: None,
        created_ms: now,
        updated_ms: now,
        generation: 1,
        previous_generation: None,
        previous_until_ms: None,
    };
    store
        .create_endpoint(&endpoint)
        .await
        .map_err(|e| e.to_string())?
        .then_some(())
        .ok_or_else(|| "the local merchant has 16 endpoints already".to_string())
}

/// An event that is a pause of that many milliseconds (`Bench::measure`).
const WAIT: &str = "bench_wait_ms";

/// The payer's side of `payments` (still pending): each page load, then a
/// status poll that asks the provider and one right after that does not
/// (a poll asks at most every 10 s). The first payment's are the cold
/// process's flows, the `n`th's the warm ones; the `n`th is asked once
/// more after the poll interval (a question whose answer is not new).
fn page_events(payments: &[Value], n: usize) -> Result<Vec<(Option<&'static str>, Value)>, String> {
    let mut events = Vec::new();
    for (i, payment) in payments.iter().enumerate() {
        let url = payment["checkout"]["page_url"].as_str().unwrap_or_default();
        let token = url.rsplit('/').next().unwrap_or_default();
        let mut page = sample("api-pay-page")?;
        page["pathParameters"]["token"] = json!(token);
        page["rawPath"] = json!(format!("/pay/{token}"));
        let mut poll = page.clone();
        poll["rawPath"] = json!(format!("/pay/{token}/status"));
        poll["routeKey"] = json!("GET /pay/{token}/status");
        poll["requestContext"]["routeKey"] = json!("GET /pay/{token}/status");
        poll["requestContext"]["http"]["path"] = json!(format!("/pay/{token}/status"));
        poll["headers"]["accept"] = json!("*/*");
        let (load, asks, again) = match i {
            0 => (Some("payer page (cold)"), None, None),
            i if i == n => (
                Some("payer page"),
                Some("payer poll (asks the provider)"),
                Some("payer poll"),
            ),
            _ => (None, None, None),
        };
        events.push((load, page));
        events.push((asks, poll.clone()));
        events.push((again, poll.clone()));
        if i == n {
            events.push((None, json!({ WAIT: 10_500 })));
            events.push((Some("payer poll (asks the provider again)"), poll));
        }
    }
    Ok(events)
}

/// The JSON bodies of API answers.
fn bodies(outcomes: &[Outcome]) -> Result<Vec<Value>, String> {
    outcomes
        .iter()
        .map(|o| answer(o).map(|(_, body)| body))
        .collect()
}

struct Bench {
    template: serde_yaml::Value,
    env: Vec<(String, String)>,
    /// The IAM check, counting every call it lets through.
    aws: Counting,
    http: reqwest::Client,
    sandbox: sandbox::Running,
    functions: Vec<FunctionResult>,
    flows: Vec<FlowResult>,
    warm: usize,
    /// DirectPay logins by paygate's functions (before the twin's).
    logins: u32,
    storm: storm::StormResult,
    /// Payments per provider in the storm, and payments at once.
    storm_size: (usize, usize),
    /// Processes per function behind the gateway.
    instances: usize,
}

impl Bench {
    async fn spawn(&self, binary: &str) -> Result<(Instance, u32), String> {
        let (memory, timeout) = sizing(&self.template, binary);
        let instance = match binary.strip_prefix("node-twin") {
            // The Node twin: two functions of one script, at the memory
            // the Rust functions have, under the same emulator.
            Some(_) => {
                let script = root().join(".local/bench-node/index.mjs");
                let mut env = self.env.clone();
                env.extend([
                    (
                        "TWIN_DIRECTPAY_URL".to_string(),
                        format!("{}/directpay/api", self.sandbox.url()),
                    ),
                    (
                        "TWIN_DIRECTPAY_USERNAME".to_string(),
                        sandbox::directpay::USERNAME.to_string(),
                    ),
                    (
                        "TWIN_DIRECTPAY_PASSWORD".to_string(),
                        sandbox::directpay::PASSWORD.to_string(),
                    ),
                ]);
                let (memory, timeout) = sizing(&self.template, "webhook-directpay");
                let instance = Instance::spawn(
                    binary,
                    Path::new("node"),
                    &[script.display().to_string()],
                    &env,
                    memory,
                    timeout,
                )
                .await?;
                return Ok((instance, memory));
            }
            None => {
                let path = root().join("target/release").join(binary);
                Instance::spawn(binary, &path, &[], &self.env, memory, timeout).await?
            }
        };
        // Whatever init asked of AWS (secrets) is the cold start's.
        Ok((instance, memory))
    }

    fn take(&self) -> Tally {
        self.aws.take()
    }

    /// One invocation, with the AWS calls it made recorded as `flow`.
    async fn invoke(
        &mut self,
        instance: &Instance,
        flow: Option<&str>,
        event: &Value,
    ) -> Result<(Duration, Duration, Outcome), String> {
        let _ = self.take();
        let (took, outcome) = instance.invoke(event).await?;
        let answered = std::time::Instant::now();
        // Writes a function spawned beside its answer land first.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let tally = self.take();
        // The billing endpoint's own reads around transactions are not the
        // function's time (AWS bills without them).
        let took = took.saturating_sub(tally.paused_by(answered));
        let spans: Vec<_> = tally
            .dynamodb_spans
            .iter()
            .filter(|(_, end)| *end <= answered)
            .copied()
            .collect();
        let waited = common::overlapped(&spans);
        if let Some(flow) = flow {
            if !self.flows.iter().any(|f| f.flow == flow) {
                self.flows.push(FlowResult {
                    flow: flow.to_string(),
                    calls: tally.calls,
                    items_written: tally.items_written,
                    transaction_items: tally.transaction_items,
                    read_units: tally.read_units,
                    write_units: tally.write_units,
                    index_write_units: tally.index_write_units,
                    write_parts: tally.write_parts,
                });
            }
        }
        Ok((took, waited, outcome))
    }

    /// `warm`: each warm invocation's time and its wait on DynamoDB.
    fn record(
        &mut self,
        instance: &Instance,
        memory: u32,
        first: Duration,
        mut warm: Vec<(Duration, Duration)>,
    ) {
        warm.sort();
        let times: Vec<Duration> = warm.iter().map(|(took, _)| *took).collect();
        let p50 = percentile(&times, 50.0);
        let p50_waited = warm
            .iter()
            .find(|(took, _)| *took == p50)
            .map_or(Duration::ZERO, |(_, waited)| *waited);
        let warm = times;
        self.functions.push(FunctionResult {
            function: instance.name.clone(),
            memory_mb: memory,
            init_ms: ms(instance.init),
            first_invoke_ms: ms(first),
            warm_p50_ms: ms(p50),
            warm_p99_ms: ms(percentile(&warm, 99.0)),
            warm_p50_dynamodb_ms: ms(p50_waited),
            warm_invocations: warm.len(),
            peak_rss_mib: (instance.peak_rss_kib() as f64 / 1024.0 * 10.0).round() / 10.0,
        });
    }

    fn create_event(&self, n: usize) -> Result<Value, String> {
        let mut event = sample("api-create-payment")?;
        let reference = format!("ORD-BENCH-{}-{n}", ulid::Ulid::new());
        event["headers"]["idempotency-key"] = json!(format!("bench-{}", ulid::Ulid::new()));
        event["body"] = json!(json!({
            "provider": "directpay", "amount": 150000, "currency": "PHP",
            "reference": reference, "wallet_user_id": "u_bench",
            "casino": {"username": "player1"}
        })
        .to_string());
        Ok(event)
    }

    /// The payer pays DirectPay's transaction; no callback is sent.
    async fn pay_directpay(&self, reference: &str) -> Result<(), String> {
        let r = self
            .http
            .post(format!(
                "{}/_sandbox/directpay/transactions/{reference}/status",
                self.sandbox.url()
            ))
            .json(&json!({"status": "SUCCESS", "callback": "none"}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("sandbox: {}", r.status()));
        }
        Ok(())
    }

    /// Paid at DirectPay (no callback yet): the event of DirectPay's callback.
    async fn paid_callback(&self, payment: &Value) -> Result<Value, String> {
        let id = payment["id"].as_str().ok_or("no payment id")?;
        let reference = payment["provider_reference"]
            .as_str()
            .ok_or("no reference")?;
        self.pay_directpay(reference).await?;
        let mut event = sample("webhook-directpay")?;
        event["rawQueryString"] = json!(format!("payment_id={id}"));
        event["queryStringParameters"] = json!({"payment_id": id});
        event["body"] = json!(json!({
            "amount": "1500.00", "currency": "PHP", "refId": reference,
            "invoiceNo": format!("INV-{reference}"), "txnDesc": "Add Funds via GCASH QR",
            "txnDate": "1733565000000", "txnId": "990001", "status": "SUCCESS", "merchant_id": "SANDBOX"
        })
        .to_string());
        Ok(event)
    }

    /// Starts `binary` and invokes it with each event in turn (the first
    /// on the cold process); an event's flow, where it names one, records
    /// its AWS calls. Every answer must pass `ok`. An event `{WAIT: ms}`
    /// is a pause, not an invocation.
    async fn measure(
        &mut self,
        binary: &str,
        events: Vec<(Option<&str>, Value)>,
        ok: impl Fn(&Outcome) -> Result<(), String>,
    ) -> Result<Vec<Outcome>, String> {
        let (instance, memory) = self.spawn(binary).await?;
        let mut first = Duration::ZERO;
        let mut warm = Vec::new();
        let mut outcomes = Vec::new();
        for (i, (flow, event)) in events.iter().enumerate() {
            if let Some(ms) = event[WAIT].as_u64() {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                continue;
            }
            let (took, waited, outcome) = self.invoke(&instance, *flow, event).await?;
            ok(&outcome).map_err(|e| format!("{binary}: {e}"))?;
            if i == 0 {
                first = took;
            } else {
                warm.push((took, waited));
            }
            outcomes.push(outcome);
        }
        self.record(&instance, memory, first, warm);
        instance.stop().await;
        let logins = *lock(&self.sandbox.state.directpay.logins);
        say(&format!(
            "{binary}: done ({logins} DirectPay logins so far)"
        ));
        Ok(outcomes)
    }

    /// `n + 1` creates: the cold one and the warm ones, flows named
    /// `(cold, warm)`.
    fn create_events(
        &self,
        (cold, warm): (&'static str, &'static str),
    ) -> Result<Vec<(Option<&'static str>, Value)>, String> {
        let n = self.warm;
        (0..=n)
            .map(|i| {
                let flow = match i {
                    0 => Some(cold),
                    i if i == n => Some(warm),
                    _ => None,
                };
                Ok((flow, self.create_event(i)?))
            })
            .collect()
    }

    /// The callbacks of `payments`: the first completes its payment (on the
    /// cold process), `n` duplicates of it, then the others complete
    /// theirs. Flows named `(cold, duplicate, warm)`.
    async fn callback_events(
        &self,
        payments: &[Value],
        (cold, duplicate, warm): (&'static str, &'static str, &'static str),
    ) -> Result<Vec<(Option<&'static str>, Value)>, String> {
        let n = self.warm;
        let first = self.paid_callback(&payments[0]).await?;
        let mut events = vec![(Some(cold), first.clone())];
        for i in 0..n {
            events.push(((i == 0).then_some(duplicate), first.clone()));
        }
        for (i, payment) in payments.iter().enumerate().skip(1) {
            events.push(((i == n).then_some(warm), self.paid_callback(payment).await?));
        }
        Ok(events)
    }

    async fn run(&mut self) -> Result<(), String> {
        let n = self.warm;
        // The flow of the cold invocation, and of the last (a process in its
        // steady state).
        let label = |i: usize, cold: &'static str, warm: &'static str| match i {
            0 => Some(cold),
            i if i == n => Some(warm),
            _ => None,
        };

        // The merchant listens: each completed deposit's event is delivered
        // (worker-events, measured below) to a receiver that answers 200.
        let receiver = receiver().await?;
        register_endpoint(&receiver).await?;
        let mut stream = devstack::streams::StreamReader::open(
            &devstack::LocalStack::dynamodb_url(),
            &std::env::var("PAYGATE_TABLE").map_err(|e| e.to_string())?,
            false,
        )
        .await
        .map_err(|e| e.to_string())?;

        say(&format!("api-create-payment: 1 cold and {n} warm creates"));
        let payments = self
            .deposits(
                (
                    "api-create-payment",
                    "webhook-directpay",
                    Some("api-pay-page"),
                ),
                ["create (cold)", "create"],
                [
                    "completing callback (cold)",
                    "duplicate callback",
                    "completing callback",
                ],
            )
            .await?;

        say("worker-events: each completed payment's event, delivered");
        let filters = devstack::Template::load(&root().join("template.yaml"))
            .map_err(|e| e.to_string())?
            .functions
            .into_iter()
            .find(|f| f.binary == "worker-events")
            .and_then(|f| f.streams.into_iter().next())
            .map(|s| s.filters)
            .unwrap_or_default();
        let records: Vec<Value> = stream
            .read()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|r| devstack::streams::passes(&filters, r))
            .collect();
        let events = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    label(i, "event delivery (cold)", "event delivery"),
                    json!({"Records": [r]}),
                )
            })
            .collect();
        self.measure("worker-events", events, |o| match o {
            Outcome::Response(v) if v["batchItemFailures"] == json!([]) => Ok(()),
            Outcome::Response(v) => Err(format!("a record failed: {v}")),
            Outcome::Error(e) => Err(e.clone()),
        })
        .await?;

        say("worker-casino-topup: each completed payment's top-up");
        let mut events = Vec::new();
        for (i, payment) in payments.iter().enumerate() {
            let mut event = sample("worker-casino-topup")?;
            event["Records"][0]["body"] = json!(json!({"payment_id": payment["id"]}).to_string());
            event["Records"][0]["messageId"] = json!(ulid::Ulid::new().to_string());
            events.push((label(i, "casino top-up (cold)", "casino top-up"), event));
        }
        self.measure("worker-casino-topup", events, |o| match o {
            Outcome::Error(e) => Err(e.clone()),
            Outcome::Response(_) => Ok(()),
        })
        .await?;

        say("api-get-payment, api-health: reads");
        let mut gets = Vec::new();
        for (i, payment) in payments.iter().enumerate() {
            let id = payment["id"].as_str().unwrap_or_default();
            let mut event = sample("api-get-payment")?;
            event["pathParameters"]["id"] = json!(id);
            event["rawPath"] = json!(format!("/v1/payments/{id}"));
            gets.push((label(i, "get a payment (cold)", "get a payment"), event));
        }
        self.measure("api-get-payment", gets, answered(200)).await?;
        let health = sample("api-health")?;
        let events = (0..=n).map(|_| (None, health.clone())).collect();
        self.measure("api-health", events, answered(200)).await?;

        self.logins = *lock(&self.sandbox.state.directpay.logins);
        say("the Node 20 twin: the same creates and callbacks");
        self.deposits(
            ("node-twin-create", "node-twin-callback", None),
            ["twin create (cold)", "twin create"],
            [
                "twin completing callback (cold)",
                "twin duplicate callback",
                "twin completing callback",
            ],
        )
        .await?;

        let made = self.storm().await?;
        self.refunds(&made).await?;
        self.sweep().await?;
        Ok(())
    }

    /// DirectPay deposits through `create` and `callback`: creates (the
    /// cold one, then warm), then the callbacks (a cold completing one, its
    /// duplicates, warm completing ones), flows named by the labels. The
    /// payments made.
    async fn deposits(
        &mut self,
        (create, callback, page): (&str, &str, Option<&str>),
        [create_cold, create_warm]: [&'static str; 2],
        [cold, duplicate, warm]: [&'static str; 3],
    ) -> Result<Vec<Value>, String> {
        let n = self.warm;
        let events = self.create_events((create_cold, create_warm))?;
        let payments = bodies(&self.measure(create, events, answered(201)).await?)?;
        if let Some(page) = page {
            say(&format!(
                "{page}: each pending payment's page, a poll that asks the provider, one that does not"
            ));
            let events = page_events(&payments, n)?;
            self.measure(page, events, answered(200)).await?;
        }
        say(&format!(
            "{callback}: a cold completing callback, {n} duplicates, {n} warm completing"
        ));
        let events = self
            .callback_events(&payments, (cold, duplicate, warm))
            .await?;
        self.measure(callback, events, answered(200)).await?;
        Ok(payments)
    }

    /// Provider logins so far, by provider.
    fn logins(&self) -> BTreeMap<String, u32> {
        let s = &self.sandbox.state;
        let get = |m: &std::sync::Mutex<u32>| *lock(m);
        BTreeMap::from([
            ("directpay".to_string(), get(&s.directpay.logins)),
            ("qpay".to_string(), get(&s.qpay.logins)),
            ("payment_engine".to_string(), get(&s.payment_engine.logins)),
            ("epayment".to_string(), get(&s.epayment.webapi_tokens)),
        ])
    }

    /// Casino balances, by player.
    fn casino(&self) -> BTreeMap<String, i64> {
        lock(&self.sandbox.state.casino.players)
            .iter()
            .map(|(k, p)| (k.clone(), p.balance_centavos))
            .collect()
    }

    /// The whole system under load (`storm`), with the money invariants.
    async fn storm(&mut self) -> Result<Vec<storm::Made>, String> {
        let (per_provider, in_flight) = self.storm_size;
        say(&format!(
            "storm: {} payments ({per_provider} per provider, {in_flight} at a time) through the gateway, \
             at most {} processes per function",
            per_provider * 6,
            self.instances
        ));
        let state = &self.sandbox.state;
        state.paygram.set_callback_url(format!(
            "http://{}/webhooks/paygram/{}",
            storm::GATEWAY,
            storm::PAYGRAM_CALLBACK_SECRET
        ));
        state
            .payment_engine
            .set_webhook_url(format!("http://{}/webhooks/payment-engine", storm::GATEWAY));
        let pools = Arc::new(storm::Pools::new(
            self.template.clone(),
            self.env.clone(),
            self.instances,
        ));
        let mut queues = vec![(
            "TopUpQueue".to_string(),
            std::env::var("PAYGATE_TOPUP_QUEUE_URL").map_err(|e| e.to_string())?,
        )];
        if let Ok(url) = std::env::var("PAYGATE_EVENTS_QUEUE_URL") {
            queues.push(("EventsQueue".to_string(), url));
        }
        storm::start_gateway(pools.clone(), &queues).await?;
        let client = storm::Client::new(&self.sandbox.url());
        // The storm starts as a fresh deployment would: no provider login
        // stored, every process cold.
        forget_logins().await?;
        let logins_before = self.logins();
        let casino_before = self.casino();
        let _ = self.take();
        let (made, took) = storm::storm(&client, per_provider, in_flight).await?;
        let tally = self.take();
        let logins_after = self.logins();
        let casino_after = self.casino();
        let transfers: Vec<(String, String)> = lock(&self.sandbox.state.casino.transfers)
            .iter()
            .map(|t| (t.nonce.clone(), t.username.clone()))
            .collect();
        say("storm: checking the money invariants");
        let invariants =
            storm::invariants(&client, &made, &casino_before, &casino_after, &transfers).await?;
        let mut result = storm::result(&made, took);
        result.in_flight = in_flight;
        result.instances_per_function = self.instances;
        result.processes = pools.started();
        result.invariants = invariants;
        result.calls_per_payment = tally
            .calls
            .iter()
            .map(|(k, v)| {
                let per = f64::from(*v) / made.len().max(1) as f64;
                (k.clone(), (per * 10.0).round() / 10.0)
            })
            .collect();
        for (provider, after) in &logins_after {
            let before = logins_before.get(provider).copied().unwrap_or(0);
            let payments = result.by_provider.get(provider).copied().unwrap_or(0);
            result
                .logins
                .insert(provider.clone(), (after - before, payments));
        }
        pools.stop().await;
        self.storm = result;
        Ok(made)
    }

    /// Refunds of the storm's QPay payments (QPay refunds whole payments),
    /// one process:
    /// the first cold, the last in its steady state.
    async fn refunds(&mut self, made: &[storm::Made]) -> Result<(), String> {
        let qpay: Vec<&storm::Made> = made.iter().filter(|m| m.provider == "qpay").collect();
        say(&format!("api-refund-payment: {} QPay refunds", qpay.len()));
        let last = qpay.len().saturating_sub(1);
        let mut events = Vec::new();
        for (i, m) in qpay.iter().enumerate() {
            let mut event = sample("api-refund-payment")?;
            let path = format!("/v1/payments/{}/refund", m.id);
            event["pathParameters"]["id"] = json!(m.id);
            event["rawPath"] = json!(path);
            event["requestContext"]["http"]["path"] = json!(path);
            event["headers"]["idempotency-key"] = json!(format!("bench-refund-{}", m.id));
            event["body"] = json!(json!({"reason": "bench"}).to_string());
            let flow = match i {
                0 => Some("refund (cold)"),
                i if i == last => Some("refund"),
                _ => None,
            };
            events.push((flow, event));
        }
        let status = |o: &Outcome| match answer(o) {
            Ok((200, body)) if body["status"] == "refunded" => Ok(()),
            Ok((got, body)) => Err(format!("answered {got}: {body}")),
            Err(e) => Err(e),
        };
        self.measure("api-refund-payment", events, status).await?;
        Ok(())
    }

    /// A sweep of due payments: DirectPay payments whose expiry is moved
    /// into the past, half of them paid without a callback (they complete
    /// late), half never paid (they expire).
    async fn sweep(&mut self) -> Result<(), String> {
        const DUE: usize = 10;
        say(&format!("job-sweep: one run over {DUE} due payments"));
        let events = (0..DUE)
            .map(|i| {
                // No casino: nothing goes on to the queue during the count.
                let mut event = self.create_event(1000 + i)?;
                let mut body: Value = serde_json::from_str(event["body"].as_str().unwrap_or("{}"))
                    .map_err(|e| e.to_string())?;
                if let Some(b) = body.as_object_mut() {
                    b.remove("casino");
                }
                event["body"] = json!(body.to_string());
                Ok((None, event))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let outcomes = self
            .measure("api-create-payment", events, answered(201))
            .await?;
        // Only the per-function table's first create process counts.
        self.functions.pop();
        let payments = bodies(&outcomes)?;
        let stack = devstack::LocalStack::connect().await;
        let table = std::env::var("PAYGATE_TABLE").map_err(|e| e.to_string())?;
        let store = shared::store::Store::new(stack.dynamodb.clone(), table);
        for (i, p) in payments.iter().enumerate() {
            let id = p["id"].as_str().ok_or("no payment id")?;
            if i % 2 == 0 {
                let reference = p["provider_reference"].as_str().ok_or("no reference")?;
                self.pay_directpay(reference).await?;
            }
            // Due since the epoch, through the store's own next-check write.
            let id: shared::ids::PaymentId = id.parse().map_err(|e| format!("{id}: {e}"))?;
            store
                .defer_payment_check(id, time::OffsetDateTime::UNIX_EPOCH)
                .await
                .map_err(|e| format!("backdating {id}: {e}"))?;
        }
        let event = sample("job-sweep")?;
        let outcomes = self
            .measure("job-sweep", vec![(Some("sweep"), event)], |o| match o {
                Outcome::Response(_) => Ok(()),
                Outcome::Error(e) => Err(e.clone()),
            })
            .await?;
        let report = match outcomes.first() {
            Some(Outcome::Response(v)) => v.clone(),
            _ => Value::Null,
        };
        let (expired, late) = (
            report["expired"].as_u64().unwrap_or(0),
            report["settled_late"].as_u64().unwrap_or(0),
        );
        if let Some(flow) = self.flows.iter_mut().find(|f| f.flow == "sweep") {
            flow.flow = format!(
                "sweep of {} due payments ({expired} expired, {late} paid late)",
                expired + late
            );
        }
        Ok(())
    }
}

/// Deletes every stored provider login (`SESSION#<name>` items).
async fn forget_logins() -> Result<(), String> {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let stack = devstack::LocalStack::connect().await;
    let table = std::env::var("PAYGATE_TABLE").map_err(|e| e.to_string())?;
    let mut start = None;
    loop {
        let page = stack
            .dynamodb
            .scan()
            .table_name(&table)
            .filter_expression("begins_with(pk, :session)")
            .expression_attribute_values(":session", A::S("SESSION#".into()))
            .projection_expression("pk, sk")
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| format!("scanning for logins: {e}"))?;
        for item in page.items.unwrap_or_default() {
            stack
                .dynamodb
                .delete_item()
                .table_name(&table)
                .set_key(Some(item))
                .send()
                .await
                .map_err(|e| format!("forgetting a login: {e}"))?;
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    Ok(())
}

async fn rustc_version() -> String {
    tokio::process::Command::new("rustc")
        .arg("--version")
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}, {}", std::env::consts::ARCH)
}

fn table(results: &Results) -> Result<String, String> {
    let mut out = String::new();
    out.push_str(&format!(
        "Measured by `make bench` on {}, {} ({}); release builds (x86_64 here, arm64 in AWS), \
         each function under paygate's Runtime API emulator against DynamoDB Local and moto on loopback.\n\n",
        results.date, results.machine, results.rustc
    ));
    out.push_str("| function | memory | init | first invoke | warm p50 | of which DynamoDB | warm p99 | warm n | peak RSS |\n|---|---|---|---|---|---|---|---|---|\n");
    for f in &results.functions {
        let warm = |v: f64| match f.warm_invocations {
            0 => "-".to_string(),
            _ => format!("{v:.2} ms"),
        };
        out.push_str(&format!(
            "| {} | {} MB | {:.1} ms | {:.1} ms | {} | {} | {} | {} | {:.1} MiB |\n",
            f.function,
            f.memory_mb,
            f.init_ms,
            f.first_invoke_ms,
            warm(f.warm_p50_ms),
            warm(f.warm_p50_dynamodb_ms),
            warm(f.warm_p99_ms),
            f.warm_invocations,
            f.peak_rss_mib
        ));
    }
    out.push_str("\nAWS calls per flow, counted on the wire (a cold flow includes what the process's first request needed: secrets, the shared provider login; the warm one is the last of its run), with the request units DynamoDB billed them (write units of indexes in brackets):\n\n| flow | calls | items in transactions | items put (bytes) | RRU | WRU |\n|---|---|---|---|---|---|\n");
    for f in &results.flows {
        let calls: Vec<String> = f.calls.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let sizes: Vec<String> = f.items_written.iter().map(|s| s.to_string()).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} ({}) |\n",
            f.flow,
            if calls.is_empty() {
                "none".into()
            } else {
                calls.join(", ")
            },
            f.transaction_items,
            if sizes.is_empty() {
                "-".into()
            } else {
                sizes.join(", ")
            },
            f.read_units,
            f.write_units,
            f.index_write_units
        ));
    }
    out.push_str(&format!(
        "\nDirectPay logins by paygate's functions in this run: {} for {} payments across {} processes ({:.0} per 1,000 payments); \
         a process that finds a login stored by another uses it (decision 41). The Node twin logs in once per process, as the seed did.\n\n",
        results.directpay_logins,
        results.payments,
        results.functions.iter().filter(|f| !f.function.starts_with("node-twin")).count(),
        results.directpay_logins_per_1000_payments
    ));
    out.push_str(&cost::table(
        &results.cost,
        &results.node_twin_cost,
        results.node_twin_memory_mb,
    ));
    let broken_down: Vec<(&str, &parts::Parts, f64)> = parts::BROKEN_DOWN
        .iter()
        .filter_map(|name| {
            let f = results.flows.iter().find(|f| f.flow == *name)?;
            Some((*name, &f.write_parts, f.write_units))
        })
        .collect();
    out.push_str(&parts::table(&broken_down)?);
    out.push_str(&storm::table(&results.storm));
    Ok(out)
}

/// Replaces what lies between the bench markers of docs/performance.md.
fn write_doc(text: &str) -> Result<(), String> {
    let path = root().join("docs/performance.md");
    let doc = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let (begin, end) = ("<!-- bench:begin -->", "<!-- bench:end -->");
    let new = match (doc.find(begin), doc.find(end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{begin}\n{text}{}", &doc[..b], &doc[e..])
        }
        _ => format!("{doc}\n## `make bench`\n\n{begin}\n{text}{end}\n"),
    };
    std::fs::write(&path, new).map_err(|e| e.to_string())
}

async fn main_inner() -> Result<(), String> {
    let number = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    let warm = number("PAYGATE_BENCH_WARM", 30);
    let template: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("template.yaml")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set (run make bench)"));
    say("starting the provider sandbox and the counting proxies");
    let sandbox = sandbox::start(SANDBOX.parse().map_err(|e| format!("{e}"))?)
        .await
        .map_err(|e| {
            format!("the sandbox could not listen on {SANDBOX} (is make dev running?): {e}")
        })?;
    let policies = devstack::iam::Policies::from_template(
        &std::fs::read_to_string(root().join("template.yaml")).map_err(|e| e.to_string())?,
        &devstack::iam::LocalNames::dev(),
    )
    .map_err(|e| e.to_string())?;
    let aws = Counting::start(
        policies,
        &var("AWS_ENDPOINT_URL_DYNAMODB")?,
        &var("AWS_ENDPOINT_URL_SQS")?,
    )
    .await?;
    let env = vec![
        ("AWS_REGION".into(), var("AWS_REGION")?),
        ("AWS_ACCESS_KEY_ID".into(), var("AWS_ACCESS_KEY_ID")?),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            var("AWS_SECRET_ACCESS_KEY")?,
        ),
        ("AWS_ENDPOINT_URL_DYNAMODB".into(), aws.url.clone()),
        ("AWS_ENDPOINT_URL_SQS".into(), aws.url.clone()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), aws.url.clone()),
        ("PAYGATE_TABLE".into(), var("PAYGATE_TABLE")?),
        (
            "PAYGATE_TOPUP_QUEUE_URL".into(),
            var("PAYGATE_TOPUP_QUEUE_URL")?,
        ),
        (
            "PAYGATE_PUBLIC_BASE_URL".into(),
            "http://127.0.0.1:3000".into(),
        ),
        ("PAYGATE_SECRET_PREFIX".into(), "paygate/".into()),
        ("PAYGATE_NAMESPACE".into(), "0".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let mut env = env;
    if let Ok(url) = std::env::var("PAYGATE_EVENTS_QUEUE_URL") {
        env.push(("PAYGATE_EVENTS_QUEUE_URL".into(), url));
    }
    let mut bench = Bench {
        template,
        env,
        aws,
        http: reqwest::Client::new(),
        sandbox,
        functions: vec![],
        flows: vec![],
        warm,
        logins: 0,
        storm: storm::StormResult::default(),
        storm_size: (
            number("PAYGATE_BENCH_STORM", 50),
            number("PAYGATE_BENCH_IN_FLIGHT", 12),
        ),
        instances: number("PAYGATE_BENCH_INSTANCES", 4),
    };
    bench.run().await?;
    let refused = bench.aws.refusals();
    if !refused.is_empty() {
        let list: Vec<String> = refused.iter().map(|r| r.to_string()).collect();
        return Err(format!(
            "calls outside their function's policy in template.yaml (AWS would refuse them):\n  {}",
            list.join("\n  ")
        ));
    }
    let payments = (warm + 1) as f64;
    let logins = bench.logins;
    let functions = bench.functions_view();
    let flows = bench.flows_view();
    let paygate = cost::Recipe {
        create: "api-create-payment",
        callback: "webhook-directpay",
        page: Some("api-pay-page"),
        events: Some("worker-events"),
        flows: "",
    };
    let cost = cost::estimate(&functions, &flows, &paygate);
    let node_twin = cost::Recipe {
        create: "node-twin-create",
        callback: "node-twin-callback",
        page: None,
        events: None,
        flows: "twin ",
    };
    let node_twin_cost = cost::estimate(&functions, &flows, &node_twin);
    let node_twin_memory_mb = sizing(&bench.template, "webhook-directpay").0;
    let results = Results {
        machine: machine(),
        date: today(),
        rustc: rustc_version().await,
        functions: bench.functions,
        flows: bench.flows,
        directpay_logins: logins,
        payments: warm + 1,
        directpay_logins_per_1000_payments: f64::from(logins) * 1000.0 / payments,
        cost,
        node_twin_cost,
        node_twin_memory_mb,
        storm: bench.storm,
    };
    let text = table(&results)?;
    println!("{text}");
    let dir = root().join(".local/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    write_doc(&text)?;
    say("written to .local/bench/results.json and docs/performance.md");
    Ok(())
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Bench {
    fn functions_view(&self) -> Vec<(String, u32, f64)> {
        self.functions
            .iter()
            .map(|f| (f.function.clone(), f.memory_mb, f.warm_p50_ms))
            .collect()
    }

    fn flows_view(&self) -> Vec<cost::Flow> {
        self.flows
            .iter()
            .map(|f| cost::Flow {
                name: f.flow.clone(),
                calls: f.calls.clone(),
                read_units: f.read_units,
                write_units: f.write_units,
                casino_write_units: parts::casino_only(&f.write_parts),
            })
            .collect()
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match main_inner().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paygate-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_payer_is_asked_again_after_the_poll_interval() {
        let payments: Vec<Value> = (0..3)
            .map(|i| json!({"checkout": {"page_url": format!("http://x/pay/t{i}")}}))
            .collect();
        let events = page_events(&payments, 2).unwrap();
        let flows: Vec<Option<&str>> = events.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            flows[flows.len() - 5..],
            [
                Some("payer page"),
                Some("payer poll (asks the provider)"),
                Some("payer poll"),
                None,
                Some("payer poll (asks the provider again)")
            ]
        );
        let (_, wait) = &events[events.len() - 2];
        assert!(wait[WAIT].as_u64().unwrap() > 10_000, "{wait}");
        let (_, again) = &events[events.len() - 1];
        assert_eq!(again["rawPath"], "/pay/t2/status");
    }
}
