//! ToyyibPay (FPX and cards, MYR). Every call is `POST
//! {base}/index.php/api/<method>` with form fields; errors come as HTTP 200
//! with bodies like `[FALSE]`, `[KEY-DID-NOT-EXIST]` or `[{"msg": ..}]`.
//! Callbacks carry an MD5 `hash` (and, where configured, the seed's
//! `x-signature` HMAC); they have no timestamp, so every one is confirmed
//! with `getBillTransactions` before money moves.

mod client;
mod webhook;
mod wire;

pub use client::{ToyyibPayClient, ToyyibPayConfig};
pub use webhook::ToyyibPayWebhooks;

use crate::money::{Currency, Money, MoneyError};
use crate::payment::{PaymentStatus, Provider};
use std::sync::Arc;

use crate::providers::description::{
    parser, CallbackAnswer, Connect, Connecting, Description, PayerPage,
};
use crate::providers::Gateway;
use crate::providers::ProviderError;
use wire::BillStatus;

const PROVIDER: &str = "toyyibpay";

/// createBill's `billAmount`: sen, an integer. The one place MYR goes out.
pub(crate) fn to_sen(amount: Money) -> Result<i64, ProviderError> {
    if amount.currency() != Currency::Myr {
        return Err(ProviderError::Amount {
            provider: PROVIDER,
            source: MoneyError::CurrencyMismatch(Currency::Myr, amount.currency()),
        });
    }
    Ok(amount.minor())
}

/// An amount ToyyibPay reports: a major-unit string ("1.00") in the real
/// API, sen ("9990") in the seed's documents. With a decimal point it is
/// ringgit; without one it is sen.
pub(crate) fn reported_amount(text: &str) -> Result<Money, MoneyError> {
    let text = text.trim();
    if text.contains('.') {
        Money::from_major_str(text, Currency::Myr)
    } else {
        let sen: i64 = text
            .parse()
            .map_err(|_| MoneyError::Malformed(text.chars().take(40).collect()))?;
        Money::new(sen, Currency::Myr)
    }
}

/// getBillTransactions' `billpaymentAmount`: always ringgit, as a
/// major-unit string ("99.90", and "100" is RM 100, not 100 sen).
pub(crate) fn transaction_amount(text: &str) -> Result<Money, MoneyError> {
    Money::from_major_str(text.trim(), Currency::Myr)
}

/// billpaymentStatus / callback status: 1 success, 2 and 4 pending, 3 failed.
pub(crate) fn status_from_code(code: &str) -> PaymentStatus {
    BillStatus::parse(code).payment_status()
}

/// A bill's `billExpiryDate` for a payment expiring `at`: the official
/// sample's form, `17-12-2020 17:00:00` (day-month-year, 24-hour; the
/// fixture `create_bill.request.form`), in Malaysia's time (UTC+8, no
/// daylight saving), which the reference does not name; ToyyibPay is a
/// Malaysian service. The sweep also makes the bill inactive at our own
/// expiry, so a different reading of the zone never leaves a bill payable.
pub(crate) fn expiry_date(at: time::OffsetDateTime) -> Result<String, ProviderError> {
    let malaysia = time::UtcOffset::from_hms(8, 0, 0).map_err(|e| ProviderError::Decode {
        provider: PROVIDER,
        reason: e.to_string(),
    })?;
    let format =
        time::macros::format_description!("[day]-[month]-[year] [hour repr:24]:[minute]:[second]");
    at.to_offset(malaysia)
        .format(&format)
        .map_err(|e| ProviderError::Decode {
            provider: PROVIDER,
            reason: e.to_string(),
        })
}

/// billName and billDescription allow letters, digits, space and `_` only.
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ' ' || c == '_' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let collapsed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .chars()
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

/// How paygate's page for the payer shows a payment with it.
const PAYER_PAGE: PayerPage =
    PayerPage::titled("Pay with FPX online banking").link("Continue to your bank (FPX)");

/// What paygate knows about ToyyibPay beyond its client: its entry in
/// the registry.
pub const DESCRIPTION: Description = Description::of(Provider::Toyyibpay, &[Currency::Myr])
    .named("toyyibpay")
    .answering(CallbackAnswer::Json(r#"{"message":"ok"}"#))
    .paid_on(PAYER_PAGE)
    // inactiveBill; ToyyibPay has no refund API.
    .cancels()
    // ToyyibPay reports ringgit as text; the seed allows 1 sen of rounding.
    .tolerating(1)
    // A bill needs the payer's e-mail and phone.
    .needing_contact()
    .built(gateway, |c| {
        parser(c, |s: ToyyibPayConfig| {
            Ok(ToyyibPayWebhooks::new(s.secret_key, s.webhook_hmac_secret))
        })
    });

/// How its client is built: the bill category looked up first.
fn gateway<'a>(c: &'a Connect<'a>) -> Connecting<'a, dyn Gateway> {
    Box::pin(async move {
        let mut config: ToyyibPayConfig = c.config().await?;
        if config.category_code.is_none() {
            config.category_code = Some(category(c, &config).await?);
        }
        let client = ToyyibPayClient::new(config, c.policy.clone())?;
        Ok(Arc::new(client) as Arc<dyn Gateway>)
    })
}

/// The bill category: learned once (got or created by name) and kept in
/// the table, so later cold starts need not ask again.
async fn category(c: &Connect<'_>, config: &ToyyibPayConfig) -> Result<String, ProviderError> {
    let name = format!("toyyibpay-category#{}", config.category_name);
    let stored = |e: crate::store::StoreError| ProviderError::Unreachable {
        provider: PROVIDER,
        reason: e.to_string(),
    };
    if let Some(code) = c.store.setting(&name).await.map_err(stored)? {
        return Ok(code);
    }
    let code = ToyyibPayClient::new(config.clone(), c.policy.clone())?
        .category()
        .await?;
    c.store.put_setting(&name, &code).await.map_err(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_sen_out_and_either_form_in() {
        let rm = |sen| Money::new(sen, Currency::Myr).unwrap();
        assert_eq!(to_sen(rm(9990)).unwrap(), 9990);
        assert!(to_sen(Money::new(1, Currency::Php).unwrap()).is_err());
        assert_eq!(reported_amount("99.90").unwrap(), rm(9990));
        assert_eq!(reported_amount("1.00").unwrap(), rm(100));
        assert_eq!(reported_amount("9990").unwrap(), rm(9990));
        assert!(reported_amount("1.001").is_err());
        assert!(reported_amount("abc").is_err());
        assert!(reported_amount("-5").is_err());
        // A transaction row's amount is ringgit, decimal point or not.
        assert_eq!(transaction_amount("99.90").unwrap(), rm(9990));
        assert_eq!(transaction_amount("100").unwrap(), rm(10_000));
        assert!(transaction_amount("1.001").is_err());
    }

    #[test]
    fn names_keep_only_what_toyyibpay_accepts() {
        assert_eq!(
            sanitize("Order ORD-2025-0001 (gift!)", 30),
            "Order ORD 2025 0001 gift"
        );
        assert_eq!(sanitize("a_b  c", 30), "a_b c");
        assert_eq!(sanitize(&"x".repeat(50), 30).len(), 30);
        assert_eq!(sanitize("Pesanan café", 100), "Pesanan caf");
    }

    #[test]
    fn a_bills_expiry_is_written_as_the_sample_writes_it_in_malaysian_time() {
        let form = String::from_utf8(crate::providers::fixture(
            "toyyibpay",
            "create_bill.request.form",
        ))
        .unwrap();
        let sample = form
            .lines()
            .find_map(|l| l.strip_prefix("billExpiryDate="))
            .unwrap();
        assert_eq!(sample, "17-12-2020 17:00:00");
        // 09:00 UTC is 17:00 in Kuala Lumpur.
        let at = time::macros::datetime!(2020-12-17 09:00:00 UTC);
        assert_eq!(expiry_date(at).unwrap(), sample);
        let late = time::macros::datetime!(2026-01-05 16:30:05 UTC);
        assert_eq!(expiry_date(late).unwrap(), "06-01-2026 00:30:05");
    }

    #[test]
    fn only_a_successful_attempt_moves_a_payment() {
        assert_eq!(status_from_code("1"), PaymentStatus::Completed);
        // A failed attempt (3) leaves the bill payable.
        for pending in ["2", "3", "4", "", "9"] {
            assert_eq!(status_from_code(pending), PaymentStatus::Pending);
        }
    }
}
