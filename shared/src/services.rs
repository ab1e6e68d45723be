//! What a function holds for its whole life: the store, the queue, the
//! secrets cache and the provider clients, built once at cold start.
//! Provider clients are built on first use from their secret
//! (`paygate/<provider>`), so a function pays only for the providers it
//! talks to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::config::{self, ConfigError};
use crate::health::HealthRecorder;
use crate::payment::Provider;
use crate::providers::casino::{CasinoClient, CasinoConfig};
use crate::providers::directpay::{DirectPayClient, DirectPayConfig, DirectPayWebhooks};
use crate::providers::epayment::{EpaymentClient, EpaymentConfig, EpaymentWebhooks};
use crate::providers::http::HttpPolicy;
use crate::providers::paygram::{PaygramClient, PaygramConfig, PaygramWebhooks};
use crate::providers::payment_engine::{
    PaymentEngineClient, PaymentEngineConfig, PaymentEngineWebhooks, Verifier,
};
use crate::providers::qpay::{QpayClient, QpayConfig, QpayWebhooks};
use crate::providers::registry::describe;
use crate::providers::toyyibpay::{ToyyibPayClient, ToyyibPayConfig, ToyyibPayWebhooks};
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
            public_base_url: config::required("PAYGATE_PUBLIC_BASE_URL")?,
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
        let sdk = config::aws().await;
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

    fn secret_name(&self, provider: &str) -> String {
        format!("{}{provider}", self.settings.secret_prefix)
    }

    async fn config<T: serde::de::DeserializeOwned>(
        &self,
        provider: &'static str,
    ) -> Result<T, ProviderError> {
        self.secrets
            .get_json(&self.secret_name(provider))
            .await
            .map_err(|e| unavailable(provider, e.to_string()))
    }

    /// A provider's settings, from the secret its description names.
    async fn provider_config<T: serde::de::DeserializeOwned>(
        &self,
        provider: Provider,
    ) -> Result<T, ProviderError> {
        self.config(describe(provider).secret).await
    }

    /// The provider's outbound client.
    pub async fn gateway(&self, provider: Provider) -> Result<Arc<dyn Gateway>, ProviderError> {
        let cell = self
            .providers
            .gateways
            .get(&provider)
            .ok_or_else(|| unavailable("paygate", "unknown provider"))?;
        cell.get_or_try_init(|| async {
            let policy = self.http_policy();
            let gateway: Arc<dyn Gateway> = match provider {
                Provider::Directpay => Arc::new(DirectPayClient::new(
                    self.provider_config::<DirectPayConfig>(provider).await?,
                    policy,
                )?),
                Provider::Paygram => Arc::new(PaygramClient::new(
                    self.provider_config::<PaygramConfig>(provider).await?,
                    policy,
                )?),
                Provider::PaymentEngine => Arc::new(PaymentEngineClient::new(
                    self.provider_config::<PaymentEngineConfig>(provider)
                        .await?,
                    policy,
                )?),
                Provider::Qpay => Arc::new(QpayClient::new(
                    self.provider_config::<QpayConfig>(provider).await?,
                    policy,
                )?),
                Provider::Epayment => Arc::new(EpaymentClient::new(
                    self.provider_config::<EpaymentConfig>(provider).await?,
                    policy,
                )?),
                Provider::Toyyibpay => {
                    let mut config = self.provider_config::<ToyyibPayConfig>(provider).await?;
                    if config.category_code.is_none() {
                        config.category_code = Some(self.toyyibpay_category(&config).await?);
                    }
                    Arc::new(ToyyibPayClient::new(config, policy)?)
                }
            };
            Ok(gateway)
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
            let source: Arc<dyn WebhookSource> = match provider {
                Provider::Directpay => Arc::new(DirectPayWebhooks),
                Provider::Paygram => Arc::new(PaygramWebhooks::new(
                    self.provider_config::<PaygramConfig>(provider)
                        .await?
                        .callback_secret,
                )),
                Provider::Qpay => Arc::new(QpayWebhooks),
                Provider::PaymentEngine => {
                    let config = self
                        .provider_config::<PaymentEngineConfig>(provider)
                        .await?;
                    let verifier = Verifier::new(
                        config.webhook_secret,
                        config.standard_webhooks_secret.as_ref(),
                    )
                    .map_err(|e| unavailable("payment_engine", e.to_string()))?;
                    Arc::new(PaymentEngineWebhooks::new(verifier))
                }
                Provider::Epayment => Arc::new(EpaymentWebhooks::new(
                    self.provider_config::<EpaymentConfig>(provider)
                        .await?
                        .callback_key,
                )),
                Provider::Toyyibpay => {
                    let config = self.provider_config::<ToyyibPayConfig>(provider).await?;
                    Arc::new(ToyyibPayWebhooks::new(
                        config.secret_key,
                        config.webhook_hmac_secret,
                    ))
                }
            };
            Ok(source)
        })
        .await
        .cloned()
    }

    pub async fn casino(&self) -> Result<Arc<CasinoClient>, ProviderError> {
        self.providers
            .casino
            .get_or_try_init(|| async {
                let config = self.config::<CasinoConfig>("casino").await?;
                Ok(Arc::new(CasinoClient::new(config, self.http_policy())?))
            })
            .await
            .cloned()
    }

    /// ToyyibPay's bill category: learned once (got or created by name) and
    /// kept in the table, so later cold starts need not ask again.
    async fn toyyibpay_category(&self, config: &ToyyibPayConfig) -> Result<String, ProviderError> {
        let name = format!("toyyibpay-category#{}", config.category_name);
        let stored = |e: crate::store::StoreError| unavailable("toyyibpay", e.to_string());
        if let Some(code) = self.store.setting(&name).await.map_err(stored)? {
            return Ok(code);
        }
        let code = ToyyibPayClient::new(config.clone(), self.http_policy())?
            .category()
            .await?;
        self.store.put_setting(&name, &code).await.map_err(stored)
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
