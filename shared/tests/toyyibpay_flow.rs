//! ToyyibPay end to end against the sandbox: the client's contract, and
//! callbacks (urlencoded and multipart) through the webhook handler.

mod common;

use common::harness::Harness;
use serde_json::json;
use shared::ids::PaymentId;
use shared::money::{Currency, Money};
use shared::payment::PaymentStatus;
use shared::providers::toyyibpay::{ToyyibPayClient, ToyyibPayConfig};
use shared::providers::transport::HttpPolicy;
use shared::providers::{CreateRequest, Gateway, ProviderError};

fn myr(sen: i64) -> Money {
    Money::new(sen, Currency::Myr).unwrap()
}

fn client(h: &Harness, key: &str) -> ToyyibPayClient {
    ToyyibPayClient::new(
        ToyyibPayConfig {
            base_url: format!("{}/toyyibpay", h.sandbox.url()),
            secret_key: key.to_string().into(),
            category_code: None,
            category_name: "paygate".into(),
            webhook_hmac_secret: None,
        },
        HttpPolicy::default(),
    )
    .unwrap()
}

/// Creates a MYR payment through the API; returns (id, bill code).
async fn create(h: &Harness, sen: i64, user: &str) -> (PaymentId, String) {
    let r = h
        .create(
            &format!("k-{}", ulid::Ulid::new()),
            &json!({"provider": "toyyibpay", "amount": sen, "currency": "MYR",
                    "reference": format!("ORD-{}", ulid::Ulid::new()),
                    "description": "Order ORD-2025-0001 (2 items)", "method": "fpx",
                    "customer": {"name": "Aisyah", "email": "a@example.com", "phone": "+60123456789"},
                    "return_url": "https://shop.example.com/thank-you", "wallet_user_id": user}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let code = r.body["provider_reference"].as_str().unwrap().to_string();
    assert!(r.body["checkout"]["url"].as_str().unwrap().ends_with(&code));
    (r.body["id"].as_str().unwrap().parse().unwrap(), code)
}

async fn attempt(h: &Harness, code: &str, body: serde_json::Value) -> serde_json::Value {
    h.sandbox(&format!("/_sandbox/toyyibpay/bills/{code}/attempt"), body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_creates_bills_and_reads_their_attempts() {
    let h = Harness::start().await;
    let c = client(&h, sandbox::toyyibpay::SECRET_KEY);
    let request = CreateRequest {
        payment_id: PaymentId::generate(),
        amount: myr(9990),
        description: Some("Order #1 — café & co."),
        customer: &Default::default(),
        return_url: None,
        method: Some("both"),
        webhook_url: "http://127.0.0.1:9/webhooks/toyyibpay",
        sequence: None,
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::minutes(30),
    };
    let created = c.create(&request).await.unwrap();
    let again = c
        .create(&CreateRequest {
            payment_id: PaymentId::generate(),
            ..request.clone()
        })
        .await
        .unwrap();
    assert_ne!(created.provider_reference, again.provider_reference);
    // One category, created once and reused.
    assert_eq!(
        h.sandbox.state.toyyibpay.categories.lock().unwrap().len(),
        1
    );
    assert_eq!(
        h.sandbox
            .state
            .calls("/toyyibpay/index.php/api/createCategory"),
        1
    );
    let bill = h.sandbox.state.toyyibpay.bills.lock().unwrap()[created.provider_reference.as_str()]
        .clone();
    assert_eq!(bill.amount_sen, 9990, "billAmount is sen");

    let mut payment = shared::payment::Payment::new(
        shared::payment::NewPayment {
            id: request.payment_id,
            merchant_id: "m_local".parse().unwrap(),
            provider: shared::payment::Provider::Toyyibpay,
            amount: myr(9990),
            reference: "R1".parse().unwrap(),
            description: None,
            customer: Default::default(),
            return_url: None,
            method: None,
            wallet_user_id: None,
            casino_username: None,
            provider_reference: Some(created.provider_reference.clone()),
            checkout: Default::default(),
            page_token: None,
            expires_at: time::OffsetDateTime::now_utc(),
        },
        shared::payment::ChangeSource::Api,
        time::OffsetDateTime::now_utc(),
    );
    let none = c.status(&payment).await.unwrap();
    assert_eq!(none.status, PaymentStatus::Pending);
    let code = created.provider_reference.to_string();
    // A failed FPX attempt leaves the bill payable: still pending.
    attempt(&h, &code, json!({"status": 3, "callback": "none"})).await;
    let failed = c.status(&payment).await.unwrap();
    assert_eq!(
        (failed.status, failed.provider_status.as_str()),
        (PaymentStatus::Pending, "3")
    );
    attempt(&h, &code, json!({"status": 1, "callback": "none"})).await;
    let paid = c.status(&payment).await.unwrap();
    assert_eq!(
        (paid.status, paid.amount),
        (PaymentStatus::Completed, Some(myr(9990)))
    );

    // A paid bill cannot be deactivated; an unpaid one can.
    assert!(matches!(
        c.inactive_bill(&code).await,
        Err(ProviderError::Rejected { .. })
    ));
    c.inactive_bill(again.provider_reference.as_str())
        .await
        .unwrap();

    // A wrong key is ToyyibPay's [KEY-DID-NOT-EXIST], not data. (Reading a
    // bill's transactions takes no key: its code is enough.)
    payment.provider_reference = Some(code.parse().unwrap());
    assert!(client(&h, "wrong-key").status(&payment).await.is_ok());
    let err = client(&h, "wrong-key")
        .inactive_bill(&code)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { code, .. } if code == "KEY-DID-NOT-EXIST"),
        "{err:?}"
    );
    assert!(!format!("{err:?}").contains("wrong-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_category_is_learned_once_and_kept_for_later_cold_starts() {
    let h = Harness::start().await;
    create(&h, 1000, "u_cat").await;
    assert_eq!(
        h.sandbox
            .state
            .calls("/toyyibpay/index.php/api/createCategory"),
        1
    );
    let code = h
        .store()
        .setting("toyyibpay-category#paygate")
        .await
        .unwrap()
        .unwrap();
    assert!(h
        .sandbox
        .state
        .toyyibpay
        .categories
        .lock()
        .unwrap()
        .values()
        .any(|c| *c == code));
    // A new process (fresh caches) over the same table.
    let cold = h.cold_instance();
    cold.gateway(shared::payment::Provider::Toyyibpay)
        .await
        .unwrap();
    assert_eq!(
        h.sandbox
            .state
            .calls("/toyyibpay/index.php/api/createCategory"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_bill_completes_once_whatever_the_callbacks_say() {
    let h = Harness::start().await;
    let user = format!("u_{}", ulid::Ulid::new());
    let (id, code) = create(&h, 9990, &user).await;
    let first = attempt(&h, &code, json!({"status": 1})).await;
    assert_eq!(first["delivered"], 200);
    // Duplicates in the other encoding, then a late failure.
    for body in [
        json!({"shape": "multipart"}),
        json!({"shape": "urlencoded"}),
        json!({"status": 3}),
    ] {
        let r = h
            .sandbox(&format!("/_sandbox/toyyibpay/bills/{code}/callback"), body)
            .await;
        assert_eq!(r["delivered"], 200);
    }
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Completed);
    assert_eq!(p.provider_status.as_deref(), Some("1"));
    let u = user.parse().unwrap();
    assert_eq!(
        h.store()
            .balance(&common::harness::merchant(), &u, Currency::Myr)
            .await
            .unwrap(),
        myr(9990)
    );
    assert_eq!(
        h.store()
            .ledger_entries(&common::harness::merchant(), &u, 50, None)
            .await
            .unwrap()
            .0
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_hash_is_401_and_writes_nothing() {
    let h = Harness::start().await;
    let (id, code) = create(&h, 5000, "u_tamper").await;
    attempt(&h, &code, json!({"status": 3, "callback": "none"})).await;
    let before = h.items().await;
    let forged = h
        .sandbox(
            &format!("/_sandbox/toyyibpay/bills/{code}/callback"),
            json!({"status": 1, "tamper": true}),
        )
        .await;
    assert_eq!(forged["delivered"], 401);
    assert_eq!(h.items().await, before);
    assert_eq!(
        h.store().payment(id).await.unwrap().unwrap().status,
        PaymentStatus::Pending
    );
}

/// The official API reference lists no `hash` among the callback's
/// parameters: a callback without one is a hint, confirmed with
/// getBillTransactions (a forged "paid" for an unpaid bill moves nothing;
/// the real one completes the payment), never a 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_without_a_hash_is_confirmed_not_refused() {
    let h = Harness::start().await;
    let (id, code) = create(&h, 5000, "u_nohash").await;
    let paid = attempt(&h, &code, json!({"status": 1, "hash": false})).await;
    assert_eq!(paid["delivered"], 200, "a hint, not a refusal");
    assert_eq!(
        h.store().payment(id).await.unwrap().unwrap().status,
        PaymentStatus::Completed
    );
    let balance = h
        .store()
        .balance(
            &common::harness::merchant(),
            &"u_nohash".parse().unwrap(),
            Currency::Myr,
        )
        .await
        .unwrap();
    assert_eq!(balance, myr(5000));
    // A "paid" without a hash for a bill whose only attempt failed: the
    // confirmation finds no success, and nothing moves.
    let (forged, code) = create(&h, 5000, "u_nohash2").await;
    attempt(&h, &code, json!({"status": 3, "callback": "none"})).await;
    let claimed = h
        .sandbox(
            &format!("/_sandbox/toyyibpay/bills/{code}/callback"),
            json!({"status": 1, "hash": false}),
        )
        .await;
    assert_eq!(claimed["delivered"], 200);
    assert_eq!(
        h.store().payment(forged).await.unwrap().unwrap().status,
        PaymentStatus::Pending
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amount_off_by_more_than_a_sen_goes_to_review_without_credit() {
    let h = Harness::start().await;
    let (id, code) = create(&h, 9990, "u_short").await;
    let r = attempt(&h, &code, json!({"status": 1, "amount_sen": 9900})).await;
    assert_eq!(r["delivered"], 200, "the delivery is accepted");
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::NeedsReview);
    let u = "u_short".parse().unwrap();
    assert!(h
        .store()
        .balance(&common::harness::merchant(), &u, Currency::Myr)
        .await
        .unwrap()
        .is_zero());
    assert!(h
        .store()
        .ledger_entries(&common::harness::merchant(), &u, 50, None)
        .await
        .unwrap()
        .0
        .is_empty());

    // One sen of rounding is the same money.
    let (id, code) = create(&h, 9990, "u_round").await;
    attempt(&h, &code, json!({"status": 1, "amount_sen": 9989})).await;
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Completed);
    let u = "u_round".parse().unwrap();
    assert_eq!(
        h.store()
            .balance(&common::harness::merchant(), &u, Currency::Myr)
            .await
            .unwrap(),
        myr(9990)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_bill_is_cancelled_at_toyyibpay_first() {
    let h = Harness::start().await;
    let (id, code) = create(&h, 4500, "u_cancel").await;
    let path = format!("/v1/payments/{id}/cancel");
    let body = json!({"reason": "customer changed their mind"});
    let first = h.post(&path, "cancel-1", &body).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["status"], "cancelled");
    assert!(!h.sandbox.state.toyyibpay.bills.lock().unwrap()[&code].active);
    let replay = h.post(&path, "cancel-1", &body).await;
    assert_eq!(
        (replay.status, replay.text.as_str()),
        (200, first.text.as_str())
    );
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(
        h.sandbox
            .state
            .calls("/toyyibpay/index.php/api/inactiveBill"),
        1
    );

    let again = h.post(&path, "cancel-2", &body).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.body["error"]["code"], "invalid_state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_pending_payments_at_providers_that_cancel_can_be_cancelled() {
    let h = Harness::start().await;
    let (id, code) = create(&h, 4500, "u_paid").await;
    attempt(&h, &code, json!({"status": 1})).await;
    let paid = h
        .post(&format!("/v1/payments/{id}/cancel"), "c-1", &json!({}))
        .await;
    assert_eq!(paid.status, 409);
    assert_eq!(paid.body["error"]["code"], "invalid_state");

    let gcash = h
        .create(
            "gcash-1",
            &json!({"provider": "directpay", "amount": 10_000, "currency": "PHP", "reference": "ORD-GC-1"}),
        )
        .await;
    let before = h.items().await;
    let id = gcash.body["id"].as_str().unwrap();
    let unsupported = h
        .post(&format!("/v1/payments/{id}/cancel"), "c-2", &json!({}))
        .await;
    assert_eq!(unsupported.status, 422);
    assert_eq!(unsupported.body["error"]["code"], "unsupported_operation");
    assert_eq!(h.items().await, before, "a refused cancel writes nothing");
    let missing = h
        .post(
            &format!("/v1/payments/{}/cancel", PaymentId::generate()),
            "c-3",
            &json!({}),
        )
        .await;
    assert_eq!(missing.status, 404);
}

/// Reads a `key=value`-per-line fixture form.
fn form_fixture(name: &str) -> Vec<(String, String)> {
    let path = format!(
        "{}/tests/fixtures/toyyibpay/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_answers_the_documented_inactive_bill_request_in_its_documented_shape() {
    let h = Harness::start().await;
    let (_, code) = create(&h, 4500, "u_inactive").await;
    // The official sample request, with this bill and the sandbox's key.
    let form: Vec<(String, String)> = form_fixture("inactive_bill.request.form")
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "billCode" => (k, code.clone()),
            "secretKey" => (k, sandbox::toyyibpay::SECRET_KEY.to_string()),
            _ => (k, v),
        })
        .collect();
    let url = format!("{}/toyyibpay/index.php/api/inactiveBill", h.sandbox.url());
    let answer = |form: Vec<(String, String)>| {
        let (http, url) = (h.http.clone(), url.clone());
        async move {
            http.post(url)
                .form(&form)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let keys = |v: &serde_json::Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    let documented = |name: &str| {
        let path = format!(
            "{}/tests/fixtures/toyyibpay/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let first = answer(form.clone()).await;
    assert_eq!(first, documented("inactive_bill.reply.success.json"));
    let again = answer(form).await;
    assert_eq!(again, documented("inactive_bill.reply.inactive.json"));
    assert_eq!(keys(&first), keys(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_whose_answer_is_lost_is_done_on_the_repeat() {
    let h = Harness::start().await;
    let (id, code) = create(&h, 4500, "u_lost_cancel").await;
    // ToyyibPay makes the bill inactive, then the answer is lost; the
    // client's repeat is told the bill is inactive.
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/toyyibpay/index.php/api/inactiveBill", "mode": "apply_fail", "count": 1, "status": 500}),
    )
    .await;
    let r = h
        .post(
            &format!("/v1/payments/{id}/cancel"),
            "lost-cancel",
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "cancelled");
    assert!(!h.sandbox.state.toyyibpay.bills.lock().unwrap()[&code].active);
    assert_eq!(
        h.sandbox
            .state
            .calls("/toyyibpay/index.php/api/inactiveBill"),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_carries_the_payments_expiry_in_malaysian_time() {
    let h = Harness::start().await;
    let (id, code) = create(&h, 4_500, "u_expiry").await;
    let expires_at = h.store().payment(id).await.unwrap().unwrap().expires_at;
    let kuala_lumpur = time::UtcOffset::from_hms(8, 0, 0).unwrap();
    let wanted = expires_at
        .to_offset(kuala_lumpur)
        .format(time::macros::format_description!(
            "[day]-[month]-[year] [hour]:[minute]:[second]"
        ))
        .unwrap();
    let bill = h.sandbox.state.toyyibpay.bills.lock().unwrap()[&code].clone();
    assert_eq!(bill.expiry_date.as_deref(), Some(wanted.as_str()));
}
