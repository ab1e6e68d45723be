//! DynamoDB storage: one table for payments, merchant-reference claims,
//! idempotency records, webhook deliveries, wallets, ledger entries and
//! casino top-ups (the item layout is in `docs/storage.md`).
//!
//! Every state change is a conditional write. A lost race is never an opaque
//! error: each operation returns a typed outcome that says what the item
//! looked like instead. Writes that must happen together (a payment's
//! completion, its wallet credit and its top-up) go in one
//! `TransactWriteItems`; callers pass them as [`Write`]s.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;

use crate::ids::PaymentId;

mod deliveries;
mod events;
mod health;
mod idempotency;
mod learned;
mod leases;
mod ledger;
mod listing;
mod payments;
mod reconcile;
mod refunds;
mod sessions;
mod topups;

pub use deliveries::DeliveryOutcome;
pub use events::{
    Attempt, AttemptEnd, Claim, Delivery, DeliveryStatus, Endpoint, EndpointChange, EndpointStatus,
    StoredEvent, ATTEMPTS_KEPT, EVENTS_KEPT, MAX_ENDPOINTS,
};
pub use health::ProviderHealth;
pub use idempotency::{fingerprint, BeginOutcome, IdempotencyScope, StoredResponse};
pub use ledger::{Balance, EntryCursor, EntryKind, LedgerEntry, LedgerPurpose, PostOutcome};
pub use listing::{is_position, PaymentFilter, PaymentPage};
pub use payments::{
    position_time, CreateOutcome, ReferenceHolder, ReserveOutcome, StatusChange, TransitionOutcome,
    REFERENCE_LAPSE,
};
pub use reconcile::{DifferenceStatus, KeptDifference};
pub use refunds::{Refund, RefundMove, RefundStatus};
pub use sessions::StoredSession;
pub use topups::{AcquireOutcome, FinishOutcome, TopUp, TopUpStatus};

pub type Item = HashMap<String, AttributeValue>;

/// Names of the table's key attributes and indexes. `template.yaml` declares
/// the same; a test keeps the two in step.
pub mod schema {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    /// GSI1: a payment by its provider reference (webhook lookup).
    pub const GSI1: &str = "GSI1";
    pub const GSI1_PK: &str = "gsi1pk";
    /// GSI2: open work by due time (pending payments, unfinished top-ups), for sweeps.
    pub const GSI2: &str = "GSI2";
    pub const GSI2_PK: &str = "gsi2pk";
    pub const GSI2_SK: &str = "gsi2sk";
    /// GSI3: payments by the UTC day and time they last changed, for reconcile.
    pub const GSI3: &str = "GSI3";
    pub const GSI3_PK: &str = "gsi3pk";
    pub const GSI3_SK: &str = "gsi3sk";
    /// GSI4: a merchant's events by time, newest first (`type` and
    /// `payment_id` projected, for the log's filters).
    pub const GSI4: &str = "GSI4";
    pub const GSI4_PK: &str = "gsi4pk";
    pub const GSI4_SK: &str = "gsi4sk";
    /// GSI5: a merchant's payments by creation time, newest first (keys
    /// only), for the listing. Its partition key is the payment's own
    /// `merchant_id` (no bytes added to the item); only payments carry
    /// `gsi5sk`.
    pub const GSI5: &str = "GSI5";
    pub const GSI5_PK: &str = "merchant_id";
    pub const GSI5_SK: &str = "gsi5sk";
    /// LSI1: a wallet's ledger entries by time.
    pub const LSI1: &str = "LSI1";
    pub const LSI1_SK: &str = "lsi1sk";
    /// Epoch seconds after which DynamoDB's TTL may delete the item.
    /// DynamoDB's time-to-live attribute (epoch seconds). Its own name: a
    /// payment's `expires_at` is something else (when the payer's time ends).
    pub const TTL: &str = "purge_at";
}

/// Why a storage call failed. Lost races are not errors: they are outcomes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB request failed: {0}")]
    Dynamo(String),
    #[error("stored item is not valid: {0}")]
    Corrupt(String),
    #[error("could not build the request: {0}")]
    Build(String),
    /// One of the extra writes of a transaction was refused by its condition
    /// (a ledger entry that exists already, a balance too small for a debit).
    #[error("{0} was refused by its condition")]
    Refused(ItemKind),
    /// Other writers kept the item busy through every retry.
    #[error("the item stayed busy with concurrent writes")]
    Contention,
}

impl<E, R> From<SdkError<E, R>> for StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    fn from(e: SdkError<E, R>) -> StoreError {
        StoreError::Dynamo(DisplayErrorContext(&e).to_string())
    }
}

impl From<aws_sdk_dynamodb::error::BuildError> for StoreError {
    fn from(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
        StoreError::Build(e.to_string())
    }
}

impl From<serde_dynamo::Error> for StoreError {
    fn from(e: serde_dynamo::Error) -> StoreError {
        StoreError::Corrupt(e.to_string())
    }
}

/// The kinds of item a conditional write can be refused on, so a caller
/// matches on what was refused rather than on a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Payment,
    ReferenceClaim,
    PayerPageLink,
    PaymentHistory,
    Refund,
    LedgerEntry,
    WalletBalance,
    TopUp,
    Difference,
    WebhookDelivery,
    /// An event to a merchant, or one of its deliveries.
    Event,
    Delivery,
    /// A merchant's webhook endpoint, or its merchant's count of them.
    Endpoint,
    /// An idempotency record that another request has taken over.
    IdempotencyRecord,
}

impl std::fmt::Display for ItemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ItemKind::Payment => "payment",
            ItemKind::ReferenceClaim => "merchant reference claim",
            ItemKind::PayerPageLink => "payer page link",
            ItemKind::PaymentHistory => "payment history",
            ItemKind::Refund => "refund",
            ItemKind::LedgerEntry => "ledger entry",
            ItemKind::WalletBalance => "wallet balance",
            ItemKind::TopUp => "top-up",
            ItemKind::Difference => "difference",
            ItemKind::WebhookDelivery => "webhook delivery",
            ItemKind::Event => "event",
            ItemKind::Delivery => "event delivery",
            ItemKind::Endpoint => "webhook endpoint",
            ItemKind::IdempotencyRecord => "idempotency record (no longer ours)",
        })
    }
}

/// One write to go into a transaction, with a name for error messages.
#[derive(Debug, Clone)]
pub struct Write {
    pub what: ItemKind,
    pub item: TransactWriteItem,
}

/// The table and its client. Cheap to clone; build it once per process.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    table: String,
}

/// How a transaction ended when it did not commit.
enum Cancelled {
    /// Write `index` failed its condition; `item` is what it found there.
    Condition { index: usize, item: Option<Item> },
    /// Another transaction held one of the items.
    Conflict,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Store {
        Store {
            client,
            table: table.into(),
        }
    }

    /// Reads the table name from `PAYGATE_TABLE`.
    pub fn from_env(client: Client) -> Result<Store, crate::environment::ConfigError> {
        Ok(Store::new(
            client,
            crate::environment::required("PAYGATE_TABLE")?,
        ))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(schema::PK, AttributeValue::S(pk))
            .key(schema::SK, AttributeValue::S(sk.to_string()))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.item)
    }

    /// Runs the writes as one transaction. `Ok(Err(..))` is a cancellation
    /// the caller interprets; `Err` is a failure to talk to DynamoDB.
    async fn transact(&self, writes: Vec<Write>) -> Result<Result<(), Cancelled>, StoreError> {
        let names: Vec<String> = writes.iter().map(|w| w.what.to_string()).collect();
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes.into_iter().map(|w| w.item).collect()))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Ok(())),
            Err(err) => err,
        };
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
        let cancelled = match err.as_service_error() {
            Some(E::TransactionCanceledException(ex)) => ex,
            // DynamoDB answers a transaction that collides with another
            // transaction in flight with TransactionInProgress too.
            Some(E::TransactionInProgressException(_)) => return Ok(Err(Cancelled::Conflict)),
            _ => return Err(err.into()),
        };
        let reasons = cancelled.cancellation_reasons();
        for (index, reason) in reasons.iter().enumerate() {
            if reason.code() == Some("ConditionalCheckFailed") {
                return Ok(Err(Cancelled::Condition {
                    index,
                    item: reason.item().cloned(),
                }));
            }
        }
        if reasons
            .iter()
            .any(|r| r.code() == Some("TransactionConflict"))
        {
            return Ok(Err(Cancelled::Conflict));
        }
        tracing::warn!(writes = ?names, reasons = ?reasons, "transaction cancelled");
        Err(StoreError::Dynamo(format!(
            "transaction of {names:?} cancelled: {:?}",
            reasons.iter().map(|r| r.code()).collect::<Vec<_>>()
        )))
    }
}

/// Keys: every item type's partition and sort key, built in one place.
pub(crate) mod keys {
    use crate::ids::{MerchantId, MerchantReference, PaymentId, WalletUserId};
    use crate::money::Currency;
    use crate::payment::Provider;

    pub fn payment(id: PaymentId) -> String {
        format!("PAY#{id}")
    }
    pub const PAYMENT_SK: &str = "PAY";
    pub const TOPUP_SK: &str = "TOPUP";
    /// A refund's sort key is this and the refund id.
    pub const REFUND_SK_PREFIX: &str = "REFUND#";
    /// A history entry kept apart from its payment's item: this and its
    /// place in the history's overflow, zero-padded.
    pub const HISTORY_SK_PREFIX: &str = "HIST#";

    pub fn provider_ref(provider: Provider, reference: &str) -> String {
        format!("REF#{provider}#{reference}")
    }
    pub fn merchant_ref(merchant: &MerchantId, reference: &MerchantReference) -> String {
        format!("MREF#{merchant}#{reference}")
    }
    pub const MERCHANT_REF_SK: &str = "MREF";

    pub fn page(token: &crate::ids::PageToken) -> String {
        format!("PAGE#{token}")
    }
    pub const PAGE_SK: &str = "PAGE";

    /// A wallet is the merchant's user's: `WAL#<merchant>#<user>`. Merchant
    /// ids hold no `#`, so no two (merchant, user) pairs share a key.
    pub fn wallet(merchant: &MerchantId, user: &WalletUserId) -> String {
        format!("WAL#{merchant}#{user}")
    }
    pub fn balance_sk(currency: Currency) -> String {
        format!("BAL#{currency}")
    }

    /// The UTC hour a change falls in: GSI3 places a payment by the hour
    /// of its latest change, not its instant, so a change in the same
    /// hour as the one before leaves its index entry where it is (no index
    /// write). Reconcile reads an hour only once it is closed (decision 59).
    pub fn changed_hour(at: time::OffsetDateTime) -> time::OffsetDateTime {
        let at = at.to_offset(time::UtcOffset::UTC);
        at.replace_time(time::Time::from_hms(at.hour(), 0, 0).unwrap_or(time::Time::MIDNIGHT))
    }

    /// A payment's GSI3 sort key for a change at `at`: the start of its
    /// hour, then the payment (entries written before decision 59 carry the
    /// change's own instant, which sorts within the same hour).
    pub fn changed_key(at: time::OffsetDateTime, id: crate::ids::PaymentId) -> String {
        format!("{}#{id}", super::time_key(changed_hour(at)))
    }

    /// The GSI3 partition of payments changed on `at`'s UTC day.
    pub fn changed_day(at: time::OffsetDateTime) -> String {
        let d = at.to_offset(time::UtcOffset::UTC).date();
        format!(
            "CHANGED#{:04}-{:02}-{:02}",
            d.year(),
            u8::from(d.month()),
            d.day()
        )
    }

    pub fn reconcile_run(at: time::OffsetDateTime) -> String {
        format!("RECON#{}", super::time_key(at))
    }
    pub const RECONCILE_SK: &str = "RECON";
    /// Where reconcile has checked up to (one item).
    pub const RECONCILE_CHECKPOINT: &str = "RECON#CHECKPOINT";

    pub const OPEN_PAYMENTS: &str = "OPEN#PAYMENT";
    pub const OPEN_TOPUPS: &str = "OPEN#TOPUP";
    pub const OPEN_REFUNDS: &str = "OPEN#REFUND";
    /// Top-ups whose outcome is unknown: not swept, listed for people.
    pub const UNKNOWN_TOPUPS: &str = "UNKNOWN#TOPUP";
    /// Top-ups given up (`failed`): the money sits in the wallet until a
    /// person settles them.
    pub const GIVEN_UP_TOPUPS: &str = "GIVENUP#TOPUP";
    /// Payments paygate expired that the provider may still take money for:
    /// re-checked at widening intervals (decision 46), by the next check.
    pub const LATE_PAYMENTS: &str = "LATE#PAYMENT";
    /// Pending payments whose provider has kept refusing to describe them
    /// for a day past their expiry: still swept (by due time), and listed
    /// for people.
    pub const STALE_PAYMENTS: &str = "STALE#PAYMENT";
    /// Payments in `needs_review`: listed for people, oldest first.
    pub const REVIEW_PAYMENTS: &str = "REVIEW#PAYMENT";
    /// Reconcile differences not yet acknowledged by a person.
    pub const OPEN_DIFFERENCES: &str = "OPEN#DIFFERENCE";
    pub const DIFFERENCE_SK_PREFIX: &str = "DIFF#";
}

/// Whether an update was applied (`true`) or refused by its condition
/// (`false`); any other failure is an error.
pub(crate) fn applied<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: std::error::Error + ConditionFailed + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|e| e.condition_failed()) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl Store {
    /// Puts `item` unless an item has its key: `false` when one had.
    pub(crate) async fn put_new(&self, item: Item) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        applied(result)
    }
}

/// An operation error that can say its condition was refused.
pub(crate) trait ConditionFailed {
    fn condition_failed(&self) -> bool;
}

impl ConditionFailed for aws_sdk_dynamodb::operation::update_item::UpdateItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailed for aws_sdk_dynamodb::operation::put_item::PutItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailed for aws_sdk_dynamodb::operation::delete_item::DeleteItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

/// The payment id of an item keyed `PAY#<id>` (an index item's `pk`).
pub(crate) fn item_payment_id(item: &Item) -> Result<PaymentId, StoreError> {
    let pk = item
        .get(schema::PK)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt("index item without pk".into()))?;
    pk.strip_prefix("PAY#")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("index item with pk {pk:?}")))
}

impl Store {
    /// One page of GSI2's open work in `partition` due before `before`
    /// (every item when `None`), oldest first: at most `limit` after
    /// `start`, and where the next page starts.
    pub(crate) async fn open_work(
        &self,
        partition: &str,
        before: Option<OffsetDateTime>,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let query = self
            .query_index(schema::GSI2)
            .expression_attribute_values(":open", s(partition))
            .limit(limit)
            .set_exclusive_start_key(start);
        let query = match before {
            Some(before) => query
                .key_condition_expression("gsi2pk = :open AND gsi2sk < :before")
                .expression_attribute_values(":before", s(time_key(before))),
            None => query.key_condition_expression("gsi2pk = :open"),
        };
        let out = query.send().await?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }

    /// A query of one of the table's indexes, to be given its key condition.
    pub(crate) fn query_index(&self, index: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(index)
    }

    /// Every item of the payment `id` whose sort key starts with
    /// `prefix` (its refunds, the history kept apart), in key order.
    pub(crate) async fn payment_items<T: serde::de::DeserializeOwned>(
        &self,
        id: PaymentId,
        prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(keys::payment(id)))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true);
        let mut all = Vec::new();
        self.each_page(query, |out| {
            for item in out.items.unwrap_or_default() {
                all.push(serde_dynamo::from_item(item)?);
            }
            Ok(true)
        })
        .await?;
        Ok(all)
    }

    /// Runs `query` page by page, handing each page to `page`, until the
    /// last page or until `page` answers that it has enough (`false`).
    pub(crate) async fn each_page(
        &self,
        query: QueryFluentBuilder,
        mut page: impl FnMut(QueryOutput) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut start = None;
        loop {
            let mut out = query.clone().set_exclusive_start_key(start).send().await?;
            let next = out.last_evaluated_key.take();
            if !page(out)? {
                return Ok(());
            }
            match next {
                Some(key) => start = Some(key),
                None => return Ok(()),
            }
        }
    }

    /// How many items GSI2 holds under `partition`, counted page by page.
    async fn count_open_work(&self, partition: &str) -> Result<u64, StoreError> {
        let query = self
            .query_index(schema::GSI2)
            .key_condition_expression("gsi2pk = :open")
            .expression_attribute_values(":open", s(partition))
            .select(aws_sdk_dynamodb::types::Select::Count);
        let mut total = 0u64;
        self.each_page(query, |out| {
            total += u64::try_from(out.count).unwrap_or(0);
            Ok(true)
        })
        .await?;
        Ok(total)
    }

    /// What waits for a person now, counted.
    pub async fn waiting(&self) -> Result<Waiting, StoreError> {
        Ok(Waiting {
            payments_in_review: self.count_open_work(keys::REVIEW_PAYMENTS).await?,
            refunds_pending: self.count_open_work(keys::OPEN_REFUNDS).await?,
            topups_unknown: self.count_open_work(keys::UNKNOWN_TOPUPS).await?,
            topups_given_up: self.count_open_work(keys::GIVEN_UP_TOPUPS).await?,
            differences_open: self.count_open_work(keys::OPEN_DIFFERENCES).await?,
            payments_stale: self.count_open_work(keys::STALE_PAYMENTS).await?,
        })
    }
}

/// Counts of what waits for a person (the operators' queue, by kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Waiting {
    pub payments_in_review: u64,
    pub refunds_pending: u64,
    pub topups_unknown: u64,
    pub topups_given_up: u64,
    pub differences_open: u64,
    /// Pending payments the provider has refused to describe for a day
    /// past their expiry.
    pub payments_stale: u64,
}

/// Epoch milliseconds: how times that conditions compare are stored.
pub(crate) fn millis(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000_000
}

/// The time stored as [`millis`].
pub(crate) fn from_millis(ms: i128) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(ms.checked_mul(1_000_000)?).ok()
}

/// A time as stored in text attributes: RFC 3339.
pub(crate) fn rfc3339_text(t: OffsetDateTime) -> Result<String, StoreError> {
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| StoreError::Build(e.to_string()))
}

/// A sort key for time: zero-padded epoch milliseconds, so string order is
/// time order.
pub(crate) fn time_key(t: OffsetDateTime) -> String {
    format!("{:015}", millis(t))
}

/// Whether a write failed its condition (a lost race, not an error).
pub(crate) fn is_condition_failure<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// A kept body (an event's, an idempotent answer's) inflates to at most
/// this many bytes; more is a corrupt item, never a large allocation.
pub(crate) const DEFLATED_LIMIT: usize = 256 * 1024;

/// `bytes` deflated (RFC 1951, raw) as an item keeps them: JSON shrinks to
/// about half, so an item stays one write unit.
pub(crate) fn deflated(bytes: &[u8]) -> AttributeValue {
    AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(
        miniz_oxide::deflate::compress_to_vec(bytes, 9),
    ))
}

/// What [`deflated`] kept, inflated (at most [`DEFLATED_LIMIT`] bytes);
/// `None` if it is not a deflated value or inflates to more.
pub(crate) fn inflated(value: &AttributeValue) -> Option<Vec<u8>> {
    let blob = value.as_b().ok()?;
    miniz_oxide::inflate::decompress_to_vec_with_limit(blob.as_ref(), DEFLATED_LIMIT).ok()
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Backoff between retries of a conflicting transaction: 10, 20, 40 … ms
/// with jitter, so concurrent writers spread out.
pub(crate) async fn conflict_backoff(attempt: u32) {
    let base = 10u64 << attempt.min(5);
    let jitter = u64::from(ulid::Ulid::new().random() as u16) % base;
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

pub(crate) const MAX_CONFLICT_RETRIES: u32 = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Currency, Money};
    use crate::payment::{Payment, Provider};

    /// DynamoDB deletes whatever carries the TTL attribute once its time
    /// passes: no record may use that name for a field of its own.
    #[test]
    fn no_record_uses_the_ttl_attribute_for_itself() {
        let payment = Payment::sample(Provider::Qpay, Money::new(100, Currency::Mnt).unwrap());
        let topup = TopUp::queued(
            payment.id,
            payment.merchant_id.clone(),
            "u_ttl".parse().unwrap(),
            "player1".parse().unwrap(),
            Money::new(100, Currency::Php).unwrap(),
            payment.created_at,
        );
        let refund = Refund::new(
            payment.id,
            ulid::Ulid::new(),
            payment.amount,
            true,
            payment.created_at,
        );
        let difference = KeptDifference::open(
            payment.id,
            payment.provider,
            "status",
            "completed",
            "failed",
            payment.created_at,
        );
        let items: Vec<Item> = vec![
            serde_dynamo::to_item(&payment).unwrap(),
            serde_dynamo::to_item(&topup).unwrap(),
            serde_dynamo::to_item(&refund).unwrap(),
            serde_dynamo::to_item(&difference).unwrap(),
        ];
        for item in items {
            assert!(!item.contains_key(schema::TTL), "{item:?}");
        }
        // The payment's own expiry is a field of the record.
        let payment: Item = serde_dynamo::to_item(&payment).unwrap();
        assert!(payment.contains_key("expires_at"));
    }
}
