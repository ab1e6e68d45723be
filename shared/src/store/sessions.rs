//! Provider logins shared by every instance (`providers::session`): one item
//! per login, `SESSION#<name>`. The value is the login's JSON (tokens,
//! cookies), kept in the table, which is encrypted at rest, and never in a
//! log (it travels as a `SecretString`). One instance at a time may log in:
//! it holds `lease_until` while it does; the others read what it writes.

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use super::{n, s, schema, Item, Store, StoreError};
use crate::secrets::SecretString;

fn key(name: &str) -> String {
    format!("SESSION#{name}")
}
const SK: &str = "SESSION";

/// A login as stored: its JSON, a digest to tell logins apart without
/// comparing secrets, and until when it may be used.
#[derive(Debug, Clone)]
pub struct StoredSession {
    pub value: SecretString,
    pub digest: String,
    pub until: OffsetDateTime,
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

impl Store {
    /// The stored login, if any (strongly consistent).
    pub async fn session(&self, name: &str) -> Result<Option<StoredSession>, StoreError> {
        let Some(item) = self.get(key(name), SK).await? else {
            return Ok(None);
        };
        let (Some(value), Some(digest), Some(until)) = (
            text(&item, "value"),
            text(&item, "digest"),
            item.get("until")
                .and_then(|v| v.as_n().ok())
                .and_then(|t| t.parse::<i64>().ok()),
        ) else {
            // A lease without a login yet.
            return Ok(None);
        };
        let until = OffsetDateTime::from_unix_timestamp(until)
            .map_err(|e| StoreError::Corrupt(format!("session {name}: {e}")))?;
        Ok(Some(StoredSession {
            value: SecretString::from(value.to_string()),
            digest: digest.to_string(),
            until,
        }))
    }

    /// Takes the right to log in for `lease`, unless another instance holds
    /// it or the stored login is no longer the one the caller found
    /// (`seen`: its digest, `None` for none): then another instance has
    /// logged in since, and the caller reads its login instead. `true`: log
    /// in, then [`Store::put_session`].
    pub async fn claim_session_login(
        &self,
        name: &str,
        seen: Option<&str>,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let now_ms = super::millis(now);
        let until_ms = now_ms + lease.as_millis() as i128;
        let free = "(attribute_not_exists(lease_until) OR lease_until < :now)";
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(schema::PK, s(key(name)))
            .key(schema::SK, s(SK))
            .update_expression("SET lease_until = :until")
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":now", n(now_ms));
        let request = match seen {
            Some(digest) => request
                .condition_expression(format!("{free} AND digest = :seen"))
                .expression_attribute_values(":seen", s(digest)),
            None => {
                request.condition_expression(format!("{free} AND attribute_not_exists(digest)"))
            }
        };
        let result = request.send().await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if super::is_condition_failure(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a fresh login and lets go of the lease. A login that expires
    /// before the stored one is not written (`false`): two logins that
    /// raced leave the later one.
    pub async fn put_session(
        &self,
        name: &str,
        session: &StoredSession,
    ) -> Result<bool, StoreError> {
        let until = session.until.unix_timestamp();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(schema::PK, s(key(name)))
            .key(schema::SK, s(SK))
            .update_expression(
                "SET #value = :value, digest = :digest, #until = :until, #purge = :purge REMOVE lease_until",
            )
            .condition_expression("attribute_not_exists(#until) OR #until <= :until")
            .expression_attribute_names("#value", "value")
            .expression_attribute_names("#until", "until")
            .expression_attribute_names("#purge", schema::TTL)
            .expression_attribute_values(":value", AttributeValue::S(session.value.expose().clone()))
            .expression_attribute_values(":digest", s(session.digest.clone()))
            .expression_attribute_values(":until", n(until))
            // Kept a day past its use, then DynamoDB's TTL removes it.
            .expression_attribute_values(":purge", n(until + 86_400))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if super::is_condition_failure(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
