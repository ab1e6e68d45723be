//! AWS calls on the wire, per flow: a counting interceptor on the DynamoDB
//! client of a cold instance, which then completes a DirectPay payment from
//! its callback and receives the duplicate. The provider health write stays
//! off the payment's path, and the provider login comes from the table.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use common::cases::{cases, create};
use common::harness::Harness;
use serde_json::json;
use shared::store::Store;

/// DynamoDB operations by name (`GetItem`), each attempt on the wire.
#[derive(Debug, Clone, Default)]
struct Count(Arc<Mutex<BTreeMap<String, u32>>>);

impl Intercept for Count {
    fn name(&self) -> &'static str {
        "count DynamoDB calls"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("?");
        let operation = target.rsplit('.').next().unwrap_or(target).to_string();
        *self.0.lock().unwrap().entry(operation).or_default() += 1;
        Ok(())
    }
}

impl Count {
    fn take(&self) -> BTreeMap<String, u32> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Calls by operation, as [`Count`] keeps them.
fn ops(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(op, n)| (op.to_string(), *n)).collect()
}

/// A cold instance whose DynamoDB calls are counted.
fn counting(h: &Harness) -> (shared::services::Services, Count) {
    let count = Count::default();
    let config = h
        .stack
        .dynamodb
        .config()
        .to_builder()
        .interceptor(count.clone())
        .build();
    let store = Store::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        h.store().table(),
    );
    (h.cold_instance_on(store), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_completing_directpay_callback_makes_four_dynamodb_calls_and_a_duplicate_one() {
    let h = Harness::start().await;
    let case = cases()
        .into_iter()
        .find(|c| c.provider == "directpay")
        .unwrap();
    // Created by the API's instance, which stored its DirectPay login.
    let id = create(&h, &case, "u_calls").await;

    // A cold instance of the webhook function, counting its DynamoDB calls.
    let (cold, count) = counting(&h);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cold_api = format!("http://{}", listener.local_addr().unwrap());
    common::api::serve(listener, cold).await;

    let reference = h
        .store()
        .payment(id)
        .await
        .unwrap()
        .unwrap()
        .provider_reference
        .unwrap();
    h.sandbox
        .state
        .directpay
        .transactions
        .lock()
        .unwrap()
        .get_mut(reference.as_str())
        .map(|t| t.webhook = t.webhook.replace(&h.api, &cold_api))
        .unwrap();
    let paid = h
        .sandbox(
            &format!("/_sandbox/directpay/transactions/{reference}/status"),
            json!({"status": "SUCCESS"}),
        )
        .await;
    assert_eq!(paid["delivered"], 200, "{paid}");
    // Spawned writes (a health record, were there one) land before counting.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let completing = count.take();
    let again = h
        .sandbox(
            &format!("/_sandbox/directpay/transactions/{reference}/callback"),
            json!({}),
        )
        .await;
    assert_eq!(again["delivered"], 200, "{again}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let duplicate = count.take();
    // The payment (by the id in the webhook URL), the claim that lets one
    // callback ask DirectPay, the shared DirectPay login (instead of a CSRF
    // call and a login at DirectPay), and the completion with its credit.
    // No health write: a cold process's first success waits.
    assert_eq!(
        completing,
        ops(&[("GetItem", 2), ("TransactWriteItems", 1), ("UpdateItem", 1)])
    );
    // A duplicate: one read, answered from the payment as it is.
    assert_eq!(duplicate, ops(&[("GetItem", 1)]));
    assert_eq!(
        h.sandbox.state.calls("/directpay/api/create/login"),
        1,
        "the cold instance used the stored login"
    );
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, shared::payment::PaymentStatus::Completed);
}

/// Completes payment `id` by its DirectPay callback and hands the
/// completion's event (its stream record) to a cold worker-events whose
/// DynamoDB calls are counted: those calls.
async fn completion_told_by_a_counting_worker(
    h: &Harness,
    id: shared::ids::PaymentId,
) -> BTreeMap<String, u32> {
    common::cases::trigger(h, "directpay", "paid", id).await;
    let (worker, count) = counting(h);
    let records = h.stream.lock().await.read().await.unwrap();
    let events: Vec<_> = records
        .into_iter()
        .filter(|r| r["dynamodb"]["Keys"]["sk"]["S"] == "EVENT")
        .collect();
    assert_eq!(events.len(), 1, "the completion's event");
    let answer = shared::api::events_worker::handle(&worker, json!({"Records": events})).await;
    assert_eq!(answer["batchItemFailures"], json!([]));
    count.take()
}

/// worker-events for a merchant with no endpoint: the event read, the
/// merchant's endpoints queried, the event's open mark cleared; nothing
/// more (no transaction, no query of deliveries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_nobody_listens_to_costs_a_read_a_query_and_an_update() {
    let h = Harness::start().await;
    let id = common::cases::create_for(&h, "directpay", "u_calls").await;
    let calls = completion_told_by_a_counting_worker(&h, id).await;
    let expected: BTreeMap<String, u32> = [("GetItem", 1), ("Query", 1), ("UpdateItem", 1)]
        .iter()
        .map(|(op, n)| (op.to_string(), *n))
        .collect();
    assert_eq!(calls, expected);
    // Handed out: the sweep has nothing to send again.
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    assert!(h.store().events_open(later, 10).await.unwrap().is_empty());
}

/// worker-events for a merchant whose endpoint takes the event at once:
/// the event read, the endpoints queried, the event sent, then one
/// conditional update that closes the event and keeps the delivery on it
/// (decision 59): no transaction, no delivery item, no claim, nothing left
/// as due work. A resend of it makes it an item of its own, which the log
/// shows in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_taken_at_once_costs_a_read_a_query_and_one_update() {
    let h = Harness::start().await;
    let got = Arc::new(Mutex::new(0u32));
    let counted = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counted = counted.clone();
            async move {
                *counted.lock().unwrap() += 1;
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let r = h
        .post(
            "/v1/webhook-endpoints",
            &ulid::Ulid::new().to_string(),
            &json!({"url": url, "events": ["payment.completed"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = common::cases::create_for(&h, "directpay", "u_calls").await;
    let calls = completion_told_by_a_counting_worker(&h, id).await;
    assert_eq!(*got.lock().unwrap(), 1);
    assert_eq!(
        calls,
        ops(&[("GetItem", 1), ("Query", 1), ("UpdateItem", 1)])
    );
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    assert!(h.store().events_open(later, 10).await.unwrap().is_empty());
    assert!(h
        .store()
        .deliveries_due(later, 10)
        .await
        .unwrap()
        .is_empty());
    let items = h.items().await;
    let sk = |i: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
        i.get("sk")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        !items.iter().any(|i| sk(i).starts_with("DLV#")),
        "no delivery item"
    );
    let event = items
        .iter()
        .find(|i| sk(i) == "EVENT")
        .expect("the event's item");
    for absent in ["gsi2pk", "gsi2sk"] {
        assert!(!event.contains_key(absent), "{absent}: {event:?}");
    }
    // Kept as the endpoint's one attempt.
    let kept = event["delivered"].as_m().unwrap();
    assert_eq!(kept.len(), 1);
    let attempt = kept.values().next().unwrap().as_m().unwrap();
    assert_eq!(attempt["status_code"].as_n().unwrap(), "204");

    // The log shows it as any delivery.
    let event_id = event["pk"]
        .as_s()
        .unwrap()
        .rsplit('#')
        .next()
        .unwrap()
        .to_string();
    let shown = h.get(&format!("/v1/events/{event_id}")).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    let deliveries = shown.body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{}", shown.text);
    assert_eq!(deliveries[0]["status"], "delivered");
    assert_eq!(deliveries[0]["last_status_code"], 204);
    // Sent again on request: once more, then delivered, still one delivery.
    let resent = h
        .post(
            &format!("/v1/events/{event_id}/resend"),
            &ulid::Ulid::new().to_string(),
            &json!({}),
        )
        .await;
    assert_eq!(resent.status, 202, "{}", resent.text);
    h.run_events().await;
    assert_eq!(*got.lock().unwrap(), 2);
    let shown = h.get(&format!("/v1/events/{event_id}")).await;
    let deliveries = shown.body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{}", shown.text);
    assert_eq!(deliveries[0]["status"], "delivered", "{}", shown.text);
    assert_eq!(
        shown.body["attempts"].as_array().unwrap().len(),
        2,
        "{}",
        shown.text
    );
}

/// A warm create: the key's claim and the reference's claim side by side,
/// the provider, then one transaction that stores the payment and keeps
/// the answer for replay (no separate update of the idempotency record;
/// decision 59). A retry with the key replays that answer from the record
/// alone: its two claims refused, nothing read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_create_keeps_its_answer_in_the_payments_own_transaction() {
    let h = Harness::start().await;
    let (instance, count) = counting(&h);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    common::api::serve(listener, instance).await;
    let post = |key: String, reference: String| {
        let http = h.http.clone();
        let api = api.clone();
        async move {
            let r = http
                .post(format!("{api}/v1/payments"))
                .bearer_auth(common::harness::API_KEY)
                .header("Idempotency-Key", key)
                .json(
                    &json!({"provider": "directpay", "amount": 150000, "currency": "PHP",
                              "reference": reference, "wallet_user_id": "u_calls"}),
                )
                .send()
                .await
                .unwrap();
            let replayed = r.headers().get("idempotent-replayed").is_some();
            (r.status().as_u16(), replayed, r.text().await.unwrap())
        }
    };
    // The cold create (secrets, the shared login), then the warm one.
    let (status, _, text) = post(
        format!("k-{}", ulid::Ulid::new()),
        format!("ORD-{}", ulid::Ulid::new()),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    count.take();
    let key = format!("k-{}", ulid::Ulid::new());
    let reference = format!("ORD-{}", ulid::Ulid::new());
    let (status, replayed, first) = post(key.clone(), reference.clone()).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    assert_eq!(
        count.take(),
        ops(&[("PutItem", 2), ("TransactWriteItems", 1)])
    );
    // The retry: the same answer, byte for byte, from the record.
    let (status, replayed, again) = post(key, reference).await;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again, first);
    assert_eq!(count.take(), ops(&[("PutItem", 2)]));
}

/// A reader's poll of a pending payment asks the provider with one write:
/// its claim, which records the time of the question; the provider's answer
/// is written only when it is new (the first time), never again while it
/// says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_that_asks_writes_its_claim_and_the_providers_answer_only_when_new() {
    let h = Harness::start().await;
    let case = cases()
        .into_iter()
        .find(|c| c.provider == "directpay")
        .unwrap();
    let warm_up = create(&h, &case, "u_calls").await;
    let id = create(&h, &case, "u_calls").await;
    let (instance, count) = counting(&h);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    common::api::serve(listener, instance).await;
    let get_of = |id: shared::ids::PaymentId| {
        let (http, api, count) = (h.http.clone(), api.clone(), count.clone());
        async move {
            let r = http
                .get(format!("{api}/v1/payments/{id}"))
                .bearer_auth(common::harness::API_KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            // Spawned writes (a health record) land before counting.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            count.take().get("UpdateItem").copied().unwrap_or(0)
        }
    };
    // A warm process: its first success at DirectPay is recorded at its
    // next question (decision 42).
    get_of(warm_up).await;
    backdate(&h, warm_up).await;
    get_of(warm_up).await;
    let get = || get_of(id);
    // The first question: the claim, and the provider's first word.
    assert_eq!(get().await, 2);
    let said = h
        .store()
        .payment(id)
        .await
        .unwrap()
        .unwrap()
        .provider_status;
    assert!(said.is_some());
    // Due again (the claim and the last question 20 s ago): the claim alone.
    let past = backdate(&h, id).await;
    assert_eq!(get().await, 1);
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.provider_status, said);
    assert!(p.provider_checked_at.unwrap() > past);
}

/// Makes a payment's poll due: its claim and last question 20 s ago; that
/// time.
async fn backdate(h: &Harness, id: shared::ids::PaymentId) -> time::OffsetDateTime {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let past = time::OffsetDateTime::now_utc() - time::Duration::seconds(20);
    h.stack
        .dynamodb
        .update_item()
        .table_name(h.store().table())
        .key("pk", A::S(format!("PAY#{id}")))
        .key("sk", A::S("PAY".into()))
        .update_expression("SET check_ms_poll = :ms, provider_checked_at = :at")
        .expression_attribute_values(
            ":ms",
            A::N(((past.unix_timestamp_nanos() / 1_000_000) as i64).to_string()),
        )
        .expression_attribute_values(
            ":at",
            A::S(
                past.format(&time::format_description::well_known::Rfc3339)
                    .unwrap(),
            ),
        )
        .send()
        .await
        .unwrap();
    past
}
