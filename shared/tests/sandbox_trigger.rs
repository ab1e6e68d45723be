//! The sandbox's trigger (what `cargo run -p sandbox -- trigger` sends),
//! played against paygate's webhooks for every provider: a paid payment is
//! credited once however often and in whatever order the callbacks come,
//! and a failure or lapse lands where that provider's API says it does.

mod common;

use common::cases::{cases, create, trigger};
use common::harness::Harness;
use shared::ids::{PaymentId, WalletUserId};
use shared::payment::PaymentStatus;

async fn status(h: &Harness, id: PaymentId) -> PaymentStatus {
    h.store().payment(id).await.unwrap().unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_out_of_order_callbacks_credit_once_for_every_provider() {
    let h = Harness::start().await;
    for case in cases() {
        for event in ["paid", "duplicate", "out-of-order"] {
            let user = format!("u_{}", ulid::Ulid::new().to_string().to_lowercase());
            let id = create(&h, &case, &user).await;
            let (code, report) = trigger(&h, case.provider, event, id).await;
            assert_eq!(code, 200, "{} {event}: {report}", case.provider);
            let deliveries = report["deliveries"].as_array().unwrap();
            let expected = if event == "paid" { 1 } else { 2 };
            assert_eq!(
                deliveries.len(),
                expected,
                "{} {event}: {report}",
                case.provider
            );
            for d in deliveries {
                // Every delivery is acknowledged: a repeat gets the same
                // 2xx, a verified contradicting event too (it is recorded
                // and changes nothing).
                assert_eq!(d["answer"], 200, "{} {event}: {report}", case.provider);
            }
            assert_eq!(
                status(&h, id).await,
                PaymentStatus::Completed,
                "{} {event}",
                case.provider
            );
            let user: WalletUserId = user.parse().unwrap();
            let balance = h
                .store()
                .balance(&common::harness::merchant(), &user, case.currency)
                .await
                .unwrap();
            assert_eq!(balance.minor(), case.amount, "{} {event}", case.provider);
            let entries = h
                .store()
                .ledger_entries(&common::harness::merchant(), &user, 10, None)
                .await
                .unwrap()
                .0;
            assert_eq!(entries.len(), 1, "{} {event}: credited once", case.provider);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_expired_land_where_each_provider_says() {
    let h = Harness::start().await;
    // What each provider's "expired" leaves: DirectPay says EXPIRED,
    // Paygram cancels the invoice, the others send nothing (the sweep asks
    // once the payment's own expiry passes).
    let expired = [
        ("directpay", PaymentStatus::Expired),
        ("paygram", PaymentStatus::Failed),
        ("toyyibpay", PaymentStatus::Pending),
        ("qpay", PaymentStatus::Pending),
        ("epayment", PaymentStatus::Pending),
        ("payment_engine", PaymentStatus::Pending),
    ];
    for case in cases() {
        let id = create(&h, &case, "u_fail").await;
        let (code, report) = trigger(&h, case.provider, "failed", id).await;
        assert_eq!(code, 200, "{}: {report}", case.provider);
        // A failed QPay or ToyyibPay attempt leaves the invoice or the
        // bill payable.
        let want = if matches!(case.provider, "qpay" | "toyyibpay") {
            PaymentStatus::Pending
        } else {
            PaymentStatus::Failed
        };
        assert_eq!(status(&h, id).await, want, "{}: {report}", case.provider);

        let id = create(&h, &case, "u_lapse").await;
        let (code, report) = trigger(&h, case.provider, "expired", id).await;
        assert_eq!(code, 200, "{}: {report}", case.provider);
        let want = expired.iter().find(|(p, _)| *p == case.provider).unwrap().1;
        assert_eq!(status(&h, id).await, want, "{}: {report}", case.provider);
        if want == PaymentStatus::Pending {
            assert!(
                report["note"].is_string(),
                "{}: says why nothing came",
                case.provider
            );
        }
    }
    let nobody: WalletUserId = "u_fail".parse().unwrap();
    assert!(h
        .store()
        .ledger_entries(&common::harness::merchant(), &nobody, 10, None)
        .await
        .unwrap()
        .0
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_payments_and_providers_are_refused() {
    let h = Harness::start().await;
    let (code, body) = trigger(&h, "directpay", "paid", PaymentId::generate()).await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = trigger(&h, "stripe", "paid", PaymentId::generate()).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("directpay"));
}
