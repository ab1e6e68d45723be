//! Each sweep run counts what waits for a person (the gauges the alarms
//! that stay in ALARM watch), and a payment entering review is counted as
//! it happens. Its own test binary: the metrics capture is process-wide.

mod common;

use common::harness::Harness;
use serde_json::{json, Value};

/// Each sweep run counts what waits for a person, for the alarms that
/// stay in ALARM while it waits; a payment entering review is counted as
/// it happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sweep_counts_what_waits_for_a_person() {
    let captured = shared::telemetry::capture();
    let h = Harness::start().await;
    let r = h
        .create(
            &format!("k-{}", ulid::Ulid::new()),
            &json!({"provider": "toyyibpay", "amount": 9_990, "currency": "MYR",
                    "reference": format!("ORD-{}", ulid::Ulid::new()),
                    "customer": {"email": "a@example.com", "phone": "+60123456789"},
                    "wallet_user_id": "u_gauge"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bill = r.body["provider_reference"].as_str().unwrap().to_string();
    h.sandbox(
        &format!("/_sandbox/toyyibpay/bills/{bill}/attempt"),
        json!({"status": 1, "amount_sen": 9_000}),
    )
    .await;
    let metrics = || -> Vec<Value> {
        captured
            .text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l.get("_aws").is_some())
            .collect()
    };
    assert!(
        metrics().iter().any(|m| m["PaymentsNeedingReview"] == 1),
        "entering review is counted"
    );
    assert!(!metrics()
        .iter()
        .any(|m| m.get("PaymentsInReview").is_some()));
    shared::api::jobs::sweep(&h.services, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let gauges: Vec<Value> = metrics()
        .into_iter()
        .filter(|m| m.get("PaymentsInReview").is_some())
        .collect();
    assert_eq!(gauges.len(), 1, "{gauges:?}");
    let g = &gauges[0];
    assert_eq!(g["PaymentsInReview"], 1);
    assert_eq!(g["TopUpsGivenUp"], 0);
    assert_eq!(g["TopUpsUnknownNow"], 0);
    assert_eq!(g["RefundsPendingNow"], 0);
    assert_eq!(g["DifferencesOpen"], 0);
}
