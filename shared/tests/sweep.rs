//! The sweep: unpaid payments past their expiry expire after the provider
//! is asked, paid ones complete instead, lost top-up messages are sent again.

mod common;

use common::harness::Harness;
use serde_json::json;
use shared::api::jobs::{sweep, SweepReport};
use shared::money::Currency;
use shared::payment::PaymentStatus;
use shared::store::TopUpStatus;
use time::{Duration, OffsetDateTime};

async fn gcash(
    h: &Harness,
    amount: i64,
    user: &str,
    casino: bool,
) -> (shared::ids::PaymentId, String) {
    let mut body = json!({"provider": "directpay", "amount": amount, "currency": "PHP",
                          "reference": format!("ORD-{}", ulid::Ulid::new()), "wallet_user_id": user});
    if casino {
        body["casino"] = json!({"username": "player1"});
    }
    let r = h.create(&format!("k-{}", ulid::Ulid::new()), &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.body["id"].as_str().unwrap().parse().unwrap(),
        r.body["provider_reference"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_payments_expire_or_complete_as_the_provider_says() {
    let h = Harness::start().await;
    let (unpaid, _) = gcash(&h, 11_000, "u_sw1", false).await;
    let (paid, txn) = gcash(&h, 12_000, "u_sw2", false).await;
    // Paid, but the callback never came.
    h.sandbox(
        &format!("/_sandbox/directpay/transactions/{txn}/status"),
        json!({"status": "SUCCESS", "callback": "none"}),
    )
    .await;
    // Before expiry nothing is due.
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        sweep(&h.services, now).await.unwrap(),
        SweepReport::default()
    );
    let later = now + Duration::minutes(31);
    let report = sweep(&h.services, later).await.unwrap();
    assert_eq!((report.expired, report.settled_late), (1, 1), "{report:?}");
    let p = h.store().payment(unpaid).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Expired);
    assert_eq!(
        p.history.last().unwrap().source,
        shared::payment::ChangeSource::Sweep
    );
    assert_eq!(
        h.store().payment(paid).await.unwrap().unwrap().status,
        PaymentStatus::Completed
    );
    let u = "u_sw2".parse().unwrap();
    assert_eq!(
        h.store()
            .balance(&common::harness::merchant(), &u, Currency::Php)
            .await
            .unwrap()
            .minor(),
        12_000
    );
    // Nothing left to do.
    assert_eq!(
        sweep(&h.services, later).await.unwrap(),
        SweepReport::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_does_not_answer_leaves_the_payment_for_the_next_run() {
    let h = Harness::start().await;
    let (id, _) = gcash(&h, 11_000, "u_sw3", false).await;
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/directpay/api/cashin_transactions_status/", "mode": "fail", "count": 3, "status": 503}),
    )
    .await;
    let later = OffsetDateTime::now_utc() + Duration::minutes(31);
    let report = sweep(&h.services, later).await.unwrap();
    assert_eq!(report.skipped, 1);
    assert_eq!(
        h.store().payment(id).await.unwrap().unwrap().status,
        PaymentStatus::Pending
    );
    // Pushed back: the next run at once leaves it for others, the first
    // run after its backoff asks again and expires it.
    assert_eq!(
        sweep(&h.services, later).await.unwrap(),
        SweepReport::default()
    );
    let after = later + Duration::minutes(2);
    assert_eq!(sweep(&h.services, after).await.unwrap().expired, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_topup_message_is_sent_again_and_settles_once() {
    let h = Harness::start().await;
    let (id, txn) = gcash(&h, 15_000, "u_sw4", true).await;
    h.sandbox(
        &format!("/_sandbox/directpay/transactions/{txn}/status"),
        json!({"status": "SUCCESS"}),
    )
    .await;
    // The message is lost.
    assert_eq!(h.drain_queue().await.records.len(), 1);
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        sweep(&h.services, now).await.unwrap().topups_requeued,
        0,
        "still within the grace"
    );
    let report = sweep(&h.services, now + Duration::minutes(3))
        .await
        .unwrap();
    assert_eq!(report.topups_requeued, 1);
    let event = h.drain_queue().await;
    assert_eq!(event.records.len(), 1);
    shared::api::worker::handle(&h.services, event, now + Duration::minutes(3)).await;
    assert_eq!(
        h.store().topup(id).await.unwrap().unwrap().status,
        TopUpStatus::Done
    );
    assert_eq!(h.casino_transfers().len(), 1);
    // Done top-ups are no longer due.
    assert_eq!(
        sweep(&h.services, now + Duration::minutes(10))
            .await
            .unwrap()
            .topups_requeued,
        0
    );
}
