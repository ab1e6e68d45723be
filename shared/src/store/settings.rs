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
