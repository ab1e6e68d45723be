//! The Payment Engine's own reply and event shapes and its transaction states.
//! Private to this folder.

use serde::Deserialize;

use crate::money::{Currency, MajorAmount, Money};
use crate::payment::PaymentStatus;

#[derive(Deserialize)]
pub(super) struct TokenReply {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// What the Payment Engine says of a transaction: its create and status
/// replies, and an event's `data`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Transaction {
    /// The replies' id for it (a string, or a number).
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    /// An event's name for the same id.
    #[serde(default)]
    pub transaction_id: Option<String>,
    #[serde(default, alias = "externalReference")]
    pub transaction_reference: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub amount: Option<MajorAmount>,
    #[serde(default)]
    pub currency_code: Option<String>,
}

impl Transaction {
    /// The amount as money of its currency, when both are given; why not
    /// when they do not make money.
    pub(super) fn money(&self) -> Result<Option<Money>, String> {
        let (Some(amount), Some(code)) = (&self.amount, &self.currency_code) else {
            return Ok(None);
        };
        let currency = Currency::from_code_ignore_case(code).map_err(|e| e.to_string())?;
        amount
            .to_money(currency)
            .map(Some)
            .map_err(|e| format!("amount: {e}"))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BalanceReply {
    pub available_balance: MajorAmount,
    pub currency_code: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Event {
    pub event_id: String,
    pub event_type: String,
    #[serde(default)]
    pub data: Transaction,
}

/// A transaction's status word (the guide's PENDING, PROCESSING, COMPLETED,
/// FAILED, REJECTED, CANCELLED); any other is `Unknown` (waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransactionStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Rejected,
    Cancelled,
    Unknown,
}

impl TransactionStatus {
    pub(super) fn parse(word: &str) -> TransactionStatus {
        match word.trim().to_ascii_uppercase().as_str() {
            "PENDING" => TransactionStatus::Pending,
            "PROCESSING" => TransactionStatus::Processing,
            "COMPLETED" => TransactionStatus::Completed,
            "FAILED" => TransactionStatus::Failed,
            "REJECTED" => TransactionStatus::Rejected,
            "CANCELLED" => TransactionStatus::Cancelled,
            _ => TransactionStatus::Unknown,
        }
    }

    pub(super) fn payment_status(self) -> PaymentStatus {
        match self {
            TransactionStatus::Completed => PaymentStatus::Completed,
            TransactionStatus::Failed
            | TransactionStatus::Rejected
            | TransactionStatus::Cancelled => PaymentStatus::Failed,
            TransactionStatus::Pending
            | TransactionStatus::Processing
            | TransactionStatus::Unknown => PaymentStatus::Pending,
        }
    }
}
