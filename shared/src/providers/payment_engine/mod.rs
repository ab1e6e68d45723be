//! The Payment Engine (seed 002): `/api/v1/auth/login` and `/refresh`, or
//! `X-API-Key`; transactions, their status, account balances. Webhooks are
//! signed: `X-Webhook-Signature: sha256=<hex HMAC-SHA256(raw body)>`, or,
//! where configured, Standard Webhooks headers. Each delivery's `eventId`
//! is recorded in DynamoDB so a replay has no second effect.

mod client;
mod webhook;
mod wire;

pub use client::{PaymentEngineAuth, PaymentEngineClient, PaymentEngineConfig};
pub use webhook::{PaymentEngineWebhooks, Verifier, VerifyError};

use crate::money::{Currency, Money};
use crate::payment::{PaymentStatus, Provider};
use crate::providers::description::{client, parser, CallbackAnswer, Description, PayerPage};
use crate::providers::ProviderError;
use wire::TransactionStatus;

const PROVIDER: &str = "payment_engine";

/// Payment Engine amounts: major units as a JSON number, any ISO currency
/// we know. The one place they go out.
pub(crate) fn to_wire_amount(amount: Money) -> String {
    amount.to_major_string_trimmed()
}

pub(crate) fn status_from_word(word: &str) -> PaymentStatus {
    TransactionStatus::parse(word).payment_status()
}

/// What a Payment Engine transfer asks of the payer, by its method.
pub(crate) fn transfer_instructions(method: Option<&str>) -> Vec<&'static str> {
    let method = method.unwrap_or("RTP").to_ascii_lowercase();
    let first = if method.starts_with("rtp") {
        "A real-time payment from your bank account: approve it in your bank's app when it asks. It usually completes within seconds."
    } else if method.starts_with("ach") {
        "A bank transfer (ACH): it completes in one to three business days. You can close this page; the shop is told when it arrives."
    } else if method.starts_with("wire") {
        "A bank wire: it completes when the banks confirm it, usually the same business day."
    } else {
        "A bank transfer: it completes when your bank confirms it."
    };
    vec![
        first,
        "Quote the reference above if your bank asks for one.",
    ]
}

/// How paygate's page for the payer shows a payment with it.
const PAYER_PAGE: PayerPage =
    PayerPage::titled("Bank transfer").instructions(transfer_instructions);

/// What paygate knows about the Payment Engine beyond its client: its entry in
/// the registry.
pub const DESCRIPTION: Description = Description::of(Provider::PaymentEngine, &Currency::ALL)
    .named("payment-engine")
    .answering(CallbackAnswer::Text("OK"))
    .paid_on(PAYER_PAGE)
    .built(
        |c| client(c, PaymentEngineClient::new),
        |c| parser(c, webhooks),
    );

/// Its callback parser: the seed's signature key, and the Standard
/// Webhooks key when they are on.
fn webhooks(config: PaymentEngineConfig) -> Result<PaymentEngineWebhooks, ProviderError> {
    let verifier = Verifier::new(
        config.webhook_secret,
        config.standard_webhooks_secret.as_ref(),
    )
    .map_err(|e| ProviderError::Unreachable {
        provider: "payment_engine",
        reason: e.to_string(),
    })?;
    Ok(PaymentEngineWebhooks::new(verifier))
}
