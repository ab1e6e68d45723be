//! The whole system under load: the release builds behind the local
//! gateway (template.yaml's routes, the authorizer, the top-up queue fed to
//! the worker), each function a pool of processes under the Runtime API
//! emulator, as Lambda scales them. A storm of payments across every
//! provider, each paid at the sandbox and then sent up to six concurrent
//! callbacks in a shuffled order (duplicates and earlier states); then the
//! money invariants, read back through the API and from the casino.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as AxPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::common::{ms, percentile, root, say, sizing};
use crate::runtime::{Instance, Outcome};
use sandbox::kit::lock;

/// The public base the functions hand to providers: the gateway listens here.
pub const GATEWAY: &str = "127.0.0.1:3000";
const API_KEY: &str = "pk_local_paygate_dev_key";
/// The Paygram callback path's secret in the local secrets.
pub const PAYGRAM_CALLBACK_SECRET: &str = "local-paygram-callback-secret";

/// Processes of one function, started as invocations need them, at most
/// `size` at once; each handles one invocation at a time, as in Lambda.
struct Pool {
    idle: Mutex<Vec<Instance>>,
    slots: Semaphore,
    started: Mutex<u32>,
}

/// Every function's pool, and how to start a process.
pub struct Pools {
    template: serde_yaml::Value,
    env: Vec<(String, String)>,
    size: usize,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

impl Pools {
    pub fn new(template: serde_yaml::Value, env: Vec<(String, String)>, size: usize) -> Pools {
        Pools {
            template,
            env,
            size,
            pools: Mutex::new(HashMap::new()),
        }
    }

    fn pool(&self, function: &str) -> Arc<Pool> {
        lock(&self.pools)
            .entry(function.to_string())
            .or_insert_with(|| {
                Arc::new(Pool {
                    idle: Mutex::new(Vec::new()),
                    slots: Semaphore::new(self.size),
                    started: Mutex::new(0),
                })
            })
            .clone()
    }

    /// One invocation of `function` on an idle process, or a new one.
    async fn invoke(&self, function: &str, event: &Value) -> Result<Outcome, String> {
        // A function name from the gateway names a binary of target/release;
        // nothing else is started.
        if function.is_empty()
            || !function
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!("no function {function:?}"));
        }
        let pool = self.pool(function);
        let _slot = pool.slots.acquire().await.map_err(|e| e.to_string())?;
        let idle = lock(&pool.idle).pop();
        let instance = match idle {
            Some(i) => i,
            None => {
                let (memory, timeout) = sizing(&self.template, function);
                let path = root().join("target/release").join(function);
                let i = Instance::spawn(function, &path, &[], &self.env, memory, timeout).await?;
                *lock(&pool.started) += 1;
                i
            }
        };
        match instance.invoke(event).await {
            Ok((_, outcome)) => {
                lock(&pool.idle).push(instance);
                Ok(outcome)
            }
            Err(e) => {
                instance.stop().await;
                Err(e)
            }
        }
    }

    /// Processes started, by function.
    pub fn started(&self) -> BTreeMap<String, u32> {
        lock(&self.pools)
            .iter()
            .map(|(k, p)| (k.clone(), *lock(&p.started)))
            .collect()
    }

    pub async fn stop(&self) {
        let pools: Vec<Arc<Pool>> = lock(&self.pools).values().cloned().collect();
        for pool in pools {
            let idle: Vec<Instance> = std::mem::take(&mut *lock(&pool.idle));
            for i in idle {
                i.stop().await;
            }
        }
    }
}

/// Lambda's invoke endpoint (`POST /2015-03-31/functions/{name}/invocations`)
/// over the pools, for the gateway.
async fn invocations(
    State(pools): State<Arc<Pools>>,
    AxPath(function): AxPath<String>,
    body: Bytes,
) -> Response {
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "event is not JSON").into_response();
    };
    match pools.invoke(&function, &event).await {
        Ok(Outcome::Response(v)) => Json(v).into_response(),
        Ok(Outcome::Error(e)) => {
            let body = serde_json::from_str::<Value>(&e)
                .unwrap_or_else(|_| json!({"errorType": "Runtime.Error", "errorMessage": e}));
            ([("x-amz-function-error", "Unhandled")], Json(body)).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// Starts the invoke endpoint and the gateway in front of it on
/// [`GATEWAY`], with each queue (`queues`: logical id and URL) fed to its
/// function by two pollers (Lambda's SQS event source starts with
/// several), and the table's stream to the function it triggers.
pub async fn start_gateway(pools: Arc<Pools>, queues: &[(String, String)]) -> Result<(), String> {
    let app = Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(invocations),
        )
        .with_state(pools);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| e.to_string())?;
    let lambda = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let template =
        devstack::Template::load(&root().join("template.yaml")).map_err(|e| e.to_string())?;
    let gateway = Arc::new(devstack::api_gateway::ApiGateway::new(&template, &lambda));
    let listener = tokio::net::TcpListener::bind(GATEWAY)
        .await
        .map_err(|e| format!("the gateway cannot listen on {GATEWAY} (make dev?): {e}"))?;
    tokio::spawn({
        let gateway = gateway.clone();
        async move {
            let _ = devstack::api_gateway::serve(gateway, listener).await;
        }
    });
    let stack = devstack::LocalStack::connect().await;
    for function in &template.functions {
        for queue in &function.queues {
            let Some((_, url)) = queues.iter().find(|(id, _)| id == queue) else {
                return Err(format!("no queue for {queue} of {}", function.binary));
            };
            for _ in 0..2 {
                let (g, sqs, f, url) = (
                    gateway.clone(),
                    stack.sqs.clone(),
                    function.clone(),
                    url.clone(),
                );
                tokio::spawn(async move { g.poll(sqs, url, f).await });
            }
        }
        for source in &function.streams {
            let table = std::env::var("PAYGATE_TABLE").map_err(|e| e.to_string())?;
            let reader = devstack::streams::StreamReader::open(
                &devstack::LocalStack::dynamodb_url(),
                &table,
                false,
            )
            .await
            .map_err(|e| e.to_string())?;
            let (g, s, f) = (gateway.clone(), source.clone(), function.clone());
            tokio::spawn(async move { g.poll_stream(reader, s, f).await });
        }
    }
    Ok(())
}

/// How one provider's payments are made, paid and called back.
struct Plan {
    provider: &'static str,
    body: Value,
    /// Paid at the sandbox without a callback (path, body), `{ref}` the
    /// provider's reference; `None` where the callbacks pay.
    pay: Option<(&'static str, Value)>,
    /// The callbacks that race, in the order they are written (shuffled
    /// before they are sent).
    callbacks: Vec<(&'static str, Value)>,
}

fn plans() -> Vec<Plan> {
    let repeat = |path: &'static str, body: Value, n: usize| vec![(path, body); n];
    vec![
        Plan {
            provider: "directpay",
            body: json!({"amount": 150000, "currency": "PHP"}),
            pay: Some((
                "/_sandbox/directpay/transactions/{ref}/status",
                json!({"status": "SUCCESS", "callback": "none"}),
            )),
            callbacks: [
                repeat(
                    "/_sandbox/directpay/transactions/{ref}/callback",
                    json!({}),
                    4,
                ),
                // Earlier states, arriving late.
                repeat(
                    "/_sandbox/directpay/transactions/{ref}/callback",
                    json!({"status": "PENDING"}),
                    2,
                ),
            ]
            .concat(),
        },
        Plan {
            provider: "paygram",
            body: json!({"amount": 5000000, "currency": "USDT"}),
            pay: Some((
                "/_sandbox/paygram/invoices/{ref}/status",
                json!({"status": 2, "callback": "none"}),
            )),
            callbacks: repeat("/_sandbox/paygram/invoices/{ref}/callback", json!({}), 6),
        },
        Plan {
            provider: "toyyibpay",
            body: json!({"amount": 9990, "currency": "MYR", "method": "fpx", "description": "Bench",
                         "customer": {"name": "Aisyah", "email": "a@example.com", "phone": "+60123456789"}}),
            pay: Some((
                "/_sandbox/toyyibpay/bills/{ref}/attempt",
                json!({"status": 1, "callback": "none"}),
            )),
            callbacks: [
                repeat("/_sandbox/toyyibpay/bills/{ref}/callback", json!({}), 4),
                // A failed attempt's callback, arriving after the success.
                repeat(
                    "/_sandbox/toyyibpay/bills/{ref}/callback",
                    json!({"status": 2}),
                    2,
                ),
            ]
            .concat(),
        },
        Plan {
            provider: "qpay",
            body: json!({"amount": 150000, "currency": "MNT"}),
            pay: Some((
                "/_sandbox/qpay/invoices/{ref}/pay",
                json!({"type": "CARD", "callback": "none"}),
            )),
            callbacks: repeat("/_sandbox/qpay/invoices/{ref}/callback", json!({}), 6),
        },
        Plan {
            provider: "epayment",
            body: json!({"amount": 500000, "currency": "KZT",
                         "return_url": "https://shop.example.com/done"}),
            pay: None,
            // The bank charges as often as it is told; each charge calls back.
            callbacks: repeat(
                "/_sandbox/epayment/invoices/{ref}/pay",
                json!({"status": "CHARGE"}),
                6,
            ),
        },
        Plan {
            provider: "payment_engine",
            body: json!({"amount": 1250, "currency": "USD", "method": "RTP"}),
            pay: None,
            // The same signed event four times at once, and two fresh ones.
            callbacks: [
                repeat(
                    "/_sandbox/payment-engine/transactions/{ref}/settle",
                    json!({"status": "COMPLETED", "event_id": "evt_storm_{ref}"}),
                    4,
                ),
                repeat(
                    "/_sandbox/payment-engine/transactions/{ref}/settle",
                    json!({"status": "COMPLETED"}),
                    2,
                ),
            ]
            .concat(),
        },
    ]
}

/// `{ref}` in a path or in a body's strings.
fn with_ref(v: &Value, reference: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("{ref}", reference)),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), with_ref(v, reference)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A Fisher–Yates shuffle driven by a xorshift seeded from a ULID's
/// randomness: a different order per payment, no extra dependency.
fn shuffle<T>(items: &mut [T]) {
    let mut x = (ulid::Ulid::new().random() as u64) | 1;
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        items.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

/// What the storm measured.
#[derive(Debug, Default, Serialize)]
pub struct StormResult {
    pub payments: usize,
    pub by_provider: BTreeMap<String, usize>,
    pub callbacks: usize,
    pub casino_topups: usize,
    pub in_flight: usize,
    pub instances_per_function: usize,
    pub seconds: f64,
    pub completions_per_second: f64,
    pub create_ms: Percentiles,
    pub callback_ms: Percentiles,
    /// Create sent to the payment seen completed (and its top-up done).
    pub settle_ms: Percentiles,
    /// Callback answers by HTTP status as the sandbox saw them.
    pub callback_statuses: BTreeMap<String, u32>,
    /// Processes started, by function.
    pub processes: BTreeMap<String, u32>,
    /// AWS calls over the whole storm, by operation, per payment.
    pub calls_per_payment: BTreeMap<String, f64>,
    /// Provider logins during the storm: (logins, payments of that provider).
    pub logins: BTreeMap<String, (u32, usize)>,
    /// The invariants checked, each with what it covered.
    pub invariants: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(mut d: Vec<Duration>) -> Percentiles {
        d.sort();
        Percentiles {
            p50: ms(percentile(&d, 50.0)),
            p95: ms(percentile(&d, 95.0)),
            p99: ms(percentile(&d, 99.0)),
            max: ms(d.last().copied().unwrap_or_default()),
        }
    }
}

/// One payment of the storm, as made.
#[derive(Clone)]
pub struct Made {
    pub provider: &'static str,
    pub id: String,
    pub user: String,
    pub amount: i64,
    pub casino: Option<String>,
    create: Duration,
    callbacks: Vec<(Duration, u16)>,
    settle: Duration,
}

/// HTTP to the gateway and the sandbox.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    api: String,
    sandbox: String,
}

impl Client {
    pub fn new(sandbox: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap_or_default(),
            api: format!("http://{GATEWAY}"),
            sandbox: sandbox.to_string(),
        }
    }

    /// A merchant API call: status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idempotency: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(API_KEY);
        if let Some(key) = idempotency {
            r = r.header("idempotency-key", key);
        }
        if let Some(body) = body {
            r = r.json(body);
        }
        let r = r.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// A sandbox control; its JSON answer.
    async fn control(&self, path: &str, body: &Value) -> Result<Value, String> {
        let r = self
            .http
            .post(format!("{}{path}", self.sandbox))
            .json(body)
            .send()
            .await
            .map_err(|e| format!("sandbox {path}: {e}"))?;
        let status = r.status();
        let body = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("sandbox {path}: {status} {body}"));
        }
        Ok(body)
    }

    /// Every entry of a wallet (through its cursor) and its balances.
    async fn wallet(&self, user: &str) -> Result<(Vec<Value>, Vec<Value>), String> {
        let (mut entries, mut cursor) = (Vec::new(), None::<String>);
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/wallets/{user}?cursor={c}"),
                None => format!("/v1/wallets/{user}"),
            };
            let (status, page) = self.call(reqwest::Method::GET, &path, None, None).await?;
            if status != 200 {
                return Err(format!("wallet {user}: {status} {page}"));
            }
            entries.extend(page["entries"].as_array().cloned().unwrap_or_default());
            cursor = page["next_cursor"].as_str().map(str::to_string);
            if cursor.is_none() {
                let balances = page["balances"].as_array().cloned().unwrap_or_default();
                return Ok((entries, balances));
            }
        }
    }
}

fn settled(p: &Value, casino: bool) -> bool {
    p["status"] == "completed" && (!casino || p["topup"]["status"] == "done")
}

/// One payment: created, paid, its callbacks raced, then followed until
/// it settles.
async fn one(client: Client, plan: Arc<Plan>, run: String, n: usize) -> Result<Made, String> {
    let started = Instant::now();
    let user = format!("u_storm_{}_{n}_{run}", plan.provider);
    let mut body = plan.body.clone();
    body["provider"] = json!(plan.provider);
    body["reference"] = json!(format!("STORM-{}-{n}-{run}", plan.provider));
    body["wallet_user_id"] = json!(user);
    // Every PHP deposit goes on to the casino, to two players in turn.
    let casino = (body["currency"] == "PHP").then(|| ["player1", "player3"][n % 2].to_string());
    if let Some(player) = &casino {
        body["casino"] = json!({"username": player});
    }
    let (status, p) = client
        .call(
            reqwest::Method::POST,
            "/v1/payments",
            Some(&body),
            Some(&format!("storm-{}-{n}-{run}", plan.provider)),
        )
        .await?;
    let create = started.elapsed();
    if status != 201 {
        return Err(format!("create {}: {status} {p}", plan.provider));
    }
    let id = p["id"].as_str().ok_or("no id")?.to_string();
    let reference = p["provider_reference"]
        .as_str()
        .ok_or("no provider reference")?
        .to_string();
    if let Some((path, pay)) = &plan.pay {
        client
            .control(
                &path.replace("{ref}", &reference),
                &with_ref(pay, &reference),
            )
            .await?;
    }
    let mut shots: Vec<(String, Value)> = plan
        .callbacks
        .iter()
        .map(|(path, b)| (path.replace("{ref}", &reference), with_ref(b, &reference)))
        .collect();
    shuffle(&mut shots);
    let mut set = tokio::task::JoinSet::new();
    for (path, b) in shots {
        let client = client.clone();
        set.spawn(async move {
            let t = Instant::now();
            let answer = client.control(&path, &b).await?;
            let delivered = answer["delivered"].as_u64().unwrap_or(0) as u16;
            Ok::<_, String>((t.elapsed(), delivered))
        });
    }
    let mut callbacks = Vec::new();
    while let Some(r) = set.join_next().await {
        callbacks.push(r.map_err(|e| e.to_string())??);
    }
    let path = format!("/v1/payments/{id}");
    let limit = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, got) = client.call(reqwest::Method::GET, &path, None, None).await?;
        if status == 200 && settled(&got, casino.is_some()) {
            break;
        }
        if Instant::now() > limit {
            return Err(format!("{id} ({}) did not settle: {got}", plan.provider));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(Made {
        provider: plan.provider,
        id,
        user,
        amount: body["amount"].as_i64().unwrap_or(0),
        casino,
        create,
        callbacks,
        settle: started.elapsed(),
    })
}

/// The storm: `per_provider` payments of each provider, `in_flight` at a
/// time. Returns the payments made and the wall time.
pub async fn storm(
    client: &Client,
    per_provider: usize,
    in_flight: usize,
) -> Result<(Vec<Made>, Duration), String> {
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let plans: Vec<Arc<Plan>> = plans().into_iter().map(Arc::new).collect();
    let gate = Arc::new(Semaphore::new(in_flight));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    // Providers interleaved, so every function is busy at once.
    for n in 0..per_provider {
        for plan in &plans {
            let (client, plan, run, gate) =
                (client.clone(), plan.clone(), run.clone(), gate.clone());
            set.spawn(async move {
                let _slot = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                one(client, plan, run, n).await
            });
        }
    }
    let total = per_provider * plans.len();
    let mut made = Vec::new();
    while let Some(r) = set.join_next().await {
        made.push(r.map_err(|e| e.to_string())??);
        if made.len() % 20 == 0 || made.len() == total {
            say(&format!("storm: {}/{total} payments settled", made.len()));
        }
    }
    Ok((made, started.elapsed()))
}

/// The money invariants over the storm's payments; what each covered, or
/// the first that broke.
pub async fn invariants(
    client: &Client,
    made: &[Made],
    casino_before: &BTreeMap<String, i64>,
    casino_after: &BTreeMap<String, i64>,
    transfers: &[(String, String)],
) -> Result<Vec<String>, String> {
    let mut credits = 0;
    let mut debits = 0;
    for m in made {
        let (status, p) = client
            .call(
                reqwest::Method::GET,
                &format!("/v1/payments/{}", m.id),
                None,
                None,
            )
            .await?;
        if status != 200 {
            return Err(format!("{}: {status} {p}", m.id));
        }
        let (entries, balances) = client.wallet(&m.user).await?;
        debits += check_payment(m, &p, &entries, &balances, transfers)?;
        credits += 1;
    }
    let players = check_casino(made, casino_before, casino_after)?;
    Ok(vec![
        format!("{} payments completed exactly once (one `completed` in each history)", made.len()),
        format!("{credits} wallet credits, one per payment, each of the payment's amount"),
        format!("{debits} wallet debits, one per casino top-up, each of the payment's amount"),
        format!("{} wallets: balances equal to the sum of their entries", made.len()),
        format!(
            "{} casino transfers, one per top-up; {} players' casino balances grew by exactly their deposits",
            debits, players
        ),
    ])
}

/// One payment's invariants: completed once, credited once with its
/// amount, debited once for its top-up (if it had one), its wallet's
/// balances equal to its entries, and one casino transfer with its nonce.
/// The debits it found.
fn check_payment(
    m: &Made,
    p: &Value,
    entries: &[Value],
    balances: &[Value],
    transfers: &[(String, String)],
) -> Result<usize, String> {
    let history = p["history"].as_array().cloned().unwrap_or_default();
    let completions = history
        .iter()
        .filter(|h| h["status"] == "completed")
        .count();
    if p["status"] != "completed" || completions != 1 {
        return Err(format!(
            "{} ({}) is {} with {completions} completions: {}",
            m.id, m.provider, p["status"], p["history"]
        ));
    }
    let mine = |kind: &str| -> Vec<&Value> {
        entries
            .iter()
            .filter(|e| e["kind"] == kind && e["payment_id"] == json!(m.id))
            .collect()
    };
    let (c, d) = (mine("credit"), mine("debit"));
    if c.len() != 1 || c[0]["amount"] != json!(m.amount) {
        return Err(format!("{} credited {c:?}, not once {}", m.id, m.amount));
    }
    let want_debits = usize::from(m.casino.is_some());
    if d.len() != want_debits || d.iter().any(|e| e["amount"] != json!(m.amount)) {
        return Err(format!(
            "{} debited {d:?}, not {want_debits} of {}",
            m.id, m.amount
        ));
    }
    let mut net: BTreeMap<String, i64> = BTreeMap::new();
    for e in entries {
        let amount = e["amount"].as_i64().unwrap_or(0);
        let signed = if e["kind"] == "credit" {
            amount
        } else {
            -amount
        };
        *net.entry(e["currency"].as_str().unwrap_or_default().to_string())
            .or_default() += signed;
    }
    let held: BTreeMap<String, i64> = balances
        .iter()
        .map(|b| {
            (
                b["currency"].as_str().unwrap_or_default().to_string(),
                b["amount"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let net: BTreeMap<String, i64> = net.into_iter().filter(|(_, v)| *v != 0).collect();
    let held_nonzero: BTreeMap<String, i64> = held.into_iter().filter(|(_, v)| *v != 0).collect();
    if net != held_nonzero {
        return Err(format!(
            "{}'s balances {held_nonzero:?} differ from its entries {net:?}",
            m.user
        ));
    }
    if m.casino.is_some() {
        let nonce = format!("paygate-{}", m.id.trim_start_matches("pay_"));
        let n = transfers.iter().filter(|(t, _)| *t == nonce).count();
        if n != 1 {
            return Err(format!("{} reached the casino {n} times", m.id));
        }
    }
    Ok(d.len())
}

/// Every casino player's balance grew by exactly its players' deposits;
/// how many players had any.
fn check_casino(
    made: &[Made],
    before: &BTreeMap<String, i64>,
    after: &BTreeMap<String, i64>,
) -> Result<usize, String> {
    let mut deposits: BTreeMap<String, i64> = BTreeMap::new();
    for m in made {
        if let Some(player) = &m.casino {
            *deposits.entry(player.clone()).or_default() += m.amount;
        }
    }
    for (player, deposited) in &deposits {
        let grown =
            after.get(player).copied().unwrap_or(0) - before.get(player).copied().unwrap_or(0);
        if grown != *deposited {
            return Err(format!(
                "casino {player} grew by {grown} centavos, its deposits were {deposited}"
            ));
        }
    }
    Ok(deposits.len())
}

/// The storm's timings, from what was made.
pub fn result(made: &[Made], took: Duration) -> StormResult {
    let mut by_provider = BTreeMap::new();
    let mut statuses = BTreeMap::new();
    for m in made {
        *by_provider.entry(m.provider.to_string()).or_default() += 1;
        for (_, s) in &m.callbacks {
            *statuses.entry(s.to_string()).or_default() += 1;
        }
    }
    StormResult {
        payments: made.len(),
        by_provider,
        callbacks: made.iter().map(|m| m.callbacks.len()).sum(),
        casino_topups: made.iter().filter(|m| m.casino.is_some()).count(),
        seconds: (took.as_secs_f64() * 100.0).round() / 100.0,
        completions_per_second: ((made.len() as f64 / took.as_secs_f64()) * 10.0).round() / 10.0,
        create_ms: Percentiles::of(made.iter().map(|m| m.create).collect()),
        callback_ms: Percentiles::of(
            made.iter()
                .flat_map(|m| m.callbacks.iter().map(|(d, _)| *d))
                .collect(),
        ),
        settle_ms: Percentiles::of(made.iter().map(|m| m.settle).collect()),
        callback_statuses: statuses,
        ..StormResult::default()
    }
}

/// The storm's section of the report.
pub fn table(s: &StormResult) -> String {
    let mut out = format!(
        "\nThe whole system under load: the release builds behind the local gateway (template.yaml's routes, \
         the authorizer on every merchant call, the top-up queue fed to the worker), at most {} processes per function. \
         {} payments ({}), {} at a time; each paid at the sandbox, then {} callbacks in all, six per payment \
         sent at once in a shuffled order (duplicates; DirectPay and ToyyibPay also earlier or failed states), \
         {} going on to the casino; each followed through `GET /v1/payments/{{id}}` until completed and topped up.\n\n",
        s.instances_per_function,
        s.payments,
        s.by_provider
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        s.in_flight,
        s.callbacks,
        s.casino_topups,
    );
    out.push_str(&format!(
        "| storm | value |\n|---|---|\n| wall time | {:.1} s |\n| settled payments per second | {:.1} |\n",
        s.seconds, s.completions_per_second
    ));
    for (name, p) in [
        ("create", &s.create_ms),
        ("callback", &s.callback_ms),
        ("create to settled", &s.settle_ms),
    ] {
        out.push_str(&format!(
            "| {name} p50 / p95 / p99 / max | {:.0} / {:.0} / {:.0} / {:.0} ms |\n",
            p.p50, p.p95, p.p99, p.max
        ));
    }
    out.push_str(&format!(
        "| callback answers (503: another process is asking the provider about that payment; the provider's retry finds it settled) | {} |\n\
         | processes started | {} |\n\
         | AWS calls per payment (everything the storm's requests caused: create, callbacks, the GETs that followed, top-ups, cold starts) | {} |\n",
        s.callback_statuses
            .iter()
            .map(|(k, v)| format!("{v} × {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        s.processes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        s.calls_per_payment
            .iter()
            .map(|(k, v)| format!("{k} {v:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
    ));
    out.push_str("\nProvider logins during the storm (decision 41: one login shared by every process, renewed by one at a time):\n\n| provider | logins | payments | per 1,000 payments |\n|---|---|---|---|\n");
    for (provider, (logins, payments)) in &s.logins {
        out.push_str(&format!(
            "| {provider} | {logins} | {payments} | {:.1} |\n",
            f64::from(*logins) * 1000.0 / (*payments).max(1) as f64
        ));
    }
    out.push_str(
        "\nMoney invariants, checked at the end through the API and the casino's own books:\n\n",
    );
    for line in &s.invariants {
        out.push_str(&format!("- {line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_fill_paths_and_bodies() {
        let v = json!({"event_id": "evt_{ref}", "status": 2, "n": {"x": "{ref}"}});
        assert_eq!(
            with_ref(&v, "R1"),
            json!({"event_id": "evt_R1", "status": 2, "n": {"x": "R1"}})
        );
    }

    #[test]
    fn a_shuffle_keeps_every_item() {
        let mut v: Vec<u32> = (0..6).collect();
        shuffle(&mut v);
        v.sort();
        assert_eq!(v, (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn every_plan_sends_at_most_six_callbacks() {
        for p in plans() {
            assert!(
                !p.callbacks.is_empty() && p.callbacks.len() <= 6,
                "{}",
                p.provider
            );
        }
        assert_eq!(plans().len(), 6);
    }

    fn made(casino: Option<&str>) -> Made {
        Made {
            provider: "directpay",
            id: "pay_01A".into(),
            user: "u1".into(),
            amount: 150_000,
            casino: casino.map(str::to_string),
            create: Duration::ZERO,
            callbacks: vec![],
            settle: Duration::ZERO,
        }
    }

    fn entry(kind: &str, amount: i64) -> Value {
        json!({"kind": kind, "amount": amount, "currency": "PHP", "payment_id": "pay_01A"})
    }

    #[test]
    fn a_payment_holds_its_invariants_only_when_all_hold() {
        let paid = json!({"status": "completed", "history": [{"status": "pending"}, {"status": "completed"}]});
        let transfer = vec![("paygate-01A".to_string(), "player1".to_string())];
        let m = made(Some("player1"));
        let both = [entry("credit", 150_000), entry("debit", 150_000)];
        let zero = [json!({"currency": "PHP", "amount": 0})];
        assert_eq!(check_payment(&m, &paid, &both, &zero, &transfer), Ok(1));
        // Completed twice.
        let twice = json!({"status": "completed", "history": [{"status": "completed"}, {"status": "completed"}]});
        assert!(check_payment(&m, &twice, &both, &zero, &transfer).is_err());
        // Not completed.
        let pending = json!({"status": "pending", "history": [{"status": "pending"}]});
        assert!(check_payment(&m, &pending, &both, &zero, &transfer).is_err());
        // Credited twice, or of another amount.
        let doubled = [
            entry("credit", 150_000),
            entry("credit", 150_000),
            entry("debit", 150_000),
        ];
        let held = [json!({"currency": "PHP", "amount": 150_000})];
        assert!(check_payment(&m, &paid, &doubled, &held, &transfer).is_err());
        let short = [entry("credit", 100_000), entry("debit", 100_000)];
        assert!(check_payment(&m, &paid, &short, &zero, &transfer).is_err());
        // A top-up that never debited the wallet.
        let undebited = [entry("credit", 150_000)];
        assert!(check_payment(&m, &paid, &undebited, &held, &transfer).is_err());
        // Balances that are not the sum of the entries.
        assert!(check_payment(&m, &paid, &both, &held, &transfer).is_err());
        // Reached the casino twice, or never.
        let two = [transfer[0].clone(), transfer[0].clone()];
        assert!(check_payment(&m, &paid, &both, &zero, &two).is_err());
        assert!(check_payment(&m, &paid, &both, &zero, &[]).is_err());
        // Without a casino: one credit, no debit.
        let credit = [entry("credit", 150_000)];
        assert_eq!(
            check_payment(&made(None), &paid, &credit, &held, &[]),
            Ok(0)
        );
        assert!(check_payment(&made(None), &paid, &both, &zero, &[]).is_err());
    }

    #[test]
    fn casino_balances_grow_by_exactly_the_deposits() {
        let made = [made(Some("player1")), made(Some("player1")), made(None)];
        let before = BTreeMap::from([("player1".to_string(), 500)]);
        let right = BTreeMap::from([("player1".to_string(), 300_500)]);
        assert_eq!(check_casino(&made, &before, &right), Ok(1));
        let over = BTreeMap::from([("player1".to_string(), 450_500)]);
        assert!(check_casino(&made, &before, &over).is_err());
        assert!(check_casino(&made, &before, &before).is_err());
    }

    #[test]
    fn unknown_function_names_start_nothing() {
        let pools = Pools::new(serde_yaml::Value::Null, vec![], 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for name in ["", "../sandbox", "a b"] {
            assert!(rt.block_on(pools.invoke(name, &json!({}))).is_err());
        }
        assert!(pools.started().is_empty());
    }
}
