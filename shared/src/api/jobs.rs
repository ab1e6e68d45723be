//! Scheduled jobs. `sweep` (every 5 minutes in AWS): top-ups left queued
//! (the message was lost) or sending past their lease are queued again,
//! first; then pending payments past their expiry are expired, but only
//! after asking the provider (a payment that was paid completes instead, a
//! late payment). It pages through everything due, however old; a payment
//! whose provider does not answer is pushed back (1, 2, 4 … 60 minutes),
//! so the others go first; and it stops cleanly before its deadline.
//!
//! A payment it expires is closed at the provider where the provider's API
//! can (ToyyibPay's inactiveBill, QPay's invoice DELETE); one that cannot be
//! closed, or whose close failed, stays in the late lane and is asked again
//! at widening intervals after its expiry (1 h, 6 h, 1 d, 3 d, 7 d), for as
//! long as its provider may still take money for it
//! (`Description::payable_after_expiry`): money paid late completes it.

use std::time::Instant;

use serde::Serialize;
use time::OffsetDateTime;

use crate::flow::{apply_confirmation, apply_expiry, enqueue, Applied, Asked, Books};
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
/// How long an event may wait to be fanned out, or a delivery stay past
/// due, before the sweep sends it to worker-events again.
const EVENT_GRACE: time::Duration = time::Duration::minutes(1);
/// The longest a payment whose provider does not answer is pushed back.
const MAX_BACKOFF_MINUTES: i64 = 60;

/// When a payment that missed `misses` checks is due again.
pub fn next_check(now: OffsetDateTime, misses: u32) -> OffsetDateTime {
    let minutes = 1i64 << misses.min(6);
    now + time::Duration::minutes(minutes.min(MAX_BACKOFF_MINUTES))
}

/// How long past its expiry a payment whose provider keeps refusing to
/// describe it waits before it is listed for people as stale.
pub const STALE_AFTER: time::Duration = time::Duration::days(1);

/// When an expired payment in the late lane is asked again, counted from
/// its expiry.
const LATE_CHECKS: [time::Duration; 5] = [
    time::Duration::hours(1),
    time::Duration::hours(6),
    time::Duration::days(1),
    time::Duration::days(3),
    time::Duration::days(7),
];

/// The next late check after `now` of a payment that expired at
/// `expires_at` and stays payable at its provider for `window` after that;
/// none once the window has passed. The window's end is the last check.
pub fn next_late_check(
    expires_at: OffsetDateTime,
    window: time::Duration,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    LATE_CHECKS
        .into_iter()
        .filter(|after| *after < window)
        .chain(std::iter::once(window))
        .map(|after| expires_at + after)
        .find(|at| *at > now)
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
    /// Of those, a day or more past expiry: listed for people as stale.
    pub stale: u32,
    pub topups_requeued: u32,
    /// Events never fanned out, and deliveries overdue, sent to
    /// worker-events again (their message or stream record was lost).
    pub events_requeued: u32,
    /// Expired payments closed at the provider (nothing can arrive).
    pub closed: u32,
    /// Expired payments left payable at the provider: watched.
    pub watched: u32,
    /// Watched payments asked again; those paid count in `settled_late`.
    pub late_checked: u32,
    /// Asked before their expiry (a callback answered without being
    /// settled, decision 55) and still unpaid: left for their expiry.
    pub early_unpaid: u32,
    /// The run stopped at its deadline with work left for the next.
    pub stopped_early: bool,
}

/// How one scheduled run ended: it ran (its report), or another run held
/// the job's lease, so it did nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusive<R> {
    Ran(R),
    Skipped { held_by_another_run: bool },
}

/// Runs `work` as the only run of `job`: under the job's lease in the table
/// until `until` (the invocation's deadline), given back when it ends.
/// Another run of the job meanwhile finds the lease held and skips, so runs
/// never overlap, with or without reserved concurrency (decision 53).
pub async fn run_exclusive<R, E, Fut>(
    services: &Services,
    job: &str,
    until: OffsetDateTime,
    work: Fut,
) -> Result<Exclusive<R>, lambda_runtime::Error>
where
    Fut: std::future::Future<Output = Result<R, E>>,
    E: Into<lambda_runtime::Error>,
{
    let holder = ulid::Ulid::new().to_string();
    let now = OffsetDateTime::now_utc();
    if !services
        .store
        .acquire_job_lease(job, &holder, now, until)
        .await?
    {
        tracing::warn!(
            job,
            "another run holds the job's lease; this one does nothing"
        );
        return Ok(Exclusive::Skipped {
            held_by_another_run: true,
        });
    }
    let result = work.await;
    // Given back even when the work failed; a lease not given back lapses
    // at the deadline.
    if let Err(e) = services
        .store
        .release_job_lease(job, &holder, OffsetDateTime::now_utc())
        .await
    {
        tracing::warn!(job, error = %e, "job lease not given back; it lapses at the deadline");
    }
    result.map(Exclusive::Ran).map_err(Into::into)
}

/// A scheduled job's Lambda loop: the services with background provider
/// policy (shorter calls than the API's: one slow provider must not eat a
/// run), and for each invocation `job(services, lambda_deadline_ms)` inside
/// the invocation's deadline and under the job's lease ([`run_exclusive`]),
/// its report as the answer.
pub async fn run_scheduled<F, Fut, R, E>(
    name: &'static str,
    job: F,
) -> Result<(), lambda_runtime::Error>
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
            let services = services.clone();
            let work = job(services.clone(), deadline_ms);
            async move {
                let until = i128::from(deadline_ms)
                    .checked_mul(1_000_000)
                    .and_then(|ns| OffsetDateTime::from_unix_timestamp_nanos(ns).ok())
                    .unwrap_or_else(|| OffsetDateTime::now_utc() + time::Duration::minutes(15));
                let exclusive = run_exclusive(
                    &services,
                    name,
                    until,
                    crate::deadline::within(deadline_ms, work),
                );
                let report = exclusive.await?;
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

    requeue_events(services, now, page, &mut report).await;

    // Pending payments due, then the stale ones due (checked alike).
    for stale in [false, true] {
        let mut start = None;
        loop {
            let (ids, next) = if stale {
                services
                    .store
                    .stale_payments(Some(now), page, start)
                    .await?
            } else {
                services
                    .store
                    .pending_payments_due(now, page, start)
                    .await?
            };
            for id in ids {
                if out_of_time() {
                    report.stopped_early = true;
                    return finish(services, report).await;
                }
                if let Some(payment) = services.store.payment(id).await? {
                    if payment.status == PaymentStatus::Pending {
                        check_due(services, &payment, now, &mut report).await?;
                    }
                }
            }
            match next {
                Some(key) => start = Some(key),
                None => break,
            }
        }
    }
    late(services, now, &out_of_time, page, &mut report).await?;
    finish(services, report).await
}

/// Events not fanned out a while after they were written, and deliveries
/// a while past due: their stream record or queue message was lost (or
/// worker-events failed on it every time). Each goes to worker-events
/// again; a send that fails is left for the next run.
async fn requeue_events(
    services: &Services,
    now: OffsetDateTime,
    page: i32,
    report: &mut SweepReport,
) {
    use crate::events::deliver::{send_message, EventMessage};
    let mut messages = Vec::new();
    match services.store.events_open(now - EVENT_GRACE, page).await {
        Ok(keys) => messages.extend(keys.into_iter().map(|event| EventMessage::FanOut { event })),
        Err(e) => tracing::warn!(error = %e, "could not read the events waiting to be fanned out"),
    }
    match services.store.deliveries_due(now - EVENT_GRACE, page).await {
        Ok(due) => messages.extend(due.into_iter().map(|(merchant, event_id, endpoint_id)| {
            EventMessage::Delivery {
                merchant,
                event_id,
                endpoint_id,
            }
        })),
        Err(e) => tracing::warn!(error = %e, "could not read the deliveries due"),
    }
    for message in messages {
        match send_message(services, &message, std::time::Duration::ZERO).await {
            Ok(()) => report.events_requeued += 1,
            Err(e) => {
                tracing::warn!(error = %e, "could not queue an event again; the next run will");
                break;
            }
        }
    }
}

/// Ends a run: what waits for a person is counted for the alarms.
async fn finish(services: &Services, report: SweepReport) -> Result<SweepReport, StoreError> {
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

/// One pending payment due for a check: expired (closed at the provider or
/// watched), completed if it was paid, or pushed back if the provider does
/// not answer, and listed for people as stale once that has gone on for
/// [`STALE_AFTER`] past its expiry.
async fn check_due(
    services: &Services,
    payment: &crate::payment::Payment,
    now: OffsetDateTime,
    report: &mut SweepReport,
) -> Result<(), StoreError> {
    let confirmation = match super::ask(services, payment).await.map(Asked::or_pending) {
        Ok(c) => c,
        Err(e) => {
            let due = next_check(now, payment.sweep_misses);
            report.skipped += 1;
            if now - payment.expires_at >= STALE_AFTER {
                tracing::error!(payment_id = %payment.id, error = %e, next_check = %due, "sweep: provider keeps refusing to describe a payment past its expiry; stale, for a person");
                let error = e.to_string();
                services
                    .store
                    .mark_payment_stale(payment.id, due, &error, now)
                    .await?;
                report.stale += 1;
            } else {
                tracing::warn!(payment_id = %payment.id, error = %e, next_check = %due, "sweep: provider did not answer; pushed back");
                services.store.defer_payment_check(payment.id, due).await?;
            }
            return Ok(());
        }
    };
    // Asked before its expiry (a callback answered without being settled)
    // and still unpaid: it waits for its expiry like any other.
    if confirmation.status == PaymentStatus::Pending && now < payment.expires_at {
        services
            .store
            .recheck_payment_at(payment.id, payment.expires_at)
            .await?;
        report.early_unpaid += 1;
        return Ok(());
    }
    // Still unpaid at its expiry: it expires, closed at the provider where
    // it can be, else watched for late money.
    let (confirmation, recheck_at) = match confirmation.status {
        PaymentStatus::Pending => {
            let recheck_at = close(services, payment, now).await;
            match recheck_at {
                Some(_) => report.watched += 1,
                None => report.closed += 1,
            }
            let expired = Confirmation {
                status: PaymentStatus::Expired,
                ..confirmation
            };
            (expired, recheck_at)
        }
        _ => (confirmation, None),
    };
    match apply_expiry(Books::of(services), payment, &confirmation, recheck_at).await? {
        Applied::Moved(p) => match p.status {
            PaymentStatus::Expired => report.expired += 1,
            PaymentStatus::Failed => report.failed += 1,
            _ => report.settled_late += 1,
        },
        // Nothing the state machine takes (a refund the provider reports
        // for a payment we never saw paid, say): pushed back, and
        // reconcile reports it.
        Applied::Unchanged(p) if p.status == PaymentStatus::Pending => {
            services
                .store
                .defer_payment_check(p.id, next_check(now, p.sweep_misses))
                .await?;
        }
        Applied::Unchanged(_) => {}
    }
    Ok(())
}

/// Closes a payment paygate is expiring at its provider: `None` when the
/// provider's answer proves it closed, else the first late check (its API
/// cannot close it, or the close failed or was ambiguous).
async fn close(
    services: &Services,
    payment: &crate::payment::Payment,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let closed = match services.gateway(payment.provider).await {
        Ok(g) => g.close(payment).await,
        Err(e) => Err(e),
    };
    match closed {
        Ok(true) => return None,
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(payment_id = %payment.id, error = %e, "expired payment not closed at the provider; watched for late money");
        }
    }
    let window = crate::providers::registry::describe(payment.provider).payable_after_expiry;
    // A first check even when the window has passed (a sweep long late).
    Some(next_late_check(payment.expires_at, window, now).unwrap_or(now))
}

/// The late lane: expired payments the provider may still take money for,
/// asked again when due. Money paid late completes the payment; the
/// provider's word that it is closed, or the end of its window, ends the
/// watch.
async fn late(
    services: &Services,
    now: OffsetDateTime,
    out_of_time: &dyn Fn() -> bool,
    page: i32,
    report: &mut SweepReport,
) -> Result<(), StoreError> {
    let mut start = None;
    loop {
        let (ids, next) = services.store.late_payments_due(now, page, start).await?;
        for id in ids {
            if out_of_time() {
                report.stopped_early = true;
                return Ok(());
            }
            let Some(payment) = services.store.payment(id).await? else {
                continue;
            };
            if payment.status != PaymentStatus::Expired {
                continue;
            }
            report.late_checked += 1;
            let window =
                crate::providers::registry::describe(payment.provider).payable_after_expiry;
            let due = next_late_check(payment.expires_at, window, now);
            let asked = super::ask(services, &payment).await.map(Asked::or_pending);
            let due = match asked {
                Ok(c) if matches!(c.status, PaymentStatus::Expired | PaymentStatus::Failed) => {
                    // The provider says it can no longer be paid.
                    None
                }
                Ok(c) if c.status == PaymentStatus::Pending => due,
                Ok(c) => {
                    match apply_confirmation(
                        Books::of(services),
                        &payment,
                        &c,
                        ChangeSource::Sweep,
                        vec![],
                    )
                    .await?
                    {
                        Applied::Moved(p) => {
                            tracing::warn!(payment_id = %p.id, status = %p.status, "money arrived after expiry");
                            report.settled_late += 1;
                            continue;
                        }
                        // Nothing the state machine takes: reconcile
                        // reports it; the watch goes on.
                        Applied::Unchanged(_) => due,
                    }
                }
                Err(e) => {
                    tracing::warn!(payment_id = %payment.id, error = %e, "late check: provider did not answer");
                    report.skipped += 1;
                    due
                }
            };
            services.store.recheck_late_payment(payment.id, due).await?;
        }
        match next {
            Some(key) => start = Some(key),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_checks_widen_and_end_with_the_providers_window() {
        let expired = OffsetDateTime::UNIX_EPOCH + time::Duration::days(100);
        let week = time::Duration::days(7);
        let mut now = expired;
        let mut checks = Vec::new();
        while let Some(at) = next_late_check(expired, week, now) {
            checks.push(at - expired);
            now = at;
        }
        assert_eq!(
            checks,
            [
                time::Duration::hours(1),
                time::Duration::hours(6),
                time::Duration::days(1),
                time::Duration::days(3),
                time::Duration::days(7)
            ]
        );
        // A day's window: 1 h, 6 h, then its end.
        let day = time::Duration::days(1);
        assert_eq!(
            next_late_check(expired, day, expired + time::Duration::hours(7)),
            Some(expired + day)
        );
        assert_eq!(next_late_check(expired, day, expired + day), None);
    }
}
