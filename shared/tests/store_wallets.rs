//! Wallet ledger, casino top-up records and webhook deliveries against
//! DynamoDB Local.

mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use common::{fresh_store, item_count, pending_payment};
use shared::ids::{PaymentId, WalletUserId};
use shared::money::{Currency, Money};
use shared::payment::{ChangeSource, PaymentStatus, Provider};
use shared::store::{
    AcquireOutcome, DeliveryOutcome, EntryKind, FinishOutcome, LedgerEntry, LedgerPurpose,
    PostOutcome, StatusChange, TopUp, TopUpStatus, TransitionOutcome,
};
use time::{Duration, OffsetDateTime};

fn user() -> WalletUserId {
    format!("u_{}", ulid::Ulid::new()).parse().unwrap()
}

fn php(minor: i64) -> Money {
    Money::new(minor, Currency::Php).unwrap()
}

fn entry(
    user: &WalletUserId,
    payment: PaymentId,
    purpose: LedgerPurpose,
    amount: Money,
) -> LedgerEntry {
    LedgerEntry {
        merchant: common::merchant(),
        user: user.clone(),
        payment_id: payment,
        purpose,
        amount,
        at: OffsetDateTime::now_utc(),
        memo: "test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_credit_is_posted_once_per_payment_and_purpose() {
    let store = Arc::new(fresh_store().await);
    let u = user();
    let pay = PaymentId::generate();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (store, e) = (
            store.clone(),
            entry(&u, pay, LedgerPurpose::Deposit, php(2500)),
        );
        tasks.push(tokio::spawn(
            async move { store.post_entry(&e).await.unwrap() },
        ));
    }
    let mut posted = 0;
    for t in tasks {
        match t.await.unwrap() {
            PostOutcome::Posted => posted += 1,
            PostOutcome::AlreadyPosted => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(posted, 1);
    assert_eq!(
        store
            .balance(&common::merchant(), &u, Currency::Php)
            .await
            .unwrap(),
        php(2500)
    );
    assert_eq!(
        store
            .ledger_entries(&common::merchant(), &u, 50, None)
            .await
            .unwrap()
            .0
            .len(),
        1
    );
}

#[tokio::test]
async fn debits_never_take_a_balance_below_zero() {
    let store = fresh_store().await;
    let u = user();
    let pay = PaymentId::generate();
    store
        .post_entry(&entry(&u, pay, LedgerPurpose::Deposit, php(1000)))
        .await
        .unwrap();
    let before = item_count(&store).await;
    let too_much = entry(&u, pay, LedgerPurpose::Refund(ulid::Ulid::new()), php(1001));
    assert_eq!(
        store.post_entry(&too_much).await.unwrap(),
        PostOutcome::InsufficientFunds
    );
    assert_eq!(item_count(&store).await, before);

    let r1 = entry(&u, pay, LedgerPurpose::Refund(ulid::Ulid::new()), php(400));
    let r2 = entry(&u, pay, LedgerPurpose::Refund(ulid::Ulid::new()), php(600));
    assert_eq!(store.post_entry(&r1).await.unwrap(), PostOutcome::Posted);
    assert_eq!(
        store.post_entry(&r1).await.unwrap(),
        PostOutcome::AlreadyPosted
    );
    assert_eq!(store.post_entry(&r2).await.unwrap(), PostOutcome::Posted);
    assert!(store
        .balance(&common::merchant(), &u, Currency::Php)
        .await
        .unwrap()
        .is_zero());
    // A wallet without a balance in a currency has none to debit.
    let usdt = entry(
        &u,
        pay,
        LedgerPurpose::CasinoTransfer,
        Money::new(1, Currency::Usdt).unwrap(),
    );
    assert_eq!(
        store.post_entry(&usdt).await.unwrap(),
        PostOutcome::InsufficientFunds
    );
}

#[tokio::test]
async fn balances_are_per_currency_and_entries_come_newest_first() {
    let store = fresh_store().await;
    let u = user();
    let mut ids = Vec::new();
    for (i, amount) in [
        php(100),
        Money::new(5_000_000, Currency::Usdt).unwrap(),
        php(250),
    ]
    .into_iter()
    .enumerate()
    {
        let pay = PaymentId::generate();
        let mut e = entry(&u, pay, LedgerPurpose::Deposit, amount);
        e.at = OffsetDateTime::now_utc() + Duration::seconds(i as i64);
        store.post_entry(&e).await.unwrap();
        ids.push(pay);
    }
    let mut balances: Vec<Money> = store
        .balances(&common::merchant(), &u)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.amount)
        .collect();
    balances.sort_by_key(|m| m.currency());
    assert_eq!(
        balances,
        vec![php(350), Money::new(5_000_000, Currency::Usdt).unwrap()]
    );
    let entries = store
        .ledger_entries(&common::merchant(), &u, 50, None)
        .await
        .unwrap()
        .0;
    let order: Vec<PaymentId> = entries.iter().map(|e| e.payment_id).collect();
    assert_eq!(order, vec![ids[2], ids[1], ids[0]]);
    assert!(entries.iter().all(|e| e.kind() == EntryKind::Credit));
    assert_eq!(
        store
            .ledger_entries(&common::merchant(), &u, 2, None)
            .await
            .unwrap()
            .0
            .len(),
        2
    );
}

/// A completed payment with a queued top-up, as the webhook writes it.
async fn completed_with_topup(store: &shared::store::Store) -> TopUp {
    let p = pending_payment(store).await;
    let user = p.wallet_user_id.clone().unwrap();
    let now = OffsetDateTime::now_utc();
    let topup = TopUp::queued(
        p.id,
        p.merchant_id.clone(),
        user.clone(),
        "player1".parse().unwrap(),
        p.amount,
        now,
    );
    let mut writes = store
        .ledger_writes(&entry(&user, p.id, LedgerPurpose::Deposit, p.amount))
        .unwrap()
        .to_vec();
    writes.push(store.topup_write(&topup).unwrap());
    let change = StatusChange::new(PaymentStatus::Completed, ChangeSource::Webhook, now);
    let outcome = store.transition(&p, change, writes).await.unwrap();
    assert!(matches!(outcome, TransitionOutcome::Applied(_)));
    topup
}

#[tokio::test]
async fn a_topup_is_leased_finished_and_debited_once() {
    let store = fresh_store().await;
    let topup = completed_with_topup(&store).await;
    let user = topup.wallet_user_id.clone();
    assert_eq!(
        store
            .balance(&common::merchant(), &user, Currency::Php)
            .await
            .unwrap(),
        topup.amount
    );
    let now = OffsetDateTime::now_utc();
    let lease = StdDuration::from_secs(60);

    let AcquireOutcome::Acquired(held) = store
        .acquire_topup(topup.payment_id, now, lease)
        .await
        .unwrap()
    else {
        panic!("a queued top-up is acquired")
    };
    assert_eq!(held.status, TopUpStatus::Sending);
    assert_eq!(held.attempts, 1);
    assert_eq!(held.nonce, TopUp::nonce_for(topup.payment_id));
    // A second worker while the lease runs: hands off.
    assert!(matches!(
        store
            .acquire_topup(topup.payment_id, now, lease)
            .await
            .unwrap(),
        AcquireOutcome::Leased(_)
    ));

    assert_eq!(
        store
            .finish_topup(&held, "casino-txn-1", now)
            .await
            .unwrap(),
        FinishOutcome::Finished
    );
    let done = store.topup(topup.payment_id).await.unwrap().unwrap();
    assert_eq!(done.status, TopUpStatus::Done);
    assert_eq!(done.casino_transaction_id.as_deref(), Some("casino-txn-1"));
    assert!(store
        .balance(&common::merchant(), &user, Currency::Php)
        .await
        .unwrap()
        .is_zero());
    let kinds: Vec<EntryKind> = store
        .ledger_entries(&common::merchant(), &user, 50, None)
        .await
        .unwrap()
        .0
        .iter()
        .map(|e| e.kind())
        .collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds.contains(&EntryKind::Credit) && kinds.contains(&EntryKind::Debit));

    // Finishing again (a redelivered message) changes nothing.
    assert!(matches!(
        store
            .finish_topup(&held, "casino-txn-1", now)
            .await
            .unwrap(),
        FinishOutcome::LeaseLost(Some(_))
    ));
    assert!(matches!(
        store
            .acquire_topup(topup.payment_id, now, lease)
            .await
            .unwrap(),
        AcquireOutcome::Finished(_)
    ));
    assert!(store
        .balance(&common::merchant(), &user, Currency::Php)
        .await
        .unwrap()
        .is_zero());
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_the_old_holder_cannot_finish() {
    let store = fresh_store().await;
    let topup = completed_with_topup(&store).await;
    let t0 = OffsetDateTime::now_utc();
    let lease = StdDuration::from_secs(30);
    let AcquireOutcome::Acquired(first) = store
        .acquire_topup(topup.payment_id, t0, lease)
        .await
        .unwrap()
    else {
        panic!("acquire")
    };
    // The first worker died; after its lease another takes over.
    let t1 = t0 + Duration::seconds(31);
    let AcquireOutcome::Acquired(second) = store
        .acquire_topup(topup.payment_id, t1, lease)
        .await
        .unwrap()
    else {
        panic!("an expired lease is taken over")
    };
    assert_eq!(second.attempts, 2);
    assert_eq!(
        second.nonce, first.nonce,
        "every attempt sends the same nonce"
    );
    assert!(matches!(
        store.finish_topup(&first, "late", t1).await.unwrap(),
        FinishOutcome::LeaseLost(_)
    ));
    assert_eq!(
        store
            .finish_topup(&second, "casino-txn-2", t1)
            .await
            .unwrap(),
        FinishOutcome::Finished
    );
    let user = topup.wallet_user_id.clone();
    assert!(store
        .balance(&common::merchant(), &user, Currency::Php)
        .await
        .unwrap()
        .is_zero());
    assert_eq!(
        store
            .ledger_entries(&common::merchant(), &user, 50, None)
            .await
            .unwrap()
            .0
            .len(),
        2
    );
}

#[tokio::test]
async fn a_released_topup_is_queued_again_and_listed_for_the_sweep() {
    let store = fresh_store().await;
    let topup = completed_with_topup(&store).await;
    let now = OffsetDateTime::now_utc();
    let lease = StdDuration::from_secs(30);
    let AcquireOutcome::Acquired(held) = store
        .acquire_topup(topup.payment_id, now, lease)
        .await
        .unwrap()
    else {
        panic!("acquire")
    };
    // A lease leaves the open-work entry where the top-up was queued (no
    // index write): the sweep lists it, and its queuing again meets the
    // lease until it runs out.
    assert_eq!(
        store
            .topups_due(now + Duration::seconds(1), 10, None)
            .await
            .unwrap()
            .0,
        vec![topup.payment_id]
    );
    assert!(matches!(
        store
            .acquire_topup(topup.payment_id, now + Duration::seconds(1), lease)
            .await
            .unwrap(),
        AcquireOutcome::Leased(_)
    ));
    assert_eq!(
        store
            .release_topup(&held, "casino 503", None, false, now)
            .await
            .unwrap(),
        FinishOutcome::Finished
    );
    let queued = store.topup(topup.payment_id).await.unwrap().unwrap();
    assert_eq!(queued.status, TopUpStatus::Queued);
    assert_eq!(queued.last_error.as_deref(), Some("casino 503"));
    assert_eq!(
        store
            .topups_due(now + Duration::seconds(1), 10, None)
            .await
            .unwrap()
            .0,
        vec![topup.payment_id]
    );
    let AcquireOutcome::Acquired(again) = store
        .acquire_topup(topup.payment_id, now, lease)
        .await
        .unwrap()
    else {
        panic!("a released top-up is acquired again")
    };
    store
        .release_topup(
            &again,
            "player blocked",
            Some(TopUpStatus::Failed),
            false,
            now,
        )
        .await
        .unwrap();
    let failed = store.topup(topup.payment_id).await.unwrap().unwrap();
    assert_eq!(failed.status, TopUpStatus::Failed);
    assert!(store
        .topups_due(now + Duration::hours(1), 10, None)
        .await
        .unwrap()
        .0
        .is_empty());
    // The money stays in the wallet for a person to move.
    assert_eq!(
        store
            .balance(&common::merchant(), &topup.wallet_user_id, Currency::Php)
            .await
            .unwrap(),
        topup.amount
    );
}

#[tokio::test]
async fn a_second_topup_for_one_payment_is_refused() {
    let store = fresh_store().await;
    let topup = completed_with_topup(&store).await;
    let write = store.topup_write(&topup).unwrap();
    let p = store.payment(topup.payment_id).await.unwrap().unwrap();
    let change = StatusChange::new(
        PaymentStatus::Refunded,
        ChangeSource::Api,
        OffsetDateTime::now_utc(),
    );
    let err = store.transition(&p, change, vec![write]).await.unwrap_err();
    assert!(
        matches!(
            err,
            shared::store::StoreError::Refused(shared::store::ItemKind::TopUp)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn webhook_deliveries_are_seen_once_until_they_expire() {
    let store = fresh_store().await;
    let now = OffsetDateTime::now_utc();
    let expires = now + Duration::days(7);
    let key = format!("evt_{}", ulid::Ulid::new());
    assert!(!store
        .delivery_seen(Provider::PaymentEngine, &key, now)
        .await
        .unwrap());
    assert_eq!(
        store
            .record_delivery(Provider::PaymentEngine, &key, now, expires)
            .await
            .unwrap(),
        DeliveryOutcome::First
    );
    assert_eq!(
        store
            .record_delivery(Provider::PaymentEngine, &key, now, expires)
            .await
            .unwrap(),
        DeliveryOutcome::Duplicate
    );
    assert!(store
        .delivery_seen(Provider::PaymentEngine, &key, now)
        .await
        .unwrap());
    // The same id from another provider is another event.
    assert_eq!(
        store
            .record_delivery(Provider::Qpay, &key, now, expires)
            .await
            .unwrap(),
        DeliveryOutcome::First
    );
    // Past its TTL (not yet deleted by DynamoDB) a record no longer counts.
    let later = expires + Duration::seconds(1);
    assert!(!store
        .delivery_seen(Provider::PaymentEngine, &key, later)
        .await
        .unwrap());
    assert_eq!(
        store
            .record_delivery(
                Provider::PaymentEngine,
                &key,
                later,
                later + Duration::days(7)
            )
            .await
            .unwrap(),
        DeliveryOutcome::First
    );
}
