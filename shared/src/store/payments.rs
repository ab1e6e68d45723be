//! Payment items, the merchant-reference claim, and status transitions.

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use time::OffsetDateTime;

use super::{
    conflict_backoff, item_payment_id, keys, n, s, schema, time_key, Cancelled, Item, ItemKind,
    Store, StoreError, Write, MAX_CONFLICT_RETRIES,
};
use crate::ids::{MerchantId, MerchantReference, PaymentId};
use crate::money::Money;
use crate::payment::{ChangeSource, HistoryEntry, Payment, PaymentStatus, Provider};

/// How [`Store::set_refund_pending`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    Done(Payment),
    /// The payment changed since it was read: decide again.
    Stale {
        current: Payment,
    },
    /// An extra write was refused (the wallet balance is too small).
    Refused(ItemKind),
}

/// How [`Store::create_payment`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The merchant already has a payment with this reference.
    DuplicateReference {
        existing: PaymentId,
    },
    /// A payment with this id exists (a retried create).
    AlreadyExists,
}

/// Who holds a merchant reference's claim: its payment (which a create
/// still running, or one that died, has not stored) and the
/// Idempotency-Key of the create that claimed it (claims made before
/// decision 59 have none), until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceHolder {
    pub payment: PaymentId,
    pub key: Option<String>,
    pub until: Option<OffsetDateTime>,
}

impl ReferenceHolder {
    fn of(item: &Item) -> Result<ReferenceHolder, StoreError> {
        Ok(ReferenceHolder {
            payment: claim_owner(item)?,
            key: item.get(CLAIMED_BY).and_then(|v| v.as_s().ok()).cloned(),
            until: item
                .get(CLAIMED_UNTIL)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i128>().ok())
                .and_then(super::from_millis),
        })
    }
}

/// A reference claim's attributes: the claiming create's key, and its
/// deadline (ms).
const CLAIMED_BY: &str = "claimed_by";
const CLAIMED_UNTIL: &str = "claimed_until";
/// A claim whose create ended this long ago without storing its payment
/// can be taken by another create: no request of a function that ended
/// then is still in flight.
pub const REFERENCE_LAPSE: time::Duration = time::Duration::minutes(5);

/// A status change to apply to a payment.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub to: PaymentStatus,
    pub source: ChangeSource,
    pub at: OffsetDateTime,
    /// The provider's own status word, when the change came from it.
    pub provider_status: Option<String>,
    /// The new refunded total, for refunds.
    pub refunded_amount: Option<Money>,
    /// The new total of reserved refunds, for refunds.
    pub refund_pending: Option<Money>,
    /// The operator and their reason, for an operator's change.
    pub by: Option<(String, String)>,
    /// The operator's action, for an operator's change.
    pub action: Option<&'static str>,
    /// The provider's confirmed amount, recorded on the way to review (or
    /// stated by the operator who accepts a payment the provider confirmed
    /// without one).
    pub confirmed_amount: Option<Money>,
    /// For a move to `expired` the provider was not told of: when to ask
    /// it again, since money may still arrive (the late lane).
    pub recheck_at: Option<OffsetDateTime>,
}

impl StatusChange {
    /// The history entry this change appends.
    pub fn entry(&self) -> HistoryEntry {
        HistoryEntry {
            status: self.to,
            at: self.at,
            source: self.source,
            by: self.by.as_ref().map(|(who, _)| who.clone()),
            reason: self.by.as_ref().map(|(_, why)| why.clone()),
            action: self.action.map(str::to_string),
        }
    }

    pub fn new(to: PaymentStatus, source: ChangeSource, at: OffsetDateTime) -> StatusChange {
        StatusChange {
            to,
            source,
            at,
            provider_status: None,
            refunded_amount: None,
            refund_pending: None,
            by: None,
            action: None,
            confirmed_amount: None,
            recheck_at: None,
        }
    }
}

/// How [`Store::transition`] ended. Only `Applied` wrote anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    /// The change and every extra write committed together.
    Applied(Payment),
    /// The payment is already in the target state: a duplicate.
    AlreadyInState(Payment),
    /// The payment's state cannot move to the target (it moved elsewhere
    /// first, or the move is not in the table).
    Rejected { current: Payment },
    /// The caller's copy was stale: the payment changed since it was read,
    /// though the move is still allowed from where it is now. Re-read and
    /// decide again (extra writes may no longer apply).
    Stale { current: Payment },
}

impl Payment {
    fn apply(&self, change: &StatusChange) -> Payment {
        let mut next = self.clone();
        next.status = change.to;
        next.version = self.version + 1;
        next.updated_at = change.at;
        if let Some(ps) = &change.provider_status {
            next.provider_status = Some(ps.clone());
        }
        if let Some(refunded) = change.refunded_amount {
            next.refunded_amount = refunded;
        }
        if let Some(pending) = change.refund_pending {
            next.refund_pending = Some(pending);
        }
        if let Some(confirmed) = change.confirmed_amount {
            next.confirmed_amount = Some(confirmed);
        }
        if self.history.len() < crate::payment::HISTORY_INLINE {
            next.history.push(change.entry());
        } else {
            next.history_apart += 1;
        }
        next
    }
}

fn payment_item(p: &Payment) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(p)?;
    compact(&mut item);
    // Kept once: the id in the key, the provider's reference in its index
    // key, a refund total of zero not at all (`payment_from` restores them).
    item.remove("id");
    if p.refunded_amount.minor() == 0 {
        item.remove(REFUNDED);
    }
    // The page's token ends its URL: kept there only.
    if p.page_token.is_some() && page_token_of(&item).as_ref() == p.page_token.as_ref() {
        item.remove(PAGE_TOKEN);
    }
    item.insert(schema::PK.into(), s(keys::payment(p.id)));
    item.insert(schema::SK.into(), s(keys::PAYMENT_SK));
    item.extend(super::listing::index_keys(p));
    if let Some(r) = &p.provider_reference {
        item.remove(PROVIDER_REFERENCE);
        item.insert(
            schema::GSI1_PK.into(),
            s(keys::provider_ref(p.provider, r.as_str())),
        );
    }
    item.insert(schema::GSI3_PK.into(), s(keys::changed_day(p.updated_at)));
    item.insert(
        schema::GSI3_SK.into(),
        s(keys::changed_key(p.updated_at, p.id)),
    );
    if p.status == PaymentStatus::Pending {
        item.insert(schema::GSI2_PK.into(), s(keys::OPEN_PAYMENTS));
        item.insert(
            schema::GSI2_SK.into(),
            s(format!("{}#{}", time_key(p.expires_at), p.id)),
        );
    }
    Ok(item)
}

/// Leaves out of a payment item what reads back the same when missing:
/// every null, an empty customer, no app links, zero counters (every
/// write of a payment item bills it by its size: 1 KB a write unit).
fn compact(item: &mut Item) {
    fn empty(name: &str, value: &AttributeValue) -> bool {
        match value {
            AttributeValue::Null(_) => true,
            AttributeValue::M(m) => m.is_empty() && name == "customer",
            AttributeValue::L(l) => l.is_empty() && name == "links",
            AttributeValue::N(n) => n == "0" && matches!(name, "history_apart" | "sweep_misses"),
            _ => false,
        }
    }
    item.retain(|name, value| !empty(name, value));
    if let Some(AttributeValue::M(checkout)) = item.get_mut("checkout") {
        checkout.retain(|name, value| !empty(name, value));
    }
}

/// The claims of [`Store::claim_provider_check`], every slot: a payment
/// that no callback or reader asks about any more drops them.
fn claim_attributes() -> Vec<String> {
    PaymentStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .chain(["poll"])
        .map(|slot| format!("check_ms_{slot}"))
        .collect()
}

const REFUNDED: &str = "refunded_amount";
const PAGE_TOKEN: &str = "page_token";

/// The token that ends a payment item's `checkout.page_url`, if one does.
fn page_token_of(item: &Item) -> Option<crate::ids::PageToken> {
    let url = item
        .get("checkout")?
        .as_m()
        .ok()?
        .get("page_url")?
        .as_s()
        .ok()?;
    url.rsplit_once("/pay/")?.1.parse().ok()
}
const PROVIDER_REFERENCE: &str = "provider_reference";

pub(super) fn payment_from(mut item: Item) -> Result<Payment, StoreError> {
    let text = |item: &Item, name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::to_string)
    };
    if !item.contains_key("id") {
        let id = text(&item, schema::PK)
            .and_then(|pk| pk.strip_prefix("PAY#").map(str::to_string))
            .ok_or_else(|| StoreError::Corrupt("a payment item without its id".into()))?;
        item.insert("id".into(), s(id));
    }
    if !item.contains_key(PROVIDER_REFERENCE) {
        // `REF#<provider>#<reference>`: provider names hold no '#'.
        if let Some(reference) =
            text(&item, schema::GSI1_PK).and_then(|k| k.splitn(3, '#').nth(2).map(str::to_string))
        {
            item.insert(PROVIDER_REFERENCE.into(), s(reference));
        }
    }
    if !item.contains_key(PAGE_TOKEN) {
        if let Some(token) = page_token_of(&item) {
            item.insert(PAGE_TOKEN.into(), s(token.as_str()));
        }
    }
    if !item.contains_key(REFUNDED) {
        // Nothing refunded, in the payment's currency.
        let currency = item
            .get("amount")
            .and_then(|a| a.as_m().ok())
            .and_then(|m| m.get("currency"))
            .cloned()
            .ok_or_else(|| StoreError::Corrupt("a payment item without its amount".into()))?;
        item.insert(
            REFUNDED.into(),
            AttributeValue::M([("amount".into(), n(0)), ("currency".into(), currency)].into()),
        );
    }
    Ok(serde_dynamo::from_item(item)?)
}

impl Store {
    /// Stores a new payment and claims its merchant reference in the same
    /// transaction, so two payments can never share a reference.
    pub async fn create_payment(&self, payment: &Payment) -> Result<CreateOutcome, StoreError> {
        self.create_payment_with(payment, None)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`Store::create_payment`], with `keep` (the create's idempotency
    /// record completed with its answer) in the same transaction; whether
    /// `keep` committed. A `keep` refused by its own condition (the record
    /// is no longer this run's) never costs the payment: it is stored
    /// without it.
    pub async fn create_payment_with(
        &self,
        payment: &Payment,
        keep: Option<Write>,
    ) -> Result<(CreateOutcome, bool), StoreError> {
        let put_payment = Put::builder()
            .table_name(&self.table)
            .set_item(Some(payment_item(payment)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        let claim = Put::builder()
            .table_name(&self.table)
            .item(
                schema::PK,
                s(keys::merchant_ref(&payment.merchant_id, &payment.reference)),
            )
            .item(schema::SK, s(keys::MERCHANT_REF_SK))
            .item("payment_id", s(payment.id.to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()?;
        let mut writes = vec![
            Write {
                what: ItemKind::Payment,
                item: TransactWriteItem::builder().put(put_payment).build(),
            },
            Write {
                what: ItemKind::ReferenceClaim,
                item: TransactWriteItem::builder().put(claim).build(),
            },
        ];
        // A token names its payment (the page reads the payment with it);
        // only one that does not (the earlier form) needs a link item.
        if let Some(token) = payment
            .page_token
            .as_ref()
            .filter(|t| t.payment_id() != Some(payment.id))
        {
            // The payer's link, kept until a day after the payment expires.
            let purge = payment.expires_at + crate::payment::PAGE_AFTER_EXPIRY;
            let page = Put::builder()
                .table_name(&self.table)
                .item(schema::PK, s(keys::page(token)))
                .item(schema::SK, s(keys::PAGE_SK))
                .item("payment_id", s(payment.id.to_string()))
                .item(schema::TTL, n(purge.unix_timestamp()))
                .condition_expression("attribute_not_exists(pk)")
                .build()?;
            writes.push(Write {
                what: ItemKind::PayerPageLink,
                item: TransactWriteItem::builder().put(page).build(),
            });
        }
        let kept_at = keep.as_ref().map(|_| writes.len());
        writes.extend(keep);
        for attempt in 0..MAX_CONFLICT_RETRIES {
            let kept = kept_at.is_some_and(|at| at < writes.len());
            match self.transact(writes.clone()).await? {
                Ok(()) => return Ok((CreateOutcome::Created, kept)),
                Err(Cancelled::Condition { index, .. }) if Some(index) == kept_at => {
                    // Not this run's record any more: the payment still counts.
                    writes.truncate(index);
                }
                Err(Cancelled::Condition { index: 0, .. }) => {
                    return Ok((CreateOutcome::AlreadyExists, false))
                }
                // 192 random bits taken already: not a race a retry wins.
                Err(Cancelled::Condition { index: 2, .. }) => {
                    return Err(StoreError::Refused(ItemKind::PayerPageLink))
                }
                Err(Cancelled::Condition { item, .. }) => {
                    let existing = match item {
                        Some(item) => claim_owner(&item)?,
                        None => self
                            .payment_id_for_reference(&payment.merchant_id, &payment.reference)
                            .await?
                            .ok_or(StoreError::Contention)?,
                    };
                    return Ok((CreateOutcome::DuplicateReference { existing }, false));
                }
                Err(Cancelled::Conflict) => conflict_backoff(attempt).await,
            }
        }
        Err(StoreError::Contention)
    }

    /// Claims `reference` for payment `id` before its provider is called,
    /// for the create whose Idempotency-Key is `key`, until `until` (the
    /// create's deadline): `None` when claimed, else who holds it (its
    /// payment, which may not exist yet, and its key). The payment is then
    /// stored by [`Store::create_claimed_payment`]; a create that fails
    /// gives it back ([`Store::release_reference`]) (decision 59).
    pub async fn claim_reference(
        &self,
        merchant: &MerchantId,
        reference: &MerchantReference,
        id: PaymentId,
        key: &str,
        until: OffsetDateTime,
    ) -> Result<Option<ReferenceHolder>, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(schema::PK, s(keys::merchant_ref(merchant, reference)))
            .item(schema::SK, s(keys::MERCHANT_REF_SK))
            .item("payment_id", s(id.to_string()))
            .item(CLAIMED_BY, s(key))
            .item(CLAIMED_UNTIL, n(super::millis(until)))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        use aws_sdk_dynamodb::operation::put_item::PutItemError as E;
        let item = match result {
            Ok(_) => return Ok(None),
            Err(err) => match err.as_service_error() {
                Some(E::ConditionalCheckFailedException(ex)) => match ex.item() {
                    Some(item) => item.clone(),
                    None => match self
                        .get(
                            keys::merchant_ref(merchant, reference),
                            keys::MERCHANT_REF_SK,
                        )
                        .await?
                    {
                        Some(item) => item,
                        None => return Err(StoreError::Contention),
                    },
                },
                _ => return Err(err.into()),
            },
        };
        Ok(Some(ReferenceHolder::of(&item)?))
    }

    /// Moves the claim on `reference` from `holder` (a create that never
    /// stored its payment) to payment `id`: for a retry under the same key
    /// (whose key this run now owns, so the earlier run can no longer store
    /// its payment), or for any create once the holder's claim ended
    /// [`REFERENCE_LAPSE`] ago and its payment does not exist; or claims it
    /// afresh if the holder gave it back meanwhile. `false`: another create
    /// holds it now.
    pub async fn retake_reference(
        &self,
        merchant: &MerchantId,
        reference: &MerchantReference,
        holder: &ReferenceHolder,
        id: PaymentId,
        key: &str,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(schema::PK, s(keys::merchant_ref(merchant, reference)))
            .key(schema::SK, s(keys::MERCHANT_REF_SK))
            .update_expression("SET payment_id = :id, #by = :key, #until = :until")
            // Given back meanwhile (the holder failed): claimed afresh.
            .condition_expression("attribute_not_exists(pk) OR payment_id = :holder")
            .expression_attribute_names("#by", CLAIMED_BY)
            .expression_attribute_names("#until", CLAIMED_UNTIL)
            .expression_attribute_values(":id", s(id.to_string()))
            .expression_attribute_values(":key", s(key))
            .expression_attribute_values(":until", n(super::millis(until)))
            .expression_attribute_values(":holder", s(holder.payment.to_string()))
            .send()
            .await;
        super::applied(result)
    }

    /// Gives back the claim on `reference` that payment `id`'s create took
    /// (it failed); a claim another create holds now stays.
    pub async fn release_reference(
        &self,
        merchant: &MerchantId,
        reference: &MerchantReference,
        id: PaymentId,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(schema::PK, s(keys::merchant_ref(merchant, reference)))
            .key(schema::SK, s(keys::MERCHANT_REF_SK))
            .condition_expression("payment_id = :id")
            .expression_attribute_values(":id", s(id.to_string()))
            .send()
            .await;
        super::applied(result).map(|_| ())
    }

    /// Stores a payment whose reference its create has claimed
    /// ([`Store::claim_reference`]), with `keep` (its idempotency record
    /// completed with the answer) in the same transaction. `keep` is
    /// required: refused (the record is no longer this run's: the run
    /// outlived its deadline and a retry took the key, and the reference
    /// with it), nothing is stored and the answer is
    /// `Refused(IdempotencyRecord)`.
    pub async fn create_claimed_payment(
        &self,
        payment: &Payment,
        keep: Write,
    ) -> Result<CreateOutcome, StoreError> {
        let put_payment = Put::builder()
            .table_name(&self.table)
            .set_item(Some(payment_item(payment)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        let writes = vec![
            Write {
                what: ItemKind::Payment,
                item: TransactWriteItem::builder().put(put_payment).build(),
            },
            keep,
        ];
        for attempt in 0..MAX_CONFLICT_RETRIES {
            match self.transact(writes.clone()).await? {
                Ok(()) => return Ok(CreateOutcome::Created),
                Err(Cancelled::Condition { index: 0, .. }) => {
                    return Ok(CreateOutcome::AlreadyExists)
                }
                Err(Cancelled::Condition { .. }) => {
                    return Err(StoreError::Refused(ItemKind::IdempotencyRecord))
                }
                Err(Cancelled::Conflict) => conflict_backoff(attempt).await,
            }
        }
        Err(StoreError::Contention)
    }

    /// The payment a payer's page token names: one strongly consistent read
    /// of the payment its text names, or for a token of the earlier form two
    /// (its link, then the payment). Either way the payment must keep the
    /// same token (a guessed or foreign one shows nothing).
    pub async fn payment_by_page(
        &self,
        token: &crate::ids::PageToken,
    ) -> Result<Option<Payment>, StoreError> {
        let id = match token.payment_id() {
            Some(id) => id,
            None => {
                let Some(link) = self.get(keys::page(token), keys::PAGE_SK).await? else {
                    return Ok(None);
                };
                claim_owner(&link)?
            }
        };
        let payment = self.payment(id).await?;
        Ok(payment.filter(|p| p.page_token.as_ref().is_some_and(|t| t.matches(token))))
    }

    /// The payment, read with strong consistency.
    pub async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError> {
        self.get(keys::payment(id), keys::PAYMENT_SK)
            .await?
            .map(payment_from)
            .transpose()
    }

    /// One page of payments in `needs_review`, oldest first.
    pub async fn review_payments(
        &self,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<PaymentId>, Option<Item>), StoreError> {
        self.open_payments(keys::REVIEW_PAYMENTS, None, limit, start)
            .await
    }

    /// The payment ids of one page of an open-work index.
    async fn open_payments(
        &self,
        index: &str,
        before: Option<OffsetDateTime>,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<PaymentId>, Option<Item>), StoreError> {
        let (items, next) = self.open_work(index, before, limit, start).await?;
        let ids = items
            .iter()
            .map(item_payment_id)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((ids, next))
    }

    /// The payment a provider knows by `reference` (eventually consistent:
    /// a webhook that beats our own write gets "unknown" and is retried).
    pub async fn payment_by_provider_ref(
        &self,
        provider: Provider,
        reference: &str,
    ) -> Result<Option<Payment>, StoreError> {
        let out = self
            .query_index(schema::GSI1)
            .key_condition_expression("gsi1pk = :r")
            .expression_attribute_values(":r", s(keys::provider_ref(provider, reference)))
            .limit(2)
            .send()
            .await?;
        let items = out.items.unwrap_or_default();
        if items.len() > 1 {
            return Err(StoreError::Corrupt(format!(
                "provider reference {reference:?} of {provider} names more than one payment"
            )));
        }
        match items.into_iter().next() {
            // The index projects keys only: read the item itself, consistently.
            Some(item) => {
                let id = item_payment_id(&item)?;
                self.payment(id).await
            }
            None => Ok(None),
        }
    }

    /// The merchant's payment with this reference, through its claim item
    /// (strongly consistent).
    pub async fn payment_by_reference(
        &self,
        merchant: &MerchantId,
        reference: &MerchantReference,
    ) -> Result<Option<Payment>, StoreError> {
        match self.payment_id_for_reference(merchant, reference).await? {
            Some(id) => self.payment(id).await,
            None => Ok(None),
        }
    }

    /// The payment that holds a merchant reference (one read, of its claim).
    pub async fn payment_id_for_reference(
        &self,
        merchant: &MerchantId,
        reference: &MerchantReference,
    ) -> Result<Option<PaymentId>, StoreError> {
        self.get(
            keys::merchant_ref(merchant, reference),
            keys::MERCHANT_REF_SK,
        )
        .await?
        .map(|item| claim_owner(&item))
        .transpose()
    }

    /// Moves `current` (the payment as the caller read it) to `change.to`,
    /// together with `extra` writes, in one transaction conditional on the
    /// payment's status and version being what the caller read.
    ///
    /// A duplicate (already in the target state) or a move the table does
    /// not allow is answered without writing. A lost race is answered with
    /// what won it. Concurrent transactions on the same payment are retried
    /// while the payment is unchanged.
    pub async fn transition(
        &self,
        current: &Payment,
        change: StatusChange,
        extra: Vec<Write>,
    ) -> Result<TransitionOutcome, StoreError> {
        if current.status == PaymentStatus::NeedsReview && change.source != ChangeSource::Operator {
            // Out of review only by a person's decision.
            return Ok(TransitionOutcome::Rejected {
                current: current.clone(),
            });
        }
        if let Some(answer) = classify(current, current.version, change.to) {
            return Ok(answer);
        }
        let next = current.apply(&change);
        let update = self.transition_update(current, &change)?;
        let mut writes = Vec::with_capacity(extra.len() + 2);
        writes.push(Write {
            what: ItemKind::Payment,
            item: TransactWriteItem::builder().update(update).build(),
        });
        if next.history_apart > current.history_apart {
            writes.push(self.history_apart_write(current, &change.entry())?);
        }
        // The merchant is told in the same transaction: no change without
        // its event, no event without its change (decision 56).
        writes.extend(self.maybe_event_write(crate::events::Event::of_payment(&next, change.at))?);
        writes.extend(extra);

        for attempt in 0..MAX_CONFLICT_RETRIES {
            match self.transact(writes.clone()).await? {
                Ok(()) => return Ok(TransitionOutcome::Applied(next)),
                Err(Cancelled::Condition { index: 0, item }) => {
                    let found = self.refused_on(current.id, item).await?;
                    return Ok(classify(&found, current.version, change.to)
                        .unwrap_or(TransitionOutcome::Stale { current: found }));
                }
                Err(Cancelled::Condition { index, .. }) => {
                    return Err(StoreError::Refused(writes[index].what))
                }
                Err(Cancelled::Conflict) => {
                    conflict_backoff(attempt).await;
                    // Retry only if nobody changed the payment meanwhile.
                    let found = self.refused_on(current.id, None).await?;
                    if found.version != current.version || found.status != current.status {
                        return Ok(classify(&found, current.version, change.to)
                            .unwrap_or(TransitionOutcome::Stale { current: found }));
                    }
                }
            }
        }
        Err(StoreError::Contention)
    }

    /// The update that applies `change` to the stored payment, conditional on
    /// the status and version the caller read. Only the changed attributes
    /// are written, so fields kept outside the version (when the provider was
    /// last asked) survive.
    fn transition_update(
        &self,
        current: &Payment,
        change: &StatusChange,
    ) -> Result<Update, StoreError> {
        let entry = change.entry();
        let mut set = vec!["#status = :to", "#version = :next", "updated_at = :at"];
        // Reconcile's entry moves only when the change falls in another hour
        // than the payment's last one (decision 59): most payments settle
        // within the hour they were made in, and an entry left in place is
        // no index write.
        let moved = keys::changed_hour(change.at) != keys::changed_hour(current.updated_at);
        if moved {
            set.push("gsi3pk = :changed_day");
            set.push("gsi3sk = :changed_at");
        }
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(schema::PK, s(keys::payment(current.id)))
            .key(schema::SK, s(keys::PAYMENT_SK))
            .condition_expression("#status = :from AND #version = :version")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":from", s(current.status.as_str()))
            .expression_attribute_values(":version", n(current.version))
            .expression_attribute_values(":to", s(change.to.as_str()))
            .expression_attribute_values(":next", n(current.version + 1))
            .expression_attribute_values(":at", serde_dynamo::to_attribute_value(entry.at_text())?)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if moved {
            update = update
                .expression_attribute_values(":changed_day", s(keys::changed_day(change.at)))
                .expression_attribute_values(
                    ":changed_at",
                    s(keys::changed_key(change.at, current.id)),
                );
        }
        if current.history.len() < crate::payment::HISTORY_INLINE {
            set.push("history = list_append(if_not_exists(history, :empty), :entry)");
            update = update
                .expression_attribute_values(":empty", AttributeValue::L(vec![]))
                .expression_attribute_values(
                    ":entry",
                    AttributeValue::L(vec![serde_dynamo::to_attribute_value(&entry)?]),
                );
        } else {
            // The entry goes in an item of its own (`history_apart_write`),
            // in the same transaction.
            set.push("history_apart = :apart");
            update = update.expression_attribute_values(":apart", n(current.history_apart + 1));
        }
        if let Some(ps) = &change.provider_status {
            set.push("provider_status = :ps");
            update = update.expression_attribute_values(":ps", s(ps.as_str()));
        }
        if let Some(refunded) = change.refunded_amount {
            set.push("refunded_amount = :refunded");
            update = update.expression_attribute_values(
                ":refunded",
                serde_dynamo::to_attribute_value(refunded)?,
            );
        }
        if let Some(pending) = change.refund_pending {
            set.push("refund_pending = :pending");
            update = update.expression_attribute_values(
                ":pending",
                serde_dynamo::to_attribute_value(pending)?,
            );
        }
        if let Some(confirmed) = change.confirmed_amount {
            set.push("confirmed_amount = :confirmed");
            update = update.expression_attribute_values(
                ":confirmed",
                serde_dynamo::to_attribute_value(confirmed)?,
            );
        }
        if change.to == PaymentStatus::NeedsReview {
            // Waits for a person: listed in the operators' queue.
            set.push("gsi2pk = :review");
            set.push("gsi2sk = :review_at");
            update = update
                .expression_attribute_values(":review", s(keys::REVIEW_PAYMENTS))
                .expression_attribute_values(
                    ":review_at",
                    s(format!("{}#{}", time_key(change.at), current.id)),
                );
        }
        let late = change
            .recheck_at
            .filter(|_| change.to == PaymentStatus::Expired);
        if let Some(due) = late {
            // Expired here but maybe still payable there: watched.
            set.push("gsi2pk = :late");
            set.push("gsi2sk = :late_due");
            update = update
                .expression_attribute_values(":late", s(keys::LATE_PAYMENTS))
                .expression_attribute_values(
                    ":late_due",
                    s(format!("{}#{}", time_key(due), current.id)),
                );
        }
        let mut expression = format!("SET {}", set.join(", "));
        if late.is_none()
            && !matches!(
                change.to,
                PaymentStatus::Pending | PaymentStatus::NeedsReview
            )
        {
            // No longer open work for the sweep, nor for a person.
            expression.push_str(" REMOVE gsi2pk, gsi2sk");
        }
        if matches!(
            change.to,
            PaymentStatus::Completed
                | PaymentStatus::Refunded
                | PaymentStatus::PartiallyRefunded
                | PaymentStatus::NeedsReview
        ) {
            // Settled for every callback and reader (webhooks'
            // `already_settled`, a poll asks only while pending): nobody
            // claims a provider check again, so the claims go.
            let claims = claim_attributes().join(", ");
            match expression.find(" REMOVE ") {
                Some(_) => expression.push_str(&format!(", {claims}")),
                None => expression.push_str(&format!(" REMOVE {claims}")),
            }
        }
        Ok(update.update_expression(expression).build()?)
    }

    /// Sets the payment's reserved refunds to `pending`, with `extra` writes
    /// (the wallet hold), if the payment is still as the caller read it. Not
    /// a status change, but it bumps the version: two refunds decided on one
    /// reading cannot both reserve.
    ///
    /// `note`: an operator's decision to add to the payment's history with it.
    pub async fn set_refund_pending(
        &self,
        current: &Payment,
        pending: Money,
        extra: Vec<Write>,
        note: Option<&HistoryEntry>,
    ) -> Result<ReserveOutcome, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(schema::PK, s(keys::payment(current.id)))
            .key(schema::SK, s(keys::PAYMENT_SK));
        update = match note {
            Some(entry) => update
                .update_expression(
                    "SET refund_pending = :pending, #version = :next, \
                     history = list_append(if_not_exists(history, :empty), :entry)",
                )
                .expression_attribute_values(":empty", AttributeValue::L(vec![]))
                .expression_attribute_values(
                    ":entry",
                    AttributeValue::L(vec![serde_dynamo::to_attribute_value(entry)?]),
                ),
            None => update.update_expression("SET refund_pending = :pending, #version = :next"),
        };
        let update = update
            .condition_expression("#status = :status AND #version = :version")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":pending", serde_dynamo::to_attribute_value(pending)?)
            .expression_attribute_values(":status", s(current.status.as_str()))
            .expression_attribute_values(":version", n(current.version))
            .expression_attribute_values(":next", n(current.version + 1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()?;
        let mut writes = vec![Write {
            what: ItemKind::Payment,
            item: TransactWriteItem::builder().update(update).build(),
        }];
        writes.extend(extra);
        for attempt in 0..MAX_CONFLICT_RETRIES {
            match self.transact(writes.clone()).await? {
                Ok(()) => {
                    let mut next = current.clone();
                    next.refund_pending = Some(pending);
                    next.version += 1;
                    next.history.extend(note.cloned());
                    return Ok(ReserveOutcome::Done(next));
                }
                Err(Cancelled::Condition { index: 0, item }) => {
                    let found = self.refused_on(current.id, item).await?;
                    return Ok(ReserveOutcome::Stale { current: found });
                }
                Err(Cancelled::Condition { index, .. }) => {
                    return Ok(ReserveOutcome::Refused(writes[index].what))
                }
                Err(Cancelled::Conflict) => conflict_backoff(attempt).await,
            }
        }
        Err(StoreError::Contention)
    }

    /// The item that keeps `entry`, the next entry of `current`'s history
    /// past the ones its item carries; refused if it exists already.
    fn history_apart_write(
        &self,
        current: &Payment,
        entry: &HistoryEntry,
    ) -> Result<Write, StoreError> {
        let mut item: Item = match serde_dynamo::to_attribute_value(entry)? {
            AttributeValue::M(map) => map,
            _ => return Err(StoreError::Build("a history entry is not a map".into())),
        };
        item.insert(schema::PK.into(), s(keys::payment(current.id)));
        item.insert(
            schema::SK.into(),
            s(format!(
                "{}{:08}",
                keys::HISTORY_SK_PREFIX,
                current.history_apart
            )),
        );
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        Ok(Write {
            what: ItemKind::PaymentHistory,
            item: TransactWriteItem::builder().put(put).build(),
        })
    }

    /// The payment's history entries kept apart from its item, in order.
    pub async fn history_apart(&self, id: PaymentId) -> Result<Vec<HistoryEntry>, StoreError> {
        self.payment_items(id, keys::HISTORY_SK_PREFIX).await
    }

    /// The write that adds `entry` (an operator's decision that moves no
    /// status: on a top-up, say) to the payment's history, for a transaction
    /// whose own condition decides. Not a status change: the version stays.
    pub fn history_note_write(
        &self,
        payment: PaymentId,
        entry: &HistoryEntry,
    ) -> Result<Write, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key(schema::PK, s(keys::payment(payment)))
            .key(schema::SK, s(keys::PAYMENT_SK))
            .update_expression("SET history = list_append(if_not_exists(history, :empty), :entry)")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(
                ":entry",
                AttributeValue::L(vec![serde_dynamo::to_attribute_value(entry)?]),
            )
            .build()?;
        Ok(Write {
            what: ItemKind::PaymentHistory,
            item: TransactWriteItem::builder().update(update).build(),
        })
    }

    /// The payment as a write refused on its condition found it: the item
    /// DynamoDB returned with the refusal, or read again when it returned
    /// none.
    async fn refused_on(&self, id: PaymentId, item: Option<Item>) -> Result<Payment, StoreError> {
        match item {
            Some(item) => payment_from(item),
            None => self
                .payment(id)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("payment {id} vanished"))),
        }
    }

    /// An update of the payment's item, to be given its expressions.
    fn update_payment(&self, id: PaymentId) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(schema::PK, s(keys::payment(id)))
            .key(schema::SK, s(keys::PAYMENT_SK))
    }

    /// Records that we asked the provider about the payment just now. Not a
    /// status change: the version stays, and a lost race here is harmless.
    pub async fn mark_provider_checked(
        &self,
        id: PaymentId,
        at: OffsetDateTime,
        provider_status: Option<&str>,
    ) -> Result<(), StoreError> {
        let at_text = at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| StoreError::Build(e.to_string()))?;
        let mut update = self
            .update_payment(id)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":at", s(at_text));
        update = match provider_status {
            Some(ps) => update
                .update_expression("SET provider_checked_at = :at, provider_status = :ps")
                .expression_attribute_values(":ps", s(ps)),
            None => update.update_expression("SET provider_checked_at = :at"),
        };
        update.send().await?;
        Ok(())
    }

    /// Claims the right to ask the provider about the payment now, for one
    /// `slot` (a reader's poll, or callbacks claiming one status): granted
    /// to one caller per slot per `window`, across every instance (a
    /// conditional write on `check_ms_<slot>`, epoch milliseconds), so a
    /// flood of callbacks or reads costs the provider at most one call per
    /// slot and window, while a callback saying something new still gets
    /// its confirmation. Slots are a handful of fixed words.
    pub async fn claim_provider_check(
        &self,
        id: PaymentId,
        slot: &'static str,
        now: OffsetDateTime,
        window: time::Duration,
    ) -> Result<bool, StoreError> {
        let update = self
            .update_payment(id)
            .update_expression("SET #slot = :now");
        claim_check(slot, now, window, update).await
    }

    /// A reader's claim (`poll`), which also records that the provider is
    /// asked now (`provider_checked_at`): one write where a claim and a
    /// record were two. The provider's answer is written only where it
    /// changes something ([`Store::mark_provider_checked`]).
    pub async fn claim_poll(
        &self,
        id: PaymentId,
        now: OffsetDateTime,
        window: time::Duration,
    ) -> Result<bool, StoreError> {
        let at = now
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| StoreError::Build(e.to_string()))?;
        let update = self
            .update_payment(id)
            .update_expression("SET #slot = :now, provider_checked_at = :at")
            .expression_attribute_values(":at", s(at));
        claim_check("poll", now, window, update).await
    }

    /// Payments whose latest change falls after `position` and before
    /// `until` (the start of an hour: its own hour and later are left
    /// out), oldest first, at most `limit`, each with its own position. A
    /// position is a changed-payments index key (`<hour key>#<payment
    /// id>`: after that payment) or a bare time key (everything from that
    /// time); the index holds each payment once, at the hour of its latest
    /// change (decision 59). A position inside an hour (kept before the
    /// index held hours) reads that hour whole again.
    pub async fn payments_changed_after(
        &self,
        position: &str,
        until: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<(String, PaymentId)>, StoreError> {
        let mut found = Vec::new();
        let start = position_time(position)
            .ok_or_else(|| StoreError::Corrupt(format!("reconcile position {position:?}")))?;
        let hour = keys::changed_hour(start);
        // A key after `position`: '!' sorts below every character a key
        // continues with ('#' and the id's).
        let from = if hour == start {
            format!("{position}!")
        } else {
            format!("{}!", time_key(hour))
        };
        let Some(last) = until.checked_sub(time::Duration::milliseconds(1)) else {
            return Ok(found);
        };
        if last < start {
            return Ok(found);
        }
        let to = format!("{}~", time_key(last));
        let last_day = keys::changed_day(last);
        let mut day = start;
        loop {
            let partition = keys::changed_day(day);
            if partition > last_day || found.len() >= limit {
                break;
            }
            let query = self
                .query_index(schema::GSI3)
                .key_condition_expression("gsi3pk = :day AND gsi3sk BETWEEN :from AND :to")
                .expression_attribute_values(":day", s(partition.as_str()))
                .expression_attribute_values(":from", s(from.as_str()))
                .expression_attribute_values(":to", s(to.as_str()));
            self.each_page(query, |out| {
                for item in out.items.unwrap_or_default() {
                    if found.len() < limit {
                        let key = item
                            .get(schema::GSI3_SK)
                            .and_then(|v| v.as_s().ok())
                            .cloned()
                            .ok_or_else(|| {
                                StoreError::Corrupt("index item without gsi3sk".into())
                            })?;
                        found.push((key, super::item_payment_id(&item)?));
                    }
                }
                Ok(found.len() < limit)
            })
            .await?;
            day += time::Duration::days(1);
        }
        Ok(found)
    }

    /// Pending payments due for a check before `before` (their expiry, or
    /// the later time a failed check pushed them to), oldest first: one
    /// page of at most `limit` after `start`, and where the next starts.
    pub async fn pending_payments_due(
        &self,
        before: OffsetDateTime,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<PaymentId>, Option<Item>), StoreError> {
        self.open_payments(keys::OPEN_PAYMENTS, Some(before), limit, start)
            .await
    }

    /// Stale payments (see [`keys::STALE_PAYMENTS`]) due for a check before
    /// `before` (`None`: all of them, for people), oldest first.
    pub async fn stale_payments(
        &self,
        before: Option<OffsetDateTime>,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<PaymentId>, Option<Item>), StoreError> {
        self.open_payments(keys::STALE_PAYMENTS, before, limit, start)
            .await
    }

    /// A pending payment whose provider keeps refusing to describe it,
    /// a day past its expiry: moved to the stale partition (listed for
    /// people, still swept), its next check at `due`, with the refusal.
    /// A payment that moved on meanwhile is left alone.
    pub async fn mark_payment_stale(
        &self,
        id: PaymentId,
        due: OffsetDateTime,
        error: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let result = self
            .update_payment(id)
            .update_expression(
                "SET gsi2pk = :stale, gsi2sk = :due, last_check_error = :error, \
                 stale_since = if_not_exists(stale_since, :now) ADD sweep_misses :one",
            )
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(PaymentStatus::Pending.as_str()))
            .expression_attribute_values(":stale", s(keys::STALE_PAYMENTS))
            .expression_attribute_values(":due", s(format!("{}#{id}", time_key(due))))
            .expression_attribute_values(":error", s(error.chars().take(500).collect::<String>()))
            .expression_attribute_values(":now", s(super::rfc3339_text(now)?))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        super::applied(result).map(|_| ())
    }

    /// Expired payments in the late lane whose next check is before
    /// `before`, oldest first, one page after `start`.
    pub async fn late_payments_due(
        &self,
        before: OffsetDateTime,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<PaymentId>, Option<Item>), StoreError> {
        self.open_payments(keys::LATE_PAYMENTS, Some(before), limit, start)
            .await
    }

    /// The next late check of an expired payment at `due`, or none: it
    /// leaves the lane (the provider can no longer take money for it). A
    /// payment that moved on meanwhile is left alone.
    pub async fn recheck_late_payment(
        &self,
        id: PaymentId,
        due: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        let update = self
            .update_payment(id)
            .condition_expression("#status = :expired AND gsi2pk = :late")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":expired", s(PaymentStatus::Expired.as_str()))
            .expression_attribute_values(":late", s(keys::LATE_PAYMENTS));
        let update = match due {
            Some(due) => update
                .update_expression("SET gsi2sk = :due")
                .expression_attribute_values(":due", s(format!("{}#{id}", time_key(due)))),
            None => update.update_expression("REMOVE gsi2pk, gsi2sk"),
        };
        super::applied(update.send().await).map(|_| ())
    }

    /// Sets an open pending payment's next sweep check to `due`, counting
    /// no miss: sooner when a callback about it was answered without being
    /// settled (decision 55), back to its expiry when such an early check
    /// found it still unpaid. A payment that moved on meanwhile, or one
    /// listed as stale, is left alone.
    pub async fn recheck_payment_at(
        &self,
        id: PaymentId,
        due: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let result = self
            .update_payment(id)
            .update_expression("SET gsi2sk = :due")
            .condition_expression("#status = :pending AND gsi2pk = :open")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(PaymentStatus::Pending.as_str()))
            .expression_attribute_values(":open", s(keys::OPEN_PAYMENTS))
            .expression_attribute_values(":due", s(format!("{}#{id}", time_key(due))))
            .send()
            .await;
        super::applied(result).map(|_| ())
    }

    /// Pushes a pending payment's next sweep check to `due` and counts the
    /// miss, so a payment whose provider does not answer waits its turn
    /// behind the others. Not a status change; a payment that moved on
    /// meanwhile is left alone.
    pub async fn defer_payment_check(
        &self,
        id: PaymentId,
        due: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let result = self
            .update_payment(id)
            .update_expression("SET gsi2sk = :due ADD sweep_misses :one")
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(PaymentStatus::Pending.as_str()))
            .expression_attribute_values(":due", s(format!("{}#{id}", time_key(due))))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        // A payment that moved on meanwhile is no longer open work.
        super::applied(result).map(|_| ())
    }
}

/// The answer to a transition that needs no write, judged from `found`:
/// `None` means the write should go ahead (or, after a failed condition,
/// that the payment is stale but still movable).
/// `update` (which sets `#slot` to `:now`) made the claim of `slot`: granted
/// if the slot is free or older than `window`.
async fn claim_check(
    slot: &'static str,
    now: OffsetDateTime,
    window: time::Duration,
    update: UpdateItemFluentBuilder,
) -> Result<bool, StoreError> {
    let result = update
        .condition_expression(
            "attribute_exists(pk) AND (attribute_not_exists(#slot) OR #slot <= :cutoff)",
        )
        .expression_attribute_names("#slot", format!("check_ms_{slot}"))
        .expression_attribute_values(":now", n(super::millis(now)))
        .expression_attribute_values(":cutoff", n(super::millis(now - window)))
        .send()
        .await;
    super::applied(result)
}

fn classify(found: &Payment, read_version: u64, to: PaymentStatus) -> Option<TransitionOutcome> {
    if found.status == to && !to.can_move_to(to) {
        return Some(TransitionOutcome::AlreadyInState(found.clone()));
    }
    if !found.status.can_move_to(to) {
        return Some(TransitionOutcome::Rejected {
            current: found.clone(),
        });
    }
    if found.version != read_version {
        return Some(TransitionOutcome::Stale {
            current: found.clone(),
        });
    }
    None
}

fn claim_owner(item: &Item) -> Result<PaymentId, StoreError> {
    item.get("payment_id")
        .and_then(|v| v.as_s().ok())
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| StoreError::Corrupt("a claim or link without a payment id".into()))
}

/// The time a changed-payments position starts with (its time key).
pub fn position_time(position: &str) -> Option<OffsetDateTime> {
    let millis: i128 = position.split('#').next()?.parse().ok()?;
    super::from_millis(millis)
}
