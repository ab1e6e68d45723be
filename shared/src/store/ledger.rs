//! Wallet balances and the ledger: one immutable entry per (payment,
//! purpose), written in the same transaction as the balance it changes.
//!
//! The entry's sort key is `ENT#<payment>#<purpose>`, so a second credit or
//! debit for the same purpose fails its `attribute_not_exists` condition and
//! the whole transaction with it. The sparse local index LSI1 orders a
//! wallet's entries by time for listing.

use aws_sdk_dynamodb::types::{
    Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    conflict_backoff, keys, n, s, schema, time_key, Cancelled, Item, ItemKind, Store, StoreError,
    Write, MAX_CONFLICT_RETRIES,
};
use crate::ids::{MerchantId, PaymentId, WalletUserId};
use crate::money::{Currency, Money};

/// Which way money moves in a wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Credit,
    Debit,
}

/// Why a ledger entry exists; at most one entry per payment and purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerPurpose {
    /// A completed payment credits the wallet.
    Deposit,
    /// The deposit moved on to the casino.
    CasinoTransfer,
    /// One refund of the payment, by refund id (held when the refund is
    /// reserved).
    Refund(ulid::Ulid),
    /// The hold of a refund the provider refused, given back.
    RefundReversal(ulid::Ulid),
}

impl LedgerPurpose {
    pub fn kind(&self) -> EntryKind {
        match self {
            LedgerPurpose::Deposit | LedgerPurpose::RefundReversal(_) => EntryKind::Credit,
            LedgerPurpose::CasinoTransfer | LedgerPurpose::Refund(_) => EntryKind::Debit,
        }
    }

    fn key(&self) -> String {
        match self {
            LedgerPurpose::Deposit => "deposit".into(),
            LedgerPurpose::CasinoTransfer => "casino_transfer".into(),
            LedgerPurpose::Refund(id) => format!("refund:{id}"),
            LedgerPurpose::RefundReversal(id) => format!("refund_reversal:{id}"),
        }
    }

    fn parse(key: &str) -> Option<LedgerPurpose> {
        match key {
            "deposit" => Some(LedgerPurpose::Deposit),
            "casino_transfer" => Some(LedgerPurpose::CasinoTransfer),
            other => {
                let id = |prefix: &str| {
                    other
                        .strip_prefix(prefix)
                        .and_then(|id| ulid::Ulid::from_string(id).ok())
                };
                id("refund:")
                    .map(LedgerPurpose::Refund)
                    .or_else(|| id("refund_reversal:").map(LedgerPurpose::RefundReversal))
            }
        }
    }
}

/// One movement of money in a wallet. A wallet is the merchant's user's:
/// another merchant's user of the same id is another wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub merchant: MerchantId,
    pub user: WalletUserId,
    pub payment_id: PaymentId,
    pub purpose: LedgerPurpose,
    pub amount: Money,
    pub at: OffsetDateTime,
    pub memo: String,
}

impl LedgerEntry {
    /// Stable id of the entry: `<payment>:<purpose>`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.payment_id, self.purpose.key())
    }

    pub fn kind(&self) -> EntryKind {
        self.purpose.kind()
    }
}

/// A wallet's balance in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub amount: Money,
    pub updated_at: OffsetDateTime,
}

/// How [`Store::post_entry`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    Posted,
    /// This (payment, purpose) has an entry already; nothing changed.
    AlreadyPosted,
    /// A debit larger than the balance; nothing changed.
    InsufficientFunds,
}

#[derive(Serialize, Deserialize)]
struct EntryRecord {
    payment_id: PaymentId,
    purpose: String,
    kind: EntryKind,
    amount: i64,
    currency: Currency,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    memo: String,
}

#[derive(Deserialize)]
struct BalanceRecord {
    balance: i64,
    currency: Currency,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

fn entry_sk(payment: PaymentId, purpose: &LedgerPurpose) -> String {
    format!("ENT#{payment}#{}", purpose.key())
}

impl Store {
    /// The two writes that post `entry`: the entry itself (refused if this
    /// payment and purpose has one already) and its balance change (a debit
    /// is refused if the balance is too small). Put them in a transaction
    /// with whatever else must happen together.
    pub fn ledger_writes(&self, entry: &LedgerEntry) -> Result<[Write; 2], StoreError> {
        let record = EntryRecord {
            payment_id: entry.payment_id,
            purpose: entry.purpose.key(),
            kind: entry.kind(),
            amount: entry.amount.minor(),
            currency: entry.amount.currency(),
            at: entry.at,
            memo: entry.memo.clone(),
        };
        let mut item: Item = serde_dynamo::to_item(&record)?;
        let pk = keys::wallet(&entry.merchant, &entry.user);
        item.insert(schema::PK.into(), s(pk.clone()));
        item.insert(
            schema::SK.into(),
            s(entry_sk(entry.payment_id, &entry.purpose)),
        );
        item.insert(
            schema::LSI1_SK.into(),
            s(format!(
                "ENT#{}#{}#{}",
                time_key(entry.at),
                entry.payment_id,
                entry.purpose.key()
            )),
        );
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;

        let at = entry
            .at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| StoreError::Build(e.to_string()))?;
        let minor = entry.amount.minor();
        let update = Update::builder()
            .table_name(&self.table)
            .key(schema::PK, s(pk))
            .key(schema::SK, s(keys::balance_sk(entry.amount.currency())))
            .expression_attribute_values(":at", s(at))
            .expression_attribute_values(":currency", s(entry.amount.currency().code()))
            .expression_attribute_values(":one", n(1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let update = match entry.kind() {
            EntryKind::Credit => update
                .update_expression(
                    "SET updated_at = :at, currency = :currency ADD balance :amount, version :one",
                )
                .expression_attribute_values(":amount", n(minor)),
            EntryKind::Debit => update
                .update_expression(
                    "SET updated_at = :at, currency = :currency ADD balance :negative, version :one",
                )
                .condition_expression("balance >= :amount")
                .expression_attribute_values(":amount", n(minor))
                .expression_attribute_values(":negative", n(-minor)),
        }
        .build()?;
        Ok([
            Write {
                what: ItemKind::LedgerEntry,
                item: TransactWriteItem::builder().put(put).build(),
            },
            Write {
                what: ItemKind::WalletBalance,
                item: TransactWriteItem::builder().update(update).build(),
            },
        ])
    }

    /// Posts one entry on its own, exactly once.
    pub async fn post_entry(&self, entry: &LedgerEntry) -> Result<PostOutcome, StoreError> {
        let writes = self.ledger_writes(entry)?.to_vec();
        for attempt in 0..MAX_CONFLICT_RETRIES {
            match self.transact(writes.clone()).await? {
                Ok(()) => return Ok(PostOutcome::Posted),
                Err(Cancelled::Condition { index: 0, .. }) => {
                    return Ok(PostOutcome::AlreadyPosted)
                }
                Err(Cancelled::Condition { .. }) => return Ok(PostOutcome::InsufficientFunds),
                Err(Cancelled::Conflict) => conflict_backoff(attempt).await,
            }
        }
        Err(StoreError::Contention)
    }

    /// Every balance of the merchant's wallet, by currency.
    pub async fn balances(
        &self,
        merchant: &MerchantId,
        user: &WalletUserId,
    ) -> Result<Vec<Balance>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :bal)")
            .expression_attribute_values(":pk", s(keys::wallet(merchant, user)))
            .expression_attribute_values(":bal", s("BAL#"))
            .consistent_read(true)
            .send()
            .await?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let r: BalanceRecord = serde_dynamo::from_item(item)?;
                Ok(Balance {
                    amount: Money::new(r.balance, r.currency)
                        .map_err(|e| StoreError::Corrupt(format!("balance: {e}")))?,
                    updated_at: r.updated_at,
                })
            })
            .collect()
    }

    /// The wallet's balance in one currency (zero if it has none).
    pub async fn balance(
        &self,
        merchant: &MerchantId,
        user: &WalletUserId,
        currency: Currency,
    ) -> Result<Money, StoreError> {
        Ok(self
            .balances(merchant, user)
            .await?
            .into_iter()
            .find(|b| b.amount.currency() == currency)
            .map_or(Money::zero(currency), |b| b.amount))
    }

    /// One page of the wallet's entries, newest first: at most `limit`,
    /// after `cursor` (from the previous page), and the cursor of the next
    /// page when there may be one.
    pub async fn ledger_entries(
        &self,
        merchant: &MerchantId,
        user: &WalletUserId,
        limit: i32,
        cursor: Option<&EntryCursor>,
    ) -> Result<(Vec<LedgerEntry>, Option<EntryCursor>), StoreError> {
        let pk = keys::wallet(merchant, user);
        let start = cursor.map(|c| {
            Item::from([
                (schema::PK.to_string(), s(pk.clone())),
                (schema::SK.to_string(), s(c.sk.clone())),
                (schema::LSI1_SK.to_string(), s(c.lsi1sk.clone())),
            ])
        });
        let out = self
            .query_index(schema::LSI1)
            .key_condition_expression("pk = :pk AND begins_with(lsi1sk, :ent)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":ent", s("ENT#"))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        let next = out
            .last_evaluated_key
            .and_then(|key| EntryCursor::from_index_key(key.get(schema::LSI1_SK)?.as_s().ok()?));
        let entries = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let r: EntryRecord = serde_dynamo::from_item(item)?;
                let purpose = LedgerPurpose::parse(&r.purpose).ok_or_else(|| {
                    StoreError::Corrupt(format!("ledger purpose {:?}", r.purpose))
                })?;
                Ok(LedgerEntry {
                    merchant: merchant.clone(),
                    user: user.clone(),
                    payment_id: r.payment_id,
                    purpose,
                    amount: Money::new(r.amount, r.currency)
                        .map_err(|e| StoreError::Corrupt(format!("ledger amount: {e}")))?,
                    at: r.at,
                    memo: r.memo,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((entries, next))
    }
}

/// Where the next page of a wallet's entries starts: the last entry's keys.
/// The wallet itself is never in it, so a cursor cannot reach another
/// merchant's or user's wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCursor {
    sk: String,
    lsi1sk: String,
}

impl EntryCursor {
    /// From the last entry's index key, `ENT#<time>#<payment>#<purpose>`.
    fn from_index_key(lsi1sk: &str) -> Option<EntryCursor> {
        let mut parts = lsi1sk.strip_prefix("ENT#")?.splitn(3, '#');
        let (time, payment, purpose) = (parts.next()?, parts.next()?, parts.next()?);
        Self::from_parts(time, payment, purpose)
    }

    fn from_parts(time: &str, payment: &str, purpose: &str) -> Option<EntryCursor> {
        if time.len() != 15 || !time.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let payment: PaymentId = payment.parse().ok()?;
        let purpose = LedgerPurpose::parse(purpose)?;
        Some(EntryCursor {
            sk: entry_sk(payment, &purpose),
            lsi1sk: format!("ENT#{time}#{payment}#{}", purpose.key()),
        })
    }

    /// The cursor as merchants see it: `<time>.<payment>.<purpose>` of the
    /// last entry given (every character URL-safe).
    pub fn encode(&self) -> String {
        self.lsi1sk
            .strip_prefix("ENT#")
            .unwrap_or(&self.lsi1sk)
            .replace('#', ".")
    }

    /// A cursor a merchant sent back: any well-formed one is a place in
    /// that merchant's own wallet to start from.
    pub fn decode(text: &str) -> Option<EntryCursor> {
        let mut parts = text.splitn(3, '.');
        let (time, payment, purpose) = (parts.next()?, parts.next()?, parts.next()?);
        Self::from_parts(time, payment, purpose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_is_not_ours() {
        let payment = PaymentId::generate();
        let refund = ulid::Ulid::new();
        for purpose in [LedgerPurpose::Deposit, LedgerPurpose::Refund(refund)] {
            let c = EntryCursor::from_index_key(&format!(
                "ENT#001700000000000#{payment}#{}",
                purpose.key()
            ))
            .unwrap();
            assert_eq!(c.sk, entry_sk(payment, &purpose));
            assert_eq!(EntryCursor::decode(&c.encode()), Some(c.clone()));
            assert!(c
                .encode()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)));
        }
        for bad in [
            "",
            "not a cursor",
            "001700000000000.pay_x.deposit",
            &format!("17.{payment}.deposit"),
            &format!("001700000000000.{payment}.withdrawal"),
            &format!("001700000000000.{payment}.deposit.more"),
        ] {
            assert_eq!(EntryCursor::decode(bad), None, "{bad}");
        }
    }
}
