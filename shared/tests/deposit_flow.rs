//! The TMPay deposit flow end to end: a payment created through the API,
//! paid in the provider sandbox, its callback delivered over HTTP, the
//! wallet credited, the top-up sent through SQS to the worker and on to the
//! casino sandbox. DynamoDB Local, moto and the sandbox are all real.

mod common;

use common::harness::Harness;
use serde_json::{json, Value};
use shared::ids::PaymentId;
use shared::money::{Currency, Money};
use shared::payment::PaymentStatus;
use shared::store::{EntryKind, TopUpStatus};
use time::OffsetDateTime;

fn key() -> String {
    format!("idem-{}", ulid::Ulid::new())
}

fn gcash_body(amount: i64, user: &str, casino: Option<&str>) -> Value {
    let mut body = json!({
        "provider": "directpay",
        "amount": amount,
        "currency": "PHP",
        "reference": format!("ORD-{}", ulid::Ulid::new()),
        "description": "GCash deposit",
        "return_url": "https://shop.example.com/thanks",
        "wallet_user_id": user,
    });
    if let Some(c) = casino {
        body["casino"] = json!({"username": c});
    }
    body
}

fn user() -> String {
    format!("u_{}", ulid::Ulid::new())
}

async fn paid_directpay(h: &Harness, amount: i64, user: &str) -> (PaymentId, String) {
    let created = h
        .create(&key(), &gcash_body(amount, user, Some("player1")))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id: PaymentId = created.body["id"].as_str().unwrap().parse().unwrap();
    let txn = created.body["provider_reference"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(created.body["status"], "pending");
    assert!(created.body["checkout"]["qr_text"].is_string());
    (id, txn)
}

async fn mark_directpay(h: &Harness, txn: &str, status: &str) -> Value {
    h.sandbox(
        &format!("/_sandbox/directpay/transactions/{txn}/status"),
        json!({"status": status}),
    )
    .await
}

/// Asserts the whole money trail of one completed, topped-up deposit.
async fn assert_settled_once(h: &Harness, id: PaymentId, user: &str, amount: Money) {
    let payment = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(payment.status, PaymentStatus::Completed);
    let completions = payment
        .history
        .iter()
        .filter(|e| e.status == PaymentStatus::Completed)
        .count();
    assert_eq!(completions, 1);
    let user = user.parse().unwrap();
    let entries = h
        .store()
        .ledger_entries(&common::harness::merchant(), &user, 50, None)
        .await
        .unwrap()
        .0;
    let credits: Vec<_> = entries
        .iter()
        .filter(|e| e.kind() == EntryKind::Credit)
        .collect();
    let debits: Vec<_> = entries
        .iter()
        .filter(|e| e.kind() == EntryKind::Debit)
        .collect();
    assert_eq!(credits.len(), 1, "{entries:?}");
    assert_eq!(credits[0].amount, amount);
    if amount.currency() == Currency::Php {
        assert_eq!(debits.len(), 1, "{entries:?}");
        assert_eq!(debits[0].amount, amount);
        assert!(h
            .store()
            .balance(&common::harness::merchant(), &user, amount.currency())
            .await
            .unwrap()
            .is_zero());
        let topup = h.store().topup(id).await.unwrap().unwrap();
        assert_eq!(topup.status, TopUpStatus::Done);
        let transfers: Vec<_> = h
            .casino_transfers()
            .into_iter()
            .filter(|t| t.nonce == topup.nonce)
            .collect();
        assert_eq!(transfers.len(), 1, "exactly one casino transfer");
        assert_eq!(transfers[0].amount, amount.to_major_string());
        // The bridge's reply names no transaction (fixtures/casino): the
        // top-up is recorded under the nonce it was sent with.
        assert_eq!(
            topup.casino_transaction_id.as_deref(),
            Some(topup.nonce.as_str())
        );
    } else {
        assert!(debits.is_empty());
        assert_eq!(
            h.store()
                .balance(&common::harness::merchant(), &user, amount.currency())
                .await
                .unwrap(),
            amount
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directpay_deposit_reaches_the_casino_once() {
    let h = Harness::start().await;
    let u = user();
    let (id, txn) = paid_directpay(&h, 150_000, &u).await;
    let answer = mark_directpay(&h, &txn, "SUCCESS").await;
    assert_eq!(
        answer["delivered"], 200,
        "the webhook accepted the callback"
    );

    // Completed and credited in one step; the top-up waits in SQS.
    let wallet = h.get(&format!("/v1/wallets/{u}")).await;
    assert_eq!(
        wallet.body["balances"],
        json!([{"currency": "PHP", "amount": 150_000}])
    );
    let event = h.drain_queue().await;
    assert_eq!(event.records.len(), 1);

    let response = shared::api::worker::handle(&h.services, event, OffsetDateTime::now_utc()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_settled_once(&h, id, &u, Money::new(150_000, Currency::Php).unwrap()).await;

    let player = h.get("/v1/casino/users/player1").await;
    assert_eq!(player.status, 200);
    assert!(
        player.body["balance"]["amount"].as_i64().unwrap() >= 150_000,
        "{}",
        player.text
    );
    let view = h.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(view.body["status"], "completed");
    assert_eq!(view.body["topup"]["status"], "done");
    let sources: Vec<&str> = view.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["api", "webhook"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_callback_shape_completes_a_payment_too() {
    let h = Harness::start().await;
    let u = user();
    let (id, txn) = paid_directpay(&h, 15_000, &u).await;
    h.sandbox(
        &format!("/_sandbox/directpay/transactions/{txn}/status"),
        json!({"status": "SUCCESS", "callback": "seed"}),
    )
    .await;
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paygram_phpt_and_usdt_deposits_credit_once() {
    let h = Harness::start().await;
    for (amount, currency) in [(250_000, "PHPT"), (12_500_000, "USDT")] {
        let u = user();
        let created = h
            .create(
                &key(),
                &json!({"provider": "paygram", "amount": amount, "currency": currency,
                        "reference": format!("ORD-{}", ulid::Ulid::new()), "wallet_user_id": u}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id: PaymentId = created.body["id"].as_str().unwrap().parse().unwrap();
        let code = created.body["provider_reference"].as_str().unwrap();
        let answer = h
            .sandbox(
                &format!("/_sandbox/paygram/invoices/{code}/status"),
                json!({"status": 2}),
            )
            .await;
        assert_eq!(answer["delivered"], 200);
        // Paygram answers "ok".
        let again = h
            .sandbox(
                &format!("/_sandbox/paygram/invoices/{code}/callback"),
                json!({"shape": "seed"}),
            )
            .await;
        assert_eq!(again["delivered"], 200);
        let money = Money::new(amount, currency.parse().unwrap()).unwrap();
        assert_settled_once(&h, id, &u, money).await;
    }
}

/// Paygram's callbacks about no invoice (a balance change, a withdrawal,
/// money sent: the SDK's other `UserCallbackTypes`) are answered `ok`, as
/// the SDK's sample receiver answers every callback, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paygram_callbacks_about_no_invoice_are_answered_and_change_nothing() {
    let h = Harness::start().await;
    let u = user();
    let created = h
        .create(
            &key(),
            &json!({"provider": "paygram", "amount": 10_000, "currency": "PHPT",
                    "reference": format!("ORD-{}", ulid::Ulid::new()), "wallet_user_id": u}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id: PaymentId = created.body["id"].as_str().unwrap().parse().unwrap();
    let before = h.items().await;
    for kind in ["balance", "withdraw", "money_sent"] {
        let answer = h
            .sandbox("/_sandbox/paygram/callbacks", json!({"type": kind}))
            .await;
        assert_eq!(answer["delivered"], 200, "{kind}");
    }
    for name in [
        "callback.balance.assembled.json",
        "callback.withdraw.assembled.json",
        "callback.money_sent.assembled.json",
    ] {
        let body = std::fs::read_to_string(format!(
            "{}/tests/fixtures/paygram/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let answer = h
            .post_raw(
                &format!("/webhooks/paygram/{}", h.paygram_secret),
                "application/json",
                &body,
            )
            .await;
        assert_eq!((answer.status, answer.text.as_str()), (200, "ok"), "{name}");
    }
    assert_eq!(h.items().await, before);
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_identical_callbacks_then_late_ones_settle_once() {
    let h = Harness::start().await;
    let u = user();
    let (id, txn) = paid_directpay(&h, 20_000, &u).await;
    mark_directpay(&h, &txn, "SUCCESS").await;
    let h = std::sync::Arc::new(h);
    let mut deliveries = Vec::new();
    for _ in 0..20 {
        let h = h.clone();
        let txn = txn.clone();
        deliveries.push(tokio::spawn(async move {
            h.sandbox(
                &format!("/_sandbox/directpay/transactions/{txn}/callback"),
                json!({"shape": "real"}),
            )
            .await
        }));
    }
    for d in deliveries {
        assert_eq!(d.await.unwrap()["delivered"], 200);
    }
    for late in ["PENDING", "FAILED"] {
        let answer = h
            .sandbox(
                &format!("/_sandbox/directpay/transactions/{txn}/callback"),
                json!({"shape": "real", "status": late}),
            )
            .await;
        assert_eq!(answer["delivered"], 200);
    }
    let event = h.drain_queue().await;
    assert_eq!(event.records.len(), 1, "one top-up message");
    shared::api::worker::handle(&h.services, event, OffsetDateTime::now_utc()).await;
    assert_settled_once(&h, id, &u, Money::new(20_000, Currency::Php).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_callbacks_write_nothing() {
    let h = Harness::start().await;
    let u = user();
    let (id, txn) = paid_directpay(&h, 10_000, &u).await;
    let before = h.items().await;

    // A forged "paid" for a payment the provider says is unpaid.
    let forged = h
        .sandbox(
            &format!("/_sandbox/directpay/transactions/{txn}/callback"),
            json!({"shape": "real", "status": "SUCCESS"}),
        )
        .await;
    assert_eq!(forged["delivered"], 200);
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Pending);

    // Unknown payment.
    let unknown = h
        .post_raw(
            "/webhooks/directpay",
            "application/json",
            r#"{"amount":"100","refId":"nope","txnId":"DP-UNKNOWN","status":"SUCCESS"}"#,
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let ours = h
        .post_raw(
            "/webhooks/directpay",
            "application/json",
            &format!(
                r#"{{"amount":"100","refId":"{}","status":"SUCCESS"}}"#,
                PaymentId::generate()
            ),
        )
        .await;
    assert_eq!(ours.status, 404);

    // Wrong Paygram URL secret, and a malformed body.
    let wrong = h
        .post_raw("/webhooks/paygram/not-the-secret", "application/json", "{}")
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body["error"]["code"], "invalid_signature");
    let malformed = h
        .post_raw("/webhooks/directpay", "application/json", "{not json")
        .await;
    assert_eq!(malformed.status, 400);
    let malformed = h
        .post_raw(
            &format!("/webhooks/paygram/{}", h.paygram_secret),
            "application/json",
            "[1,2]",
        )
        .await;
    assert_eq!(malformed.status, 400);

    // Nothing was written by any of them but the forged hint's claim on a
    // provider confirmation (`check_ms_*`, which bounds how often callbacks
    // can make paygate ask the provider).
    let without_claims =
        |items: Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>| {
            items
                .into_iter()
                .map(|mut i| {
                    i.retain(|k, _| !k.starts_with("check_ms_"));
                    i
                })
                .collect::<Vec<_>>()
        };
    assert_eq!(without_claims(h.items().await), without_claims(before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_payment_after_expiry_completes() {
    let h = Harness::start().await;
    let u = user();
    let (id, txn) = paid_directpay(&h, 17_500, &u).await;
    mark_directpay(&h, &txn, "EXPIRED").await;
    assert_eq!(
        h.store().payment(id).await.unwrap().unwrap().status,
        PaymentStatus::Expired
    );
    mark_directpay(&h, &txn, "SUCCESS").await;
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Completed);
    let user = u.parse().unwrap();
    assert_eq!(
        h.store()
            .balance(&common::harness::merchant(), &user, Currency::Php)
            .await
            .unwrap(),
        Money::new(17_500, Currency::Php).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_pending_payment_asks_the_provider() {
    let h = Harness::start().await;
    let u = user();
    let (id, txn) = paid_directpay(&h, 13_000, &u).await;
    // Paid, but the callback is lost.
    h.sandbox(
        &format!("/_sandbox/directpay/transactions/{txn}/status"),
        json!({"status": "SUCCESS", "callback": "none"}),
    )
    .await;
    let view = h.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(view.body["status"], "completed", "{}", view.text);
    assert_eq!(view.body["provider_status"], "SUCCESS");
    let sources: Vec<&str> = view.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["api", "poll"]);
    assert_eq!(h.drain_queue().await.records.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_casino_failing_twice_still_gets_one_transfer() {
    let h = Harness::start().await;
    let u = user();
    let (id, txn) = paid_directpay(&h, 40_000, &u).await;
    mark_directpay(&h, &txn, "SUCCESS").await;
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/casino/Default/Transfer", "mode": "fail", "count": 2, "status": 502}),
    )
    .await;
    let event = h.drain_queue().await;
    let response = shared::api::worker::handle(&h.services, event, OffsetDateTime::now_utc()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_settled_once(&h, id, &u, Money::new(40_000, Currency::Php).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_casino_outage_is_retried_through_the_queue() {
    let h = Harness::start().await;
    let u = user();
    let (id, txn) = paid_directpay(&h, 19_900, &u).await;
    mark_directpay(&h, &txn, "SUCCESS").await;
    // Down for longer than one invocation's retries.
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/casino/Default/Transfer", "mode": "fail", "count": 3, "status": 503}),
    )
    .await;
    let event = h.drain_queue().await;
    let message_id = event.records[0].message_id.clone().unwrap();
    let first =
        shared::api::worker::handle(&h.services, event.clone(), OffsetDateTime::now_utc()).await;
    assert_eq!(first.batch_item_failures.len(), 1);
    assert_eq!(first.batch_item_failures[0].item_identifier, message_id);
    assert_eq!(
        h.store().topup(id).await.unwrap().unwrap().status,
        TopUpStatus::Queued
    );
    // SQS delivers it again.
    let second = shared::api::worker::handle(&h.services, event, OffsetDateTime::now_utc()).await;
    assert!(second.batch_item_failures.is_empty());
    assert_settled_once(&h, id, &u, Money::new(19_900, Currency::Php).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_after_the_transfer_does_not_transfer_again() {
    let h = Harness::start().await;
    let u = user();
    let (id, txn) = paid_directpay(&h, 12_000, &u).await;
    mark_directpay(&h, &txn, "SUCCESS").await;
    let event = h.drain_queue().await;

    // The first worker takes the lease and transfers, then dies before it
    // records anything.
    let t0 = OffsetDateTime::now_utc();
    let shared::store::AcquireOutcome::Acquired(held) = h
        .store()
        .acquire_topup(id, t0, shared::services::TOPUP_LEASE)
        .await
        .unwrap()
    else {
        panic!("acquire")
    };
    let casino = h.services.casino().await.unwrap();
    let player = casino.player(&held.username).await.unwrap().unwrap();
    casino
        .transfer(&player, held.amount, &held.nonce, "dying worker")
        .await
        .unwrap();
    assert_eq!(h.casino_transfers().len(), 1);

    // While its lease runs, a redelivery leaves the message for later.
    let early = shared::api::worker::handle(&h.services, event.clone(), t0).await;
    assert_eq!(early.batch_item_failures.len(), 1);
    // After the lease, the redelivered message is settled with the same nonce.
    let later = t0 + time::Duration::seconds(61);
    let response = shared::api::worker::handle(&h.services, event, later).await;
    assert!(response.batch_item_failures.is_empty());
    assert_settled_once(&h, id, &u, Money::new(12_000, Currency::Php).unwrap()).await;
    assert_eq!(h.store().topup(id).await.unwrap().unwrap().attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_payment_honours_idempotency_keys() {
    let h = Harness::start().await;
    let k = key();
    let body = gcash_body(11_000, &user(), None);
    let first = h.create(&k, &body).await;
    assert_eq!(first.status, 201);
    let replay = h.create(&k, &body).await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.text, first.text, "the first response, byte for byte");
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(
        h.sandbox.state.directpay.transactions.lock().unwrap().len(),
        1
    );

    let mut other = body.clone();
    other["amount"] = json!(11_001);
    let mismatch = h.create(&k, &other).await;
    assert_eq!(mismatch.status, 422);
    assert_eq!(mismatch.body["error"]["code"], "idempotency_key_reused");
    assert!(mismatch.body["error"]["request_id"].is_string());

    // A first request still running: begin it by hand, as a concurrent
    // invocation would.
    let running = key();
    let body2 = gcash_body(12_000, &user(), None);
    let scope = shared::store::IdempotencyScope {
        merchant: common::harness::MERCHANT.parse().unwrap(),
        operation: "create_payment",
    };
    let now = OffsetDateTime::now_utc();
    h.store()
        .begin_idempotent(
            &scope,
            &running.parse().unwrap(),
            &shared::store::fingerprint("create_payment", &body2),
            now,
            now + time::Duration::seconds(30),
            now + time::Duration::hours(24),
        )
        .await
        .unwrap();
    let in_progress = h.create(&running, &body2).await;
    assert_eq!(in_progress.status, 409);
    assert_eq!(in_progress.body["error"]["code"], "idempotency_in_progress");

    // Same reference, new key: 409 duplicate_reference.
    let dup = h.create(&key(), &body).await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.body["error"]["code"], "duplicate_reference");
}

/// A create claims its merchant reference before it calls the provider
/// (decision 59): of two creates racing for one reference, the second is
/// refused before any provider call; a create the provider refuses gives
/// the reference back; a create that died holding it is taken over by its
/// retry (the same key) or, once it lapsed, by any create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_is_claimed_before_the_provider_is_called() {
    let h = Harness::start().await;
    let calls = || h.sandbox.state.calls("/directpay/api/pay_cashin");
    let body = gcash_body(13_000, &user(), None);
    // The first create waits at the provider while the second comes.
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/directpay/api/pay_cashin", "mode": "delay", "count": 1, "delay_ms": 1500}),
    )
    .await;
    let before = calls();
    let (k1, k2) = (key(), key());
    let (first, second) = tokio::join!(h.create(&k1, &body), async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        h.create(&k2, &body).await
    });
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(second.status, 409, "{}", second.text);
    assert_eq!(second.body["error"]["code"], "duplicate_reference");
    assert_eq!(calls() - before, 1, "one invoice at the provider");

    // Refused by the provider: the reference is free again.
    let refused = gcash_body(13_000, &user(), None);
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/directpay/api/pay_cashin", "mode": "fail", "count": 1, "status": 422}),
    )
    .await;
    assert_eq!(h.create(&key(), &refused).await.status, 502);
    let again = h.create(&key(), &refused).await;
    assert_eq!(again.status, 201, "{}", again.text);

    // A create that died after claiming its key and its reference: its
    // retry takes both over once the key's claim lapsed.
    let store = h.store();
    let merchant: shared::ids::MerchantId = common::harness::MERCHANT.parse().unwrap();
    let now = OffsetDateTime::now_utc();
    let died = gcash_body(13_000, &user(), None);
    let died_key = key();
    let reference: shared::ids::MerchantReference =
        died["reference"].as_str().unwrap().parse().unwrap();
    let scope = shared::store::IdempotencyScope {
        merchant: merchant.clone(),
        operation: "create_payment",
    };
    store
        .begin_idempotent(
            &scope,
            &died_key.parse().unwrap(),
            &shared::store::fingerprint("create_payment", &died),
            now,
            now - time::Duration::seconds(1),
            now + time::Duration::hours(24),
        )
        .await
        .unwrap();
    let ghost = PaymentId::generate();
    let lapsed = now - time::Duration::seconds(1);
    assert_eq!(
        store
            .claim_reference(&merchant, &reference, ghost, &died_key, lapsed)
            .await
            .unwrap(),
        None
    );
    // Another key is refused while the claim is young.
    let other = h.create(&key(), &died).await;
    assert_eq!(other.status, 409, "{}", other.text);
    let retried = h.create(&died_key, &died).await;
    assert_eq!(retried.status, 201, "{}", retried.text);
    let id: PaymentId = retried.body["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        store
            .payment_id_for_reference(&merchant, &reference)
            .await
            .unwrap(),
        Some(id)
    );

    // A claim whose create ended long ago, its payment never stored: any
    // create takes it.
    let old = gcash_body(13_000, &user(), None);
    let reference: shared::ids::MerchantReference =
        old["reference"].as_str().unwrap().parse().unwrap();
    let long_ago = now - shared::store::REFERENCE_LAPSE - time::Duration::seconds(1);
    store
        .claim_reference(
            &merchant,
            &reference,
            PaymentId::generate(),
            "gone",
            long_ago,
        )
        .await
        .unwrap();
    let taken = h.create(&key(), &old).await;
    assert_eq!(taken.status, 201, "{}", taken.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchant_routes_need_a_valid_api_key() {
    let h = Harness::start().await;
    let url = format!("{}/v1/payments", h.api);
    let body = gcash_body(11_000, &user(), None);
    let none = h
        .http
        .post(&url)
        .header("Idempotency-Key", key())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let wrong = h
        .http
        .post(&url)
        .bearer_auth("pk_test_wrong")
        .header("Idempotency-Key", key())
        .json(&body)
        .send()
        .await
        .unwrap();
    // API Gateway's answer to a refused key (docs/decisions.md).
    assert_eq!(wrong.status(), 403);
    let get = h
        .http
        .get(format!("{}/v1/wallets/u_1", h.api))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 401);
    assert!(h
        .sandbox
        .state
        .directpay
        .transactions
        .lock()
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_create_requests_get_typed_errors_and_write_nothing() {
    let h = Harness::start().await;
    let before = h.items().await;
    let cases = [
        (
            json!({"provider": "directpay", "amount": 100, "currency": "EUR", "reference": "R1"}),
            422,
            "unsupported_currency",
        ),
        (
            json!({"provider": "stripe", "amount": 100, "currency": "PHP", "reference": "R1"}),
            422,
            "unsupported_provider",
        ),
        (
            json!({"provider": "directpay", "amount": -5, "currency": "PHP", "reference": "R1"}),
            422,
            "invalid_amount",
        ),
        (
            json!({"provider": "directpay", "amount": 100, "currency": "USDT", "reference": "R1"}),
            422,
            "unsupported_currency",
        ),
        (
            json!({"provider": "directpay", "amount": 100, "currency": "PHP", "reference": "R 1"}),
            422,
            "invalid_reference",
        ),
        (
            json!({"provider": "directpay", "amount": 100, "currency": "PHP", "reference": "R1", "casino": {"username": "player1"}}),
            422,
            "casino_requires_wallet",
        ),
        (
            json!({"provider": "directpay", "amount": 9_999, "currency": "PHP", "reference": "R1"}),
            422,
            "amount_below_minimum",
        ),
        (
            json!({"provider": "directpay", "amount": 1.5, "currency": "PHP", "reference": "R1"}),
            400,
            "malformed_body",
        ),
        (
            json!({"provider": "directpay", "currency": "PHP", "reference": "R1"}),
            400,
            "malformed_body",
        ),
    ];
    for (body, status, code) in cases {
        let r = h.create(&key(), &body).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    assert_eq!(
        h.sandbox.state.calls("/directpay/api/pay_cashin"),
        0,
        "each was refused before any provider call"
    );
    let r = h.post_raw("/v1/payments", "application/json", "{}").await;
    assert_eq!(r.status, 401, "no API key");
    // A rejected provider call: 502 with the provider's words, nothing stored.
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/directpay/api/pay_cashin", "mode": "fail", "count": 1, "status": 422}),
    )
    .await;
    let r = h.create(&key(), &gcash_body(10_000, &user(), None)).await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "provider_error");
    assert_eq!(h.items().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_idempotency_key_is_a_bad_request_that_writes_nothing() {
    use reqwest::header::HeaderValue;
    let h = Harness::start().await;
    let before = h.items().await.len();
    // A valid body beside each key, and an invalid one: the header is
    // judged first, as a malformed request.
    let good = json!({"provider": "directpay", "amount": 15_000, "currency": "PHP",
                      "reference": format!("ORD-{}", ulid::Ulid::new())});
    let bad_body = json!({"provider": "directpay", "amount": -1, "currency": "PHP",
                          "reference": "x"});
    let long = "k".repeat(256);
    let keys: [&[u8]; 5] = [
        b"",
        long.as_bytes(),
        "cl\u{e9}".as_bytes(),
        b"two words",
        b"tab\there",
    ];
    for key in keys {
        for body in [&good, &bad_body] {
            let r = h
                .http
                .post(format!("{}/v1/payments", h.api))
                .bearer_auth(common::harness::API_KEY)
                .header("Idempotency-Key", HeaderValue::from_bytes(key).unwrap())
                .json(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let answer: Value = r.json().await.unwrap();
            assert_eq!(status, 400, "{key:?}: {answer}");
            assert_eq!(
                answer["error"]["code"], "idempotency_key_invalid",
                "{key:?}: {answer}"
            );
        }
    }
    assert_eq!(h.items().await.len(), before, "nothing written");
}
