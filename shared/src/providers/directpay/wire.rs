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

/// A cash-in reply. The public client shown working against DirectPay's
/// sandbox host reads the cash-in's fields from `data` when the reply has
/// one, else from the top level (`response.data.data || response.data`,
/// fixtures/directpay SOURCES.md D6); so does paygate.
#[derive(Deserialize)]
pub(super) struct CashInReply {
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(flatten)]
    top: CashInFields,
}

impl CashInReply {
    /// The cash-in's fields, from `data` where it is an object, else from
    /// the top level; the status and message from wherever they are.
    pub fn fields(self) -> CashInFields {
        let nested = self
            .data
            .filter(serde_json::Value::is_object)
            .and_then(|d| serde_json::from_value::<CashInFields>(d).ok());
        match nested {
            Some(inner) => CashInFields {
                status: self.top.status.or(inner.status),
                message: self.top.message.or(inner.message),
                ..inner
            },
            None => self.top,
        }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct CashInFields {
    #[serde(default)]
    pub status: Option<String>,
    /// `transactionId`; D6 also reads `transaction_id` and `id`.
    #[serde(
        rename = "transactionId",
        alias = "transaction_id",
        alias = "id",
        default,
        deserialize_with = "text"
    )]
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

/// A string or a number, as text (an id may come as either).
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
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
        let cash_in = serde_json::from_slice::<CashInReply>(&fixture("gcash_cashin.reply.json"))
            .unwrap()
            .fields();
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

    /// The cash-in's fields at the top level or under `data`, as the public
    /// client shown working reads them.
    #[test]
    fn a_cash_in_reply_is_read_flat_or_under_data() {
        for name in [
            "pay_cashin.reply.assembled.json",
            "pay_cashin.reply.under_data.assembled.json",
        ] {
            let fields = serde_json::from_slice::<CashInReply>(&fixture(name))
                .unwrap()
                .fields();
            assert_eq!(fields.status.as_deref(), Some("success"), "{name}");
            assert_eq!(
                fields.transaction_id.as_deref(),
                Some("AQ202602230940389286"),
                "{name}"
            );
            assert!(fields.qrphraw.is_some() && fields.redirectionurl.is_some());
        }
        // A `data` that is not the cash-in leaves the top level in charge.
        let odd: CashInReply = serde_json::from_str(
            r#"{"status": "success", "transactionId": 42, "data": "created"}"#,
        )
        .unwrap();
        assert_eq!(odd.fields().transaction_id.as_deref(), Some("42"));
    }
}
