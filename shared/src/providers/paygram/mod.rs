//! Paygram (PHPT and USDT invoices). The real API (its official SDK):
//! `POST {base}/{API_TOKEN}/{Method}` with JSON; `IssueInvoice`,
//! `InvoiceInfo`. Callbacks are unsigned: a secret in the callback URL keeps
//! strangers out, and every callback is confirmed with `InvoiceInfo`.

mod client;
mod webhook;

pub use client::{PaygramClient, PaygramConfig};
pub use webhook::PaygramWebhooks;

use crate::money::{Currency, Money, MoneyError};
use crate::payment::PaymentStatus;
use crate::providers::ProviderError;

const PROVIDER: &str = "paygram";

/// Paygram's currency codes.
pub(crate) fn currency_code(currency: Currency) -> Result<u32, ProviderError> {
    match currency {
        Currency::Phpt => Ok(11),
        Currency::Usdt => Ok(5),
        other => Err(ProviderError::Amount {
            provider: PROVIDER,
            source: MoneyError::UnknownCurrency(format!("{other} is not a Paygram currency")),
        }),
    }
}

pub(crate) fn currency_from_code(code: u32) -> Option<Currency> {
    match code {
        11 => Some(Currency::Phpt),
        5 => Some(Currency::Usdt),
        _ => None,
    }
}

/// Paygram's amounts: major units as a decimal. The one place Paygram
/// amounts are converted to its format.
pub(crate) fn to_wire_amount(amount: Money) -> Result<String, ProviderError> {
    currency_code(amount.currency())?;
    Ok(amount.to_major_string_trimmed())
}

/// Paygram invoice states (1 requested, 2 completed, 3 cancelled, 4
/// ongoing, 5 error, 7 denied, 8 accepted, transfer pending). Only 2 is
/// money; unknown codes are pending.
pub(crate) fn status_from_code(code: i64) -> PaymentStatus {
    match code {
        2 => PaymentStatus::Completed,
        3 | 5 | 7 => PaymentStatus::Failed,
        1 | 4 | 8 => PaymentStatus::Pending,
        _ => PaymentStatus::Pending,
    }
}

/// The seed's callback words.
pub(crate) fn status_from_word(word: &str) -> PaymentStatus {
    match word.trim().to_ascii_lowercase().as_str() {
        "paid" | "completed" | "success" => PaymentStatus::Completed,
        "expired" => PaymentStatus::Expired,
        "cancelled" | "canceled" | "failed" | "denied" => PaymentStatus::Failed,
        _ => PaymentStatus::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_keep_every_usdt_decimal() {
        let usdt = Money::new(1_234_567, Currency::Usdt).unwrap();
        assert_eq!(to_wire_amount(usdt).unwrap(), "1.234567");
        let phpt = Money::new(10_050, Currency::Phpt).unwrap();
        assert_eq!(to_wire_amount(phpt).unwrap(), "100.5");
        assert!(to_wire_amount(Money::new(1, Currency::Php).unwrap()).is_err());
    }

    #[test]
    fn only_completed_invoices_are_money() {
        assert_eq!(status_from_code(2), PaymentStatus::Completed);
        for pending in [1, 4, 8, 0, 99] {
            assert_eq!(status_from_code(pending), PaymentStatus::Pending);
        }
        for failed in [3, 5, 7] {
            assert_eq!(status_from_code(failed), PaymentStatus::Failed);
        }
        assert_eq!(status_from_word("PAID"), PaymentStatus::Completed);
        assert_eq!(status_from_word("unpaid"), PaymentStatus::Pending);
        assert_eq!(status_from_word("expired"), PaymentStatus::Expired);
    }
}
