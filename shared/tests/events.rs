//! Every sample in `events/` is accepted by the handler its function runs,
//! against the local stack and the sandbox (fixtures matching the samples'
//! ids are put in place first).

mod common;

use std::path::Path;

use aws_lambda_events::event::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use aws_lambda_events::event::sqs::SqsEvent;
use common::harness::{Harness, MERCHANT};
use shared::api::authorizer::{authorize, ApiKeys};
use shared::money::{Currency, Money};
use shared::payment::{ChangeSource, Customer, NewPayment, Payment, PaymentStatus, Provider};
use time::OffsetDateTime;

const P1: &str = "pay_01JG0000000000000000000001";
const P2: &str = "pay_01JG0000000000000000000002";
const P3: &str = "pay_01JG0000000000000000000003";
const P4: &str = "pay_01JG0000000000000000000004";
const P5: &str = "pay_01JG0000000000000000000005";
const P6: &str = "pay_01JG0000000000000000000006";
const P7: &str = "pay_01JG0000000000000000000007";
/// The invoice of events/webhook-paygram.json (Paygram's codes are GUIDs).
const PAYGRAM_SAMPLE_INVOICE: &str = "0195a3c2-7d10-4c3e-9a51-5a6b1c2d3e01";
/// The page token of events/api-pay-page.json (P4's).
const PAGE_TOKEN: &str = "SamplePageToken00000000000000001";

fn event_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../events/{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn http_event(name: &str) -> lambda_http::Request {
    lambda_http::request::from_str(&event_text(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn fixtures(h: &Harness) {
    h.sandbox
        .state
        .directpay
        .transactions
        .lock()
        .unwrap()
        .insert(
            "DPSAMPLE0001".into(),
            sandbox::directpay::Transaction {
                amount: "100".into(),
                status: "SUCCESS".into(),
                reference: P1.into(),
                webhook: String::new(),
                redirect_url: String::new(),
            },
        );
    h.sandbox.state.paygram.invoices.lock().unwrap().insert(
        PAYGRAM_SAMPLE_INVOICE.into(),
        sandbox::paygram::Invoice {
            currency_code: 11,
            amount: "250".into(),
            callback_data: P2.into(),
            status: 2,
            to_user: "sandbox-merchant".into(),
            ..Default::default()
        },
    );
    h.sandbox.state.toyyibpay.bills.lock().unwrap().insert(
        "tpsample01".into(),
        sandbox::toyyibpay::Bill {
            amount_sen: 9990,
            external_reference: P3.into(),
            callback_url: String::new(),
            active: true,
            attempts: vec![sandbox::toyyibpay::Attempt {
                status: 1,
                amount_sen: 9990,
                refno: "TPSAMPLE0001".into(),
            }],
            ..Default::default()
        },
    );
    h.sandbox.state.toyyibpay.bills.lock().unwrap().insert(
        "tpsample04".into(),
        sandbox::toyyibpay::Bill {
            amount_sen: 1_000,
            external_reference: P4.into(),
            callback_url: String::new(),
            active: true,
            attempts: vec![],
            ..Default::default()
        },
    );
    // The invoiceID the sample callback in events/ names (any 6-15 digits).
    let invoice = "320517004918789".to_string();
    h.sandbox.state.epayment.invoices.lock().unwrap().insert(
        invoice.clone(),
        sandbox::epayment::Invoice {
            amount: "5000".into(),
            currency: "KZT".into(),
            post_link: String::new(),
            failure_post_link: String::new(),
            secret_hash: String::new(),
            transaction: Some(sandbox::epayment::Transaction {
                id: "0195f0c2-7d3e-4b1a-8c2d-5e6f7a8b9c0d".into(),
                status: "CHARGE".into(),
                amount: "5000".into(),
                refunded: 0,
                reference: "227078813195".into(),
            }),
        },
    );
    h.sandbox.state.qpay.invoices.lock().unwrap().insert(
        "qpsample06".into(),
        sandbox::qpay::Invoice {
            amount: "1500".into(),
            callback_url: String::new(),
            sender_invoice_no: "sample".into(),
            deleted: false,
            payments: vec![sandbox::qpay::Payment {
                id: "900000001".into(),
                status: "PAID".into(),
                amount: "1500".into(),
                kind: "CARD".into(),
            }],
        },
    );
    let now = OffsetDateTime::now_utc();
    for (id, provider, amount, reference, casino) in [
        (
            P1,
            Provider::Directpay,
            Money::new(10_000, Currency::Php).unwrap(),
            "DPSAMPLE0001",
            true,
        ),
        (
            P2,
            Provider::Paygram,
            Money::new(25_000, Currency::Phpt).unwrap(),
            PAYGRAM_SAMPLE_INVOICE,
            false,
        ),
        (
            P7,
            Provider::PaymentEngine,
            Money::new(1_250, Currency::Usd).unwrap(),
            "txn_sample_0001",
            false,
        ),
        (
            P6,
            Provider::Qpay,
            Money::new(150_000, Currency::Mnt).unwrap(),
            "qpsample06",
            false,
        ),
        (
            P5,
            Provider::Epayment,
            Money::new(500_000, Currency::Kzt).unwrap(),
            invoice.as_str(),
            false,
        ),
        (
            P4,
            Provider::Toyyibpay,
            Money::new(1_000, Currency::Myr).unwrap(),
            "tpsample04",
            false,
        ),
        (
            P3,
            Provider::Toyyibpay,
            Money::new(9_990, Currency::Myr).unwrap(),
            "tpsample01",
            false,
        ),
    ] {
        let p = Payment::new(
            NewPayment {
                id: id.parse().unwrap(),
                merchant_id: MERCHANT.parse().unwrap(),
                provider,
                amount,
                reference: format!("ORD-{id}").parse().unwrap(),
                description: None,
                customer: Customer::default(),
                return_url: None,
                method: None,
                wallet_user_id: Some("u_sample".parse().unwrap()),
                casino_username: casino.then(|| "player1".parse().unwrap()),
                provider_reference: Some(reference.parse().unwrap()),
                checkout: Default::default(),
                page_token: (id == P4).then(|| PAGE_TOKEN.parse().unwrap()),
                expires_at: now + time::Duration::minutes(30),
            },
            ChangeSource::Api,
            now,
        );
        h.store().create_payment(&p).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_event_is_accepted_by_its_handler() {
    let h = Harness::start().await;
    fixtures(&h).await;
    let s = &h.services;

    let created = shared::api::payments::create(s, http_event("api-create-payment")).await;
    assert_eq!(created.status(), 201, "{:?}", created.body());

    let cancelled = shared::api::payments::cancel(s, http_event("api-cancel-payment")).await;
    assert_eq!(cancelled.status(), 200, "{:?}", cancelled.body());

    let got = shared::api::payments::get(s, http_event("api-get-payment")).await;
    assert_eq!(got.status(), 200, "{:?}", got.body());

    let page = shared::api::pay_page::page(s, http_event("api-pay-page")).await;
    assert_eq!(page.status(), 200, "{:?}", page.body());
    let mut status_event: serde_json::Value =
        serde_json::from_str(&event_text("api-pay-page")).unwrap();
    status_event["rawPath"] = format!("/pay/{PAGE_TOKEN}/status").into();
    status_event["routeKey"] = "GET /pay/{token}/status".into();
    let status = shared::api::pay_page::status(
        s,
        lambda_http::request::from_str(&status_event.to_string()).unwrap(),
    )
    .await;
    assert_eq!(status.status(), 200, "{:?}", status.body());

    // Every provider's callback sample completes its fixture payment and is
    // answered the way that provider expects.
    for (provider, event, id, answer) in [
        (Provider::Directpay, "webhook-directpay", P1, None),
        (Provider::Paygram, "webhook-paygram", P2, Some("ok")),
        (Provider::Toyyibpay, "webhook-toyyibpay", P3, None),
        (Provider::Epayment, "webhook-epayment", P5, None),
        (Provider::Qpay, "webhook-qpay", P6, Some("SUCCESS")),
        (
            Provider::PaymentEngine,
            "webhook-payment-engine",
            P7,
            Some("OK"),
        ),
    ] {
        let hook = shared::api::webhooks::handle(s, provider, http_event(event)).await;
        assert_eq!(hook.status(), 200, "{event}: {:?}", hook.body());
        if let Some(answer) = answer {
            assert_eq!(hook.body().as_ref(), answer.as_bytes(), "{event}");
        }
        let p = h
            .store()
            .payment(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.status, PaymentStatus::Completed, "{event}");
    }

    let refunded = shared::api::payments::refund(s, http_event("api-refund-payment")).await;
    assert_eq!(refunded.status(), 200, "{:?}", refunded.body());
    let p5 = h
        .store()
        .payment(P5.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p5.status, PaymentStatus::PartiallyRefunded);

    let sqs: SqsEvent = serde_json::from_str(&event_text("worker-casino-topup")).unwrap();
    let batch = shared::api::worker::handle(s, sqs, OffsetDateTime::now_utc()).await;
    assert!(batch.batch_item_failures.is_empty());
    assert_eq!(h.casino_transfers().len(), 1);

    let wallet = shared::api::wallets::wallet(s, http_event("api-wallet")).await;
    assert_eq!(wallet.status(), 200);
    let wallet: serde_json::Value = serde_json::from_slice(wallet.body().as_ref()).unwrap();
    // PHP 100 credited then moved to the casino; MYR 99.90 and PHPT 250 stay.
    assert_eq!(
        wallet["balances"],
        serde_json::json!([
            {"currency": "PHP", "amount": 0},
            {"currency": "MYR", "amount": 9_990},
            {"currency": "MNT", "amount": 150_000},
            {"currency": "KZT", "amount": 300_000},
            {"currency": "USD", "amount": 1_250},
            {"currency": "PHPT", "amount": 25_000}
        ])
    );

    // The merchant's endpoints: none yet.
    let endpoints = shared::api::events::handle(s, http_event("api-events")).await;
    assert_eq!(endpoints.status(), 200, "{:?}", endpoints.body());
    let endpoints: serde_json::Value = serde_json::from_slice(endpoints.body().as_ref()).unwrap();
    assert_eq!(endpoints["data"], serde_json::json!([]));

    // A new event's stream record: the sample names an event no longer in
    // the table, which leaves nothing to do and nothing failed.
    let record: serde_json::Value = serde_json::from_str(&event_text("worker-events")).unwrap();
    let answer = shared::api::events_worker::handle(s, record).await;
    assert_eq!(answer["batchItemFailures"], serde_json::json!([]));

    let health = shared::api::health::health(s, http_event("api-health")).await;
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = serde_json::from_slice(health.body().as_ref()).unwrap();
    assert_eq!(health["providers"].as_object().unwrap().len(), 7);

    let queue = shared::api::ops::get_queue(s, http_event("api-ops")).await;
    assert_eq!(queue.status(), 200, "{:?}", queue.body());

    let player = shared::api::wallets::casino_user(s, http_event("api-casino-user")).await;
    assert_eq!(player.status(), 200, "{:?}", player.body());

    let scheduled: serde_json::Value = serde_json::from_str(&event_text("job-sweep")).unwrap();
    assert_eq!(scheduled["detail-type"], "Scheduled Event");
    let report = shared::api::jobs::sweep(s, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        report,
        shared::api::jobs::SweepReport::default(),
        "nothing is due yet"
    );

    let scheduled: serde_json::Value = serde_json::from_str(&event_text("job-reconcile")).unwrap();
    assert_eq!(scheduled["detail-type"], "Scheduled Event");
    // The first run after the hour of their changes has closed.
    let closed = shared::api::reconcile::checked_from(OffsetDateTime::now_utc());
    let report = shared::api::reconcile::reconcile(s, closed).await.unwrap();
    assert!(
        report.checked >= 7,
        "every sample payment changed this hour: {report:?}"
    );
    // The Payment Engine fixture lives only in its signed sample event: the
    // engine has never seen that transaction, so a payment we completed is
    // unknown there. Reported for a person; the money stays.
    assert_eq!(report.unanswered, 0, "{report:?}");
    assert_eq!(report.differences.len(), 1, "{report:?}");
    let d = &report.differences[0];
    assert_eq!(d.payment_id, P7);
    assert_eq!(d.action, shared::api::reconcile::Action::LeftForReview);
    assert!(d.theirs.contains("not_found"), "{d:?}");

    let request: ApiGatewayV2CustomAuthorizerV2Request =
        serde_json::from_str(&event_text("authorizer")).unwrap();
    let keys = ApiKeys::load(&s.secrets, &s.settings.secret_prefix)
        .await
        .unwrap();
    let decision = authorize(&keys, &request);
    assert!(decision.is_authorized);
    assert_eq!(decision.context["merchant_id"], MERCHANT);
}

#[test]
fn the_local_sample_key_is_the_one_the_local_secret_holds() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/local/secrets/api-keys.json");
    let keys: ApiKeys = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        keys.merchant_for("pk_local_paygate_dev_key")
            .map(|m| m.to_string()),
        Some("m_local".to_string())
    );
    // The operator's key of make dev, as the events/ sample names it.
    assert_eq!(
        keys.principal_for("ok_local_paygate_operator_key"),
        Some(shared::api::authorizer::Principal::Operator(
            "local-operator".into()
        ))
    );
}
