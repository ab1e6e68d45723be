//! The HTTP API's Lambda authorizer: API keys are kept in Secrets Manager
//! as SHA-256 hashes (`{"keys": [{"merchant_id", "sha256", "name", "role"}]}`);
//! a request's bearer key is hashed and compared with every stored hash in
//! constant time. A merchant key puts its merchant into the authorizer
//! context; an operator key (`"role": "operator"`, with the operator's
//! `name`) puts the operator there instead. Merchant routes refuse operator
//! keys and operator routes refuse merchant keys (403), in the handlers.

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

/// How long the authorizer keeps its copy of the keys. With API Gateway's
/// own cache of an answer (template.yaml's `ReauthorizeEvery`, 30 s), a
/// revoked key stops working within a minute.
pub const KEYS_TTL_SECONDS: u64 = 30;

#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeys {
    pub keys: Vec<ApiKey>,
}

/// Whose a key is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A merchant's key: its own payments and wallets.
    #[default]
    Merchant,
    /// A person who settles what paygate could not decide alone, for every
    /// merchant.
    Operator,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiKey {
    /// The merchant of a merchant key.
    #[serde(default)]
    pub merchant_id: Option<MerchantId>,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// The key's label; for an operator key, the operator's name, which
    /// every action they take records.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub role: Role,
}

/// Who presented a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Merchant(MerchantId),
    Operator(String),
}

impl ApiKey {
    /// Who this key stands for, if the key is whole (a merchant key names
    /// its merchant, an operator key its operator).
    fn principal(&self) -> Option<Principal> {
        match self.role {
            Role::Merchant => self.merchant_id.clone().map(Principal::Merchant),
            Role::Operator => self
                .name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty() && n.len() <= 64)
                .map(|n| Principal::Operator(n.to_string())),
        }
    }
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

    /// Who the key belongs to. Every stored hash is compared, in constant
    /// time, so timing tells nothing about which one matched.
    pub fn principal_for(&self, presented: &str) -> Option<Principal> {
        let digest = Sha256::digest(presented.as_bytes());
        let mut found = None;
        for key in &self.keys {
            let Ok(stored) = hex::decode(&key.sha256) else {
                continue;
            };
            if bool::from(stored.as_slice().ct_eq(digest.as_slice())) && found.is_none() {
                found = Some(key.principal());
            }
        }
        found.flatten()
    }

    /// The merchant whose key this is (none for an operator's key).
    pub fn merchant_for(&self, presented: &str) -> Option<MerchantId> {
        match self.principal_for(presented)? {
            Principal::Merchant(m) => Some(m),
            Principal::Operator(_) => None,
        }
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
    let principal = bearer(request).and_then(|key| keys.principal_for(key));
    let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    response.is_authorized = principal.is_some();
    response.context = match principal {
        Some(Principal::Merchant(m)) => {
            serde_json::json!({ "role": "merchant", "merchant_id": m.as_str() })
        }
        Some(Principal::Operator(name)) => {
            serde_json::json!({ "role": "operator", "operator": name })
        }
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
                    merchant_id: Some("m_one".parse().unwrap()),
                    sha256: hash_key("pk_live_one"),
                    name: None,
                    role: Role::Merchant,
                },
                ApiKey {
                    merchant_id: Some("m_two".parse().unwrap()),
                    sha256: hash_key("pk_live_two"),
                    name: None,
                    role: Role::Merchant,
                },
                ApiKey {
                    merchant_id: None,
                    sha256: hash_key("ok_ops_alice"),
                    name: Some("alice".into()),
                    role: Role::Operator,
                },
                // Not whole: an operator key without a name, a merchant
                // key without a merchant. Neither opens anything.
                ApiKey {
                    merchant_id: None,
                    sha256: hash_key("ok_nameless"),
                    name: None,
                    role: Role::Operator,
                },
                ApiKey {
                    merchant_id: None,
                    sha256: hash_key("pk_nobody"),
                    name: Some("x".into()),
                    role: Role::Merchant,
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
    fn an_operator_key_names_its_operator_and_no_merchant() {
        let r = authorize(&keys(), &request(Some("Bearer ok_ops_alice")));
        assert!(r.is_authorized);
        assert_eq!(
            r.context,
            serde_json::json!({"role": "operator", "operator": "alice"})
        );
        assert_eq!(keys().merchant_for("ok_ops_alice"), None);
        let m = authorize(&keys(), &request(Some("Bearer pk_live_one")));
        assert_eq!(m.context["role"], "merchant");
        // The secret as operators write it: role and name, no merchant.
        let parsed: ApiKeys = serde_json::from_value(serde_json::json!({"keys": [
            {"sha256": hash_key("k1"), "role": "operator", "name": "bob"},
            {"sha256": hash_key("k2"), "merchant_id": "m_x"}]}))
        .unwrap();
        assert_eq!(
            parsed.principal_for("k1"),
            Some(Principal::Operator("bob".into()))
        );
        assert_eq!(
            parsed.principal_for("k2"),
            Some(Principal::Merchant("m_x".parse().unwrap()))
        );
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
            Some("Bearer ok_nameless"),
            Some("Bearer pk_nobody"),
        ] {
            let r = authorize(&keys(), &request(header));
            assert!(!r.is_authorized, "{header:?}");
            assert_eq!(r.context, serde_json::json!({}));
        }
    }
}
