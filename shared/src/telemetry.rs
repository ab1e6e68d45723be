//! Logs and metrics, the way CloudWatch reads them.
//!
//! Logs are JSON lines from `tracing` (one object per event, with the
//! fields of the spans it happened in: the Lambda runtime's span carries
//! `requestId`, paygate's own carry `request_id`, `provider` and
//! `payment_id`). Metrics are CloudWatch Embedded Metric Format lines on
//! the same output, namespace [`NAMESPACE`]: CloudWatch turns them into
//! metrics without a PutMetricData call.
//!
//! Metrics (dimensions in brackets; every one is also published without
//! dimensions, which is what the alarms watch):
//! - `PaymentsCreated` [Provider], `PaymentsCompleted` [Provider],
//!   `PaymentsFailed` [Provider]: counts.
//! - `WebhooksRejected` [Provider, Reason]: a callback answered 4xx
//!   (`signature`, `malformed`, `unknown_payment`, ...).
//! - `ProviderLatency` [Provider] in milliseconds and `ProviderErrors`
//!   [Provider], one per provider call (retries included).
//! - `TopUpAttempts` [Outcome]: `done`, `retry`, `failed`; `TopUpFailures`
//!   counts the `failed` ones (a top-up that needs a person).
//! - `ReconcileChecked`, `ReconcileDifferences`: one pair per daily run.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lambda_http::tracing::subscriber;
use serde_json::{json, Map, Value};
use subscriber::filter::{EnvFilter, LevelFilter};
use subscriber::fmt::MakeWriter;

pub const NAMESPACE: &str = "paygate";

/// Where log and metric lines go.
#[derive(Clone)]
enum Output {
    Stdout,
    Capture(Arc<Mutex<Vec<u8>>>),
}

/// Set by [`init`] or [`capture`]; until then (unit tests, tools) metric
/// lines are not written at all.
static OUTPUT: OnceLock<Output> = OnceLock::new();

fn output() -> &'static Output {
    OUTPUT.get_or_init(|| Output::Stdout)
}

/// One line writer over [`Output`].
pub struct LineWriter(Output);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Output::Stdout => std::io::stdout().lock().write(buf),
            Output::Capture(lines) => {
                lines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &self.0 {
            Output::Stdout => std::io::stdout().flush(),
            Output::Capture(_) => Ok(()),
        }
    }
}

#[derive(Clone, Copy)]
struct Writers;

impl<'a> MakeWriter<'a> for Writers {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter(output().clone())
    }
}

/// Installs the JSON log subscriber (level from `AWS_LAMBDA_LOG_LEVEL`,
/// else `RUST_LOG`, else info). Call once at the top of `main`.
pub fn init() {
    OUTPUT.get_or_init(|| Output::Stdout);
    install();
}

/// Everything logged and every metric from now on goes into the returned
/// buffer instead of stdout (tests read it). Only the first call in a
/// process installs; later ones share its buffer.
pub fn capture() -> Captured {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let installed = OUTPUT.get_or_init(|| Output::Capture(lines));
    install();
    match installed {
        Output::Capture(lines) => Captured(lines.clone()),
        Output::Stdout => Captured(Arc::default()),
    }
}

/// The captured output.
#[derive(Clone)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

fn install() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy()
        // The SDKs' own debug output is noise at 3 a.m.
        .add_directive("aws_smithy_runtime=warn".parse().unwrap_or_default())
        .add_directive("aws_config=warn".parse().unwrap_or_default())
        .add_directive("hyper=warn".parse().unwrap_or_default());
    let _ = subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(true)
        .with_target(true)
        .with_env_filter(filter)
        .with_writer(Writers)
        .try_init();
}

/// One EMF line: `metrics` (name, unit, value) under `dimensions`.
pub fn emit(metrics: &[(&str, &str, u64)], dimensions: &[(&str, &str)]) {
    if OUTPUT.get().is_none() {
        return;
    }
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let sets = if names.is_empty() {
        json!([[]])
    } else {
        json!([names, []])
    };
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": sets,
                "Metrics": metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in dimensions {
        line.insert((*k).to_string(), Value::from(*v));
    }
    for (name, _, value) in metrics {
        line.insert((*name).to_string(), Value::from(*value));
    }
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    let _ = Writers.make_writer().write_all(text.as_bytes());
}

pub fn payment_created(provider: &str) {
    emit(
        &[("PaymentsCreated", "Count", 1)],
        &[("Provider", provider)],
    );
}

/// A payment reached a final state through a transition.
pub fn payment_settled(provider: &str, status: crate::payment::PaymentStatus) {
    use crate::payment::PaymentStatus as S;
    let name = match status {
        S::Completed => "PaymentsCompleted",
        S::Failed => "PaymentsFailed",
        S::NeedsReview => {
            // A person must decide: alarmed.
            emit(&[("PaymentsNeedingReview", "Count", 1)], &[]);
            return;
        }
        _ => return,
    };
    emit(&[(name, "Count", 1)], &[("Provider", provider)]);
}

pub fn webhook_rejected(provider: &str, reason: &str) {
    emit(
        &[("WebhooksRejected", "Count", 1)],
        &[("Provider", provider), ("Reason", reason)],
    );
}

pub fn provider_call(provider: &str, ok: bool, latency: Duration) {
    emit(
        &[
            (
                "ProviderLatency",
                "Milliseconds",
                latency.as_millis() as u64,
            ),
            ("ProviderErrors", "Count", u64::from(!ok)),
        ],
        &[("Provider", provider)],
    );
}

/// One top-up attempt: `done`, `retry` (it goes back to the queue) or
/// `failed` (given up: needs a person).
pub fn topup_attempt(outcome: &str) {
    emit(&[("TopUpAttempts", "Count", 1)], &[("Outcome", outcome)]);
    match outcome {
        "failed" => emit(&[("TopUpFailures", "Count", 1)], &[]),
        // Sent, outcome unknown, not resent: a person or a check decides.
        "unknown" => emit(&[("TopUpsUnknown", "Count", 1)], &[]),
        _ => {}
    }
}

/// One attempt to deliver an event to a merchant: `delivered`, `retry`
/// or `failed` (no attempts left: `EventDeliveriesFailed`, alarmed).
pub fn event_delivery(outcome: &str) {
    emit(&[("EventDeliveries", "Count", 1)], &[("Outcome", outcome)]);
    if outcome == "failed" {
        emit(&[("EventDeliveriesFailed", "Count", 1)], &[]);
    }
}

/// A refund requested, done, refused, or sent with its outcome unknown
/// (`RefundsUnknown`: it waits for the provider's word or a person).
pub fn refund_outcome(outcome: &str) {
    emit(&[("Refunds", "Count", 1)], &[("Outcome", outcome)]);
    if outcome == "unknown" {
        emit(&[("RefundsUnknown", "Count", 1)], &[]);
    }
}

/// An operator settled something by hand (`Action`: mark_refunded,
/// mark_not_refunded, mark_sent, mark_not_sent).
pub fn operator_action(action: &str) {
    emit(&[("OperatorActions", "Count", 1)], &[("Action", action)]);
}

/// What waits for a person right now, counted by each sweep run: gauges
/// whose alarms stay in ALARM for as long as anything waits (money in a
/// wallet behind a given-up top-up, say), not only when it starts waiting.
pub fn waiting(w: &crate::store::Waiting) {
    emit(
        &[
            ("PaymentsInReview", "Count", w.payments_in_review),
            ("RefundsPendingNow", "Count", w.refunds_pending),
            ("TopUpsUnknownNow", "Count", w.topups_unknown),
            ("TopUpsGivenUp", "Count", w.topups_given_up),
            ("DifferencesOpen", "Count", w.differences_open),
            ("PaymentsStale", "Count", w.payments_stale),
        ],
        &[],
    );
}

/// One reconcile run: payments checked, differences found.
pub fn reconcile_run(checked: u32, differences: u32, behind_seconds: i64) {
    emit(
        &[
            ("ReconcileChecked", "Count", u64::from(checked)),
            ("ReconcileDifferences", "Count", u64::from(differences)),
            (
                "ReconcileBehindSeconds",
                "Seconds",
                u64::try_from(behind_seconds).unwrap_or(0),
            ),
        ],
        &[],
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn emf_lines_name_their_metrics_and_dimensions() {
        let captured = super::capture();
        super::webhook_rejected("qpay", "signature");
        let text = captured.text();
        let line = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v.get("WebhooksRejected").is_some())
            .expect("an EMF line");
        let m = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "paygate");
        assert_eq!(
            m["Dimensions"][0],
            serde_json::json!(["Provider", "Reason"])
        );
        assert_eq!(m["Dimensions"][1], serde_json::json!([]));
        assert_eq!(m["Metrics"][0]["Name"], "WebhooksRejected");
        assert_eq!(m["Metrics"][0]["Unit"], "Count");
        assert_eq!(line["WebhooksRejected"], 1);
        assert_eq!(line["Provider"], "qpay");
        assert_eq!(line["Reason"], "signature");
        assert!(line["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    }
}
