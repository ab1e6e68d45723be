//! epayment.kz's own reply and callback shapes, its status names and callback codes.
//! Private to this folder.

use serde::Deserialize;

use crate::money::MajorAmount;
use crate::payment::PaymentStatus;

#[derive(Deserialize)]
pub(super) struct TokenReply {
    pub access_token: String,
    /// A number or a string, depending on the day.
    #[serde(default)]
    pub expires_in: Option<serde_json::Value>,
    // A `refresh_token` in the reply is never read: it must reach nobody.
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StatusReply {
    pub result_code: serde_json::Value,
    #[serde(default)]
    pub result_message: Option<String>,
    #[serde(default)]
    pub transaction: Option<Transaction>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Transaction {
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    #[serde(default)]
    pub amount: Option<MajorAmount>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub status_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Callback {
    pub invoice_id: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub amount: Option<MajorAmount>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default, rename = "secret_hash", alias = "secretHash")]
    pub secret_hash: Option<String>,
}

/// check-status's resultCode (the seed's table): 100 success, 101 reject
/// (the payment was declined), 102 invoice not found, 107 try again later;
/// any other (103 error, 104 and 109 terminal problems) is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResultCode {
    Success,
    Rejected,
    InvoiceNotFound,
    TryAgainLater,
    Other,
}

impl ResultCode {
    pub(super) fn parse(code: &str) -> ResultCode {
        match code.trim() {
            "100" => ResultCode::Success,
            "101" => ResultCode::Rejected,
            "102" => ResultCode::InvoiceNotFound,
            "107" => ResultCode::TryAgainLater,
            _ => ResultCode::Other,
        }
    }
}

/// The bank's statusName words; any other is `Other` (waiting, in our terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StatusName {
    Charge,
    Auth,
    Refund,
    Failed,
    /// CANCEL and CANCEL_OLD: an authorisation released, by the merchant
    /// or by the bank when it was left too long; the payer's funds are free
    /// again and nothing was taken.
    Cancelled,
    Other,
}

impl StatusName {
    pub(super) fn parse(name: &str) -> StatusName {
        match name.trim().to_ascii_uppercase().as_str() {
            "CHARGE" => StatusName::Charge,
            "AUTH" => StatusName::Auth,
            "REFUND" => StatusName::Refund,
            "FAILED" | "REJECT" => StatusName::Failed,
            "CANCEL" | "CANCEL_OLD" => StatusName::Cancelled,
            _ => StatusName::Other,
        }
    }

    /// A cancelled authorisation is final, as a decline is: nothing was
    /// taken and nothing can be any more.
    pub(super) fn payment_status(self) -> PaymentStatus {
        match self {
            StatusName::Charge => PaymentStatus::Completed,
            StatusName::Refund => PaymentStatus::Refunded,
            StatusName::Failed | StatusName::Cancelled => PaymentStatus::Failed,
            StatusName::Auth | StatusName::Other => PaymentStatus::Pending,
        }
    }
}

/// The callback's `code`: "ok" (paid), "error" (failed); any other is
/// `Other` (waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallbackCode {
    Ok,
    Error,
    Other,
}

impl CallbackCode {
    pub(super) fn parse(code: &str) -> CallbackCode {
        match code {
            "ok" => CallbackCode::Ok,
            "error" => CallbackCode::Error,
            _ => CallbackCode::Other,
        }
    }

    pub(super) fn payment_status(self) -> PaymentStatus {
        match self {
            CallbackCode::Ok => PaymentStatus::Completed,
            CallbackCode::Error => PaymentStatus::Failed,
            CallbackCode::Other => PaymentStatus::Pending,
        }
    }
}
