//! job-reconcile against DynamoDB Local and the sandbox: a payment paid at
//! the provider whose callback never came is completed and credited once;
//! one we completed that the provider now calls failed, or whose amount
//! differs, is reported and its money left alone; a silent provider is
//! counted; the run's report is stored; payments outside the day are not
//! asked about.

mod common;

use common::cases::{create_for, provider_reference, trigger};
use common::harness::Harness;
use serde_json::json;
use shared::api::reconcile::{
    checked_from, reconcile, Action, DifferenceKind, ReconcileReport, SETTLE_MARGIN,
};
use shared::ids::{PaymentId, WalletUserId};
use shared::money::Currency;
use shared::payment::PaymentStatus;

async fn directpay(h: &Harness, user: &str) -> (PaymentId, String) {
    let id = create_for(h, "directpay", user).await;
    (id, provider_reference(h, id).await)
}

/// The provider's record changes without telling us.
async fn quietly(h: &Harness, txn: &str, status: &str) {
    h.sandbox(
        &format!("/_sandbox/directpay/transactions/{txn}/status"),
        json!({"status": status, "callback": "none"}),
    )
    .await;
}

/// The sweep's expiry of pending payment `id`, stamped `at`.
async fn expire_at(h: &Harness, id: PaymentId, at: time::OffsetDateTime) {
    let pending = h.store().payment(id).await.unwrap().unwrap();
    let expired = shared::store::StatusChange::new(
        PaymentStatus::Expired,
        shared::payment::ChangeSource::Sweep,
        at,
    );
    assert!(matches!(
        h.store()
            .transition(&pending, expired, vec![])
            .await
            .unwrap(),
        shared::store::TransitionOutcome::Applied(_)
    ));
}

async fn balance(h: &Harness, user: &str) -> i64 {
    let user: WalletUserId = user.parse().unwrap();
    h.store()
        .balance(&common::harness::merchant(), &user, Currency::Php)
        .await
        .unwrap()
        .minor()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_corrects_on_the_providers_answer_and_reports_the_rest() {
    let h = Harness::start().await;
    let store = h.store();

    // Paid at DirectPay, the callback lost.
    let (lost, lost_txn) = directpay(&h, "u_lost").await;
    quietly(&h, &lost_txn, "SUCCESS").await;
    // Completed here, failed there.
    let (reversed, reversed_txn) = directpay(&h, "u_reversed").await;
    trigger(&h, "directpay", "paid", reversed).await;
    quietly(&h, &reversed_txn, "FAILED").await;
    // Completed here, a different amount there.
    let (short, short_txn) = directpay(&h, "u_short").await;
    trigger(&h, "directpay", "paid", short).await;
    h.sandbox
        .state
        .directpay
        .transactions
        .lock()
        .unwrap()
        .get_mut(&short_txn)
        .unwrap()
        .amount = "1.00".into();
    // Completed everywhere: nothing to say.
    let (fine, _) = directpay(&h, "u_fine").await;
    trigger(&h, "directpay", "paid", fine).await;

    // The first run after the hour of these changes has closed.
    let now = checked_from(time::OffsetDateTime::now_utc());
    let report = reconcile(&h.services, now).await.unwrap();
    assert_eq!(report.checked, 4, "{report:?}");
    assert_eq!(report.unanswered, 0);
    assert_eq!(report.corrected, 1, "the lost payment only: {report:?}");
    assert_eq!(report.matched, 1, "{report:?}");
    assert_eq!(report.difference_count, 3, "{report:?}");
    assert_eq!(report.differences.len(), 3);

    let lost_payment = store.payment(lost).await.unwrap().unwrap();
    assert_eq!(lost_payment.status, PaymentStatus::Completed);
    assert_eq!(balance(&h, "u_lost").await, 25_000);
    let d = report
        .differences
        .iter()
        .find(|d| d.payment_id == lost.to_string())
        .unwrap();
    assert_eq!(
        (d.kind, d.action),
        (DifferenceKind::Status, Action::Corrected)
    );
    assert_eq!(d.ours, "pending");

    // The money we credited stays; a person decides.
    let d = report
        .differences
        .iter()
        .find(|d| d.payment_id == reversed.to_string())
        .unwrap();
    assert_eq!(
        (d.kind, d.action),
        (DifferenceKind::Status, Action::LeftForReview)
    );
    assert!(d.theirs.starts_with("failed"), "{d:?}");
    assert_eq!(
        store.payment(reversed).await.unwrap().unwrap().status,
        PaymentStatus::Completed
    );
    assert_eq!(balance(&h, "u_reversed").await, 25_000);

    let d = report
        .differences
        .iter()
        .find(|d| d.payment_id == short.to_string())
        .unwrap();
    // A completed payment stays completed (nothing moves back); the
    // difference is for a person.
    assert_eq!(
        (d.kind, d.action),
        (DifferenceKind::Amount, Action::LeftForReview)
    );
    assert_eq!(
        (d.ours.as_str(), d.theirs.as_str()),
        ("25000 PHP", "100 PHP")
    );
    assert_eq!(balance(&h, "u_short").await, 25_000, "no money moved back");

    // The run's report is stored as it was returned.
    let stored: ReconcileReport = store.reconcile_report(now).await.unwrap().unwrap();
    assert_eq!(stored, report);

    // Again: the lost payment is credited once, not twice.
    let again = reconcile(&h.services, now + time::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(balance(&h, "u_lost").await, 25_000);
    assert_eq!(
        store
            .ledger_entries(
                &common::harness::merchant(),
                &"u_lost".parse().unwrap(),
                10,
                None
            )
            .await
            .unwrap()
            .0
            .len(),
        1
    );
    assert_eq!(again.corrected, 0, "{again:?}");

    // A day later none of them changed in the window.
    let later = reconcile(&h.services, now + time::Duration::days(2))
        .await
        .unwrap();
    assert_eq!(later.checked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_provider_is_counted_and_nothing_changes() {
    let h = Harness::start().await;
    let (id, txn) = directpay(&h, "u_silent").await;
    quietly(&h, &txn, "SUCCESS").await;
    h.sandbox(
        "/_sandbox/faults",
        json!({"path": "/directpay/api/cashin_transactions_status", "mode": "fail", "count": 100, "status": 503}),
    )
    .await;
    let now = checked_from(time::OffsetDateTime::now_utc());
    let report = reconcile(&h.services, now).await.unwrap();
    assert_eq!((report.checked, report.unanswered), (1, 1), "{report:?}");
    assert!(report.differences.is_empty());
    assert_eq!(
        h.store().payment(id).await.unwrap().unwrap().status,
        PaymentStatus::Pending
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_made_at_the_provider_but_not_here_is_reported_and_moves_nothing() {
    let h = Harness::start().await;
    let id = create_for(&h, "qpay", "u_portal").await;
    let invoice = provider_reference(&h, id).await;
    h.sandbox(
        &format!("/_sandbox/qpay/invoices/{invoice}/pay"),
        json!({"type": "CARD"}),
    )
    .await;
    let paid = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(paid.status, PaymentStatus::Completed);
    // Someone refunds the card payment in QPay's own portal: QPay's
    // payment/check now shows it REFUNDED; paygate recorded nothing.
    let qpay = h
        .services
        .gateway(shared::payment::Provider::Qpay)
        .await
        .unwrap();
    qpay.refund(&paid, paid.amount, "outside-paygate")
        .await
        .unwrap();
    let report = reconcile(
        h.function("job-reconcile"),
        checked_from(time::OffsetDateTime::now_utc()),
    )
    .await
    .unwrap();
    let found = report
        .differences
        .iter()
        .find(|d| d.payment_id == id.to_string() && d.kind == DifferenceKind::RefundTotal)
        .unwrap_or_else(|| panic!("{report:?}"));
    assert_eq!(found.action, Action::LeftForReview);
    assert_eq!(found.ours, "0 MNT refunded");
    assert_eq!(found.theirs, "150000 MNT refunded");
    // Reported, not acted on: the payment and the wallet are as they were.
    let after = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(after.status, PaymentStatus::Completed);
    assert!(after.refunded_amount.is_zero());
    let user: WalletUserId = "u_portal".parse().unwrap();
    let wallet = h
        .store()
        .balance(&common::harness::merchant(), &user, Currency::Mnt)
        .await
        .unwrap();
    assert_eq!(wallet.minor(), 150_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_goes_on_from_where_it_stopped_and_catches_up_on_missed_days() {
    use shared::api::reconcile::reconcile_at_most;
    let h = Harness::start().await;
    let job = h.function("job-reconcile");
    for n in 0..3 {
        directpay(&h, &format!("u_cover_{n}")).await;
    }
    let at = checked_from(time::OffsetDateTime::now_utc());
    // Two a run: the first stops short and says how far behind it is.
    let first = reconcile_at_most(job, at, 2).await.unwrap();
    assert_eq!((first.checked, first.truncated), (2, true), "{first:?}");
    assert!(
        first.behind_seconds > SETTLE_MARGIN.whole_seconds(),
        "{first:?}"
    );
    // The next goes on from there: the third, not the first two again. It
    // has read every closed hour: behind by the margin only.
    let second = reconcile_at_most(job, at + time::Duration::seconds(1), 2)
        .await
        .unwrap();
    assert_eq!((second.checked, second.truncated), (1, false), "{second:?}");
    assert_eq!(second.behind_seconds, SETTLE_MARGIN.whole_seconds() + 1);
    let third = reconcile_at_most(job, at + time::Duration::seconds(2), 2)
        .await
        .unwrap();
    assert_eq!(third.checked, 0, "{third:?}");
    // A payment changes after that run (its expiry, an hour on), then
    // three nightly runs are missed: the next run still finds it, though
    // it looks back further than a day.
    let (late, _) = directpay(&h, "u_cover_late").await;
    expire_at(&h, late, at + time::Duration::hours(1)).await;
    let three_days_on = at + time::Duration::days(3);
    let caught_up = reconcile_at_most(job, three_days_on, 2).await.unwrap();
    assert_eq!(caught_up.checked, 1, "{caught_up:?}");
    assert!(
        caught_up.since < three_days_on - time::Duration::days(2),
        "{caught_up:?}"
    );
}

/// Reconcile reads an hour of changes once it has closed (ended
/// `SETTLE_MARGIN` ago): a change whose time was taken before a run but
/// which committed after it is in an hour that run left for the next one,
/// so it is still checked (decision 59).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_hour_is_left_for_the_next_run_so_a_late_commit_is_checked() {
    let h = Harness::start().await;
    let job = h.function("job-reconcile");
    let made = time::OffsetDateTime::now_utc();
    let (early, _) = directpay(&h, "u_hour_early").await;
    let (late, _) = directpay(&h, "u_hour_late").await;
    // Its hour is still open: nothing read yet.
    let open = reconcile(job, made + time::Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(open.checked, 0, "{open:?}");
    // Once it has closed, both are checked.
    let run = checked_from(made);
    let first = reconcile(job, run).await.unwrap();
    assert_eq!(first.checked, 2, "{first:?}");
    // A change stamped five minutes before that run (a sweep that took its
    // time then) commits only now: it lands in an hour the run left open.
    let stamped = run - time::Duration::minutes(5);
    expire_at(&h, late, stamped).await;
    let next = reconcile(job, checked_from(stamped)).await.unwrap();
    assert_eq!(next.checked, 1, "the late change, once: {next:?}");
    assert_eq!(
        h.store().payment(early).await.unwrap().unwrap().status,
        PaymentStatus::Pending,
        "the other is not read again"
    );
}
