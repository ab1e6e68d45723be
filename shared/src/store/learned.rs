//! Small named values the system learns once and keeps (a provider's
//! category code, say), so a cold start does not have to learn them again.

use super::{s, schema, Store, StoreError};

const SK: &str = "SETTING";

fn pk(name: &str) -> String {
    format!("SETTING#{name}")
}

impl Store {
    pub async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get(pk(name), SK)
            .await?
            .and_then(|item| item.get("value").and_then(|v| v.as_s().ok()).cloned()))
    }

    /// Stores the value unless one is there already (the first one learned
    /// wins); returns the stored value.
    pub async fn put_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(schema::PK, s(pk(name)))
            .item(schema::SK, s(SK))
            .item("value", s(value))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        use aws_sdk_dynamodb::operation::put_item::PutItemError as E;
        match result {
            Ok(_) => Ok(value.to_string()),
            Err(err) => match err.as_service_error() {
                Some(E::ConditionalCheckFailedException(_)) => Ok(self
                    .setting(name)
                    .await?
                    .unwrap_or_else(|| value.to_string())),
                _ => Err(err.into()),
            },
        }
    }
}

impl Store {
    /// The next number of the named sequence (1, 2, 3 …), from an atomic
    /// counter item (`SEQ#<name>`): every caller, on every instance, gets
    /// its own number, never one given before.
    pub async fn next_in_sequence(&self, name: &str) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(schema::PK, s(format!("SEQ#{name}")))
            .key(schema::SK, s("SEQ"))
            .update_expression("ADD next_value :one")
            .expression_attribute_values(":one", super::n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await?;
        out.attributes
            .as_ref()
            .and_then(|a| a.get("next_value"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("sequence {name}")))
    }
}
