//! epayment.kz (Halyk Bank, KZT). OAuth2 client credentials; a payment
//! token bound to one invoice for the payer's widget; check-status by
//! invoice; refund (full or partial, at least 10 KZT) and cancel (from
//! AUTH) by the bank's transaction id. Callbacks echo the `secret_hash` we
//! gave with the payment token, and are confirmed with check-status.

mod client;
mod webhook;
mod wire;

pub use client::{EpaymentClient, EpaymentConfig};
pub use webhook::EpaymentWebhooks;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::money::{Currency, Money, MoneyError};
use crate::payment::{PaymentStatus, Provider, RefundSupport};
use crate::providers::description::{client, parser, CallbackAnswer, Description, PayerPage};
use crate::providers::ProviderError;
use wire::{CallbackCode, StatusName};

const PROVIDER: &str = "epayment";

/// The bank's invoiceID for the `sequence`th invoice: 6 to 15 digits, and
/// (the bank's rule for invoiceIDs longer than 6 digits) unique in its last
/// 6 digits for a million invoices in a row. Random ids would collide there
/// by the birthday bound (about 1% within 140 payments), so numbers come
/// from a counter in the table (`Store::next_in_sequence`). The invoiceID is
/// stored as the payment's provider reference, which maps it back.
pub fn invoice_id(sequence: u64) -> Result<String, ProviderError> {
    let text = format!("{sequence:06}");
    if sequence == 0 || text.len() > 15 {
        return Err(ProviderError::Unreachable {
            provider: PROVIDER,
            reason: "no invoice number to send".into(),
        });
    }
    Ok(text)
}

/// A stored payment's invoiceID.
pub(crate) fn invoice_of(payment: &crate::payment::Payment) -> Result<&str, ProviderError> {
    crate::providers::provider_ref(payment, PROVIDER)
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
/// "funds returned"; a partial refund leaves CHARGE); CANCEL and CANCEL_OLD
/// are a released authorisation, final like a decline.
pub(crate) fn status_from_name(name: &str) -> PaymentStatus {
    StatusName::parse(name).payment_status()
}

/// How paygate's page for the payer shows a payment with it.
const PAYER_PAGE: PayerPage = PayerPage::titled("Pay by card").widget();

/// What paygate knows about epayment.kz beyond its client: its entry in
/// the registry.
pub const DESCRIPTION: Description = Description::of(Provider::Epayment, &[Currency::Kzt])
    .named("epayment")
    .answering(CallbackAnswer::Json(r#"{"code":"ok"}"#))
    .paid_on(PAYER_PAGE)
    // cancel from AUTH; refunds from CHARGE, partial ones >= 10 KZT.
    .cancels()
    .refunds(RefundSupport::Partial { minimum: 1_000 })
    // invoiceIDs must differ in their last 6 digits: we allocate them.
    .sequenced()
    // The payer's widget holds a payment token the bank issues for 7200 s
    // (fixtures/epayment/token.reply.json); no call revokes it, so a
    // payment we expire is watched a day, well past any token's life.
    .payable_for(time::Duration::days(1))
    // ... and a payment cannot outlive the token its widget holds.
    .expiring_within(time::Duration::seconds(7_200))
    .built(
        |c| client(c, EpaymentClient::new),
        |c| {
            parser(c, |s: EpaymentConfig| {
                Ok(EpaymentWebhooks::new(s.callback_key))
            })
        },
    );

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoice_ids_differ_in_their_last_six_digits_for_a_million_in_a_row() {
        assert_eq!(invoice_id(1).unwrap(), "000001");
        assert_eq!(invoice_id(999_999).unwrap(), "999999");
        assert_eq!(invoice_id(1_000_001).unwrap(), "1000001");
        let last6 = |n: u64| {
            let t = invoice_id(n).unwrap();
            t[t.len() - 6..].to_string()
        };
        let seen: std::collections::HashSet<String> = (500_000..1_500_000).map(last6).collect();
        assert_eq!(seen.len(), 1_000_000);
        assert!(invoice_id(0).is_err());
        assert!(invoice_id(10u64.pow(15)).is_err());
        assert_eq!(invoice_id(10u64.pow(15) - 1).unwrap().len(), 15);
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
        for pending in ["NEW", "AUTH", "3D", "VERIFIED", "?"] {
            assert_eq!(
                status_from_name(pending),
                PaymentStatus::Pending,
                "{pending}"
            );
        }
        assert_eq!(status_from_name("REJECT"), PaymentStatus::Failed);
        // A released authorisation is final: nothing was taken.
        for released in ["CANCEL", "CANCEL_OLD", "cancel_old"] {
            assert_eq!(status_from_name(released), PaymentStatus::Failed);
        }
        // Paid and given back: read as a refund, never as open or as money.
        assert_eq!(status_from_name("refund"), PaymentStatus::Refunded);
        assert_eq!(
            to_wire_amount(Money::new(1_000_050, Currency::Kzt).unwrap()).unwrap(),
            "10000.5"
        );
    }
}
