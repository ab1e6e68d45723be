//! Payment providers. Each has a folder: `wire.rs` holds the provider's own
//! request, response and callback types (private to the folder), `client.rs`
//! its outbound calls, and the mapping to our types lives beside them. The
//! rest of paygate sees only our types.
//!
//! Integration failures (we could not reach, authenticate, encode, decode)
//! are [`ProviderError`]s; a provider's decline of a payment is data.

use std::collections::HashMap;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::ids::{PaymentId, ProviderReference};
use crate::money::{Currency, MajorAmount, Money, MoneyError};
use crate::payment::{Checkout, Customer, Payment, PaymentStatus, Provider};

pub mod casino;
pub mod description;
pub mod directpay;
pub mod epayment;
pub mod paygram;
pub mod payment_engine;
pub mod qpay;
pub mod registry;
pub mod session;
pub mod toyyibpay;
pub mod transport;

/// What a gateway needs to create a payment at the provider.
#[derive(Debug, Clone)]
pub struct CreateRequest<'a> {
    pub payment_id: PaymentId,
    pub amount: Money,
    pub description: Option<&'a str>,
    pub customer: &'a Customer,
    pub return_url: Option<&'a str>,
    pub method: Option<&'a str>,
    /// Where the provider should send its callbacks for this payment.
    pub webhook_url: &'a str,
    /// A number of the provider's own sequence in the table, never given
    /// twice, for providers whose reference must be one we allocate
    /// ([`description::Description::needs_sequence`]): epayment.kz's invoiceID.
    pub sequence: Option<u64>,
    /// When the payment expires, for providers that let a bill carry its
    /// own expiry (ToyyibPay's billExpiryDate).
    pub expires_at: OffsetDateTime,
}

/// The provider's answer to a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub provider_reference: ProviderReference,
    pub checkout: Checkout,
    /// When the provider will stop accepting payment, if it says.
    pub expires_at: Option<OffsetDateTime>,
}

/// What the provider says about a payment, in our terms: the only thing
/// that moves money. `status` is Pending, Completed, Failed or Expired, or
/// Refunded where the provider says the payment was paid and then given
/// back (epayment.kz `REFUND`, QPay `REFUNDED`): never a reason to credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    pub status: PaymentStatus,
    /// The amount the provider says was paid, when it says.
    pub amount: Option<Money>,
    /// The provider's own word for the state.
    pub provider_status: String,
}

/// What a provider says it has refunded of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderRefunds {
    /// The provider's total refunded so far (zero: nothing).
    Total(Money),
    /// The whole payment shows as refunded; the provider gives no amount.
    Whole,
    /// The payment still shows as paid: no refund of the whole of it was
    /// made (a partial one may not show).
    NotWhole,
}

/// A payment provider's outbound API, as the flows use it.
#[async_trait]
pub trait Gateway: Send + Sync {
    fn provider(&self) -> Provider;

    async fn create(&self, request: &CreateRequest<'_>) -> Result<Created, ProviderError>;

    /// Asks the provider about `payment` (the confirmation of a callback,
    /// a poll, a sweep).
    async fn status(&self, payment: &Payment) -> Result<Confirmation, ProviderError>;

    /// Gives `amount` of a completed payment back to the payer. `refund_id`
    /// is ours, one per attempt (never sent twice).
    async fn refund(
        &self,
        _payment: &Payment,
        _amount: Money,
        _refund_id: &str,
    ) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported {
            provider: self.provider().as_str(),
            operation: "refund",
        })
    }

    /// What the provider has refunded of `payment`, for settling a refund
    /// whose answer was lost and for reconcile. Providers without a refund
    /// API, or without a way to ask, answer `Unsupported`.
    async fn refunds(&self, _payment: &Payment) -> Result<ProviderRefunds, ProviderError> {
        Err(ProviderError::Unsupported {
            provider: self.provider().as_str(),
            operation: "report refunds",
        })
    }

    /// Stops an unpaid payment at the provider, so it can no longer be paid.
    async fn cancel(&self, _payment: &Payment) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported {
            provider: self.provider().as_str(),
            operation: "cancel",
        })
    }

    /// Closes an unpaid payment at the provider when paygate expires it,
    /// so no money can arrive for it afterwards: `Ok(true)` when the
    /// provider's answer proves it closed, `Ok(false)` where its API has no
    /// such call (the payment is then watched for late money, decision 46).
    async fn close(&self, _payment: &Payment) -> Result<bool, ProviderError> {
        Ok(false)
    }

    /// The balance the provider reports for our account (its name and
    /// amount), for operators; `None` where its API has no balance call.
    async fn balance(&self) -> Result<Option<(String, Money)>, ProviderError> {
        Ok(None)
    }
}

/// An inbound callback as it arrived, before any parsing.
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    pub method: String,
    /// Path parameters of the route (`{secret}` for Paygram).
    pub path: HashMap<String, String>,
    pub query: HashMap<String, String>,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// Which payment a callback speaks of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentRef {
    /// Our id, which we gave the provider as its merchant reference.
    Ours(PaymentId),
    /// The provider's reference only.
    Provider(String),
    /// One of these is the provider's reference, most likely first (a
    /// callback whose sources disagree on which field carries it).
    ProviderOneOf(Vec<String>),
    /// An event about no payment (an account balance, say).
    None,
}

/// A callback mapped to our terms. Unless `verified`, it is a hint: the
/// payment is confirmed with the provider before anything changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    pub payment: PaymentRef,
    pub status: PaymentStatus,
    pub amount: Option<Money>,
    pub provider_status: String,
    pub verified: bool,
    /// The provider's id of the delivery, where it gives one: recorded so a
    /// replay is recognised.
    pub event_id: Option<String>,
    /// The provider's own reference of the payment, as the event names it.
    /// A verified event must name the reference we stored, or it is refused.
    pub provider_reference: Option<String>,
}

impl WebhookEvent {
    /// An unsigned callback: a hint about `payment`, confirmed with the
    /// provider before anything moves.
    pub fn unverified(
        payment: PaymentRef,
        status: PaymentStatus,
        amount: Option<Money>,
        provider_status: String,
    ) -> WebhookEvent {
        WebhookEvent {
            payment,
            status,
            amount,
            provider_status,
            verified: false,
            event_id: None,
            provider_reference: None,
        }
    }
}

/// Why a callback was refused; nothing is written for either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// 401: signature, hash or URL secret wrong or missing.
    #[error("callback authentication failed: {0}")]
    Unauthenticated(&'static str),
    /// 400: not a callback of the shape we know.
    /// The text is scrubbed of quoted values when shown (`http::scrub`).
    #[error("malformed callback: {}", crate::responses::scrub(.0))]
    Malformed(String),
}

/// A provider's inbound callbacks: verify the raw request, parse it once,
/// map it to our terms.
pub trait WebhookSource: Send + Sync {
    fn provider(&self) -> Provider;

    fn parse(&self, request: &WebhookRequest) -> Result<WebhookEvent, WebhookError>;
}

/// Why a call to a provider did not produce an answer we can use. Never
/// carries credentials: bodies are cut short and URLs are left out.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{provider} did not answer in time ({attempts} attempts)")]
    Timeout {
        provider: &'static str,
        attempts: u32,
    },
    #[error("{provider} is unavailable after {attempts} attempts: {reason}")]
    Unavailable {
        provider: &'static str,
        attempts: u32,
        reason: String,
    },
    /// Nothing was sent: no connection, or no client to send with.
    #[error("{provider} could not be reached: {reason}")]
    Unreachable {
        provider: &'static str,
        reason: String,
    },
    /// The request went out but the exchange broke before a whole answer
    /// came back (a reset, a body cut short): the provider may have acted.
    #[error("{provider} stopped answering part way: {reason}")]
    Interrupted {
        provider: &'static str,
        reason: String,
    },
    #[error("{provider} refused our credentials: {reason}")]
    Auth {
        provider: &'static str,
        reason: String,
    },
    /// The provider answered with an error of its own.
    #[error("{provider} rejected the request: {code}: {message}")]
    Rejected {
        provider: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// The provider answered, but not in a way that says whether the call
    /// was acted on: an undocumented status, a 4xx to a transfer that was
    /// sent, a refund made on some of a payment's rows and refused on
    /// another. Never read as "not done".
    #[error("{provider} gave an answer that does not say what happened: {}", crate::responses::scrub(.reason))]
    Ambiguous {
        provider: &'static str,
        reason: String,
    },
    #[error("{provider} sent an answer we cannot read: {}", crate::responses::scrub(.reason))]
    Decode {
        provider: &'static str,
        reason: String,
    },
    #[error("{provider} cannot {operation}")]
    Unsupported {
        provider: &'static str,
        operation: &'static str,
    },
    #[error("{provider} has no such payment: {reference}")]
    NotFound {
        provider: &'static str,
        reference: String,
    },
    #[error("amount cannot be sent to {provider}: {source}")]
    Amount {
        provider: &'static str,
        source: MoneyError,
    },
}

impl ProviderError {
    /// Retries were used up or the provider did not answer: API.md's 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ProviderError::Timeout { .. }
                | ProviderError::Unavailable { .. }
                | ProviderError::Unreachable { .. }
                | ProviderError::Interrupted { .. }
        )
    }

    /// Whether the call may have reached the provider and been acted on
    /// although no usable answer came back: a timeout, a broken exchange,
    /// a server error (after retries, or a 5xx the caller was not allowed
    /// to retry), or a success we could not read. Such an outcome is
    /// neither success nor failure: money is never undone or repeated on
    /// it blindly. Everything else is a definite "not done": nothing was
    /// sent, or the provider answered with a refusal of its own.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ProviderError::Timeout { .. }
            | ProviderError::Interrupted { .. }
            | ProviderError::Unavailable { .. }
            | ProviderError::Ambiguous { .. }
            | ProviderError::Decode { .. } => true,
            ProviderError::Rejected { status, .. } => *status >= 500,
            ProviderError::Unreachable { .. }
            | ProviderError::Auth { .. }
            | ProviderError::Unsupported { .. }
            | ProviderError::NotFound { .. }
            | ProviderError::Amount { .. } => false,
        }
    }
}

/// The provider's reference of a payment, which every call after the
/// create needs.
pub(crate) fn provider_ref<'a>(
    payment: &'a Payment,
    provider: &'static str,
) -> Result<&'a str, ProviderError> {
    payment
        .provider_reference
        .as_ref()
        .map(|r| r.as_str())
        .ok_or_else(|| ProviderError::NotFound {
            provider,
            reference: payment.id.to_string(),
        })
}

/// A provider's reported amount, if it gave one, as money of `currency`;
/// one that is not (not a number, more decimals than the currency has) is
/// a reply that could not be read, naming its `field`.
pub(crate) fn reported_amount(
    provider: &'static str,
    field: &str,
    amount: Option<&MajorAmount>,
    currency: Currency,
) -> Result<Option<Money>, ProviderError> {
    amount
        .map(|a| a.to_money(currency))
        .transpose()
        .map_err(|e| ProviderError::Decode {
            provider,
            reason: format!("{field}: {e}"),
        })
}

/// A callback's claimed amount, if any, as money of `currency`; one that
/// is not is a malformed callback.
pub(crate) fn claimed_amount(
    amount: Option<&MajorAmount>,
    currency: Currency,
) -> Result<Option<Money>, WebhookError> {
    amount
        .map(|a| a.to_money(currency))
        .transpose()
        .map_err(|e| WebhookError::Malformed(format!("amount: {e}")))
}

/// A provider's text in an error: cut short, control characters dropped.
pub(crate) fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

/// A provider's checked-in example (`shared/tests/fixtures/<provider>/<name>`;
/// where each came from is in that folder's SOURCES.md).
#[cfg(test)]
pub(crate) fn fixture(provider: &str, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/{provider}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// [`fixture`], parsed as JSON.
#[cfg(test)]
pub(crate) fn fixture_json<T: serde::de::DeserializeOwned>(provider: &str, name: &str) -> T {
    serde_json::from_slice(&fixture(provider, name))
        .unwrap_or_else(|e| panic!("{provider}/{name}: {e}"))
}
