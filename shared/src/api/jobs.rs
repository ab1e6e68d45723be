//! Scheduled jobs. `sweep` (every 5 minutes in AWS): pending payments past
//! their expiry are expired, but only after asking the provider (a payment
//! that was paid completes instead, a late payment); top-ups left queued
//! (the message was lost) or sending past their lease are queued again.

use serde::Serialize;
use time::OffsetDateTime;

use crate::flow::{apply_confirmation, ask_provider, enqueue, Applied};
use crate::payment::{ChangeSource, PaymentStatus};
use crate::providers::Confirmation;
use crate::services::Services;
use crate::store::{StoreError, TopUpStatus};

/// How many items one run looks at, per kind (the next run takes the rest).
const BATCH: i32 = 100;
/// A queued top-up younger than this may still be on its way through SQS.
const TOPUP_GRACE: time::Duration = time::Duration::minutes(2);

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub expired: u32,
    /// The provider said it failed.
    pub failed: u32,
    /// Paid after all: completed (or sent to review) instead of expired.
    pub settled_late: u32,
    /// The provider did not answer: left for the next run.
    pub skipped: u32,
    pub topups_requeued: u32,
}

pub async fn sweep(services: &Services, now: OffsetDateTime) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    for id in services.store.pending_payments_due(now, BATCH).await? {
        let Some(payment) = services.store.payment(id).await? else {
            continue;
        };
        if payment.status != PaymentStatus::Pending {
            continue;
        }
        let confirmation = match ask_provider(services, &payment).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(payment_id = %payment.id, error = %e, "sweep: provider did not answer; next run");
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
            services,
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
            Applied::Unchanged(_) => {}
        }
    }
    for id in services.store.topups_due(now - TOPUP_GRACE, BATCH).await? {
        if let Some(topup) = services.store.topup(id).await? {
            if matches!(topup.status, TopUpStatus::Queued | TopUpStatus::Sending) {
                enqueue(services, &topup).await;
                report.topups_requeued += 1;
            }
        }
    }
    tracing::info!(?report, "sweep done");
    Ok(report)
}
