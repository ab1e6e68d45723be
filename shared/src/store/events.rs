//! Events to the merchant, their deliveries, and the merchant's webhook
//! endpoints (docs/storage.md; decision 56).
//!
//! - An event (`EVENT#<merchant>#<event>` / `EVENT`) is put in the
//!   transaction of the change it reports ([`Store::event_write`]), marked
//!   open work (`OPEN#EVENT`) until it is fanned out.
//! - Fanning out puts one delivery per subscribed endpoint (`DLV#<endpoint>`,
//!   under the event's key) and clears the mark, in one transaction.
//! - A delivery is pending (`OPEN#DELIVERY` by its next attempt), delivered,
//!   or failed (`FAILED#DELIVERY`, for people). An attempt is claimed with a
//!   short lease, so two workers never send it at once, and recorded with
//!   its outcome (the last [`ATTEMPTS_KEPT`] attempts kept).
//! - An endpoint (`MERCHANT#<merchant>` / `ENDPOINT#<endpoint>`) is counted
//!   in its merchant's `ENDPOINTS` item, which refuses a 17th.
//!
//! Every key of a merchant's event, delivery or endpoint holds the merchant:
//! another merchant's id names nothing.

use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    applied, millis, n, s, schema, time_key, Cancelled, Item, ItemKind, Store, StoreError, Write,
};
use crate::events::{Event, EventType, Subscription};
use crate::ids::{EndpointId, EventId, MerchantId, PaymentId};

/// How long events, their deliveries and attempts are kept (API.md's log).
pub const EVENTS_KEPT: time::Duration = time::Duration::days(30);
/// The attempts a delivery keeps in its log: the latest ones.
pub const ATTEMPTS_KEPT: usize = 20;
/// At most this many endpoints per merchant (API.md).
pub const MAX_ENDPOINTS: u32 = 16;

const EVENT_SK: &str = "EVENT";
/// Index items read per query of a filtered log page, and at most this
/// many queries per page.
const FILTERED_PAGE: i32 = 200;
const FILTERED_READS: usize = 10;
const DELIVERY_SK_PREFIX: &str = "DLV#";
const ENDPOINT_SK_PREFIX: &str = "ENDPOINT#";
const ENDPOINT_COUNT_SK: &str = "ENDPOINTS";
pub const OPEN_EVENTS: &str = "OPEN#EVENT";
pub const OPEN_DELIVERIES: &str = "OPEN#DELIVERY";
pub const FAILED_DELIVERIES: &str = "FAILED#DELIVERY";

fn event_pk(merchant: &MerchantId, id: EventId) -> String {
    format!("EVENT#{merchant}#{id}")
}

fn merchant_pk(merchant: &MerchantId) -> String {
    format!("MERCHANT#{merchant}")
}

fn events_partition(merchant: &MerchantId) -> String {
    format!("EVENTS#{merchant}")
}

fn purge_at(created: OffsetDateTime) -> AttributeValue {
    n((created + EVENTS_KEPT).unix_timestamp())
}

/// An event as stored: what [`Event`] holds, and whether it still waits to
/// be fanned out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Read from the item's key (`EVENT#<merchant>#<id>`), not stored
    /// again.
    #[serde(skip_serializing)]
    pub id: EventId,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Read from the item's key, not stored again.
    #[serde(skip_serializing)]
    pub merchant: MerchantId,
    pub payment_id: PaymentId,
    /// Epoch milliseconds; read from the log's sort key
    /// (`<created ms>#<id>`), not stored again.
    #[serde(skip_serializing)]
    pub created_ms: i64,
    /// The JSON every delivery sends. Stored deflated in `body_z`
    /// ([`BODY_Z`]), so that an event's item stays under the 1 KB of one
    /// write unit (decision 56).
    #[serde(skip)]
    pub body: String,
    #[serde(default, skip_serializing)]
    pub open: bool,
}

/// The attribute holding an event's body, deflated (RFC 1951, raw).
const BODY_Z: &str = "body_z";
/// `body` deflated as the item keeps it.
fn deflated(body: &str) -> AttributeValue {
    super::deflated(body.as_bytes())
}

/// The body an event's item keeps: `body_z` inflated.
fn inflated(item: &Item) -> Result<String, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("an event's body: {why}"));
    let bytes = super::inflated(item.get(BODY_Z).ok_or_else(|| corrupt("no body_z"))?)
        .ok_or_else(|| corrupt("not deflated, or over the limit"))?;
    String::from_utf8(bytes).map_err(|_| corrupt("not UTF-8"))
}

impl StoredEvent {
    pub fn created_at(&self) -> OffsetDateTime {
        super::from_millis(i128::from(self.created_ms)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

/// One attempt to deliver, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Epoch milliseconds.
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The start of the answer's body, at most 1 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// An event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub event_id: EventId,
    pub merchant: MerchantId,
    pub endpoint_id: EndpointId,
    pub status: DeliveryStatus,
    /// Attempts made on the schedule (a resend does not count).
    pub attempts: u32,
    /// Every attempt made, resends included.
    #[serde(default)]
    pub sent: u32,
    /// When the next attempt is due (epoch ms), while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_ms: Option<i64>,
    /// Whether the next attempt is one the merchant or an operator asked
    /// for (it does not move the schedule).
    #[serde(default)]
    pub resend: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<i64>,
    #[serde(default)]
    pub log: Vec<Attempt>,
    /// Kept on its event's item (taken at its first attempt), not an item
    /// of its own.
    #[serde(skip)]
    pub on_event: bool,
}

/// The attribute of an event's item that keeps its deliveries taken at
/// their first attempt: a map of endpoint id to that attempt (decision
/// 59). Such a delivery's other facts are the same for all: delivered,
/// one attempt, one send.
const DELIVERED: &str = "delivered";

/// The deliveries an event's item keeps (its [`DELIVERED`] map).
fn kept_deliveries(
    merchant: &MerchantId,
    event: EventId,
    kept: AttributeValue,
) -> Result<Vec<Delivery>, StoreError> {
    let kept: std::collections::BTreeMap<EndpointId, Attempt> =
        serde_dynamo::from_attribute_value(kept)?;
    Ok(kept
        .into_iter()
        .map(|(endpoint_id, attempt)| Delivery {
            event_id: event,
            merchant: merchant.clone(),
            endpoint_id,
            status: DeliveryStatus::Delivered,
            attempts: 1,
            sent: 1,
            next_ms: None,
            resend: false,
            lease_ms: None,
            log: vec![attempt],
            on_event: true,
        })
        .collect())
}

impl Delivery {
    pub fn last(&self) -> Option<&Attempt> {
        self.log.last()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    Enabled,
    Disabled,
}

/// A merchant's webhook endpoint. Its secret is not here: it is derived
/// from paygate's signing key and `generation` (decision 56).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    pub merchant: MerchantId,
    pub url: String,
    /// What it takes; none is everything.
    #[serde(default)]
    pub events: Vec<Subscription>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub status: EndpointStatus,
    /// Why it was disabled, where paygate did it (a 410 Gone answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The current secret's generation.
    pub generation: u32,
    /// The secret before the last rotation, still signing until
    /// `previous_until_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_generation: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_until_ms: Option<i64>,
}

impl Endpoint {
    /// The generations whose secrets sign a delivery at `now`: the current
    /// one, and the previous one for a day after a rotation.
    pub fn signing_generations(&self, now: OffsetDateTime) -> Vec<u32> {
        let mut all = vec![self.generation];
        if let (Some(g), Some(until)) = (self.previous_generation, self.previous_until_ms) {
            if i128::from(until) > millis(now) {
                all.push(g);
            }
        }
        all
    }
}

/// A change to an endpoint (PATCH): only what is given.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<Subscription>>,
    pub description: Option<Option<String>>,
    pub status: Option<EndpointStatus>,
}

/// How a claim on a delivery's next attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours until the lease runs out: send it.
    Claimed(Delivery),
    /// Not due yet: due at this time (epoch ms).
    NotDue(i64),
    /// Another worker holds it, or it is delivered or failed, or gone.
    Elsewhere,
}

/// What an attempt found, for [`Store::record_attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd {
    Delivered,
    /// Try again at this time (epoch ms).
    Retry(i64),
    /// No attempts left, or the endpoint is gone or disabled.
    Failed,
}

impl Store {
    /// The write that records `event`, for the transaction of the change it
    /// reports; refused if the event exists (it never does: ids are new).
    pub fn event_write(&self, event: &Event) -> Result<Write, StoreError> {
        let created_ms = millis(event.created_at) as i64;
        let stored = StoredEvent {
            id: event.id,
            kind: event.kind,
            merchant: event.merchant.clone(),
            payment_id: event.payment_id,
            created_ms,
            body: String::new(), // kept deflated in `body_z`, below
            open: true,
        };
        let mut item: Item = serde_dynamo::to_item(&stored)?;
        let position = format!("{}#{}", time_key(event.created_at), event.id);
        item.extend([
            (schema::PK.into(), s(event_pk(&event.merchant, event.id))),
            (schema::SK.into(), s(EVENT_SK)),
            (schema::GSI2_PK.into(), s(OPEN_EVENTS)),
            (schema::GSI2_SK.into(), s(position.clone())),
            (schema::GSI4_PK.into(), s(events_partition(&event.merchant))),
            (schema::GSI4_SK.into(), s(position)),
            (schema::TTL.into(), purge_at(event.created_at)),
            (BODY_Z.into(), deflated(&event.body)),
        ]);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        Ok(Write {
            what: ItemKind::Event,
            item: TransactWriteItem::builder().put(put).build(),
        })
    }

    /// [`Store::event_write`] of an event still to be made (`None`: the
    /// change makes none).
    pub fn maybe_event_write(
        &self,
        event: Option<Result<Event, serde_json::Error>>,
    ) -> Result<Option<Write>, StoreError> {
        event
            .map(|e| {
                let e = e.map_err(|e| StoreError::Build(format!("the event: {e}")))?;
                self.event_write(&e)
            })
            .transpose()
    }

    /// The merchant's event `id`, if it is theirs.
    pub async fn event(
        &self,
        merchant: &MerchantId,
        id: EventId,
    ) -> Result<Option<StoredEvent>, StoreError> {
        self.get(event_pk(merchant, id), EVENT_SK)
            .await?
            .map(stored_event)
            .transpose()
    }

    /// The event with this key (`EVENT#<merchant>#<event>`, as the table's
    /// stream names it).
    pub async fn event_by_key(&self, pk: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.get(pk.to_string(), EVENT_SK)
            .await?
            .map(stored_event)
            .transpose()
    }

    /// The merchant's event `id` and its deliveries, if it is theirs.
    pub async fn event_with_deliveries(
        &self,
        merchant: &MerchantId,
        id: EventId,
    ) -> Result<Option<(StoredEvent, Vec<Delivery>)>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(event_pk(merchant, id)))
            .consistent_read(true);
        let mut event = None;
        let mut kept: Vec<Delivery> = Vec::new();
        let mut deliveries: Vec<Delivery> = Vec::new();
        self.each_page(query, |out| {
            for mut item in out.items.unwrap_or_default() {
                let sk = item.get(schema::SK).and_then(|v| v.as_s().ok()).cloned();
                match sk.as_deref() {
                    Some(EVENT_SK) => {
                        if let Some(map) = item.remove(DELIVERED) {
                            kept = kept_deliveries(merchant, id, map)?;
                        }
                        event = Some(stored_event(item)?)
                    }
                    Some(k) if k.starts_with(DELIVERY_SK_PREFIX) => {
                        deliveries.push(serde_dynamo::from_item(item)?)
                    }
                    _ => {}
                }
            }
            Ok(true)
        })
        .await?;
        // A delivery kept on the event and sent again since has an item of
        // its own, which says more.
        kept.retain(|k| !deliveries.iter().any(|d| d.endpoint_id == k.endpoint_id));
        deliveries.extend(kept);
        deliveries.sort_by_key(|d| d.endpoint_id);
        Ok(event.map(|e| (e, deliveries)))
    }

    /// Hands `event` out: puts its `deliveries` (one per endpoint
    /// subscribed to it, each as its first attempt left it: delivered,
    /// failed, or pending with its next attempt due) and clears the
    /// event's open mark, in one transaction. A pending delivery is due
    /// work, a failed one is in the operators' queue, a delivered one in
    /// neither. `false`: it was handed out before (nothing written).
    pub async fn fan_out(
        &self,
        event: &StoredEvent,
        deliveries: &[Delivery],
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let pk = event_pk(&event.merchant, event.id);
        // Deliveries taken at once are kept on the event's item: they are
        // never due work, so they need no item and no index entry of their
        // own (decision 59); the rest are items.
        let (taken, apart): (Vec<&Delivery>, Vec<&Delivery>) = deliveries
            .iter()
            .partition(|d| d.status == DeliveryStatus::Delivered);
        let mut values: Item = [(":open".to_string(), s(OPEN_EVENTS))].into();
        let expression = if taken.is_empty() {
            "REMOVE gsi2pk, gsi2sk"
        } else {
            let kept: std::collections::BTreeMap<EndpointId, &Attempt> = taken
                .iter()
                .filter_map(|d| Some((d.endpoint_id, d.log.last()?)))
                .collect();
            values.insert(
                ":delivered".into(),
                serde_dynamo::to_attribute_value(&kept)?,
            );
            "SET delivered = :delivered REMOVE gsi2pk, gsi2sk"
        };
        if apart.is_empty() {
            // Nothing else to write: one conditional update, not a
            // transaction.
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(schema::PK, s(pk))
                .key(schema::SK, s(EVENT_SK))
                .update_expression(expression)
                .condition_expression("gsi2pk = :open")
                .set_expression_attribute_values(Some(values))
                .send()
                .await;
            return applied(result);
        }
        let update = Update::builder()
            .table_name(&self.table)
            .key(schema::PK, s(pk.clone()))
            .key(schema::SK, s(EVENT_SK))
            .update_expression(expression)
            .condition_expression("gsi2pk = :open")
            .set_expression_attribute_values(Some(values))
            .build()?;
        let mut writes = vec![Write {
            what: ItemKind::Event,
            item: TransactWriteItem::builder().update(update).build(),
        }];
        for delivery in apart {
            let mut item: Item = serde_dynamo::to_item(delivery)?;
            item.extend([
                (schema::PK.into(), s(pk.clone())),
                (
                    schema::SK.into(),
                    s(format!("{DELIVERY_SK_PREFIX}{}", delivery.endpoint_id)),
                ),
                (schema::TTL.into(), purge_at(event.created_at())),
            ]);
            let listed = match delivery.status {
                DeliveryStatus::Pending => {
                    let due = delivery
                        .next_ms
                        .and_then(|ms| super::from_millis(i128::from(ms)))
                        .unwrap_or(now);
                    Some((OPEN_DELIVERIES, due_key(due, delivery)))
                }
                DeliveryStatus::Failed => Some((FAILED_DELIVERIES, due_key(now, delivery))),
                DeliveryStatus::Delivered => None,
            };
            if let Some((list, key)) = listed {
                item.insert(schema::GSI2_PK.into(), s(list));
                item.insert(schema::GSI2_SK.into(), s(key));
            }
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()?;
            writes.push(Write {
                what: ItemKind::Delivery,
                item: TransactWriteItem::builder().put(put).build(),
            });
        }
        Ok(self.transact_settled(writes).await?.is_ok())
    }

    /// Claims the next attempt of a delivery until `lease_until`: granted if
    /// it is pending, due by `now`, and nobody holds it.
    pub async fn claim_delivery(
        &self,
        merchant: &MerchantId,
        event: EventId,
        endpoint: EndpointId,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<Claim, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(schema::PK, s(event_pk(merchant, event)))
            .key(schema::SK, s(format!("{DELIVERY_SK_PREFIX}{endpoint}")))
            .update_expression("SET lease_ms = :lease")
            .condition_expression(
                "#status = :pending AND next_ms <= :now \
                 AND (attribute_not_exists(lease_ms) OR lease_ms < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":now", n(millis(now)))
            .expression_attribute_values(":lease", n(millis(lease_until)))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match result {
            Ok(out) => Ok(Claim::Claimed(serde_dynamo::from_item(
                out.attributes.unwrap_or_default(),
            )?)),
            Err(e) if super::is_condition_failure(&e) => {
                let found = e
                    .as_service_error()
                    .and_then(|e| match e {
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => c.item.clone(),
                        _ => None,
                    })
                    .map(serde_dynamo::from_item::<_, Delivery>)
                    .transpose()?;
                Ok(match found {
                    Some(d)
                        if d.status == DeliveryStatus::Pending
                            && d.next_ms.is_some_and(|due| i128::from(due) > millis(now)) =>
                    {
                        Claim::NotDue(d.next_ms.unwrap_or_default())
                    }
                    _ => Claim::Elsewhere,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records the claimed attempt of `claimed` and what follows it, if the
    /// claim is still the caller's. `false`: the lease was lost (the
    /// attempt is not recorded; the next claim sends again, as it must,
    /// since nobody knows whether the merchant got this one).
    pub async fn record_attempt(
        &self,
        claimed: &Delivery,
        attempt: Attempt,
        scheduled: bool,
        end: &AttemptEnd,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut log = claimed.log.clone();
        log.push(attempt);
        if log.len() > ATTEMPTS_KEPT {
            log.drain(..log.len() - ATTEMPTS_KEPT);
        }
        let attempts = claimed.attempts + u32::from(scheduled);
        let mut next = Delivery {
            attempts,
            sent: claimed.sent + 1,
            resend: false,
            lease_ms: None,
            log,
            ..claimed.clone()
        };
        let mut set = vec![
            "#log = :log",
            "attempts = :attempts",
            "sent = :sent",
            "resend = :false",
            "#status = :status",
        ];
        let mut remove = vec!["lease_ms"];
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(schema::PK, s(event_pk(&claimed.merchant, claimed.event_id)))
            .key(
                schema::SK,
                s(format!("{DELIVERY_SK_PREFIX}{}", claimed.endpoint_id)),
            )
            .condition_expression("lease_ms = :mine AND sent = :sent_before")
            .expression_attribute_names("#log", "log")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":mine", n(claimed.lease_ms.unwrap_or_default()))
            .expression_attribute_values(":sent_before", n(claimed.sent))
            .expression_attribute_values(":attempts", n(attempts))
            .expression_attribute_values(":sent", n(claimed.sent + 1))
            .expression_attribute_values(":false", AttributeValue::Bool(false));
        match end {
            AttemptEnd::Delivered => {
                next.status = DeliveryStatus::Delivered;
                next.next_ms = None;
                remove.extend(["next_ms", "gsi2pk", "gsi2sk"]);
            }
            AttemptEnd::Retry(due) => {
                next.status = DeliveryStatus::Pending;
                next.next_ms = Some(*due);
                set.extend(["next_ms = :next", "gsi2pk = :open", "gsi2sk = :due"]);
                let due_at = super::from_millis(i128::from(*due)).unwrap_or(now);
                update = update
                    .expression_attribute_values(":next", n(*due))
                    .expression_attribute_values(":open", s(OPEN_DELIVERIES))
                    .expression_attribute_values(":due", s(due_key(due_at, &next)));
            }
            AttemptEnd::Failed => {
                next.status = DeliveryStatus::Failed;
                next.next_ms = None;
                set.extend(["gsi2pk = :failed", "gsi2sk = :failed_at"]);
                remove.push("next_ms");
                update = update
                    .expression_attribute_values(":failed", s(FAILED_DELIVERIES))
                    .expression_attribute_values(":failed_at", s(due_key(now, &next)));
            }
        }
        let status = match next.status {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        };
        let expression = format!("SET {} REMOVE {}", set.join(", "), remove.join(", "));
        let result = update
            .update_expression(expression)
            .expression_attribute_values(":log", serde_dynamo::to_attribute_value(&next.log)?)
            .expression_attribute_values(":status", s(status))
            .send()
            .await;
        applied(result)
    }

    /// One more attempt of a delivery, now, outside its schedule (a
    /// merchant's or an operator's resend). `false`: no such delivery.
    pub async fn resend_delivery(
        &self,
        delivery: &Delivery,
        created: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (merchant, event, endpoint) =
            (&delivery.merchant, delivery.event_id, delivery.endpoint_id);
        let key = format!("{}#{event}#{endpoint}", time_key(now));
        if delivery.on_event {
            // Kept on its event until now: it becomes an item of its own,
            // due now, which readers take over the event's copy.
            let mut item: Item = serde_dynamo::to_item(&Delivery {
                status: DeliveryStatus::Pending,
                next_ms: Some(millis(now) as i64),
                resend: true,
                lease_ms: None,
                ..delivery.clone()
            })?;
            item.extend([
                (schema::PK.into(), s(event_pk(merchant, event))),
                (
                    schema::SK.into(),
                    s(format!("{DELIVERY_SK_PREFIX}{endpoint}")),
                ),
                (schema::TTL.into(), purge_at(created)),
                (schema::GSI2_PK.into(), s(OPEN_DELIVERIES)),
                (schema::GSI2_SK.into(), s(key.clone())),
            ]);
            if self.put_new(item).await? {
                return Ok(true);
            }
            // Made an item by a resend just before: resend that.
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(schema::PK, s(event_pk(merchant, event)))
            .key(schema::SK, s(format!("{DELIVERY_SK_PREFIX}{endpoint}")))
            .update_expression(
                "SET #status = :pending, next_ms = :now, resend = :true, gsi2pk = :open, gsi2sk = :due",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":now", n(millis(now)))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":open", s(OPEN_DELIVERIES))
            .expression_attribute_values(":due", s(key))
            .send()
            .await;
        applied(result)
    }

    /// Deliveries due before `before` (lost retries), oldest first, at most
    /// `limit`: (merchant, event, endpoint).
    pub async fn deliveries_due(
        &self,
        before: OffsetDateTime,
        limit: i32,
    ) -> Result<Vec<(MerchantId, EventId, EndpointId)>, StoreError> {
        let (items, _) = self
            .open_work(OPEN_DELIVERIES, Some(before), limit, None)
            .await?;
        items.iter().map(delivery_keys).collect()
    }

    /// Events created before `before` that were never fanned out (a stream
    /// record lost or given up), oldest first, at most `limit`: their keys.
    pub async fn events_open(
        &self,
        before: OffsetDateTime,
        limit: i32,
    ) -> Result<Vec<String>, StoreError> {
        let (items, _) = self
            .open_work(OPEN_EVENTS, Some(before), limit, None)
            .await?;
        items
            .iter()
            .map(|i| {
                i.get(schema::PK)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt("open event without pk".into()))
            })
            .collect()
    }

    /// Failed deliveries, oldest first, a page of at most `limit` from
    /// `start`, across merchants (the operators' queue); and where the next
    /// page starts.
    #[allow(clippy::type_complexity)]
    pub async fn failed_deliveries(
        &self,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<(MerchantId, EventId, EndpointId)>, Option<Item>), StoreError> {
        let (items, next) = self
            .open_work(FAILED_DELIVERIES, None, limit, start)
            .await?;
        Ok((
            items.iter().map(delivery_keys).collect::<Result<_, _>>()?,
            next,
        ))
    }

    /// One page of the merchant's events, newest first: at most `limit`
    /// after `after` (a position from a previous page), those of `kind` and
    /// `payment` where given; and the position the next page starts after.
    pub async fn events_of(
        &self,
        merchant: &MerchantId,
        kind: Option<EventType>,
        payment: Option<PaymentId>,
        limit: i32,
        after: Option<&str>,
    ) -> Result<(Vec<(StoredEvent, Vec<Delivery>)>, Option<String>), StoreError> {
        let partition = events_partition(merchant);
        let filtered = kind.is_some() || payment.is_some();
        let mut query = self
            .query_index(schema::GSI4)
            .key_condition_expression("gsi4pk = :m")
            .expression_attribute_values(":m", s(partition.clone()))
            .scan_index_forward(false)
            // A filter is applied after the page is read: read wider pages.
            .limit(if filtered { FILTERED_PAGE } else { limit });
        let mut filters = Vec::new();
        if let Some(kind) = kind {
            filters.push("#type = :type");
            query = query
                .expression_attribute_names("#type", "type")
                .expression_attribute_values(":type", s(kind.as_str()));
        }
        if let Some(payment) = payment {
            filters.push("payment_id = :payment");
            query = query.expression_attribute_values(":payment", s(payment.to_string()));
        }
        if !filters.is_empty() {
            query = query.filter_expression(filters.join(" AND "));
        }
        let start_at = |position: &str| -> Result<Item, StoreError> {
            let id: EventId = position
                .rsplit('#')
                .next()
                .unwrap_or_default()
                .parse()
                .map_err(|_| StoreError::Corrupt("cursor position".into()))?;
            Ok(Item::from([
                (schema::PK.into(), s(event_pk(merchant, id))),
                (schema::SK.into(), s(EVENT_SK)),
                (schema::GSI4_PK.into(), s(partition.clone())),
                (schema::GSI4_SK.into(), s(position)),
            ]))
        };
        let mut start = after.map(start_at).transpose()?;
        let wanted = usize::try_from(limit).unwrap_or(0);
        // (position, event id) of each match, newest first.
        let mut found: Vec<(String, EventId)> = Vec::new();
        let mut next = None;
        // Page on until the page is full, the index ends, or a bounded
        // number of reads (a sparse filter answers a short page and a cursor).
        for _ in 0..FILTERED_READS {
            let out = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await?;
            for item in out.items.unwrap_or_default() {
                let position = item
                    .get(schema::GSI4_SK)
                    .and_then(|v| v.as_s().ok())
                    .cloned();
                let id = item
                    .get(schema::PK)
                    .and_then(|v| v.as_s().ok())
                    .and_then(|pk| pk.rsplit('#').next())
                    .and_then(|id| id.parse::<EventId>().ok());
                if let (Some(position), Some(id)) = (position, id) {
                    found.push((position, id));
                }
            }
            next = out
                .last_evaluated_key
                .and_then(|k| k.get(schema::GSI4_SK)?.as_s().ok().cloned());
            if found.len() >= wanted || next.is_none() {
                break;
            }
            start = next.as_deref().map(start_at).transpose()?;
        }
        if found.len() > wanted {
            found.truncate(wanted);
            next = found.last().map(|(position, _)| position.clone());
        }
        let mut events = Vec::new();
        for (_, id) in found {
            if let Some(event) = self.event_with_deliveries(merchant, id).await? {
                events.push(event);
            }
        }
        Ok((events, next))
    }

    // ---- endpoints ----

    /// Registers `endpoint`, unless its merchant has [`MAX_ENDPOINTS`]
    /// (`false`).
    pub async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<bool, StoreError> {
        let mut item: Item = serde_dynamo::to_item(endpoint)?;
        item.extend([
            (schema::PK.into(), s(merchant_pk(&endpoint.merchant))),
            (
                schema::SK.into(),
                s(format!("{ENDPOINT_SK_PREFIX}{}", endpoint.id)),
            ),
        ]);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        let count = self.endpoint_count(&endpoint.merchant, 1)?;
        let writes = vec![
            Write {
                what: ItemKind::Endpoint,
                item: TransactWriteItem::builder().put(put).build(),
            },
            count,
        ];
        match self.transact_settled(writes.clone()).await? {
            Ok(()) => Ok(true),
            // The count refused a 17th.
            Err(1) => Ok(false),
            Err(index) => Err(StoreError::Refused(writes[index].what)),
        }
    }

    /// The change to the merchant's endpoint count by `by` (1 or -1),
    /// refused past [`MAX_ENDPOINTS`].
    fn endpoint_count(&self, merchant: &MerchantId, by: i32) -> Result<Write, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(schema::PK, s(merchant_pk(merchant)))
            .key(schema::SK, s(ENDPOINT_COUNT_SK))
            .update_expression("ADD endpoints :by")
            .expression_attribute_values(":by", n(by));
        if by > 0 {
            update = update
                .condition_expression("attribute_not_exists(endpoints) OR endpoints < :max")
                .expression_attribute_values(":max", n(MAX_ENDPOINTS));
        }
        Ok(Write {
            what: ItemKind::Endpoint,
            item: TransactWriteItem::builder().update(update.build()?).build(),
        })
    }

    /// The merchant's endpoint `id`, if it is theirs.
    pub async fn endpoint(
        &self,
        merchant: &MerchantId,
        id: EndpointId,
    ) -> Result<Option<Endpoint>, StoreError> {
        self.get(merchant_pk(merchant), &format!("{ENDPOINT_SK_PREFIX}{id}"))
            .await?
            .map(|item| serde_dynamo::from_item(item).map_err(StoreError::from))
            .transpose()
    }

    /// The merchant's endpoints, oldest first.
    pub async fn endpoints_of(&self, merchant: &MerchantId) -> Result<Vec<Endpoint>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(merchant_pk(merchant)))
            .expression_attribute_values(":prefix", s(ENDPOINT_SK_PREFIX))
            .consistent_read(true);
        let mut all: Vec<Endpoint> = Vec::new();
        self.each_page(query, |out| {
            for item in out.items.unwrap_or_default() {
                all.push(serde_dynamo::from_item(item)?);
            }
            Ok(true)
        })
        .await?;
        all.sort_by_key(|e| (e.created_ms, e.id));
        Ok(all)
    }

    /// Applies `change` to the merchant's endpoint; the endpoint after it,
    /// or `None` if there is no such endpoint.
    pub async fn update_endpoint(
        &self,
        merchant: &MerchantId,
        id: EndpointId,
        change: &EndpointChange,
        now: OffsetDateTime,
    ) -> Result<Option<Endpoint>, StoreError> {
        let mut set = vec!["updated_ms = :now"];
        let mut remove = Vec::new();
        let mut update = self
            .endpoint_update(merchant, id)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", n(millis(now)))
            .return_values(ReturnValue::AllNew);
        if let Some(url) = &change.url {
            set.push("#url = :url");
            update = update
                .expression_attribute_names("#url", "url")
                .expression_attribute_values(":url", s(url.clone()));
        }
        if let Some(events) = &change.events {
            set.push("events = :events");
            update = update
                .expression_attribute_values(":events", serde_dynamo::to_attribute_value(events)?);
        }
        match &change.description {
            Some(Some(d)) => {
                set.push("description = :description");
                update = update.expression_attribute_values(":description", s(d.clone()));
            }
            Some(None) => remove.push("description"),
            None => {}
        }
        if let Some(status) = change.status {
            set.push("#status = :status");
            remove.push("disabled_reason");
            update = update
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", serde_dynamo::to_attribute_value(status)?);
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        updated_endpoint(update.update_expression(expression).send().await)
    }

    /// An update of the merchant's endpoint `id`, to be given its
    /// expressions.
    fn endpoint_update(
        &self,
        merchant: &MerchantId,
        id: EndpointId,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(schema::PK, s(merchant_pk(merchant)))
            .key(schema::SK, s(format!("{ENDPOINT_SK_PREFIX}{id}")))
    }

    /// Runs `writes` as one transaction, again while another transaction
    /// holds one of its items: `Ok(Err(index))` when write `index` was
    /// refused by its condition.
    async fn transact_settled(&self, writes: Vec<Write>) -> Result<Result<(), usize>, StoreError> {
        for attempt in 0..super::MAX_CONFLICT_RETRIES {
            match self.transact(writes.clone()).await? {
                Ok(()) => return Ok(Ok(())),
                Err(Cancelled::Condition { index, .. }) => return Ok(Err(index)),
                Err(Cancelled::Conflict) => super::conflict_backoff(attempt).await,
            }
        }
        Err(StoreError::Contention)
    }

    /// Disables the endpoint because of what it answered (410 Gone).
    pub async fn disable_endpoint(
        &self,
        merchant: &MerchantId,
        id: EndpointId,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .endpoint_update(merchant, id)
            .update_expression("SET #status = :disabled, disabled_reason = :why, updated_ms = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":disabled", s("disabled"))
            .expression_attribute_values(":why", s(reason))
            .expression_attribute_values(":now", n(millis(now)))
            .send()
            .await;
        applied(result)
    }

    /// A new secret for the endpoint: the generation after `current` (as the
    /// caller read it); the old one keeps signing until `previous_until`.
    /// The endpoint after it, or `None` if it is gone or was rotated
    /// meanwhile.
    pub async fn rotate_endpoint(
        &self,
        merchant: &MerchantId,
        id: EndpointId,
        current: u32,
        previous_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<Endpoint>, StoreError> {
        let result = self
            .endpoint_update(merchant, id)
            .update_expression(
                "SET generation = :next, previous_generation = :current, \
                 previous_until_ms = :until, updated_ms = :now",
            )
            .condition_expression("generation = :current")
            .expression_attribute_values(":current", n(current))
            .expression_attribute_values(":next", n(current + 1))
            .expression_attribute_values(":until", n(millis(previous_until)))
            .expression_attribute_values(":now", n(millis(now)))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        updated_endpoint(result)
    }

    /// Deletes the merchant's endpoint. `false`: there was none.
    pub async fn delete_endpoint(
        &self,
        merchant: &MerchantId,
        id: EndpointId,
    ) -> Result<bool, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key(schema::PK, s(merchant_pk(merchant)))
            .key(schema::SK, s(format!("{ENDPOINT_SK_PREFIX}{id}")))
            .condition_expression("attribute_exists(pk)")
            .build()?;
        let writes = vec![
            Write {
                what: ItemKind::Endpoint,
                item: TransactWriteItem::builder().delete(delete).build(),
            },
            self.endpoint_count(merchant, -1)?,
        ];
        Ok(self.transact_settled(writes).await?.is_ok())
    }
}

/// The endpoint an update with `ReturnValues: ALL_NEW` left, or `None`
/// where its condition refused it.
fn updated_endpoint<E, R>(
    result: Result<
        aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
        aws_sdk_dynamodb::error::SdkError<E, R>,
    >,
) -> Result<Option<Endpoint>, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(out) => Ok(Some(serde_dynamo::from_item(
            out.attributes.unwrap_or_default(),
        )?)),
        Err(e) if super::is_condition_failure(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A delivery's place in GSI2: due (or failed) time, event, endpoint.
fn due_key(at: OffsetDateTime, d: &Delivery) -> String {
    format!("{}#{}#{}", time_key(at), d.event_id, d.endpoint_id)
}

fn stored_event(mut item: Item) -> Result<StoredEvent, StoreError> {
    let open = item
        .get(schema::GSI2_PK)
        .and_then(|v| v.as_s().ok())
        .is_some_and(|v| v == OPEN_EVENTS);
    let body = inflated(&item)?;
    // What the keys already say, the item does not repeat.
    let corrupt = || StoreError::Corrupt("an event's keys".into());
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let pk = text(schema::PK).ok_or_else(corrupt)?;
    let (merchant, id) = pk
        .strip_prefix("EVENT#")
        .and_then(|rest| rest.rsplit_once('#'))
        .ok_or_else(corrupt)?;
    let position = text(schema::GSI4_SK).ok_or_else(corrupt)?;
    let created_ms = position
        .split_once('#')
        .and_then(|(ms, _)| ms.parse::<i64>().ok())
        .ok_or_else(corrupt)?;
    let (merchant, id) = (s(merchant), s(id));
    item.extend([
        ("id".into(), id),
        ("merchant".into(), merchant),
        ("created_ms".into(), n(created_ms)),
    ]);
    let mut event: StoredEvent = serde_dynamo::from_item(item)?;
    event.open = open;
    event.body = body;
    Ok(event)
}

/// (merchant, event, endpoint) of a delivery's index item
/// (`EVENT#<merchant>#<event>` / `DLV#<endpoint>`).
fn delivery_keys(item: &Item) -> Result<(MerchantId, EventId, EndpointId), StoreError> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let corrupt = || StoreError::Corrupt("delivery index item".into());
    let pk = text(schema::PK).ok_or_else(corrupt)?;
    let sk = text(schema::SK).ok_or_else(corrupt)?;
    let rest = pk.strip_prefix("EVENT#").ok_or_else(corrupt)?;
    let (merchant, event) = rest.rsplit_once('#').ok_or_else(corrupt)?;
    let endpoint = sk.strip_prefix(DELIVERY_SK_PREFIX).ok_or_else(corrupt)?;
    Ok((
        merchant.parse().map_err(|_| corrupt())?,
        event.parse().map_err(|_| corrupt())?,
        endpoint.parse().map_err(|_| corrupt())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_body(blob: Vec<u8>) -> Item {
        Item::from([(
            BODY_Z.to_string(),
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(blob)),
        )])
    }

    #[test]
    fn a_body_reads_back_byte_for_byte_from_half_its_size() {
        let body = serde_json::json!({"id": "evt_1", "type": "payment.completed",
            "data": {"history": [{"to": "pending"}, {"to": "completed"}], "checkout": {"url": "https://x.example/pay/1"}}})
        .to_string()
        .repeat(4);
        let item = Item::from([(BODY_Z.to_string(), deflated(&body))]);
        let stored = item[BODY_Z].as_b().unwrap().as_ref().len();
        assert!(stored * 2 < body.len(), "{stored} of {}", body.len());
        assert_eq!(inflated(&item).unwrap(), body);
    }

    #[test]
    fn a_corrupt_or_oversized_body_is_an_error_not_a_panic_or_an_allocation() {
        assert!(matches!(
            inflated(&with_body(b"not deflate".to_vec())),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            inflated(&Item::new()),
            Err(StoreError::Corrupt(_))
        ));
        let huge =
            miniz_oxide::deflate::compress_to_vec(&vec![b'a'; super::super::DEFLATED_LIMIT + 1], 9);
        assert!(matches!(
            inflated(&with_body(huge)),
            Err(StoreError::Corrupt(_))
        ));
        let not_text = miniz_oxide::deflate::compress_to_vec(&[0xff, 0xfe], 9);
        assert!(matches!(
            inflated(&with_body(not_text)),
            Err(StoreError::Corrupt(_))
        ));
    }
}
