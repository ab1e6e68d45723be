//! QPay v2 (Mongolia, MNT). Basic auth for a bearer token whose
//! `expires_in` is an instant (Unix time), refreshed with the refresh
//! token; invoices with a QR code; `payment/check` for the truth. QPay
//! calls `callback_url` with GET and `qpay_payment_id` appended (the seed
//! describes a POST with JSON: both are taken), signs nothing, and expects
//! the body `SUCCESS`.

mod client;
mod webhook;
mod wire;

pub use client::{QpayClient, QpayConfig};
pub use webhook::QpayWebhooks;

use crate::money::{Currency, Money, MoneyError};
use crate::payment::{Provider, RefundSupport};
use std::sync::Arc;

use crate::providers::description::{built, client, CallbackAnswer, Description, PayerPage, QrOf};
use crate::providers::ProviderError;
use wire::PaymentState;

const PROVIDER: &str = "qpay";

/// QPay amounts: MNT major units as a JSON number. The one place MNT goes out.
pub(crate) fn to_wire_amount(amount: Money) -> Result<String, ProviderError> {
    if amount.currency() != Currency::Mnt {
        return Err(ProviderError::Amount {
            provider: PROVIDER,
            source: MoneyError::CurrencyMismatch(Currency::Mnt, amount.currency()),
        });
    }
    Ok(amount.to_major_string_trimmed())
}

/// `expires_in` as QPay sends it: a Unix time (a value above 10^9), or, as
/// other OAuth servers do, seconds from now. Returns seconds from `now`.
pub(crate) fn seconds_left(expires_in: i64, now: i64) -> i64 {
    if expires_in > 1_000_000_000 {
        expires_in - now
    } else {
        expires_in
    }
}

/// How paygate's page for the payer shows a payment with it.
const PAYER_PAGE: PayerPage = PayerPage::titled("Pay with QPay")
    .qr(
        QrOf::QrText,
        "Scan with your bank's app, or choose it below.",
    )
    .apps()
    .link("Open in QPay");

/// What paygate knows about QPay beyond its client: its entry in
/// the registry.
pub const DESCRIPTION: Description = Description::of(Provider::Qpay, &[Currency::Mnt])
    .named("qpay")
    // QPay's callback specification: HTTP 200 with the body SUCCESS, no
    // other answer allowed (fixtures/qpay/callback.reply.txt; decision 55).
    .answering_always(CallbackAnswer::Text("SUCCESS"))
    .paid_on(PAYER_PAGE)
    // DELETE /v2/invoice/{id}; refunds are whole card payments.
    .cancels()
    .refunds(RefundSupport::Full)
    .built(
        |c| client(c, QpayClient::new),
        |_| built(Arc::new(QpayWebhooks)),
    );

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_an_instant_when_it_looks_like_one() {
        assert_eq!(seconds_left(1_700_000_600, 1_700_000_000), 600);
        assert_eq!(seconds_left(3600, 1_700_000_000), 3600);
        assert!(seconds_left(1_600_000_000, 1_700_000_000) < 0);
    }

    #[test]
    fn amounts_are_tugrik() {
        assert_eq!(
            to_wire_amount(Money::new(150_000, Currency::Mnt).unwrap()).unwrap(),
            "1500"
        );
        assert!(to_wire_amount(Money::new(1, Currency::Usd).unwrap()).is_err());
    }
}
