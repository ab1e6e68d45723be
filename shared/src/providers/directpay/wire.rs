//! DirectPay's own request and response shapes. Private to this folder.

use serde::{Deserialize, Serialize};

use crate::money::MajorAmount;

#[derive(Deserialize)]
pub(super) struct CsrfReply {
    pub csrf_token: String,
}

#[derive(Serialize)]
pub(super) struct LoginRequest<'a> {
    pub username: &'a str,
    pub password: &'a str,
    /// The legacy login repeats the CSRF token in the body.
    #[serde(rename = "_csrf", skip_serializing_if = "Option::is_none")]
    pub csrf: Option<&'a str>,
}

#[derive(Deserialize)]
pub(super) struct LoginReply {
    #[serde(default)]
    pub data: Option<LoginData>,
    /// The legacy login answers `{token}` at the top level.
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Serialize)]
pub(super) struct LegacyQrRequest<'a> {
    pub amount: &'a serde_json::value::RawValue,
    pub webhook_url: &'a str,
    pub redirect_url: &'a str,
    pub merchantpaymentreferences: &'a str,
}

#[derive(Deserialize)]
pub(super) struct LegacyQrReply {
    #[serde(default)]
    pub success: bool,
    #[serde(default, rename = "qrCodeUrl")]
    pub qr_code_url: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct LegacyStatusReply {
    #[serde(default)]
    pub status: Option<String>,
    /// The seed's reply carries `details` of no documented shape; an
    /// `amount` there (or beside `status`) is read, else a completion goes
    /// to review.
    #[serde(default)]
    pub amount: Option<crate::money::MajorAmount>,
    #[serde(default)]
    pub details: Option<LegacyDetails>,
}

#[derive(Deserialize, Default)]
pub(super) struct LegacyDetails {
    #[serde(default)]
    pub amount: Option<crate::money::MajorAmount>,
}

#[derive(Deserialize)]
pub(super) struct LoginData {
    pub token: String,
}

#[derive(Serialize)]
pub(super) struct CashInRequest<'a> {
    /// Pesos as a JSON number, written from the exact decimal text.
    pub amount: &'a serde_json::value::RawValue,
    pub webhook: &'a str,
    #[serde(rename = "redirectUrl")]
    pub redirect_url: &'a str,
    pub merchantpaymentreferences: &'a str,
}

#[derive(Deserialize)]
pub(super) struct CashInReply {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(rename = "transactionId", default)]
    pub transaction_id: Option<String>,
    #[serde(default)]
    pub link: Option<String>,
    /// The checkout URL in the newer API's reply, read before `link` as
    /// public clients do (`redirectionurl || link`, fixtures/directpay).
    #[serde(default)]
    pub redirectionurl: Option<String>,
    #[serde(default)]
    pub qrphraw: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct StatusReply {
    #[serde(default)]
    pub total_amount: Option<MajorAmount>,
    #[serde(default)]
    pub transaction_status: Option<String>,
}

/// DirectPay's transaction states as seen in public integrations. Unknown
/// words are kept as pending: only an explicit success or failure moves a
/// payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransactionStatus {
    Success,
    Pending,
    Failed,
    Expired,
    Unknown,
}

impl TransactionStatus {
    pub fn parse(word: &str) -> TransactionStatus {
        match word.trim().to_ascii_uppercase().as_str() {
            "SUCCESS" | "SUCCESSFUL" | "PAID" | "COMPLETED" => TransactionStatus::Success,
            "PENDING" | "PROCESSING" | "NEW" => TransactionStatus::Pending,
            "FAILED" | "FAIL" | "CANCELLED" | "DECLINED" => TransactionStatus::Failed,
            "EXPIRED" => TransactionStatus::Expired,
            _ => TransactionStatus::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        crate::providers::fixture("directpay", name)
    }

    #[test]
    fn directpays_documented_replies_are_read() {
        let csrf: CsrfReply = serde_json::from_slice(&fixture("csrf_token.reply.json")).unwrap();
        assert_eq!(csrf.csrf_token.len(), 64);
        let login: LoginReply = serde_json::from_slice(&fixture("login.reply.json")).unwrap();
        assert_eq!(login.data.map(|d| d.token.len()), Some(96));
        let cash_in: CashInReply =
            serde_json::from_slice(&fixture("gcash_cashin.reply.json")).unwrap();
        assert_eq!(cash_in.status.as_deref(), Some("success"));
        assert_eq!(
            cash_in.transaction_id.as_deref(),
            Some("ref_4e748771b7a37ca4")
        );
        assert_eq!(
            cash_in.redirectionurl.or(cash_in.link).as_deref(),
            Some("https://payment.infinitipay.co/tx/9168725")
        );
    }
}
