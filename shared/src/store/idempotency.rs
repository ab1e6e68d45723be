//! API idempotency records, with the semantics of AWS Lambda Powertools'
//! idempotency utility.
//!
//! `begin` writes an in-progress record unless a live one exists; the
//! condition itself checks expiry (DynamoDB's TTL deletes late, so it cannot
//! be relied on) and the in-progress deadline (derived from the Lambda's
//! remaining time, so a crashed invocation's key can be taken over). The
//! request's fingerprint is stored: the same key with another body is a
//! mismatch. `complete` stores the response for replay; `release` deletes
//! the record after a failure so the client may retry. Both are
//! conditional on the token `begin` handed out, so a caller whose record was
//! taken over cannot overwrite the new owner's.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{millis, n, s, schema, Item, ItemKind, Store, StoreError, Write};
use crate::ids::{IdempotencyKey, MerchantId};

/// Whose key and for which operation: keys of different merchants or
/// routes never collide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyScope {
    pub merchant: MerchantId,
    pub operation: &'static str,
}

impl IdempotencyScope {
    fn pk(&self, key: &IdempotencyKey) -> String {
        // merchant ids and operations hold no '#'; the key comes last, so
        // any '#' it holds cannot make two records share a key.
        format!("IDEM#{}#{}#{}", self.merchant, self.operation, key)
    }
}

const SK: &str = "IDEM";

/// A response as first sent, replayed byte for byte.
/// Stored as a number, a JSON list of header pairs and a binary body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// How [`Store::begin_idempotent`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginOutcome {
    /// The caller owns the key: do the work, then `complete` or `release`
    /// with this token.
    New { token: String },
    /// Done before with the same request: send this response again.
    Replay(StoredResponse),
    /// The first request with this key is still running.
    InProgress,
    /// The key was used with a different request.
    Mismatch,
}

/// The fingerprint of a request: SHA-256 of the operation and its body,
/// with JSON canonicalised (object keys sorted, whitespace dropped) so the
/// same request in another layout still matches.
pub fn fingerprint(operation: &str, body: &serde_json::Value) -> String {
    let mut hash = Sha256::new();
    hash.update(operation.as_bytes());
    hash.update([0]);
    // serde_json's Map is ordered by key, so this serialisation is canonical.
    hash.update(body.to_string().as_bytes());
    hex::encode(hash.finalize())
}

impl Store {
    /// Claims `key` for one run of the request whose fingerprint is
    /// `request_hash`. The claim is in progress until `deadline` and the
    /// record lives until `expires`.
    pub async fn begin_idempotent(
        &self,
        scope: &IdempotencyScope,
        key: &IdempotencyKey,
        request_hash: &str,
        now: OffsetDateTime,
        deadline: OffsetDateTime,
        expires: OffsetDateTime,
    ) -> Result<BeginOutcome, StoreError> {
        let token = ulid::Ulid::new().to_string();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(schema::PK, s(scope.pk(key)))
            .item(schema::SK, s(SK))
            .item("status", s("in_progress"))
            .item("request_hash", hash_value(request_hash))
            .item("token", s(token.clone()))
            .item("in_progress_until", n(millis(deadline)))
            .item(schema::TTL, n(expires.unix_timestamp()))
            .condition_expression(
                "attribute_not_exists(pk) OR purge_at < :now_s OR \
                 (#status = :in_progress AND in_progress_until < :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now_s", n(now.unix_timestamp()))
            .expression_attribute_values(":now_ms", n(millis(now)))
            .expression_attribute_values(":in_progress", s("in_progress"))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(BeginOutcome::New { token }),
            Err(err) => err,
        };
        use aws_sdk_dynamodb::operation::put_item::PutItemError as E;
        let Some(E::ConditionalCheckFailedException(ex)) = err.as_service_error() else {
            return Err(err.into());
        };
        let existing = match ex.item() {
            Some(item) => item.clone(),
            None => match self.get(scope.pk(key), SK).await? {
                Some(item) => item,
                // Deleted between our write and our read: a release raced us.
                None => return Ok(BeginOutcome::InProgress),
            },
        };
        if !same_request(&existing, request_hash)? {
            return Ok(BeginOutcome::Mismatch);
        }
        match text(&existing, "status")? {
            "completed" => Ok(BeginOutcome::Replay(stored_response(&existing)?)),
            _ => Ok(BeginOutcome::InProgress),
        }
    }

    /// Stores the response of the run that `token` owns.
    pub async fn complete_idempotent(
        &self,
        scope: &IdempotencyScope,
        key: &IdempotencyKey,
        token: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let c = Completion::of(scope, key, token, response)?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(c.key))
            .update_expression(c.expression)
            .condition_expression(OWNED)
            .set_expression_attribute_names(Some(c.names))
            .set_expression_attribute_values(Some(c.values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if super::is_condition_failure(&err) => {
                Err(StoreError::Refused(ItemKind::IdempotencyRecord))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// [`Store::complete_idempotent`] as a write of a transaction, so the
    /// response is kept in the same commit as the work it answers (a
    /// create: one round trip fewer). Refused, like the update, when the
    /// record is no longer `token`'s.
    pub fn complete_idempotent_write(
        &self,
        scope: &IdempotencyScope,
        key: &IdempotencyKey,
        token: &str,
        response: &StoredResponse,
    ) -> Result<Write, StoreError> {
        let c = Completion::of(scope, key, token, response)?;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(c.key))
            .update_expression(c.expression)
            .condition_expression(OWNED)
            .set_expression_attribute_names(Some(c.names))
            .set_expression_attribute_values(Some(c.values))
            .build()?;
        Ok(Write {
            what: ItemKind::IdempotencyRecord,
            item: TransactWriteItem::builder().update(update).build(),
        })
    }

    /// Deletes the in-progress record `token` owns, so the request can be
    /// retried with the same key. A record that is no longer ours stays.
    pub async fn release_idempotent(
        &self,
        scope: &IdempotencyScope,
        key: &IdempotencyKey,
        token: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(schema::PK, s(scope.pk(key)))
            .key(schema::SK, s(SK))
            .condition_expression("#status = :in_progress AND #token = :token")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":in_progress", s("in_progress"))
            .expression_attribute_values(":token", s(token))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if super::is_condition_failure(&err) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

/// The update that completes a record: the response kept; no deadline,
/// no token (nobody completes or releases it any more).
const COMPLETE: &str = "SET #status = :completed, response_status = :status, \
     response_headers = :headers, response_body_z = :body REMOVE in_progress_until, #token";
/// [`COMPLETE`] for a response with only the usual JSON content type,
/// which a replay restores ([`usual_headers`]).
const COMPLETE_USUAL: &str = "SET #status = :completed, response_status = :status, \
     response_body_z = :body REMOVE in_progress_until, response_headers, #token";

/// The headers nearly every kept response has: not stored.
fn usual_headers() -> Vec<(String, String)> {
    vec![("content-type".into(), "application/json".into())]
}

/// A request's fingerprint as stored: its 32 bytes (hex text if it is not
/// hex, as it never is).
fn hash_value(hash: &str) -> AttributeValue {
    match hex::decode(hash) {
        Ok(bytes) => AttributeValue::B(Blob::new(bytes)),
        Err(_) => s(hash),
    }
}

/// Whether a record was made for the request whose fingerprint is `hash`
/// (records kept the hex text before they kept the bytes).
fn same_request(item: &Item, hash: &str) -> Result<bool, StoreError> {
    match item.get("request_hash") {
        Some(AttributeValue::B(bytes)) => Ok(hex::decode(hash).is_ok_and(|h| h == bytes.as_ref())),
        Some(_) => Ok(text(item, "request_hash")? == hash),
        None => Err(StoreError::Corrupt(
            "idempotency record without request_hash".into(),
        )),
    }
}
/// Only while the record is still the caller's run.
const OWNED: &str = "#status = :in_progress AND #token = :token";

/// The key, names and values of [`COMPLETE`] under [`OWNED`].
struct Completion {
    expression: &'static str,
    key: Item,
    names: std::collections::HashMap<String, String>,
    values: Item,
}

impl Completion {
    fn of(
        scope: &IdempotencyScope,
        key: &IdempotencyKey,
        token: &str,
        response: &StoredResponse,
    ) -> Result<Completion, StoreError> {
        let headers = serde_json::to_string(&response.headers)
            .map_err(|e| StoreError::Build(format!("response headers: {e}")))?;
        let usual = response.headers == usual_headers();
        let mut values: Item = [
            (":completed".to_string(), s("completed")),
            (":in_progress".to_string(), s("in_progress")),
            (":status".to_string(), n(response.status)),
            // Deflated: a create's answer (the payment, its checkout) is
            // about half the size, so its record stays one write unit.
            (":body".to_string(), super::deflated(&response.body)),
            (":token".to_string(), s(token)),
        ]
        .into();
        if !usual {
            values.insert(":headers".into(), s(headers));
        }
        Ok(Completion {
            expression: if usual { COMPLETE_USUAL } else { COMPLETE },
            key: [
                (schema::PK.to_string(), s(scope.pk(key))),
                (schema::SK.to_string(), s(SK)),
            ]
            .into(),
            names: [
                ("#status".to_string(), "status".to_string()),
                ("#token".to_string(), "token".to_string()),
            ]
            .into(),
            values,
        })
    }
}

fn text<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v: &AttributeValue| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::Corrupt(format!("idempotency record without {name}")))
}

fn stored_response(item: &Item) -> Result<StoredResponse, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("completed record without {what}"));
    let status = item
        .get("response_status")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt("status"))?;
    let headers = match item.get("response_headers") {
        Some(_) => {
            serde_json::from_str(text(item, "response_headers")?).map_err(|_| corrupt("headers"))?
        }
        None => usual_headers(),
    };
    // Kept deflated (`response_body_z`); records completed before that
    // kept the bytes as they were (`response_body`).
    let body = match (item.get("response_body_z"), item.get("response_body")) {
        (Some(z), _) => super::inflated(z).ok_or_else(|| corrupt("a body that inflates"))?,
        (None, Some(plain)) => plain
            .as_b()
            .map_err(|_| corrupt("body"))?
            .clone()
            .into_inner(),
        (None, None) => return Err(corrupt("body")),
    };
    Ok(StoredResponse {
        status,
        headers,
        body,
    })
}
