//! DirectPay (GCash QR cash-in, PHP). Not publicly documented; follows the
//! integrations seen in public code (PROVIDERS.md): CSRF token (and the
//! session cookie, when DirectPay sets one), login for a bearer token,
//! cash-in, status by transaction id.
//! Callbacks are unsigned, so every callback is confirmed with
//! [`DirectPayClient::status`] before money moves.

mod client;
mod webhook;
mod wire;

pub use client::{CashIn, CashInCreated, DirectPayApi, DirectPayClient, DirectPayConfig};
pub use webhook::DirectPayWebhooks;

use crate::money::{Currency, Money};
use crate::payment::{PaymentStatus, Provider};
use std::sync::Arc;

use crate::providers::description::{built, client, CallbackAnswer, Description, PayerPage, QrOf};
use crate::providers::ProviderError;

const PROVIDER: &str = "directpay";

/// DirectPay's amounts: pesos as a decimal, PHP only. The one place
/// DirectPay amounts are converted.
pub(crate) fn to_wire_amount(amount: Money) -> Result<String, ProviderError> {
    if amount.currency() != Currency::Php {
        return Err(ProviderError::Amount {
            provider: PROVIDER,
            source: crate::money::MoneyError::CurrencyMismatch(Currency::Php, amount.currency()),
        });
    }
    Ok(amount.to_major_string_trimmed())
}

impl From<wire::TransactionStatus> for PaymentStatus {
    fn from(s: wire::TransactionStatus) -> PaymentStatus {
        use wire::TransactionStatus as T;
        match s {
            T::Success => PaymentStatus::Completed,
            T::Pending => PaymentStatus::Pending,
            T::Failed => PaymentStatus::Failed,
            T::Expired => PaymentStatus::Expired,
            T::Unknown => PaymentStatus::Pending,
        }
    }
}

/// How paygate's page for the payer shows a payment with it.
const PAYER_PAGE: PayerPage = PayerPage::titled("Pay with GCash")
    .qr(QrOf::QrText, "Scan with GCash or any QR Ph banking app.")
    .link("Open the GCash payment page");

/// What paygate knows about DirectPay beyond its client: its entry in
/// the registry.
pub const DESCRIPTION: Description = Description::of(Provider::Directpay, &[Currency::Php])
    .named("directpay")
    .answering(CallbackAnswer::Json(r#"{"success":true}"#))
    .paid_on(PAYER_PAGE)
    // Cash-in starts at ₱100 (PROVIDERS.md): refused before any call.
    .from_amount(10_000)
    .built(
        |c| client(c, DirectPayClient::new),
        |_| built(Arc::new(DirectPayWebhooks)),
    );

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_pesos_and_php_only() {
        let m = |minor| Money::new(minor, Currency::Php).unwrap();
        assert_eq!(to_wire_amount(m(10_000)).unwrap(), "100");
        assert_eq!(to_wire_amount(m(10_050)).unwrap(), "100.5");
        assert_eq!(to_wire_amount(m(1)).unwrap(), "0.01");
        assert!(to_wire_amount(Money::new(100, Currency::Usd).unwrap()).is_err());
    }

    #[test]
    fn only_explicit_words_move_a_payment() {
        use wire::TransactionStatus as T;
        assert_eq!(
            PaymentStatus::from(T::parse("SUCCESS")),
            PaymentStatus::Completed
        );
        assert_eq!(
            PaymentStatus::from(T::parse("success")),
            PaymentStatus::Completed
        );
        assert_eq!(
            PaymentStatus::from(T::parse("FAILED")),
            PaymentStatus::Failed
        );
        assert_eq!(
            PaymentStatus::from(T::parse("EXPIRED")),
            PaymentStatus::Expired
        );
        for unknown in ["", "REVERSED?", "weird"] {
            assert_eq!(
                PaymentStatus::from(T::parse(unknown)),
                PaymentStatus::Pending
            );
        }
    }
}
