//! epayment.kz against the sandbox: OAuth tokens, the widget checkout,
//! check-status with its result codes, callbacks with their secret_hash.

mod common;

use common::harness::Harness;
use serde_json::json;
use shared::ids::PaymentId;
use shared::money::{Currency, Money};
use shared::payment::PaymentStatus;
use shared::providers::epayment::{invoice_id, EpaymentClient, EpaymentConfig};
use shared::providers::transport::HttpPolicy;
use shared::providers::{CreateRequest, Gateway, ProviderError};

fn kzt(tiyn: i64) -> Money {
    Money::new(tiyn, Currency::Kzt).unwrap()
}

fn client(h: &Harness) -> EpaymentClient {
    client_of(h, false)
}

fn client_of(h: &Harness, two_stage: bool) -> EpaymentClient {
    let sb = h.sandbox.url();
    EpaymentClient::new(
        EpaymentConfig {
            oauth_url: format!("{sb}/epayment/oauth"),
            api_url: format!("{sb}/epayment/api"),
            widget_url: "https://test-epay.epayment.kz/redesign-payform/payment-api.js".into(),
            client_id: sandbox::epayment::CLIENT_ID.into(),
            client_secret: sandbox::epayment::CLIENT_SECRET.to_string().into(),
            terminal: sandbox::epayment::TERMINAL.into(),
            callback_key: "local-epayment-callback-key".to_string().into(),
            two_stage,
        },
        HttpPolicy::default(),
    )
    .unwrap()
}

async fn create(h: &Harness, tiyn: i64, user: &str) -> (PaymentId, String) {
    let r = h
        .create(
            &format!("k-{}", ulid::Ulid::new()),
            &json!({"provider": "epayment", "amount": tiyn, "currency": "KZT",
                    "reference": format!("ORD-{}", ulid::Ulid::new()),
                    "return_url": "https://shop.example.com/done", "wallet_user_id": user}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let widget = &r.body["checkout"]["widget"];
    let invoice = widget["invoiceId"].as_str().unwrap().to_string();
    assert_eq!(widget["terminal"], sandbox::epayment::TERMINAL);
    assert_eq!(widget["currency"], "KZT");
    // The token reply, as the bank's widget takes it, and the seed's
    // "Bearer …" string beside it: a payment-scoped token, and never the
    // refresh token the bank's reply may carry.
    let auth = &widget["auth"];
    assert!(auth["access_token"].as_str().unwrap().starts_with("epay-"));
    for field in ["expires_in", "scope", "token_type"] {
        assert!(!auth[field].is_null(), "auth.{field}: {auth}");
    }
    assert_eq!(auth["scope"], "payment");
    assert!(!r.text.contains("refresh_token"), "{}", r.text);
    let seen = h
        .get(&format!("/v1/payments/{}", r.body["id"].as_str().unwrap()))
        .await;
    assert!(!seen.text.contains("refresh_token"), "{}", seen.text);
    assert_eq!(
        widget["auth_bearer"].as_str().unwrap(),
        format!("Bearer {}", auth["access_token"].as_str().unwrap())
    );
    assert_eq!(r.body["provider_reference"], invoice.as_str());
    // The stack's namespace ends every invoiceID it allocates.
    assert!(
        invoice.ends_with(&common::harness::NAMESPACE.to_string()),
        "{invoice}"
    );
    (r.body["id"].as_str().unwrap().parse().unwrap(), invoice)
}

/// Posts the bank's callback `body` for `invoice`, with the invoice's
/// secret_hash as paygate gave it.
async fn callback(
    h: &Harness,
    invoice: &str,
    mut body: serde_json::Value,
) -> common::harness::Reply {
    body["invoiceId"] = json!(invoice);
    body["secret_hash"] = json!(shared::providers::epayment::secret_hash(
        "local-epayment-callback-key",
        invoice
    ));
    h.post_raw("/webhooks/epayment", "application/json", &body.to_string())
        .await
}

/// The KZT wallet balance of one of the merchant's users.
async fn balance(h: &Harness, user: &str) -> Money {
    h.store()
        .balance(
            &common::harness::merchant(),
            &user.parse().unwrap(),
            Currency::Kzt,
        )
        .await
        .unwrap()
}

async fn pay(h: &Harness, invoice: &str, body: serde_json::Value) -> serde_json::Value {
    h.sandbox(&format!("/_sandbox/epayment/invoices/{invoice}/pay"), body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_invoice_completes_once() {
    let h = Harness::start().await;
    let (id, invoice) = create(&h, 1_000_050, "u_kz").await;
    assert!(
        invoice.len() >= 6 && invoice.bytes().all(|b| b.is_ascii_digit()),
        "the invoiceID is 6-15 digits from the table's counter: {invoice}"
    );
    let widget_amount = h.sandbox.state.epayment.invoices.lock().unwrap()[&invoice]
        .amount
        .clone();
    assert_eq!(widget_amount, "10000.5", "major units, exactly");
    let r = pay(&h, &invoice, json!({"status": "CHARGE"})).await;
    assert_eq!(r["delivered"], 200);
    // The bank repeats itself, then reports a failed retry: nothing changes.
    let before = h.items().await;
    for status in ["CHARGE", "FAILED"] {
        let again = pay(&h, &invoice, json!({"status": "CHARGE", "callback": false})).await;
        let txn = again["transaction_id"].as_str().unwrap().to_string();
        let code = if status == "CHARGE" { "ok" } else { "error" };
        let r = callback(
            &h,
            &invoice,
            json!({"id": txn, "amount": 10000.5, "currency": "KZT", "code": code}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(h.items().await, before);
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Completed);
    assert_eq!(p.provider_status.as_deref(), Some("CHARGE"));
    let u = "u_kz".parse().unwrap();
    assert_eq!(
        h.store()
            .balance(&common::harness::merchant(), &u, Currency::Kzt)
            .await
            .unwrap(),
        kzt(1_000_050)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_secret_hash_is_401_and_a_short_payment_goes_to_review() {
    let h = Harness::start().await;
    let (id, invoice) = create(&h, 500_000, "u_forge").await;
    let before = h.items().await;
    let forged = h
        .post_raw(
            "/webhooks/epayment",
            "application/json",
            &format!(r#"{{"invoiceId":"{invoice}","code":"ok","amount":5000,"currency":"KZT","secret_hash":"00ff"}}"#),
        )
        .await;
    assert_eq!(forged.status, 401);
    assert_eq!(h.items().await, before);

    let r = pay(&h, &invoice, json!({"status": "CHARGE", "amount": "4000"})).await;
    assert_eq!(r["delivered"], 200);
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::NeedsReview);
    assert!(balance(&h, "u_forge").await.is_zero());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_status_retries_107_and_names_102() {
    let h = Harness::start().await;
    let c = client(&h);
    let (id, invoice) = create(&h, 100_000, "u_busy").await;
    let payment = h.store().payment(id).await.unwrap().unwrap();
    // Not paid yet: the bank does not know the invoice.
    let err = c.status(&payment).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err:?}");

    pay(&h, &invoice, json!({"status": "CHARGE", "callback": false})).await;
    h.sandbox("/_sandbox/epayment/busy", json!({"count": 2}))
        .await;
    assert_eq!(
        c.status(&payment).await.unwrap().status,
        PaymentStatus::Completed
    );
    h.sandbox("/_sandbox/epayment/busy", json!({"count": 10}))
        .await;
    let err = c.status(&payment).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

/// check-status's results come with HTTP 200 or 400: 102 is the bank not
/// knowing the invoice either way (pending for GET, and a cancel of an
/// invoice the payer never opened is done), and so on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_codes_are_read_on_200_and_400_and_an_unopened_invoice_cancels() {
    let h = Harness::start().await;
    let c = client(&h);
    for (n, http) in [200, 400].into_iter().enumerate() {
        h.sandbox("/_sandbox/epayment/settings", json!({"result_http": http}))
            .await;
        let (id, invoice) = create(&h, 100_000, &format!("u_unopened{n}")).await;
        let payment = h.store().payment(id).await.unwrap().unwrap();
        let err = c.status(&payment).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::NotFound { .. }),
            "{http}: {err:?}"
        );
        let view = h.get(&format!("/v1/payments/{id}")).await;
        assert_eq!(view.body["status"], "pending", "{http}: {}", view.text);
        let r = h
            .post(
                &format!("/v1/payments/{id}/cancel"),
                &format!("c-{n}"),
                &json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{http}: {}", r.text);
        assert_eq!(r.body["status"], "cancelled");
        // 107 with 400 is retried like 107 with 200.
        pay(&h, &invoice, json!({"status": "CHARGE", "callback": false})).await;
        h.sandbox("/_sandbox/epayment/busy", json!({"count": 2}))
            .await;
        assert_eq!(
            c.status(&payment).await.unwrap().status,
            PaymentStatus::Completed,
            "{http}"
        );
    }
}

/// A declined payment (resultCode 101, the seed's REJECT) fails on its
/// failure postLink, with HTTP 200 or 400: a decline, not an error to
/// send back to the bank.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_fails_on_its_failure_post_link() {
    let h = Harness::start().await;
    for (n, http) in [200, 400].into_iter().enumerate() {
        h.sandbox("/_sandbox/epayment/settings", json!({"result_http": http}))
            .await;
        let user = format!("u_declined{n}");
        let (id, invoice) = create(&h, 100_000, &user).await;
        let r = pay(&h, &invoice, json!({"status": "REJECT"})).await;
        assert_eq!(r["delivered"], 200, "{http}: {r}");
        let p = h.store().payment(id).await.unwrap().unwrap();
        assert_eq!(p.status, PaymentStatus::Failed, "{http}");
        assert_eq!(p.provider_status.as_deref(), Some("REJECT"));
        assert!(balance(&h, &user).await.is_zero());
    }
}

/// An authorisation the bank released (CANCEL, or CANCEL_OLD when it was
/// left too long) is final: the payment fails, nothing is credited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_authorisation_is_final() {
    let h = Harness::start().await;
    for word in ["CANCEL_OLD", "CANCEL"] {
        let user = format!("u_{}", word.to_ascii_lowercase());
        let (id, invoice) = create(&h, 100_000, &user).await;
        pay(&h, &invoice, json!({"status": word, "callback": false})).await;
        let p = h.store().payment(id).await.unwrap().unwrap();
        let asked = client(&h).status(&p).await.unwrap();
        assert_eq!(
            (asked.status, asked.provider_status.as_str()),
            (PaymentStatus::Failed, word)
        );
        // A callback about it is confirmed as that, and the payment fails.
        let r = callback(
            &h,
            &invoice,
            json!({"amount": 1000, "currency": "KZT", "code": "error"}),
        )
        .await;
        assert_eq!(r.status, 200, "{word}: {}", r.text);
        let p = h.store().payment(id).await.unwrap().unwrap();
        assert_eq!(p.status, PaymentStatus::Failed, "{word}");
        assert!(balance(&h, &user).await.is_zero());
    }
}

/// A callback that outruns the bank's status API (the bank does not know
/// the transaction yet) is sent back for the bank's retry (503) and moves
/// no money; the same provider answer is "nothing paid yet" elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_the_bank_cannot_confirm_yet_is_sent_back_for_a_retry() {
    let h = Harness::start().await;
    let (id, invoice) = create(&h, 100_000, "u_early").await;
    let early = json!({"id": "700000001", "amount": 1000, "currency": "KZT", "code": "ok",
        "reason": "success"});
    let r = callback(&h, &invoice, early).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("provider_unavailable"), "{}", r.text);
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Pending);
    assert!(balance(&h, "u_early").await.is_zero());
    let asked = shared::flow::ask_provider(&client(&h), &p).await.unwrap();
    assert!(matches!(asked, shared::flow::Asked::Unknown), "{asked:?}");
    assert_eq!(asked.or_pending().status, PaymentStatus::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_cached_renewed_on_401_and_refunds_and_cancels_follow_the_bank() {
    let h = Harness::start().await;
    let c = client(&h);
    let id = PaymentId::generate();
    let request = CreateRequest {
        payment_id: id,
        amount: kzt(300_000),
        description: None,
        customer: &Default::default(),
        return_url: None,
        method: None,
        webhook_url: "http://127.0.0.1:9/webhooks/epayment",
        sequence: Some(1_000_001),
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::minutes(30),
    };
    c.create(&request).await.unwrap();
    let invoice = invoice_id(1_000_001).unwrap();
    let txn = pay(&h, &invoice, json!({"status": "CHARGE", "callback": false})).await
        ["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let issued = *h.sandbox.state.epayment.tokens_issued.lock().unwrap();
    c.check(&invoice).await.unwrap();
    c.check(&invoice).await.unwrap();
    assert_eq!(
        *h.sandbox.state.epayment.tokens_issued.lock().unwrap(),
        issued + 1,
        "one API token, reused"
    );
    h.sandbox("/_sandbox/epayment/expire-tokens", json!({}))
        .await;
    c.check(&invoice).await.unwrap();
    assert_eq!(
        *h.sandbox.state.epayment.tokens_issued.lock().unwrap(),
        issued + 2
    );

    // Partial refunds of at least 10 KZT, then the rest.
    let err = c.refund(&txn, Some(kzt(500)), "r0").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Rejected { status: 400, .. }),
        "{err:?}"
    );
    c.refund(&txn, Some(kzt(100_000)), "r1").await.unwrap();
    c.refund(&txn, None, "r2").await.unwrap();
    assert_eq!(
        c.check(&invoice)
            .await
            .unwrap()
            .confirmation
            .provider_status,
        "REFUND"
    );
    assert!(c.refund(&txn, None, "r3").await.is_err());

    // Cancel works from AUTH only.
    let id2 = PaymentId::generate();
    c.create(&CreateRequest {
        payment_id: id2,
        sequence: Some(1_000_002),
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::minutes(30),
        ..request.clone()
    })
    .await
    .unwrap();
    let txn2 = pay(
        &h,
        &invoice_id(1_000_002).unwrap(),
        json!({"status": "AUTH", "callback": false}),
    )
    .await["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(c.cancel_transaction(&txn).await.is_err());
    c.cancel_transaction(&txn2).await.unwrap();
    assert_eq!(
        c.check(&invoice_id(1_000_002).unwrap())
            .await
            .unwrap()
            .confirmation
            .provider_status,
        "CANCEL"
    );
}

async fn paid(h: &Harness, tiyn: i64, user: &str) -> PaymentId {
    let (id, invoice) = create(h, tiyn, user).await;
    pay(h, &invoice, json!({"status": "CHARGE"})).await;
    assert_eq!(
        h.store().payment(id).await.unwrap().unwrap().status,
        PaymentStatus::Completed
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_refunds_of_sixty_percent_one_wins() {
    let h = std::sync::Arc::new(Harness::start().await);
    let id = paid(&h, 1_000_000, "u_refund").await;
    let mut tasks = Vec::new();
    for key in ["refund-a", "refund-b"] {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.post(
                &format!("/v1/payments/{id}/refund"),
                key,
                &json!({"amount": 600_000}),
            )
            .await
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 422 {
            assert_eq!(
                r.body["error"]["code"], "refund_exceeds_remaining",
                "{}",
                r.text
            );
        }
        statuses.push(r.status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 422]);
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(p.refunded_amount, kzt(600_000));
    assert!(p.refund_pending().is_zero());
    assert_eq!(
        h.sandbox.state.epayment.refunds.lock().unwrap().len(),
        1,
        "one refund at the bank"
    );
    let u = "u_refund".parse().unwrap();
    assert_eq!(
        h.store()
            .balance(&common::harness::merchant(), &u, Currency::Kzt)
            .await
            .unwrap(),
        kzt(400_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_then_the_rest_ends_refunded_and_never_more() {
    let h = Harness::start().await;
    let id = paid(&h, 500_000, "u_rest").await;
    let path = format!("/v1/payments/{id}/refund");
    let first = h
        .post(
            &path,
            "r-1",
            &json!({"amount": 200_000, "reason": "one item back"}),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["status"], "partially_refunded");
    assert_eq!(first.body["refunded_amount"], 200_000);
    let replay = h
        .post(
            &path,
            "r-1",
            &json!({"amount": 200_000, "reason": "one item back"}),
        )
        .await;
    assert_eq!(replay.text, first.text);
    let too_much = h.post(&path, "r-2", &json!({"amount": 300_001})).await;
    assert_eq!(too_much.status, 422);
    assert_eq!(too_much.body["error"]["code"], "refund_exceeds_remaining");
    let small = h.post(&path, "r-3", &json!({"amount": 500})).await;
    assert_eq!(small.body["error"]["code"], "refund_below_minimum");
    let rest = h.post(&path, "r-4", &json!({})).await;
    assert_eq!(rest.status, 200, "{}", rest.text);
    assert_eq!(rest.body["status"], "refunded");
    assert_eq!(rest.body["refunded_amount"], 500_000);
    let again = h.post(&path, "r-5", &json!({})).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.body["error"]["code"], "invalid_state");
    let u = "u_rest".parse().unwrap();
    assert!(h
        .store()
        .balance(&common::harness::merchant(), &u, Currency::Kzt)
        .await
        .unwrap()
        .is_zero());
    assert_eq!(
        h.store()
            .ledger_entries(&common::harness::merchant(), &u, 50, None)
            .await
            .unwrap()
            .0
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_the_bank_refuses_gives_the_reservation_back() {
    let h = Harness::start().await;
    let id = paid(&h, 500_000, "u_refused").await;
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/epayment/api/operation/", "mode": "fail", "count": 1, "status": 400}),
    )
    .await;
    let r = h
        .post(
            &format!("/v1/payments/{id}/refund"),
            "r-1",
            &json!({"amount": 100_000}),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Completed);
    assert!(p.refund_pending().is_zero());
    assert!(p.refunded_amount.is_zero());
    let u = "u_refused".parse().unwrap();
    assert_eq!(
        h.store()
            .balance(&common::harness::merchant(), &u, Currency::Kzt)
            .await
            .unwrap(),
        kzt(500_000)
    );
    // The same key may be used again after an error.
    let again = h
        .post(
            &format!("/v1/payments/{id}/refund"),
            "r-1",
            &json!({"amount": 100_000}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_without_refunds_say_so() {
    let h = Harness::start().await;
    let gcash = h
        .create("g-1", &json!({"provider": "directpay", "amount": 10_000, "currency": "PHP", "reference": "ORD-R-1"}))
        .await;
    let id = gcash.body["id"].as_str().unwrap();
    let r = h
        .post(&format!("/v1/payments/{id}/refund"), "r-1", &json!({}))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["error"]["code"], "unsupported_operation");
    // A pending epayment payment is not refundable yet.
    let (pending, _) = create(&h, 100_000, "u_pending").await;
    let r = h
        .post(&format!("/v1/payments/{pending}/refund"), "r-2", &json!({}))
        .await;
    assert_eq!(r.status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_ids_come_from_the_counter_and_the_bank_refuses_a_repeat_of_the_last_six_digits() {
    let h = Harness::start().await;
    let mut last6 = std::collections::HashSet::new();
    for n in 0..3 {
        let (_, invoice) = create(&h, 100_000 + n, "u_seq").await;
        assert!(
            last6.insert(invoice[invoice.len() - 6..].to_string()),
            "{invoice}"
        );
    }
    // The sandbox holds the bank's rule: a longer invoiceID that repeats
    // the last 6 digits of another is refused.
    let sb = h.sandbox.url();
    let token = |invoice: &'static str| {
        let http = h.http.clone();
        let url = format!("{sb}/epayment/oauth/oauth2/token");
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "payment"),
                    ("client_id", sandbox::epayment::CLIENT_ID),
                    ("client_secret", sandbox::epayment::CLIENT_SECRET),
                    ("terminal", sandbox::epayment::TERMINAL),
                    ("invoiceID", invoice),
                    ("amount", "100"),
                    ("currency", "KZT"),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(token("4001234567").await, 200);
    // A webapi token (no invoice) needs no terminal.
    let webapi = h
        .http
        .post(format!("{sb}/epayment/oauth/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "webapi"),
            ("client_id", sandbox::epayment::CLIENT_ID),
            ("client_secret", sandbox::epayment::CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(webapi.status(), 200);
    assert_eq!(token("9001234567").await, 400, "same last 6 digits");
    assert_eq!(token("4001234568").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_two_stage_terminal_an_authorised_payment_is_captured_once_when_confirmed() {
    let h = Harness::start().await;
    h.sandbox("/_sandbox/epayment/terminal", json!({"two_stage": true}))
        .await;
    let one_stage = client_of(&h, false);
    let two_stage = client_of(&h, true);
    let id = PaymentId::generate();
    let created = two_stage
        .create(&CreateRequest {
            payment_id: id,
            amount: kzt(250_000),
            description: None,
            customer: &Default::default(),
            return_url: None,
            method: None,
            webhook_url: "http://127.0.0.1:9/webhooks/epayment",
            sequence: Some(2_000_001),
            expires_at: time::OffsetDateTime::now_utc() + time::Duration::minutes(30),
        })
        .await
        .unwrap();
    let invoice = created.provider_reference.to_string();
    // The payer pays; the terminal only authorises.
    pay(&h, &invoice, json!({"status": "CHARGE", "callback": false})).await;
    let mut payment = shared::payment::Payment::new(
        shared::payment::NewPayment {
            id,
            merchant_id: common::harness::merchant(),
            provider: shared::payment::Provider::Epayment,
            amount: kzt(250_000),
            reference: "ORD-2STAGE".parse().unwrap(),
            description: None,
            customer: Default::default(),
            return_url: None,
            method: None,
            wallet_user_id: None,
            casino_username: None,
            provider_reference: Some(created.provider_reference.clone()),
            checkout: created.checkout.clone(),
            page_token: None,
            expires_at: time::OffsetDateTime::now_utc(),
        },
        shared::payment::ChangeSource::Api,
        time::OffsetDateTime::now_utc(),
    );
    // Read as a one-stage terminal would: held, not money, and it would
    // stay so for ever.
    let held = one_stage.status(&payment).await.unwrap();
    assert_eq!(
        (held.status, held.provider_status.as_str()),
        (PaymentStatus::Pending, "AUTH")
    );
    // A two-stage terminal's confirmation captures it.
    let paid = two_stage.status(&payment).await.unwrap();
    assert_eq!(
        (paid.status, paid.provider_status.as_str()),
        (PaymentStatus::Completed, "CHARGE")
    );
    assert_eq!(paid.amount, Some(kzt(250_000)));
    assert_eq!(*h.sandbox.state.epayment.charges.lock().unwrap(), 1);
    // Asked again: nothing more is captured.
    payment.status = PaymentStatus::Completed;
    two_stage.status(&payment).await.unwrap();
    assert_eq!(*h.sandbox.state.epayment.charges.lock().unwrap(), 1);
}
