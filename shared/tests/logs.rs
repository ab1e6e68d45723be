//! Every log line and metric of a full run: each provider's payment created,
//! paid, paid again, read back, one refunded, one topped up to the casino
//! through a failing casino, callbacks forged and malformed. The lines are
//! JSON with the request's ids, the metrics are EMF, and none of the
//! fixture secrets, issued tokens or card numbers appear anywhere.
//!
//! Its own test binary: the capture is process-wide.

mod common;

use common::cases::{cases, create, trigger};
use common::harness::{Harness, API_KEY};
use serde_json::{json, Value};

/// A full card number a payer might put where it does not belong.
const CARD: &str = "4400430212346531";
/// A payer's contact, which no log line may carry.
const PAYER_EMAIL: &str = "payer.race@example.com";
const PAYER_PHONE: &str = "+77011234567";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_logs_json_with_ids_and_metrics_and_no_secrets() {
    std::env::set_var("RUST_LOG", "debug");
    let captured = shared::telemetry::capture();
    let h = Harness::start().await;

    let mut ids = Vec::new();
    for case in cases() {
        let id = create(&h, &case, "u_logs").await;
        let (code, _) = trigger(&h, case.provider, "duplicate", id).await;
        assert_eq!(code, 200);
        assert_eq!(h.get(&format!("/v1/payments/{id}")).await.status, 200);
        ids.push((case.provider, id));
    }
    // A refund (epayment.kz refunds in part).
    let (_, kzt) = ids.iter().find(|(p, _)| *p == "epayment").unwrap();
    let r = h
        .post(
            &format!("/v1/payments/{kzt}/refund"),
            "refund-logs-1",
            &json!({"amount": 100_000}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A casino top-up that fails once, then goes through.
    let r = h
        .create(
            "logs-casino",
            &json!({"provider": "directpay", "amount": 50_000, "currency": "PHP",
                    "reference": "ORD-LOGS-CASINO", "wallet_user_id": "u_logs_casino",
                    "casino": {"username": "player1"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let casino_payment = r.body["id"].as_str().unwrap().parse().unwrap();
    trigger(&h, "directpay", "paid", casino_payment).await;
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/casino/Default/Transfer", "mode": "fail", "count": 3, "status": 500}),
    )
    .await;
    let event = h.drain_queue().await;
    let now = time::OffsetDateTime::now_utc();
    let batch = shared::api::worker::handle(&h.services, event.clone(), now).await;
    assert_eq!(
        batch.batch_item_failures.len(),
        1,
        "the first attempt fails"
    );
    // SQS delivers it again.
    let batch = shared::api::worker::handle(&h.services, event, now).await;
    assert!(batch.batch_item_failures.is_empty());
    assert_eq!(h.casino_transfers().len(), 1);

    // Forged and malformed callbacks, one carrying a card number.
    let forged = h
        .post_raw(
            "/webhooks/payment-engine",
            "application/json",
            &json!({"eventId": "evt_forged", "eventType": "transaction.completed",
                    "data": {"transactionReference": ids[0].1.to_string(), "card": CARD}})
            .to_string(),
        )
        .await;
    assert_eq!(forged.status, 401);
    for body in [
        json!({"invoiceId": CARD.parse::<u64>().unwrap(), "code": "ok", "cardMask": CARD})
            .to_string(),
        format!("{{\"cardNumber\": \"{CARD}\", "),
    ] {
        let r = h
            .post_raw("/webhooks/epayment", "application/json", &body)
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(
            !r.text.contains(CARD),
            "the answer echoes the card: {}",
            r.text
        );
    }
    let wrong_secret = h
        .post_raw("/webhooks/paygram/not-the-secret", "application/json", "{}")
        .await;
    assert_eq!(wrong_secret.status, 401);
    assert_eq!(h.get("/v1/health").await.status, 200);

    // A refund race on a payment whose payer left a contact: the losers'
    // logs name ids and states, never the payment's contents.
    let r = h
        .create(
            "logs-race",
            &json!({"provider": "epayment", "amount": 500_000, "currency": "KZT",
                    "reference": "ORD-LOGS-RACE", "wallet_user_id": "u_logs_race",
                    "customer": {"email": PAYER_EMAIL, "phone": PAYER_PHONE}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let raced: shared::ids::PaymentId = r.body["id"].as_str().unwrap().parse().unwrap();
    trigger(&h, "epayment", "paid", raced).await;
    let path = format!("/v1/payments/{raced}/refund");
    let body = json!({"amount": 300_000});
    let (a, b, c) = tokio::join!(
        h.post(&path, "race-a", &body),
        h.post(&path, "race-b", &body),
        h.post(&path, "race-c", &body)
    );
    let won = [a.status, b.status, c.status]
        .iter()
        .filter(|s| **s == 200)
        .count();
    assert_eq!(
        won,
        1,
        "one of three refunds of 300,000 fits: {a:?} {b:?} {c:?}",
        a = a.text,
        b = b.text,
        c = c.text
    );

    // Let the health writes beside the requests finish.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let text = captured.text();
    for contact in [PAYER_EMAIL, PAYER_PHONE] {
        assert!(
            !text.contains(contact),
            "a log line carries the payer's {contact}"
        );
    }
    if let Ok(path) = std::env::var("PAYGATE_DUMP_LOGS") {
        std::fs::write(path, &text).unwrap();
    }
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 50, "a full run logs: {} lines", lines.len());

    // Logs carry the request's ids.
    let moved: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "payment moved")
        .collect();
    assert!(moved.len() >= 7, "{moved:?}");
    for l in &moved {
        assert!(l["payment_id"].as_str().unwrap().starts_with("pay_"));
        assert!(l["provider"].is_string());
        let span = &l["spans"][0];
        assert!(span["request_id"].is_string(), "{l}");
    }
    let answered = lines
        .iter()
        .find(|l| l["message"] == "answered" && l["spans"][0]["route"] == "get_payment")
        .expect("a read is logged");
    assert!(answered["spans"][0]["payment_id"]
        .as_str()
        .unwrap()
        .starts_with("pay_"));
    assert!(answered["spans"][0]["provider"].is_string());

    // Metrics in Embedded Metric Format.
    let metric = |name: &str| {
        lines
            .iter()
            .filter(|l| {
                l["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] == name
                    || l["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Name"] == name
            })
            .count()
    };
    // One per provider, the casino's and the refund race's.
    assert_eq!(metric("PaymentsCreated"), 8);
    assert!(metric("PaymentsCompleted") >= 7);
    assert!(metric("WebhooksRejected") >= 4);
    assert!(metric("ProviderLatency") > 10);
    assert_eq!(metric("TopUpAttempts"), 2);
    let rejected: Vec<&str> = lines
        .iter()
        .filter(|l| l.get("WebhooksRejected").is_some())
        .filter_map(|l| l["Reason"].as_str())
        .collect();
    assert!(rejected.contains(&"invalid_signature"), "{rejected:?}");
    assert!(rejected.contains(&"malformed_callback"), "{rejected:?}");

    // And nothing secret, anywhere.
    let mut secrets: Vec<String> = [
        API_KEY,
        sandbox::directpay::PASSWORD,
        sandbox::paygram::TOKEN,
        "sample-callback-secret",
        sandbox::payment_engine::PASSWORD,
        sandbox::payment_engine::API_KEY,
        sandbox::payment_engine::WEBHOOK_SECRET,
        sandbox::payment_engine::STANDARD_SECRET,
        sandbox::qpay::CLIENT_SECRET,
        sandbox::epayment::CLIENT_SECRET,
        "local-epayment-callback-key",
        sandbox::toyyibpay::SECRET_KEY,
        CARD,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    secrets.extend(sandbox::casino::TOKENS.iter().map(|(_, t)| t.to_string()));
    secrets.extend(h.sandbox.state.issued_credentials());
    assert!(secrets.len() > 20, "tokens were issued: {}", secrets.len());
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret is in the logs: {}",
            text.lines()
                .find(|l| l.contains(secret.as_str()))
                .unwrap_or("")
        );
    }
}
