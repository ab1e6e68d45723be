//! epayment.kz against the sandbox: OAuth tokens, the widget checkout,
//! check-status with its result codes, callbacks with their secret_hash.

mod common;

use common::harness::Harness;
use serde_json::json;
use shared::ids::PaymentId;
use shared::money::{Currency, Money};
use shared::payment::PaymentStatus;
use shared::providers::epayment::{invoice_id, EpaymentClient, EpaymentConfig};
use shared::providers::http::HttpPolicy;
use shared::providers::{CreateRequest, Gateway, ProviderError};

fn kzt(tiyn: i64) -> Money {
    Money::new(tiyn, Currency::Kzt).unwrap()
}

fn client(h: &Harness) -> EpaymentClient {
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
    assert!(widget["auth"].as_str().unwrap().starts_with("epay-"));
    assert_eq!(r.body["provider_reference"], invoice.as_str());
    (r.body["id"].as_str().unwrap().parse().unwrap(), invoice)
}

async fn pay(h: &Harness, invoice: &str, body: serde_json::Value) -> serde_json::Value {
    h.sandbox(&format!("/_sandbox/epayment/invoices/{invoice}/pay"), body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_invoice_completes_once() {
    let h = Harness::start().await;
    let (id, invoice) = create(&h, 1_000_050, "u_kz").await;
    assert_eq!(
        invoice,
        invoice_id(id),
        "the invoiceID is derived from the payment"
    );
    let widget_amount = h.sandbox.state.epayment.invoices.lock().unwrap()[&invoice]
        .amount
        .clone();
    assert_eq!(widget_amount, "10000.5", "major units, exactly");
    let r = pay(&h, &invoice, json!({"status": "CHARGE"})).await;
    assert_eq!(r["delivered"], 200);
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Completed);
    assert_eq!(p.provider_status.as_deref(), Some("CHARGE"));
    let u = "u_kz".parse().unwrap();
    assert_eq!(
        h.store().balance(&u, Currency::Kzt).await.unwrap(),
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
    assert!(h
        .store()
        .balance(&"u_forge".parse().unwrap(), Currency::Kzt)
        .await
        .unwrap()
        .is_zero());
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
    };
    c.create(&request).await.unwrap();
    let invoice = invoice_id(id);
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
        ..request.clone()
    })
    .await
    .unwrap();
    let txn2 = pay(
        &h,
        &invoice_id(id2),
        json!({"status": "AUTH", "callback": false}),
    )
    .await["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(c.cancel_transaction(&txn).await.is_err());
    c.cancel_transaction(&txn2).await.unwrap();
    assert_eq!(
        c.check(&invoice_id(id2))
            .await
            .unwrap()
            .confirmation
            .provider_status,
        "CANCEL"
    );
}
