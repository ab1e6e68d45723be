//! `GET /v1/health`: the counters the provider clients keep, read without
//! an API key; three failures in a row make a provider unhealthy and the
//! whole answer degraded, one success makes it healthy again.

mod common;

use std::time::Duration;

use common::harness::Harness;
use serde_json::{json, Value};

async fn health(h: &Harness) -> Value {
    let r = h
        .http
        .get(format!("{}/v1/health", h.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "no API key needed");
    r.json().await.unwrap()
}

/// Health is written beside the request (not in its way): wait for it.
async fn until(h: &Harness, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let body = health(h).await;
        if ok(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("health never showed {what}: {}", health(h).await);
}

async fn casino_user(h: &Harness) -> u16 {
    h.get("/v1/casino/users/player1").await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_calls_keep_the_counters_health_reports() {
    let h = Harness::start().await;
    let body = health(&h).await;
    assert_eq!(body["status"], "ok");
    let providers = shared::providers::registry::all().map(|d| d.provider.as_str());
    for p in providers.chain(["casino"]) {
        assert_eq!(
            body["providers"][p],
            json!({"healthy": true, "last_success": null, "consecutive_failures": 0}),
            "{p} never called"
        );
    }
    assert!(body["time"].as_str().unwrap().ends_with('Z'));

    // Calls that work record a success: not the process's first, which
    // waits off its call's path, but its next.
    assert_eq!(casino_user(&h).await, 200);
    assert_eq!(casino_user(&h).await, 200);
    let body = until(&h, "a casino success", |b| {
        b["providers"]["casino"]["last_success"].is_string()
    })
    .await;
    assert_eq!(body["providers"]["casino"]["consecutive_failures"], 0);
    let first_success = body["providers"]["casino"]["last_success"].clone();

    // Three calls that fail (each after its retries): unhealthy, degraded.
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/casino", "mode": "fail", "count": 1000, "status": 503}),
    )
    .await;
    for n in 1..=3 {
        assert_eq!(casino_user(&h).await, 503, "call {n} fails upstream");
        until(&h, "another failure", |b| {
            b["providers"]["casino"]["consecutive_failures"] == n
        })
        .await;
    }
    let body = health(&h).await;
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["providers"]["casino"]["healthy"], false);
    assert_eq!(body["providers"]["casino"]["last_success"], first_success);
    assert_eq!(
        body["providers"]["qpay"]["healthy"], true,
        "others unaffected"
    );

    // The provider recovers: one success and it is healthy again.
    h.http
        .delete(format!("{}/_sandbox/faults", h.sandbox.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(casino_user(&h).await, 200);
    let body = until(&h, "the recovery", |b| b["status"] == "ok").await;
    assert_eq!(body["providers"]["casino"]["consecutive_failures"], 0);
    assert_ne!(body["providers"]["casino"]["last_success"], first_success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_write_never_undoes_a_newer_one() {
    let h = Harness::start().await;
    let store = h.store();
    let now = time::OffsetDateTime::now_utc();
    let earlier = now - time::Duration::seconds(5);
    store.record_provider_call("qpay", true, now).await.unwrap();
    // A failure from before that success arrives late: ignored.
    store
        .record_provider_call("qpay", false, earlier)
        .await
        .unwrap();
    let got = store.provider_health(&["qpay"]).await.unwrap();
    assert_eq!(got[0].consecutive_failures, 0);
    // A success older than a recorded failure does not reset it.
    let later = now + time::Duration::seconds(5);
    store
        .record_provider_call("qpay", false, later)
        .await
        .unwrap();
    store
        .record_provider_call("qpay", true, now + time::Duration::seconds(1))
        .await
        .unwrap();
    let got = store.provider_health(&["qpay"]).await.unwrap();
    assert_eq!(got[0].consecutive_failures, 1);
    assert_eq!(
        got[0].last_success.map(|t| t.unix_timestamp()),
        Some(now.unix_timestamp())
    );
}
