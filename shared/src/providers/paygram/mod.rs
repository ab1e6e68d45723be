//! Paygram (PHPT and USDT invoices). Paygram has two public APIs, chosen
//! per account in the secret's `api` (decision 31; the sources are in
//! shared/tests/fixtures/paygram/SOURCES.md):
//! - `official`, the one its official SDK calls:
//!   `POST {base}{token}/IssueInvoice/?cursym=&amt=&cd=` and
//!   `InvoiceInfo/?invguid=`, body `{}`, PascalCase replies;
//! - `legacy`, the older `POST {base}/{token}/{Method}` with camelCase JSON
//!   bodies carrying `requestId` and `userCliId`, as a capture of its real
//!   requests and replies shows.
//!
//! Callbacks are unsigned: a secret in the callback URL keeps strangers out,
//! and every callback is confirmed with `InvoiceInfo`.

mod client;
mod webhook;
mod wire;

pub use client::{PaygramApi, PaygramClient, PaygramConfig};
pub use webhook::PaygramWebhooks;

use crate::money::{Currency, Money, MoneyError};
use crate::payment::{PaymentStatus, Provider};
use crate::providers::description::{client, parser, CallbackAnswer, Description, PayerPage, QrOf};
use crate::providers::ProviderError;
use wire::InvoiceState;

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

/// The official API's `cursym`: the SDK's `Currencies` member's name.
pub(crate) fn currency_symbol(currency: Currency) -> Result<&'static str, ProviderError> {
    match currency {
        Currency::Phpt => Ok("PHPT"),
        Currency::Usdt => Ok("USDT"),
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

/// Paygram's `currencyCode` as it comes: the C# enum's number, or its
/// name ("USDT"; an older SDK named networks, "USDT_ERC20").
pub(crate) fn currency_from_wire(value: &serde_json::Value) -> Option<Currency> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().and_then(|c| currency_from_code(c as u32)),
        serde_json::Value::String(s) => match s.trim().parse::<u32>() {
            Ok(code) => currency_from_code(code),
            Err(_) => {
                let name = s.trim().to_ascii_uppercase();
                if name == "PHPT" {
                    Some(Currency::Phpt)
                } else if name == "USDT" || name.starts_with("USDT_") {
                    Some(Currency::Usdt)
                } else {
                    None
                }
            }
        },
        _ => None,
    }
}

/// Paygram's invoice `status` as it comes: the C# enum's number, or its
/// name. `None` for a value of no known form.
pub(crate) fn status_code_from_wire(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok().or_else(|| {
            let name = s.trim().to_ascii_lowercase().replace(['_', ' '], "");
            STATUS_NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, code)| *code)
        }),
        _ => None,
    }
}

/// The invoice status enum's names, lower case, without separators.
const STATUS_NAMES: [(&str, i64); 8] = [
    ("requested", 1),
    ("completed", 2),
    ("cancelled", 3),
    ("canceled", 3),
    ("ongoing", 4),
    ("error", 5),
    ("denied", 7),
    ("acceptedpendingtransfer", 8),
];

/// The legacy API's `requestId` for a payment's IssueInvoice: the SDK's C#
/// `long`, so a number. Derived from the payment id (63 of its random bits), the same for every
/// attempt at one payment and distinct between payments (two of a million
/// payments share one with odds of about 1 in 10^7), so Paygram's 551
/// duplicate answer still means "this payment's invoice exists".
pub(crate) fn request_id(payment: crate::ids::PaymentId) -> i64 {
    let bits = (payment.ulid().0 as u64) & (i64::MAX as u64);
    (bits as i64).max(1)
}

/// A `requestId` for a call that is not a create (the legacy API's
/// InvoiceInfo): the capture gives every call its own, so each attempt
/// gets a fresh random 63-bit number.
pub(crate) fn fresh_request_id() -> i64 {
    let bits = (ulid::Ulid::new().random() as u64) & (i64::MAX as u64);
    (bits as i64).max(1)
}

/// Paygram's amounts: major units as a decimal (the official API's `amt`
/// in the query, the legacy API's `amount` JSON number). The one place
/// Paygram amounts are converted to its format.
pub(crate) fn to_wire_amount(amount: Money) -> Result<String, ProviderError> {
    currency_code(amount.currency())?;
    Ok(amount.to_major_string_trimmed())
}

/// Paygram invoice states (1 requested, 2 completed, 3 cancelled, 4
/// ongoing, 5 error, 7 denied, 8 accepted, transfer pending). Only 2 is
/// money; unknown codes are pending.
pub(crate) fn status_from_code(code: i64) -> PaymentStatus {
    InvoiceState::from_code(code).payment_status()
}

/// The seed's callback words.
pub(crate) fn status_from_word(word: &str) -> PaymentStatus {
    InvoiceState::from_word(word).payment_status()
}

/// How paygate's page for the payer shows a payment with it.
const PAYER_PAGE: PayerPage = PayerPage::titled("Pay with PayGram")
    .qr(
        QrOf::CheckoutUrl,
        "On a computer? Scan this with your phone.",
    )
    .link("Pay with PayGram");

/// What paygate knows about Paygram beyond its client: its entry in
/// the registry.
pub const DESCRIPTION: Description =
    Description::of(Provider::Paygram, &[Currency::Phpt, Currency::Usdt])
        .named("paygram")
        .answering(CallbackAnswer::Text("ok"))
        .paid_on(PAYER_PAGE)
        .built(
            |c| client(c, PaygramClient::new),
            |c| {
                parser(c, |s: PaygramConfig| {
                    Ok(PaygramWebhooks::new(s.callback_secret))
                })
            },
        );

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
    fn fresh_request_ids_are_positive_and_differ() {
        let (a, b) = (fresh_request_id(), fresh_request_id());
        assert!(a > 0 && b > 0);
        assert_ne!(a, b);
        assert!(currency_symbol(Currency::Php).is_err());
    }

    #[test]
    fn request_ids_are_positive_stable_numbers() {
        let id = crate::ids::PaymentId::generate();
        assert_eq!(request_id(id), request_id(id));
        assert!(request_id(id) > 0);
        assert_ne!(
            request_id(id),
            request_id(crate::ids::PaymentId::generate())
        );
    }

    #[test]
    fn enums_come_as_numbers_or_names() {
        use serde_json::json;
        for v in [json!(5), json!("5"), json!("USDT"), json!("usdt_erc20")] {
            assert_eq!(currency_from_wire(&v), Some(Currency::Usdt), "{v}");
        }
        assert_eq!(currency_from_wire(&json!("PHPT")), Some(Currency::Phpt));
        assert_eq!(currency_from_wire(&json!("BTC")), None);
        for v in [json!(2), json!("2"), json!("Completed"), json!("COMPLETED")] {
            assert_eq!(status_code_from_wire(&v), Some(2), "{v}");
        }
        assert_eq!(
            status_code_from_wire(&json!("Accepted_Pending_Transfer")),
            Some(8)
        );
        assert_eq!(status_code_from_wire(&json!({})), None);
    }

    /// The official SDK's enums (shared/tests/fixtures/paygram/enums.json):
    /// every invoice status by name or number, and our two currencies.
    #[test]
    fn the_sdks_enum_names_and_numbers_are_read() {
        let enums: serde_json::Value = crate::providers::fixture_json("paygram", "enums.json");
        for (name, number) in enums["InvoiceStatuses"].as_object().unwrap() {
            let code = number.as_i64().unwrap();
            assert_eq!(
                status_code_from_wire(&name.as_str().into()),
                Some(code),
                "{name}"
            );
            assert_eq!(status_code_from_wire(number), Some(code));
        }
        let currencies = &enums["Currencies"];
        for (name, ours) in [("PHPT", Currency::Phpt), ("USDT", Currency::Usdt)] {
            assert_eq!(currency_from_wire(&name.into()), Some(ours));
            assert_eq!(currency_from_wire(&currencies[name]), Some(ours));
            assert_eq!(
                currency_code(ours).unwrap() as u64,
                currencies[name].as_u64().unwrap()
            );
            // The official API's `cursym` is the member's name.
            assert_eq!(currency_symbol(ours).unwrap(), name);
        }
        assert_eq!(
            currency_from_wire(&currencies["PHP"]),
            None,
            "PHP is not PHPT"
        );
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
