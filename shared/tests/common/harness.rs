//! The whole deposit system for a test: a fresh table in DynamoDB Local, a
//! fresh queue and secrets in moto, the provider sandbox, and the API
//! served over HTTP so the sandbox's callbacks reach the webhook handlers.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use serde_json::{json, Value};
use shared::api::authorizer::hash_key;
use shared::providers::transport::HttpPolicy;
use shared::queue::TopUpQueue;
use shared::secrets::SecretsCache;
use shared::services::{EventSettings, Services, Settings};
use shared::store::Store;

pub const API_KEY: &str = "pk_local_paygate_dev_key";
pub const MERCHANT: &str = "m_local";
/// A second merchant of the same deployment.
#[allow(dead_code)]
pub const OTHER_API_KEY: &str = "pk_other_merchant_key";
pub const OTHER_MERCHANT: &str = "m_other";
/// An operator's key (role operator), and the operator's name.
#[allow(dead_code)]
pub const OPERATOR_KEY: &str = "ok_test_operator_key";
pub const OPERATOR: &str = "test-operator";
/// The stack's namespace in tests (`PAYGATE_NAMESPACE`).
pub const NAMESPACE: u8 = 7;

/// The test API key's merchant, whose wallets the flows credit.
#[allow(dead_code)]
pub fn merchant() -> shared::ids::MerchantId {
    MERCHANT.parse().unwrap()
}

pub struct Harness {
    pub stack: devstack::LocalStack,
    /// The tests' own clients (set-up and inspection): their calls pass
    /// the IAM check unchecked, as they name no function.
    pub services: Services,
    /// Every function's own clients, signing as the function and checked
    /// against its policy in template.yaml.
    pub functions: BTreeMap<String, Services>,
    /// The IAM check every function's calls go through.
    pub iam: devstack::iam::Guard,
    pub sandbox: sandbox::Running,
    pub api: String,
    pub queue_url: String,
    /// Where events' retries wait.
    pub events_queue_url: String,
    /// The table's stream, read from its start (as worker-events' mapping
    /// reads it): new events for [`Harness::run_events`].
    pub stream: tokio::sync::Mutex<devstack::streams::StreamReader>,
    pub paygram_secret: String,
    pub http: reqwest::Client,
}

/// A new queue named `<prefix>-<ulid>` whose messages come back at once
/// (no visibility timeout): its URL.
async fn test_queue(stack: &devstack::LocalStack, prefix: &str) -> String {
    stack
        .sqs
        .create_queue()
        .queue_name(format!("{prefix}-{}", ulid::Ulid::new()))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "0",
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// The retry schedule in tests: seven waits of a second.
pub const EVENT_RETRY: [Duration; 7] = [Duration::from_secs(1); 7];

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

/// A call AWS would refuse fails the test that made it, even where the
/// function shrugs the refusal off (a health record, a shared login).
impl Drop for Harness {
    fn drop(&mut self) {
        let refused = self.iam.take_refusals();
        if !refused.is_empty() && !std::thread::panicking() {
            let list: Vec<String> = refused.iter().map(|r| r.to_string()).collect();
            panic!(
                "calls outside their function's policy in template.yaml (AWS refuses them):\n  {}",
                list.join("\n  ")
            );
        }
    }
}

impl Harness {
    /// The system under the repository's template.yaml.
    pub async fn start() -> Harness {
        let template =
            std::fs::read_to_string(devstack::template::default_path()).expect("template.yaml");
        Harness::start_under(&template).await
    }

    /// The system with each function's AWS calls checked against the
    /// policies of `template` (template.yaml's text, perhaps changed).
    pub async fn start_under(template: &str) -> Harness {
        let stack = devstack::LocalStack::connect().await;
        let table = stack
            .fresh_table()
            .await
            .expect("test table (is the stack up? run `make test`)");
        let queue_url = test_queue(&stack, "test").await;
        let events_queue_url = test_queue(&stack, "test-events").await;
        let stream = devstack::streams::StreamReader::open(
            &devstack::LocalStack::dynamodb_url(),
            &table,
            true,
        )
        .await
        .expect("the table's stream");
        let sandbox = sandbox::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());

        let prefix = format!("paygate-test-{}/", ulid::Ulid::new());
        let paygram_secret = "sample-callback-secret".to_string();
        let sb = sandbox.url();
        let secrets = [
            (
                "directpay",
                json!({"base_url": format!("{sb}/directpay/api"), "username": sandbox::directpay::USERNAME, "password": sandbox::directpay::PASSWORD}),
            ),
            (
                "paygram",
                json!({"api": "official", "base_url": format!("{sb}/paygram/PayGramUsers/"), "api_token": sandbox::paygram::TOKEN, "callback_secret": paygram_secret}),
            ),
            (
                "payment-engine",
                json!({"base_url": format!("{sb}/payment-engine"),
                       "auth": {"username": sandbox::payment_engine::USERNAME, "password": sandbox::payment_engine::PASSWORD},
                       "to_account_id": sandbox::payment_engine::ACCOUNT,
                       "webhook_secret": sandbox::payment_engine::WEBHOOK_SECRET,
                       "standard_webhooks_secret": sandbox::payment_engine::STANDARD_SECRET}),
            ),
            (
                "qpay",
                json!({"base_url": format!("{sb}/qpay"), "client_id": sandbox::qpay::CLIENT_ID,
                       "client_secret": sandbox::qpay::CLIENT_SECRET, "invoice_code": sandbox::qpay::INVOICE_CODE}),
            ),
            (
                "epayment",
                json!({"oauth_url": format!("{sb}/epayment/oauth"), "api_url": format!("{sb}/epayment/api"),
                       "widget_url": format!("{sb}/epayment/payform/payment-api.js"),
                       "client_id": sandbox::epayment::CLIENT_ID, "client_secret": sandbox::epayment::CLIENT_SECRET,
                       "terminal": sandbox::epayment::TERMINAL, "callback_key": "local-epayment-callback-key"}),
            ),
            (
                "toyyibpay",
                json!({"base_url": format!("{sb}/toyyibpay"), "secret_key": sandbox::toyyibpay::SECRET_KEY}),
            ),
            (
                "casino",
                // The sandbox's bridge deduplicates by nonce; tests of the
                // default (off) build their own client.
                json!({"lookup_url": format!("{sb}/casino/lookup"), "base_url": format!("{sb}/casino"), "nonce_dedup": true,
                       "tokens": sandbox::casino::TOKENS.iter().map(|(m, t)| (m.to_string(), json!(t))).collect::<serde_json::Map<_, _>>()}),
            ),
            (
                "webhook-signing",
                json!({"key": "dGVzdHMnIHdlYmhvb2sgc2lnbmluZyBrZXksIHRoaXJ0eS10d28gYnl0ZXMgb3IgbW9yZQ=="}),
            ),
            (
                "api-keys",
                json!({"keys": [{"merchant_id": MERCHANT, "sha256": hash_key(API_KEY), "name": "test"},
                                {"merchant_id": OTHER_MERCHANT, "sha256": hash_key(OTHER_API_KEY), "name": "other"},
                                {"role": "operator", "sha256": hash_key(OPERATOR_KEY), "name": OPERATOR}]}),
            ),
        ];
        for (name, value) in secrets {
            stack
                .put_secret(&format!("{prefix}{name}"), &value.to_string())
                .await
                .unwrap();
        }
        let services = Services::new(
            Store::new(stack.dynamodb.clone(), table),
            TopUpQueue::new(stack.sqs.clone(), queue_url.clone()),
            SecretsCache::new(stack.secrets.clone(), Duration::from_secs(300)),
            Settings {
                public_base_url: api.clone(),
                secret_prefix: prefix,
                payment_ttl: time::Duration::minutes(30),
                // Not 00: the tests see the namespace at the end of every
                // number paygate allocates.
                namespace: NAMESPACE,
                events: EventSettings {
                    queue_url: Some(events_queue_url.clone()),
                    retry: EVENT_RETRY.to_vec(),
                },
                http: HttpPolicy {
                    connect_timeout: Duration::from_secs(2),
                    request_timeout: Duration::from_secs(2),
                    max_attempts: 3,
                    base_backoff: Duration::from_millis(5),
                    max_backoff: Duration::from_millis(20),
                    health: None,
                    sessions: None,
                },
            },
        );
        let names = devstack::iam::LocalNames {
            region: devstack::REGION.to_string(),
            account: devstack::iam::policy::ACCOUNT.to_string(),
            resources: BTreeMap::from([
                (
                    "PaymentsTable".to_string(),
                    services.store.table().to_string(),
                ),
                (
                    "TopUpQueue".to_string(),
                    queue_url.rsplit('/').next().unwrap_or_default().to_string(),
                ),
                (
                    "EventsQueue".to_string(),
                    events_queue_url
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                ),
            ]),
            secret_prefix: Some(services.settings.secret_prefix.clone()),
        };
        let policies = devstack::iam::Policies::from_template(template, &names)
            .expect("policies of the template");
        let iam = devstack::iam::Guard::start(
            policies.clone(),
            &devstack::LocalStack::dynamodb_url(),
            &devstack::LocalStack::sqs_url(),
            None,
        )
        .await
        .expect("the IAM check");
        let mut functions = BTreeMap::new();
        for function in policies.functions() {
            let own = devstack::LocalStack::as_function(function, &iam.url).await;
            functions.insert(
                function.to_string(),
                Services::new(
                    Store::new(own.dynamodb.clone(), services.store.table().to_string()),
                    TopUpQueue::new(own.sqs.clone(), queue_url.clone()),
                    SecretsCache::new(own.secrets.clone(), Duration::from_secs(300)),
                    services.settings.clone(),
                ),
            );
        }
        super::api::serve_functions(listener, &functions).await;
        let http = reqwest::Client::new();
        http.post(format!("{sb}/_sandbox/payment-engine/webhook"))
            .json(&json!({"url": format!("{api}/webhooks/payment-engine")}))
            .send()
            .await
            .unwrap();
        http.post(format!("{sb}/_sandbox/paygram/callback-url"))
            .json(&json!({"url": format!("{api}/webhooks/paygram/{paygram_secret}")}))
            .send()
            .await
            .unwrap();
        Harness {
            stack,
            services,
            functions,
            iam,
            sandbox,
            api,
            queue_url,
            events_queue_url,
            stream: tokio::sync::Mutex::new(stream),
            paygram_secret,
            http,
        }
    }

    /// What `function` (its binary's name) runs with: clients that sign as
    /// it, so its calls are held to its policy.
    pub fn function(&self, function: &str) -> &Services {
        self.functions
            .get(function)
            .unwrap_or_else(|| panic!("template.yaml has no function {function}"))
    }

    /// The calls the IAM check refused since the last take, as `function
    /// may not action on resource`. A test that means to provoke a refusal
    /// takes it: one left at the end fails the test.
    pub fn take_refusals(&self) -> Vec<String> {
        self.iam
            .take_refusals()
            .iter()
            .map(|r| r.to_string())
            .collect()
    }

    pub fn store(&self) -> &Store {
        &self.services.store
    }

    /// Another process of any function: fresh clients and caches over the
    /// same table, queue, secrets and settings (a cold Lambda instance).
    pub fn cold_instance(&self) -> Services {
        self.cold_instance_on(self.store().clone())
    }

    /// A cold instance whose table client is `store` (one that counts its
    /// calls, say).
    pub fn cold_instance_on(&self, store: Store) -> Services {
        let s = &self.services;
        Services::new(
            store,
            s.queue.clone(),
            s.secrets.clone(),
            s.settings.clone(),
        )
    }

    async fn reply(r: reqwest::Response) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// POST /v1/payments with the test API key.
    pub async fn create(&self, key: &str, body: &Value) -> Reply {
        let r = self
            .http
            .post(format!("{}/v1/payments", self.api))
            .bearer_auth(API_KEY)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        Self::reply(r).await
    }

    /// POST JSON to a merchant route with the test API key.
    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Reply {
        self.post_as(path, API_KEY, key, body).await
    }

    /// POST JSON with the given API key and Idempotency-Key.
    pub async fn post_as(&self, path: &str, api_key: &str, key: &str, body: &Value) -> Reply {
        let r = self
            .http
            .post(format!("{}{path}", self.api))
            .bearer_auth(api_key)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        Self::reply(r).await
    }

    /// GET with the test API key.
    pub async fn get(&self, path: &str) -> Reply {
        self.get_as(path, API_KEY).await
    }

    /// GET with the given API key.
    pub async fn get_as(&self, path: &str, key: &str) -> Reply {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        Self::reply(r).await
    }

    /// POST to a path of the API with no key (webhooks).
    pub async fn post_raw(&self, path: &str, content_type: &str, body: &str) -> Reply {
        let r = self
            .http
            .post(format!("{}{path}", self.api))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        Self::reply(r).await
    }

    /// A sandbox control call; returns its JSON answer.
    pub async fn sandbox(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.sandbox.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "sandbox {path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    /// Up to ten messages of `queue` that are due now.
    async fn receive(&self, queue: &str) -> Vec<aws_sdk_sqs::types::Message> {
        self.stack
            .sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
    }

    /// Everything waiting in the top-up queue, as the worker's event.
    pub async fn drain_queue(&self) -> SqsEvent {
        let mut records = Vec::new();
        loop {
            let messages = self.receive(&self.queue_url).await;
            if messages.is_empty() {
                break;
            }
            for m in messages {
                if let Some(handle) = &m.receipt_handle {
                    self.stack
                        .sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .unwrap();
                }
                let mut record = SqsMessage::default();
                record.message_id = m.message_id;
                record.body = m.body;
                records.push(record);
            }
        }
        let mut event = SqsEvent::default();
        event.records = records;
        event
    }

    /// What worker-events does now, as AWS would run it: the table's new
    /// stream records (through the template's filter) as one batch, then
    /// every message of the events queue that is due (each its own batch,
    /// so a retry's message is received when its delay is over). Returns
    /// how many records and messages it handled.
    #[allow(dead_code)]
    pub async fn run_events(&self) -> usize {
        let worker = self.function("worker-events");
        let template = devstack::Template::load(&devstack::template::default_path()).unwrap();
        let source = template
            .functions
            .iter()
            .find(|f| f.binary == "worker-events")
            .and_then(|f| f.streams.first().cloned())
            .expect("worker-events reads the table's stream");
        let records: Vec<Value> = self
            .stream
            .lock()
            .await
            .read()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| devstack::streams::passes(&source.filters, r))
            .collect();
        let mut handled = records.len();
        for batch in records.chunks(source.batch_size.max(1)) {
            let answer =
                shared::api::events_worker::handle(worker, json!({"Records": batch})).await;
            assert_eq!(
                answer["batchItemFailures"],
                json!([]),
                "stream batch failed"
            );
        }
        loop {
            let messages = self.receive(&self.events_queue_url).await;
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let record =
                    json!({"eventSource": "aws:sqs", "messageId": m.message_id, "body": m.body});
                let answer =
                    shared::api::events_worker::handle(worker, json!({"Records": [record]})).await;
                if answer["batchItemFailures"] == json!([]) {
                    if let Some(handle) = &m.receipt_handle {
                        self.stack
                            .sqs
                            .delete_message()
                            .queue_url(&self.events_queue_url)
                            .receipt_handle(handle)
                            .send()
                            .await
                            .unwrap();
                    }
                }
                handled += 1;
            }
        }
        handled
    }

    /// Transfers the casino sandbox has recorded.
    pub fn casino_transfers(&self) -> Vec<sandbox::casino::TransferRecord> {
        self.sandbox.state.casino.transfers.lock().unwrap().clone()
    }

    /// Every item in the table but the provider health counters and the
    /// shared provider logins (a provider call's outcome is recorded, and a
    /// login kept, whatever the request decides; `health.rs` and
    /// `shared_logins.rs` test those).
    pub async fn items(
        &self,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let out = self
            .stack
            .dynamodb
            .scan()
            .table_name(self.store().table())
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        let mut items: Vec<_> = out
            .items
            .unwrap_or_default()
            .into_iter()
            // Provider health and provider logins are paygate's own
            // bookkeeping of its providers, not anything a caller wrote.
            .filter(|i| {
                !matches!(i.get("pk"), Some(aws_sdk_dynamodb::types::AttributeValue::S(pk))
                    if pk.starts_with("HEALTH#") || pk.starts_with("SESSION#"))
            })
            .collect();
        items.sort_by_key(|i| format!("{:?}{:?}", i.get("pk"), i.get("sk")));
        items
    }
}
