//! Money stays right when a provider's answer is lost: refunds and casino
//! top-ups whose call reached the other side but whose answer never came
//! back, a sweep that cannot get stuck, wallets that are their merchant's
//! alone, and callbacks that cannot make paygate hammer a provider. Each
//! runs against DynamoDB Local and the sandbox, with the sandbox's
//! "apply, then lose the answer" faults.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::harness::{Harness, OTHER_API_KEY};
use serde_json::{json, Value};
use shared::api::jobs::{sweep_until, SweepReport};
use shared::api::reconcile::{reconcile, Action, DifferenceKind};
use shared::flow::{mark_topup, process_topup, Books, TopUpResult};
use shared::ids::PaymentId;
use shared::money::{Currency, Money};
use shared::payment::PaymentStatus;
use shared::providers::casino::{CasinoClient, CasinoConfig};
use shared::providers::transport::HttpPolicy;
use shared::queue::TopUpMessage;
use shared::secrets::Secret;
use shared::store::{LedgerEntry, LedgerPurpose, RefundStatus, TopUpStatus};
use time::{Duration, OffsetDateTime};

fn kzt(tiyn: i64) -> Money {
    Money::new(tiyn, Currency::Kzt).unwrap()
}

fn key() -> String {
    format!("k-{}", ulid::Ulid::new())
}

/// An epayment.kz payment of `tiyn`, paid (CHARGE), crediting `user`.
async fn epayment_paid(h: &Harness, tiyn: i64, user: &str) -> PaymentId {
    let r = h
        .create(
            &key(),
            &json!({"provider": "epayment", "amount": tiyn, "currency": "KZT",
                    "reference": format!("ORD-{}", ulid::Ulid::new()), "wallet_user_id": user}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let invoice = r.body["checkout"]["widget"]["invoiceId"]
        .as_str()
        .unwrap()
        .to_string();
    h.sandbox(
        &format!("/_sandbox/epayment/invoices/{invoice}/pay"),
        json!({"status": "CHARGE"}),
    )
    .await;
    let id: PaymentId = r.body["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        h.store().payment(id).await.unwrap().unwrap().status,
        PaymentStatus::Completed
    );
    id
}

/// A DirectPay payment of `centavos` (optionally on to the casino's player1).
async fn gcash(h: &Harness, centavos: i64, user: &str, casino: bool) -> (PaymentId, String) {
    let mut body = json!({"provider": "directpay", "amount": centavos, "currency": "PHP",
                          "reference": format!("ORD-{}", ulid::Ulid::new()), "wallet_user_id": user});
    if casino {
        body["casino"] = json!({"username": "player1"});
    }
    let r = h.create(&key(), &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.body["id"].as_str().unwrap().parse().unwrap(),
        r.body["provider_reference"].as_str().unwrap().to_string(),
    )
}

async fn gcash_paid(h: &Harness, centavos: i64, user: &str, casino: bool) -> PaymentId {
    let (id, txn) = gcash(h, centavos, user, casino).await;
    gcash_pay(h, &txn).await;
    id
}

/// DirectPay reports the cash-in `txn` paid and calls back.
async fn gcash_pay(h: &Harness, txn: &str) {
    let b = h
        .sandbox(
            &format!("/_sandbox/directpay/transactions/{txn}/status"),
            json!({"status": "SUCCESS"}),
        )
        .await;
    assert_eq!(b["delivered"], 200, "{b}");
}

async fn wallet(h: &Harness, user: &str, currency: Currency) -> i64 {
    h.store()
        .balance(
            &common::harness::merchant(),
            &user.parse().unwrap(),
            currency,
        )
        .await
        .unwrap()
        .minor()
}

async fn fault(h: &Harness, path: &str, mode: &str, count: u32) {
    fault_with(h, path, mode, count, 500).await;
}

/// A reconcile run three minutes from now: past `SETTLE_AFTER`.
async fn reconcile_later(h: &Harness) -> shared::api::reconcile::ReconcileReport {
    reconcile(
        &h.services,
        OffsetDateTime::now_utc() + Duration::minutes(3),
    )
    .await
    .unwrap()
}

/// Whether `report` lists payment `id` with `action`.
fn reported(
    report: &shared::api::reconcile::ReconcileReport,
    id: PaymentId,
    action: Action,
) -> bool {
    report
        .differences
        .iter()
        .any(|d| d.payment_id == id.to_string() && d.action == action)
}

/// The next `count` calls under `path` fail as `mode` says, with `status`.
async fn fault_with(h: &Harness, path: &str, mode: &str, count: u32, status: u16) {
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": path, "mode": mode, "count": count, "status": status}),
    )
    .await;
}

// ---- 1. Refunds are exactly-once at the provider ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_refund_whose_answer_is_lost_stays_pending_and_is_never_sent_twice() {
    let h = Harness::start().await;
    let id = epayment_paid(&h, 500_040, "u_lost_refund").await;
    let path = format!("/v1/payments/{id}/refund");
    // The bank refunds, and its answer arrives after our timeout.
    fault(&h, "/epayment/api/operation/", "apply_hang", 1).await;
    let r = h.post(&path, "refund-1", &json!({"amount": 300_000})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["refund_pending"], 300_000);
    assert_eq!(r.body["refunded_amount"], 0);
    assert_eq!(r.body["refunds"][0]["status"], "pending");
    assert_eq!(h.sandbox.state.epayment.refunds.lock().unwrap().len(), 1);
    // The money is held in the wallet, not given back.
    assert_eq!(wallet(&h, "u_lost_refund", Currency::Kzt).await, 200_040);

    // The merchant retries with the same key: the same refund is resumed.
    // check-status cannot prove a partial refund, so it stays pending;
    // nothing is sent again.
    let again = h.post(&path, "refund-1", &json!({"amount": 300_000})).await;
    assert_eq!(again.status, 202, "{}", again.text);
    assert_eq!(h.sandbox.state.calls("/epayment/api/operation/"), 1);
    assert_eq!(h.sandbox.state.epayment.refunds.lock().unwrap().len(), 1);
    // The same key for another amount is another request.
    let other = h.post(&path, "refund-1", &json!({"amount": 1_000})).await;
    assert_eq!(other.status, 422, "{}", other.text);
    assert_eq!(other.body["error"]["code"], "idempotency_key_reused");

    // Reconcile cannot settle it either: it reports it for a person.
    let report = reconcile_later(&h).await;
    assert_eq!((report.refunds_checked, report.refunds_settled), (1, 0));
    assert!(report
        .differences
        .iter()
        .any(|d| d.payment_id == id.to_string()
            && d.kind == DifferenceKind::RefundPending
            && d.action == Action::LeftForReview));
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.refund_pending(), kzt(300_000));
    assert!(p.refunded_amount.is_zero());
    assert_eq!(h.sandbox.state.calls("/epayment/api/operation/"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_refund_whose_answer_is_lost_is_confirmed_on_the_retry() {
    let h = Harness::start().await;
    let id = epayment_paid(&h, 500_000, "u_whole").await;
    let path = format!("/v1/payments/{id}/refund");
    fault(&h, "/epayment/api/operation/", "apply_fail", 1).await;
    let r = h.post(&path, "whole-1", &json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["refund_pending"], 500_000);
    // The bank shows REFUND: the retry records it, sends nothing.
    let again = h.post(&path, "whole-1", &json!({})).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["status"], "refunded");
    assert_eq!(again.body["refunded_amount"], 500_000);
    assert_eq!(again.body["refund_pending"], 0);
    assert_eq!(again.body["refunds"][0]["status"], "succeeded");
    assert_eq!(h.sandbox.state.calls("/epayment/api/operation/"), 1);
    assert_eq!(h.sandbox.state.epayment.refunds.lock().unwrap().len(), 1);
    assert_eq!(wallet(&h, "u_whole", Currency::Kzt).await, 0);
    // Now a replay of the recorded answer.
    let replay = h.post(&path, "whole-1", &json!({})).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.headers.get("idempotent-replayed").unwrap(), "true");
    // And reconcile, reading REFUND as a refund, finds nothing to report.
    let report = reconcile(&h.services, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(
        !report
            .differences
            .iter()
            .any(|d| d.payment_id == id.to_string()),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_that_never_reached_the_bank_is_released_by_reconcile_then_retried() {
    let h = Harness::start().await;
    let id = epayment_paid(&h, 500_000, "u_never").await;
    let path = format!("/v1/payments/{id}/refund");
    // The call hangs without the bank acting on it.
    fault(&h, "/epayment/api/operation/", "hang", 1).await;
    let r = h.post(&path, "never-1", &json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(wallet(&h, "u_never", Currency::Kzt).await, 0);
    // Too soon to take "not refunded" as proof: left alone.
    let early = reconcile(&h.services, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(early.refunds_settled, 0);
    // Later, the bank still shows CHARGE for a whole refund: released.
    let report = reconcile_later(&h).await;
    assert_eq!(report.refunds_settled, 1, "{report:?}");
    assert!(reported(&report, id, Action::Released));
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Completed);
    assert!(p.refund_pending().is_zero());
    assert_eq!(wallet(&h, "u_never", Currency::Kzt).await, 500_000);
    let refunds = h.store().refunds_of(id).await.unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].status, RefundStatus::Failed);
    // The merchant's retry with the same key now refunds, once.
    let again = h.post(&path, "never-1", &json!({})).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["status"], "refunded");
    assert_eq!(h.sandbox.state.epayment.refunds.lock().unwrap().len(), 1);
    assert_eq!(wallet(&h, "u_never", Currency::Kzt).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_qpay_refund_is_confirmed_from_payment_check() {
    let h = Harness::start().await;
    let id = qpay_card(&h, "u_q", json!({"type": "CARD"}))
        .await
        .to_string();
    let path = format!("/v1/payments/{id}/refund");
    fault(&h, "/qpay/v2/payment/refund/", "apply_hang", 1).await;
    let lost = h.post(&path, "q-1", &json!({})).await;
    assert_eq!(lost.status, 202, "{}", lost.text);
    let again = h.post(&path, "q-1", &json!({})).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["status"], "refunded");
    assert_eq!(h.sandbox.state.calls("/qpay/v2/payment/refund/"), 1);
    // Reconcile reads QPay's REFUNDED as the refund it is.
    let report = reconcile(&h.services, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(
        !report.differences.iter().any(|d| d.payment_id == id),
        "{report:?}"
    );
}

// ---- 2. Casino top-ups never pay a player twice ----

fn casino(h: &Harness, nonce_dedup: bool) -> CasinoClient {
    casino_at(h, format!("{}/casino/lookup", h.sandbox.url()), nonce_dedup)
}

/// A casino client of the sandbox's bridge, its lookup at `lookup_url`.
fn casino_at(h: &Harness, lookup_url: String, nonce_dedup: bool) -> CasinoClient {
    casino_with(
        lookup_url,
        format!("{}/casino", h.sandbox.url()),
        nonce_dedup,
    )
}

/// A casino client with its lookup and its bridge where the test says.
fn casino_with(lookup_url: String, base_url: String, nonce_dedup: bool) -> CasinoClient {
    CasinoClient::new(
        CasinoConfig {
            lookup_url,
            base_url,
            tokens: Secret::new(
                sandbox::casino::TOKENS
                    .iter()
                    .map(|(m, t)| (m.to_string(), t.to_string()))
                    .collect(),
            ),
            platform: 1,
            nonce_dedup,
        },
        HttpPolicy {
            request_timeout: std::time::Duration::from_secs(2),
            base_backoff: std::time::Duration::from_millis(5),
            max_backoff: std::time::Duration::from_millis(20),
            ..HttpPolicy::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nonce_dedup_a_transfer_whose_answer_is_lost_is_held_not_resent() {
    let h = Harness::start().await;
    // A bridge that pays every call, as the public client suggests it may.
    h.sandbox("/_sandbox/casino/dedup", json!({"enabled": false}))
        .await;
    let id = gcash_paid(&h, 150_000, "u_unknown", true).await;
    h.drain_queue().await;
    let client = casino(&h, false);
    let message = TopUpMessage { payment_id: id };
    fault(&h, "/casino/Default/Transfer", "apply_hang", 1).await;
    let now = OffsetDateTime::now_utc();
    let first = process_topup(Books::of(&h.services), &client, &message, now)
        .await
        .unwrap();
    assert_eq!(first, TopUpResult::Settled);
    let t = h.store().topup(id).await.unwrap().unwrap();
    assert_eq!(t.status, TopUpStatus::Unknown);
    assert!(t.maybe_sent);
    // Delivered again (SQS, the sweep): nothing is sent.
    let later = now + Duration::minutes(10);
    process_topup(Books::of(&h.services), &client, &message, later)
        .await
        .unwrap();
    let swept = shared::api::jobs::sweep(&h.services, later).await.unwrap();
    assert_eq!(swept.topups_requeued, 0, "an unknown top-up is not swept");
    assert_eq!(h.casino_transfers().len(), 1, "paid once, never twice");
    assert_eq!(h.sandbox.state.calls("/casino/Default/Transfer"), 1);
    // The merchant sees it; the wallet still holds the money.
    let view = h.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(view.body["topup"]["status"], "unknown", "{}", view.text);
    assert_eq!(wallet(&h, "u_unknown", Currency::Php).await, 150_000);
    // Reconcile lists it for a person.
    let report = reconcile(&h.services, later).await.unwrap();
    assert!(report
        .differences
        .iter()
        .any(|d| d.payment_id == id.to_string() && d.kind == DifferenceKind::TopUpUnknown));
    // The person finds the transfer in the casino's history: sent.
    let txn = h.casino_transfers()[0].transaction_id.clone();
    let done = mark_topup(
        Books::of(&h.services),
        id,
        Some(&txn),
        ("ops", "seen in casino history"),
        later,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(done.status, TopUpStatus::Done);
    assert_eq!(wallet(&h, "u_unknown", Currency::Php).await, 0);
    // A second decision is refused: it is settled.
    assert!(
        mark_topup(Books::of(&h.services), id, None, ("ops", "test"), later)
            .await
            .unwrap()
            .is_err()
    );
    assert_eq!(wallet(&h, "u_unknown", Currency::Php).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_died_mid_transfer_leaves_the_outcome_unknown() {
    let h = Harness::start().await;
    let id = gcash_paid(&h, 20_000, "u_died", true).await;
    h.drain_queue().await;
    let now = OffsetDateTime::now_utc();
    // A worker took the lease and died during the transfer.
    h.store()
        .acquire_topup(id, now, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let after_lease = now + Duration::minutes(2);
    process_topup(
        Books::of(&h.services),
        &casino(&h, false),
        &TopUpMessage { payment_id: id },
        after_lease,
    )
    .await
    .unwrap();
    let t = h.store().topup(id).await.unwrap().unwrap();
    assert_eq!(t.status, TopUpStatus::Unknown);
    assert_eq!(h.sandbox.state.calls("/casino/Default/Transfer"), 0);
    // Not sent after all (the casino has no such transfer): queued again,
    // and sent once with the same nonce.
    let queued = mark_topup(
        Books::of(&h.services),
        id,
        None,
        ("ops", "not in history"),
        after_lease,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(queued.status, TopUpStatus::Queued);
    process_topup(
        Books::of(&h.services),
        &casino(&h, false),
        &TopUpMessage { payment_id: id },
        after_lease,
    )
    .await
    .unwrap();
    assert_eq!(
        h.store().topup(id).await.unwrap().unwrap().status,
        TopUpStatus::Done
    );
    assert_eq!(h.casino_transfers().len(), 1);
    assert_eq!(wallet(&h, "u_died", Currency::Php).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nonce_dedup_a_lost_transfer_is_resent_and_never_marked_failed() {
    let h = Harness::start().await;
    let id = gcash_paid(&h, 30_000, "u_dedup", true).await;
    h.drain_queue().await;
    let client = casino(&h, true);
    let message = TopUpMessage { payment_id: id };
    // Applied, answer lost, on every attempt.
    fault(&h, "/casino/Default/Transfer", "apply_fail", 100).await;
    let now = OffsetDateTime::now_utc();
    // Attempts 30 minutes apart: the last is past the retry window.
    for attempt in 1..=shared::flow::MAX_TOPUP_ATTEMPTS {
        let at = now + Duration::minutes(30 * i64::from(attempt));
        let r = process_topup(Books::of(&h.services), &client, &message, at)
            .await
            .unwrap();
        let expect_retry = attempt < shared::flow::MAX_TOPUP_ATTEMPTS;
        assert_eq!(matches!(r, TopUpResult::Retry(_)), expect_retry, "{r:?}");
    }
    let t = h.store().topup(id).await.unwrap().unwrap();
    assert_eq!(
        t.status,
        TopUpStatus::Unknown,
        "an attempt may have reached the casino: never failed"
    );
    // The bridge saw the same nonce every time: one transfer.
    assert_eq!(h.casino_transfers().len(), 1);
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/none", "mode": "fail", "count": 0}),
    )
    .await;
}

// ---- 3. The sweep cannot get stuck ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_cannot_hold_the_sweep() {
    let h = Harness::start().await;
    // Two payments whose provider never answers, older than the one paid.
    let (stuck_a, txn_a) = gcash(&h, 10_000, "u_stuck", false).await;
    let (stuck_b, txn_b) = gcash(&h, 10_000, "u_stuck", false).await;
    let (paid, txn) = gcash(&h, 10_000, "u_found", false).await;
    h.sandbox(
        &format!("/_sandbox/directpay/transactions/{txn}/status"),
        json!({"status": "SUCCESS", "callback": "none"}),
    )
    .await;
    for t in [&txn_a, &txn_b] {
        fault(
            &h,
            &format!("/directpay/api/cashin_transactions_status/{t}"),
            "fail",
            1_000,
        )
        .await;
    }
    // Long past expiry, a day and more: still reached.
    let later = OffsetDateTime::now_utc() + Duration::days(2);
    let report = sweep_until(&h.services, later, None, 1).await.unwrap();
    assert_eq!((report.skipped, report.settled_late), (2, 1), "{report:?}");
    assert_eq!(
        h.store().payment(paid).await.unwrap().unwrap().status,
        PaymentStatus::Completed
    );
    // The stuck ones were pushed back: the next run does not ask again.
    let calls = h
        .sandbox
        .state
        .calls("/directpay/api/cashin_transactions_status/");
    // (The completion's event taken by worker-events, as it would be.)
    h.run_events().await;
    let next = sweep_until(&h.services, later, None, 1).await.unwrap();
    assert_eq!(next, SweepReport::default());
    assert_eq!(
        h.sandbox
            .state
            .calls("/directpay/api/cashin_transactions_status/"),
        calls
    );
    // Once their backoff is over they are asked again.
    let after = sweep_until(&h.services, later + Duration::minutes(2), None, 1)
        .await
        .unwrap();
    assert_eq!(after.skipped, 2);
    for id in [stuck_a, stuck_b] {
        let p = h.store().payment(id).await.unwrap().unwrap();
        assert_eq!((p.status, p.sweep_misses), (PaymentStatus::Pending, 2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_topups_are_requeued_first_and_a_run_stops_at_its_deadline() {
    let h = Harness::start().await;
    let with_topup = gcash_paid(&h, 10_000, "u_first", true).await;
    h.drain_queue().await; // the message is lost
    let (overdue, _) = gcash(&h, 10_000, "u_overdue", false).await;
    let later = OffsetDateTime::now_utc() + Duration::hours(1);
    let calls = h
        .sandbox
        .state
        .calls("/directpay/api/cashin_transactions_status/");
    // A run whose deadline has passed still re-queues the top-up, and
    // starts no provider call.
    let report = sweep_until(&h.services, later, Some(std::time::Instant::now()), 100)
        .await
        .unwrap();
    assert!(report.stopped_early, "{report:?}");
    assert_eq!(report.expired, 0);
    assert_eq!(
        h.sandbox
            .state
            .calls("/directpay/api/cashin_transactions_status/"),
        calls
    );
    let requeued = h.drain_queue().await;
    assert_eq!(requeued.records.len(), 1);
    assert!(requeued.records[0]
        .body
        .as_deref()
        .unwrap()
        .contains(&with_topup.to_string()));
    assert_eq!(
        h.store().payment(overdue).await.unwrap().unwrap().status,
        PaymentStatus::Pending
    );
}

// ---- 4. One merchant's wallets are that merchant's alone ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_merchants_key_sees_an_empty_wallet() {
    let h = Harness::start().await;
    let id = gcash_paid(&h, 25_000, "u_shared_id", false).await;
    let own = h.get("/v1/wallets/u_shared_id").await;
    assert_eq!(own.status, 200);
    assert_eq!(own.body["balances"][0]["amount"], 25_000);
    assert_eq!(own.body["entries"][0]["payment_id"], id.to_string());
    let other = h
        .http
        .get(format!("{}/v1/wallets/u_shared_id", h.api))
        .bearer_auth(OTHER_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["balances"], json!([]));
    assert_eq!(body["entries"], json!([]));
    assert_eq!(body["next_cursor"], Value::Null);
    let text = body.to_string();
    assert!(!text.contains(&id.to_string()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_wallets_whole_history_pages_and_adds_up() {
    let h = Harness::start().await;
    let user = "u_busy";
    let merchant = common::harness::merchant();
    let start = OffsetDateTime::now_utc();
    for i in 0..120i64 {
        h.store()
            .post_entry(&LedgerEntry {
                merchant: merchant.clone(),
                user: user.parse().unwrap(),
                payment_id: PaymentId::generate(),
                purpose: LedgerPurpose::Deposit,
                amount: Money::new(100 + i, Currency::Php).unwrap(),
                at: start + Duration::milliseconds(i),
                memo: "deposit".into(),
            })
            .await
            .unwrap();
    }
    let mut seen = HashSet::new();
    let mut total = 0i64;
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/wallets/{user}?cursor={c}"),
            None => format!("/v1/wallets/{user}"),
        };
        let page = h.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        pages += 1;
        for e in page.body["entries"].as_array().unwrap() {
            assert!(seen.insert(e["id"].as_str().unwrap().to_string()));
            total += e["amount"].as_i64().unwrap();
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(seen.len(), 120);
    assert_eq!(total, wallet(&h, user, Currency::Php).await);
    let bad = h
        .get(&format!("/v1/wallets/{user}?cursor=bm90LW91cnM"))
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["code"], "invalid_cursor");
}

// ---- 5. Callbacks cannot make paygate hammer a provider ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_callbacks_costs_the_provider_one_confirmation() {
    let h = Arc::new(Harness::start().await);
    let (id, txn) = gcash(&h, 10_000, "u_flood", false).await;
    let status_path = "/directpay/api/cashin_transactions_status/";
    let before = h.sandbox.state.calls(status_path);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let h = h.clone();
        let body = json!({"amount": "100", "currency": "PHP", "refId": id.to_string(),
                          "txnId": txn, "status": "SUCCESS"})
        .to_string();
        tasks.push(tokio::spawn(async move {
            h.post_raw("/webhooks/directpay", "application/json", &body)
                .await
                .status
        }));
    }
    for t in tasks {
        let status = t.await.unwrap();
        assert!(status == 200 || status == 503, "{status}");
    }
    assert!(
        h.sandbox.state.calls(status_path) - before <= 1,
        "at most one confirmation per payment per window"
    );
    // Not paid at DirectPay: nothing moved.
    assert_eq!(
        h.store().payment(id).await.unwrap().unwrap().status,
        PaymentStatus::Pending
    );
    // Callbacks for payments that do not exist never reach the provider.
    let before = h.sandbox.state.calls(status_path);
    for _ in 0..10 {
        let body = json!({"amount": "100", "currency": "PHP",
                          "txnId": format!("DP{}", ulid::Ulid::new()), "status": "SUCCESS"})
        .to_string();
        let r = h
            .post_raw("/webhooks/directpay", "application/json", &body)
            .await;
        assert_eq!(r.status, 404, "{}", r.text);
    }
    assert_eq!(h.sandbox.state.calls(status_path), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_event_about_another_transaction_is_refused() {
    use hmac::{Hmac, Mac};
    let h = Harness::start().await;
    let r = h
        .create(
            &key(),
            &json!({"provider": "payment_engine", "amount": 500, "currency": "USD", "method": "RTP",
                    "reference": format!("ORD-{}", ulid::Ulid::new()), "wallet_user_id": "u_pe"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap();
    let body = format!(
        r#"{{"eventId":"evt_{}","eventType":"transaction.completed","data":{{"transactionId":"txn_someone_else","transactionReference":"{id}","status":"COMPLETED","amount":5,"currencyCode":"USD"}}}}"#,
        ulid::Ulid::new()
    );
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(sandbox::payment_engine::WEBHOOK_SECRET.as_bytes())
            .unwrap();
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let before = h.items().await;
    let r = h
        .http
        .post(format!("{}/webhooks/payment-engine", h.api))
        .header("content-type", "application/json")
        .header("x-webhook-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(h.items().await, before, "nothing written");
}

// ---- The casino bridge's lookup, as the public bridge answers it ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_bridges_lookup_url_and_shape_work_and_a_wrong_url_is_no_missing_player() {
    let h = Harness::start().await;
    let sb = h.sandbox.url();
    let with_url = |url: String| casino_at(&h, url, false);
    let public = with_url(format!("{sb}/casino/api/Bridge/get-user/{{username}}"));
    let player = public
        .lookup(&"player1".parse().unwrap())
        .await
        .unwrap()
        .expect("found through the template");
    assert_eq!(player.client_id, "1001");
    let t = public
        .transfer(
            &player,
            Money::new(10_000, Currency::Php).unwrap(),
            "n-public-1",
            "test",
        )
        .await
        .unwrap();
    assert!(!t.transaction_id.is_empty());
    assert_eq!(
        public.lookup(&"nobody".parse().unwrap()).await.unwrap(),
        None,
        "the bridge says so"
    );
    // A lookup URL that is wrong answers a bare 404: an error, not "no
    // such player" (which would fail the top-up for good).
    let wrong = with_url(format!("{sb}/casino/no-such-path"));
    assert!(wrong.lookup(&"player1".parse().unwrap()).await.is_err());
}

// ---- 7. What waits for a person: the operators' queue ----

fn queued<'a>(queue: &'a Value, kind: &str, id: PaymentId) -> Option<&'a Value> {
    queue["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == kind && i["payment_id"] == id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_queue_lists_what_waits_and_only_operators_read_it() {
    use common::harness::{OPERATOR, OPERATOR_KEY};
    let h = Harness::start().await;
    // A refund whose answer was lost: pending.
    let refunded = epayment_paid(&h, 500_040, "u_queue_refund").await;
    fault(&h, "/epayment/api/operation/", "apply_hang", 1).await;
    let r = h
        .post(
            &format!("/v1/payments/{refunded}/refund"),
            "q-refund",
            &json!({"amount": 300_000}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    // A casino transfer whose answer was lost: unknown.
    h.sandbox("/_sandbox/casino/dedup", json!({"enabled": false}))
        .await;
    let topped = gcash_paid(&h, 150_000, "u_queue_topup", true).await;
    h.drain_queue().await;
    fault(&h, "/casino/Default/Transfer", "apply_hang", 1).await;
    let now = OffsetDateTime::now_utc();
    let message = TopUpMessage { payment_id: topped };
    process_topup(Books::of(&h.services), &casino(&h, false), &message, now)
        .await
        .unwrap();
    // A short ToyyibPay payment: needs review.
    let r = h
        .create(
            &key(),
            &json!({"provider": "toyyibpay", "amount": 9_990, "currency": "MYR",
                    "reference": format!("ORD-{}", ulid::Ulid::new()),
                    "customer": {"email": "a@example.com", "phone": "+60123456789"},
                    "wallet_user_id": "u_queue_short"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let short: PaymentId = r.body["id"].as_str().unwrap().parse().unwrap();
    let bill = r.body["provider_reference"].as_str().unwrap().to_string();
    let b = h
        .sandbox(
            &format!("/_sandbox/toyyibpay/bills/{bill}/attempt"),
            json!({"status": 1, "amount_sen": 9_900}),
        )
        .await;
    assert_eq!(b["delivered"], 200, "{b}");

    let queue = h.get_as("/v1/ops/queue", OPERATOR_KEY).await;
    assert_eq!(queue.status, 200, "{}", queue.text);
    let review = queued(&queue.body, "payment_review", short).expect("the short payment");
    assert_eq!(review["provider"], "toyyibpay");
    assert_eq!(review["status"], "needs_review");
    assert_eq!(review["amount"], 9_990);
    assert_eq!(review["actions"], json!(["accept", "reject"]));
    let refund = queued(&queue.body, "refund_pending", refunded).expect("the pending refund");
    assert_eq!(refund["amount"], 300_000);
    assert!(refund["refund_id"].as_str().unwrap().starts_with("ref_"));
    let topup = queued(&queue.body, "topup_unknown", topped).expect("the unknown top-up");
    assert_eq!(topup["amount"], 150_000);
    assert_eq!(topup["merchant_id"], common::harness::MERCHANT);
    assert_eq!(topup["actions"], json!(["mark_sent", "mark_not_sent"]));

    // Pages: one item at a time, the cursor walks the whole queue in order.
    let all = h.get_as("/v1/ops/queue?limit=200", OPERATOR_KEY).await;
    let order = |v: &Value| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["kind"].clone(), i["payment_id"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(all.body["next_cursor"], Value::Null);
    let mut walked = Vec::new();
    let mut path = "/v1/ops/queue?limit=1".to_string();
    loop {
        let page = h.get_as(&path, OPERATOR_KEY).await;
        assert_eq!(page.status, 200, "{}", page.text);
        walked.extend(order(&page.body));
        match page.body["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/ops/queue?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(walked, order(&all.body));
    assert_eq!(walked.len(), 3);
    for bad in ["limit=0", "limit=201", "cursor=nonsense"] {
        let r = h
            .get_as(&format!("/v1/ops/queue?{bad}"), OPERATOR_KEY)
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }

    // Filters.
    let only = h
        .get_as("/v1/ops/queue?kind=topup_unknown", OPERATOR_KEY)
        .await;
    assert_eq!(
        only.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        only.text
    );
    let none = h.get_as("/v1/ops/queue?provider=qpay", OPERATOR_KEY).await;
    assert_eq!(none.body["data"], json!([]));
    let bad = h
        .get_as("/v1/ops/queue?kind=everything", OPERATOR_KEY)
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["code"], "invalid_kind");

    // A merchant's key does not read the queue; an operator's does not act
    // as a merchant.
    let merchant = h.get("/v1/ops/queue").await;
    assert_eq!(merchant.status, 403);
    assert_eq!(merchant.body["error"]["code"], "operator_key_required");
    let as_merchant = h
        .get_as(&format!("/v1/payments/{short}"), OPERATOR_KEY)
        .await;
    assert_eq!(as_merchant.status, 403);
    assert_eq!(as_merchant.body["error"]["code"], "merchant_key_required");

    // Settled, a top-up leaves the queue.
    let txn = h.casino_transfers()[0].transaction_id.clone();
    mark_topup(
        Books::of(&h.services),
        topped,
        Some(&txn),
        (OPERATOR, "seen"),
        now,
    )
    .await
    .unwrap()
    .unwrap();
    let after = h.get_as("/v1/ops/queue", OPERATOR_KEY).await;
    assert!(queued(&after.body, "topup_unknown", topped).is_none());
    assert!(queued(&after.body, "payment_review", short).is_some());
}

/// Two operators at once: each of `actions` under `base`, concurrently;
/// each action's status and body.
async fn race(
    h: &Arc<Harness>,
    base: &str,
    actions: [&'static str; 2],
) -> Vec<(&'static str, u16, Value)> {
    use common::harness::OPERATOR_KEY;
    let mut tasks = Vec::new();
    for action in actions {
        let h = h.clone();
        let path = format!("{base}/{action}");
        tasks.push(tokio::spawn(async move {
            let r = h
                .post_as(
                    &path,
                    OPERATOR_KEY,
                    &format!("race-{action}"),
                    &json!({"reason": "race"}),
                )
                .await;
            (action, r.status, r.body)
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    outcomes
}

/// A refund whose answer was lost: pending, its amount held in the wallet.
async fn lost_refund(h: &Harness, user: &str) -> (PaymentId, String) {
    let id = epayment_paid(h, 500_040, user).await;
    fault(h, "/epayment/api/operation/", "apply_hang", 1).await;
    let r = h
        .post(
            &format!("/v1/payments/{id}/refund"),
            &key(),
            &json!({"amount": 300_000}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let refund = r.body["refunds"][0]["id"].as_str().unwrap().to_string();
    (id, refund)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_settle_refunds_and_top_ups_once_with_their_name_and_reason() {
    use common::harness::{OPERATOR, OPERATOR_KEY};
    let h = Arc::new(Harness::start().await);
    let (id, refund) = lost_refund(&h, "u_ops_refund").await;
    let path = format!("/v1/ops/refunds/{id}/{refund}/mark-refunded");
    let reason = json!({"reason": "seen in the bank's merchant portal"});
    // A merchant's key cannot settle it.
    let merchant = h.post(&path, "ops-1", &reason).await;
    assert_eq!(merchant.status, 403);
    // The operator records it: the hold becomes the refund.
    let done = h.post_as(&path, OPERATOR_KEY, "ops-1", &reason).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["status"], "partially_refunded");
    assert_eq!(done.body["refunded_amount"], 300_000);
    assert_eq!(done.body["refund_pending"], 0);
    let last = done.body["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["source"], "operator");
    assert_eq!(last["by"], OPERATOR);
    assert_eq!(last["reason"], "seen in the bank's merchant portal");
    assert_eq!(wallet(&h, "u_ops_refund", Currency::Kzt).await, 200_040);
    // The same request again is the same answer; another decision is 409.
    let replay = h.post_as(&path, OPERATOR_KEY, "ops-1", &reason).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body["refunded_amount"], 300_000);
    let other = h
        .post_as(
            &format!("/v1/ops/refunds/{id}/{refund}/mark-not-refunded"),
            OPERATOR_KEY,
            "ops-2",
            &reason,
        )
        .await;
    assert_eq!(other.status, 409, "{}", other.text);
    assert_eq!(other.body["error"]["code"], "invalid_state");
    assert_eq!(wallet(&h, "u_ops_refund", Currency::Kzt).await, 200_040);
    // No reason, no action.
    let silent = h
        .post_as(&path, OPERATOR_KEY, "ops-3", &json!({"reason": " "}))
        .await;
    assert_eq!(silent.status, 422);

    // Two operators at once on another pending refund: one decides.
    let (id2, refund2) = lost_refund(&h, "u_ops_race").await;
    let outcomes = race(
        &h,
        &format!("/v1/ops/refunds/{id2}/{refund2}"),
        ["mark-refunded", "mark-not-refunded"],
    )
    .await;
    let outcomes: Vec<_> = outcomes.into_iter().map(|(a, s, _)| (a, s)).collect();
    let won: Vec<_> = outcomes.iter().filter(|(_, s)| *s == 200).collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().any(|(_, s)| *s == 409), "{outcomes:?}");
    let expected = if won[0].0 == "mark-refunded" {
        200_040
    } else {
        500_040
    };
    assert_eq!(wallet(&h, "u_ops_race", Currency::Kzt).await, expected);
    let p = h.store().payment(id2).await.unwrap().unwrap();
    assert_eq!(p.refund_pending(), Money::zero(Currency::Kzt));
    // Either decision is in the payment's history, with who and why.
    let entry = p.history.last().unwrap();
    assert_eq!(
        entry.action.as_deref(),
        Some(&won[0].0.replace('-', "_")[..])
    );
    assert_eq!(entry.by.as_deref(), Some(OPERATOR));
    assert_eq!(entry.reason.as_deref(), Some("race"));
    assert_eq!(entry.source, shared::payment::ChangeSource::Operator);
    // A refund that was not made: released, and noted though no status moves.
    let (id3, refund3) = lost_refund(&h, "u_ops_not").await;
    let not = h
        .post_as(
            &format!("/v1/ops/refunds/{id3}/{refund3}/mark-not-refunded"),
            OPERATOR_KEY,
            "ops-not",
            &json!({"reason": "the bank has no such refund"}),
        )
        .await;
    assert_eq!(not.status, 200, "{}", not.text);
    assert_eq!(not.body["status"], "completed");
    let entry = last_entry(&not.body);
    assert_eq!(entry["action"], "mark_not_refunded");
    assert_eq!(entry["status"], "completed");
    assert_eq!(entry["reason"], "the bank has no such refund");
    assert_eq!(wallet(&h, "u_ops_not", Currency::Kzt).await, 500_040);

    // A top-up whose outcome is unknown: marked sent with the casino's id.
    h.sandbox("/_sandbox/casino/dedup", json!({"enabled": false}))
        .await;
    let topped = gcash_paid(&h, 150_000, "u_ops_topup", true).await;
    h.drain_queue().await;
    fault(&h, "/casino/Default/Transfer", "apply_hang", 1).await;
    let message = TopUpMessage { payment_id: topped };
    process_topup(
        Books::of(&h.services),
        &casino(&h, false),
        &message,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let sent = format!("/v1/ops/topups/{topped}/mark-sent");
    let without = h.post_as(&sent, OPERATOR_KEY, "t-0", &reason).await;
    assert_eq!(without.status, 422, "the casino's id is required");
    let body = json!({"reason": "in the player's history", "casino_transaction_id": "C-123"});
    let marked = h.post_as(&sent, OPERATOR_KEY, "t-1", &body).await;
    assert_eq!(marked.status, 200, "{}", marked.text);
    assert_eq!(marked.body["topup"]["status"], "done");
    assert_eq!(marked.body["topup"]["casino_transaction_id"], "C-123");
    let entry = last_entry(&marked.body);
    assert_eq!(entry["action"], "mark_sent");
    assert_eq!(entry["by"], OPERATOR);
    assert_eq!(entry["reason"], "in the player's history");
    assert_eq!(wallet(&h, "u_ops_topup", Currency::Php).await, 0);
    let again = h
        .post_as(
            &format!("/v1/ops/topups/{topped}/mark-not-sent"),
            OPERATOR_KEY,
            "t-2",
            &json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(h.casino_transfers().len(), 1, "nothing was sent again");
    assert_eq!(wallet(&h, "u_ops_topup", Currency::Php).await, 0);
}

/// A ToyyibPay payment of `sen` that the payer paid short (`paid` sen):
/// in review, with ToyyibPay's amount recorded.
async fn short_toyyibpay(h: &Harness, sen: i64, paid: i64, user: &str) -> PaymentId {
    let r = h
        .create(
            &key(),
            &json!({"provider": "toyyibpay", "amount": sen, "currency": "MYR",
                    "reference": format!("ORD-{}", ulid::Ulid::new()),
                    "customer": {"email": "a@example.com", "phone": "+60123456789"},
                    "wallet_user_id": user}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bill = r.body["provider_reference"].as_str().unwrap().to_string();
    let b = h
        .sandbox(
            &format!("/_sandbox/toyyibpay/bills/{bill}/attempt"),
            json!({"status": 1, "amount_sen": paid}),
        )
        .await;
    assert_eq!(b["delivered"], 200, "{b}");
    let id: PaymentId = r.body["id"].as_str().unwrap().parse().unwrap();
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::NeedsReview);
    id
}

fn last_entry(payment: &Value) -> Value {
    payment["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_accept_a_short_payment_at_the_paid_amount_once() {
    use common::harness::{OPERATOR, OPERATOR_KEY};
    let h = Arc::new(Harness::start().await);
    let id = short_toyyibpay(&h, 9_990, 9_900, "u_accept").await;
    // The merchant and the queue see both amounts.
    let seen = h.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(seen.body["amount"], 9_990);
    assert_eq!(seen.body["confirmed_amount"], 9_900, "{}", seen.text);
    let queue = h
        .get_as("/v1/ops/queue?kind=payment_review", OPERATOR_KEY)
        .await;
    let item = queued(&queue.body, "payment_review", id).expect("in the queue");
    assert_eq!(item["confirmed_amount"], 9_900);
    assert_eq!(wallet(&h, "u_accept", Currency::Myr).await, 0);

    let accept = format!("/v1/ops/payments/{id}/accept");
    let reason = json!({"reason": "payer paid RM 99.00, checked in ToyyibPay's portal"});
    // Not a merchant's decision.
    let merchant = h.post(&accept, "a-0", &reason).await;
    assert_eq!(merchant.status, 403);
    assert_eq!(merchant.body["error"]["code"], "operator_key_required");
    // Not at an amount the provider did not confirm.
    let wrong = h
        .post_as(
            &accept,
            OPERATOR_KEY,
            "a-1",
            &json!({"reason": "typo", "amount": 9_990}),
        )
        .await;
    assert_eq!(wrong.status, 409, "{}", wrong.text);
    assert_eq!(wallet(&h, "u_accept", Currency::Myr).await, 0);
    // Accepted: the wallet is credited what was paid, once.
    let done = h.post_as(&accept, OPERATOR_KEY, "a-2", &reason).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["status"], "completed");
    assert_eq!(done.body["amount"], 9_990);
    assert_eq!(done.body["confirmed_amount"], 9_900);
    let entry = last_entry(&done.body);
    assert_eq!(entry["status"], "completed");
    assert_eq!(entry["source"], "operator");
    assert_eq!(entry["by"], OPERATOR);
    assert_eq!(entry["action"], "accept");
    assert_eq!(entry["reason"], reason["reason"]);
    // The merchant sees that an operator accepted it, and why, not who.
    let seen = h.get(&format!("/v1/payments/{id}")).await;
    let entry = last_entry(&seen.body);
    assert_eq!(entry["source"], "operator");
    assert_eq!(entry["action"], "accept");
    assert_eq!(entry["reason"], reason["reason"]);
    assert!(entry.get("by").is_none(), "{entry}");
    assert!(!seen.text.contains(OPERATOR), "{}", seen.text);
    assert_eq!(wallet(&h, "u_accept", Currency::Myr).await, 9_900);
    let replay = h.post_as(&accept, OPERATOR_KEY, "a-2", &reason).await;
    assert_eq!(replay.status, 200);
    let again = h.post_as(&accept, OPERATOR_KEY, "a-3", &reason).await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(again.body["error"]["code"], "invalid_state");
    let reject = h
        .post_as(
            &format!("/v1/ops/payments/{id}/reject"),
            OPERATOR_KEY,
            "a-4",
            &reason,
        )
        .await;
    assert_eq!(reject.status, 409, "{}", reject.text);
    assert_eq!(wallet(&h, "u_accept", Currency::Myr).await, 9_900);
    let after = h.get_as("/v1/ops/queue", OPERATOR_KEY).await;
    assert!(queued(&after.body, "payment_review", id).is_none());
    // Reconcile finds ToyyibPay's amount is what was credited.
    let report = reconcile(&h.services, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(
        !report
            .differences
            .iter()
            .any(|d| d.payment_id == id.to_string()),
        "{report:?}"
    );

    // Rejected where the provider has no refund: failed, nothing credited.
    let other = short_toyyibpay(&h, 5_000, 4_000, "u_reject_short").await;
    let r = h
        .post_as(
            &format!("/v1/ops/payments/{other}/reject"),
            OPERATOR_KEY,
            "r-1",
            &json!({"reason": "payer asked ToyyibPay for the money back"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "failed");
    assert_eq!(last_entry(&r.body)["action"], "reject");
    assert_eq!(wallet(&h, "u_reject_short", Currency::Myr).await, 0);

    // Two operators at once, one accepting and one rejecting: one decides.
    let raced = short_toyyibpay(&h, 7_000, 6_500, "u_review_race").await;
    let outcomes = race(
        &h,
        &format!("/v1/ops/payments/{raced}"),
        ["accept", "reject"],
    )
    .await;
    let won: Vec<_> = outcomes.iter().filter(|(_, s, _)| *s == 200).collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    let lost = outcomes.iter().find(|(_, s, _)| *s == 409).expect("a 409");
    assert_eq!(lost.2["error"]["code"], "invalid_state");
    let p = h.store().payment(raced).await.unwrap().unwrap();
    let (status, credited) = if won[0].0 == "accept" {
        (PaymentStatus::Completed, 6_500)
    } else {
        (PaymentStatus::Failed, 0)
    };
    assert_eq!(p.status, status);
    assert_eq!(wallet(&h, "u_review_race", Currency::Myr).await, credited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_without_a_confirmed_amount_needs_the_operators_figure() {
    use common::harness::OPERATOR_KEY;
    use shared::store::{StatusChange, TransitionOutcome};
    let h = Harness::start().await;
    let (id, _) = gcash(&h, 20_000, "u_stated", false).await;
    // A provider that confirmed the payment without an amount (the flow
    // sends that to review): recorded as the flow records it.
    let p = h.store().payment(id).await.unwrap().unwrap();
    let change = StatusChange::new(
        PaymentStatus::NeedsReview,
        shared::payment::ChangeSource::Poll,
        OffsetDateTime::now_utc(),
    );
    let moved = h.store().transition(&p, change, vec![]).await.unwrap();
    assert!(matches!(moved, TransitionOutcome::Applied(_)));
    let path = format!("/v1/ops/payments/{id}/accept");
    let bare = h
        .post_as(&path, OPERATOR_KEY, "s-1", &json!({"reason": "paid"}))
        .await;
    assert_eq!(bare.status, 409, "{}", bare.text);
    assert_eq!(wallet(&h, "u_stated", Currency::Php).await, 0);
    let stated = h
        .post_as(
            &path,
            OPERATOR_KEY,
            "s-2",
            &json!({"reason": "DirectPay's portal shows PHP 200.00", "amount": 20_000}),
        )
        .await;
    assert_eq!(stated.status, 200, "{}", stated.text);
    assert_eq!(stated.body["confirmed_amount"], 20_000);
    assert_eq!(wallet(&h, "u_stated", Currency::Php).await, 20_000);
    let bad = h
        .post_as(
            &path,
            OPERATOR_KEY,
            "s-3",
            &json!({"reason": "x", "amount": 0}),
        )
        .await;
    assert_eq!(bad.status, 422);
}

/// A QPay invoice of 150,000 MNT for `user`, paid as `pay` says (the
/// sandbox's `invoices/{id}/pay` body).
async fn qpay_card(h: &Harness, user: &str, pay: Value) -> PaymentId {
    let r = h
        .create(
            &key(),
            &json!({"provider": "qpay", "amount": 150_000, "currency": "MNT",
                    "reference": format!("ORD-{}", ulid::Ulid::new()), "wallet_user_id": user}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let invoice = r.body["provider_reference"].as_str().unwrap().to_string();
    h.sandbox(&format!("/_sandbox/qpay/invoices/{invoice}/pay"), pay)
        .await;
    r.body["id"].as_str().unwrap().parse().unwrap()
}

/// A QPay invoice of 150,000 MNT paid by card with `paid_major` tugrik: in
/// review when that is not the invoice's amount.
async fn qpay_overpaid(h: &Harness, user: &str, paid_major: &str) -> PaymentId {
    let id = qpay_card(h, user, json!({"type": "CARD", "amount": paid_major})).await;
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::NeedsReview, "{p:?}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_payment_is_refunded_in_full_through_the_refund_path_once() {
    use common::harness::OPERATOR_KEY;
    let h = Harness::start().await;
    let id = qpay_overpaid(&h, "u_rejected", "1600").await;
    let reject = format!("/v1/ops/payments/{id}/reject");
    let reason = json!({"reason": "payer overpaid; refund and ask for a new payment"});
    let r = h.post_as(&reject, OPERATOR_KEY, "j-1", &reason).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "refunded");
    assert_eq!(r.body["confirmed_amount"], 160_000);
    assert_eq!(r.body["refunded_amount"], 160_000);
    assert_eq!(r.body["refunds"][0]["status"], "succeeded");
    assert_eq!(h.sandbox.state.calls("/qpay/v2/payment/refund/"), 1);
    // The wallet saw the money come and go back: nothing left, nothing owed.
    assert_eq!(wallet(&h, "u_rejected", Currency::Mnt).await, 0);
    let statuses: Vec<_> = r.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["status"].clone(), e["action"].clone()))
        .collect();
    assert!(
        statuses.contains(&(json!("completed"), json!("reject"))),
        "{statuses:?}"
    );
    let again = h.post_as(&reject, OPERATOR_KEY, "j-2", &reason).await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(h.sandbox.state.calls("/qpay/v2/payment/refund/"), 1);

    // The refund's answer lost: 202, pending; the reject retried under a
    // new key resumes the same refund, never a second one.
    let lost = qpay_overpaid(&h, "u_rejected_lost", "1450").await;
    let reject = format!("/v1/ops/payments/{lost}/reject");
    fault(&h, "/qpay/v2/payment/refund/", "apply_hang", 1).await;
    let first = h.post_as(&reject, OPERATOR_KEY, "l-1", &reason).await;
    assert_eq!(first.status, 202, "{}", first.text);
    assert_eq!(first.body["status"], "completed");
    assert_eq!(first.body["refund_pending"], 145_000);
    let second = h.post_as(&reject, OPERATOR_KEY, "l-2", &reason).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body["status"], "refunded");
    assert_eq!(second.body["refunded_amount"], 145_000);
    assert_eq!(
        h.sandbox.state.calls("/qpay/v2/payment/refund/"),
        2,
        "one per payment"
    );
    assert_eq!(wallet(&h, "u_rejected_lost", Currency::Mnt).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_difference_waits_until_an_operator_acknowledges_it() {
    use common::harness::{OPERATOR, OPERATOR_KEY};
    let h = Harness::start().await;
    // Completed here; DirectPay now says failed, without telling us.
    let (id, txn) = gcash(&h, 25_000, "u_diff", false).await;
    gcash_pay(&h, &txn).await;
    h.sandbox(
        &format!("/_sandbox/directpay/transactions/{txn}/status"),
        json!({"status": "FAILED", "callback": "none"}),
    )
    .await;
    // Once the hour of the payment's change has closed.
    let now = shared::api::reconcile::checked_from(OffsetDateTime::now_utc());
    let report = reconcile(&h.services, now).await.unwrap();
    assert_eq!(report.difference_count, 1, "{report:?}");

    let queue = h
        .get_as("/v1/ops/queue?kind=reconcile_difference", OPERATOR_KEY)
        .await;
    assert_eq!(queue.status, 200, "{}", queue.text);
    let item = queued(&queue.body, "reconcile_difference", id).expect("the difference");
    assert_eq!(item["difference"]["kind"], "status");
    assert_eq!(item["difference"]["ours"], "completed");
    assert!(item["difference"]["theirs"]
        .as_str()
        .unwrap()
        .starts_with("failed"));
    assert_eq!(item["actions"], json!(["acknowledge"]));
    let diff = item["difference"]["id"].as_str().unwrap().to_string();

    let path = format!("/v1/ops/differences/{id}/{diff}/acknowledge");
    let note =
        json!({"reason": "DirectPay support: their status page is wrong, the money settled"});
    let merchant = h.post(&path, "d-0", &note).await;
    assert_eq!(merchant.status, 403);
    let ack = h.post_as(&path, OPERATOR_KEY, "d-1", &note).await;
    assert_eq!(ack.status, 200, "{}", ack.text);
    assert_eq!(ack.body["status"], "acknowledged");
    assert_eq!(ack.body["acknowledged_by"], OPERATOR);
    assert_eq!(ack.body["note"], note["reason"]);
    let again = h.post_as(&path, OPERATOR_KEY, "d-2", &note).await;
    assert_eq!(again.status, 409, "{}", again.text);
    let unknown = h
        .post_as(
            &format!("/v1/ops/differences/{id}/status-000000000000/acknowledge"),
            OPERATOR_KEY,
            "d-3",
            &note,
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let p = h.store().payment(id).await.unwrap().unwrap();
    let entry = p.history.last().unwrap();
    assert_eq!(entry.action.as_deref(), Some("acknowledge"));
    assert_eq!(entry.by.as_deref(), Some(OPERATOR));
    assert_eq!(p.status, PaymentStatus::Completed, "no money moved");
    assert_eq!(wallet(&h, "u_diff", Currency::Php).await, 25_000);

    // A run that looks again (its checkpoint forgotten) finds the same
    // difference: it stays acknowledged.
    h.stack
        .dynamodb
        .delete_item()
        .table_name(h.store().table())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("RECON#CHECKPOINT".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("RECON".into()),
        )
        .send()
        .await
        .unwrap();
    let next = reconcile(&h.services, now + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(next.difference_count, 1);
    let after = h
        .get_as("/v1/ops/queue?kind=reconcile_difference", OPERATOR_KEY)
        .await;
    assert!(queued(&after.body, "reconcile_difference", id).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_read_the_providers_balances_and_a_failing_one_says_so() {
    use common::harness::OPERATOR_KEY;
    let h = Harness::start().await;
    let merchant = h.get("/v1/ops/balances").await;
    assert_eq!(merchant.status, 403);
    let r = h.get_as("/v1/ops/balances", OPERATOR_KEY).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let find = |body: &Value, source: &str, account: &str| {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["source"] == source && b["account"] == account)
            .cloned()
    };
    // The Payment Engine's receiving account, exactly ("1250.75" USD).
    let pe = find(&r.body, "payment_engine", "acc_merchant_001").expect("PE balance");
    assert_eq!(
        (pe["amount"].clone(), pe["currency"].clone()),
        (json!(125_075), json!("USD"))
    );
    assert!(pe["read_at"].is_string());
    // Each casino agent's float, from get-balances with its own token.
    let alpha = find(&r.body, "casino", "TM_ALPHA").expect("TM_ALPHA");
    assert_eq!(alpha["amount"], 5_000_000);
    assert_eq!(alpha["currency"], "PHP");
    let beta = find(&r.body, "casino", "TM_BETA").expect("TM_BETA");
    assert_eq!(beta["amount"], 120_050);
    let silent: Vec<_> = r.body["not_reported"].as_array().unwrap().clone();
    assert!(silent.contains(&json!("directpay")) && silent.contains(&json!("paygram")));
    assert!(!silent.contains(&json!("payment_engine")));

    // A bridge that fails: that agent's entry says so, the others stand.
    fault(&h, "/casino/account/get-balances", "fail", 20).await;
    let r = h.get_as("/v1/ops/balances", OPERATOR_KEY).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let alpha = find(&r.body, "casino", "TM_ALPHA").expect("TM_ALPHA");
    assert_eq!(alpha["error"], "no_answer", "{alpha}");
    assert!(alpha.get("amount").is_none());
    assert!(find(&r.body, "payment_engine", "acc_merchant_001").unwrap()["amount"].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_check_settles_a_lost_refund_on_the_providers_word() {
    use common::harness::OPERATOR_KEY;
    let h = Harness::start().await;
    let id = qpay_card(&h, "u_check", json!({"type": "CARD"})).await;
    fault(&h, "/qpay/v2/payment/refund/", "apply_hang", 1).await;
    let lost = h
        .post(&format!("/v1/payments/{id}/refund"), "c-1", &json!({}))
        .await;
    assert_eq!(lost.status, 202, "{}", lost.text);
    let refund = lost.body["refunds"][0]["id"].as_str().unwrap().to_string();
    let check = h
        .post_as(
            &format!("/v1/ops/refunds/{id}/{refund}/check"),
            OPERATOR_KEY,
            "c-2",
            &json!({"reason": "merchant asked where the refund is"}),
        )
        .await;
    assert_eq!(check.status, 200, "{}", check.text);
    assert_eq!(check.body["status"], "refunded");
    assert_eq!(check.body["refunds"][0]["status"], "succeeded");
    assert_eq!(
        h.sandbox.state.calls("/qpay/v2/payment/refund/"),
        1,
        "asked, not resent"
    );
    assert_eq!(wallet(&h, "u_check", Currency::Mnt).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_casino_outage_of_an_hour_is_waited_out_and_the_top_up_lands_once() {
    let h = Harness::start().await;
    let id = gcash_paid(&h, 40_000, "u_outage", true).await;
    h.drain_queue().await;
    let message = TopUpMessage { payment_id: id };
    // The bridge is down for an hour: no connection, nothing sent. The
    // queue brings the message back every 3 minutes.
    let down = casino_with(
        format!("{}/casino/lookup", h.sandbox.url()),
        "http://127.0.0.1:9/casino".into(),
        false,
    );
    let start = OffsetDateTime::now_utc();
    for minute in (3..=60).step_by(3) {
        let at = start + Duration::minutes(minute);
        let r = process_topup(Books::of(&h.services), &down, &message, at)
            .await
            .unwrap();
        assert!(matches!(r, TopUpResult::Retry(_)), "minute {minute}: {r:?}");
    }
    let t = h.store().topup(id).await.unwrap().unwrap();
    assert!(t.attempts >= 20, "{}", t.attempts);
    assert_eq!(
        t.status,
        TopUpStatus::Queued,
        "not given up during the outage"
    );
    assert_eq!(wallet(&h, "u_outage", Currency::Php).await, 40_000);
    assert!(h.casino_transfers().is_empty());
    // The bridge is back: the next delivery lands, once.
    let client = casino(&h, false);
    let r = process_topup(
        Books::of(&h.services),
        &client,
        &message,
        start + Duration::minutes(63),
    )
    .await
    .unwrap();
    assert_eq!(r, TopUpResult::Settled);
    let t = h.store().topup(id).await.unwrap().unwrap();
    assert_eq!(t.status, TopUpStatus::Done);
    assert_eq!(h.casino_transfers().len(), 1);
    assert_eq!(wallet(&h, "u_outage", Currency::Php).await, 0);
}

// ---- 7. An answer that does not say "no" is never read as one ----

async fn topup_of(h: &Harness, id: PaymentId) -> shared::store::TopUp {
    h.store().topup(id).await.unwrap().unwrap()
}

/// A completed DirectPay deposit of `centavos` bound for the casino, its
/// queued message taken off the queue, the bridge set not to deduplicate.
async fn deposit_for_casino(h: &Harness, centavos: i64, user: &str) -> TopUpMessage {
    h.sandbox("/_sandbox/casino/dedup", json!({"enabled": false}))
        .await;
    let id = gcash_paid(h, centavos, user, true).await;
    h.drain_queue().await;
    TopUpMessage { payment_id: id }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_from_a_casino_that_booked_the_transfer_is_unknown_and_never_resent() {
    let h = Harness::start().await;
    let message = deposit_for_casino(&h, 40_000, "u_503").await;
    // The bridge books the chips, then its load balancer answers 503.
    fault_with(&h, "/casino/Default/Transfer", "apply_fail", 1, 503).await;
    let now = OffsetDateTime::now_utc();
    let r = process_topup(
        Books::of(h.function("worker-casino-topup")),
        &casino(&h, false),
        &message,
        now,
    )
    .await
    .unwrap();
    assert_eq!(r, TopUpResult::Settled);
    let t = topup_of(&h, message.payment_id).await;
    assert_eq!(t.status, TopUpStatus::Unknown);
    assert!(t.maybe_sent);
    assert_eq!(h.sandbox.state.calls("/casino/Default/Transfer"), 1);
    assert_eq!(h.casino_transfers().len(), 1, "paid once, never twice");
    // The wallet keeps the money until a person settles it.
    assert_eq!(wallet(&h, "u_503", Currency::Php).await, 40_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undocumented_status_or_a_4xx_to_a_sent_transfer_is_unknown() {
    let h = Harness::start().await;
    let client = casino(&h, false);
    let now = OffsetDateTime::now_utc();
    // Booked, then answered with one of the statuses the bridge declares
    // (0 to 4) and never describes; then booked and answered 400.
    let odd = deposit_for_casino(&h, 25_000, "u_status").await;
    h.sandbox(
        "/_sandbox/casino/answer",
        json!({"status": 3, "message": "processing"}),
    )
    .await;
    let four = deposit_for_casino(&h, 26_000, "u_status").await;
    for message in [&odd, &four] {
        if message == &four {
            fault_with(&h, "/casino/Default/Transfer", "apply_fail", 1, 400).await;
        }
        let r = process_topup(
            Books::of(h.function("worker-casino-topup")),
            &client,
            message,
            now,
        )
        .await
        .unwrap();
        assert_eq!(r, TopUpResult::Settled);
        assert_eq!(
            topup_of(&h, message.payment_id).await.status,
            TopUpStatus::Unknown
        );
        // Delivered again later: nothing is sent.
        let later = now + Duration::minutes(10);
        process_topup(
            Books::of(h.function("worker-casino-topup")),
            &client,
            message,
            later,
        )
        .await
        .unwrap();
    }
    assert_eq!(h.sandbox.state.calls("/casino/Default/Transfer"), 2);
    assert_eq!(h.casino_transfers().len(), 2, "each deposit paid once");
    assert_eq!(wallet(&h, "u_status", Currency::Php).await, 51_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_lookup_that_timed_out_sent_nothing_and_is_a_clean_retry() {
    let h = Harness::start().await;
    let message = deposit_for_casino(&h, 10_000, "u_lookup").await;
    // Every attempt at the lookup hangs past the client's timeout.
    fault(&h, "/casino/lookup", "hang", 3).await;
    let r = process_topup(
        Books::of(h.function("worker-casino-topup")),
        &casino(&h, false),
        &message,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(matches!(r, TopUpResult::Retry(_)), "{r:?}");
    let t = topup_of(&h, message.payment_id).await;
    assert_eq!(t.status, TopUpStatus::Queued);
    assert!(!t.maybe_sent, "no transfer went out: {t:?}");
    assert_eq!(h.sandbox.state.calls("/casino/Default/Transfer"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_accepted_after_its_lease_ran_out_keeps_the_casinos_word() {
    let h = Harness::start().await;
    let message = deposit_for_casino(&h, 30_000, "u_slow").await;
    let client = casino(&h, false);
    // The bridge takes 1.5 s to book and answer the transfer.
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/casino/Default/Transfer", "mode": "delay", "count": 1, "delay_ms": 1500}),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let lease = i64::try_from(shared::services::TOPUP_LEASE_SECONDS).unwrap();
    let after_lease = now + Duration::seconds(lease + 60);
    // The first worker is sending; a second finds its lease run out and,
    // unable to resend, leaves the top-up unknown.
    let first = process_topup(
        Books::of(h.function("worker-casino-topup")),
        &client,
        &message,
        now,
    );
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        process_topup(
            Books::of(h.function("worker-casino-topup")),
            &client,
            &message,
            after_lease,
        )
        .await
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap(), TopUpResult::Settled);
    assert_eq!(second.unwrap(), TopUpResult::Settled);
    // The casino's success answer to the first is proof: done, once, with
    // the transfer's id.
    let t = topup_of(&h, message.payment_id).await;
    assert_eq!(t.status, TopUpStatus::Done, "{t:?}");
    let transfers = h.casino_transfers();
    assert_eq!(transfers.len(), 1);
    assert_eq!(
        t.casino_transaction_id.as_deref(),
        Some(transfers[0].nonce.as_str())
    );
    assert_eq!(wallet(&h, "u_slow", Currency::Php).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qpay_refund_answered_503_after_it_was_made_stays_pending_and_is_not_resent() {
    let h = Harness::start().await;
    let id = qpay_card(&h, "u_q503", json!({"type": "CARD"})).await;
    let path = format!("/v1/payments/{id}/refund");
    fault_with(&h, "/qpay/v2/payment/refund/", "apply_fail", 1, 503).await;
    let r = h.post(&path, "q503-1", &json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["refund_pending"], 150_000);
    assert_eq!(h.sandbox.state.calls("/qpay/v2/payment/refund/"), 1);
    // The wallet's hold is not given back on a 503.
    assert_eq!(wallet(&h, "u_q503", Currency::Mnt).await, 0);
    // payment/check shows the refund: the retry records it, sends nothing.
    let again = h.post(&path, "q503-1", &json!({})).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["status"], "refunded");
    assert_eq!(h.sandbox.state.calls("/qpay/v2/payment/refund/"), 1);
    assert_eq!(wallet(&h, "u_q503", Currency::Mnt).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qpay_refund_refused_on_a_later_row_keeps_what_went_out() {
    let h = Harness::start().await;
    let r = h
        .create(
            &key(),
            &json!({"provider": "qpay", "amount": 150_000, "currency": "MNT",
                    "reference": format!("ORD-{}", ulid::Ulid::new()), "wallet_user_id": "u_rows"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id: PaymentId = r.body["id"].as_str().unwrap().parse().unwrap();
    let invoice = r.body["provider_reference"].as_str().unwrap().to_string();
    // Paid by two cards, half each.
    let pay = format!("/_sandbox/qpay/invoices/{invoice}/pay");
    h.sandbox(
        &pay,
        json!({"type": "CARD", "amount": "750", "callback": "none"}),
    )
    .await;
    let second = h
        .sandbox(&pay, json!({"type": "CARD", "amount": "750"}))
        .await;
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Completed, "{:?}", p.status);
    // The first card is refunded; QPay refuses the second.
    let row = second["payment_id"].as_str().unwrap();
    fault_with(
        &h,
        &format!("/qpay/v2/payment/refund/{row}"),
        "fail",
        1,
        400,
    )
    .await;
    let refund = h
        .post(&format!("/v1/payments/{id}/refund"), "rows-1", &json!({}))
        .await;
    assert_eq!(refund.status, 202, "{}", refund.text);
    assert_eq!(h.sandbox.state.calls("/qpay/v2/payment/refund/"), 2);
    // Half went back to the payer: nothing is released to the wallet.
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.refund_pending().minor(), 150_000);
    assert_eq!(wallet(&h, "u_rows", Currency::Mnt).await, 0);
    // QPay's REFUNDED total (one row) proves neither: left for a person.
    let report = reconcile_later(&h).await;
    assert!(reported(&report, id, Action::LeftForReview));
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.refund_pending().minor(), 150_000);
    assert_eq!(wallet(&h, "u_rows", Currency::Mnt).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_of_a_payment_beside_a_pending_refund_is_sent_with_its_amount() {
    let h = Harness::start().await;
    let id = epayment_paid(&h, 500_000, "u_rest").await;
    let path = format!("/v1/payments/{id}/refund");
    // A part whose answer is lost (the bank made it), then "the rest".
    fault(&h, "/epayment/api/operation/", "apply_hang", 1).await;
    let part = h.post(&path, "part-1", &json!({"amount": 200_000})).await;
    assert_eq!(part.status, 202, "{}", part.text);
    let rest = h.post(&path, "rest-1", &json!({})).await;
    assert_eq!(rest.status, 200, "{}", rest.text);
    assert_eq!(rest.body["refunded_amount"], 300_000);
    assert_eq!(rest.body["refund_pending"], 200_000);
    let sent = h.sandbox.state.epayment.refunds.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    // Never "the whole payment": an explicit amount, under our refund id.
    assert!(sent[1].amount.is_some(), "{:?}", sent[1].amount);
    assert!(sent[1].external_id.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_completing_a_payment_after_parts_is_not_released_on_charge() {
    let h = Harness::start().await;
    let id = epayment_paid(&h, 500_000, "u_parts").await;
    let path = format!("/v1/payments/{id}/refund");
    let part = h.post(&path, "parts-1", &json!({"amount": 200_000})).await;
    assert_eq!(part.status, 200, "{}", part.text);
    // The rest's call hangs; the bank still shows CHARGE.
    fault(&h, "/epayment/api/operation/", "hang", 1).await;
    let rest = h.post(&path, "parts-2", &json!({})).await;
    assert_eq!(rest.status, 202, "{}", rest.text);
    // No public source shows epayment.kz's status after partial refunds:
    // CHARGE proves nothing about the rest, so reconcile leaves it to a
    // person instead of releasing it.
    let report = reconcile_later(&h).await;
    assert_eq!(report.refunds_settled, 0, "{report:?}");
    assert!(reported(&report, id, Action::LeftForReview));
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.refund_pending(), kzt(300_000));
    assert_eq!(wallet(&h, "u_parts", Currency::Kzt).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_whose_first_read_failed_was_never_sent_and_is_released() {
    let h = Harness::start().await;
    let id = epayment_paid(&h, 500_000, "u_unread").await;
    let path = format!("/v1/payments/{id}/refund");
    // check-status, read for the bank's transaction id, never answers.
    fault(&h, "/epayment/api/check-status/", "hang", 3).await;
    let r = h.post(&path, "unread-1", &json!({})).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "provider_unavailable");
    assert_eq!(h.sandbox.state.calls("/epayment/api/operation/"), 0);
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert!(p.refund_pending().is_zero());
    assert_eq!(wallet(&h, "u_unread", Currency::Kzt).await, 500_000);
    // The merchant's retry with the same key refunds, once.
    let again = h.post(&path, "unread-1", &json!({})).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["status"], "refunded");
    assert_eq!(h.sandbox.state.epayment.refunds.lock().unwrap().len(), 1);
    assert_eq!(wallet(&h, "u_unread", Currency::Kzt).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_refund_is_never_resent_under_its_id_only_settled_on_proof() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let h = Harness::start().await;
    let id = epayment_paid(&h, 500_000, "u_settle").await;
    let path = format!("/v1/payments/{id}/refund");
    fault(&h, "/epayment/api/operation/", "hang", 1).await;
    let r = h.post(&path, "settle-1", &json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let first = h.store().refunds_of(id).await.unwrap();
    assert_eq!(first.len(), 1);
    // Three minutes pass since the attempt (past SETTLE_AFTER).
    let earlier = OffsetDateTime::now_utc() - Duration::minutes(3);
    h.stack
        .dynamodb
        .update_item()
        .table_name(h.store().table())
        .key("pk", AttributeValue::S(format!("PAY#{id}")))
        .key(
            "sk",
            AttributeValue::S(format!("REFUND#{}", first[0].refund_id)),
        )
        .update_expression("SET last_attempt_at = :at")
        .expression_attribute_values(
            ":at",
            AttributeValue::N((earlier.unix_timestamp() * 1000).to_string()),
        )
        .send()
        .await
        .unwrap();
    // The bank shows CHARGE for the whole: proof the first was not made.
    // It is released, and the request goes on under a new id.
    let again = h.post(&path, "settle-1", &json!({})).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["status"], "refunded");
    let refunds = h.store().refunds_of(id).await.unwrap();
    assert_eq!(refunds.len(), 2, "{refunds:?}");
    let failed = refunds
        .iter()
        .find(|r| r.refund_id == first[0].refund_id)
        .unwrap();
    assert_eq!(failed.status, RefundStatus::Failed);
    assert_eq!(failed.provider_code.as_deref(), Some("not_refunded"));
    assert!(refunds
        .iter()
        .any(|r| r.refund_id != first[0].refund_id && r.status == RefundStatus::Succeeded));
    assert_eq!(h.sandbox.state.epayment.refunds.lock().unwrap().len(), 1);
    assert_eq!(wallet(&h, "u_settle", Currency::Kzt).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reject_checks_the_confirmed_amount_as_an_accept_does() {
    use common::harness::OPERATOR_KEY;
    let h = Harness::start().await;
    // QPay reports the card payment PAID for nothing.
    let id = qpay_overpaid(&h, "u_zero", "0").await;
    for action in ["accept", "reject"] {
        let r = h
            .post_as(
                &format!("/v1/ops/payments/{id}/{action}"),
                OPERATOR_KEY,
                &format!("zero-{action}"),
                &json!({"reason": "checking a zero payment"}),
            )
            .await;
        assert_eq!(r.status, 409, "{action}: {}", r.text);
    }
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::NeedsReview);
    assert_eq!(wallet(&h, "u_zero", Currency::Mnt).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_queue_pages_through_a_whole_backlog_newest_first() {
    use common::harness::OPERATOR_KEY;
    use shared::payment::{ChangeSource, NewPayment, Payment, Provider};
    use shared::store::StatusChange;
    let h = Harness::start().await;
    // More payments in review than one read of an index page holds, each
    // a second newer than the last.
    let start = OffsetDateTime::now_utc() - Duration::hours(1);
    let mut ids = Vec::new();
    for n in 0..205 {
        let at = start + Duration::seconds(n);
        let amount = Money::new(10_000, Currency::Php).unwrap();
        let p = Payment::new(
            NewPayment {
                id: PaymentId::generate(),
                merchant_id: common::harness::merchant(),
                provider: Provider::Directpay,
                amount,
                reference: format!("ORD-BACKLOG-{n}").parse().unwrap(),
                description: None,
                customer: Default::default(),
                return_url: None,
                method: None,
                wallet_user_id: None,
                casino_username: None,
                provider_reference: Some(format!("DP-BACKLOG-{n}").parse().unwrap()),
                checkout: Default::default(),
                page_token: None,
                expires_at: at + Duration::minutes(30),
            },
            ChangeSource::Api,
            at,
        );
        h.store().create_payment(&p).await.unwrap();
        let mut change = StatusChange::new(PaymentStatus::NeedsReview, ChangeSource::Webhook, at);
        change.confirmed_amount = Some(Money::new(9_000, Currency::Php).unwrap());
        h.store().transition(&p, change, vec![]).await.unwrap();
        ids.push(p.id.to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/ops/queue?kind=payment_review&limit=50".to_string(),
            Some(c) => format!("/v1/ops/queue?kind=payment_review&limit=50&cursor={c}"),
        };
        let page = h.get_as(&path, OPERATOR_KEY).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for item in page.body["data"].as_array().unwrap() {
            seen.push(item["payment_id"].as_str().unwrap().to_string());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    // The newest first, and every one of them once.
    ids.reverse();
    assert_eq!(seen, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_with_a_thousand_partial_refunds_stays_a_small_item() {
    use shared::payment::HISTORY_INLINE;
    let h = Harness::start().await;
    let id = epayment_paid(&h, 1_100_000, "u_many").await;
    let refunder = h.function("api-refund-payment");
    let merchant = common::harness::merchant();
    for n in 0..1_000 {
        let payment = h.store().payment(id).await.unwrap().unwrap();
        let key = format!("many-{n}").parse().unwrap();
        let done = shared::refunds::request(refunder, payment, Some(1_000), &merchant, &key)
            .await
            .unwrap();
        assert!(
            matches!(done, shared::refunds::RefundResult::Done(_)),
            "{n}: {done:?}"
        );
    }
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.refunded_amount, kzt(1_000_000));
    assert_eq!(p.status, PaymentStatus::PartiallyRefunded);
    // The item carries a bounded history; the rest are items of their own.
    assert_eq!(p.history.len(), HISTORY_INLINE);
    assert_eq!(p.history.len() + p.history_apart as usize, 1_002);
    let size = serde_json::to_vec(&p).unwrap().len();
    assert!(size < 64 * 1024, "the payment item is {size} bytes");
    // The merchant still reads the whole history, in order.
    let seen = h.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(seen.status, 200, "{}", seen.text);
    let history = seen.body["history"].as_array().unwrap();
    assert_eq!(history.len(), 1_002);
    assert_eq!(history[0]["status"], "pending");
    assert_eq!(history[1]["status"], "completed");
    assert!(history[2..]
        .iter()
        .all(|e| e["status"] == "partially_refunded"));
    assert_eq!(seen.body["refunded_amount"], 1_000_000);
}
