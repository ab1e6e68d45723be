//! Outbound HTTP to providers: one client per provider, built once, with
//! connect and total timeouts and bounded retries.
//!
//! Retries use exponential backoff with full jitter and honour `Retry-After`.
//! What is retried depends on whether repeating the request is safe:
//! - [`Retry::Safe`] (reads, logins, and writes the provider provably
//!   deduplicates by an id we send): 429, 5xx, timeouts and connection
//!   failures.
//! - [`Retry::NotSent`] (everything else: writes that may move money or
//!   create something the payer can pay): only a 429 (a rate limiter's
//!   refusal) and connection failures before anything was sent. Any 5xx,
//!   503 included, a timeout or a reset after sending is not retried: a
//!   bank or a load balancer may have applied the call before answering,
//!   so its outcome is unknown and the caller settles it by asking the
//!   provider (decision 45).
//!
//! Other 4xx answers are never retried.

use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};

use super::ProviderError;

/// Timeouts and retry limits of one provider's client.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    pub connect_timeout: Duration,
    /// For one attempt, from sending to the whole body.
    pub request_timeout: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Where each call's outcome and latency go (health counters and
    /// metrics); none in unit tests of the HTTP layer.
    pub health: Option<crate::provider_health::HealthRecorder>,
    /// Where provider logins are shared between instances
    /// (`providers::session`); none for a client on its own.
    pub sessions: Option<crate::store::Store>,
}

impl Default for HttpPolicy {
    fn default() -> HttpPolicy {
        HttpPolicy {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            max_attempts: 3,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            health: None,
            sessions: None,
        }
    }
}

impl HttpPolicy {
    /// For scheduled jobs: shorter calls and one retry, so one slow
    /// provider cannot eat a run (at most about 12 s a call).
    pub fn background() -> HttpPolicy {
        HttpPolicy {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            max_attempts: 2,
            ..HttpPolicy::default()
        }
    }
}

/// Whether a request may be repeated; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Safe,
    NotSent,
}

/// A provider's answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    /// The body parsed as JSON into the provider's wire type.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        provider: &'static str,
    ) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| ProviderError::Decode {
            provider,
            reason: e.to_string(),
        })
    }
}

/// One provider's HTTP client.
#[derive(Debug, Clone)]
pub struct ProviderHttp {
    provider: &'static str,
    client: reqwest::Client,
    policy: HttpPolicy,
}

impl ProviderHttp {
    pub fn new(provider: &'static str, policy: HttpPolicy) -> Result<ProviderHttp, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.request_timeout)
            .user_agent(concat!("paygate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Unreachable {
                provider,
                reason: format!("cannot build HTTP client: {e}"),
            })?;
        Ok(ProviderHttp {
            provider,
            client,
            policy,
        })
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the request `build` makes (it is called once per attempt) and
    /// returns the first answer that is not retried. A retried answer that
    /// persists becomes [`ProviderError::Unavailable`]; the final non-2xx
    /// answer is returned as a [`Reply`] for the caller to interpret.
    pub async fn send(
        &self,
        retry: Retry,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        let started = std::time::Instant::now();
        let result = self.send_with_retries(retry, build).await;
        if let Some(health) = &self.policy.health {
            // The provider answered (even a 4xx is an answer); a 5xx that
            // outlived the retries, a timeout or no connection is a failure.
            let ok = matches!(&result, Ok(reply) if !reply.status.is_server_error());
            health.observe(self.provider, ok, started.elapsed());
        }
        result
    }

    async fn send_with_retries(
        &self,
        retry: Retry,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.policy.max_attempts;
            // Within the invocation's deadline: no attempt starts without
            // time to finish, and none outlasts what is left.
            let left = crate::deadline::remaining();
            let needed = match retry {
                Retry::Safe => crate::deadline::MIN_ATTEMPT,
                Retry::NotSent => {
                    crate::deadline::MIN_UNREPEATABLE.min(self.policy.request_timeout)
                }
            };
            if left.is_some_and(|l| l < needed) {
                return Err(ProviderError::Unreachable {
                    provider: self.provider,
                    reason: "no time left in this invocation; nothing was sent".into(),
                });
            }
            let mut request = build(&self.client);
            if let Some(left) = left {
                request = request.timeout(left.min(self.policy.request_timeout));
            }
            let outcome = self.attempt(request).await;
            let (retryable, wait_hint, failure) = match outcome {
                Ok(reply) => {
                    if !should_retry_status(reply.status, retry) {
                        return Ok(reply);
                    }
                    let hint = retry_after(&reply.headers);
                    let failure = ProviderError::Unavailable {
                        provider: self.provider,
                        attempts: attempt,
                        reason: format!("HTTP {}", reply.status.as_u16()),
                    };
                    (true, hint, failure)
                }
                Err(e) => {
                    let retryable = match retry {
                        Retry::Safe => e.is_timeout() || e.is_connect() || e.is_request(),
                        Retry::NotSent => e.is_connect(),
                    };
                    let failure = if e.is_timeout() {
                        ProviderError::Timeout {
                            provider: self.provider,
                            attempts: attempt,
                        }
                    } else if e.is_connect() || e.is_builder() {
                        ProviderError::Unreachable {
                            provider: self.provider,
                            reason: describe(e),
                        }
                    } else {
                        // Sent, then the exchange broke: it may have arrived.
                        ProviderError::Interrupted {
                            provider: self.provider,
                            reason: describe(e),
                        }
                    };
                    (retryable, None, failure)
                }
            };
            let wait = self.backoff(attempt, wait_hint);
            let no_time = crate::deadline::remaining()
                .is_some_and(|l| l < wait + crate::deadline::MIN_ATTEMPT);
            if !retryable || last || no_time {
                return Err(failure);
            }
            tracing::warn!(provider = self.provider, attempt, error = %failure, "retrying provider call");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, request: RequestBuilder) -> Result<Reply, reqwest::Error> {
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Full jitter: a random wait up to `base * 2^(attempt-1)`, capped, or
    /// the provider's `Retry-After` if it asks for longer (still capped).
    fn backoff(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        let ceiling = self
            .policy
            .base_backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.policy.max_backoff);
        let jittered = jitter(ceiling);
        match hint {
            Some(h) => h.min(self.policy.max_backoff).max(jittered),
            None => jittered,
        }
    }
}

fn should_retry_status(status: StatusCode, retry: Retry) -> bool {
    match retry {
        Retry::Safe => status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
        Retry::NotSent => status == StatusCode::TOO_MANY_REQUESTS,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from these APIs and
/// is ignored).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A random duration in [0, ceiling), in whole microseconds. Not for
/// anything secret.
fn jitter(ceiling: Duration) -> Duration {
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    if micros == 0 {
        return Duration::ZERO;
    }
    let r = ulid::Ulid::new().random() as u64;
    Duration::from_micros(r % micros)
}

/// reqwest's errors print the URL, which carries credentials for some
/// providers (Paygram's token is a path segment): describe without it.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
