//! QPay callbacks: `GET {callback_url}&qpay_payment_id=..` (real), or a POST
//! with a JSON body (seed). Our payment id is in the callback URL's query.
//! QPay signs nothing: every callback is confirmed with payment/check.

use super::wire::SeedBody;
use crate::payment::Provider;
use crate::providers::{PaymentRef, WebhookError, WebhookEvent, WebhookRequest, WebhookSource};

#[derive(Debug, Default, Clone, Copy)]
pub struct QpayWebhooks;

impl WebhookSource for QpayWebhooks {
    fn provider(&self) -> Provider {
        Provider::Qpay
    }

    fn parse(&self, request: &WebhookRequest) -> Result<WebhookEvent, WebhookError> {
        let body: Option<SeedBody> =
            if request.body.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                Some(serde_json::from_slice(&request.body).map_err(|e| {
                    WebhookError::Malformed(e.to_string().chars().take(200).collect())
                })?)
            };
        let payment = match request.query.get("payment_id").map(|p| p.parse()) {
            Some(Ok(id)) => PaymentRef::Ours(id),
            Some(Err(_)) => {
                return Err(WebhookError::Malformed(
                    "payment_id is not a payment id".into(),
                ))
            }
            None => match body.as_ref().and_then(|b| b.object_id.clone()) {
                Some(invoice) if !invoice.is_empty() => PaymentRef::Provider(invoice),
                _ => return Err(WebhookError::Malformed("no payment_id".into())),
            },
        };
        let word = body
            .and_then(|b| b.payment_status)
            .unwrap_or_else(|| "PAID".into());
        let status = super::PaymentState::parse(&word).of_callback();
        Ok(WebhookEvent::unverified(payment, status, None, word))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PaymentId;
    use crate::payment::PaymentStatus;

    fn request(query: &[(&str, &str)], body: &str) -> WebhookRequest {
        WebhookRequest {
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn get_and_post_callbacks_are_read() {
        let id = PaymentId::generate().to_string();
        let get = QpayWebhooks
            .parse(&request(
                &[("payment_id", &id), ("qpay_payment_id", "123")],
                "",
            ))
            .unwrap();
        assert_eq!(get.payment, PaymentRef::Ours(id.parse().unwrap()));
        assert_eq!(get.status, PaymentStatus::Completed);
        let post = QpayWebhooks
            .parse(&request(&[("payment_id", &id)], r#"{"payment_id":"123","payment_status":"PAID","payment_amount":100,"object_id":"INV1"}"#))
            .unwrap();
        assert_eq!(post.status, PaymentStatus::Completed);
    }

    #[test]
    fn callbacks_without_our_payment_are_malformed() {
        assert!(QpayWebhooks.parse(&request(&[], "")).is_err());
        assert!(QpayWebhooks
            .parse(&request(&[("payment_id", "nope")], ""))
            .is_err());
        assert!(QpayWebhooks
            .parse(&request(&[("payment_id", "x")], "{bad"))
            .is_err());
    }

    /// QPay's documented callback: a GET on our URL with `qpay_payment_id`
    /// appended (fixtures/qpay/callback.query.form), our id in the URL's
    /// own query; and the answer QPay demands (callback.reply.txt) is the
    /// one paygate gives, to every callback about a known payment.
    #[test]
    fn the_documented_callback_is_read_and_answered_as_demanded() {
        let text =
            String::from_utf8(crate::providers::fixture("qpay", "callback.query.form")).unwrap();
        let (key, qpay_id) = text.trim().split_once('=').unwrap();
        let id = PaymentId::generate();
        let mut r = request(&[("payment_id", &id.to_string()), (key, qpay_id)], "");
        r.method = "GET".into();
        let e = QpayWebhooks.parse(&r).unwrap();
        assert_eq!(e.payment, PaymentRef::Ours(id));
        assert!(!e.verified);
        let demanded =
            String::from_utf8(crate::providers::fixture("qpay", "callback.reply.txt")).unwrap();
        let described = crate::providers::registry::describe(Provider::Qpay);
        assert!(matches!(
            described.callback_answer,
            crate::providers::description::CallbackAnswer::Text(answer) if answer == demanded.trim()
        ));
        assert!(described.answers_always);
    }
}
