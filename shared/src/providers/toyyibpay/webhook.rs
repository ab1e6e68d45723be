//! ToyyibPay callbacks: form data (urlencoded or multipart) with refno,
//! status, reason, billcode, order_id, amount, transaction_time, hash.
//! `hash` = md5(secret + status + order_id + refno + "ok"), compared in
//! constant time when present (the official API reference lists no hash;
//! a callback without one is a hint like any other); where an HMAC key is
//! configured the seed's `x-signature` (hex HMAC-SHA256 of the raw body)
//! is required too. Neither has replay protection, so the bill is always
//! confirmed with getBillTransactions.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{reported_amount, status_from_code};
use crate::payment::Provider;
use crate::providers::{PaymentRef, WebhookError, WebhookEvent, WebhookRequest, WebhookSource};
use crate::secrets::SecretString;

#[derive(Debug, Clone)]
pub struct ToyyibPayWebhooks {
    secret_key: SecretString,
    hmac_key: Option<SecretString>,
}

impl ToyyibPayWebhooks {
    pub fn new(secret_key: SecretString, hmac_key: Option<SecretString>) -> ToyyibPayWebhooks {
        ToyyibPayWebhooks {
            secret_key,
            hmac_key,
        }
    }

    /// The `hash` ToyyibPay computes for a callback (also used by the sandbox
    /// and tests).
    pub fn hash(secret: &str, status: &str, order_id: &str, refno: &str) -> String {
        let mut md5 = Md5::new();
        md5.update(secret.as_bytes());
        md5.update(status.as_bytes());
        md5.update(order_id.as_bytes());
        md5.update(refno.as_bytes());
        md5.update(b"ok");
        hex::encode(md5.finalize())
    }

    /// The seed's `x-signature` for a body.
    pub fn sign(key: &str, body: &[u8]) -> String {
        match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
            Ok(mut mac) => {
                mac.update(body);
                hex::encode(mac.finalize().into_bytes())
            }
            // HMAC takes keys of any length; this cannot happen.
            Err(_) => String::new(),
        }
    }
}

/// Form fields from an urlencoded or multipart body.
fn fields(request: &WebhookRequest) -> Result<HashMap<String, String>, WebhookError> {
    let content_type = request
        .headers
        .get("content-type")
        .map(String::as_str)
        .unwrap_or_default();
    if let Some(boundary) = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
    {
        return multipart(&request.body, boundary.trim_matches('"'));
    }
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(&request.body)
        .map(|pairs| pairs.into_iter().collect())
        .map_err(|e| WebhookError::Malformed(format!("form: {e}")))
}

/// The text fields of a multipart/form-data body.
fn multipart(body: &[u8], boundary: &str) -> Result<HashMap<String, String>, WebhookError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| WebhookError::Malformed("multipart body is not UTF-8".into()))?;
    let delimiter = format!("--{boundary}");
    let mut out = HashMap::new();
    for part in text.split(&delimiter).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.trim_start_matches("\r\n");
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let name = head
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("name="))
            .map(|n| {
                n.split(['\r', '\n'])
                    .next()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string()
            });
        if let Some(name) = name {
            out.insert(
                name,
                value.strip_suffix("\r\n").unwrap_or(value).to_string(),
            );
        }
    }
    if out.is_empty() {
        return Err(WebhookError::Malformed(
            "multipart body without fields".into(),
        ));
    }
    Ok(out)
}

impl WebhookSource for ToyyibPayWebhooks {
    fn provider(&self) -> Provider {
        Provider::Toyyibpay
    }

    fn parse(&self, request: &WebhookRequest) -> Result<WebhookEvent, WebhookError> {
        if let Some(key) = &self.hmac_key {
            let given = request
                .headers
                .get("x-signature")
                .ok_or(WebhookError::Unauthenticated("x-signature"))?;
            let given = hex::decode(given.trim())
                .map_err(|_| WebhookError::Unauthenticated("x-signature"))?;
            let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes())
                .map_err(|_| WebhookError::Unauthenticated("x-signature"))?;
            mac.update(&request.body);
            mac.verify_slice(&given)
                .map_err(|_| WebhookError::Unauthenticated("x-signature"))?;
        }
        let f = fields(request)?;
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
        let (status, order_id, refno, billcode) = (
            get("status"),
            get("order_id"),
            get("refno"),
            get("billcode"),
        );
        // The official API reference lists no `hash` among the callback's
        // parameters; only the plugin sends one (fixtures/toyyibpay
        // SOURCES.md). A callback without one is the hint every callback
        // is anyway (confirmed with getBillTransactions before money
        // moves); one that carries a hash must carry the right one.
        if let Some(given) = f.get("hash").map(|h| h.to_ascii_lowercase()) {
            let expected = Self::hash(self.secret_key.expose(), status, order_id, refno);
            if given.is_empty() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(WebhookError::Unauthenticated("hash"));
            }
        }
        if status.is_empty() {
            return Err(WebhookError::Malformed("no status".into()));
        }
        let payment = match order_id.parse() {
            Ok(id) => PaymentRef::Ours(id),
            Err(_) if !billcode.is_empty() => PaymentRef::Provider(billcode.to_string()),
            Err(_) => return Err(WebhookError::Malformed("no order_id or billcode".into())),
        };
        let amount = match get("amount") {
            "" => None,
            text => Some(
                reported_amount(text)
                    .map_err(|e| WebhookError::Malformed(format!("amount: {e}")))?,
            ),
        };
        Ok(WebhookEvent::unverified(
            payment,
            status_from_code(status),
            amount,
            status.to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PaymentId;
    use crate::payment::PaymentStatus;

    const SECRET: &str = "tp-secret-key";

    fn form(id: &str, status: &str, hash: &str) -> String {
        format!("refno=TP123&status={status}&reason=Approved&billcode=gcbhict9&order_id={id}&amount=99.90&transaction_time=2025-12-07+10%3A30%3A00&hash={hash}")
    }

    fn request(body: &str, content_type: &str, headers: &[(&str, &str)]) -> WebhookRequest {
        let mut h: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        h.insert("content-type".into(), content_type.into());
        WebhookRequest {
            headers: h,
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_hashed_urlencoded_callback_is_read() {
        let id = PaymentId::generate().to_string();
        let hash = ToyyibPayWebhooks::hash(SECRET, "1", &id, "TP123");
        let source = ToyyibPayWebhooks::new(SECRET.to_string().into(), None);
        let e = source
            .parse(&request(
                &form(&id, "1", &hash),
                "application/x-www-form-urlencoded",
                &[],
            ))
            .unwrap();
        assert_eq!(e.payment, PaymentRef::Ours(id.parse().unwrap()));
        assert_eq!(e.status, PaymentStatus::Completed);
        assert_eq!(e.amount.unwrap().minor(), 9990);
        assert!(!e.verified);
    }

    #[test]
    fn multipart_callbacks_are_read_too() {
        let id = PaymentId::generate().to_string();
        let hash = ToyyibPayWebhooks::hash(SECRET, "3", &id, "TP9");
        let body = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"refno\"\r\n\r\nTP9\r\n--XyZ\r\nContent-Disposition: form-data; name=\"status\"\r\n\r\n3\r\n--XyZ\r\nContent-Disposition: form-data; name=\"order_id\"\r\n\r\n{id}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"billcode\"\r\n\r\nbc1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"hash\"\r\n\r\n{hash}\r\n--XyZ--\r\n"
        );
        let source = ToyyibPayWebhooks::new(SECRET.to_string().into(), None);
        let e = source
            .parse(&request(&body, "multipart/form-data; boundary=XyZ", &[]))
            .unwrap();
        // A failed attempt: the bill stays payable.
        assert_eq!(e.status, PaymentStatus::Pending);
        assert_eq!(e.provider_status, "3");
    }

    #[test]
    fn a_tampered_hash_or_signature_is_refused() {
        let id = PaymentId::generate().to_string();
        let hash = ToyyibPayWebhooks::hash(SECRET, "3", &id, "TP123");
        let source = ToyyibPayWebhooks::new(SECRET.to_string().into(), None);
        // The hash of a failure cannot carry a success.
        let tampered = form(&id, "1", &hash);
        assert_eq!(
            source.parse(&request(
                &tampered,
                "application/x-www-form-urlencoded",
                &[]
            )),
            Err(WebhookError::Unauthenticated("hash"))
        );
        // An empty hash is a wrong one.
        let empty = form(&id, "1", "");
        assert_eq!(
            source.parse(&request(&empty, "application/x-www-form-urlencoded", &[])),
            Err(WebhookError::Unauthenticated("hash"))
        );

        let good = form(
            &id,
            "1",
            &ToyyibPayWebhooks::hash(SECRET, "1", &id, "TP123"),
        );
        let strict = ToyyibPayWebhooks::new(
            SECRET.to_string().into(),
            Some("hmac-key".to_string().into()),
        );
        let ct = "application/x-www-form-urlencoded";
        assert_eq!(
            strict.parse(&request(&good, ct, &[])),
            Err(WebhookError::Unauthenticated("x-signature"))
        );
        let wrong = ToyyibPayWebhooks::sign("other-key", good.as_bytes());
        assert!(strict
            .parse(&request(&good, ct, &[("x-signature", &wrong)]))
            .is_err());
        let right = ToyyibPayWebhooks::sign("hmac-key", good.as_bytes());
        assert!(strict
            .parse(&request(&good, ct, &[("x-signature", &right)]))
            .is_ok());
    }

    #[test]
    fn garbage_is_malformed_or_unauthenticated_never_a_panic() {
        let source = ToyyibPayWebhooks::new(SECRET.to_string().into(), None);
        for (body, ct) in [
            ("", "application/x-www-form-urlencoded"),
            ("%%%", "application/x-www-form-urlencoded"),
            ("--b\r\n\r\n", "multipart/form-data; boundary=b"),
            ("\u{0}\u{1}", "multipart/form-data; boundary=\"\""),
        ] {
            assert!(source.parse(&request(body, ct, &[])).is_err(), "{body:?}");
        }
    }

    /// The callback's parameters as the official reference lists them
    /// (and the unofficial documentation's example shows them): no hash.
    /// A hint, not a refusal; getBillTransactions decides.
    #[test]
    fn a_callback_without_a_hash_is_a_hint() {
        let source = ToyyibPayWebhooks::new(SECRET.to_string().into(), None);
        let text = String::from_utf8(crate::providers::fixture(
            "toyyibpay",
            "callback.unofficial_doc.form",
        ))
        .unwrap();
        let body = text
            .lines()
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("&");
        let e = source
            .parse(&request(&body, "application/x-www-form-urlencoded", &[]))
            .unwrap();
        // order_id is no id of ours: the bill code names the payment.
        assert_eq!(e.payment, PaymentRef::Provider("90uf2fe".into()));
        assert_eq!(e.status, PaymentStatus::Completed);
        assert_eq!(
            e.amount.map(|a| a.minor()),
            Some(1150),
            "no decimal point: sen"
        );
        assert!(!e.verified);
        // Without a hash, but where the seed's x-signature is configured,
        // the signature is still required.
        let strict = ToyyibPayWebhooks::new(
            SECRET.to_string().into(),
            Some("hmac-key".to_string().into()),
        );
        assert_eq!(
            strict.parse(&request(&body, "application/x-www-form-urlencoded", &[])),
            Err(WebhookError::Unauthenticated("x-signature"))
        );
    }
}
