//! QPay's own request and response shapes and its payment states.
//! Private to this folder.

use serde::Deserialize;

use crate::money::MajorAmount;
use crate::payment::{AppLink, PaymentStatus};

#[derive(Deserialize)]
pub(super) struct TokenReply {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}

impl TokenReply {
    /// A refresh's answer, when it is a whole token reply: QPay's developer
    /// page shows the refresh answering `{}` (fixtures/qpay/
    /// auth_refresh.reply.official.json), so one without a refresh token
    /// (or without the access token) is no answer to use, and the client
    /// logs in again with Basic auth instead.
    pub fn of_refresh(body: &[u8]) -> Option<TokenReply> {
        serde_json::from_slice::<TokenReply>(body)
            .ok()
            .filter(|t| !t.access_token.is_empty() && !t.refresh_token.is_empty())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) struct InvoiceReply {
    pub invoice_id: String,
    #[serde(default)]
    pub qr_text: Option<String>,
    #[serde(default)]
    pub qr_image: Option<String>,
    #[serde(default, rename = "qPay_shortUrl")]
    pub short_url: Option<String>,
    /// The bank apps' deep links. A link without a name or target is left
    /// out; an odd one never fails the invoice.
    #[serde(default, deserialize_with = "app_links")]
    pub urls: Vec<AppLink>,
}

#[derive(Deserialize)]
pub(super) struct CheckReply {
    #[serde(default)]
    pub rows: Vec<Row>,
}

#[derive(Deserialize)]
pub(super) struct Row {
    pub payment_id: serde_json::Value,
    pub payment_status: String,
    #[serde(default)]
    pub payment_amount: Option<MajorAmount>,
    #[serde(default)]
    pub payment_currency: Option<String>,
    /// CARD or P2P: `payment_type` in payment/check's rows (QPay's
    /// specification), `transaction_type` where a client or payment/get
    /// names it so; both are taken.
    #[serde(default, alias = "transaction_type")]
    pub payment_type: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct SeedBody {
    #[serde(default)]
    pub payment_status: Option<String>,
    #[serde(default)]
    pub object_id: Option<String>,
}

/// QPay's payment_status words (payment/check rows and callbacks: NEW,
/// FAILED, PAID, REFUNDED, and the seed's REFUND), matched as QPay sends
/// them; any other is `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PaymentState {
    New,
    Failed,
    Paid,
    Refunded,
    Unknown,
}

impl PaymentState {
    pub(super) fn parse(word: &str) -> PaymentState {
        match word {
            "NEW" => PaymentState::New,
            "FAILED" => PaymentState::Failed,
            "PAID" => PaymentState::Paid,
            "REFUNDED" | "REFUND" => PaymentState::Refunded,
            _ => PaymentState::Unknown,
        }
    }

    /// What one callback says of its payment: paid, or not yet (a refund
    /// or a failed attempt is learned from payment/check, not a callback).
    pub(super) fn of_callback(self) -> PaymentStatus {
        match self {
            PaymentState::Paid => PaymentStatus::Completed,
            PaymentState::New
            | PaymentState::Failed
            | PaymentState::Refunded
            | PaymentState::Unknown => PaymentStatus::Pending,
        }
    }
}

/// The invoice's bank-app links that carry a name and a link; others are
/// dropped rather than failing the invoice.
fn app_links<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<AppLink>, D::Error> {
    let raw = Option::<Vec<serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .filter_map(|v| serde_json::from_value::<AppLink>(v).ok())
        .filter(|l| !l.name.is_empty() && !l.link.is_empty())
        .collect())
}
