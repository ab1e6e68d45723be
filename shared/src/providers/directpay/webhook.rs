//! DirectPay callbacks. DirectPay signs nothing, so a callback is a hint:
//! the payment is confirmed with the status endpoint before it changes.
//! Both shapes are accepted: the real one (`amount` as a string, `refId`,
//! `txnId`, `status: "SUCCESS"`, ...) and the seed's (`reference`, `status`,
//! `amount`, `timestamp`).

use serde::Deserialize;

use super::wire::TransactionStatus;
use crate::money::{Currency, MajorAmount};
use crate::payment::Provider;
use crate::providers::{
    claimed_amount, PaymentRef, WebhookError, WebhookEvent, WebhookRequest, WebhookSource,
};

#[derive(Deserialize)]
struct Callback {
    #[serde(default, alias = "refid", alias = "ref_id")]
    #[serde(rename = "refId")]
    ref_id: Option<String>,
    #[serde(default, rename = "invoiceNo")]
    invoice_no: Option<String>,
    #[serde(
        default,
        rename = "txnId",
        alias = "transactionId",
        alias = "transaction_id"
    )]
    txn_id: Option<String>,
    #[serde(default)]
    merchantpaymentreferences: Option<String>,
    #[serde(default)]
    reference: Option<String>,
    /// `status` in the real and the seed's shape, `transaction_status`
    /// where public clients name it so (as the status endpoint does).
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    transaction_status: Option<String>,
    #[serde(default)]
    amount: Option<MajorAmount>,
}

/// Parses DirectPay callbacks.
#[derive(Debug, Default, Clone, Copy)]
pub struct DirectPayWebhooks;

impl WebhookSource for DirectPayWebhooks {
    fn provider(&self) -> Provider {
        Provider::Directpay
    }

    fn parse(&self, request: &WebhookRequest) -> Result<WebhookEvent, WebhookError> {
        let callback: Callback = serde_json::from_slice(&request.body)
            .map_err(|e| WebhookError::Malformed(e.to_string().chars().take(200).collect()))?;
        // Our payment id travels as the merchant reference; whichever field
        // DirectPay echoes it in, it parses as one.
        // Our webhook URL carries it too (`?payment_id=`, as QPay's does):
        // one read instead of a lookup by DirectPay's id.
        let from_url = request
            .query
            .get("payment_id")
            .and_then(|p| p.parse::<crate::ids::PaymentId>().ok());
        let ours = from_url.or_else(|| {
            [
                &callback.merchantpaymentreferences,
                &callback.ref_id,
                &callback.invoice_no,
                &callback.reference,
            ]
            .into_iter()
            .flatten()
            .find_map(|r| r.parse().ok())
        });
        // Else DirectPay's own id: the cash-in's `transactionId` comes back
        // as `refId` in the captured callbacks (both `ref_…`,
        // fixtures/directpay), as `txnId` or `reference` in other sources.
        let payment = match ours {
            Some(id) => PaymentRef::Ours(id),
            None => {
                let mut candidates: Vec<String> = Vec::new();
                for r in [&callback.ref_id, &callback.txn_id, &callback.reference]
                    .into_iter()
                    .flatten()
                {
                    if !r.is_empty() && !candidates.contains(r) {
                        candidates.push(r.clone());
                    }
                }
                match candidates.len() {
                    0 => return Err(WebhookError::Malformed("no payment reference".into())),
                    1 => PaymentRef::Provider(candidates.remove(0)),
                    _ => PaymentRef::ProviderOneOf(candidates),
                }
            }
        };
        let word = callback
            .status
            .or(callback.transaction_status)
            .ok_or_else(|| WebhookError::Malformed("no status".into()))?;
        let amount = claimed_amount(callback.amount.as_ref(), Currency::Php)?;
        Ok(WebhookEvent::unverified(
            payment,
            TransactionStatus::parse(&word).into(),
            amount,
            word,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PaymentId;
    use crate::money::Money;
    use crate::payment::PaymentStatus;

    fn parse(body: &str) -> Result<WebhookEvent, WebhookError> {
        DirectPayWebhooks.parse(&WebhookRequest {
            body: body.as_bytes().to_vec(),
            ..Default::default()
        })
    }

    #[test]
    fn public_clients_field_names_and_status_words_are_read() {
        for (body, status) in [
            (
                r#"{"transactionId":"DP1","transaction_status":"successful"}"#,
                PaymentStatus::Completed,
            ),
            (
                r#"{"transaction_id":"DP1","status":"Paid"}"#,
                PaymentStatus::Completed,
            ),
            (
                r#"{"txnId":"DP1","status":"success"}"#,
                PaymentStatus::Completed,
            ),
            (
                r#"{"txnId":"DP1","transaction_status":"FAILED"}"#,
                PaymentStatus::Failed,
            ),
        ] {
            let e = parse(body).unwrap();
            assert_eq!(e.payment, PaymentRef::Provider("DP1".into()), "{body}");
            assert_eq!(e.status, status, "{body}");
        }
        assert!(matches!(
            parse(r#"{"txnId":"DP1"}"#),
            Err(WebhookError::Malformed(_))
        ));
    }

    #[test]
    fn accepts_the_real_shape() {
        let id = PaymentId::generate();
        let e = parse(&format!(
            r#"{{"amount":"100","currency":"PHP","refId":"{id}","invoiceNo":"INV1","txnDesc":"x","txnDate":"1733565000000","txnId":"DP123","status":"SUCCESS","merchant_id":"M1"}}"#
        ))
        .unwrap();
        assert_eq!(e.payment, PaymentRef::Ours(id));
        assert_eq!(e.status, PaymentStatus::Completed);
        assert_eq!(e.amount, Some(Money::new(10_000, Currency::Php).unwrap()));
        assert!(!e.verified);
    }

    #[test]
    fn accepts_the_seed_shape() {
        let e = parse(r#"{"reference":"DP999","status":"completed","amount":150.5,"timestamp":"2025-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(e.payment, PaymentRef::Provider("DP999".into()));
        assert_eq!(e.status, PaymentStatus::Completed);
        assert_eq!(e.amount, Some(Money::new(15_050, Currency::Php).unwrap()));
    }

    fn fixture(name: &str) -> String {
        String::from_utf8(crate::providers::fixture("directpay", name)).unwrap()
    }

    /// The captured callbacks name the cash-in by its `ref_…` transaction
    /// id in `refId`, and carry DirectPay's numeric `txnId` beside it.
    #[test]
    fn the_captured_callbacks_are_read() {
        for (name, status) in [
            ("callback.edited.success.json", PaymentStatus::Completed),
            ("callback.real.failed.json", PaymentStatus::Failed),
        ] {
            let e = parse(&fixture(name)).unwrap();
            assert_eq!(
                e.payment,
                PaymentRef::ProviderOneOf(vec!["ref_1ae942cfd281eaa9".into(), "9908728".into()]),
                "{name}"
            );
            assert_eq!(e.status, status, "{name}");
            assert_eq!(e.amount, Some(Money::new(10_000, Currency::Php).unwrap()));
            assert!(!e.verified);
        }
        let seed = parse(&fixture("callback.seed.json")).unwrap();
        assert_eq!(seed.payment, PaymentRef::Provider("SEED-REF-1".into()));
        assert_eq!(seed.status, PaymentStatus::Completed);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "",
            "{}",
            "[]",
            r#"{"status":"SUCCESS"}"#,
            r#"{"status":"SUCCESS","txnId":"D","amount":"1.001"}"#,
        ] {
            assert!(
                matches!(parse(bad), Err(WebhookError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn our_id_in_the_webhook_url_wins() {
        let id = PaymentId::generate();
        let with_query = |value: &str, body: &str| WebhookRequest {
            query: [("payment_id".to_string(), value.to_string())].into(),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        };
        let request = with_query(
            &id.to_string(),
            r#"{"amount":"100","currency":"PHP","refId":"ref_1","txnId":"99","status":"SUCCESS"}"#,
        );
        let e = DirectPayWebhooks.parse(&request).unwrap();
        assert_eq!(e.payment, PaymentRef::Ours(id));
        // A query that is not our id is ignored: the body decides.
        let request = with_query(
            "nope",
            r#"{"amount":"100","currency":"PHP","refId":"ref_1","status":"SUCCESS"}"#,
        );
        let e = DirectPayWebhooks.parse(&request).unwrap();
        assert_eq!(e.payment, PaymentRef::Provider("ref_1".into()));
    }
}
