//! The HTTP API's Lambda authorizer: API keys are kept in Secrets Manager
//! as SHA-256 hashes (`{"keys": [{"merchant_id", "sha256", "name"}]}`); a
//! request's bearer key is hashed and compared with every stored hash in
//! constant time. The merchant goes into the authorizer context.

use aws_lambda_events::event::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ids::MerchantId;
use crate::secrets::{SecretsCache, SecretsError};

/// The secret holding the API key hashes, after the secret prefix.
pub const SECRET: &str = "api-keys";

#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeys {
    pub keys: Vec<ApiKey>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiKey {
    pub merchant_id: MerchantId,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// SHA-256 of a key, hex: what the secret stores.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl ApiKeys {
    /// Loads the keys from `<prefix>api-keys` (`paygate/api-keys`).
    pub async fn load(secrets: &SecretsCache, prefix: &str) -> Result<ApiKeys, SecretsError> {
        secrets.get_json(&format!("{prefix}{SECRET}")).await
    }

    /// The merchant whose key this is. Every stored hash is compared, in
    /// constant time, so timing tells nothing about which one matched.
    pub fn merchant_for(&self, presented: &str) -> Option<MerchantId> {
        let digest = Sha256::digest(presented.as_bytes());
        let mut found = None;
        for key in &self.keys {
            let Ok(stored) = hex::decode(&key.sha256) else {
                continue;
            };
            if bool::from(stored.as_slice().ct_eq(digest.as_slice())) && found.is_none() {
                found = Some(key.merchant_id.clone());
            }
        }
        found
    }
}

/// The bearer key of the request, if any.
fn bearer(request: &ApiGatewayV2CustomAuthorizerV2Request) -> Option<&str> {
    let value = request.headers.get("authorization")?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

/// The authorizer's decision (HTTP API "simple response").
pub fn authorize(
    keys: &ApiKeys,
    request: &ApiGatewayV2CustomAuthorizerV2Request,
) -> ApiGatewayV2CustomAuthorizerSimpleResponse {
    let merchant = bearer(request).and_then(|key| keys.merchant_for(key));
    let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    response.is_authorized = merchant.is_some();
    response.context = match merchant {
        Some(m) => serde_json::json!({ "merchant_id": m.as_str() }),
        None => serde_json::json!({}),
    };
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        ApiKeys {
            keys: vec![
                ApiKey {
                    merchant_id: "m_one".parse().unwrap(),
                    sha256: hash_key("pk_live_one"),
                    name: None,
                },
                ApiKey {
                    merchant_id: "m_two".parse().unwrap(),
                    sha256: hash_key("pk_live_two"),
                    name: None,
                },
            ],
        }
    }

    fn request(header: Option<&str>) -> ApiGatewayV2CustomAuthorizerV2Request {
        let mut r = ApiGatewayV2CustomAuthorizerV2Request::default();
        if let Some(h) = header {
            r.headers.insert("authorization", h.parse().unwrap());
        }
        r
    }

    #[test]
    fn a_known_key_names_its_merchant() {
        let r = authorize(&keys(), &request(Some("Bearer pk_live_two")));
        assert!(r.is_authorized);
        assert_eq!(r.context["merchant_id"], "m_two");
        assert!(authorize(&keys(), &request(Some("bearer pk_live_one"))).is_authorized);
    }

    #[test]
    fn missing_wrong_or_malformed_keys_are_refused() {
        for header in [
            None,
            Some(""),
            Some("Bearer "),
            Some("pk_live_one"),
            Some("Basic pk_live_one"),
            Some("Bearer pk_live_on"),
            Some("Bearer PK_LIVE_ONE"),
        ] {
            let r = authorize(&keys(), &request(header));
            assert!(!r.is_authorized, "{header:?}");
            assert_eq!(r.context, serde_json::json!({}));
        }
    }
}
