//! The sweep: unpaid payments past their expiry expire after the provider
//! is asked, paid ones complete instead, lost top-up messages are sent again.

mod common;

use common::cases::{create_for, provider_reference};
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
    // Nothing left to do (once worker-events has taken the two changes'
    // events: until then the sweep sends them to it again).
    h.run_events().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_paid_days_after_expiry_is_found_and_credited() {
    let h = Harness::start().await;
    // DirectPay's QR cannot be closed: an expired payment stays payable.
    let (late, txn) = gcash(&h, 13_000, "u_late", false).await;
    let (never, _) = gcash(&h, 14_000, "u_never_paid", false).await;
    let expires_at = h.store().payment(late).await.unwrap().unwrap().expires_at;
    let expiry = sweep(h.function("job-sweep"), expires_at + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(
        (expiry.expired, expiry.watched, expiry.closed),
        (2, 2, 0),
        "{expiry:?}"
    );
    // Two days later the payer pays; the callback is lost.
    h.sandbox(
        &format!("/_sandbox/directpay/transactions/{txn}/status"),
        json!({"status": "SUCCESS", "callback": "none"}),
    )
    .await;
    // The 1 h and 6 h checks are past; the next run asks about both.
    let report = sweep(h.function("job-sweep"), expires_at + Duration::days(2))
        .await
        .unwrap();
    assert_eq!(
        (report.late_checked, report.settled_late),
        (2, 1),
        "{report:?}"
    );
    let p = h.store().payment(late).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Completed);
    let u = "u_late".parse().unwrap();
    assert_eq!(
        h.store()
            .balance(&common::harness::merchant(), &u, Currency::Php)
            .await
            .unwrap()
            .minor(),
        13_000
    );
    // The other is asked again on day 3 and day 7, and then no more:
    // DirectPay's window (a week by default) has passed.
    for (day, checked) in [(3, 1), (7, 1), (8, 0), (30, 0)] {
        let r = sweep(
            &h.services,
            expires_at + Duration::days(day) + Duration::minutes(1),
        )
        .await
        .unwrap();
        assert_eq!(r.late_checked, checked, "day {day}: {r:?}");
    }
    assert_eq!(
        h.store().payment(never).await.unwrap().unwrap().status,
        PaymentStatus::Expired
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_bill_or_invoice_is_closed_at_the_provider_or_else_watched() {
    let h = Harness::start().await;
    let bill = create_for(&h, "toyyibpay", "u_close").await;
    let invoice = create_for(&h, "qpay", "u_close").await;
    let refused = create_for(&h, "qpay", "u_close").await;
    let (bill_code, invoice_id, refused_id) = (
        provider_reference(&h, bill).await,
        provider_reference(&h, invoice).await,
        provider_reference(&h, refused).await,
    );
    // QPay refuses to delete the third invoice once.
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": format!("/qpay/v2/invoice/{refused_id}"), "mode": "fail", "count": 1, "status": 400}),
    )
    .await;
    let later = OffsetDateTime::now_utc() + Duration::days(2);
    let report = sweep(h.function("job-sweep"), later).await.unwrap();
    assert_eq!(
        (report.expired, report.closed, report.watched),
        (3, 2, 1),
        "{report:?}"
    );
    // The bill is inactive and the invoice deleted: nothing can arrive.
    assert!(!h.sandbox.state.toyyibpay.bills.lock().unwrap()[&bill_code].active);
    assert!(h.sandbox.state.qpay.invoices.lock().unwrap()[&invoice_id].deleted);
    assert!(!h.sandbox.state.qpay.invoices.lock().unwrap()[&refused_id].deleted);
    // Only the one still open is asked again.
    let again = sweep(h.function("job-sweep"), later + Duration::days(8))
        .await
        .unwrap();
    assert_eq!(again.late_checked, 1, "{again:?}");
    for id in [bill, invoice, refused] {
        assert_eq!(
            h.store().payment(id).await.unwrap().unwrap().status,
            PaymentStatus::Expired
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_may_ask_for_a_short_expiry_within_the_providers_bounds() {
    let h = Harness::start().await;
    let create = |provider: &str, currency: &str, amount: i64, expires_in: i64| {
        json!({"provider": provider, "amount": amount, "currency": currency,
               "reference": format!("ORD-{}", ulid::Ulid::new()), "expires_in": expires_in})
    };
    let now = OffsetDateTime::now_utc();
    // A held seat: five minutes.
    let r = h
        .create(
            &format!("k-{}", ulid::Ulid::new()),
            &create("directpay", "PHP", 15_000, 300),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id: shared::ids::PaymentId = r.body["id"].as_str().unwrap().parse().unwrap();
    let expires_at = h.store().payment(id).await.unwrap().unwrap().expires_at;
    assert!(
        (expires_at - now - Duration::seconds(300)).abs() < Duration::seconds(5),
        "{expires_at}"
    );
    // Outside what paygate or the provider allows: 422, nothing written.
    for (provider, currency, amount, seconds) in [
        ("directpay", "PHP", 15_000, 59),
        ("directpay", "PHP", 15_000, 7 * 24 * 3600 + 1),
        ("epayment", "KZT", 500_000, 7_201),
    ] {
        let bad = h
            .create(
                &format!("k-{}", ulid::Ulid::new()),
                &create(provider, currency, amount, seconds),
            )
            .await;
        assert_eq!(bad.status, 422, "{provider} {seconds}: {}", bad.text);
        assert_eq!(bad.body["error"]["code"], "invalid_expires_in");
    }
    let kzt = h
        .create(
            &format!("k-{}", ulid::Ulid::new()),
            &create("epayment", "KZT", 500_000, 7_200),
        )
        .await;
    assert_eq!(kzt.status, 201, "{}", kzt.text);
    // Six minutes on, the seat's payment has expired; the other has not.
    let report = sweep(h.function("job-sweep"), now + Duration::minutes(6))
        .await
        .unwrap();
    assert_eq!(report.expired, 1, "{report:?}");
    assert_eq!(
        h.store().payment(id).await.unwrap().unwrap().status,
        PaymentStatus::Expired
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_the_provider_keeps_refusing_to_describe_goes_to_the_operators_as_stale() {
    use common::harness::OPERATOR_KEY;
    let h = Harness::start().await;
    let (id, _) = gcash(&h, 16_000, "u_stale", false).await;
    let expires_at = h.store().payment(id).await.unwrap().unwrap().expires_at;
    // DirectPay refuses every status check from here on.
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/directpay/api/cashin_transactions_status/", "mode": "fail", "count": 1000, "status": 400}),
    )
    .await;
    let sweeper = h.function("job-sweep");
    let first = sweep(sweeper, expires_at + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!((first.skipped, first.stale), (1, 0), "{first:?}");
    // A day past its expiry it is stale: listed for people, still asked.
    let day = sweep(
        sweeper,
        expires_at + Duration::days(1) + Duration::minutes(1),
    )
    .await
    .unwrap();
    assert_eq!((day.skipped, day.stale), (1, 1), "{day:?}");
    assert_eq!(h.store().waiting().await.unwrap().payments_stale, 1);
    let queue = h
        .get_as("/v1/ops/queue?kind=payment_stale", OPERATOR_KEY)
        .await;
    assert_eq!(queue.status, 200, "{}", queue.text);
    let item = &queue.body["data"][0];
    assert_eq!(item["payment_id"], id.to_string());
    assert_eq!(item["status"], "pending");
    assert!(
        item["last_error"].as_str().unwrap().contains("400"),
        "{item}"
    );
    assert_eq!(item["actions"], json!(["accept", "reject"]));
    let later = sweep(sweeper, expires_at + Duration::days(2))
        .await
        .unwrap();
    assert_eq!(
        (later.skipped, later.stale),
        (1, 1),
        "checks go on: {later:?}"
    );
    // The operator asks DirectPay by phone: never paid. Rejected, it fails
    // and leaves the queue.
    let reject = h
        .post_as(
            &format!("/v1/ops/payments/{id}/reject"),
            OPERATOR_KEY,
            "stale-1",
            &json!({"reason": "DirectPay support: no such payment was made"}),
        )
        .await;
    assert_eq!(reject.status, 200, "{}", reject.text);
    assert_eq!(reject.body["status"], "failed");
    assert_eq!(h.store().waiting().await.unwrap().payments_stale, 0);
    let after = sweep(sweeper, expires_at + Duration::days(3))
        .await
        .unwrap();
    assert_eq!(after.skipped, 0, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_a_job_never_overlap_without_reserved_concurrency() {
    use shared::api::jobs::{run_exclusive, Exclusive};
    let h = Harness::start().await;
    let sweeper = h.function("job-sweep");
    let until = OffsetDateTime::now_utc() + Duration::minutes(2);
    // A first run is working when a second starts: the second does nothing.
    let (release, hold) = tokio::sync::oneshot::channel::<()>();
    let first = run_exclusive(sweeper, "job-sweep", until, async move {
        hold.await.ok();
        Ok::<_, shared::store::StoreError>("first")
    });
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let second = run_exclusive(sweeper, "job-sweep", until, async {
            Ok::<_, shared::store::StoreError>("second")
        })
        .await
        .unwrap();
        release.send(()).ok();
        second
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap(), Exclusive::Ran("first"));
    assert_eq!(
        second,
        Exclusive::Skipped {
            held_by_another_run: true
        }
    );
    // Given back, the next run runs; another job is not held by it.
    let third = run_exclusive(sweeper, "job-sweep", until, async {
        Ok::<_, shared::store::StoreError>("third")
    });
    assert_eq!(third.await.unwrap(), Exclusive::Ran("third"));
    // A run that died holding the lease: past its deadline, the lease lapses.
    let store = h.store();
    assert!(store
        .acquire_job_lease(
            "job-reconcile",
            "died",
            OffsetDateTime::now_utc(),
            OffsetDateTime::now_utc() + Duration::milliseconds(300)
        )
        .await
        .unwrap());
    let blocked = run_exclusive(h.function("job-reconcile"), "job-reconcile", until, async {
        Ok::<_, shared::store::StoreError>("blocked")
    });
    assert!(matches!(blocked.await.unwrap(), Exclusive::Skipped { .. }));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let after = run_exclusive(h.function("job-reconcile"), "job-reconcile", until, async {
        Ok::<_, shared::store::StoreError>("after")
    });
    assert_eq!(after.await.unwrap(), Exclusive::Ran("after"));
}
