//! One item per refund: `pending -> succeeded | failed`, beside its payment.
//!
//! The record is written in the transaction that reserves the refund on the
//! payment (and holds it in the wallet), under a refund id derived from the
//! merchant's request, so a retry finds it instead of starting another. It
//! leaves `pending` only on the provider's word: a confirmed refund
//! (`succeeded`, with the payment's refunded total in the same
//! transaction) or a definite refusal (`failed`, with the reservation
//! given back). While pending it sits in GSI2 (`OPEN#REFUND`), where
//! reconcile finds it. Every move is conditional on the record being
//! pending and on the attempt count the caller read, so a resend and a
//! settlement can never both happen.

use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{keys, s, schema, time_key, Item, ItemKind, Store, StoreError, Write};
use crate::ids::PaymentId;
use crate::money::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Reserved and sent (or about to be); the provider's answer is not
    /// recorded yet.
    Pending,
    Succeeded,
    /// The provider said no; the reservation was given back.
    Failed,
}

impl RefundStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }
}

/// One refund of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub payment_id: PaymentId,
    /// Ours, sent to the provider where it takes one; the same on a retry.
    #[serde(with = "ulid_text")]
    pub refund_id: ulid::Ulid,
    pub amount: Money,
    /// It is all that was left of the payment when it was asked for.
    pub rest: bool,
    pub status: RefundStatus,
    /// Times it was sent to the provider.
    pub attempts: u32,
    /// Epoch milliseconds in storage, so conditions compare numbers.
    #[serde(default, with = "time::serde::timestamp::milliseconds_i64::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    /// Why the last attempt has no known outcome, or why it failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The provider's refusal, kept so a retry answers the same.
    #[serde(default)]
    pub provider_code: Option<String>,
    #[serde(default)]
    pub provider_message: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Refund {
    /// A refund about to be sent for the first time.
    pub fn new(
        payment_id: PaymentId,
        refund_id: ulid::Ulid,
        amount: Money,
        rest: bool,
        now: OffsetDateTime,
    ) -> Refund {
        Refund {
            payment_id,
            refund_id,
            amount,
            rest,
            status: RefundStatus::Pending,
            attempts: 1,
            last_attempt_at: Some(now),
            last_error: None,
            provider_code: None,
            provider_message: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A ULID stored as its text.
mod ulid_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &ulid::Ulid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ulid::Ulid, D::Error> {
        let text = String::deserialize(d)?;
        ulid::Ulid::from_string(&text).map_err(serde::de::Error::custom)
    }
}

/// How a conditional move of a refund ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundMove {
    Moved(Refund),
    /// Another writer moved it first (settled, or took another attempt).
    Lost(Option<Box<Refund>>),
}

fn refund_sk(id: ulid::Ulid) -> String {
    format!("{}{id}", keys::REFUND_SK_PREFIX)
}

fn open_sk(r: &Refund, due: OffsetDateTime) -> String {
    format!("{}#{}#{}", time_key(due), r.payment_id, r.refund_id)
}

fn refund_item(r: &Refund) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(r)?;
    item.insert(schema::PK.into(), s(keys::payment(r.payment_id)));
    item.insert(schema::SK.into(), s(refund_sk(r.refund_id)));
    item.insert(schema::GSI2_PK.into(), s(keys::OPEN_REFUNDS));
    item.insert(
        schema::GSI2_SK.into(),
        s(open_sk(r, r.last_attempt_at.unwrap_or(r.created_at))),
    );
    Ok(item)
}

use super::rfc3339_text as rfc3339;

impl Store {
    /// The write that records a new refund; goes in the reservation's
    /// transaction. Refused if this refund id exists already.
    pub fn refund_write(&self, refund: &Refund) -> Result<Write, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(refund_item(refund)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        Ok(Write {
            what: ItemKind::Refund,
            item: TransactWriteItem::builder().put(put).build(),
        })
    }

    pub async fn refund(
        &self,
        payment_id: PaymentId,
        refund_id: ulid::Ulid,
    ) -> Result<Option<Refund>, StoreError> {
        self.get(keys::payment(payment_id), &refund_sk(refund_id))
            .await?
            .map(|item| serde_dynamo::from_item(item).map_err(StoreError::from))
            .transpose()
    }

    /// Every refund of the payment, oldest first.
    pub async fn refunds_of(&self, payment_id: PaymentId) -> Result<Vec<Refund>, StoreError> {
        self.payment_items(payment_id, keys::REFUND_SK_PREFIX).await
    }

    /// The write that settles a pending refund (`succeeded` or `failed`),
    /// conditional on it being pending at the attempt the caller read; it
    /// leaves the open-work index.
    pub fn refund_settle_write(
        &self,
        refund: &Refund,
        to: RefundStatus,
        now: OffsetDateTime,
    ) -> Result<Write, StoreError> {
        let mut set = vec!["#status = :to", "updated_at = :now"];
        let mut update = self
            .refund_condition(refund)
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":now", s(rfc3339(now)?));
        if let Some(code) = &refund.provider_code {
            set.push("provider_code = :code");
            update = update.expression_attribute_values(":code", s(code.as_str()));
        }
        if let Some(message) = &refund.provider_message {
            set.push("provider_message = :message");
            update = update.expression_attribute_values(
                ":message",
                s(message.chars().take(500).collect::<String>()),
            );
        }
        let update = update
            .update_expression(format!("SET {} REMOVE gsi2pk, gsi2sk", set.join(", ")))
            .build()?;
        Ok(Write {
            what: ItemKind::Refund,
            item: TransactWriteItem::builder().update(update).build(),
        })
    }

    /// Records why the latest attempt has no known outcome; it stays pending.
    pub async fn note_refund_error(
        &self,
        refund: &Refund,
        error: &str,
        now: OffsetDateTime,
    ) -> Result<RefundMove, StoreError> {
        let mut next = refund.clone();
        next.last_error = Some(error.chars().take(500).collect());
        next.updated_at = now;
        let update = self
            .refund_condition(refund)
            .update_expression("SET last_error = :error, updated_at = :now")
            .expression_attribute_values(":error", s(next.last_error.clone().unwrap_or_default()))
            .expression_attribute_values(":now", s(rfc3339(now)?))
            .build()?;
        self.move_refund(refund, update, next).await
    }

    /// Pending refunds whose latest attempt was before `before`, oldest
    /// first, one page of at most `limit` from `start` (the last of the
    /// previous page).
    pub async fn open_refunds(
        &self,
        before: OffsetDateTime,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<(PaymentId, ulid::Ulid)>, Option<Item>), StoreError> {
        let (items, next) = self
            .open_work(keys::OPEN_REFUNDS, Some(before), limit, start)
            .await?;
        let ids = items
            .iter()
            .map(|item| {
                let pk = item.get(schema::PK).and_then(|v| v.as_s().ok());
                let sk = item.get(schema::SK).and_then(|v| v.as_s().ok());
                let payment = pk
                    .and_then(|pk| pk.strip_prefix("PAY#"))
                    .and_then(|id| id.parse().ok());
                let refund = sk
                    .and_then(|sk| sk.strip_prefix(keys::REFUND_SK_PREFIX))
                    .and_then(|id| ulid::Ulid::from_string(id).ok());
                payment
                    .zip(refund)
                    .ok_or_else(|| StoreError::Corrupt("refund index item".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((ids, next))
    }

    fn refund_condition(
        &self,
        refund: &Refund,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder()
            .table_name(&self.table)
            .key(schema::PK, s(keys::payment(refund.payment_id)))
            .key(schema::SK, s(refund_sk(refund.refund_id)))
            .condition_expression("#status = :pending AND attempts = :attempts")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(RefundStatus::Pending.as_str()))
            .expression_attribute_values(
                ":attempts",
                AttributeValue::N(refund.attempts.to_string()),
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    async fn move_refund(
        &self,
        refund: &Refund,
        update: Update,
        next: Refund,
    ) -> Result<RefundMove, StoreError> {
        let writes = vec![Write {
            what: ItemKind::Refund,
            item: TransactWriteItem::builder().update(update).build(),
        }];
        match self.transact(writes).await? {
            Ok(()) => Ok(RefundMove::Moved(next)),
            Err(super::Cancelled::Condition { item, .. }) => {
                let found = match item {
                    Some(item) => Some(serde_dynamo::from_item(item)?),
                    None => self.refund(refund.payment_id, refund.refund_id).await?,
                };
                Ok(RefundMove::Lost(found.map(Box::new)))
            }
            Err(super::Cancelled::Conflict) => Ok(RefundMove::Lost(
                self.refund(refund.payment_id, refund.refund_id)
                    .await?
                    .map(Box::new),
            )),
        }
    }
}
