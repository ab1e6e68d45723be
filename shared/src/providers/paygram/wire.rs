//! Paygram's own request and response shapes and its invoice states.
//! Private to this folder.

use serde::{Deserialize, Serialize};

use crate::money::MajorAmount;
use crate::payment::PaymentStatus;

/// The legacy API's IssueInvoice body, fields in the capture's order
/// (fixtures/paygram/legacy.issue_invoice.request.curl).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct IssueInvoice<'a> {
    pub request_id: i64,
    pub user_cli_id: &'a str,
    pub currency_code: u32,
    pub amount: &'a serde_json::value::RawValue,
    pub callback_data: &'a str,
    pub merchant_type: i64,
}

/// The legacy API's InvoiceInfo body (legacy.invoice_info.request.curl).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InvoiceInfoRequest<'a> {
    pub request_id: i64,
    pub user_cli_id: &'a str,
    pub invoice_code: &'a str,
}

/// Paygram's replies: the official API's PascalCase (`ResponseCode`
/// decides; `Success`, false, is left out as a default) and the legacy
/// API's camelCase (`success` decides; the capture has no `responseCode`).
/// Either casing is read from either API, as the SDK's deserializer does.
#[derive(Deserialize)]
pub(super) struct InvoiceReply {
    #[serde(default, alias = "Success")]
    pub success: Option<bool>,
    #[serde(default, rename = "responseCode", alias = "ResponseCode")]
    pub response_code: Option<i64>,
    #[serde(default, rename = "invoiceCode", alias = "InvoiceCode")]
    pub invoice_code: Option<String>,
    #[serde(default, rename = "payUrl", alias = "PayUrl")]
    pub pay_url: Option<String>,
    /// The C# enum, as a number or its name.
    #[serde(default, alias = "Status")]
    pub status: Option<serde_json::Value>,
    /// The invoice's total, fees included (the SDK's words): what the payer
    /// paid for it (decision 54).
    #[serde(default, alias = "Amount")]
    pub amount: Option<MajorAmount>,
    /// The part of `amount` that is Paygram's fee.
    #[serde(default, rename = "expectedFee", alias = "ExpectedFee")]
    pub expected_fee: Option<MajorAmount>,
    /// The C# enum, as a number or its name.
    #[serde(default, rename = "currencyCode", alias = "CurrencyCode")]
    pub currency_code: Option<serde_json::Value>,
    #[serde(default, alias = "Message")]
    pub message: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct InvoiceInfo {
    #[serde(default)]
    pub invoicecode: Option<String>,
}

/// Both shapes, keys lower-cased before parsing (Paygram's casing varies):
/// the SDK's `UserCallbackInfo` and the seed's.
#[derive(Deserialize)]
pub(super) struct Callback {
    #[serde(default)]
    pub callbackdata: Option<String>,
    #[serde(default)]
    pub invoiceinfo: Option<InvoiceInfo>,
    #[serde(default)]
    pub balanceinfo: Option<serde_json::Value>,
    #[serde(default)]
    pub withdrawinfo: Option<serde_json::Value>,
    #[serde(default)]
    pub moneysentinfo: Option<serde_json::Value>,
    #[serde(default, alias = "invoice_code")]
    pub invoicecode: Option<String>,
    /// The seed's word ("paid"), or the enum as a number or name.
    #[serde(default)]
    pub status: Option<serde_json::Value>,
}

/// What a callback is about: the SDK's `UserCallbackTypes`, decided as
/// `UserCallbackInfo.CallbackType` decides it (by which object the
/// callback carries, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallbackKind {
    /// `BalanceInfo`: the account's balance changed.
    Balance,
    /// `WithdrawInfo`: a withdrawal.
    Withdraw,
    /// `InvoiceInfoCredited` or `InvoiceInfoDebited`: money moved on an
    /// invoice.
    Invoice,
    /// `MoneySent`: a direct transfer.
    MoneySent,
    /// `CallbackInfo`: none of those objects (the seed's shape is one).
    Other,
}

impl CallbackKind {
    pub(super) fn of(callback: &Callback) -> CallbackKind {
        if callback.balanceinfo.is_some() {
            CallbackKind::Balance
        } else if callback.withdrawinfo.is_some() {
            CallbackKind::Withdraw
        } else if callback.invoiceinfo.is_some() {
            CallbackKind::Invoice
        } else if callback.moneysentinfo.is_some() {
            CallbackKind::MoneySent
        } else {
            CallbackKind::Other
        }
    }

    /// Whether the callback can concern one of our invoices; the others
    /// are answered and change nothing.
    pub(super) fn about_an_invoice(self) -> bool {
        match self {
            CallbackKind::Invoice | CallbackKind::Other => true,
            CallbackKind::Balance | CallbackKind::Withdraw | CallbackKind::MoneySent => false,
        }
    }

    pub(super) fn word(self) -> &'static str {
        match self {
            CallbackKind::Balance => "balance_info",
            CallbackKind::Withdraw => "withdraw_info",
            CallbackKind::Invoice => "invoice_info",
            CallbackKind::MoneySent => "money_sent",
            CallbackKind::Other => "callback_info",
        }
    }
}

/// A Paygram invoice's state, from its code or the seed's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InvoiceState {
    Requested,
    Completed,
    Cancelled,
    Ongoing,
    Error,
    Denied,
    Accepted,
    /// The seed's `expired` word (no code says it).
    Expired,
    Unknown,
}

impl InvoiceState {
    pub(super) fn from_code(code: i64) -> InvoiceState {
        match code {
            1 => InvoiceState::Requested,
            2 => InvoiceState::Completed,
            3 => InvoiceState::Cancelled,
            4 => InvoiceState::Ongoing,
            5 => InvoiceState::Error,
            7 => InvoiceState::Denied,
            8 => InvoiceState::Accepted,
            _ => InvoiceState::Unknown,
        }
    }

    pub(super) fn from_word(word: &str) -> InvoiceState {
        match word.trim().to_ascii_lowercase().as_str() {
            "paid" | "completed" | "success" => InvoiceState::Completed,
            "expired" => InvoiceState::Expired,
            "cancelled" | "canceled" => InvoiceState::Cancelled,
            "failed" => InvoiceState::Error,
            "denied" => InvoiceState::Denied,
            _ => InvoiceState::Unknown,
        }
    }

    pub(super) fn payment_status(self) -> PaymentStatus {
        match self {
            InvoiceState::Completed => PaymentStatus::Completed,
            InvoiceState::Expired => PaymentStatus::Expired,
            InvoiceState::Cancelled | InvoiceState::Error | InvoiceState::Denied => {
                PaymentStatus::Failed
            }
            InvoiceState::Requested
            | InvoiceState::Ongoing
            | InvoiceState::Accepted
            | InvoiceState::Unknown => PaymentStatus::Pending,
        }
    }
}
