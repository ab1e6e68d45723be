//! The money flows: applying a provider's confirmed answer to a payment
//! (completion with wallet credit and casino top-up, failure, expiry), and
//! moving a completed deposit on to the casino.
//!
//! Callbacks, polls and sweeps all end in [`apply_confirmation`]: only the
//! provider's own answer moves a payment, and only through one conditional
//! transaction.

use time::OffsetDateTime;

use crate::money::Money;
use crate::payment::{ChangeSource, Payment, PaymentStatus};
use crate::providers::casino::CasinoClient;
use crate::providers::Confirmation;
use crate::queue::TopUpMessage;
use crate::services::{Services, TOPUP_LEASE};
use crate::store::{
    AcquireOutcome, FinishOutcome, LedgerEntry, LedgerPurpose, StatusChange, StoreError, TopUp,
    TopUpStatus, TransitionOutcome,
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

/// Asks the payment's provider where it stands. A provider that never saw
/// the payment (epayment.kz before the payer opened the widget) answers
/// "pending": nothing was paid.
pub async fn ask_provider(
    services: &Services,
    payment: &Payment,
) -> Result<Confirmation, crate::providers::ProviderError> {
    let answer = match services.gateway(payment.provider).await {
        Ok(g) => g.status(payment).await,
        Err(e) => Err(e),
    };
    match answer {
        Err(crate::providers::ProviderError::NotFound { .. }) => Ok(Confirmation {
            status: PaymentStatus::Pending,
            amount: None,
            provider_status: "not_found".into(),
        }),
        other => other,
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
    services: &Services,
    payment: &Payment,
    confirmation: &Confirmation,
    source: ChangeSource,
    also: Vec<crate::store::Write>,
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
        if to == PaymentStatus::NeedsReview {
            // What an operator who accepts it will credit.
            change.confirmed_amount = confirmation.amount;
        }
        let (mut extra, topup) = completion_writes(services, &current, to, now, true)?;
        extra.extend(also.iter().cloned());
        match services.store.transition(&current, change, extra).await? {
            TransitionOutcome::Applied(moved) => {
                if let Some(topup) = topup {
                    enqueue(services, &topup).await;
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
    services: &Services,
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
    let mut writes = services.store.ledger_writes(&credit)?.to_vec();
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
        writes.push(services.store.topup_write(t)?);
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
pub async fn decide_review(
    services: &Services,
    payment: &Payment,
    decision: &Review,
    by: (String, String),
) -> Result<Result<Payment, (Payment, &'static str)>, StoreError> {
    let mut current = payment.clone();
    for _ in 0..3 {
        if current.status != PaymentStatus::NeedsReview {
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
                if confirmed.currency() != current.amount.currency() || confirmed.minor() <= 0 {
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
        let (extra, topup) = completion_writes(services, &credited, to, now, top_up)?;
        match services.store.transition(&current, change, extra).await? {
            TransitionOutcome::Applied(moved) => {
                if let Some(topup) = topup {
                    enqueue(services, &topup).await;
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

/// Sends the top-up message; a failure is logged, not returned: the record
/// is committed and the sweep re-sends queued top-ups.
pub async fn enqueue(services: &Services, topup: &TopUp) {
    let message = TopUpMessage {
        payment_id: topup.payment_id,
    };
    if let Err(e) = services.queue.send(&message).await {
        tracing::error!(payment_id = %topup.payment_id, error = %e, "top-up queued but not sent; the sweep will re-send it");
    }
}

/// How one top-up message ended for the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopUpResult {
    /// Done (now or before), given up for good, or nothing to do: delete the message.
    Settled,
    /// Try again later: leave the message to come back.
    Retry(String),
}

/// Attempts after which a failing top-up is given up (the money stays in
/// the wallet; `failed` if no attempt can have reached the casino,
/// `unknown` otherwise).
pub const MAX_TOPUP_ATTEMPTS: u32 = 5;

/// ... and only once this long has passed since the top-up was queued, so
/// a casino outage of an hour is waited out (the queue brings the message
/// back every visibility timeout; template.yaml's `maxReceiveCount` covers
/// the window, which a test checks).
pub const TOPUP_RETRY_WINDOW_MINUTES: i64 = 120;

/// Whether a failing top-up is given up now (its money stays in the
/// wallet, for a person).
pub fn gives_up(held: &TopUp, now: OffsetDateTime) -> bool {
    held.attempts >= MAX_TOPUP_ATTEMPTS
        && now - held.created_at >= time::Duration::minutes(TOPUP_RETRY_WINDOW_MINUTES)
}

/// Moves one completed deposit to the casino, exactly once.
///
/// A transfer whose outcome is unknown (a timeout, a 5xx, a worker that
/// died holding the lease) is sent again, with the same nonce, only where
/// the casino bridge deduplicates nonces; otherwise the top-up becomes
/// `unknown` and waits for a person.
pub async fn process_topup(
    services: &Services,
    casino: &CasinoClient,
    message: &TopUpMessage,
    now: OffsetDateTime,
) -> Result<TopUpResult, StoreError> {
    let mut held = match services
        .store
        .acquire_topup(message.payment_id, now, TOPUP_LEASE)
        .await?
    {
        AcquireOutcome::Acquired(t) => t,
        AcquireOutcome::Leased(t) => {
            return Ok(TopUpResult::Retry(format!(
                "another worker holds the lease (attempt {})",
                t.attempts
            )))
        }
        AcquireOutcome::Finished(_) | AcquireOutcome::Missing => return Ok(TopUpResult::Settled),
    };
    let resend_ok = casino.deduplicates_nonces();
    if held.previous_status == Some(TopUpStatus::Sending) {
        // The previous worker's lease ran out mid-attempt: its transfer may
        // have reached the casino.
        held.maybe_sent = true;
        if !resend_ok {
            return settle_unknown(services, &held, "an attempt was interrupted", now).await;
        }
    }
    let give_up = gives_up(&held, now);
    let player = match casino.player(&held.username).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            let end = if held.maybe_sent {
                TopUpStatus::Unknown
            } else {
                TopUpStatus::Failed
            };
            services
                .store
                .release_topup(&held, "casino player not found", Some(end), false, now)
                .await?;
            tracing::error!(payment_id = %held.payment_id, status = end.as_str(), "casino player not found; top-up ended");
            crate::telemetry::topup_attempt(end.as_str());
            return Ok(TopUpResult::Settled);
        }
        // A lookup moves no money: a definite failure of this attempt.
        Err(e) => return release(services, &held, &e, give_up, now).await,
    };
    let comment = format!("paygate deposit {}", held.payment_id);
    match casino
        .transfer(&player, held.amount, &held.nonce, &comment)
        .await
    {
        Ok(transfer) => {
            match services
                .store
                .finish_topup(&held, &transfer.transaction_id, now)
                .await?
            {
                FinishOutcome::Finished => {
                    tracing::info!(payment_id = %held.payment_id, attempts = held.attempts, "casino top-up done");
                    crate::telemetry::topup_attempt("done");
                    Ok(TopUpResult::Settled)
                }
                // Someone else took over after our lease ran out; their
                // attempt carries the same nonce and settles it.
                FinishOutcome::LeaseLost(_) => Ok(TopUpResult::Settled),
            }
        }
        Err(e) if e.outcome_unknown() && !resend_ok => {
            settle_unknown(services, &held, &e.to_string(), now).await
        }
        Err(e) => release(services, &held, &e, give_up, now).await,
    }
}

/// The transfer may have reached the casino and may not be sent again:
/// `unknown`, for a person to settle.
async fn settle_unknown(
    services: &Services,
    held: &TopUp,
    error: &str,
    now: OffsetDateTime,
) -> Result<TopUpResult, StoreError> {
    tracing::error!(payment_id = %held.payment_id, attempts = held.attempts, error, "casino top-up outcome unknown; not resent (the bridge is not known to deduplicate nonces)");
    services
        .store
        .release_topup(held, error, Some(TopUpStatus::Unknown), true, now)
        .await?;
    crate::telemetry::topup_attempt("unknown");
    Ok(TopUpResult::Settled)
}

async fn release(
    services: &Services,
    held: &TopUp,
    error: &crate::providers::ProviderError,
    give_up: bool,
    now: OffsetDateTime,
) -> Result<TopUpResult, StoreError> {
    let maybe_sent = error.outcome_unknown();
    let end = give_up.then_some(if held.maybe_sent || maybe_sent {
        TopUpStatus::Unknown
    } else {
        TopUpStatus::Failed
    });
    let text = error.to_string();
    tracing::warn!(payment_id = %held.payment_id, attempts = held.attempts, give_up, error = %text, "casino top-up failed");
    services
        .store
        .release_topup(held, &text, end, maybe_sent, now)
        .await?;
    crate::telemetry::topup_attempt(match end {
        None => "retry",
        Some(s) => s.as_str(),
    });
    Ok(if give_up {
        TopUpResult::Settled
    } else {
        TopUpResult::Retry(text)
    })
}

/// A person's decision on a top-up whose outcome is unknown, or that was
/// given up: it was `sent` (with the casino's transaction id, as the
/// player's casino history shows it) or it was not (it is queued again and
/// sent with the same nonce). `by`: who decided, and why; the payment's
/// history shows it. Returns the top-up as it is afterwards.
pub async fn mark_topup(
    services: &Services,
    payment_id: crate::ids::PaymentId,
    sent: Option<&str>,
    by: (&str, &str),
    now: OffsetDateTime,
) -> Result<Result<TopUp, String>, StoreError> {
    let (Some(topup), Some(payment)) = (
        services.store.topup(payment_id).await?,
        services.store.payment(payment_id).await?,
    ) else {
        return Ok(Err(format!("payment {payment_id} has no top-up")));
    };
    let note = crate::payment::HistoryEntry {
        status: payment.status,
        at: now,
        source: ChangeSource::Operator,
        by: Some(by.0.to_string()),
        reason: Some(by.1.to_string()),
        action: Some(
            if sent.is_some() {
                "mark_sent"
            } else {
                "mark_not_sent"
            }
            .to_string(),
        ),
    };
    let by = format!("operator {}: {}", by.0, by.1);
    let by = by.as_str();
    if !matches!(topup.status, TopUpStatus::Unknown | TopUpStatus::Failed) {
        return Ok(Err(format!(
            "the top-up is {}; only an unknown or failed one is settled by hand",
            topup.status.as_str()
        )));
    }
    match services
        .store
        .mark_topup(&topup, sent, by, Some(&note), now)
        .await?
    {
        FinishOutcome::Finished => {
            tracing::warn!(payment_id = %payment_id, by, sent = sent.is_some(), "top-up settled by hand");
            let after = services.store.topup(payment_id).await?;
            if let Some(t) = &after {
                if t.status == TopUpStatus::Queued {
                    enqueue(services, t).await;
                }
            }
            Ok(after.ok_or_else(|| "the top-up vanished".to_string()))
        }
        FinishOutcome::LeaseLost(now) => Ok(Err(format!(
            "someone else settled it first: it is {}",
            now.map_or("gone", |t| t.status.as_str())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::payment::Provider;

    fn pending(amount: i64) -> Payment {
        Payment::sample(
            Provider::Directpay,
            Money::new(amount, Currency::Php).unwrap(),
        )
    }

    fn paid(amount: Option<i64>) -> Confirmation {
        Confirmation {
            status: PaymentStatus::Completed,
            amount: amount.map(|a| Money::new(a, Currency::Php).unwrap()),
            provider_status: "SUCCESS".into(),
        }
    }

    #[test]
    fn a_completion_without_an_amount_is_never_credited_blindly() {
        let p = pending(10_000);
        assert_eq!(
            target(&p, &paid(Some(10_000))),
            Some(PaymentStatus::Completed)
        );
        assert_eq!(target(&p, &paid(None)), Some(PaymentStatus::NeedsReview));
        assert_eq!(
            target(&p, &paid(Some(9_999))),
            Some(PaymentStatus::NeedsReview)
        );
        let mut done = p.clone();
        done.status = PaymentStatus::Completed;
        assert_eq!(target(&done, &paid(None)), None, "nothing to move");
    }

    #[test]
    fn no_provider_answer_moves_a_payment_out_of_review() {
        // Only an operator's accept or reject does (decide_review).
        let mut p = pending(10_000);
        p.status = PaymentStatus::NeedsReview;
        for status in PaymentStatus::ALL {
            for amount in [None, Some(10_000), Some(9_000)] {
                let c = Confirmation {
                    status,
                    amount: amount.map(|a| Money::new(a, Currency::Php).unwrap()),
                    provider_status: "X".into(),
                };
                assert_eq!(target(&p, &c), None, "{status} {amount:?}");
            }
        }
    }

    #[test]
    fn an_accepted_amount_is_what_matches_afterwards() {
        let mut p = pending(10_000);
        assert!(amount_matches(
            &p,
            Money::new(10_000, Currency::Php).unwrap()
        ));
        p.confirmed_amount = Some(Money::new(9_000, Currency::Php).unwrap());
        assert!(amount_matches(
            &p,
            Money::new(9_000, Currency::Php).unwrap()
        ));
        assert!(!amount_matches(
            &p,
            Money::new(10_000, Currency::Php).unwrap()
        ));
    }

    #[test]
    fn a_failing_top_up_is_given_up_only_after_its_attempts_and_window() {
        let p = pending(10_000);
        let queued_at = OffsetDateTime::now_utc();
        let mut t = TopUp::queued(
            p.id,
            p.merchant_id.clone(),
            "u_1".parse().unwrap(),
            "player1".parse().unwrap(),
            p.amount,
            queued_at,
        );
        t.attempts = MAX_TOPUP_ATTEMPTS;
        let window = time::Duration::minutes(TOPUP_RETRY_WINDOW_MINUTES);
        assert!(!gives_up(&t, queued_at + time::Duration::hours(1)));
        assert!(gives_up(&t, queued_at + window));
        t.attempts = MAX_TOPUP_ATTEMPTS - 1;
        assert!(!gives_up(&t, queued_at + window * 3));
    }

    #[test]
    fn a_provider_refund_moves_nothing() {
        let mut p = pending(10_000);
        let refunded = Confirmation {
            status: PaymentStatus::Refunded,
            amount: None,
            provider_status: "REFUNDED".into(),
        };
        assert_eq!(target(&p, &refunded), None);
        p.status = PaymentStatus::Completed;
        assert_eq!(target(&p, &refunded), None);
    }
}
