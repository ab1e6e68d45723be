//! A merchant's payments by creation time, newest first: the listing behind
//! `GET /v1/payments` (GSI5, keys only; decision 57).
//!
//! The index holds only keys (partition: the payment's own `merchant_id`;
//! sort: `gsi5sk = <created ms>`), written once with the payment and never
//! again: its keys do not change and it projects nothing a status change
//! touches. A
//! page reads the index, then the payments themselves (`BatchGetItem`), and
//! applies the status and provider filters while it fills, within a bounded
//! number of reads; a sparse filter answers a short page and a cursor.

use std::collections::{HashMap, VecDeque};

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use time::OffsetDateTime;

use super::{conflict_backoff, item_payment_id, keys, s, schema, Item, Store, StoreError};
use crate::ids::{MerchantId, PaymentId};
use crate::payment::{Payment, PaymentStatus, Provider};

/// The index key a payment adds to its item to be listed: its creation
/// time. The index's partition key is the item's own `merchant_id`, so
/// the listing adds 21 bytes to a payment (decision 57).
pub(crate) fn index_keys(p: &Payment) -> [(String, AttributeValue); 1] {
    [(schema::GSI5_SK.into(), s(super::time_key(p.created_at)))]
}

/// A payment's place in its merchant's listing, as a cursor carries it.
fn position(created_key: &str, id: PaymentId) -> String {
    format!("{created_key}#{id}")
}

/// Whether `text` is a listing position (`<15 digits>#<payment id>`), as a
/// cursor carries it.
pub fn is_position(text: &str) -> bool {
    text.split_once('#').is_some_and(|(time, id)| {
        time.len() == 15
            && time.bytes().all(|b| b.is_ascii_digit())
            && id.parse::<PaymentId>().is_ok()
    })
}

/// What a listing keeps: each bound and filter where given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    pub status: Option<PaymentStatus>,
    pub provider: Option<Provider>,
    /// Inclusive.
    pub created_from: Option<OffsetDateTime>,
    /// Exclusive.
    pub created_to: Option<OffsetDateTime>,
}

impl PaymentFilter {
    /// Whether the filter reads the payments themselves (the index has
    /// only their keys).
    fn reads_payments(&self) -> bool {
        self.status.is_some() || self.provider.is_some()
    }

    fn keeps(&self, merchant: &MerchantId, p: &Payment) -> bool {
        &p.merchant_id == merchant
            && self.status.is_none_or(|s| p.status == s)
            && self.provider.is_none_or(|v| p.provider == v)
            && self.created_from.is_none_or(|t| p.created_at >= t)
            && self.created_to.is_none_or(|t| p.created_at < t)
    }
}

/// One page of a listing, and the position the next starts after.
#[derive(Debug, Clone)]
pub struct PaymentPage {
    pub payments: Vec<Payment>,
    pub next: Option<String>,
}

/// Index keys read at once when a filter reads the payments.
const FILTERED_PAGE: i32 = 100;
/// Reads (index pages and payment batches) one listing page may take.
const MAX_READS: usize = 10;
/// BatchGetItem's most keys per call.
const BATCH_KEYS: usize = 100;

/// Epoch milliseconds rounded up (an exclusive upper bound in ms that
/// keeps every payment before `t`).
fn ceil_millis_key(t: OffsetDateTime) -> String {
    let nanos = t.unix_timestamp_nanos();
    format!(
        "{:015}",
        nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) != 0)
    )
}

impl Store {
    /// One page of the merchant's payments, newest first: at most `limit`
    /// after `after` (a position from a previous page) that `filter` keeps.
    pub async fn payments_of(
        &self,
        merchant: &MerchantId,
        filter: &PaymentFilter,
        limit: usize,
        after: Option<&str>,
    ) -> Result<PaymentPage, StoreError> {
        let partition = merchant.to_string();
        // The time bounds go into the key condition in whole milliseconds
        // (from rounded down, to rounded up); the exact check is `keeps`.
        let mut condition = String::from("#merchant = :m");
        let mut query = self
            .query_index(schema::GSI5)
            .expression_attribute_names("#merchant", schema::GSI5_PK)
            .expression_attribute_values(":m", s(partition.clone()))
            .scan_index_forward(false);
        match (filter.created_from, filter.created_to) {
            (Some(from), Some(to)) => {
                condition.push_str(" AND gsi5sk BETWEEN :from AND :to");
                query = query
                    .expression_attribute_values(":from", s(super::time_key(from)))
                    .expression_attribute_values(":to", s(ceil_millis_key(to)));
            }
            (Some(from), None) => {
                condition.push_str(" AND gsi5sk >= :from");
                query = query.expression_attribute_values(":from", s(super::time_key(from)));
            }
            (None, Some(to)) => {
                condition.push_str(" AND gsi5sk < :to");
                query = query.expression_attribute_values(":to", s(ceil_millis_key(to)));
            }
            (None, None) => {}
        }
        let query = query.key_condition_expression(condition);
        let start_at = |position: &str| -> Result<Item, StoreError> {
            let (created, id) = position
                .split_once('#')
                .and_then(|(created, id)| Some((created, id.parse::<PaymentId>().ok()?)))
                .ok_or_else(|| StoreError::Corrupt("cursor position".into()))?;
            Ok(Item::from([
                (schema::PK.into(), s(keys::payment(id))),
                (schema::SK.into(), s(keys::PAYMENT_SK)),
                (schema::GSI5_PK.into(), s(partition.clone())),
                (schema::GSI5_SK.into(), s(created)),
            ]))
        };

        let mut start = after.map(start_at).transpose()?;
        let mut index_done = false;
        let mut waiting: VecDeque<(String, PaymentId)> = VecDeque::new();
        let mut found = Vec::new();
        let mut last_examined: Option<String> = None;
        let mut reads = 0;
        while found.len() < limit && reads < MAX_READS {
            let remaining = limit - found.len();
            if waiting.is_empty() {
                if index_done {
                    break;
                }
                // Unfiltered, one key more than the page tells whether
                // another page follows.
                let size = if filter.reads_payments() {
                    FILTERED_PAGE
                } else {
                    i32::try_from(remaining + 1).unwrap_or(FILTERED_PAGE)
                };
                let out = query
                    .clone()
                    .limit(size)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await?;
                reads += 1;
                for item in out.items.unwrap_or_default() {
                    let created = item
                        .get(schema::GSI5_SK)
                        .and_then(|v| v.as_s().ok())
                        .ok_or_else(|| StoreError::Corrupt("listing item without gsi5sk".into()))?;
                    let id = item_payment_id(&item)?;
                    waiting.push_back((position(created, id), id));
                }
                start = out.last_evaluated_key;
                index_done = start.is_none();
                continue;
            }
            // A filter may drop some: read a few more than the page lacks.
            let take = if filter.reads_payments() {
                (remaining * 2).clamp(20, BATCH_KEYS)
            } else {
                remaining
            }
            .min(waiting.len());
            let chunk: Vec<(String, PaymentId)> = waiting.drain(..take).collect();
            let ids: Vec<PaymentId> = chunk.iter().map(|(_, id)| *id).collect();
            let mut read = self.payments_batch(&ids).await?;
            reads += 1;
            let mut rest = chunk.into_iter();
            for (place, id) in rest.by_ref() {
                last_examined = Some(place);
                if let Some(p) = read.remove(&id).filter(|p| filter.keeps(merchant, p)) {
                    found.push(p);
                    if found.len() == limit {
                        break;
                    }
                }
            }
            // What the page had no room for is read again by the next.
            let unexamined: Vec<_> = rest.collect();
            for entry in unexamined.into_iter().rev() {
                waiting.push_front(entry);
            }
        }
        let more = !waiting.is_empty() || !index_done;
        Ok(PaymentPage {
            payments: found,
            next: if more { last_examined } else { None },
        })
    }

    /// The payments `ids` names (eventually consistent, as the index that
    /// named them), by id; a missing one is absent.
    async fn payments_batch(
        &self,
        ids: &[PaymentId],
    ) -> Result<HashMap<PaymentId, Payment>, StoreError> {
        let mut found = HashMap::new();
        for part in ids.chunks(BATCH_KEYS) {
            let mut wanted = KeysAndAttributes::builder();
            for id in part {
                wanted = wanted.keys(Item::from([
                    (schema::PK.into(), s(keys::payment(*id))),
                    (schema::SK.into(), s(keys::PAYMENT_SK)),
                ]));
            }
            let mut request = Some(HashMap::from([(self.table.clone(), wanted.build()?)]));
            let mut attempt = 0;
            while let Some(keys) = request.take().filter(|k| !k.is_empty()) {
                if attempt > 0 {
                    // Unprocessed keys: DynamoDB throttled part of the batch.
                    if attempt >= super::MAX_CONFLICT_RETRIES {
                        return Err(StoreError::Contention);
                    }
                    conflict_backoff(attempt).await;
                }
                attempt += 1;
                let out = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(keys))
                    .send()
                    .await?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let p = super::payments::payment_from(item)?;
                    found.insert(p.id, p);
                }
                request = out.unprocessed_keys;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_time_then_payment() {
        let id = PaymentId::generate();
        let t = OffsetDateTime::from_unix_timestamp(1_765_000_000).unwrap();
        let p = position(&super::super::time_key(t), id);
        assert_eq!(p, format!("001765000000000#{id}"));
        assert!(is_position(&p));
        assert!(!is_position("1765000000000#x"));
        assert!(!is_position(&format!("00176500000000a#{id}")));
        assert!(!is_position("nothing"));
    }

    #[test]
    fn an_exclusive_bound_rounds_up_to_the_next_millisecond() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_000_000_500_000).unwrap();
        assert_eq!(ceil_millis_key(t), "000000001000001");
        let whole = OffsetDateTime::from_unix_timestamp_nanos(1_000_000_000_000).unwrap();
        assert_eq!(ceil_millis_key(whole), "000000001000000");
    }
}
