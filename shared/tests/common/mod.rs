//! Helpers for tests that run against the local stack (DynamoDB Local and
//! moto, started by `make test`). Each test gets a table of its own.

#![allow(dead_code)]

pub mod api;
pub mod cases;
pub mod harness;

use shared::ids::{MerchantId, PaymentId};
use shared::money::{Currency, Money};
use shared::payment::{ChangeSource, Customer, NewPayment, Payment, Provider};
use shared::store::Store;
use time::OffsetDateTime;

pub async fn fresh_store() -> Store {
    let stack = devstack::LocalStack::connect().await;
    let table = stack
        .fresh_table()
        .await
        .expect("create a test table in DynamoDB Local (is the stack up? run `make test`)");
    Store::new(stack.dynamodb.clone(), table)
}

pub fn merchant() -> MerchantId {
    "m_test".parse().unwrap()
}

pub fn new_payment(provider: Provider, amount: Money, reference: &str) -> NewPayment {
    NewPayment {
        id: PaymentId::generate(),
        merchant_id: merchant(),
        provider,
        amount,
        reference: reference.parse().unwrap(),
        description: Some("test".into()),
        customer: Customer::default(),
        return_url: None,
        method: None,
        wallet_user_id: Some("u_123".parse().unwrap()),
        casino_username: None,
        provider_reference: Some(format!("ref-{}", ulid::Ulid::new()).parse().unwrap()),
        checkout: Default::default(),
        page_token: None,
        expires_at: OffsetDateTime::now_utc() + time::Duration::minutes(30),
    }
}

/// A stored pending payment of PHP 100.00.
pub async fn pending_payment(store: &Store) -> Payment {
    let amount = Money::new(10_000, Currency::Php).unwrap();
    let reference = format!("ORD-{}", ulid::Ulid::new());
    let p = Payment::new(
        new_payment(Provider::Directpay, amount, &reference),
        ChangeSource::Api,
        OffsetDateTime::now_utc(),
    );
    let outcome = store.create_payment(&p).await.unwrap();
    assert_eq!(outcome, shared::store::CreateOutcome::Created);
    p
}

/// Every item in the table, for tests that assert nothing else was written.
pub async fn item_count(store: &Store) -> usize {
    let out = store
        .client()
        .scan()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    out.items.unwrap_or_default().len()
}
