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
    gateways: HashMap<Provider, OnceCell<Arc<dyn Gateway>>>,
    webhooks: HashMap<Provider, OnceCell<Arc<dyn WebhookSource>>>,
    casino: OnceCell<Arc<CasinoClient>>,
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
                .map(|p| (*p, OnceCell::new()))
                .collect(),
            webhooks: Provider::ALL
                .iter()
                .map(|p| (*p, OnceCell::new()))
                .collect(),
            casino: OnceCell::new(),
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
        cell.get_or_try_init(|| async {
            let d = describe(provider);
            (d.gateway)(&self.connect(d.secret)).await
        })
        .await
        .cloned()
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
        cell.get_or_try_init(|| async {
            let d = describe(provider);
            (d.webhooks)(&self.connect(d.secret)).await
        })
        .await
        .cloned()
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
