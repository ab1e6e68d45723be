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

/// The bank's statusName words; any other is `Other` (waiting, in our terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StatusName {
    Charge,
    Auth,
    Refund,
    Failed,
    Other,
}

impl StatusName {
    pub(super) fn parse(name: &str) -> StatusName {
        match name.trim().to_ascii_uppercase().as_str() {
            "CHARGE" => StatusName::Charge,
            "AUTH" => StatusName::Auth,
            "REFUND" => StatusName::Refund,
            "FAILED" | "REJECT" => StatusName::Failed,
            _ => StatusName::Other,
        }
    }

    pub(super) fn payment_status(self) -> PaymentStatus {
        match self {
            StatusName::Charge => PaymentStatus::Completed,
            StatusName::Refund => PaymentStatus::Refunded,
            StatusName::Failed => PaymentStatus::Failed,
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
