//! Applying a provider's confirmed answer to a payment: completion with
//! its wallet credit and casino top-up, failure, expiry, review.

use time::OffsetDateTime;

use super::topup::enqueue;
use super::Books;
use crate::money::Money;
use crate::payment::{ChangeSource, Payment, PaymentStatus};
use crate::providers::{Confirmation, Gateway};
use crate::store::{
    LedgerEntry, LedgerPurpose, StatusChange, StoreError, TopUp, TransitionOutcome,
};

/// What applying a confirmation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The payment moved; the new record.
    Moved(Payment),
    /// Nothing to do (still pending at the provider, a duplicate, or a move
    /// the state machine refuses); the payment as it is.
    Unchanged(Payment),
}

impl Applied {
    pub fn payment(&self) -> &Payment {
        match self {
            Applied::Moved(p) | Applied::Unchanged(p) => p,
        }
    }
}

/// Whether `reported` is what was paid (the payment's amount, or the
/// confirmed amount an operator accepted): same currency, within the
/// provider's tolerance (its description's `amount_tolerance`).
pub fn amount_matches(payment: &Payment, reported: Money) -> bool {
    let paid = payment.paid();
    reported.currency() == paid.currency()
        && (reported.minor() - paid.minor()).abs()
            <= crate::providers::registry::describe(payment.provider).amount_tolerance
}

/// What a provider answered when asked about a payment.
#[derive(Debug)]
pub enum Asked {
    /// Its word on the payment.
    Knows(Confirmation),
    /// It has no such transaction: not yet (a callback that outran its
    /// status API), or never (epayment.kz before the payer opened the
    /// widget).
    Unknown,
}

impl Asked {
    /// The answer where a transaction the provider does not know means
    /// nothing was paid (a merchant's GET, the sweep, reconcile): pending.
    pub fn or_pending(self) -> Confirmation {
        match self {
            Asked::Knows(c) => c,
            Asked::Unknown => Confirmation {
                status: PaymentStatus::Pending,
                amount: None,
                provider_status: "not_found".into(),
            },
        }
    }
}

/// Asks the payment's provider where it stands: the one provider question
/// of every path (callback, GET, sweep, reconcile), which differ only in
/// what they make of [`Asked::Unknown`].
pub async fn ask_provider(
    gateway: &dyn Gateway,
    payment: &Payment,
) -> Result<Asked, crate::providers::ProviderError> {
    match gateway.status(payment).await {
        Ok(c) => Ok(Asked::Knows(c)),
        Err(crate::providers::ProviderError::NotFound { .. }) => Ok(Asked::Unknown),
        Err(e) => Err(e),
    }
}

/// The state a confirmed provider answer asks for, from `payment`'s state:
/// `None` when it asks for nothing.
pub fn target(payment: &Payment, confirmation: &Confirmation) -> Option<PaymentStatus> {
    match confirmation.status {
        PaymentStatus::Completed => {
            // No amount in the provider's answer is not credited blindly;
            // money that is not what was asked: a person decides.
            let amount_ok = confirmation
                .amount
                .is_some_and(|a| amount_matches(payment, a));
            if !amount_ok {
                return match payment.status {
                    PaymentStatus::Pending
                    | PaymentStatus::Expired
                    | PaymentStatus::Failed
                    | PaymentStatus::Cancelled => Some(PaymentStatus::NeedsReview),
                    _ => None,
                };
            }
            match payment.status {
                PaymentStatus::Pending | PaymentStatus::Expired => Some(PaymentStatus::Completed),
                PaymentStatus::Failed | PaymentStatus::Cancelled => {
                    Some(PaymentStatus::NeedsReview)
                }
                _ => None,
            }
        }
        // Only an open payment follows a provider's "no"; one in review
        // waits for a person even if the provider now says failed.
        PaymentStatus::Failed | PaymentStatus::Expired
            if payment.status == PaymentStatus::Pending =>
        {
            Some(confirmation.status)
        }
        _ => None,
    }
}

/// Applies the provider's confirmed answer, exactly once however often it
/// arrives. `also` are writes that must commit with the change (a webhook's
/// delivery record); they are written only if the payment moves. A completion credits the wallet and queues the casino top-up in
/// the same transaction; the queue message follows the commit (the sweep
/// re-sends it if this process dies in between).
pub async fn apply_confirmation(
    books: Books<'_>,
    payment: &Payment,
    confirmation: &Confirmation,
    source: ChangeSource,
    also: Vec<crate::store::Write>,
) -> Result<Applied, StoreError> {
    apply(books, payment, confirmation, source, also, None).await
}

/// [`apply_confirmation`] of the sweep's answer at a payment's expiry; a
/// move to `expired` that the provider was not told of (it may still take
/// money) keeps the payment in the late lane, next asked at `recheck_at`.
pub async fn apply_expiry(
    books: Books<'_>,
    payment: &Payment,
    confirmation: &Confirmation,
    recheck_at: Option<OffsetDateTime>,
) -> Result<Applied, StoreError> {
    apply(
        books,
        payment,
        confirmation,
        ChangeSource::Sweep,
        vec![],
        recheck_at,
    )
    .await
}

async fn apply(
    books: Books<'_>,
    payment: &Payment,
    confirmation: &Confirmation,
    source: ChangeSource,
    also: Vec<crate::store::Write>,
    recheck_at: Option<OffsetDateTime>,
) -> Result<Applied, StoreError> {
    let mut current = payment.clone();
    for _ in 0..3 {
        let Some(to) = target(&current, confirmation) else {
            return Ok(Applied::Unchanged(current));
        };
        if to == PaymentStatus::NeedsReview {
            tracing::warn!(
                payment_id = %current.id,
                provider = %current.provider,
                confirmed = ?confirmation.amount,
                expected = %current.amount,
                "provider confirmation needs review"
            );
        }
        if current.status == PaymentStatus::Expired && to == PaymentStatus::Completed {
            tracing::warn!(payment_id = %current.id, "late payment: completing an expired payment");
        }
        let now = OffsetDateTime::now_utc();
        let mut change = StatusChange::new(to, source, now);
        change.provider_status = Some(confirmation.provider_status.clone());
        change.recheck_at = recheck_at;
        if to == PaymentStatus::NeedsReview {
            // What an operator who accepts it will credit.
            change.confirmed_amount = confirmation.amount;
        }
        let (mut extra, topup) = completion_writes(books, &current, to, now, true)?;
        extra.extend(also.iter().cloned());
        match books.store.transition(&current, change, extra).await? {
            TransitionOutcome::Applied(moved) => {
                if let Some(topup) = topup {
                    enqueue(books, &topup).await;
                }
                tracing::info!(payment_id = %moved.id, provider = %moved.provider, from = %current.status, status = %moved.status, ?source, "payment moved");
                crate::telemetry::payment_settled(moved.provider.as_str(), moved.status);
                return Ok(Applied::Moved(moved));
            }
            TransitionOutcome::AlreadyInState(p) | TransitionOutcome::Rejected { current: p } => {
                return Ok(Applied::Unchanged(p))
            }
            TransitionOutcome::Stale { current: p } => current = p,
        }
    }
    Ok(Applied::Unchanged(current))
}

/// The ledger credit of what was paid, and the top-up (`top_up`), that go
/// with a completion.
fn completion_writes(
    books: Books<'_>,
    payment: &Payment,
    to: PaymentStatus,
    now: OffsetDateTime,
    top_up: bool,
) -> Result<(Vec<crate::store::Write>, Option<TopUp>), StoreError> {
    if to != PaymentStatus::Completed {
        return Ok((Vec::new(), None));
    }
    let Some(user) = &payment.wallet_user_id else {
        return Ok((Vec::new(), None));
    };
    let credit = LedgerEntry {
        merchant: payment.merchant_id.clone(),
        user: user.clone(),
        payment_id: payment.id,
        purpose: LedgerPurpose::Deposit,
        amount: payment.paid(),
        at: now,
        memo: format!("{} deposit {}", payment.provider, payment.reference),
    };
    let mut writes = books.store.ledger_writes(&credit)?.to_vec();
    let username = payment.casino_username.as_ref().filter(|_| top_up);
    let topup = username.map(|username| {
        TopUp::queued(
            payment.id,
            payment.merchant_id.clone(),
            user.clone(),
            username.clone(),
            payment.paid(),
            now,
        )
    });
    if let Some(t) = &topup {
        writes.push(books.store.topup_write(t)?);
    }
    Ok((writes, topup))
}

/// An operator's decision on a payment in `needs_review`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// Completed at the provider's confirmed amount (`stated`: the amount
    /// the operator read at the provider, for a confirmation that carried
    /// none): the wallet is credited that amount and the casino topped up.
    Accept { stated: Option<Money> },
    /// Not accepted. `refund`: the provider took money it can give back, so
    /// the payment completes without a casino top-up and is refunded in
    /// full by the caller; otherwise it fails.
    Reject { refund: bool },
}

/// Applies an operator's decision to a payment in review: one conditional
/// transition from `needs_review` (of two operators at once, one wins).
/// `Err` carries the payment as it stands when it is no longer in review,
/// or when an accept has no amount to credit.
/// Whether `amount` can be credited as a payment of `payment`: positive and
/// in the payment's currency.
fn is_payment_of(payment: &Payment, amount: Money) -> bool {
    amount.currency() == payment.amount.currency() && amount.minor() > 0
}

pub async fn decide_review(
    books: Books<'_>,
    payment: &Payment,
    decision: &Review,
    by: (String, String),
) -> Result<Result<Payment, (Payment, &'static str)>, StoreError> {
    let mut current = payment.clone();
    for _ in 0..3 {
        // In review, or pending and stale (its provider refused to describe
        // it for a day past its expiry): a person decides either.
        let stale = current.status == PaymentStatus::Pending && current.stale_since.is_some();
        if current.status != PaymentStatus::NeedsReview && !stale {
            return Ok(Err((current, "the payment is not in review")));
        }
        let now = OffsetDateTime::now_utc();
        let (to, action, top_up, confirmed) = match decision {
            Review::Accept { stated } => {
                let confirmed = match (current.confirmed_amount, stated) {
                    (Some(c), Some(s)) if c != *s => {
                        return Ok(Err((current, "the provider confirmed another amount")))
                    }
                    (Some(c), _) => c,
                    (None, Some(s)) => *s,
                    (None, None) => {
                        return Ok(Err((
                            current,
                            "the provider confirmed no amount: state the amount it shows",
                        )))
                    }
                };
                if !is_payment_of(&current, confirmed) {
                    return Ok(Err((
                        current,
                        "the amount is not a payment in its currency",
                    )));
                }
                (PaymentStatus::Completed, "accept", true, Some(confirmed))
            }
            Review::Reject { refund: true } => {
                let Some(confirmed) = current.confirmed_amount else {
                    return Ok(Err((current, "the provider confirmed no amount to refund")));
                };
                // The wallet is credited this much before it is refunded:
                // the same checks as an accept's.
                if !is_payment_of(&current, confirmed) {
                    return Ok(Err((
                        current,
                        "the amount is not a payment in its currency",
                    )));
                }
                (PaymentStatus::Completed, "reject", false, Some(confirmed))
            }
            Review::Reject { refund: false } => (PaymentStatus::Failed, "reject", false, None),
        };
        let mut change = StatusChange::new(to, ChangeSource::Operator, now);
        change.by = Some(by.clone());
        change.action = Some(action);
        change.confirmed_amount = confirmed;
        let mut credited = current.clone();
        credited.confirmed_amount = confirmed.or(current.confirmed_amount);
        let (extra, topup) = completion_writes(books, &credited, to, now, top_up)?;
        match books.store.transition(&current, change, extra).await? {
            TransitionOutcome::Applied(moved) => {
                if let Some(topup) = topup {
                    enqueue(books, &topup).await;
                }
                tracing::warn!(payment_id = %moved.id, operator = by.0, action, status = %moved.status, "review decided by an operator");
                crate::telemetry::operator_action(action);
                return Ok(Ok(moved));
            }
            TransitionOutcome::Stale { current: p } => current = p,
            TransitionOutcome::AlreadyInState(p) | TransitionOutcome::Rejected { current: p } => {
                return Ok(Err((p, "the payment is not in review")))
            }
        }
    }
    Err(StoreError::Contention)
}
