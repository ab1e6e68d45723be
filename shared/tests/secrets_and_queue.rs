//! Secrets Manager and SQS against moto.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use shared::ids::PaymentId;
use shared::queue::{TopUpMessage, TopUpQueue};
use shared::secrets::{Secret, SecretString, SecretsCache, SecretsError};

/// A provider configuration as a function would hold it.
#[derive(Debug, Deserialize)]
struct CasinoConfig {
    base_url: String,
    tokens: Secret<HashMap<String, String>>,
    lookup_key: SecretString,
}

const VALUE: &str = r#"{"base_url":"http://127.0.0.1:9/casino","tokens":{"TOPMGR":"tok-7f3a9c"},"lookup_key":"lk-51b2e0"}"#;

#[tokio::test]
async fn secrets_are_fetched_cached_and_never_printed() {
    let stack = devstack::LocalStack::connect().await;
    let name = format!("paygate/test/{}", ulid::Ulid::new());
    stack.put_secret(&name, VALUE).await.unwrap();

    let cache = SecretsCache::new(stack.secrets.clone(), Duration::from_secs(3600));
    let config: CasinoConfig = cache.get_json(&name).await.unwrap();
    assert_eq!(config.base_url, "http://127.0.0.1:9/casino");
    assert_eq!(config.tokens.expose()["TOPMGR"], "tok-7f3a9c");
    assert_eq!(config.lookup_key.expose(), "lk-51b2e0");

    let printed = format!(
        "{config:?} {config:#?} {cache:?} {:?}",
        cache.get_string(&name).await.unwrap()
    );
    for secret in ["tok-7f3a9c", "lk-51b2e0", "TOPMGR"] {
        assert!(!printed.contains(secret), "{secret} leaked in {printed}");
    }

    // Rotated in Secrets Manager: the cache keeps the old value for its TTL,
    // and fetches the new one once told to forget.
    stack
        .put_secret(&name, &VALUE.replace("tok-7f3a9c", "tok-rotated"))
        .await
        .unwrap();
    let cached: CasinoConfig = cache.get_json(&name).await.unwrap();
    assert_eq!(cached.tokens.expose()["TOPMGR"], "tok-7f3a9c");
    cache.invalidate(&name);
    let fresh: CasinoConfig = cache.get_json(&name).await.unwrap();
    assert_eq!(fresh.tokens.expose()["TOPMGR"], "tok-rotated");

    // With no TTL every read goes to Secrets Manager.
    let uncached = SecretsCache::new(stack.secrets.clone(), Duration::ZERO);
    stack.put_secret(&name, VALUE).await.unwrap();
    let now: CasinoConfig = uncached.get_json(&name).await.unwrap();
    assert_eq!(now.tokens.expose()["TOPMGR"], "tok-7f3a9c");
}

#[tokio::test]
async fn secret_errors_name_the_secret_but_not_its_content() {
    let stack = devstack::LocalStack::connect().await;
    let cache = SecretsCache::new(stack.secrets.clone(), Duration::from_secs(60));
    let missing = format!("paygate/test/missing-{}", ulid::Ulid::new());
    assert!(matches!(
        cache.get_string(&missing).await,
        Err(SecretsError::Fetch { .. })
    ));

    let name = format!("paygate/test/{}", ulid::Ulid::new());
    stack
        .put_secret(
            &name,
            r#"{"base_url": 5, "tokens": {}, "lookup_key": "lk-hidden-99"}"#,
        )
        .await
        .unwrap();
    let err = cache.get_json::<CasinoConfig>(&name).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(
            err,
            SecretsError::Malformed {
                category: "data",
                ..
            }
        ),
        "{shown}"
    );
    assert!(shown.contains(&name));
    assert!(!shown.contains("lk-hidden-99"), "{shown}");
}

#[tokio::test]
async fn topup_messages_reach_the_queue() {
    let stack = devstack::LocalStack::connect().await;
    let url = stack
        .sqs
        .create_queue()
        .queue_name(format!("test-{}", ulid::Ulid::new()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue = TopUpQueue::new(stack.sqs.clone(), url.clone());
    let message = TopUpMessage {
        payment_id: PaymentId::generate(),
    };
    let id = queue.send(&message).await.unwrap();
    assert!(!id.is_empty());
    let received = stack
        .sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), 1);
    let body = received[0].body.as_deref().unwrap();
    assert_eq!(TopUpMessage::parse(body).unwrap(), message);
}
