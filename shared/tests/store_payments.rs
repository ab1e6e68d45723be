//! Payments and transitions against DynamoDB Local: exactly-once under
//! concurrency, typed outcomes for every lost race.

mod common;

use std::sync::Arc;

use common::{fresh_store, item_count, merchant, new_payment, pending_payment};
use shared::ids::PaymentId;
use shared::money::{Currency, Money};
use shared::payment::{ChangeSource, Payment, PaymentStatus, Provider};
use shared::store::{
    CreateOutcome, LedgerEntry, LedgerPurpose, StatusChange, Store, TransitionOutcome,
};
use time::OffsetDateTime;

fn completion() -> StatusChange {
    StatusChange::new(
        PaymentStatus::Completed,
        ChangeSource::Webhook,
        OffsetDateTime::now_utc(),
    )
}

fn deposit(p: &Payment) -> LedgerEntry {
    LedgerEntry {
        merchant: p.merchant_id.clone(),
        user: p.wallet_user_id.clone().unwrap(),
        payment_id: p.id,
        purpose: LedgerPurpose::Deposit,
        amount: p.amount,
        at: OffsetDateTime::now_utc(),
        memo: format!("deposit {}", p.id),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_completions_apply_once_and_credit_once() {
    let store = Arc::new(fresh_store().await);
    let p = pending_payment(&store).await;
    let user = p.wallet_user_id.clone().unwrap();

    let mut tasks = Vec::new();
    for _ in 0..32 {
        let store = store.clone();
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let writes = store.ledger_writes(&deposit(&p)).unwrap().to_vec();
            store.transition(&p, completion(), writes).await
        }));
    }
    let mut applied = 0;
    let mut already = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            TransitionOutcome::Applied(p) => {
                assert_eq!(p.status, PaymentStatus::Completed);
                applied += 1;
            }
            TransitionOutcome::AlreadyInState(p) => {
                assert_eq!(p.status, PaymentStatus::Completed);
                already += 1;
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((applied, already), (1, 31));

    let stored = store.payment(p.id).await.unwrap().unwrap();
    assert_eq!(stored.status, PaymentStatus::Completed);
    assert_eq!(stored.version, 2);
    assert_eq!(stored.history.len(), 2);
    assert_eq!(
        store
            .balance(&common::merchant(), &user, Currency::Php)
            .await
            .unwrap(),
        p.amount
    );
    let entries = store
        .ledger_entries(&common::merchant(), &user, 50, None)
        .await
        .unwrap()
        .0;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].amount, p.amount);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completion_racing_failure_has_exactly_one_winner() {
    for _ in 0..5 {
        let store = Arc::new(fresh_store().await);
        let p = pending_payment(&store).await;
        let (s1, p1) = (store.clone(), p.clone());
        let (s2, p2) = (store.clone(), p.clone());
        let complete = tokio::spawn(async move { s1.transition(&p1, completion(), vec![]).await });
        let fail = tokio::spawn(async move {
            let change = StatusChange::new(
                PaymentStatus::Failed,
                ChangeSource::Webhook,
                OffsetDateTime::now_utc(),
            );
            s2.transition(&p2, change, vec![]).await
        });
        let a = complete.await.unwrap().unwrap();
        let b = fail.await.unwrap().unwrap();
        let stored = store.payment(p.id).await.unwrap().unwrap();
        match (a, b) {
            (TransitionOutcome::Applied(won), TransitionOutcome::Rejected { current }) => {
                assert_eq!(won.status, PaymentStatus::Completed);
                assert_eq!(current.status, PaymentStatus::Completed);
                assert_eq!(stored.status, PaymentStatus::Completed);
            }
            (TransitionOutcome::Rejected { current }, TransitionOutcome::Applied(won)) => {
                assert_eq!(won.status, PaymentStatus::Failed);
                assert_eq!(current.status, PaymentStatus::Failed);
                assert_eq!(stored.status, PaymentStatus::Failed);
            }
            other => panic!("expected one winner and one rejection, got {other:?}"),
        }
        assert_eq!(stored.version, 2);
    }
}

#[tokio::test]
async fn a_write_with_a_stale_version_is_rejected() {
    let store = fresh_store().await;
    let p = pending_payment(&store).await;
    let stale = p.clone();
    let expire = StatusChange::new(
        PaymentStatus::Expired,
        ChangeSource::Sweep,
        OffsetDateTime::now_utc(),
    );
    let TransitionOutcome::Applied(expired) = store.transition(&p, expire, vec![]).await.unwrap()
    else {
        panic!("expiry should apply")
    };
    // The stale copy still says pending, version 1; the write must not land
    // and must say what the payment is now.
    let writes = store.ledger_writes(&deposit(&p)).unwrap().to_vec();
    let outcome = store
        .transition(&stale, completion(), writes)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        TransitionOutcome::Stale {
            current: expired.clone()
        }
    );
    let user = p.wallet_user_id.clone().unwrap();
    assert!(store
        .balance(&common::merchant(), &user, Currency::Php)
        .await
        .unwrap()
        .is_zero());

    // Re-read and retry: a confirmed late payment completes an expired one.
    let writes = store.ledger_writes(&deposit(&p)).unwrap().to_vec();
    let outcome = store
        .transition(&expired, completion(), writes)
        .await
        .unwrap();
    let TransitionOutcome::Applied(done) = outcome else {
        panic!("late payment should complete, got {outcome:?}")
    };
    assert_eq!(done.status, PaymentStatus::Completed);
    assert_eq!(done.version, 3);
    let statuses: Vec<_> = done.history.iter().map(|h| h.status).collect();
    assert_eq!(
        statuses,
        [
            PaymentStatus::Pending,
            PaymentStatus::Expired,
            PaymentStatus::Completed
        ]
    );
    assert_eq!(
        store
            .balance(&common::merchant(), &user, Currency::Php)
            .await
            .unwrap(),
        p.amount
    );
}

#[tokio::test]
async fn moves_backwards_or_repeats_write_nothing() {
    let store = fresh_store().await;
    let p = pending_payment(&store).await;
    let TransitionOutcome::Applied(done) =
        store.transition(&p, completion(), vec![]).await.unwrap()
    else {
        panic!("completion should apply")
    };
    let before = item_count(&store).await;
    for late in [
        PaymentStatus::Pending,
        PaymentStatus::Failed,
        PaymentStatus::Expired,
    ] {
        let change = StatusChange::new(late, ChangeSource::Webhook, OffsetDateTime::now_utc());
        let outcome = store.transition(&done, change, vec![]).await.unwrap();
        assert_eq!(
            outcome,
            TransitionOutcome::Rejected {
                current: done.clone()
            }
        );
    }
    let again = store.transition(&done, completion(), vec![]).await.unwrap();
    assert_eq!(again, TransitionOutcome::AlreadyInState(done.clone()));
    assert_eq!(store.payment(p.id).await.unwrap().unwrap(), done);
    assert_eq!(item_count(&store).await, before);
}

#[tokio::test]
async fn only_an_operator_moves_a_payment_out_of_review() {
    let store = fresh_store().await;
    let p = pending_payment(&store).await;
    let review = StatusChange::new(
        PaymentStatus::NeedsReview,
        ChangeSource::Webhook,
        OffsetDateTime::now_utc(),
    );
    let TransitionOutcome::Applied(held) = store.transition(&p, review, vec![]).await.unwrap()
    else {
        panic!("review should apply")
    };
    let before = item_count(&store).await;
    for source in [
        ChangeSource::Webhook,
        ChangeSource::Poll,
        ChangeSource::Sweep,
        ChangeSource::Reconcile,
        ChangeSource::Api,
    ] {
        for to in [PaymentStatus::Completed, PaymentStatus::Failed] {
            let change = StatusChange::new(to, source, OffsetDateTime::now_utc());
            let outcome = store.transition(&held, change, vec![]).await.unwrap();
            assert!(
                matches!(outcome, TransitionOutcome::Rejected { .. }),
                "{source:?} -> {to}"
            );
        }
    }
    assert_eq!(store.payment(p.id).await.unwrap().unwrap(), held);
    assert_eq!(item_count(&store).await, before);
    let mut accept = StatusChange::new(
        PaymentStatus::Completed,
        ChangeSource::Operator,
        OffsetDateTime::now_utc(),
    );
    accept.by = Some(("ana".into(), "checked".into()));
    accept.action = Some("accept");
    let TransitionOutcome::Applied(done) = store.transition(&held, accept, vec![]).await.unwrap()
    else {
        panic!("an operator's accept should apply")
    };
    let entry = done.history.last().unwrap();
    assert_eq!(entry.by.as_deref(), Some("ana"));
    assert_eq!(entry.action.as_deref(), Some("accept"));
    assert_eq!(store.payment(p.id).await.unwrap().unwrap(), done);
}

#[tokio::test]
async fn an_extra_write_refused_by_its_condition_rolls_back_the_transition() {
    let store = fresh_store().await;
    let p = pending_payment(&store).await;
    // The deposit was posted already (say, by an earlier bug): completing with
    // the same credit must not commit the status either.
    store.post_entry(&deposit(&p)).await.unwrap();
    let writes = store.ledger_writes(&deposit(&p)).unwrap().to_vec();
    let err = store
        .transition(&p, completion(), writes)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            shared::store::StoreError::Refused(shared::store::ItemKind::LedgerEntry)
        ),
        "{err:?}"
    );
    assert_eq!(
        store.payment(p.id).await.unwrap().unwrap().status,
        PaymentStatus::Pending
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_payments_racing_for_one_reference_one_wins() {
    let store = Arc::new(fresh_store().await);
    let amount = Money::new(500, Currency::Myr).unwrap();
    let now = OffsetDateTime::now_utc();
    let a = Payment::new(
        new_payment(Provider::Toyyibpay, amount, "ORD-SAME"),
        ChangeSource::Api,
        now,
    );
    let b = Payment::new(
        new_payment(Provider::Toyyibpay, amount, "ORD-SAME"),
        ChangeSource::Api,
        now,
    );
    let (sa, pa) = (store.clone(), a.clone());
    let (sb, pb) = (store.clone(), b.clone());
    let ta = tokio::spawn(async move { sa.create_payment(&pa).await });
    let tb = tokio::spawn(async move { sb.create_payment(&pb).await });
    let outcomes = [ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap()];
    let created: Vec<_> = outcomes
        .iter()
        .filter(|o| **o == CreateOutcome::Created)
        .collect();
    assert_eq!(created.len(), 1, "{outcomes:?}");
    let winner = if outcomes[0] == CreateOutcome::Created {
        a.id
    } else {
        b.id
    };
    let loser = if winner == a.id { b.id } else { a.id };
    assert!(outcomes.contains(&CreateOutcome::DuplicateReference { existing: winner }));
    assert!(store.payment(loser).await.unwrap().is_none());
    let by_ref = store
        .payment_by_reference(&merchant(), &"ORD-SAME".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_ref.id, winner);
}

#[tokio::test]
async fn the_same_reference_is_free_for_another_merchant() {
    let store = fresh_store().await;
    let amount = Money::new(500, Currency::Myr).unwrap();
    let now = OffsetDateTime::now_utc();
    let a = Payment::new(
        new_payment(Provider::Qpay, amount, "ORD-1"),
        ChangeSource::Api,
        now,
    );
    let mut other = new_payment(Provider::Qpay, amount, "ORD-1");
    other.merchant_id = "m_other".parse().unwrap();
    let b = Payment::new(other, ChangeSource::Api, now);
    assert_eq!(
        store.create_payment(&a).await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        store.create_payment(&b).await.unwrap(),
        CreateOutcome::Created
    );
    // Creating the same payment again is recognised as such.
    assert_eq!(
        store.create_payment(&a).await.unwrap(),
        CreateOutcome::AlreadyExists
    );
}

#[tokio::test]
async fn payments_are_found_by_id_provider_reference_and_merchant_reference() {
    let store = fresh_store().await;
    let p = pending_payment(&store).await;
    assert_eq!(store.payment(p.id).await.unwrap().as_ref(), Some(&p));
    let provider_ref = p.provider_reference.clone().unwrap();
    // GSI reads are eventually consistent in AWS; DynamoDB Local is immediate.
    let found = store
        .payment_by_provider_ref(Provider::Directpay, provider_ref.as_str())
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(&p));
    assert!(store
        .payment_by_provider_ref(Provider::Paygram, provider_ref.as_str())
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .payment_by_reference(&merchant(), &p.reference)
            .await
            .unwrap(),
        Some(p.clone())
    );
    assert!(store
        .payment(PaymentId::generate())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn pending_payments_past_expiry_are_listed_for_the_sweep() {
    let store = fresh_store().await;
    let amount = Money::new(100, Currency::Kzt).unwrap();
    let now = OffsetDateTime::now_utc();
    let mut overdue = new_payment(Provider::Epayment, amount, "ORD-OLD");
    overdue.expires_at = now - time::Duration::minutes(1);
    let overdue = Payment::new(overdue, ChangeSource::Api, now);
    let fresh = Payment::new(
        new_payment(Provider::Epayment, amount, "ORD-NEW"),
        ChangeSource::Api,
        now,
    );
    store.create_payment(&overdue).await.unwrap();
    store.create_payment(&fresh).await.unwrap();
    assert_eq!(
        store.pending_payments_due(now, 10, None).await.unwrap().0,
        vec![overdue.id]
    );

    // Once it leaves pending it is no longer open work.
    let change = StatusChange::new(PaymentStatus::Expired, ChangeSource::Sweep, now);
    store.transition(&overdue, change, vec![]).await.unwrap();
    assert!(store
        .pending_payments_due(now, 10, None)
        .await
        .unwrap()
        .0
        .is_empty());
}

#[tokio::test]
async fn provider_checks_are_recorded_without_a_version_change() {
    let store: Store = fresh_store().await;
    let p = pending_payment(&store).await;
    let at = OffsetDateTime::now_utc();
    store
        .mark_provider_checked(p.id, at, Some("NEW"))
        .await
        .unwrap();
    let stored = store.payment(p.id).await.unwrap().unwrap();
    assert_eq!(stored.version, p.version);
    assert_eq!(stored.provider_status.as_deref(), Some("NEW"));
    assert!(stored.provider_checked_at.is_some());
    // The caller's copy is still current for a transition, and the
    // transition keeps what the check recorded.
    let outcome = store.transition(&p, completion(), vec![]).await.unwrap();
    assert!(matches!(outcome, TransitionOutcome::Applied(_)));
    let after = store.payment(p.id).await.unwrap().unwrap();
    assert_eq!(after.status, PaymentStatus::Completed);
    assert_eq!(after.provider_status.as_deref(), Some("NEW"));
    assert_eq!(after.provider_checked_at, stored.provider_checked_at);
}

/// The payment item as stored, attribute by attribute.
async fn raw_payment(
    store: &Store,
    id: PaymentId,
) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    store
        .client()
        .get_item()
        .table_name(store.table())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("PAY#{id}")),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("PAY".into()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap()
}

/// The payment item as stored: what reads back the same when missing is
/// left out (the id and the provider's reference live in keys, nulls,
/// zero counters and a zero refund total not at all), and once settled the
/// provider-check claims go; every write of it is billed by its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_item_keeps_each_fact_once_and_drops_its_claims_once_settled() {
    let store = fresh_store().await;
    let p = pending_payment(&store).await;
    let raw = || raw_payment(&store, p.id);
    let item = raw().await;
    for gone in [
        "id",
        "provider_reference",
        "refunded_amount",
        "provider_checked_at",
        "history_apart",
        "sweep_misses",
        "customer",
    ] {
        assert!(!item.contains_key(gone), "{gone}: {item:?}");
    }
    assert!(!item.values().any(|v| v.is_null()), "{item:?}");
    assert!(item.contains_key("gsi1pk"));
    // Read back as it was written.
    assert_eq!(store.payment(p.id).await.unwrap().unwrap(), p);

    let now = OffsetDateTime::now_utc();
    for slot in ["completed", "poll"] {
        assert!(store
            .claim_provider_check(p.id, slot, now, time::Duration::seconds(5))
            .await
            .unwrap());
    }
    assert!(raw().await.contains_key("check_ms_completed"));
    let TransitionOutcome::Applied(done) =
        store.transition(&p, completion(), vec![]).await.unwrap()
    else {
        panic!("the completion applies")
    };
    let item = raw().await;
    assert!(!item.keys().any(|k| k.starts_with("check_ms_")), "{item:?}");
    assert_eq!(store.payment(p.id).await.unwrap().unwrap(), done);
}

/// Reconcile's index (GSI3) holds a payment at the UTC hour of its latest
/// change: a change within the hour of the one before leaves the entry
/// where it is, so DynamoDB writes no index entry for it (a completing
/// callback's 4 write units); a change in a later hour moves it
/// (decision 59).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_entry_moves_only_when_a_change_falls_in_another_hour() {
    use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
    let store = fresh_store().await;
    let hour = time::macros::datetime!(2026-12-05 10:00 UTC);
    let amount = Money::new(10_000, Currency::Php).unwrap();
    let made = |minute: i64| {
        Payment::new(
            new_payment(
                Provider::Directpay,
                amount,
                &format!("ORD-{}", ulid::Ulid::new()),
            ),
            ChangeSource::Api,
            hour + time::Duration::minutes(minute),
        )
    };
    let index_key = |id: PaymentId| {
        let store = &store;
        async move {
            let item = raw_payment(store, id).await;
            let text = |k: &str| item.get(k).unwrap().as_s().unwrap().clone();
            (text("gsi3pk"), text("gsi3sk"))
        }
    };
    // The key's time is the hour's start, whatever the minute.
    let at_ten = |id: PaymentId| {
        (
            "CHANGED#2026-12-05".to_string(),
            format!("{:015}#{id}", hour.unix_timestamp() * 1000),
        )
    };
    let same = made(10);
    let later = made(50);
    for p in [&same, &later] {
        store.create_payment(p).await.unwrap();
        assert_eq!(index_key(p.id).await, at_ten(p.id));
    }
    let complete = |minute: i64| {
        StatusChange::new(
            PaymentStatus::Completed,
            ChangeSource::Webhook,
            hour + time::Duration::minutes(minute),
        )
    };
    assert!(matches!(
        store.transition(&same, complete(40), vec![]).await.unwrap(),
        TransitionOutcome::Applied(_)
    ));
    assert_eq!(
        index_key(same.id).await,
        at_ten(same.id),
        "the same hour: left in place"
    );
    assert!(matches!(
        store
            .transition(&later, complete(75), vec![])
            .await
            .unwrap(),
        TransitionOutcome::Applied(_)
    ));
    assert_eq!(
        index_key(later.id).await,
        (
            "CHANGED#2026-12-05".to_string(),
            format!("{:015}#{}", (hour.unix_timestamp() + 3600) * 1000, later.id)
        ),
        "the next hour: moved"
    );
    // What DynamoDB bills an update that leaves every index key as it was:
    // the item alone, no index.
    let untouched = store
        .client()
        .update_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(format!("PAY#{}", same.id)))
        .key("sk", AttributeValue::S("PAY".into()))
        .update_expression("SET updated_at = :at")
        .expression_attribute_values(":at", AttributeValue::S("2026-12-05T10:45:00Z".into()))
        .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
        .send()
        .await
        .unwrap();
    let consumed = untouched.consumed_capacity.unwrap();
    assert!(
        consumed
            .global_secondary_indexes()
            .is_none_or(|i| i.is_empty()),
        "{consumed:?}"
    );
}

/// A reference claimed before the provider is called (decision 59): held
/// against another claim, given back only by its own payment, taken over
/// from a holder as read, and claimed afresh when the holder gave it back
/// meanwhile (two runs of one request, one answered "in progress").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_claim_is_held_given_back_and_taken_over_as_read() {
    let store = fresh_store().await;
    let reference: shared::ids::MerchantReference = "ORD-CLAIM-1".parse().unwrap();
    let until = OffsetDateTime::now_utc() + time::Duration::seconds(30);
    let (a, b, c) = (
        PaymentId::generate(),
        PaymentId::generate(),
        PaymentId::generate(),
    );
    let m = merchant();
    let holder = || async {
        store
            .payment_id_for_reference(&m, &reference)
            .await
            .unwrap()
    };
    assert_eq!(
        store
            .claim_reference(&m, &reference, a, "k-a", until)
            .await
            .unwrap(),
        None
    );
    let held = store
        .claim_reference(&m, &reference, b, "k-b", until)
        .await
        .unwrap()
        .expect("held by a");
    assert_eq!((held.payment, held.key.as_deref()), (a, Some("k-a")));
    // b's give-back leaves a's claim.
    store.release_reference(&m, &reference, b).await.unwrap();
    assert_eq!(holder().await, Some(a));
    // Taken over from a as read; a stale holder no longer takes it.
    assert!(store
        .retake_reference(&m, &reference, &held, b, "k-a", until)
        .await
        .unwrap());
    assert!(!store
        .retake_reference(&m, &reference, &held, c, "k-a", until)
        .await
        .unwrap());
    assert_eq!(holder().await, Some(b));
    // Given back by its holder meanwhile: claimed afresh.
    store.release_reference(&m, &reference, b).await.unwrap();
    assert!(store
        .retake_reference(&m, &reference, &held, c, "k-a", until)
        .await
        .unwrap());
    assert_eq!(holder().await, Some(c));
}
