//! The Payment Engine against the sandbox: login and refresh or an API key,
//! its error body, and signed events (both schemes) deduplicated by eventId.

mod common;

use common::harness::Harness;
use serde_json::json;
use shared::money::{Currency, Money};
use shared::payment::PaymentStatus;
use shared::providers::payment_engine::{
    PaymentEngineAuth, PaymentEngineClient, PaymentEngineConfig,
};
use shared::providers::transport::HttpPolicy;
use shared::providers::{CreateRequest, Gateway, ProviderError};

fn usd(cents: i64) -> Money {
    Money::new(cents, Currency::Usd).unwrap()
}

fn client(h: &Harness, auth: PaymentEngineAuth, account: &str) -> PaymentEngineClient {
    PaymentEngineClient::new(
        PaymentEngineConfig {
            base_url: format!("{}/payment-engine", h.sandbox.url()),
            auth,
            to_account_id: account.into(),
            webhook_secret: sandbox::payment_engine::WEBHOOK_SECRET.to_string().into(),
            standard_webhooks_secret: None,
        },
        HttpPolicy {
            base_backoff: std::time::Duration::from_millis(5),
            ..HttpPolicy::default()
        },
    )
    .unwrap()
}

async fn create(h: &Harness, cents: i64, user: &str) -> (shared::ids::PaymentId, String) {
    let r = h
        .create(
            &format!("k-{}", ulid::Ulid::new()),
            &json!({"provider": "payment_engine", "amount": cents, "currency": "USD", "method": "RTP",
                    "reference": format!("ORD-{}", ulid::Ulid::new()), "wallet_user_id": user}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let txn = r.body["provider_reference"].as_str().unwrap().to_string();
    (r.body["id"].as_str().unwrap().parse().unwrap(), txn)
}

async fn settle(h: &Harness, txn: &str, body: serde_json::Value) -> serde_json::Value {
    h.sandbox(
        &format!("/_sandbox/payment-engine/transactions/{txn}/settle"),
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_completion_applies_once_and_a_replayed_event_id_changes_nothing() {
    let h = Harness::start().await;
    let (id, txn) = create(&h, 1_250, "u_pe").await;
    let first = settle(
        &h,
        &txn,
        json!({"status": "COMPLETED", "event_id": "evt_one"}),
    )
    .await;
    assert_eq!(first["delivered"], 200);
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Completed);
    let u = "u_pe".parse().unwrap();
    assert_eq!(
        h.store()
            .balance(&common::harness::merchant(), &u, Currency::Usd)
            .await
            .unwrap(),
        usd(1_250)
    );

    let before = h.items().await;
    let replay = settle(&h, &txn, json!({"status": "FAILED", "event_id": "evt_one"})).await;
    assert_eq!(replay["delivered"], 200, "a replay is acknowledged");
    assert_eq!(h.items().await, before, "and has no second effect");

    // An event id seen before is not processed again, whatever it carries.
    let (other, other_txn) = create(&h, 300, "u_pe2").await;
    let reused = settle(
        &h,
        &other_txn,
        json!({"status": "COMPLETED", "event_id": "evt_one"}),
    )
    .await;
    assert_eq!(reused["delivered"], 200);
    assert_eq!(
        h.store().payment(other).await.unwrap().unwrap().status,
        PaymentStatus::Pending
    );

    // Balance events concern no payment: accepted and recorded.
    let b = h
        .sandbox("/_sandbox/payment-engine/balance-event", json!({}))
        .await;
    assert_eq!(b["delivered"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_stale_timestamps_are_401_and_write_nothing() {
    let h = Harness::start().await;
    let (id, txn) = create(&h, 500, "u_sig").await;
    let before = h.items().await;
    let body = format!(
        r#"{{"eventId":"evt_forged","eventType":"transaction.completed","data":{{"transactionId":"{txn}","transactionReference":"{id}","status":"COMPLETED","amount":5,"currencyCode":"USD"}}}}"#
    );
    let r = h
        .http
        .post(format!("{}/webhooks/payment-engine", h.api))
        .header("content-type", "application/json")
        .header(
            "x-webhook-signature",
            "sha256=0000000000000000000000000000000000000000000000000000000000000000",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for offset in [-301, 301] {
        let late = settle(
            &h,
            &txn,
            json!({"status": "COMPLETED", "scheme": "standard", "timestamp_offset": offset}),
        )
        .await;
        assert_eq!(late["delivered"], 401, "offset {offset}");
    }
    assert_eq!(h.items().await, before);
    assert_eq!(
        h.store().payment(id).await.unwrap().unwrap().status,
        PaymentStatus::Pending
    );
    let ok = settle(
        &h,
        &txn,
        json!({"status": "COMPLETED", "scheme": "standard", "timestamp_offset": -200}),
    )
    .await;
    assert_eq!(ok["delivered"], 200);
    assert_eq!(
        h.store().payment(id).await.unwrap().unwrap().status,
        PaymentStatus::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_mismatched_amounts_are_applied_from_the_signed_event() {
    let h = Harness::start().await;
    let (failed, txn) = create(&h, 700, "u_f").await;
    settle(&h, &txn, json!({"status": "FAILED"})).await;
    assert_eq!(
        h.store().payment(failed).await.unwrap().unwrap().status,
        PaymentStatus::Failed
    );
    let (short, txn) = create(&h, 700, "u_s").await;
    settle(&h, &txn, json!({"status": "COMPLETED", "amount": "6.99"})).await;
    assert_eq!(
        h.store().payment(short).await.unwrap().unwrap().status,
        PaymentStatus::NeedsReview
    );
    assert!(h
        .store()
        .balance(
            &common::harness::merchant(),
            &"u_s".parse().unwrap(),
            Currency::Usd
        )
        .await
        .unwrap()
        .is_zero());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_logs_in_refreshes_or_uses_an_api_key_and_maps_errors() {
    let h = Harness::start().await;
    let login = PaymentEngineAuth::Login {
        username: sandbox::payment_engine::USERNAME.into(),
        password: sandbox::payment_engine::PASSWORD.to_string().into(),
    };
    let c = client(&h, login, sandbox::payment_engine::ACCOUNT);
    assert_eq!(
        c.balance(sandbox::payment_engine::ACCOUNT).await.unwrap(),
        usd(125_075)
    );
    h.sandbox("/_sandbox/payment-engine/expire-tokens", json!({}))
        .await;
    c.balance(sandbox::payment_engine::ACCOUNT).await.unwrap();
    assert_eq!(*h.sandbox.state.payment_engine.logins.lock().unwrap(), 1);
    assert_eq!(*h.sandbox.state.payment_engine.refreshes.lock().unwrap(), 1);

    let keyed = client(
        &h,
        PaymentEngineAuth::ApiKey {
            api_key: sandbox::payment_engine::API_KEY.to_string().into(),
        },
        "acc_unknown",
    );
    let request = CreateRequest {
        payment_id: shared::ids::PaymentId::generate(),
        amount: usd(100),
        description: None,
        customer: &Default::default(),
        return_url: None,
        method: None,
        webhook_url: "unused",
        sequence: None,
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::minutes(30),
    };
    let err = keyed.create(&request).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { code, status: 404, .. } if code == "NOT_FOUND"),
        "{err:?}"
    );
    // 503 then success: retried (reads are safe to repeat).
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/payment-engine/api/v1/accounts/", "mode": "fail", "count": 2, "status": 503}),
    )
    .await;
    assert_eq!(
        keyed
            .balance(sandbox::payment_engine::ACCOUNT)
            .await
            .unwrap(),
        usd(125_075)
    );
    assert!(!format!("{keyed:?}").contains(sandbox::payment_engine::API_KEY));
}

/// A Payment Engine event for `txn` (our payment `id`), signed as the seed
/// signs them (`sha256=` HMAC of the raw body) with `secret`.
async fn signed_event(
    h: &Harness,
    id: shared::ids::PaymentId,
    txn: &str,
    major: i64,
    secret: &str,
) -> u16 {
    use hmac::{Hmac, Mac};
    let body = format!(
        r#"{{"eventId":"evt_{}","eventType":"transaction.completed","data":{{"transactionId":"{txn}","transactionReference":"{id}","status":"COMPLETED","amount":{major},"currencyCode":"USD"}}}}"#,
        ulid::Ulid::new()
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    h.http
        .post(format!("{}/webhooks/payment-engine", h.api))
        .header("content-type", "application/json")
        .header("x-webhook-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_webhook_secret_is_read_again_without_a_cold_start() {
    let h = Harness::start().await;
    let (first, txn1) = create(&h, 500, "u_rotate").await;
    let (second, txn2) = create(&h, 600, "u_rotate").await;
    // A warm instance: its parser holds the secret it read.
    assert_eq!(
        signed_event(&h, first, &txn1, 5, sandbox::payment_engine::WEBHOOK_SECRET).await,
        200
    );
    // The operator rotates the secret; the provider signs with the new one.
    let rotated = "rotated-pe-webhook-secret";
    h.stack
        .put_secret(
            &format!("{}payment-engine", h.services.settings.secret_prefix),
            &json!({"base_url": format!("{}/payment-engine", h.sandbox.url()),
                    "auth": {"username": sandbox::payment_engine::USERNAME,
                             "password": sandbox::payment_engine::PASSWORD},
                    "to_account_id": sandbox::payment_engine::ACCOUNT,
                    "webhook_secret": rotated,
                    "standard_webhooks_secret": sandbox::payment_engine::STANDARD_SECRET})
            .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(signed_event(&h, second, &txn2, 6, rotated).await, 200);
    assert_eq!(
        h.store().payment(second).await.unwrap().unwrap().status,
        PaymentStatus::Completed
    );
    // The old secret no longer verifies, and a forgery stays a 401.
    let (third, txn3) = create(&h, 700, "u_rotate").await;
    for secret in [sandbox::payment_engine::WEBHOOK_SECRET, "forged"] {
        assert_eq!(signed_event(&h, third, &txn3, 7, secret).await, 401);
    }
    assert_eq!(
        h.store().payment(third).await.unwrap().unwrap().status,
        PaymentStatus::Pending
    );
}
