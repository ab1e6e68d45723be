//! One payment request per provider, and the sandbox trigger that plays
//! a provider's events for it.

use serde_json::{json, Value};
use shared::ids::PaymentId;
use shared::money::Currency;

use super::harness::Harness;

pub struct Case {
    pub provider: &'static str,
    pub currency: Currency,
    pub amount: i64,
    pub extra: Value,
}

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            provider: "directpay",
            currency: Currency::Php,
            amount: 25_000,
            extra: json!({}),
        },
        Case {
            provider: "paygram",
            currency: Currency::Phpt,
            amount: 12_345,
            extra: json!({}),
        },
        Case {
            provider: "toyyibpay",
            currency: Currency::Myr,
            amount: 9_990,
            extra: json!({"description": "Order", "method": "fpx",
                          "customer": {"name": "Aisyah", "email": "a@example.com", "phone": "+60123456789"}}),
        },
        Case {
            provider: "qpay",
            currency: Currency::Mnt,
            amount: 150_000,
            extra: json!({}),
        },
        Case {
            provider: "epayment",
            currency: Currency::Kzt,
            amount: 500_000,
            extra: json!({"return_url": "https://shop.example.com/done"}),
        },
        Case {
            provider: "payment_engine",
            currency: Currency::Usd,
            amount: 4_200,
            extra: json!({"method": "RTP"}),
        },
    ]
}

pub async fn create(h: &Harness, case: &Case, user: &str) -> PaymentId {
    let mut body = json!({"provider": case.provider, "amount": case.amount,
                          "currency": case.currency.code(),
                          "reference": format!("ORD-{}", ulid::Ulid::new()),
                          "wallet_user_id": user});
    if let (Some(b), Some(extra)) = (body.as_object_mut(), case.extra.as_object()) {
        b.extend(extra.clone());
    }
    let r = h.create(&format!("k-{}", ulid::Ulid::new()), &body).await;
    assert_eq!(r.status, 201, "{}: {}", case.provider, r.text);
    r.body["id"].as_str().unwrap().parse().unwrap()
}

pub async fn trigger(h: &Harness, provider: &str, event: &str, id: PaymentId) -> (u16, Value) {
    let r = h
        .http
        .post(format!("{}/_sandbox/trigger", h.sandbox.url()))
        .json(&json!({"provider": provider, "event": event, "payment_id": id.to_string()}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A payment of `provider`'s test case, created for `user`.
pub async fn create_for(h: &Harness, provider: &str, user: &str) -> PaymentId {
    let case = cases()
        .into_iter()
        .find(|c| c.provider == provider)
        .unwrap_or_else(|| panic!("no test case for {provider}"));
    create(h, &case, user).await
}

/// The provider's reference of a stored payment.
pub async fn provider_reference(h: &Harness, id: PaymentId) -> String {
    let p = h.store().payment(id).await.unwrap().unwrap();
    p.provider_reference.unwrap().to_string()
}
