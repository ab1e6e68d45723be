//! Provider health as the provider clients see it. Every provider call ends
//! in [`HealthRecorder::observe`]: it emits the call's latency and outcome
//! as a metric and keeps the stored counters (`store::health`) current for
//! `GET /v1/health`.
//!
//! Keeping the counters must not cost the payment paths a DynamoDB round
//! trip. So a failure is always written, but a success only when the stored
//! record may be stale: after a failure this process saw, or when this
//! process last wrote a success more than [`SUCCESS_REFRESH`] ago (so at
//! most one write a minute per warm instance while all is well). A cold
//! process does not write its first success on that call's path: it is
//! written (with its own time) by the process's next call, so a cold
//! completing callback costs its two DynamoDB calls and no third; and
//! failures older than [`FAILURES_FORGOTTEN`] no longer make a provider
//! unhealthy, so successes seen only by short-lived instances cannot leave
//! a provider marked down. The write runs beside the caller's own work (a
//! spawned task), never in its way; each write carries the call's time and
//! is conditional on it, so one that arrives late changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use crate::payment::Provider;
use crate::store::{ProviderHealth, Store};

/// A provider is unhealthy after this many failures in a row.
pub const UNHEALTHY_AFTER: u32 = 3;

/// How often a warm process refreshes a provider's last success.
pub const SUCCESS_REFRESH: Duration = Duration::from_secs(60);

/// Failures older than this no longer count against a provider.
pub const FAILURES_FORGOTTEN: time::Duration = time::Duration::minutes(15);

/// Every name health is reported under: the gateways (in [`Provider::ALL`]'s
/// order) and the casino.
pub const PROVIDERS: [&str; Provider::ALL.len() + 1] = {
    let mut names = ["casino"; Provider::ALL.len() + 1];
    let mut i = 0;
    while i < Provider::ALL.len() {
        names[i] = Provider::ALL[i].as_str();
        i += 1;
    }
    names
};

#[derive(Debug, Default)]
struct Local {
    success_written: Option<Instant>,
    /// A cold process's first success, written by its next call.
    unwritten_success: Option<OffsetDateTime>,
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

    /// The time of the call to record for this outcome, if it needs
    /// writing. Updates what this process knows.
    fn to_write(
        &self,
        provider: &'static str,
        ok: bool,
        at: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let entry = local.entry(provider).or_default();
        if !ok {
            entry.failed_since = true;
            entry.unwritten_success = None;
            return Some(at);
        }
        if entry.failed_since {
            entry.failed_since = false;
            entry.success_written = Some(Instant::now());
            return Some(at);
        }
        match entry.success_written {
            // A cold process: its first success waits for its next call.
            None => match entry.unwritten_success.take() {
                None => {
                    entry.unwritten_success = Some(at);
                    None
                }
                Some(_) => {
                    entry.success_written = Some(Instant::now());
                    Some(at)
                }
            },
            Some(t) if t.elapsed() >= SUCCESS_REFRESH => {
                entry.success_written = Some(Instant::now());
                Some(at)
            }
            Some(_) => None,
        }
    }

    /// One finished provider call (retries included).
    pub fn observe(&self, provider: &'static str, ok: bool, latency: Duration) {
        crate::telemetry::provider_call(provider, ok, latency);
        let Some(at) = self.to_write(provider, ok, OffsetDateTime::now_utc()) else {
            return;
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.record_provider_call(provider, ok, at).await {
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

impl ProviderView {
    pub fn of(h: &ProviderHealth, now: OffsetDateTime) -> ProviderView {
        let recent = h
            .last_failure
            .is_some_and(|at| now - at < FAILURES_FORGOTTEN);
        ProviderView {
            healthy: h.consecutive_failures < UNHEALTHY_AFTER || !recent,
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
        let t = |minute: i64| {
            OffsetDateTime::from_unix_timestamp(1_800_000_000 + minute * 60).expect("a time")
        };
        let writes = |ok, at| r.to_write("qpay", ok, at);
        assert_eq!(
            writes(true, t(0)),
            None,
            "a cold process's first success waits"
        );
        assert_eq!(
            writes(true, t(1)),
            Some(t(1)),
            "its next call writes a success"
        );
        assert_eq!(writes(true, t(2)), None, "then not again");
        assert_eq!(writes(false, t(3)), Some(t(3)), "a failure always is");
        assert_eq!(writes(false, t(4)), Some(t(4)));
        assert_eq!(
            writes(true, t(5)),
            Some(t(5)),
            "the success after it resets the count at once"
        );
        assert_eq!(writes(true, t(6)), None);
        assert_eq!(
            r.to_write("casino", true, t(6)),
            None,
            "providers are apart (the casino's first waits too)"
        );
        r.local
            .lock()
            .unwrap()
            .get_mut("qpay")
            .unwrap()
            .success_written = Instant::now().checked_sub(SUCCESS_REFRESH);
        assert_eq!(writes(true, t(7)), Some(t(7)), "refreshed after a minute");
    }

    #[test]
    fn a_cold_process_after_a_failure_writes_at_once() {
        let r = recorder();
        let now = OffsetDateTime::now_utc();
        assert!(r.to_write("qpay", false, now).is_some());
        assert_eq!(r.to_write("qpay", true, now), Some(now));
    }

    #[test]
    fn unhealthy_from_the_third_failure() {
        let now = OffsetDateTime::now_utc();
        let view = |n, failed_ago: time::Duration| {
            ProviderView::of(
                &ProviderHealth {
                    consecutive_failures: n,
                    last_failure: Some(now - failed_ago),
                    ..ProviderHealth::default()
                },
                now,
            )
        };
        let recently = time::Duration::minutes(1);
        assert!(view(0, recently).healthy);
        assert!(view(2, recently).healthy);
        assert!(!view(3, recently).healthy);
        assert!(!view(40, recently).healthy);
        assert!(
            view(40, FAILURES_FORGOTTEN + time::Duration::seconds(1)).healthy,
            "old failures are forgotten"
        );
    }
}
