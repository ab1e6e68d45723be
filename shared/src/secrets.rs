//! Secrets from AWS Secrets Manager, cached in memory, never printed.
//!
//! [`Secret`] wraps any value so that `Debug` and `Display` print
//! `[redacted]`; credentials live in it from the moment they are parsed.
//! [`SecretsCache`] fetches a secret's JSON once and keeps it for a TTL, so
//! a warm Lambda does not call Secrets Manager per request, while a rotated
//! secret is picked up within the TTL.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A value that must not appear in logs, errors or responses.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

pub type SecretString = Secret<String>;

impl<T> Secret<T> {
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Serializes a secret's value, for the one field that must be stored with
/// it (`#[serde(with = "crate::secrets::exposed")]`): a provider login kept
/// in the table. Opt-in per field; `Secret` itself never serializes.
pub mod exposed {
    use super::SecretString;

    pub fn serialize<S: serde::Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.expose())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        <String as serde::Deserialize>::deserialize(d).map(SecretString::from)
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> SecretString {
        Secret(s)
    }
}

/// Why a secret could not be had. Never carries the secret's content.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret {name} could not be fetched: {reason}")]
    Fetch { name: String, reason: String },
    #[error("secret {name} has no string value")]
    NotAString { name: String },
    /// Only the position and category of the JSON error: serde's messages
    /// can quote the input.
    #[error(
        "secret {name} is not the expected JSON ({category} error at line {line}, column {column})"
    )]
    Malformed {
        name: String,
        category: &'static str,
        line: usize,
        column: usize,
    },
}

/// Secrets Manager behind an in-memory cache with a TTL.
#[derive(Clone)]
pub struct SecretsCache {
    client: aws_sdk_secretsmanager::Client,
    ttl: Duration,
    entries: Arc<RwLock<HashMap<String, (Instant, SecretString)>>>,
}

impl fmt::Debug for SecretsCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .entries
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("SecretsCache")
            .field("ttl", &self.ttl)
            .field("cached", &names)
            .finish_non_exhaustive()
    }
}

impl SecretsCache {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

    pub fn new(client: aws_sdk_secretsmanager::Client, ttl: Duration) -> SecretsCache {
        SecretsCache {
            client,
            ttl,
            entries: Arc::default(),
        }
    }

    /// The secret's string value, from the cache while it is fresh.
    pub async fn get_string(&self, name: &str) -> Result<SecretString, SecretsError> {
        if let Some(hit) = self.cached(name) {
            return Ok(hit);
        }
        let out = self
            .client
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| SecretsError::Fetch {
                name: name.to_string(),
                reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            })?;
        let value = Secret(out.secret_string.ok_or_else(|| SecretsError::NotAString {
            name: name.to_string(),
        })?);
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(name.to_string(), (Instant::now(), value.clone()));
        }
        Ok(value)
    }

    /// The secret's JSON value parsed as `T`. `T` keeps its credentials in
    /// [`Secret`] fields.
    pub async fn get_json<T: DeserializeOwned>(&self, name: &str) -> Result<T, SecretsError> {
        let raw = self.get_string(name).await?;
        serde_json::from_str(raw.expose()).map_err(|e| SecretsError::Malformed {
            name: name.to_string(),
            category: match e.classify() {
                serde_json::error::Category::Io => "io",
                serde_json::error::Category::Syntax => "syntax",
                serde_json::error::Category::Data => "data",
                serde_json::error::Category::Eof => "eof",
            },
            line: e.line(),
            column: e.column(),
        })
    }

    /// Forgets a cached secret, e.g. after a provider rejects its credentials
    /// (they may have been rotated).
    pub fn invalidate(&self, name: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(name);
        }
    }

    fn cached(&self, name: &str) -> Option<SecretString> {
        let entries = self.entries.read().ok()?;
        let (at, value) = entries.get(name)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Credentials {
        #[allow(dead_code)]
        username: String,
        #[allow(dead_code)]
        password: SecretString,
        #[allow(dead_code)]
        tokens: Secret<HashMap<String, String>>,
    }

    #[test]
    fn secret_values_never_print() {
        let c: Credentials = serde_json::from_str(
            r#"{"username":"merchant","password":"hunter2-pw","tokens":{"mgr":"tok-abc"}}"#,
        )
        .unwrap();
        let shown = format!("{c:?} {c:#?} {}", c.password);
        assert!(shown.contains("merchant"));
        for secret in ["hunter2-pw", "tok-abc", "mgr"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert_eq!(c.password.expose(), "hunter2-pw");
    }
}
