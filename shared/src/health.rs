//! Provider health as the provider clients see it. Every provider call ends
//! in [`HealthRecorder::observe`]: it emits the call's latency and outcome
//! as a metric and keeps the stored counters (`store::health`) current for
//! `GET /v1/health`.
//!
//! Keeping the counters must not cost the payment paths a DynamoDB round
//! trip. So a failure is always written, but a success only when the stored
//! record may be stale: after a failure this process saw, or when this
//! process last wrote a success more than [`SUCCESS_REFRESH`] ago (so at
//! most one write a minute per warm instance while all is well). The write
//! runs beside the caller's own work (a spawned task), never in its way;
//! each write carries the call's time and is conditional on it, so one
//! that arrives late changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use crate::store::{ProviderHealth, Store};

/// A provider is unhealthy after this many failures in a row.
pub const UNHEALTHY_AFTER: u32 = 3;

/// How often a warm process refreshes a provider's last success.
pub const SUCCESS_REFRESH: Duration = Duration::from_secs(60);

/// Every name health is reported under: the gateways and the casino.
pub const PROVIDERS: [&str; 7] = [
    "directpay",
    "paygram",
    "toyyibpay",
    "qpay",
    "epayment",
    "payment_engine",
    "casino",
];

#[derive(Debug, Default)]
struct Local {
    success_written: Option<Instant>,
    failed_since: bool,
}

/// Records provider call outcomes; cheap to clone, one per process.
#[derive(Debug, Clone)]
pub struct HealthRecorder {
    store: Store,
    local: Arc<Mutex<HashMap<&'static str, Local>>>,
}

impl HealthRecorder {
    pub fn new(store: Store) -> HealthRecorder {
        HealthRecorder {
            store,
            local: Arc::default(),
        }
    }

    /// Whether this outcome needs writing; updates what this process knows.
    fn needs_write(&self, provider: &'static str, ok: bool) -> bool {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let entry = local.entry(provider).or_default();
        if !ok {
            entry.failed_since = true;
            return true;
        }
        let stale = entry
            .success_written
            .is_none_or(|t| t.elapsed() >= SUCCESS_REFRESH);
        if entry.failed_since || stale {
            entry.failed_since = false;
            entry.success_written = Some(Instant::now());
            return true;
        }
        false
    }

    /// One finished provider call (retries included).
    pub fn observe(&self, provider: &'static str, ok: bool, latency: Duration) {
        crate::telemetry::provider_call(provider, ok, latency);
        if !self.needs_write(provider, ok) {
            return;
        }
        let store = self.store.clone();
        let at = OffsetDateTime::now_utc();
        tokio::spawn(async move {
            let written = if ok {
                store.record_provider_success(provider, at).await
            } else {
                store.record_provider_failure(provider, at).await
            };
            if let Err(e) = written {
                tracing::warn!(provider, error = %e, "provider health not recorded");
            }
        });
    }
}

/// One provider as `GET /v1/health` shows it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ProviderView {
    pub healthy: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    pub consecutive_failures: u32,
}

impl From<&ProviderHealth> for ProviderView {
    fn from(h: &ProviderHealth) -> ProviderView {
        ProviderView {
            healthy: h.consecutive_failures < UNHEALTHY_AFTER,
            last_success: h.last_success,
            consecutive_failures: h.consecutive_failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> HealthRecorder {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        HealthRecorder::new(Store::new(aws_sdk_dynamodb::Client::from_conf(config), "t"))
    }

    #[test]
    fn successes_are_written_once_until_a_failure_or_the_refresh() {
        let r = recorder();
        assert!(r.needs_write("qpay", true), "the first success is written");
        assert!(!r.needs_write("qpay", true), "then not again");
        assert!(!r.needs_write("qpay", true));
        assert!(r.needs_write("qpay", false), "a failure always is");
        assert!(r.needs_write("qpay", false));
        assert!(
            r.needs_write("qpay", true),
            "the success after it resets the count"
        );
        assert!(!r.needs_write("qpay", true));
        assert!(r.needs_write("casino", true), "providers are apart");
        r.local
            .lock()
            .unwrap()
            .get_mut("qpay")
            .unwrap()
            .success_written = Instant::now().checked_sub(SUCCESS_REFRESH);
        assert!(r.needs_write("qpay", true), "refreshed after a minute");
    }

    #[test]
    fn unhealthy_from_the_third_failure() {
        let view = |n| {
            ProviderView::from(&ProviderHealth {
                consecutive_failures: n,
                ..ProviderHealth::default()
            })
        };
        assert!(view(0).healthy);
        assert!(view(2).healthy);
        assert!(!view(3).healthy);
        assert!(!view(40).healthy);
    }
}
