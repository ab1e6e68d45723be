//! What a function holds for its whole life: the store, the queue, the
//! secrets cache and the provider clients, built once at cold start.
//! Provider clients are built on first use from their secret
//! (`paygate/<provider>`), so a function pays only for the providers it
//! talks to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::environment::{self, ConfigError};
use crate::payment::Provider;
use crate::provider_health::HealthRecorder;
use crate::providers::casino::{CasinoClient, CasinoConfig};
use crate::providers::transport::HttpPolicy;
use crate::providers::{description::Connect, registry::describe};
use crate::providers::{Gateway, ProviderError, WebhookSource};
use crate::queue::TopUpQueue;
use crate::secrets::SecretsCache;
use crate::store::Store;

/// Settings from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where providers reach our webhook routes (`https://api.example.com`).
    pub public_base_url: String,
    /// Prefix of provider secrets: `<prefix><provider>`.
    pub secret_prefix: String,
    /// How long a payment waits for the payer when the provider does not say.
    pub payment_ttl: time::Duration,
    pub http: HttpPolicy,
    /// This stack's own digit (`PAYGATE_NAMESPACE`, 0 to 9), the end
    /// of every number it allocates for a provider (epayment.kz's
    /// invoiceID): two stacks on one terminal, or a table restored from a
    /// backup and deployed with a new one, never issue a number the
    /// provider has seen (decision 52).
    pub namespace: u8,
    /// Events to merchants: where their retries wait, and when they are.
    pub events: EventSettings,
}

/// How events reach merchants (decision 56).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSettings {
    /// The queue deliveries wait in between attempts
    /// (`PAYGATE_EVENTS_QUEUE_URL`), where this function sends to it.
    pub queue_url: Option<String>,
    /// The waits before the second, third … attempt
    /// (`PAYGATE_EVENT_RETRY_SECONDS`, comma-separated; API.md's 5 s, 5 min,
    /// 30 min, 2 h, 5 h, 10 h, 10 h by default; `make dev` compresses it).
    pub retry: Vec<std::time::Duration>,
}

/// API.md's retry schedule.
pub const EVENT_RETRY_SECONDS: [u64; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];

impl Default for EventSettings {
    fn default() -> EventSettings {
        EventSettings {
            queue_url: None,
            retry: EVENT_RETRY_SECONDS
                .iter()
                .map(|s| std::time::Duration::from_secs(*s))
                .collect(),
        }
    }
}

impl EventSettings {
    pub fn from_env() -> Result<EventSettings, ConfigError> {
        let mut settings = EventSettings {
            queue_url: std::env::var("PAYGATE_EVENTS_QUEUE_URL").ok(),
            ..EventSettings::default()
        };
        if let Ok(text) = std::env::var("PAYGATE_EVENT_RETRY_SECONDS") {
            settings.retry = retry_schedule(&text)?;
        }
        Ok(settings)
    }
}

/// A retry schedule as `PAYGATE_EVENT_RETRY_SECONDS` gives it: whole
/// seconds, comma-separated, at least one.
pub fn retry_schedule(text: &str) -> Result<Vec<std::time::Duration>, ConfigError> {
    let waits: Result<Vec<u64>, _> = text.split(',').map(|s| s.trim().parse::<u64>()).collect();
    match waits {
        Ok(w) if !w.is_empty() => Ok(w.into_iter().map(std::time::Duration::from_secs).collect()),
        _ => Err(ConfigError::Invalid {
            name: "PAYGATE_EVENT_RETRY_SECONDS",
            reason: "whole seconds, comma-separated".into(),
        }),
    }
}

/// A stack's namespace as `PAYGATE_NAMESPACE` gives it: one digit.
pub fn namespace(text: &str) -> Result<u8, ConfigError> {
    let text = text.trim();
    match text.parse::<u8>() {
        Ok(n) if text.len() == 1 => Ok(n),
        _ => Err(ConfigError::Invalid {
            name: "PAYGATE_NAMESPACE",
            reason: "one digit, 0 to 9".into(),
        }),
    }
}

/// The number a provider is given for the `counter`th allocation of this
/// stack: the counter, then the namespace's digit. Numbers of two
/// namespaces never meet, nor do their last six digits; one namespace's
/// last six digits repeat only after 100,000 allocations.
pub fn allocated(counter: u64, namespace: u8) -> Option<u64> {
    counter.checked_mul(10)?.checked_add(u64::from(namespace))
}

impl Settings {
    /// Whether paygate itself runs on this machine (`http://` on a loopback
    /// address, as under `make dev`): only then may a payment's return_url
    /// be `http://` too, and only to loopback.
    pub fn local_return_urls(&self) -> bool {
        url::Url::parse(&self.public_base_url).is_ok_and(|u| u.scheme() == "http" && loopback(&u))
    }

    pub fn from_env() -> Result<Settings, ConfigError> {
        Ok(Settings {
            public_base_url: environment::required("PAYGATE_PUBLIC_BASE_URL")?,
            secret_prefix: std::env::var("PAYGATE_SECRET_PREFIX")
                .unwrap_or_else(|_| "paygate/".into()),
            payment_ttl: time::Duration::minutes(30),
            http: HttpPolicy::default(),
            // Required: a stack without one could reissue another's numbers.
            namespace: namespace(&environment::required("PAYGATE_NAMESPACE")?)?,
            events: EventSettings::from_env()?,
        })
    }
}

/// Whether a URL's host is this machine (`localhost` or a loopback address).
pub fn loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Everything a handler needs.
#[derive(Debug, Clone)]
pub struct Services {
    pub store: Store,
    pub queue: TopUpQueue,
    pub secrets: SecretsCache,
    pub settings: Settings,
    /// Provider call outcomes, for `GET /v1/health` and the metrics.
    pub health: HealthRecorder,
    providers: Arc<Providers>,
}

#[derive(Debug, Default)]
struct Providers {
    gateways: HashMap<Provider, Slot<dyn Gateway>>,
    webhooks: HashMap<Provider, Slot<dyn WebhookSource>>,
    casino: OnceCell<Arc<CasinoClient>>,
    /// When each provider's secret was last read again after a refusal.
    reloaded: std::sync::Mutex<HashMap<Provider, std::time::Instant>>,
}

/// A provider's client or parser, built on first use from its secret and
/// built again after the secret is read again ([`Services::reload_secret`]).
#[derive(Debug)]
struct Slot<T: ?Sized>(tokio::sync::Mutex<Option<Arc<T>>>);

impl<T: ?Sized> Default for Slot<T> {
    fn default() -> Slot<T> {
        Slot(tokio::sync::Mutex::new(None))
    }
}

impl<T: ?Sized> Slot<T> {
    async fn get_or_build<F, Fut>(&self, build: F) -> Result<Arc<T>, ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<T>, ProviderError>>,
    {
        let mut held = self.0.lock().await;
        if let Some(built) = held.as_ref() {
            return Ok(built.clone());
        }
        let built = build().await?;
        *held = Some(built.clone());
        Ok(built)
    }

    async fn clear(&self) {
        *self.0.lock().await = None;
    }
}

/// A secret is read again after a refusal at most this often, so a flood
/// of forged callbacks cannot turn into a flood of Secrets Manager calls.
pub const SECRET_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// Whether a secret last read again at `last` may be read again `now`.
pub fn may_reload(last: Option<std::time::Instant>, now: std::time::Instant) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= SECRET_RELOAD_INTERVAL)
}

impl std::fmt::Debug for dyn Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gateway({})", self.provider())
    }
}

impl std::fmt::Debug for dyn WebhookSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSource({})", self.provider())
    }
}

/// A provider that paygate cannot serve yet, or a secret that is missing.
fn unavailable(provider: &'static str, reason: impl Into<String>) -> ProviderError {
    ProviderError::Unreachable {
        provider,
        reason: reason.into(),
    }
}

impl Services {
    pub fn new(
        store: Store,
        queue: TopUpQueue,
        secrets: SecretsCache,
        settings: Settings,
    ) -> Services {
        let providers = Providers {
            gateways: Provider::ALL
                .iter()
                .map(|p| (*p, Slot::default()))
                .collect(),
            webhooks: Provider::ALL
                .iter()
                .map(|p| (*p, Slot::default()))
                .collect(),
            casino: OnceCell::new(),
            reloaded: std::sync::Mutex::new(HashMap::new()),
        };
        Services {
            health: HealthRecorder::new(store.clone()),
            store,
            queue,
            secrets,
            settings,
            providers: Arc::new(providers),
        }
    }

    /// Builds the services from the environment, with SDK clients made once.
    pub async fn from_env() -> Result<Services, ConfigError> {
        let sdk = environment::aws().await;
        let store = Store::from_env(aws_sdk_dynamodb::Client::new(&sdk))?;
        let queue = TopUpQueue::from_env(aws_sdk_sqs::Client::new(&sdk))?;
        let secrets = SecretsCache::new(
            aws_sdk_secretsmanager::Client::new(&sdk),
            SecretsCache::DEFAULT_TTL,
        );
        Ok(Services::new(store, queue, secrets, Settings::from_env()?))
    }

    /// The provider HTTP policy, reporting to this process's health recorder.
    fn http_policy(&self) -> HttpPolicy {
        HttpPolicy {
            health: Some(self.health.clone()),
            sessions: Some(self.store.clone()),
            ..self.settings.http.clone()
        }
    }

    /// What a client or parser is built from: its settings in the secret
    /// `secret`, the HTTP policy, the table.
    fn connect(&self, secret: &'static str) -> Connect<'_> {
        Connect {
            secrets: &self.secrets,
            secret_prefix: &self.settings.secret_prefix,
            secret,
            policy: self.http_policy(),
            store: &self.store,
        }
    }

    /// The provider's outbound client.
    pub async fn gateway(&self, provider: Provider) -> Result<Arc<dyn Gateway>, ProviderError> {
        let cell = self
            .providers
            .gateways
            .get(&provider)
            .ok_or_else(|| unavailable("paygate", "unknown provider"))?;
        cell.get_or_build(|| async {
            let d = describe(provider);
            (d.gateway)(&self.connect(d.secret)).await
        })
        .await
    }

    /// The provider's callback parser.
    pub async fn webhooks(
        &self,
        provider: Provider,
    ) -> Result<Arc<dyn WebhookSource>, ProviderError> {
        let cell = self
            .providers
            .webhooks
            .get(&provider)
            .ok_or_else(|| unavailable("paygate", "unknown provider"))?;
        cell.get_or_build(|| async {
            let d = describe(provider);
            (d.webhooks)(&self.connect(d.secret)).await
        })
        .await
    }

    /// After the provider refused our credentials or a callback failed
    /// verification: the secret may have been rotated. Reads it again (the
    /// client and the parser are built anew from it on next use), at most
    /// once a [`SECRET_RELOAD_INTERVAL`] per provider; whether it did.
    pub async fn reload_secret(&self, provider: Provider) -> bool {
        let now = std::time::Instant::now();
        {
            let Ok(mut reloaded) = self.providers.reloaded.lock() else {
                return false;
            };
            if !may_reload(reloaded.get(&provider).copied(), now) {
                return false;
            }
            reloaded.insert(provider, now);
        }
        let d = describe(provider);
        self.secrets
            .invalidate(&format!("{}{}", self.settings.secret_prefix, d.secret));
        if let Some(slot) = self.providers.gateways.get(&provider) {
            slot.clear().await;
        }
        if let Some(slot) = self.providers.webhooks.get(&provider) {
            slot.clear().await;
        }
        tracing::warn!(provider = %provider, "provider secret read again after a refusal");
        true
    }

    pub async fn casino(&self) -> Result<Arc<CasinoClient>, ProviderError> {
        self.providers
            .casino
            .get_or_try_init(|| async {
                let config: CasinoConfig = self.connect("casino").config().await?;
                Ok(Arc::new(CasinoClient::new(config, self.http_policy())?))
            })
            .await
            .cloned()
    }

    /// The payer's page of a payment.
    pub fn page_url(&self, token: &crate::ids::PageToken) -> String {
        let base = self.settings.public_base_url.trim_end_matches('/');
        format!("{base}/pay/{token}")
    }

    /// Where a provider sends callbacks for a payment.
    pub fn webhook_url(&self, provider: Provider) -> String {
        let base = self.settings.public_base_url.trim_end_matches('/');
        let route = describe(provider).route;
        format!("{base}/webhooks/{route}")
    }
}

/// How long a worker holds a top-up before another may retry it: longer
/// than the worker's Lambda timeout (a live worker never outlives its
/// lease), shorter than the queue's visibility timeout (a message that
/// comes back finds the lease of a worker that died expired).
/// template.yaml's worker and queue are held to it by a test.
pub const TOPUP_LEASE_SECONDS: u64 = 60;
pub const TOPUP_LEASE: Duration = Duration::from_secs(TOPUP_LEASE_SECONDS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_two_digits() {
        assert_eq!(namespace("0"), Ok(0));
        assert_eq!(namespace(" 7 "), Ok(7));
        for bad in ["", "07", "10", "x", "-1", "a1"] {
            assert!(namespace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn two_namespaces_never_allocate_the_same_number_nor_its_last_six_digits() {
        let last6 = |n: u64| n % 1_000_000;
        let of = |ns: u8| -> Vec<u64> { (1..=20_000).map(|c| allocated(c, ns).unwrap()).collect() };
        let (a, b) = (of(0), of(1));
        let a6: std::collections::HashSet<u64> = a.iter().copied().map(last6).collect();
        assert!(b.iter().all(|n| !a.contains(n) && !a6.contains(&last6(*n))));
        // Within one namespace, the last six digits differ for 10,000 in a row.
        let first: std::collections::HashSet<u64> =
            a[..10_000].iter().copied().map(last6).collect();
        assert_eq!(first.len(), 10_000);
        assert_eq!(allocated(u64::MAX, 1), None);
    }

    #[test]
    fn a_secret_is_read_again_at_most_once_a_minute() {
        let start = std::time::Instant::now();
        assert!(may_reload(None, start));
        assert!(!may_reload(Some(start), start));
        assert!(!may_reload(
            Some(start),
            start + SECRET_RELOAD_INTERVAL - Duration::from_millis(1)
        ));
        assert!(may_reload(Some(start), start + SECRET_RELOAD_INTERVAL));
    }
}
