//! Provider health: one item per provider (`HEALTH#<provider>`, `HEALTH`)
//! with the last success, the last failure and the failures since the last
//! success. Writes carry the time of the call they record and are
//! conditional on it, so a write that arrives late never undoes a newer
//! one.

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use time::OffsetDateTime;

use super::{from_millis, millis, n, s, schema, Store, StoreError};

const SK: &str = "HEALTH";

fn pk(provider: &str) -> String {
    format!("HEALTH#{provider}")
}

/// One provider's stored health.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderHealth {
    pub last_success: Option<OffsetDateTime>,
    pub last_failure: Option<OffsetDateTime>,
    pub consecutive_failures: u32,
}

impl Store {
    /// A call to `provider` that worked (`ok`) or failed at `at`. One that
    /// worked resets the failures, unless a newer failure or success is
    /// already recorded; one that failed adds a consecutive failure, unless
    /// a newer success is already recorded.
    pub async fn record_provider_call(
        &self,
        provider: &str,
        ok: bool,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (update, condition, count) = match ok {
            true => (
                "SET last_success = :t, consecutive_failures = :n",
                "(attribute_not_exists(last_success) OR last_success < :t) \
                 AND (attribute_not_exists(last_failure) OR last_failure < :t)",
                0,
            ),
            false => (
                "SET last_failure = :t ADD consecutive_failures :n",
                "attribute_not_exists(last_success) OR last_success < :t",
                1,
            ),
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(schema::PK, s(pk(provider)))
            .key(schema::SK, s(SK))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_values(":t", n(millis(at)))
            .expression_attribute_values(":n", n(count))
            .send()
            .await;
        ignore_stale(result)
    }

    /// The stored health of each named provider (default for one never
    /// recorded), in the order asked.
    pub async fn provider_health(
        &self,
        providers: &[&str],
    ) -> Result<Vec<ProviderHealth>, StoreError> {
        let mut keys = KeysAndAttributes::builder().consistent_read(true);
        for p in providers {
            keys = keys.keys(
                [
                    (schema::PK.to_string(), s(pk(p))),
                    (schema::SK.to_string(), s(SK)),
                ]
                .into(),
            );
        }
        let mut found = std::collections::HashMap::new();
        let mut request = Some(keys.build()?);
        // Unprocessed keys are asked again (a handful of small items; this
        // ends quickly).
        for attempt in 0..5 {
            let Some(keys) = request.take() else { break };
            if attempt > 0 {
                super::conflict_backoff(attempt).await;
            }
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await?;
            for item in out
                .responses
                .unwrap_or_default()
                .remove(&self.table)
                .unwrap_or_default()
            {
                if let Some(AttributeValue::S(key)) = item.get(schema::PK) {
                    found.insert(key.clone(), item);
                }
            }
            request = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .filter(|k| !k.keys.is_empty());
        }
        let number = |item: &super::Item, name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
        };
        Ok(providers
            .iter()
            .map(|p| match found.get(&pk(p)) {
                Some(item) => ProviderHealth {
                    last_success: number(item, "last_success")
                        .and_then(|ms| from_millis(ms.into())),
                    last_failure: number(item, "last_failure")
                        .and_then(|ms| from_millis(ms.into())),
                    consecutive_failures: number(item, "consecutive_failures")
                        .and_then(|v| u32::try_from(v).ok())
                        .unwrap_or(0),
                },
                None => ProviderHealth::default(),
            })
            .collect())
    }
}

type UpdateResult = Result<
    aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
    aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError>,
>;

/// A refused condition means a newer record is there: nothing to do.
fn ignore_stale(result: UpdateResult) -> Result<(), StoreError> {
    super::applied(result).map(|_| ())
}
