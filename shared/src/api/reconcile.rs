//! `job-reconcile` (daily): every payment that changed since the last run
//! checked up to (its checkpoint; a day back on the first run) and before
//! the latest hour that may still receive changes ([`checked_until`]) is compared
//! with what its provider says now, at most [`MAX_PER_RUN`] a run: a run
//! that stops short, or a day missed, leaves the checkpoint where the
//! checking stopped and the next run goes on from there. How far behind
//! it is goes out as `ReconcileBehindSeconds`. Each difference is logged
//! and written into the run's report item (`store::reconcile`).
//!
//! Money moves only on the provider's own answer to our authenticated
//! status call (never on a callback): a payment the provider says was paid
//! but we have pending or expired completes (and credits) as a late payment
//! would; a pending one the provider failed or expired follows it. Anything
//! else (we completed what the provider calls failed, an amount that
//! differs, refunded totals that differ) is reported and left for a
//! person: reconcile never takes money back.
//!
//! It also settles every refund still pending (whatever its age) on the
//! provider's account of its refunds (`refunds::resume`): confirmed ones
//! are recorded, ones the provider proves it never made are released, and
//! the rest are reported; and it lists every top-up whose outcome is
//! unknown.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::flow::{apply_confirmation, target, Applied, Asked, Books};
use crate::payment::{ChangeSource, Payment, PaymentStatus, Provider};
use crate::services::Services;
use crate::store::StoreError;

/// How far back the first run looks.
pub const WINDOW: time::Duration = time::Duration::days(1);
/// An hour of changes is read once it ended this long ago: longer than any
/// function's timeout (15 minutes at most; template_in_step.rs holds every
/// function to it), so a change whose time was taken in that hour has
/// committed, and a little more for clocks (decision 59).
pub const SETTLE_MARGIN_MINUTES: i64 = 20;
/// [`SETTLE_MARGIN_MINUTES`] as a duration.
pub const SETTLE_MARGIN: time::Duration = time::Duration::minutes(SETTLE_MARGIN_MINUTES);

/// Where a run at `now` reads up to (not included): the start of the
/// latest hour that may still receive changes.
pub fn checked_until(now: OffsetDateTime) -> OffsetDateTime {
    crate::store::keys::changed_hour(now - SETTLE_MARGIN)
}

/// The first run time whose reading includes a change made at `at`.
pub fn checked_from(at: OffsetDateTime) -> OffsetDateTime {
    crate::store::keys::changed_hour(at) + time::Duration::hours(1) + SETTLE_MARGIN
}
/// At most this many payments per run; the report says when there were
/// more, and the next run goes on from the last one checked.
pub const MAX_PER_RUN: usize = 2_000;
/// The checkpoint is saved every this many payments, so a run cut short
/// (its timeout) does not check them all again.
const CHECKPOINT_EVERY: usize = 100;
/// At most this many differences are listed in the stored report (a
/// DynamoDB item holds 400 KB); every one is logged and counted.
pub const MAX_LISTED: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Our status and the provider's disagree.
    Status,
    /// The provider reports a different amount or currency.
    Amount,
    /// A refund was sent but its outcome is still unknown.
    RefundPending,
    /// The provider's refunded total differs from ours.
    RefundTotal,
    /// A casino transfer may or may not have happened; a person decides.
    TopUpUnknown,
}

impl DifferenceKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            DifferenceKind::Status => "status",
            DifferenceKind::Amount => "amount",
            DifferenceKind::RefundPending => "refund_pending",
            DifferenceKind::RefundTotal => "refund_total",
            DifferenceKind::TopUpUnknown => "topup_unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Moved to the provider's answer (a forward move on a verified answer).
    Corrected,
    /// A pending refund the provider proves it never made: given back.
    Released,
    /// Left as it is, for a person.
    LeftForReview,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    pub payment_id: String,
    pub provider: Provider,
    pub kind: DifferenceKind,
    pub ours: String,
    pub theirs: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    #[serde(with = "time::serde::rfc3339")]
    pub run_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    pub checked: u32,
    pub matched: u32,
    pub corrected: u32,
    /// The provider did not answer; the next run (or the sweep) asks again.
    pub unanswered: u32,
    /// Pending refunds looked at, and how many were settled (recorded or
    /// released) on the provider's word.
    #[serde(default)]
    pub refunds_checked: u32,
    #[serde(default)]
    pub refunds_settled: u32,
    /// More payments changed than one run checks.
    pub truncated: bool,
    /// How far behind the changes the run's checkpoint ends, in seconds
    /// (0 when it checked everything up to its start).
    #[serde(default)]
    pub behind_seconds: i64,
    /// Every difference found; the first [`MAX_LISTED`] are in `differences`.
    pub difference_count: u32,
    pub differences: Vec<Difference>,
}

impl ReconcileReport {
    /// A run at `run_at` over what changed since `since`, before it looks.
    pub fn empty(run_at: OffsetDateTime, since: OffsetDateTime) -> ReconcileReport {
        ReconcileReport {
            run_at,
            since,
            checked: 0,
            matched: 0,
            corrected: 0,
            unanswered: 0,
            refunds_checked: 0,
            refunds_settled: 0,
            truncated: false,
            behind_seconds: 0,
            difference_count: 0,
            differences: Vec::new(),
        }
    }
}

impl ReconcileReport {
    /// Logs a difference, counts it, and lists it while there is room.
    fn add(&mut self, d: Difference) {
        tracing::warn!(
            payment_id = %d.payment_id,
            provider = %d.provider,
            kind = ?d.kind,
            ours = %d.ours,
            theirs = %d.theirs,
            action = ?d.action,
            "reconcile difference"
        );
        self.difference_count += 1;
        if self.differences.len() < MAX_LISTED {
            self.differences.push(d);
        }
    }
}

/// Our status and the provider's say the same thing.
fn agree(ours: PaymentStatus, theirs: PaymentStatus) -> bool {
    use PaymentStatus as S;
    ours == theirs
        || matches!(
            (ours, theirs),
            // A refund is ours to record; the provider may still say paid.
            (S::Refunded | S::PartiallyRefunded, S::Completed | S::Refunded)
            // A payment that lapsed or was cancelled unpaid, which the
            // provider still lists as open or failed.
            | (S::Expired | S::Cancelled, S::Pending | S::Failed | S::Expired)
        )
}

pub async fn reconcile(
    services: &Services,
    now: OffsetDateTime,
) -> Result<ReconcileReport, StoreError> {
    reconcile_at_most(services, now, MAX_PER_RUN).await
}

/// [`reconcile`], checking at most `most` changed payments.
pub async fn reconcile_at_most(
    services: &Services,
    now: OffsetDateTime,
    most: usize,
) -> Result<ReconcileReport, StoreError> {
    let until = checked_until(now);
    let start = match services.store.reconcile_checkpoint().await? {
        Some(position) => position,
        None => crate::store::time_key(crate::store::keys::changed_hour(now - WINDOW)),
    };
    let since = crate::store::position_time(&start).unwrap_or(now - WINDOW);
    let changed = services
        .store
        .payments_changed_after(&start, until, most + 1)
        .await?;
    let mut report = ReconcileReport {
        truncated: changed.len() > most,
        ..ReconcileReport::empty(now, since)
    };
    settle_refunds(services, now, &mut report).await?;
    let mut position = start;
    for (n, (key, id)) in changed.into_iter().take(most).enumerate() {
        if let Some(payment) = services.store.payment(id).await? {
            report.checked += 1;
            check(services, &payment, &mut report).await?;
        }
        position = key;
        if (n + 1) % CHECKPOINT_EVERY == 0 {
            services.store.set_reconcile_checkpoint(&position).await?;
        }
    }
    // Everything changed in the closed hours is checked, unless the run
    // stopped short: then up to the last payment it checked. A checkpoint
    // already past `until` (a clock that went back) stays.
    if !report.truncated && crate::store::position_time(&position).is_none_or(|p| p < until) {
        position = crate::store::time_key(until);
    }
    services.store.set_reconcile_checkpoint(&position).await?;
    // Rounded up: a checkpoint any way behind is at least a second behind.
    report.behind_seconds = crate::store::position_time(&position).map_or(0, |at| {
        let millis = (now - at).whole_milliseconds().max(0);
        i64::try_from((millis + 999) / 1000).unwrap_or(i64::MAX)
    });
    for id in services.store.unknown_topups(MAX_LISTED as i32).await? {
        let (Some(t), Some(p)) = (
            services.store.topup(id).await?,
            services.store.payment(id).await?,
        ) else {
            continue;
        };
        {
            report.add(Difference {
                payment_id: id.to_string(),
                provider: p.provider,
                kind: DifferenceKind::TopUpUnknown,
                ours: format!(
                    "{} {} to {} unknown",
                    t.amount.minor(),
                    t.amount.currency(),
                    t.username
                ),
                theirs: t.last_error.unwrap_or_default(),
                action: Action::LeftForReview,
            });
        }
    }
    crate::telemetry::reconcile_run(
        report.checked,
        report.difference_count,
        report.behind_seconds,
    );
    services.store.put_reconcile_report(now, &report).await?;
    tracing::info!(
        checked = report.checked,
        matched = report.matched,
        corrected = report.corrected,
        unanswered = report.unanswered,
        differences = report.difference_count,
        behind_seconds = report.behind_seconds,
        "reconcile done"
    );
    Ok(report)
}

async fn check(
    services: &Services,
    payment: &Payment,
    report: &mut ReconcileReport,
) -> Result<(), StoreError> {
    let difference = |kind, ours: String, theirs: String, action| Difference {
        payment_id: payment.id.to_string(),
        provider: payment.provider,
        kind,
        ours,
        theirs,
        action,
    };
    let confirmation = match super::ask(services, payment).await.map(Asked::or_pending) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(payment_id = %payment.id, error = %e, "reconcile: provider did not answer");
            report.unanswered += 1;
            return Ok(());
        }
    };
    let amount_differs = confirmation.status == PaymentStatus::Completed
        && confirmation
            .amount
            .is_some_and(|a| !crate::flow::amount_matches(payment, a));
    let status_agrees = agree(payment.status, confirmation.status);
    let refunds_differ = refund_totals(services, payment).await;
    if let Some((ours, theirs)) = &refunds_differ {
        let d = difference(
            DifferenceKind::RefundTotal,
            ours.clone(),
            theirs.clone(),
            Action::LeftForReview,
        );
        left(services, report, payment, d).await?;
    }
    if status_agrees && !amount_differs {
        if refunds_differ.is_none() {
            report.matched += 1;
        }
        return Ok(());
    }
    // A forward move the state machine allows, on the provider's own
    // answer, is made; the rest is left.
    let moved = match target(payment, &confirmation) {
        Some(_) => match apply_confirmation(
            Books::of(services),
            payment,
            &confirmation,
            ChangeSource::Reconcile,
            vec![],
        )
        .await?
        {
            Applied::Moved(p) => Some(p),
            Applied::Unchanged(_) => None,
        },
        None => None,
    };
    let action = match &moved {
        Some(_) => Action::Corrected,
        None => Action::LeftForReview,
    };
    if moved.is_some() {
        report.corrected += 1;
    }
    if amount_differs {
        let theirs = confirmation
            .amount
            .map(|a| format!("{} {}", a.minor(), a.currency()))
            .unwrap_or_default();
        let d = difference(
            DifferenceKind::Amount,
            format!("{} {}", payment.paid().minor(), payment.paid().currency()),
            theirs,
            action,
        );
        left(services, report, payment, d).await?;
    }
    if !status_agrees {
        let d = difference(
            DifferenceKind::Status,
            payment.status.to_string(),
            format!("{} ({})", confirmation.status, confirmation.provider_status),
            action,
        );
        left(services, report, payment, d).await?;
    }
    Ok(())
}

/// Adds `d` to the report and, where it is left for a person, keeps it for
/// the operators' queue until acknowledged (a payment in review waits
/// there already; pending refunds and unknown top-ups are listed as
/// themselves).
async fn left(
    services: &Services,
    report: &mut ReconcileReport,
    payment: &Payment,
    d: Difference,
) -> Result<(), StoreError> {
    if d.action == Action::LeftForReview && payment.status != PaymentStatus::NeedsReview {
        let kept = crate::store::KeptDifference::open(
            payment.id,
            payment.provider,
            d.kind.as_str(),
            &d.ours,
            &d.theirs,
            report.run_at,
        );
        if services.store.keep_difference(&kept).await? {
            tracing::info!(payment_id = %payment.id, difference = kept.id, "difference kept for an operator");
        }
    }
    report.add(d);
    Ok(())
}

/// Our refunded total against the provider's, for a paid payment with no
/// refund in flight: `Some((ours, theirs))` when they differ.
async fn refund_totals(services: &Services, payment: &Payment) -> Option<(String, String)> {
    use crate::providers::ProviderRefunds;
    if !matches!(
        payment.status,
        PaymentStatus::Completed | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded
    ) || !payment.refund_pending().is_zero()
        || crate::providers::registry::describe(payment.provider)
            .operations
            .refund
            == crate::payment::RefundSupport::None
    {
        return None;
    }
    let theirs = match services.gateway(payment.provider).await {
        Ok(g) => g.refunds(payment).await,
        Err(e) => Err(e),
    };
    let recorded = payment.refunded_amount;
    let whole = recorded == payment.paid();
    let ours = format!("{} {} refunded", recorded.minor(), recorded.currency());
    match theirs {
        Ok(ProviderRefunds::Total(t)) if t != recorded => {
            Some((ours, format!("{} {} refunded", t.minor(), t.currency())))
        }
        Ok(ProviderRefunds::Whole) if !whole => Some((ours, "all refunded".into())),
        Ok(ProviderRefunds::NotWhole) if whole => Some((ours, "not refunded in full".into())),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(payment_id = %payment.id, error = %e, "reconcile: refunds not compared");
            None
        }
    }
}

/// Every refund still pending past `refunds::SETTLE_AFTER`, whatever its
/// age: settled on the provider's word where it proves the outcome,
/// reported where it cannot.
async fn settle_refunds(
    services: &Services,
    now: OffsetDateTime,
    report: &mut ReconcileReport,
) -> Result<(), StoreError> {
    use crate::refunds::{resume, Resumed};
    let mut start = None;
    loop {
        let (ids, next) = services
            .store
            .open_refunds(now - crate::refunds::SETTLE_AFTER, 100, start)
            .await?;
        for (payment_id, refund_id) in ids {
            let (Some(payment), Some(refund)) = (
                services.store.payment(payment_id).await?,
                services.store.refund(payment_id, refund_id).await?,
            ) else {
                continue;
            };
            report.refunds_checked += 1;
            let amount = format!("{} {}", refund.amount.minor(), refund.amount.currency());
            let provider = payment.provider;
            let difference = |theirs: &str, action| Difference {
                payment_id: payment_id.to_string(),
                provider,
                kind: DifferenceKind::RefundPending,
                ours: format!("refund ref_{refund_id} of {amount} pending"),
                theirs: theirs.to_string(),
                action,
            };
            match resume(services, payment, refund, now).await {
                Ok(Resumed::Done(_)) => {
                    report.refunds_settled += 1;
                    report.add(difference("refunded", Action::Corrected));
                }
                Ok(Resumed::Refused(_)) => {
                    report.refunds_settled += 1;
                    report.add(difference("not refunded", Action::Released));
                }
                Ok(Resumed::Pending(_)) => {
                    report.add(difference("unknown", Action::LeftForReview));
                }
                Err(e) => {
                    tracing::warn!(payment_id = %payment_id, error = ?e, "reconcile: pending refund not settled");
                    report.add(difference("unknown", Action::LeftForReview));
                }
            }
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
    use crate::payment::PaymentStatus as S;

    #[test]
    fn a_report_lists_a_bounded_number_of_differences_and_counts_all() {
        let now = OffsetDateTime::now_utc();
        let mut report = ReconcileReport::empty(now, now - WINDOW);
        for n in 0..MAX_LISTED + 7 {
            report.add(Difference {
                payment_id: format!("pay_{n}"),
                provider: Provider::Qpay,
                kind: DifferenceKind::Status,
                ours: "completed".into(),
                theirs: "failed".into(),
                action: Action::LeftForReview,
            });
        }
        assert_eq!(report.difference_count as usize, MAX_LISTED + 7);
        assert_eq!(report.differences.len(), MAX_LISTED);
        assert_eq!(report.differences[0].payment_id, "pay_0");
        // What is stored stays far under DynamoDB's 400 KB item limit.
        assert!(serde_json::to_vec(&report).unwrap().len() < 200 * 1024);
    }

    #[test]
    fn what_counts_as_agreement() {
        assert!(agree(S::Completed, S::Completed));
        assert!(agree(S::Refunded, S::Completed));
        assert!(agree(S::Expired, S::Pending));
        assert!(agree(S::Cancelled, S::Pending));
        assert!(
            !agree(S::Pending, S::Completed),
            "money we have not credited"
        );
        assert!(
            !agree(S::Completed, S::Failed),
            "money we credited that did not arrive"
        );
        assert!(!agree(S::Expired, S::Completed), "a late payment");
        assert!(!agree(S::Failed, S::Completed));
    }
}
