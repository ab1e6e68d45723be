//! One item per reconcile run (`RECON#<time>`, `RECON`): what it checked
//! and every difference it found, kept 90 days.
//!
//! A difference left for a person is also kept on its payment
//! (`PAY#<id>`, `DIFF#<difference id>`), listed in GSI2 under
//! `OPEN#DIFFERENCE` until an operator acknowledges it. The id is the kind
//! and a digest of both sides: the same difference found again the next
//! night is the same item (acknowledged once), a changed one a new item.

use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{keys, n, s, schema, time_key, Cancelled, Item, ItemKind, Store, StoreError, Write};
use crate::ids::PaymentId;
use crate::payment::{HistoryEntry, Provider};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceStatus {
    Open,
    Acknowledged,
}

/// A reconcile difference kept for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptDifference {
    pub payment_id: PaymentId,
    /// `<kind>-<digest>`: stable for the same two sides.
    pub id: String,
    pub provider: Provider,
    /// The report's kind (`status`, `amount`, `refund_total`).
    pub kind: String,
    pub ours: String,
    pub theirs: String,
    #[serde(with = "time::serde::rfc3339")]
    pub found_at: OffsetDateTime,
    pub status: DifferenceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub acknowledged_at: Option<OffsetDateTime>,
}

impl KeptDifference {
    /// A new open difference; its id from its kind and both sides.
    pub fn open(
        payment_id: PaymentId,
        provider: Provider,
        kind: &str,
        ours: &str,
        theirs: &str,
        found_at: OffsetDateTime,
    ) -> KeptDifference {
        let digest = Sha256::digest(format!("{ours}\n{theirs}"));
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        KeptDifference {
            payment_id,
            id: format!("{}-{hex}", kind.replace('_', "-")),
            provider,
            kind: kind.to_string(),
            ours: ours.to_string(),
            theirs: theirs.to_string(),
            found_at,
            status: DifferenceStatus::Open,
            acknowledged_by: None,
            note: None,
            acknowledged_at: None,
        }
    }
}

fn difference_key(id: &str) -> String {
    format!("{}{id}", keys::DIFFERENCE_SK_PREFIX)
}

/// How long run reports are kept.
const KEEP: time::Duration = time::Duration::days(90);

impl Store {
    /// Stores a run's report (the first write for a run time wins).
    pub async fn put_reconcile_report<T: Serialize>(
        &self,
        at: OffsetDateTime,
        report: &T,
    ) -> Result<(), StoreError> {
        let report = serde_json::to_string(report)
            .map_err(|e| StoreError::Corrupt(format!("reconcile report: {e}")))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(schema::PK, s(keys::reconcile_run(at)))
            .item(schema::SK, s(keys::RECONCILE_SK))
            .item("report", AttributeValue::S(report))
            .item(schema::TTL, n((at + KEEP).unix_timestamp()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await?;
        Ok(())
    }

    /// Where reconcile has checked up to: a position in the changed-payments
    /// index (see [`Store::payments_changed_after`]); none before its first run.
    pub async fn reconcile_checkpoint(&self) -> Result<Option<String>, StoreError> {
        let item = self
            .get(keys::RECONCILE_CHECKPOINT.to_string(), keys::RECONCILE_SK)
            .await?;
        Ok(item.and_then(|i| i.get("position").and_then(|v| v.as_s().ok()).cloned()))
    }

    /// Records that every payment changed up to `position` was checked.
    pub async fn set_reconcile_checkpoint(&self, position: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(schema::PK, s(keys::RECONCILE_CHECKPOINT))
            .item(schema::SK, s(keys::RECONCILE_SK))
            .item("position", s(position))
            .send()
            .await?;
        Ok(())
    }

    pub async fn reconcile_report<T: DeserializeOwned>(
        &self,
        at: OffsetDateTime,
    ) -> Result<Option<T>, StoreError> {
        let Some(item) = self
            .get(keys::reconcile_run(at), keys::RECONCILE_SK)
            .await?
        else {
            return Ok(None);
        };
        let text = item
            .get("report")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::Corrupt("reconcile report without a body".into()))?;
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("reconcile report: {e}")))
    }

    /// Keeps `d` for a person unless it is kept already (open or
    /// acknowledged): whether this call kept it.
    pub async fn keep_difference(&self, d: &KeptDifference) -> Result<bool, StoreError> {
        let mut item: Item = serde_dynamo::to_item(d)?;
        item.insert(schema::PK.into(), s(keys::payment(d.payment_id)));
        item.insert(schema::SK.into(), s(difference_key(&d.id)));
        item.insert(schema::GSI2_PK.into(), s(keys::OPEN_DIFFERENCES));
        item.insert(
            schema::GSI2_SK.into(),
            s(format!(
                "{}#{}#{}",
                time_key(d.found_at),
                d.payment_id,
                d.id
            )),
        );
        self.put_new(item).await
    }

    pub async fn difference(
        &self,
        payment_id: PaymentId,
        id: &str,
    ) -> Result<Option<KeptDifference>, StoreError> {
        self.get(keys::payment(payment_id), &difference_key(id))
            .await?
            .map(|item| serde_dynamo::from_item(item).map_err(StoreError::from))
            .transpose()
    }

    /// One page of differences not yet acknowledged, oldest first.
    pub async fn open_differences(
        &self,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<(PaymentId, String)>, Option<Item>), StoreError> {
        let (items, next) = self
            .open_work(keys::OPEN_DIFFERENCES, None, limit, start)
            .await?;
        let mut ids = Vec::with_capacity(items.len());
        for item in &items {
            let payment = super::item_payment_id(item)?;
            let id = item
                .get(schema::SK)
                .and_then(|v| v.as_s().ok())
                .and_then(|sk| sk.strip_prefix(keys::DIFFERENCE_SK_PREFIX))
                .ok_or_else(|| StoreError::Corrupt("difference index item without id".into()))?;
            ids.push((payment, id.to_string()));
        }
        Ok((ids, next))
    }

    /// A person's acknowledgement of an open difference, with `note` in the
    /// payment's history, in one transaction conditional on the difference
    /// still being open. `Err` carries the difference as found when it
    /// was not (someone acknowledged it first).
    pub async fn acknowledge_difference(
        &self,
        d: &KeptDifference,
        note: &HistoryEntry,
    ) -> Result<Result<KeptDifference, Option<KeptDifference>>, StoreError> {
        let at = note.at_text();
        let update = Update::builder()
            .table_name(&self.table)
            .key(schema::PK, s(keys::payment(d.payment_id)))
            .key(schema::SK, s(difference_key(&d.id)))
            .update_expression(
                "SET #status = :ack, acknowledged_by = :by, note = :note, acknowledged_at = :at \
                 REMOVE gsi2pk, gsi2sk",
            )
            .condition_expression("#status = :open")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(
                ":ack",
                serde_dynamo::to_attribute_value(DifferenceStatus::Acknowledged)?,
            )
            .expression_attribute_values(
                ":open",
                serde_dynamo::to_attribute_value(DifferenceStatus::Open)?,
            )
            .expression_attribute_values(":by", s(note.by.clone().unwrap_or_default()))
            .expression_attribute_values(":note", s(note.reason.clone().unwrap_or_default()))
            .expression_attribute_values(":at", s(at))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()?;
        let writes = vec![
            Write {
                what: ItemKind::Difference,
                item: TransactWriteItem::builder().update(update).build(),
            },
            self.history_note_write(d.payment_id, note)?,
        ];
        for attempt in 0..super::MAX_CONFLICT_RETRIES {
            match self.transact(writes.clone()).await? {
                Ok(()) => {
                    let mut done = d.clone();
                    done.status = DifferenceStatus::Acknowledged;
                    done.acknowledged_by = note.by.clone();
                    done.note = note.reason.clone();
                    done.acknowledged_at = Some(note.at);
                    return Ok(Ok(done));
                }
                Err(Cancelled::Condition { index: 0, item }) => {
                    let found = match item {
                        Some(item) => Some(serde_dynamo::from_item(item)?),
                        None => self.difference(d.payment_id, &d.id).await?,
                    };
                    return Ok(Err(found));
                }
                Err(Cancelled::Condition { index, .. }) => {
                    return Err(StoreError::Refused(writes[index].what))
                }
                Err(Cancelled::Conflict) => super::conflict_backoff(attempt).await,
            }
        }
        Err(StoreError::Contention)
    }
}
