//! Paygram callbacks: the SDK's `UserCallbackInfo` (`{Id, DateUtc,
//! CallbackData, UserCliId, InvoiceInfo: {InvoiceCode, TransactionAmount,
//! Fees, Currency, Balance}, CallbackType, ...}`, in any key casing; the same
//! for both APIs) and the seed's (`{invoice_code, status, amount, currency,
//! timestamp}`). The URL's secret segment is checked in constant time; the
//! invoice is then confirmed with `InvoiceInfo`. Callbacks about no invoice
//! (a balance, a withdrawal, money sent) are answered as the SDK's samples
//! answer them and change nothing.

use subtle::ConstantTimeEq;

use super::status_from_word;
use super::wire::{Callback, CallbackKind};
use crate::payment::{PaymentStatus, Provider};
use crate::providers::{PaymentRef, WebhookError, WebhookEvent, WebhookRequest, WebhookSource};
use crate::secrets::SecretString;

/// Parses Paygram callbacks arriving at `/webhooks/paygram/{secret}`.
#[derive(Debug, Clone)]
pub struct PaygramWebhooks {
    secret: SecretString,
}

impl PaygramWebhooks {
    pub fn new(secret: SecretString) -> PaygramWebhooks {
        PaygramWebhooks { secret }
    }
}

fn lower_keys(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), lower_keys(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => other,
    }
}

impl WebhookSource for PaygramWebhooks {
    fn provider(&self) -> Provider {
        Provider::Paygram
    }

    fn parse(&self, request: &WebhookRequest) -> Result<WebhookEvent, WebhookError> {
        let given = request
            .path
            .get("secret")
            .map(String::as_bytes)
            .unwrap_or_default();
        let expected = self.secret.expose().as_bytes();
        if expected.is_empty() || !bool::from(given.ct_eq(expected)) {
            return Err(WebhookError::Unauthenticated("callback URL secret"));
        }
        let value: serde_json::Value = serde_json::from_slice(&request.body)
            .map_err(|e| WebhookError::Malformed(e.to_string().chars().take(200).collect()))?;
        if !value.is_object() {
            return Err(WebhookError::Malformed("not a JSON object".into()));
        }
        let callback: Callback = serde_json::from_value(lower_keys(value))
            .map_err(|e| WebhookError::Malformed(e.to_string().chars().take(200).collect()))?;
        let kind = CallbackKind::of(&callback);
        if !kind.about_an_invoice() {
            // A balance, a withdrawal, money sent: about no payment of ours.
            return Ok(WebhookEvent::unverified(
                PaymentRef::None,
                PaymentStatus::Pending,
                None,
                kind.word().to_string(),
            ));
        }
        let invoice = callback
            .invoiceinfo
            .and_then(|i| i.invoicecode)
            .or(callback.invoicecode);
        let payment = match callback
            .callbackdata
            .as_deref()
            .and_then(|d| d.parse().ok())
        {
            Some(id) => PaymentRef::Ours(id),
            None => PaymentRef::Provider(
                invoice
                    .filter(|i| !i.is_empty())
                    .ok_or_else(|| WebhookError::Malformed("no invoice code".into()))?,
            ),
        };
        // The real callback reports a transaction on the invoice and carries
        // no status: it is a hint that money moved.
        let (status, word) = match callback.status {
            // An enum name or number in text, else the seed's word ("paid").
            Some(serde_json::Value::String(word)) => {
                let status = super::status_code_from_wire(&word.clone().into())
                    .map(super::status_from_code)
                    .unwrap_or_else(|| status_from_word(&word));
                (status, word)
            }
            Some(value @ serde_json::Value::Number(_)) => {
                let code = super::status_code_from_wire(&value)
                    .ok_or_else(|| WebhookError::Malformed("status".into()))?;
                (super::status_from_code(code), code.to_string())
            }
            Some(serde_json::Value::Null) | None => {
                (PaymentStatus::Completed, "transaction".to_string())
            }
            Some(_) => return Err(WebhookError::Malformed("status".into())),
        };
        Ok(WebhookEvent::unverified(payment, status, None, word))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PaymentId;

    fn request(secret: &str, body: &str) -> WebhookRequest {
        WebhookRequest {
            path: [("secret".to_string(), secret.to_string())].into(),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn source() -> PaygramWebhooks {
        PaygramWebhooks::new("s3cret-path".to_string().into())
    }

    #[test]
    fn accepts_the_real_shape_in_any_casing() {
        let id = PaymentId::generate();
        for body in [
            format!(
                r#"{{"DateUtc":"2025-01-01T00:00:00Z","CallbackData":"{id}","UserCliId":1,"InvoiceInfo":{{"InvoiceCode":"INV1","TransactionAmount":10.5,"Balance":1}}}}"#
            ),
            format!(
                r#"{{"dateUtc":"2025-01-01T00:00:00Z","callbackData":"{id}","invoiceInfo":{{"invoiceCode":"INV1"}}}}"#
            ),
        ] {
            let e = source().parse(&request("s3cret-path", &body)).unwrap();
            assert_eq!(e.payment, PaymentRef::Ours(id));
            assert_eq!(e.status, PaymentStatus::Completed);
            assert!(!e.verified);
        }
    }

    /// The SDK's invoice callback (fixtures/paygram/callback.invoice.assembled.json):
    /// a hint about the invoice it names, whose callback data (here the
    /// capture's, a URL) is not one of our payment ids.
    #[test]
    fn the_sdks_invoice_callback_is_a_hint_about_its_invoice() {
        let body = crate::providers::fixture("paygram", "callback.invoice.assembled.json");
        let e = source()
            .parse(&request("s3cret-path", std::str::from_utf8(&body).unwrap()))
            .unwrap();
        assert_eq!(
            e.payment,
            PaymentRef::Provider("3ceb007d-4422-450b-8835-8ff135a6a854".into())
        );
        assert_eq!(e.status, PaymentStatus::Completed);
        assert_eq!((e.verified, e.amount), (false, None));
    }

    /// Balance, withdrawal and money-sent callbacks (the SDK's other
    /// `UserCallbackTypes`) concern no payment: answered, nothing changes.
    #[test]
    fn callbacks_about_no_invoice_concern_no_payment() {
        for (name, word) in [
            ("callback.balance.assembled.json", "balance_info"),
            ("callback.withdraw.assembled.json", "withdraw_info"),
            ("callback.money_sent.assembled.json", "money_sent"),
        ] {
            let body = crate::providers::fixture("paygram", name);
            let e = source()
                .parse(&request("s3cret-path", std::str::from_utf8(&body).unwrap()))
                .unwrap();
            assert_eq!(e.payment, PaymentRef::None, "{name}");
            assert_eq!(e.provider_status, word, "{name}");
            assert!(!e.verified && e.amount.is_none(), "{name}");
        }
        // The SDK's order: a callback carrying BalanceInfo is a balance
        // callback, whatever else it carries.
        let id = PaymentId::generate();
        let both = format!(
            r#"{{"CallbackData":"{id}","BalanceInfo":{{"Balance":1}},"InvoiceInfo":{{"InvoiceCode":"x"}}}}"#
        );
        let e = source().parse(&request("s3cret-path", &both)).unwrap();
        assert_eq!(e.payment, PaymentRef::None);
        // Still refused with a wrong secret.
        let body = crate::providers::fixture("paygram", "callback.balance.assembled.json");
        assert_eq!(
            source().parse(&request("wrong", std::str::from_utf8(&body).unwrap())),
            Err(WebhookError::Unauthenticated("callback URL secret"))
        );
    }

    #[test]
    fn a_status_comes_as_a_number_a_name_or_the_seeds_word() {
        for (status, expected) in [
            ("2", PaymentStatus::Completed),
            (r#""Completed""#, PaymentStatus::Completed),
            (r#""2""#, PaymentStatus::Completed),
            ("3", PaymentStatus::Failed),
            (r#""Cancelled""#, PaymentStatus::Failed),
            ("4", PaymentStatus::Pending),
            (r#""paid""#, PaymentStatus::Completed),
            (r#""expired""#, PaymentStatus::Expired),
        ] {
            let body = format!(r#"{{"invoice_code":"INV1","status":{status}}}"#);
            let e = source().parse(&request("s3cret-path", &body)).unwrap();
            assert_eq!(e.status, expected, "{status}");
        }
        let bad = source().parse(&request(
            "s3cret-path",
            r#"{"invoice_code":"INV1","status":[1]}"#,
        ));
        assert!(matches!(bad, Err(WebhookError::Malformed(_))));
    }

    #[test]
    fn accepts_the_seed_shape() {
        let e = source()
            .parse(&request(
                "s3cret-path",
                r#"{"invoice_code":"INV9","status":"expired","amount":"5","currency":"USDT","timestamp":"x"}"#,
            ))
            .unwrap();
        assert_eq!(e.payment, PaymentRef::Provider("INV9".into()));
        assert_eq!(e.status, PaymentStatus::Expired);
    }

    #[test]
    fn a_wrong_secret_is_refused_before_the_body_is_read() {
        for secret in ["", "s3cret-pat", "s3cret-path2", "S3CRET-PATH"] {
            assert_eq!(
                source().parse(&request(secret, "not even json")),
                Err(WebhookError::Unauthenticated("callback URL secret"))
            );
        }
        assert!(matches!(
            source().parse(&request("s3cret-path", "not json")),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            source().parse(&request("s3cret-path", r#"{"status":"paid"}"#)),
            Err(WebhookError::Malformed(_))
        ));
    }
}
