//! `job-reconcile` (daily): every payment that changed in the last day is
//! compared with what its provider says now. Each difference is logged and
//! written into the run's report item (`store::reconcile`).
//!
//! Money moves only on the provider's own answer to our authenticated
//! status call (never on a callback): a payment the provider says was paid
//! but we have pending or expired completes (and credits) as a late payment
//! would; a pending one the provider failed or expired follows it. Anything
//! else (we completed what the provider calls failed, an amount that
//! differs, a refund whose outcome we never recorded) is reported and left
//! for a person: reconcile never takes money back.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::flow::{apply_confirmation, ask_provider, target, Applied};
use crate::payment::{ChangeSource, Payment, PaymentStatus, Provider};
use crate::services::Services;
use crate::store::StoreError;

/// How far back one run looks.
pub const WINDOW: time::Duration = time::Duration::days(1);
/// At most this many payments per run; the report says when there were more.
pub const MAX_PER_RUN: usize = 2_000;
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
    /// A refund was sent but its outcome never recorded.
    RefundPending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Moved to the provider's answer (a forward move on a verified answer).
    Corrected,
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
    /// More payments changed than one run checks.
    pub truncated: bool,
    /// Every difference found; the first [`MAX_LISTED`] are in `differences`.
    pub difference_count: u32,
    pub differences: Vec<Difference>,
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
            (S::Refunded | S::PartiallyRefunded, S::Completed)
            // A payment that lapsed or was cancelled unpaid, which the
            // provider still lists as open or failed.
            | (S::Expired | S::Cancelled, S::Pending | S::Failed | S::Expired)
        )
}

pub async fn reconcile(
    services: &Services,
    now: OffsetDateTime,
) -> Result<ReconcileReport, StoreError> {
    let since = now - WINDOW;
    let ids = services
        .store
        .payments_changed(since, now, MAX_PER_RUN + 1)
        .await?;
    let mut report = ReconcileReport {
        run_at: now,
        since,
        checked: 0,
        matched: 0,
        corrected: 0,
        unanswered: 0,
        truncated: ids.len() > MAX_PER_RUN,
        difference_count: 0,
        differences: Vec::new(),
    };
    for id in ids.into_iter().take(MAX_PER_RUN) {
        let Some(payment) = services.store.payment(id).await? else {
            continue;
        };
        report.checked += 1;
        check(services, &payment, &mut report).await?;
    }
    crate::telemetry::reconcile_run(report.checked, report.difference_count);
    services.store.put_reconcile_report(now, &report).await?;
    tracing::info!(
        checked = report.checked,
        matched = report.matched,
        corrected = report.corrected,
        unanswered = report.unanswered,
        differences = report.difference_count,
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
    if let Some(pending) = payment.refund_pending.filter(|p| !p.is_zero()) {
        report.add(difference(
            DifferenceKind::RefundPending,
            format!("{} {} refund pending", pending.minor(), pending.currency()),
            "unknown".into(),
            Action::LeftForReview,
        ));
    }
    let confirmation = match ask_provider(services, payment).await {
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
    if status_agrees && !amount_differs {
        report.matched += 1;
        return Ok(());
    }
    // A forward move the state machine allows, on the provider's own
    // answer, is made; the rest is left.
    let moved = match target(payment, &confirmation) {
        Some(_) => match apply_confirmation(
            services,
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
        report.add(difference(
            DifferenceKind::Amount,
            format!("{} {}", payment.amount.minor(), payment.amount.currency()),
            theirs,
            action,
        ));
    }
    if !status_agrees {
        report.add(difference(
            DifferenceKind::Status,
            payment.status.to_string(),
            format!("{} ({})", confirmation.status, confirmation.provider_status),
            action,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::PaymentStatus as S;

    #[test]
    fn a_report_lists_a_bounded_number_of_differences_and_counts_all() {
        let now = OffsetDateTime::now_utc();
        let mut report = ReconcileReport {
            run_at: now,
            since: now - WINDOW,
            checked: 0,
            matched: 0,
            corrected: 0,
            unanswered: 0,
            truncated: false,
            difference_count: 0,
            differences: Vec::new(),
        };
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
