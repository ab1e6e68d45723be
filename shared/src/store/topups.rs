//! Casino top-ups: `queued -> sending (leased) -> done | failed | unknown`.
//!
//! The record is written in the same transaction that completes its payment.
//! A worker takes a lease (`acquire`), makes the casino transfer with the
//! record's nonce (the same on every attempt), then `finish`es: the record
//! becomes `done` and the wallet is debited in one transaction.
//!
//! An attempt whose outcome is unknown (a timeout, a 5xx, a worker that
//! died holding the lease) may have paid the player. Where the operator's
//! bridge deduplicates nonces, the same nonce is sent again; where it does
//! not (the default), the top-up becomes `unknown` and waits for a person
//! (`mark_topup`), who checks the player's casino history. A top-up that
//! may have reached the casino is never `failed`.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    conflict_backoff, keys, millis, n, s, schema, time_key, Cancelled, Item, ItemKind, LedgerEntry,
    LedgerPurpose, Store, StoreError, Write, MAX_CONFLICT_RETRIES,
};
use crate::ids::{CasinoUsername, MerchantId, PaymentId, WalletUserId};
use crate::money::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopUpStatus {
    Queued,
    Sending,
    Done,
    /// Given up; no attempt can have reached the casino. The money stays
    /// in the wallet.
    Failed,
    /// An attempt may have reached the casino and was not resent: a person
    /// decides (sent, or not sent and queued again).
    Unknown,
}

impl TopUpStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            TopUpStatus::Queued => "queued",
            TopUpStatus::Sending => "sending",
            TopUpStatus::Done => "done",
            TopUpStatus::Failed => "failed",
            TopUpStatus::Unknown => "unknown",
        }
    }
}

/// A transfer of a completed deposit from the wallet to a casino player.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopUp {
    pub payment_id: PaymentId,
    /// The wallet is this merchant's user's.
    pub merchant_id: MerchantId,
    pub wallet_user_id: WalletUserId,
    pub username: CasinoUsername,
    pub amount: Money,
    pub status: TopUpStatus,
    pub attempts: u32,
    /// The idempotency nonce sent to the casino, derived from the payment.
    pub nonce: String,
    /// Epoch milliseconds in storage, so the lease condition compares numbers.
    #[serde(default, with = "time::serde::timestamp::milliseconds_i64::option")]
    pub lease_until: Option<OffsetDateTime>,
    #[serde(default)]
    pub casino_transaction_id: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// An earlier attempt may have reached the casino (its outcome was
    /// unknown): the top-up can no longer be `failed`.
    #[serde(default)]
    pub maybe_sent: bool,
    /// The status the latest `acquire` found: `sending` means the previous
    /// worker's lease ran out mid-attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<TopUpStatus>,
    /// Who settled it by hand, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl TopUp {
    /// A queued top-up of `amount` for the payment.
    pub fn queued(
        payment_id: PaymentId,
        merchant_id: MerchantId,
        wallet_user_id: WalletUserId,
        username: CasinoUsername,
        amount: Money,
        now: OffsetDateTime,
    ) -> TopUp {
        TopUp {
            payment_id,
            merchant_id,
            wallet_user_id,
            username,
            amount,
            status: TopUpStatus::Queued,
            attempts: 0,
            nonce: Self::nonce_for(payment_id),
            lease_until: None,
            casino_transaction_id: None,
            last_error: None,
            maybe_sent: false,
            previous_status: None,
            settled_by: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// The casino nonce: a pure function of the payment id, so every retry,
    /// from any worker, sends the same one.
    pub fn nonce_for(payment_id: PaymentId) -> String {
        format!("paygate-{}", payment_id.ulid())
    }
}

/// How [`Store::acquire_topup`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireOutcome {
    /// The caller holds the lease until `lease_until`; go and transfer.
    Acquired(TopUp),
    /// Another worker holds an unexpired lease.
    Leased(TopUp),
    /// Done or failed already: nothing to do.
    Finished(TopUp),
    Missing,
}

/// How [`Store::finish_topup`] and [`Store::release_topup`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishOutcome {
    Finished,
    /// The lease was lost (it ran out and another worker took it, or the
    /// top-up finished elsewhere); nothing changed.
    LeaseLost(Option<Box<TopUp>>),
}

fn topup_item(t: &TopUp) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(t)?;
    item.insert(schema::PK.into(), s(keys::payment(t.payment_id)));
    item.insert(schema::SK.into(), s(keys::TOPUP_SK));
    item.insert(schema::GSI2_PK.into(), s(keys::OPEN_TOPUPS));
    item.insert(
        schema::GSI2_SK.into(),
        s(format!("{}#{}", time_key(t.updated_at), t.payment_id)),
    );
    Ok(item)
}

use super::rfc3339_text as rfc3339;

impl Store {
    /// The write that queues a top-up; goes in the payment's completion
    /// transaction. Refused if the payment has a top-up already.
    pub fn topup_write(&self, topup: &TopUp) -> Result<Write, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(topup_item(topup)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        Ok(Write {
            what: ItemKind::TopUp,
            item: TransactWriteItem::builder().put(put).build(),
        })
    }

    pub async fn topup(&self, payment_id: PaymentId) -> Result<Option<TopUp>, StoreError> {
        self.get(keys::payment(payment_id), keys::TOPUP_SK)
            .await?
            .map(|item| serde_dynamo::from_item(item).map_err(StoreError::from))
            .transpose()
    }

    /// Takes the lease on a queued top-up, or on one whose previous lease ran
    /// out, counting the attempt. Its open-work entry stays where it is (a
    /// moved index key is two index writes): the sweep that meets a top-up
    /// still leased queues it again and the worker's lease refuses it, and
    /// one whose holder died is found, due since it was queued, once its
    /// lease lapses.
    pub async fn acquire_topup(
        &self,
        payment_id: PaymentId,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<AcquireOutcome, StoreError> {
        let until = now + lease;
        let result = self
            .update_topup(payment_id)
            .update_expression(
                "SET previous_status = #status, #status = :sending, lease_until = :until, \
                 updated_at = :now_text ADD attempts :one",
            )
            .condition_expression(
                "attribute_exists(pk) AND (#status = :queued OR \
                 (#status = :sending AND lease_until < :now))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(TopUpStatus::Sending.as_str()))
            .expression_attribute_values(":queued", s(TopUpStatus::Queued.as_str()))
            .expression_attribute_values(":until", n(millis(until)))
            .expression_attribute_values(":now", n(millis(now)))
            .expression_attribute_values(":now_text", s(rfc3339(now)?))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out
                    .attributes
                    .ok_or_else(|| StoreError::Corrupt("update returned no item".into()))?;
                Ok(AcquireOutcome::Acquired(serde_dynamo::from_item(item)?))
            }
            Err(err) => {
                use aws_sdk_dynamodb::operation::update_item::UpdateItemError as E;
                let Some(E::ConditionalCheckFailedException(ex)) = err.as_service_error() else {
                    return Err(err.into());
                };
                let found: Option<TopUp> = match ex.item() {
                    Some(item) => Some(serde_dynamo::from_item(item.clone())?),
                    None => self.topup(payment_id).await?,
                };
                Ok(match found {
                    None => AcquireOutcome::Missing,
                    Some(t)
                        if matches!(
                            t.status,
                            TopUpStatus::Done | TopUpStatus::Failed | TopUpStatus::Unknown
                        ) =>
                    {
                        AcquireOutcome::Finished(t)
                    }
                    Some(t) => AcquireOutcome::Leased(t),
                })
            }
        }
    }

    /// Records the casino's transaction and debits the wallet, in one
    /// transaction, if `held` (as acquired) still holds the lease.
    pub async fn finish_topup(
        &self,
        held: &TopUp,
        casino_transaction_id: &str,
        now: OffsetDateTime,
    ) -> Result<FinishOutcome, StoreError> {
        let update = self
            .lease_condition(held, now)?
            .update_expression(
                "SET #status = :done, casino_transaction_id = :txn, updated_at = :now \
                 REMOVE lease_until, gsi2pk, gsi2sk",
            )
            .expression_attribute_values(":done", s(TopUpStatus::Done.as_str()))
            .expression_attribute_values(":txn", s(casino_transaction_id))
            .build()?;
        let debit = LedgerEntry {
            merchant: held.merchant_id.clone(),
            user: held.wallet_user_id.clone(),
            payment_id: held.payment_id,
            purpose: LedgerPurpose::CasinoTransfer,
            amount: held.amount,
            at: now,
            memo: format!("casino top-up to {}", held.username),
        };
        let mut writes = vec![Write {
            what: ItemKind::TopUp,
            item: TransactWriteItem::builder().update(update).build(),
        }];
        writes.extend(self.ledger_writes(&debit)?);
        // The merchant is told in the same transaction (decision 56).
        writes.extend(self.maybe_event_write(crate::events::Event::of_topup(
            held,
            TopUpStatus::Done,
            Some(casino_transaction_id),
            None,
            now,
        ))?);
        self.finish_with(held, writes).await
    }

    /// Gives the lease back after a failed attempt: `queued` again for a
    /// retry, or, when `end` says so, `failed` (no attempt can have reached
    /// the casino) or `unknown` (one may have). `maybe_sent` records that
    /// this attempt's outcome is unknown.
    pub async fn release_topup(
        &self,
        held: &TopUp,
        error: &str,
        end: Option<TopUpStatus>,
        maybe_sent: bool,
        now: OffsetDateTime,
    ) -> Result<FinishOutcome, StoreError> {
        let next = end.unwrap_or(TopUpStatus::Queued);
        let expression = match next {
            TopUpStatus::Queued => {
                "SET #status = :next, last_error = :error, updated_at = :now, gsi2sk = :due, \
                 maybe_sent = :maybe REMOVE lease_until"
            }
            // Out of the sweep's index, into the one reconcile lists (or,
            // given up, the one operators read: money sits in the wallet).
            TopUpStatus::Unknown | TopUpStatus::Failed => {
                "SET #status = :next, last_error = :error, updated_at = :now, gsi2pk = :held, \
                 gsi2sk = :due, maybe_sent = :maybe REMOVE lease_until"
            }
            _ => {
                "SET #status = :next, last_error = :error, updated_at = :now, \
                 maybe_sent = :maybe REMOVE lease_until, gsi2pk, gsi2sk"
            }
        };
        let mut update = self
            .lease_condition(held, now)?
            .update_expression(expression)
            .expression_attribute_values(":next", s(next.as_str()))
            .expression_attribute_values(
                ":maybe",
                AttributeValue::Bool(held.maybe_sent || maybe_sent),
            )
            .expression_attribute_values(":error", s(error.chars().take(500).collect::<String>()));
        if matches!(
            next,
            TopUpStatus::Queued | TopUpStatus::Unknown | TopUpStatus::Failed
        ) {
            update = update.expression_attribute_values(
                ":due",
                s(format!("{}#{}", time_key(now), held.payment_id)),
            );
        }
        match next {
            TopUpStatus::Unknown => {
                update = update.expression_attribute_values(":held", s(keys::UNKNOWN_TOPUPS));
            }
            TopUpStatus::Failed => {
                update = update.expression_attribute_values(":held", s(keys::GIVEN_UP_TOPUPS));
            }
            _ => {}
        }
        let mut writes = vec![Write {
            what: ItemKind::TopUp,
            item: TransactWriteItem::builder().update(update.build()?).build(),
        }];
        // Unknown or given up: the merchant is told, with the change.
        writes.extend(self.maybe_event_write(crate::events::Event::of_topup(
            held,
            next,
            held.casino_transaction_id.as_deref(),
            Some(error),
            now,
        ))?);
        self.finish_with(held, writes).await
    }

    /// A person's decision on a top-up whose outcome is unknown (or that
    /// was given up): `sent` with the casino's transaction id (done, and the
    /// wallet debited once) or not sent (queued again, same nonce). Only
    /// from `unknown` or `failed`: two people deciding at once, one wins.
    /// `note`, the decision as the payment's history shows it, is written
    /// with it.
    pub async fn mark_topup(
        &self,
        topup: &TopUp,
        sent: Option<&str>,
        by: &str,
        note: Option<&crate::payment::HistoryEntry>,
        now: OffsetDateTime,
    ) -> Result<FinishOutcome, StoreError> {
        let settled_by = by.chars().take(300).collect::<String>();
        let base = Update::builder()
            .table_name(&self.table)
            .key(schema::PK, s(keys::payment(topup.payment_id)))
            .key(schema::SK, s(keys::TOPUP_SK))
            .condition_expression("#status = :was")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":was", s(topup.status.as_str()))
            .expression_attribute_values(":now", s(rfc3339(now)?))
            .expression_attribute_values(":by", s(settled_by))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let mut writes = Vec::new();
        match sent {
            Some(txn) => {
                let update = base
                    .update_expression(
                        "SET #status = :done, casino_transaction_id = :txn, updated_at = :now, \
                         settled_by = :by REMOVE lease_until, gsi2pk, gsi2sk",
                    )
                    .expression_attribute_values(":done", s(TopUpStatus::Done.as_str()))
                    .expression_attribute_values(":txn", s(txn))
                    .build()?;
                writes.push(Write {
                    what: ItemKind::TopUp,
                    item: TransactWriteItem::builder().update(update).build(),
                });
                writes.extend(self.ledger_writes(&LedgerEntry {
                    merchant: topup.merchant_id.clone(),
                    user: topup.wallet_user_id.clone(),
                    payment_id: topup.payment_id,
                    purpose: LedgerPurpose::CasinoTransfer,
                    amount: topup.amount,
                    at: now,
                    memo: format!("casino top-up to {}", topup.username),
                })?);
                writes.extend(self.maybe_event_write(crate::events::Event::of_topup(
                    topup,
                    TopUpStatus::Done,
                    Some(txn),
                    None,
                    now,
                ))?);
            }
            None => {
                let update = base
                    .update_expression(
                        "SET #status = :queued, updated_at = :now, settled_by = :by, \
                         maybe_sent = :no, gsi2pk = :open, gsi2sk = :due REMOVE lease_until",
                    )
                    .expression_attribute_values(":queued", s(TopUpStatus::Queued.as_str()))
                    .expression_attribute_values(":no", AttributeValue::Bool(false))
                    .expression_attribute_values(":open", s(keys::OPEN_TOPUPS))
                    .expression_attribute_values(
                        ":due",
                        s(format!("{}#{}", time_key(now), topup.payment_id)),
                    )
                    .build()?;
                writes.push(Write {
                    what: ItemKind::TopUp,
                    item: TransactWriteItem::builder().update(update).build(),
                });
            }
        }
        if let Some(entry) = note {
            writes.push(self.history_note_write(topup.payment_id, entry)?);
        }
        self.finish_with(topup, writes).await
    }

    /// An update of a payment's top-up item.
    fn update_topup(
        &self,
        payment_id: PaymentId,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(schema::PK, s(keys::payment(payment_id)))
            .key(schema::SK, s(keys::TOPUP_SK))
    }

    /// Keeps the casino's transaction id of a transfer it accepted on a
    /// top-up someone else now holds, for whoever settles it; the first
    /// id kept stays.
    pub async fn note_casino_transaction(
        &self,
        payment_id: PaymentId,
        casino_transaction_id: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .update_topup(payment_id)
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(casino_transaction_id)",
            )
            .update_expression("SET casino_transaction_id = :txn")
            .expression_attribute_values(":txn", s(casino_transaction_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if super::is_condition_failure(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Top-ups whose outcome is unknown, oldest first (for reports).
    /// One page of top-ups waiting for a person in `partition`
    /// ([`keys::UNKNOWN_TOPUPS`] or [`keys::GIVEN_UP_TOPUPS`]), oldest first.
    pub async fn held_topups(
        &self,
        given_up: bool,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<PaymentId>, Option<Item>), StoreError> {
        let partition = if given_up {
            keys::GIVEN_UP_TOPUPS
        } else {
            keys::UNKNOWN_TOPUPS
        };
        let (items, next) = self.open_work(partition, None, limit, start).await?;
        let ids = items
            .iter()
            .map(super::item_payment_id)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((ids, next))
    }

    pub async fn unknown_topups(&self, limit: i32) -> Result<Vec<PaymentId>, StoreError> {
        let (items, _) = self
            .open_work(keys::UNKNOWN_TOPUPS, None, limit, None)
            .await?;
        items.iter().map(super::item_payment_id).collect()
    }

    /// Unfinished top-ups queued or last put back before `before`, oldest
    /// first: the sweep re-enqueues them.
    pub async fn topups_due(
        &self,
        before: OffsetDateTime,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<PaymentId>, Option<Item>), StoreError> {
        let (items, next) = self
            .open_work(keys::OPEN_TOPUPS, Some(before), limit, start)
            .await?;
        let ids = items
            .iter()
            .map(super::item_payment_id)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((ids, next))
    }

    /// An update of `held`'s item conditional on the caller still holding
    /// the lease: still sending, and nobody has taken a later attempt. (A
    /// lease that ran out with nobody taking over is still the caller's.)
    fn lease_condition(
        &self,
        held: &TopUp,
        now: OffsetDateTime,
    ) -> Result<aws_sdk_dynamodb::types::builders::UpdateBuilder, StoreError> {
        Ok(Update::builder()
            .table_name(&self.table)
            .key(schema::PK, s(keys::payment(held.payment_id)))
            .key(schema::SK, s(keys::TOPUP_SK))
            .condition_expression("#status = :sending AND attempts = :attempts")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(TopUpStatus::Sending.as_str()))
            .expression_attribute_values(":attempts", AttributeValue::N(held.attempts.to_string()))
            .expression_attribute_values(":now", s(rfc3339(now)?))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld))
    }

    async fn finish_with(
        &self,
        held: &TopUp,
        writes: Vec<Write>,
    ) -> Result<FinishOutcome, StoreError> {
        for attempt in 0..MAX_CONFLICT_RETRIES {
            match self.transact(writes.clone()).await? {
                Ok(()) => return Ok(FinishOutcome::Finished),
                Err(Cancelled::Condition { index: 0, item }) => {
                    let found = match item {
                        Some(item) => Some(serde_dynamo::from_item(item)?),
                        None => self.topup(held.payment_id).await?,
                    };
                    return Ok(FinishOutcome::LeaseLost(found.map(Box::new)));
                }
                Err(Cancelled::Condition { index, .. }) => {
                    return Err(StoreError::Refused(writes[index].what))
                }
                Err(Cancelled::Conflict) => conflict_backoff(attempt).await,
            }
        }
        Err(StoreError::Contention)
    }
}
