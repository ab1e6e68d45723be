//! Payment Engine webhooks: verify the raw bytes, then parse.
//!
//! Two schemes: the seed's `X-Webhook-Signature: sha256=<hex>` over the
//! body, and (where a key is configured) Standard Webhooks: `webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64> [v1,<base64> ...]`
//! over `{id}.{timestamp}.{body}`, with a 5-minute tolerance both ways and
//! several signatures for key rotation. MACs are compared in constant time.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::status_from_word;
use super::wire::Event;
use crate::payment::{PaymentStatus, Provider};
use crate::providers::{PaymentRef, WebhookError, WebhookEvent, WebhookRequest, WebhookSource};
use crate::secrets::SecretString;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no signature header")]
    Missing,
    #[error("signature header is malformed")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp outside the tolerance")]
    Stale,
    /// A signing key that is empty or not decodable: refused when the
    /// secret is loaded, for an empty key would verify anything.
    #[error("the signing key is empty or malformed")]
    BadKey,
}

/// Verifies deliveries. Keys print as `[redacted]`; the clock is injectable.
#[derive(Clone)]
pub struct Verifier {
    key: SecretString,
    standard_key: Option<Vec<u8>>,
    now: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("key", &"[redacted]")
            .field(
                "standard_key",
                &self.standard_key.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Standard Webhooks' tolerance, each way.
pub const TOLERANCE_SECONDS: i64 = 300;

impl Verifier {
    /// `standard` is a `whsec_<base64>` key, when Standard Webhooks are on.
    pub fn new(
        key: SecretString,
        standard: Option<&SecretString>,
    ) -> Result<Verifier, VerifyError> {
        if key.expose().trim().is_empty() {
            return Err(VerifyError::BadKey);
        }
        let standard_key = match standard {
            Some(s) => {
                let text = s.expose();
                let b64 = text.strip_prefix("whsec_").unwrap_or(text);
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| VerifyError::BadKey)?;
                if decoded.is_empty() {
                    return Err(VerifyError::BadKey);
                }
                Some(decoded)
            }
            None => None,
        };
        Ok(Verifier {
            key,
            standard_key,
            now: Arc::new(|| time::OffsetDateTime::now_utc().unix_timestamp()),
        })
    }

    /// The same verifier with another clock (tests).
    pub fn with_clock(mut self, now: impl Fn() -> i64 + Send + Sync + 'static) -> Verifier {
        self.now = Arc::new(now);
        self
    }

    /// `sha256=<hex>` for a body: what the sender puts in X-Webhook-Signature.
    pub fn sign(&self, body: &[u8]) -> String {
        format!(
            "sha256={}",
            hex::encode(mac(self.key.expose().as_bytes(), &[body]))
        )
    }

    /// `v1,<base64>` for a Standard Webhooks delivery.
    pub fn sign_standard(&self, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
        let key = self.standard_key.as_ref()?;
        let ts = timestamp.to_string();
        let content = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
        Some(format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac(key, &content))
        ))
    }

    /// Verifies a delivery by whichever scheme its headers use.
    pub fn verify(
        &self,
        headers: &std::collections::HashMap<String, String>,
        body: &[u8],
    ) -> Result<(), VerifyError> {
        if let (Some(key), Some(signatures)) =
            (&self.standard_key, headers.get("webhook-signature"))
        {
            let id = headers.get("webhook-id").ok_or(VerifyError::Missing)?;
            let timestamp: i64 = headers
                .get("webhook-timestamp")
                .ok_or(VerifyError::Missing)?
                .trim()
                .parse()
                .map_err(|_| VerifyError::Malformed)?;
            // Checked: a timestamp near i64's ends must be stale, not a
            // panic (debug) or a wrapped difference (release).
            let skew = (self.now)()
                .checked_sub(timestamp)
                .and_then(i64::checked_abs);
            if skew.is_none_or(|s| s > TOLERANCE_SECONDS) {
                return Err(VerifyError::Stale);
            }
            let ts = timestamp.to_string();
            let content = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
            for signature in signatures.split_whitespace() {
                let Some(b64) = signature.strip_prefix("v1,") else {
                    continue;
                };
                let Ok(given) = base64::engine::general_purpose::STANDARD.decode(b64) else {
                    continue;
                };
                let Ok(mut m) = HmacSha256::new_from_slice(key) else {
                    return Err(VerifyError::Malformed);
                };
                for part in content {
                    m.update(part);
                }
                if m.verify_slice(&given).is_ok() {
                    return Ok(());
                }
            }
            return Err(VerifyError::Mismatch);
        }
        let header = headers
            .get("x-webhook-signature")
            .ok_or(VerifyError::Missing)?;
        let hex_part = header
            .trim()
            .strip_prefix("sha256=")
            .ok_or(VerifyError::Malformed)?;
        let given = hex::decode(hex_part).map_err(|_| VerifyError::Malformed)?;
        let mut m = HmacSha256::new_from_slice(self.key.expose().as_bytes())
            .map_err(|_| VerifyError::Malformed)?;
        m.update(body);
        m.verify_slice(&given).map_err(|_| VerifyError::Mismatch)
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    crate::digest::hmac_sha256(key, parts)
}

#[derive(Debug, Clone)]
pub struct PaymentEngineWebhooks {
    verifier: Verifier,
}

impl PaymentEngineWebhooks {
    pub fn new(verifier: Verifier) -> PaymentEngineWebhooks {
        PaymentEngineWebhooks { verifier }
    }
}

impl WebhookSource for PaymentEngineWebhooks {
    fn provider(&self) -> Provider {
        Provider::PaymentEngine
    }

    fn parse(&self, request: &WebhookRequest) -> Result<WebhookEvent, WebhookError> {
        self.verifier
            .verify(&request.headers, &request.body)
            .map_err(|e| {
                WebhookError::Unauthenticated(match e {
                    VerifyError::Stale => "webhook timestamp",
                    _ => "signature",
                })
            })?;
        let event: Event = serde_json::from_slice(&request.body)
            .map_err(|e| WebhookError::Malformed(e.to_string().chars().take(200).collect()))?;
        let data = event.data;
        let status = match event.event_type.as_str() {
            "transaction.completed" => PaymentStatus::Completed,
            "transaction.failed" => PaymentStatus::Failed,
            "transaction.created" => PaymentStatus::Pending,
            _ => data
                .status
                .as_deref()
                .map(status_from_word)
                .unwrap_or(PaymentStatus::Pending),
        };
        let data_transaction_id = data.transaction_id.clone().filter(|t| !t.is_empty());
        let payment = match data.transaction_reference.as_deref().map(str::parse) {
            Some(Ok(id)) => PaymentRef::Ours(id),
            _ => match data.transaction_id.clone() {
                Some(t) if !t.is_empty() => PaymentRef::Provider(t),
                // account.balance.updated and the like concern no payment.
                _ => PaymentRef::None,
            },
        };
        let amount = data.money().map_err(WebhookError::Malformed)?;
        Ok(WebhookEvent {
            payment,
            status,
            amount,
            provider_status: event.event_type,
            // Signed by the provider: the event is the provider's own word.
            verified: true,
            event_id: Some(event.event_id),
            provider_reference: data_transaction_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const STANDARD: &str = "whsec_c2VjcmV0LWtleS1mb3Itc3RhbmRhcmQtd2ViaG9va3M=";

    #[test]
    fn an_empty_or_undecodable_key_is_refused_when_loaded() {
        let key = |k: &str| SecretString::from(k.to_string());
        assert_eq!(
            Verifier::new(key(""), None).err(),
            Some(VerifyError::BadKey),
            "an empty key would verify anything"
        );
        assert_eq!(
            Verifier::new(key("  "), None).err(),
            Some(VerifyError::BadKey)
        );
        for standard in ["whsec_", "whsec_not base64!"] {
            assert_eq!(
                Verifier::new(key("k"), Some(&key(standard))).err(),
                Some(VerifyError::BadKey),
                "{standard}"
            );
        }
        assert!(Verifier::new(key("k"), Some(&key(STANDARD))).is_ok());
    }

    fn verifier() -> Verifier {
        Verifier::new(
            "pe-secret".to_string().into(),
            Some(&STANDARD.to_string().into()),
        )
        .unwrap()
        .with_clock(|| 1_700_000_000)
    }

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_seed_signature_verifies_the_raw_bytes() {
        let v = verifier();
        let body = br#"{"eventId":"e1"}"#;
        let sig = v.sign(body);
        assert_eq!(
            v.verify(&headers(&[("x-webhook-signature", &sig)]), body),
            Ok(())
        );
        // One changed byte, or a re-serialised body, fails.
        assert_eq!(
            v.verify(
                &headers(&[("x-webhook-signature", &sig)]),
                br#"{"eventId": "e1"}"#
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(v.verify(&headers(&[]), body), Err(VerifyError::Missing));
        assert_eq!(
            v.verify(&headers(&[("x-webhook-signature", "md5=00")]), body),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn standard_webhooks_check_time_and_accept_any_listed_signature() {
        let v = verifier();
        let body = b"{}";
        let good = v.sign_standard("msg_1", 1_700_000_000, body).unwrap();
        let rotated = format!("v1,AAAA {good}");
        for sigs in [good.as_str(), rotated.as_str()] {
            let h = headers(&[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", "1700000000"),
                ("webhook-signature", sigs),
            ]);
            assert_eq!(v.verify(&h, body), Ok(()));
        }
        for ts in [1_700_000_000 - 301, 1_700_000_000 + 301] {
            let sig = v.sign_standard("msg_1", ts, body).unwrap();
            let h = headers(&[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &ts.to_string()),
                ("webhook-signature", &sig),
            ]);
            assert_eq!(v.verify(&h, body), Err(VerifyError::Stale));
        }
        // Timestamps at i64's ends are stale, not an overflow.
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX, -i64::MAX] {
            let h = headers(&[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &ts.to_string()),
                ("webhook-signature", &good),
            ]);
            assert_eq!(v.verify(&h, body), Err(VerifyError::Stale), "{ts}");
        }
        let h = headers(&[
            ("webhook-id", "msg_2"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", &good),
        ]);
        assert_eq!(v.verify(&h, body), Err(VerifyError::Mismatch));
        assert!(!format!("{v:?}").contains("pe-secret"));
    }
}
