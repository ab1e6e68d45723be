//! One item per reconcile run (`RECON#<time>`, `RECON`): what it checked
//! and every difference it found, kept 90 days.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{de::DeserializeOwned, Serialize};
use time::OffsetDateTime;

use super::{keys, n, s, schema, Store, StoreError};

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
}
