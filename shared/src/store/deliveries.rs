//! Webhook delivery records: a provider's event id seen once, kept until its
//! TTL. Put [`Store::delivery_write`] in the transaction that applies the
//! event, so the event is marked seen exactly when its effect commits; use
//! [`Store::record_delivery`] for events that change nothing else.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use time::OffsetDateTime;

use super::{n, s, schema, Item, ItemKind, Store, StoreError, Write};
use crate::payment::Provider;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    First,
    Duplicate,
}

const SK: &str = "EVT";

/// New, or past its TTL (DynamoDB deletes expired items late; an expired
/// record no longer counts).
const CONDITION: &str = "attribute_not_exists(pk) OR purge_at < :now";

fn pk(provider: Provider, event_key: &str) -> String {
    format!("EVT#{provider}#{event_key}")
}

/// A delivery's item: seen at `received_at`, forgotten after `expires`.
fn item(
    provider: Provider,
    event_key: &str,
    received_at: OffsetDateTime,
    expires: OffsetDateTime,
) -> Item {
    Item::from([
        (schema::PK.to_string(), s(pk(provider, event_key))),
        (schema::SK.to_string(), s(SK)),
        ("received_at".to_string(), n(received_at.unix_timestamp())),
        (schema::TTL.to_string(), n(expires.unix_timestamp())),
    ])
}

impl Store {
    /// The write that records the delivery, refused if it was seen before.
    pub fn delivery_write(
        &self,
        provider: Provider,
        event_key: &str,
        received_at: OffsetDateTime,
        expires: OffsetDateTime,
    ) -> Result<Write, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item(provider, event_key, received_at, expires)))
            .condition_expression(CONDITION)
            .expression_attribute_values(":now", n(received_at.unix_timestamp()))
            .build()?;
        Ok(Write {
            what: ItemKind::WebhookDelivery,
            item: TransactWriteItem::builder().put(put).build(),
        })
    }

    /// Records the delivery on its own: `First` the first time, then
    /// `Duplicate` until it expires.
    pub async fn record_delivery(
        &self,
        provider: Provider,
        event_key: &str,
        received_at: OffsetDateTime,
        expires: OffsetDateTime,
    ) -> Result<DeliveryOutcome, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(provider, event_key, received_at, expires)))
            .condition_expression(CONDITION)
            .expression_attribute_values(":now", n(received_at.unix_timestamp()))
            .send()
            .await;
        use aws_sdk_dynamodb::operation::put_item::PutItemError as E;
        match result {
            Ok(_) => Ok(DeliveryOutcome::First),
            Err(err) => match err.as_service_error() {
                Some(E::ConditionalCheckFailedException(_)) => Ok(DeliveryOutcome::Duplicate),
                _ => Err(err.into()),
            },
        }
    }

    /// Whether the delivery was seen (and has not expired).
    pub async fn delivery_seen(
        &self,
        provider: Provider,
        event_key: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let item = self.get(pk(provider, event_key), SK).await?;
        Ok(item.is_some_and(|item| {
            item.get(schema::TTL)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|exp| exp >= now.unix_timestamp())
        }))
    }
}
