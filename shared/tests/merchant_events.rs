//! Events to the merchant (API.md, "Events to the merchant"), against the
//! local stack and the sandbox: the event is written with its change and
//! only then, the table's stream hands it to worker-events, a loopback
//! receiver gets it signed as Standard Webhooks specifies, retries keep its
//! `webhook-id`, the last failure waits for a person, and what a merchant
//! sees and moves is only its own.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use common::cases::{create_for, trigger};
use common::harness::{Harness, OPERATOR_KEY, OTHER_API_KEY};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// What a receiver got: each request's headers and body.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: String,
}

/// A merchant's endpoint on loopback: answers each request with the next
/// status of `answers` (200 once they run out), records what it got.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn start(answers: &[u16]) -> (Receiver, String) {
        let r = Receiver::default();
        r.answers.lock().unwrap().extend(answers);
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hook",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        (r, url)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    r.got.lock().unwrap().push(Received { headers, body });
    let status = r.answers.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

/// Checks a delivery as a receiver would, written here from the
/// specification (not with paygate's signer): every `v1,` signature that
/// `secret` makes over `{id}.{timestamp}.{body}`.
fn verifies(secret: &str, got: &Received) -> bool {
    let header = |n: &str| got.headers.get(n).unwrap().to_str().unwrap().to_string();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.{}",
            header("webhook-id"),
            header("webhook-timestamp"),
            got.body
        )
        .as_bytes(),
    );
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

async fn endpoint(h: &Harness, url: &str, events: Value) -> Value {
    let r = h
        .post(
            "/v1/webhook-endpoints",
            &ulid::Ulid::new().to_string(),
            &json!({"url": url, "events": events}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

/// Runs worker-events until `done` holds, or fails after `limit`.
async fn until(h: &Harness, limit: Duration, done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    loop {
        h.run_events().await;
        if done() {
            return;
        }
        assert!(start.elapsed() < limit, "not done within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_payment_is_told_once_signed() {
    let h = Harness::start().await;
    let (receiver, url) = Receiver::start(&[]).await;
    let created = endpoint(&h, &url, json!(["payment.*"])).await;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["status"], "enabled");

    let id = create_for(&h, "directpay", "u_events").await;
    // The provider calls three times; one completes.
    for _ in 0..3 {
        let (status, _) = trigger(&h, "directpay", "paid", id).await;
        assert_eq!(status, 200);
    }
    until(&h, Duration::from_secs(20), || !receiver.got().is_empty()).await;
    // Nothing more comes, however often the worker runs.
    h.run_events().await;
    let got = receiver.got();
    assert_eq!(got.len(), 1, "{got:?}");
    let delivery = &got[0];
    assert!(verifies(&secret, delivery), "the signature does not verify");
    let body: Value = serde_json::from_str(&delivery.body).unwrap();
    assert_eq!(body["type"], "payment.completed");
    assert_eq!(body["data"]["id"], id.to_string());
    assert_eq!(body["data"]["status"], "completed");
    assert_eq!(delivery.headers["webhook-id"], body["id"].as_str().unwrap());
    assert_eq!(delivery.headers["content-type"], "application/json");

    // The log shows it delivered, once.
    let log = h.get(&format!("/v1/events?payment_id={id}")).await;
    assert_eq!(log.status, 200, "{}", log.text);
    let events = log.body["data"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{}", log.text);
    assert_eq!(events[0]["id"], body["id"]);
    assert_eq!(events[0]["deliveries"][0]["status"], "delivered");
    assert_eq!(events[0]["deliveries"][0]["last_status_code"], 200);
    let one = h
        .get(&format!("/v1/events/{}", body["id"].as_str().unwrap()))
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_comes_again_with_the_same_id_until_it_is_taken() {
    let h = Harness::start().await;
    let (receiver, url) = Receiver::start(&[500, 503]).await;
    endpoint(&h, &url, json!(["payment.completed"])).await;
    let id = create_for(&h, "directpay", "u_events").await;
    trigger(&h, "directpay", "paid", id).await;
    until(&h, Duration::from_secs(30), || receiver.got().len() >= 3).await;
    let got = receiver.got();
    assert_eq!(got.len(), 3);
    let ids: Vec<_> = got
        .iter()
        .map(|g| g.headers["webhook-id"].clone())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let log = h.get(&format!("/v1/events?payment_id={id}")).await;
    let delivery = &log.body["data"][0]["deliveries"][0];
    assert_eq!(delivery["status"], "delivered", "{}", log.text);
    assert_eq!(delivery["attempts"], 3);
    let event = h
        .get(&format!("/v1/events/{}", ids[0].to_str().unwrap()))
        .await;
    let codes: Vec<_> = event.body["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, [json!(500), json!(503), json!(200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_last_attempt_a_delivery_fails_and_a_resend_tries_once_more() {
    let h = Harness::start().await;
    let (receiver, url) = Receiver::start(&[500; 8]).await;
    endpoint(&h, &url, json!([])).await;
    let id = create_for(&h, "directpay", "u_events").await;
    trigger(&h, "directpay", "paid", id).await;
    // 8 attempts: the first and seven retries a second apart.
    until(&h, Duration::from_secs(60), || receiver.got().len() >= 8).await;
    h.run_events().await;
    assert_eq!(receiver.got().len(), 8);
    let log = h.get(&format!("/v1/events?payment_id={id}")).await;
    let event_id = log.body["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(log.body["data"][0]["deliveries"][0]["status"], "failed");
    // Listed for people.
    let (failed, _) = h.store().failed_deliveries(10, None).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].1.to_string(), event_id);

    // The operators' queue lists it, with the event and the endpoint.
    let queue = h
        .get_as("/v1/ops/queue?kind=delivery_failed", OPERATOR_KEY)
        .await;
    assert_eq!(queue.status, 200, "{}", queue.text);
    let item = &queue.body["data"][0];
    assert_eq!(item["event_id"], event_id.as_str());
    assert_eq!(item["payment_id"], id.to_string());
    assert_eq!(item["last_error"], "the endpoint answered 500");
    assert_eq!(item["actions"], json!(["resend"]));

    // The merchant's endpoint answers again: an operator's resend, with a
    // reason, delivers it.
    let path = format!("/v1/ops/payments/{id}/events/{event_id}/resend");
    let r = h
        .post_as(&path, OPERATOR_KEY, "ops-resend-1", &json!({}))
        .await;
    assert_eq!(r.status, 400, "a reason is required: {}", r.text);
    let r = h
        .post_as(
            &path,
            OPERATOR_KEY,
            "ops-resend-2",
            &json!({"reason": "shop fixed its endpoint"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    until(&h, Duration::from_secs(20), || receiver.got().len() >= 9).await;
    let last = receiver.got().pop().unwrap();
    assert_eq!(last.headers["webhook-id"], event_id.as_str());
    let log = h.get(&format!("/v1/events/{event_id}")).await;
    assert_eq!(
        log.body["deliveries"][0]["status"], "delivered",
        "{}",
        log.text
    );
    assert!(h
        .store()
        .failed_deliveries(10, None)
        .await
        .unwrap()
        .0
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint() {
    let h = Harness::start().await;
    let (receiver, url) = Receiver::start(&[410]).await;
    let created = endpoint(&h, &url, json!([])).await;
    let id = create_for(&h, "directpay", "u_events").await;
    trigger(&h, "directpay", "paid", id).await;
    until(&h, Duration::from_secs(20), || !receiver.got().is_empty()).await;
    let we = h
        .get(&format!(
            "/v1/webhook-endpoints/{}",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(we.body["status"], "disabled", "{}", we.text);
    assert!(we.body.get("secret").is_none());
    // Nothing more is sent to it.
    let other = create_for(&h, "directpay", "u_events").await;
    trigger(&h, "directpay", "paid", other).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.run_events().await;
    assert_eq!(receiver.got().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_old_one() {
    let h = Harness::start().await;
    let (receiver, url) = Receiver::start(&[]).await;
    let created = endpoint(&h, &url, json!(["payment.completed"])).await;
    let old = created["secret"].as_str().unwrap().to_string();
    let path = format!(
        "/v1/webhook-endpoints/{}/rotate-secret",
        created["id"].as_str().unwrap()
    );
    let rotated = h.post(&path, "rotate-1", &json!({})).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    // A retried rotation is the same rotation, with the same secret.
    let again = h.post(&path, "rotate-1", &json!({})).await;
    assert_eq!(again.body["secret"], new.as_str());
    assert_eq!(again.headers["idempotent-replayed"], "true");

    let id = create_for(&h, "directpay", "u_events").await;
    trigger(&h, "directpay", "paid", id).await;
    until(&h, Duration::from_secs(20), || !receiver.got().is_empty()).await;
    let got = &receiver.got()[0];
    assert_eq!(
        got.headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    assert!(verifies(&new, got) && verifies(&old, got));
    // No secret is kept in the table: not in the endpoint, not in the
    // idempotency record that replays the answer.
    let all = format!("{:?}", h.items().await);
    assert!(!all.contains(&old[6..]) && !all.contains(&new[6..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_stream_record_was_lost_is_sent_by_the_sweep() {
    let h = Harness::start().await;
    let (receiver, url) = Receiver::start(&[]).await;
    endpoint(&h, &url, json!([])).await;
    let id = create_for(&h, "directpay", "u_events").await;
    trigger(&h, "directpay", "paid", id).await;
    // The process that committed the change died, and the stream's record
    // never reached the worker: read past it.
    h.stream.lock().await.read().await.unwrap();
    h.run_events().await;
    assert!(receiver.got().is_empty());
    let sweep = h.function("job-sweep");
    let report = shared::api::jobs::sweep(
        sweep,
        time::OffsetDateTime::now_utc() + time::Duration::minutes(2),
    )
    .await
    .unwrap();
    assert_eq!(report.events_requeued, 1, "{report:?}");
    until(&h, Duration::from_secs(20), || !receiver.got().is_empty()).await;
    let body: Value = serde_json::from_str(&receiver.got()[0].body).unwrap();
    assert_eq!(body["type"], "payment.completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_refuse_what_they_cannot_take_and_write_nothing() {
    let h = Harness::start().await;
    let before = h.items().await.len();
    for (body, status, code) in [
        (
            json!({"url": "https://169.254.169.254/latest"}),
            422,
            "url_not_public",
        ),
        (
            json!({"url": "https://10.0.0.7/hook"}),
            422,
            "url_not_public",
        ),
        (
            json!({"url": "https://[::ffff:127.0.0.1]/"}),
            422,
            "url_not_public",
        ),
        (json!({"url": "ftp://example.com/"}), 422, "invalid_url"),
        (json!({"url": "not a url"}), 422, "invalid_url"),
        (
            json!({"url": "https://u:p@example.com/"}),
            422,
            "invalid_url",
        ),
        (
            json!({"url": "http://127.0.0.1:9/x", "events": ["payment.paid"]}),
            422,
            "unknown_event_type",
        ),
        (
            json!({"url": "http://127.0.0.1:9/x", "description": "x".repeat(256)}),
            422,
            "invalid_description",
        ),
        (
            json!({"url": "http://127.0.0.1:9/x", "colour": "red"}),
            400,
            "malformed_body",
        ),
        (json!({"events": []}), 400, "malformed_body"),
    ] {
        let r = h
            .post(
                "/v1/webhook-endpoints",
                &ulid::Ulid::new().to_string(),
                &body,
            )
            .await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert_eq!(r.body["error"]["code"], code, "{body}: {}", r.text);
    }
    assert_eq!(h.items().await.len(), before, "a refusal wrote something");

    // Sixteen, and no more.
    for _ in 0..16 {
        endpoint(&h, "http://127.0.0.1:9/x", json!([])).await;
    }
    let r = h
        .post(
            "/v1/webhook-endpoints",
            "the-17th",
            &json!({"url": "http://127.0.0.1:9/x"}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["error"]["code"], "too_many_endpoints");
    let list = h.get("/v1/webhook-endpoints").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 16);
    assert!(!list.text.contains("whsec_"), "a listing shows no secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_sees_and_moves_only_its_own() {
    let h = Harness::start().await;
    let (receiver, url) = Receiver::start(&[]).await;
    let mine = endpoint(&h, &url, json!([])).await;
    let we = mine["id"].as_str().unwrap();
    let id = create_for(&h, "directpay", "u_events").await;
    trigger(&h, "directpay", "paid", id).await;
    until(&h, Duration::from_secs(20), || !receiver.got().is_empty()).await;
    let event: Value = serde_json::from_str(&receiver.got()[0].body).unwrap();
    let evt = event["id"].as_str().unwrap();

    for path in [
        format!("/v1/webhook-endpoints/{we}"),
        format!("/v1/events/{evt}"),
    ] {
        let r = h.get_as(&path, OTHER_API_KEY).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
    }
    let r = h
        .post_as(
            &format!("/v1/events/{evt}/resend"),
            OTHER_API_KEY,
            "x-1",
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = h
        .post_as(
            &format!("/v1/webhook-endpoints/{we}/rotate-secret"),
            OTHER_API_KEY,
            "x-2",
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    let list = h.get_as("/v1/events", OTHER_API_KEY).await;
    assert_eq!(list.body["data"], json!([]));
    let list = h.get_as("/v1/webhook-endpoints", OTHER_API_KEY).await;
    assert_eq!(list.body["data"], json!([]));
    // The merchant's own resend: one more attempt, the same webhook-id.
    let r = h
        .post(
            &format!("/v1/events/{evt}/resend"),
            "resend-own",
            &json!({"endpoint_id": we}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["resent"], json!([we]));
    until(&h, Duration::from_secs(20), || receiver.got().len() >= 2).await;
    assert_eq!(receiver.got()[1].headers["webhook-id"], evt);
    // And a cursor of one query does not page another.
    let page = h.get("/v1/events?limit=1").await;
    assert_eq!(page.status, 200);
    if let Some(cursor) = page.body["next_cursor"].as_str() {
        let r = h
            .get(&format!(
                "/v1/events?limit=1&type=payment.failed&cursor={cursor}"
            ))
            .await;
        assert_eq!(r.status, 400);
    }
}

/// Every type the receiver got about `payment`, in the order they came.
fn types_about(receiver: &Receiver, payment: &str) -> Vec<String> {
    receiver
        .got()
        .iter()
        .map(|g| serde_json::from_str::<Value>(&g.body).unwrap())
        .filter(|b| b["data"]["id"] == payment || b["data"]["payment_id"] == payment)
        .map(|b| b["type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_and_top_ups_are_told_with_their_changes() {
    let h = Harness::start().await;
    let (receiver, url) = Receiver::start(&[]).await;
    endpoint(&h, &url, json!([])).await;

    // An epayment.kz deposit refunded whole: pending when sent, then
    // succeeded, and the payment refunded.
    let id = create_for(&h, "epayment", "u_events").await;
    let (status, _) = trigger(&h, "epayment", "paid", id).await;
    assert_eq!(status, 200);
    let r = h
        .post(
            &format!("/v1/payments/{id}/refund"),
            "refund-events",
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let pid = id.to_string();
    until(&h, Duration::from_secs(20), || {
        types_about(&receiver, &pid).len() >= 4
    })
    .await;
    let mut got = types_about(&receiver, &pid);
    got.sort();
    assert_eq!(
        got,
        [
            "payment.completed",
            "payment.refunded",
            "refund.pending",
            "refund.succeeded"
        ]
    );

    // A DirectPay deposit to the casino: topup.sent once the worker moved it.
    let created = h
        .create(
            "casino-events",
            &json!({"provider": "directpay", "amount": 10_000, "currency": "PHP",
                    "reference": "ORD-EVT-CASINO", "wallet_user_id": "u_events",
                    "casino": {"username": "player1"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let casino_id: shared::ids::PaymentId = created.body["id"].as_str().unwrap().parse().unwrap();
    trigger(&h, "directpay", "paid", casino_id).await;
    let batch = h.drain_queue().await;
    let answer = shared::api::worker::handle(
        h.function("worker-casino-topup"),
        batch,
        time::OffsetDateTime::now_utc(),
    )
    .await;
    assert!(answer.batch_item_failures.is_empty());
    let cid = casino_id.to_string();
    until(&h, Duration::from_secs(20), || {
        types_about(&receiver, &cid).len() >= 2
    })
    .await;
    let got = receiver
        .got()
        .iter()
        .map(|g| serde_json::from_str::<Value>(&g.body).unwrap())
        .find(|b| b["type"] == "topup.sent")
        .expect("topup.sent");
    assert_eq!(got["data"]["payment_id"], cid.as_str());
    assert_eq!(got["data"]["status"], "sent");
    assert_eq!(got["data"]["amount"], 10_000);
}

/// A storm: two hundred payments across every provider, each paid with a
/// duplicate callback and then with callbacks out of order, many at once;
/// worker-events then runs. Each payment has exactly one
/// `payment.completed` event, delivered once, and no event was made by a
/// callback that changed nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_callbacks_makes_one_completed_event_per_payment() {
    let h = Arc::new(Harness::start().await);
    let (receiver, url) = Receiver::start(&[]).await;
    endpoint(&h, &url, json!(["payment.completed"])).await;
    let mut ids = Vec::new();
    for i in 0..204 {
        let case = &common::cases::cases()[i % 6];
        ids.push((
            case.provider,
            common::cases::create(&h, case, "u_storm").await,
        ));
    }
    let mut storm = tokio::task::JoinSet::new();
    for chunk in ids.chunks(ids.len().div_ceil(8)) {
        let (h, chunk) = (h.clone(), chunk.to_vec());
        storm.spawn(async move {
            for (provider, id) in chunk {
                for event in ["duplicate", "out-of-order"] {
                    let (status, report) = trigger(&h, provider, event, id).await;
                    assert_eq!(status, 200, "{provider} {event}: {report}");
                }
            }
        });
    }
    while let Some(done) = storm.join_next().await {
        done.unwrap();
    }
    until(&h, Duration::from_secs(120), || {
        receiver.got().len() >= ids.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.run_events().await;
    let got = receiver.got();
    let mut per_payment = std::collections::BTreeMap::<String, Vec<String>>::new();
    for g in &got {
        let body: Value = serde_json::from_str(&g.body).unwrap();
        assert_eq!(body["type"], "payment.completed");
        per_payment
            .entry(body["data"]["id"].as_str().unwrap().to_string())
            .or_default()
            .push(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(per_payment.len(), ids.len(), "every payment told once");
    assert!(
        per_payment.values().all(|events| events.len() == 1),
        "a payment told twice: {:?}",
        per_payment.iter().find(|(_, e)| e.len() > 1)
    );
    // And the table holds one such event per payment.
    let merchant = common::harness::merchant();
    for (_, id) in &ids {
        let (events, _) = h
            .store()
            .events_of(
                &merchant,
                Some(shared::events::EventType::PaymentCompleted),
                Some(*id),
                100,
                None,
            )
            .await
            .unwrap();
        assert_eq!(events.len(), 1, "{id}");
    }
}

/// A receiver that redirects, and one that answers at length: the
/// redirect is not followed (the attempt is a refusal, retried), and no
/// more than 1 KiB of an answer is read or kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_and_answers_are_cut_at_1_kib() {
    let h = Harness::start().await;
    // Where a redirect would lead: it must never be reached.
    let (elsewhere, elsewhere_url) = Receiver::start(&[]).await;
    let redirecting = {
        let target = elsewhere_url.clone();
        let app = axum::Router::new()
            .route(
                "/moved",
                axum::routing::post(move || {
                    let target = target.clone();
                    async move { (StatusCode::TEMPORARY_REDIRECT, [("location", target)], "") }
                }),
            )
            .route(
                "/long",
                axum::routing::post(|| async { (StatusCode::OK, "x".repeat(64 * 1024)) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        base
    };
    let moved = endpoint(&h, &format!("{redirecting}/moved"), json!([])).await;
    let long = endpoint(&h, &format!("{redirecting}/long"), json!([])).await;
    let id = create_for(&h, "directpay", "u_events").await;
    trigger(&h, "directpay", "paid", id).await;
    let merchant = common::harness::merchant();
    let deliveries = || async {
        let (events, _) = h
            .store()
            .events_of(&merchant, None, Some(id), 10, None)
            .await
            .unwrap();
        events
            .into_iter()
            .next()
            .map(|(_, d)| d)
            .unwrap_or_default()
    };
    let start = std::time::Instant::now();
    loop {
        h.run_events().await;
        let d = deliveries().await;
        if d.len() == 2 && d.iter().all(|d| d.sent >= 1) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{d:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let d = deliveries().await;
    let of = |we: &Value| {
        d.iter()
            .find(|d| d.endpoint_id.to_string() == we["id"].as_str().unwrap())
            .unwrap()
            .clone()
    };
    let moved = of(&moved);
    assert_eq!(moved.log[0].status_code, Some(307));
    assert_eq!(
        moved.status,
        shared::store::DeliveryStatus::Pending,
        "retried, not delivered"
    );
    assert!(elsewhere.got().is_empty(), "the redirect was followed");
    let long = of(&long);
    assert_eq!(long.status, shared::store::DeliveryStatus::Delivered);
    assert_eq!(long.log[0].answer.as_ref().unwrap().len(), 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_and_writes_nothing() {
    let h = Harness::start().await;
    let before = h.items().await.len();
    let huge = json!({"url": "http://127.0.0.1:9/x", "description": "x".repeat(300 * 1024)});
    let r = h.post("/v1/webhook-endpoints", "too-big", &huge).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "body_too_large");
    assert_eq!(h.items().await.len(), before);
}

/// An item's size as DynamoDB bills it ("Item sizes and formats" in the
/// DynamoDB developer guide): each attribute's name and value in UTF-8
/// bytes, a number about one byte per two significant digits plus one,
/// a binary its length, a list or map three bytes plus its elements.
fn item_size(item: &std::collections::HashMap<String, AttributeValue>) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value(v)).sum::<usize>(),
            AttributeValue::M(m) => 3 + m.iter().map(|(k, v)| k.len() + value(v)).sum::<usize>(),
            AttributeValue::Ss(l) => l.iter().map(String::len).sum(),
            other => panic!("an attribute this test does not size: {other:?}"),
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_providers_completed_event_is_one_write_unit_and_reads_back_whole() {
    let h = Harness::start().await;
    let (receiver, url) = Receiver::start(&[]).await;
    endpoint(&h, &url, json!(["payment.completed"])).await;
    for case in common::cases::cases() {
        let id = common::cases::create(&h, &case, "u_event_size").await;
        let (code, _) = trigger(&h, case.provider, "duplicate", id).await;
        assert_eq!(code, 200, "{}", case.provider);
        let payment = h.get(&format!("/v1/payments/{id}")).await;
        assert_eq!(payment.body["status"], "completed", "{}", case.provider);

        let seen = receiver.got().len();
        until(&h, Duration::from_secs(20), || receiver.got().len() > seen).await;
        let items = h.items().await;
        let event = items
            .iter()
            .find(|i| {
                i.get("sk") == Some(&AttributeValue::S("EVENT".into()))
                    && i.get("payment_id") == Some(&AttributeValue::S(id.to_string()))
            })
            .unwrap_or_else(|| panic!("{}: no event item", case.provider));
        // As the change's transaction wrote it: before its delivery.
        let mut written = event.clone();
        assert!(
            written.remove("delivered").is_some(),
            "{}: the delivery is kept on the event",
            case.provider
        );
        written.insert("gsi2pk".into(), AttributeValue::S("OPEN#EVENT".into()));
        written.insert("gsi2sk".into(), event["gsi4sk"].clone());
        let size = item_size(&written);
        // One write unit (1 KB), two in the change's transaction; and once
        // its delivery is kept on it, still one for that update.
        for (what, size) in [("written", size), ("delivered", item_size(event))] {
            assert!(
                size <= 1024,
                "{}: the event's item {what} is {size} bytes",
                case.provider
            );
        }

        // What the log shows (and every delivery sends) is the whole body.
        let log = h.get(&format!("/v1/events?payment_id={id}")).await;
        let shown = &log.body["data"][0];
        assert_eq!(shown["type"], "payment.completed", "{}", log.text);
        assert_eq!(shown["data"]["id"], id.to_string());
        assert_eq!(shown["data"]["checkout"], payment.body["checkout"]);
        assert_eq!(shown["data"]["history"], payment.body["history"]);
        let stored = items
            .iter()
            .find(|i| {
                i.get("pk") == Some(&AttributeValue::S(format!("PAY#{id}")))
                    && i.get("sk") == Some(&AttributeValue::S("PAY".into()))
            })
            .unwrap_or_else(|| panic!("{}: no payment item", case.provider));
        eprintln!(
            "{}: the completed event's item is {size} bytes ({} delivered), the payment's {}",
            case.provider,
            item_size(event),
            item_size(stored)
        );
    }
}
