//! API idempotency records against DynamoDB Local (Powertools semantics).

mod common;

use std::sync::Arc;

use common::{fresh_store, merchant};
use shared::ids::IdempotencyKey;
use shared::store::{fingerprint, BeginOutcome, IdempotencyScope, StoredResponse};
use time::{Duration, OffsetDateTime};

fn scope() -> IdempotencyScope {
    IdempotencyScope {
        merchant: merchant(),
        operation: "create_payment",
    }
}

fn key() -> IdempotencyKey {
    format!("key-{}", ulid::Ulid::new()).parse().unwrap()
}

fn response() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![("content-type".into(), "application/json".into())],
        // Not valid UTF-8 on purpose: replay must return bytes, not text.
        body: vec![b'{', 0xff, 0x00, b'}', b'\n'],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_begins_give_one_new_and_one_in_progress() {
    let store = Arc::new(fresh_store().await);
    let key = key();
    let hash = fingerprint("create_payment", &serde_json::json!({"amount": 100}));
    let now = OffsetDateTime::now_utc();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (store, key, hash) = (store.clone(), key.clone(), hash.clone());
        tasks.push(tokio::spawn(async move {
            store
                .begin_idempotent(
                    &scope(),
                    &key,
                    &hash,
                    now,
                    now + Duration::seconds(30),
                    now + Duration::hours(24),
                )
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let new = outcomes
        .iter()
        .filter(|o| matches!(o, BeginOutcome::New { .. }))
        .count();
    let in_progress = outcomes
        .iter()
        .filter(|o| **o == BeginOutcome::InProgress)
        .count();
    assert_eq!((new, in_progress), (1, 1), "{outcomes:?}");
}

#[tokio::test]
async fn completed_keys_replay_the_same_bytes_and_refuse_another_request() {
    let store = fresh_store().await;
    let key = key();
    let body = serde_json::json!({"amount": 100, "currency": "PHP"});
    let hash = fingerprint("create_payment", &body);
    let now = OffsetDateTime::now_utc();
    let deadline = now + Duration::seconds(30);
    let expires = now + Duration::hours(24);

    let BeginOutcome::New { token } = store
        .begin_idempotent(&scope(), &key, &hash, now, deadline, expires)
        .await
        .unwrap()
    else {
        panic!("first begin must be new")
    };
    store
        .complete_idempotent(&scope(), &key, &token, &response())
        .await
        .unwrap();

    let again = store
        .begin_idempotent(&scope(), &key, &hash, now, deadline, expires)
        .await
        .unwrap();
    assert_eq!(again, BeginOutcome::Replay(response()));

    // The same JSON in another key order is the same request.
    let reordered: serde_json::Value =
        serde_json::from_str(r#"{"currency": "PHP", "amount": 100}"#).unwrap();
    assert_eq!(fingerprint("create_payment", &reordered), hash);

    let other = fingerprint("create_payment", &serde_json::json!({"amount": 101}));
    let mismatch = store
        .begin_idempotent(&scope(), &key, &other, now, deadline, expires)
        .await
        .unwrap();
    assert_eq!(mismatch, BeginOutcome::Mismatch);

    // Another merchant's identical key is independent.
    let other_scope = IdempotencyScope {
        merchant: "m_other".parse().unwrap(),
        operation: "create_payment",
    };
    let theirs = store
        .begin_idempotent(&other_scope, &key, &other, now, deadline, expires)
        .await
        .unwrap();
    assert!(matches!(theirs, BeginOutcome::New { .. }));
}

#[tokio::test]
async fn an_in_progress_record_past_its_deadline_can_be_taken_over() {
    let store = fresh_store().await;
    let key = key();
    let hash = fingerprint("refund", &serde_json::json!({}));
    let t0 = OffsetDateTime::now_utc();
    let BeginOutcome::New { token: first } = store
        .begin_idempotent(
            &scope(),
            &key,
            &hash,
            t0,
            t0 + Duration::seconds(10),
            t0 + Duration::hours(24),
        )
        .await
        .unwrap()
    else {
        panic!("first begin must be new")
    };
    // Before the deadline: still in progress.
    let t1 = t0 + Duration::seconds(5);
    let during = store
        .begin_idempotent(
            &scope(),
            &key,
            &hash,
            t1,
            t1 + Duration::seconds(10),
            t1 + Duration::hours(24),
        )
        .await
        .unwrap();
    assert_eq!(during, BeginOutcome::InProgress);

    // After it (the first invocation died): a retry takes the key over.
    let t2 = t0 + Duration::seconds(11);
    let BeginOutcome::New { token: second } = store
        .begin_idempotent(
            &scope(),
            &key,
            &hash,
            t2,
            t2 + Duration::seconds(10),
            t2 + Duration::hours(24),
        )
        .await
        .unwrap()
    else {
        panic!("an expired in-progress record must be taken over")
    };
    assert_ne!(first, second);

    // The first run, if it wakes up, can no longer complete or release it.
    let late = store
        .complete_idempotent(&scope(), &key, &first, &response())
        .await;
    assert!(late.is_err());
    store
        .release_idempotent(&scope(), &key, &first)
        .await
        .unwrap();
    let still = store
        .begin_idempotent(
            &scope(),
            &key,
            &hash,
            t2,
            t2 + Duration::seconds(10),
            t2 + Duration::hours(24),
        )
        .await
        .unwrap();
    assert_eq!(still, BeginOutcome::InProgress);

    store
        .complete_idempotent(&scope(), &key, &second, &response())
        .await
        .unwrap();
}

#[tokio::test]
async fn released_keys_can_be_retried_and_expired_records_start_over() {
    let store = fresh_store().await;
    let key = key();
    let hash = fingerprint("cancel", &serde_json::json!({}));
    let now = OffsetDateTime::now_utc();
    let begin = |now: OffsetDateTime| {
        let (store, key, hash) = (&store, key.clone(), hash.clone());
        async move {
            store
                .begin_idempotent(
                    &scope(),
                    &key,
                    &hash,
                    now,
                    now + Duration::seconds(30),
                    now + Duration::hours(24),
                )
                .await
                .unwrap()
        }
    };
    let BeginOutcome::New { token } = begin(now).await else {
        panic!("new")
    };
    store
        .release_idempotent(&scope(), &key, &token)
        .await
        .unwrap();
    let BeginOutcome::New { token } = begin(now).await else {
        panic!("a released key is free again")
    };
    store
        .complete_idempotent(&scope(), &key, &token, &response())
        .await
        .unwrap();
    assert!(matches!(begin(now).await, BeginOutcome::Replay(_)));
    // Past the record's expiry (TTL not yet run), the key is new again.
    let later = now + Duration::hours(25);
    assert!(matches!(begin(later).await, BeginOutcome::New { .. }));
}

/// A create keeps its answer in the payment's own transaction; a run whose
/// record was taken over meanwhile still stores its payment (the provider
/// has its invoice), without touching the new owner's record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_completes_its_record_in_the_payments_transaction_only_while_it_owns_it() {
    use shared::money::{Currency, Money};
    use shared::payment::{ChangeSource, Payment, Provider};
    use shared::store::CreateOutcome;
    let store = fresh_store().await;
    let hash = fingerprint("create_payment", &serde_json::json!({"amount": 100}));
    let t0 = OffsetDateTime::now_utc();
    let begin = |key: IdempotencyKey, at: OffsetDateTime| {
        let (store, hash) = (&store, &hash);
        async move {
            match begin_again(store, &key, hash, at).await {
                BeginOutcome::New { token } => token,
                other => panic!("{other:?}"),
            }
        }
    };
    let payment = || {
        let amount = Money::new(10_000, Currency::Php).unwrap();
        Payment::new(
            common::new_payment(
                Provider::Directpay,
                amount,
                &format!("ORD-{}", ulid::Ulid::new()),
            ),
            ChangeSource::Api,
            t0,
        )
    };

    // Owned: the payment and the completed record commit together.
    let owned = key();
    let token = begin(owned.clone(), t0).await;
    let keep = store
        .complete_idempotent_write(&scope(), &owned, &token, &response())
        .unwrap();
    let p = payment();
    let (outcome, kept) = store.create_payment_with(&p, Some(keep)).await.unwrap();
    assert_eq!((outcome, kept), (CreateOutcome::Created, true));
    let replay = begin_again(&store, &owned, &hash, t0).await;
    assert_eq!(replay, BeginOutcome::Replay(response()));

    // Taken over past its deadline: the payment is stored, the record stays
    // the new owner's, in progress.
    let taken = key();
    let token = begin(taken.clone(), t0).await;
    let t1 = t0 + Duration::seconds(11);
    let _second = begin(taken.clone(), t1).await;
    let keep = store
        .complete_idempotent_write(&scope(), &taken, &token, &response())
        .unwrap();
    let p = payment();
    let (outcome, kept) = store.create_payment_with(&p, Some(keep)).await.unwrap();
    assert_eq!((outcome, kept), (CreateOutcome::Created, false));
    assert!(store.payment(p.id).await.unwrap().is_some());
    assert_eq!(
        begin_again(&store, &taken, &hash, t1).await,
        BeginOutcome::InProgress
    );
}

async fn begin_again(
    store: &shared::store::Store,
    key: &IdempotencyKey,
    hash: &str,
    at: OffsetDateTime,
) -> BeginOutcome {
    store
        .begin_idempotent(
            &scope(),
            key,
            hash,
            at,
            at + Duration::seconds(10),
            at + Duration::hours(24),
        )
        .await
        .unwrap()
}

/// A kept answer is stored deflated (a create's answer, the payment and its
/// checkout, is about half the size, so its record stays one write unit)
/// and replayed byte for byte; a record kept before, with the bytes as they
/// were, replays too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_answer_is_stored_deflated_and_earlier_plain_records_still_replay() {
    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue;
    let store = fresh_store().await;
    let key = key();
    let request = serde_json::json!({"amount": 150000, "currency": "PHP"});
    let hash = fingerprint("create_payment", &request);
    let now = OffsetDateTime::now_utc();
    let (deadline, expires) = (now + Duration::seconds(30), now + Duration::hours(24));
    let BeginOutcome::New { token } = store
        .begin_idempotent(&scope(), &key, &hash, now, deadline, expires)
        .await
        .unwrap()
    else {
        panic!("first begin must be new")
    };
    let answer = StoredResponse {
        status: 201,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(&serde_json::json!({
            "id": "pay_01J00000000000000000000000",
            "status": "pending",
            "checkout": {"page_url": "https://pay.example.com/pay/01J00000000000000000000000AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                         "qr_text": "00020101021228760011ph.ppmi.p2m0111DIRECTPAY0315777777777777777"},
            "history": [{"status": "pending", "at": "2026-12-05T07:00:00Z", "source": "api"}],
        }))
        .unwrap(),
    };
    store
        .complete_idempotent(&scope(), &key, &token, &answer)
        .await
        .unwrap();
    let pk = format!("IDEM#{}#create_payment#{key}", merchant());
    let item = store
        .client()
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(pk.clone()))
        .key("sk", AttributeValue::S("IDEM".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(!item.contains_key("response_body"));
    let kept = item["response_body_z"].as_b().unwrap().as_ref().len();
    assert!(kept < answer.body.len(), "{kept} of {}", answer.body.len());
    assert_eq!(
        store
            .begin_idempotent(&scope(), &key, &hash, now, deadline, expires)
            .await
            .unwrap(),
        BeginOutcome::Replay(answer.clone())
    );

    // A record completed before answers were deflated.
    store
        .client()
        .update_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(pk))
        .key("sk", AttributeValue::S("IDEM".into()))
        .update_expression("SET response_body = :plain REMOVE response_body_z")
        .expression_attribute_values(":plain", AttributeValue::B(Blob::new(answer.body.clone())))
        .send()
        .await
        .unwrap();
    assert_eq!(
        store
            .begin_idempotent(&scope(), &key, &hash, now, deadline, expires)
            .await
            .unwrap(),
        BeginOutcome::Replay(answer)
    );
}
