//! Standard Webhooks signatures (standard-webhooks/standard-webhooks,
//! `spec/standard-webhooks.md`), written here apart from paygate's own
//! signer: the Payment Engine's signed webhooks, and `sandbox listen`'s
//! check of what paygate sends.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` under the
/// secret's decoded bytes (`whsec_<base64>`); `None` for a secret that is
/// not base64.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Whether one of the space-separated signatures of `header` is the
/// secret's.
pub fn verifies(secret: &str, id: &str, timestamp: &str, body: &str, header: &str) -> bool {
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    sign(secret, id, ts, body).is_some_and(|s| header.split(' ').any(|h| h == s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specification_test_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some(expected)
        );
        let two = format!("v1,bm9wZQ== {expected}");
        assert!(verifies(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            body,
            &two
        ));
        assert!(!verifies(secret, "msg_other", "1614265330", body, &two));
    }
}
