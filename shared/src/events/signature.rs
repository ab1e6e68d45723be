//! Standard Webhooks signatures (standard-webhooks/standard-webhooks,
//! `spec/standard-webhooks.md`): `v1,<base64 HMAC-SHA256 over
//! "{webhook-id}.{webhook-timestamp}.{body}">`, keyed with the secret's
//! decoded bytes (`whsec_<base64>`), several space-separated while a
//! rotated secret still signs.
//!
//! An endpoint's secret is never stored: it is derived from paygate's
//! signing key (Secrets Manager, `paygate/webhook-signing`) and the
//! endpoint's id and generation, so the table holds nothing that signs
//! (decision 56).

use crate::digest::hmac_sha256;
use crate::ids::EndpointId;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// An endpoint's signing secret: 32 bytes. `Debug` shows none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointSecret([u8; 32]);

impl std::fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndpointSecret(..)")
    }
}

impl EndpointSecret {
    /// The secret of `endpoint`'s `generation`, under paygate's signing key.
    pub fn derive(signing_key: &[u8], endpoint: EndpointId, generation: u32) -> EndpointSecret {
        let label = format!("paygate webhook endpoint secret\n{endpoint}\n{generation}");
        let mut secret = [0u8; 32];
        for (byte, from) in secret
            .iter_mut()
            .zip(hmac_sha256(signing_key, &[label.as_bytes()]))
        {
            *byte = from;
        }
        EndpointSecret(secret)
    }

    /// As the merchant is shown it (once, on creation and on rotation).
    pub fn reveal(&self) -> String {
        format!("whsec_{}", STANDARD.encode(self.0))
    }

    /// One `v1,` signature of a delivery.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        sign_with(&self.0, id, timestamp, body)
    }
}

fn sign_with(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let mac = hmac_sha256(
        key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    format!("v1,{}", STANDARD.encode(mac))
}

/// The `webhook-signature` header of a delivery signed by every secret in
/// `secrets` (the current one first), space-separated.
pub fn header(secrets: &[EndpointSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_reproduce_the_standard_webhooks_test_vector() {
        // The specification's published vector (the reference libraries'
        // tests use it too): shared/tests/fixtures/events/SOURCES.md.
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign_with(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn each_endpoint_and_generation_has_its_own_secret_and_debug_hides_it() {
        let a = EndpointId::generate();
        let b = EndpointId::generate();
        let key = b"signing key";
        let s = EndpointSecret::derive(key, a, 1);
        assert_eq!(s, EndpointSecret::derive(key, a, 1));
        assert_ne!(s, EndpointSecret::derive(key, a, 2));
        assert_ne!(s, EndpointSecret::derive(key, b, 1));
        assert_ne!(s, EndpointSecret::derive(b"another key", a, 1));
        assert!(s.reveal().starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&s.reveal()[6..]).unwrap().len(), 32);
        assert_eq!(format!("{s:?}"), "EndpointSecret(..)");
        let two = header(
            &[s.clone(), EndpointSecret::derive(key, a, 2)],
            "evt_1",
            1,
            b"{}",
        );
        assert_eq!(two.split(' ').count(), 2);
        assert!(two.starts_with(&s.sign("evt_1", 1, b"{}")));
    }
}
