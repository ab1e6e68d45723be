//! Scheduled jobs. `sweep` (every 5 minutes in AWS): top-ups left queued
//! (the message was lost) or sending past their lease are queued again,
//! first; then pending payments past their expiry are expired, but only
//! after asking the provider (a payment that was paid completes instead, a
//! late payment). It pages through everything due, however old; a payment
//! whose provider does not answer is pushed back (1, 2, 4 … 60 minutes),
//! so the others go first; and it stops cleanly before its deadline.

use std::time::Instant;

use serde::Serialize;
use time::OffsetDateTime;

use crate::flow::{apply_confirmation, enqueue, Applied, Asked, Books};
use crate::payment::{ChangeSource, PaymentStatus};
use crate::providers::Confirmation;
use crate::services::Services;
use crate::store::{StoreError, TopUpStatus};

/// Items read per page of the index.
const PAGE: i32 = 100;
/// At most this many top-ups are queued again per run, so a backlog cannot
/// flood the casino bridge at once.
const MAX_REQUEUE: u32 = 500;
/// A queued top-up younger than this may still be on its way through SQS.
const TOPUP_GRACE: time::Duration = time::Duration::minutes(2);
/// The longest a payment whose provider does not answer is pushed back.
const MAX_BACKOFF_MINUTES: i64 = 60;

/// When a payment that missed `misses` checks is due again.
pub fn next_check(now: OffsetDateTime, misses: u32) -> OffsetDateTime {
    let minutes = 1i64 << misses.min(6);
    now + time::Duration::minutes(minutes.min(MAX_BACKOFF_MINUTES))
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub expired: u32,
    /// The provider said it failed.
    pub failed: u32,
    /// Paid after all: completed (or sent to review) instead of expired.
    pub settled_late: u32,
    /// The provider did not answer: pushed back for a later run.
    pub skipped: u32,
    pub topups_requeued: u32,
    /// The run stopped at its deadline with work left for the next.
    pub stopped_early: bool,
}

/// A scheduled job's Lambda loop: the services with background provider
/// calls (shorter than the API's: one slow provider must not eat a run),
/// and for each invocation `job(services, lambda_deadline_ms)` inside the
/// invocation's deadline, its report as the answer.
pub async fn run_scheduled<F, Fut, R, E>(job: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(std::sync::Arc<Services>, u64) -> Fut,
    Fut: std::future::Future<Output = Result<R, E>>,
    R: Serialize,
    E: Into<lambda_runtime::Error>,
{
    crate::telemetry::init();
    let mut services = Services::from_env().await?;
    services.settings.http = crate::providers::transport::HttpPolicy::background();
    let services = std::sync::Arc::new(services);
    let job = &job;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let deadline_ms = event.context.deadline;
            let work = job(services.clone(), deadline_ms);
            async move {
                let report = crate::deadline::within(deadline_ms, work)
                    .await
                    .map_err(Into::into)?;
                Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
            }
        },
    ))
    .await
}

/// The instant a job stops starting work: 15 seconds (the longest
/// background provider call with its retry) before the Lambda deadline
/// (epoch milliseconds, from the invocation's context); `None` when the
/// context carries no real deadline (an emulator's placeholder, see
/// [`crate::deadline::left_of`]).
pub fn deadline(lambda_deadline_ms: u64) -> Option<Instant> {
    let left = crate::deadline::left_of(lambda_deadline_ms)?;
    Some(Instant::now() + left.saturating_sub(std::time::Duration::from_secs(15)))
}

/// One run at `now`, with no deadline but the work itself.
pub async fn sweep(services: &Services, now: OffsetDateTime) -> Result<SweepReport, StoreError> {
    sweep_until(services, now, None, PAGE).await
}

/// One run that starts no provider call after `deadline`; `page` items are
/// read from the index at a time.
pub async fn sweep_until(
    services: &Services,
    now: OffsetDateTime,
    deadline: Option<Instant>,
    page: i32,
) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    let out_of_time = || deadline.is_some_and(|d| Instant::now() >= d);

    // Lost top-ups first: money already credited waits on them. Re-queueing
    // is a read and a send each, bounded by count rather than the deadline.
    let mut start = None;
    'topups: loop {
        let (ids, next) = services
            .store
            .topups_due(now - TOPUP_GRACE, page, start)
            .await?;
        for id in ids {
            if report.topups_requeued >= MAX_REQUEUE {
                break 'topups;
            }
            if let Some(topup) = services.store.topup(id).await? {
                if matches!(topup.status, TopUpStatus::Queued | TopUpStatus::Sending) {
                    enqueue(Books::of(services), &topup).await;
                    report.topups_requeued += 1;
                }
            }
        }
        match next {
            Some(key) => start = Some(key),
            None => break,
        }
    }

    let mut start = None;
    'payments: loop {
        let (ids, next) = services
            .store
            .pending_payments_due(now, page, start)
            .await?;
        for id in ids {
            if out_of_time() {
                report.stopped_early = true;
                break 'payments;
            }
            let Some(payment) = services.store.payment(id).await? else {
                continue;
            };
            if payment.status != PaymentStatus::Pending {
                continue;
            }
            let confirmation = match super::ask(services, &payment).await.map(Asked::or_pending) {
                Ok(c) => c,
                Err(e) => {
                    let due = next_check(now, payment.sweep_misses);
                    tracing::warn!(payment_id = %payment.id, error = %e, next_check = %due, "sweep: provider did not answer; pushed back");
                    services.store.defer_payment_check(payment.id, due).await?;
                    report.skipped += 1;
                    continue;
                }
            };
            let confirmation = match confirmation.status {
                // Still unpaid at its expiry: it expires.
                PaymentStatus::Pending => Confirmation {
                    status: PaymentStatus::Expired,
                    ..confirmation
                },
                _ => confirmation,
            };
            match apply_confirmation(
                Books::of(services),
                &payment,
                &confirmation,
                ChangeSource::Sweep,
                vec![],
            )
            .await?
            {
                Applied::Moved(p) => match p.status {
                    PaymentStatus::Expired => report.expired += 1,
                    PaymentStatus::Failed => report.failed += 1,
                    _ => report.settled_late += 1,
                },
                // Nothing the state machine takes (a refund the provider
                // reports for a payment we never saw paid, say): pushed
                // back, and reconcile reports it.
                Applied::Unchanged(p) if p.status == PaymentStatus::Pending => {
                    services
                        .store
                        .defer_payment_check(p.id, next_check(now, p.sweep_misses))
                        .await?;
                }
                Applied::Unchanged(_) => {}
            }
        }
        match next {
            Some(key) => start = Some(key),
            None => break,
        }
    }
    // What waits for a person, counted each run for the alarms; a count
    // that fails fails nothing else.
    match services.store.waiting().await {
        Ok(waiting) => {
            crate::telemetry::waiting(&waiting);
            tracing::info!(?report, ?waiting, "sweep done");
        }
        Err(e) => tracing::warn!(?report, error = %e, "sweep done; waiting work not counted"),
    }
    Ok(report)
}
