//! ToyyibPay's own reply shapes and its bill states.
//! Private to this folder.

use serde::Deserialize;

use crate::payment::PaymentStatus;

#[derive(Deserialize)]
pub(super) struct Row {
    #[serde(rename = "billpaymentStatus", default)]
    pub status: Option<String>,
    #[serde(rename = "billpaymentAmount", default)]
    pub amount: Option<serde_json::Value>,
}

/// A bill payment's status code; any other is `Unknown` (waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BillStatus {
    Success,
    Pending,
    Failed,
    PendingOther,
    Unknown,
}

impl BillStatus {
    pub(super) fn parse(code: &str) -> BillStatus {
        match code.trim() {
            "1" => BillStatus::Success,
            "2" => BillStatus::Pending,
            "3" => BillStatus::Failed,
            "4" => BillStatus::PendingOther,
            _ => BillStatus::Unknown,
        }
    }

    /// A failed attempt (3) leaves the bill payable: the payer may try FPX
    /// again on the same bill, so the payment stays pending until a later
    /// attempt succeeds or the payment expires (decision 18).
    pub(super) fn payment_status(self) -> PaymentStatus {
        match self {
            BillStatus::Success => PaymentStatus::Completed,
            BillStatus::Failed
            | BillStatus::Pending
            | BillStatus::PendingOther
            | BillStatus::Unknown => PaymentStatus::Pending,
        }
    }
}
