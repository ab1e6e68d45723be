//! epayment.kz (Halyk Bank, KZT). OAuth2 client credentials; a payment
//! token bound to one invoice for the payer's widget; check-status by
//! invoice; refund (full or partial, at least 10 KZT) and cancel (from
//! AUTH) by the bank's transaction id. Callbacks echo the `secret_hash` we
//! gave with the payment token, and are confirmed with check-status.

mod client;
mod webhook;

pub use client::{EpaymentClient, EpaymentConfig};
pub use webhook::EpaymentWebhooks;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::PaymentId;
use crate::money::{Currency, Money, MoneyError};
use crate::payment::PaymentStatus;
use crate::providers::ProviderError;

const PROVIDER: &str = "epayment";

/// The bank's invoiceID for a payment: 15 digits, a pure function of the
/// payment id (its low bits), so it never has to be looked up to be made.
/// It is stored as the payment's provider reference, which maps it back.
pub fn invoice_id(payment: PaymentId) -> String {
    let n = payment.ulid().0 % 1_000_000_000_000_000;
    format!("{n:015}")
}

/// The `secret_hash` for an invoice: HMAC-SHA256 of the invoiceID under our
/// callback key, so every invoice has its own and none is stored.
pub fn secret_hash(key: &str, invoice: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(invoice.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => String::new(),
    }
}

/// epayment.kz amounts: KZT major units as a JSON number. The one place KZT
/// goes out.
pub(crate) fn to_wire_amount(amount: Money) -> Result<String, ProviderError> {
    if amount.currency() != Currency::Kzt {
        return Err(ProviderError::Amount {
            provider: PROVIDER,
            source: MoneyError::CurrencyMismatch(Currency::Kzt, amount.currency()),
        });
    }
    Ok(amount.to_major_string_trimmed())
}

/// statusName: only CHARGE is money taken; AUTH is held, not captured;
/// REFUND is money taken and given back in full (public clients read it as
/// "funds returned"; a partial refund leaves CHARGE).
pub(crate) fn status_from_name(name: &str) -> PaymentStatus {
    match name.trim().to_ascii_uppercase().as_str() {
        "CHARGE" => PaymentStatus::Completed,
        "REFUND" => PaymentStatus::Refunded,
        "FAILED" | "REJECT" => PaymentStatus::Failed,
        _ => PaymentStatus::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoice_ids_are_fifteen_stable_digits() {
        let id = PaymentId::generate();
        let invoice = invoice_id(id);
        assert_eq!(invoice.len(), 15);
        assert!(invoice.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(invoice, invoice_id(id));
        assert_ne!(invoice, invoice_id(PaymentId::generate()));
    }

    #[test]
    fn secret_hashes_differ_per_invoice_and_key() {
        assert_eq!(secret_hash("k", "1"), secret_hash("k", "1"));
        assert_ne!(secret_hash("k", "1"), secret_hash("k", "2"));
        assert_ne!(secret_hash("k", "1"), secret_hash("j", "1"));
    }

    #[test]
    fn only_a_charge_is_money() {
        assert_eq!(status_from_name("CHARGE"), PaymentStatus::Completed);
        for pending in ["NEW", "AUTH", "3D", "VERIFIED", "CANCEL", "?"] {
            assert_eq!(
                status_from_name(pending),
                PaymentStatus::Pending,
                "{pending}"
            );
        }
        assert_eq!(status_from_name("REJECT"), PaymentStatus::Failed);
        // Paid and given back: read as a refund, never as open or as money.
        assert_eq!(status_from_name("refund"), PaymentStatus::Refunded);
        assert_eq!(
            to_wire_amount(Money::new(1_000_050, Currency::Kzt).unwrap()).unwrap(),
            "10000.5"
        );
    }
}
