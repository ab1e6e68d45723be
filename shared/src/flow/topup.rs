//! Moving a completed deposit on to the casino, exactly once.

use time::OffsetDateTime;

use super::Books;
use crate::payment::ChangeSource;
use crate::providers::casino::CasinoClient;
use crate::queue::TopUpMessage;
use crate::services::TOPUP_LEASE;
use crate::store::{AcquireOutcome, FinishOutcome, StoreError, TopUp, TopUpStatus};

/// Sends the top-up message; a failure is logged, not returned: the record
/// is committed and the sweep re-sends queued top-ups.
pub async fn enqueue(books: Books<'_>, topup: &TopUp) {
    let message = TopUpMessage {
        payment_id: topup.payment_id,
    };
    if let Err(e) = books.queue.send(&message).await {
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
    books: Books<'_>,
    casino: &CasinoClient,
    message: &TopUpMessage,
    now: OffsetDateTime,
) -> Result<TopUpResult, StoreError> {
    let mut held = match books
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
            return settle_unknown(books, &held, "an attempt was interrupted", now).await;
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
            books
                .store
                .release_topup(&held, "casino player not found", Some(end), false, now)
                .await?;
            tracing::error!(payment_id = %held.payment_id, status = end.as_str(), "casino player not found; top-up ended");
            crate::telemetry::topup_attempt(end.as_str());
            return Ok(TopUpResult::Settled);
        }
        // A lookup moves no money and no transfer went out: whatever its
        // error (a timeout included), a clean failure of this attempt.
        Err(e) => return release(books, &held, &e, false, give_up, now).await,
    };
    let comment = format!("paygate deposit {}", held.payment_id);
    match casino
        .transfer(&player, held.amount, &held.nonce, &comment)
        .await
    {
        Ok(transfer) => {
            match books
                .store
                .finish_topup(&held, &transfer.transaction_id, now)
                .await?
            {
                FinishOutcome::Finished => {
                    tracing::info!(payment_id = %held.payment_id, attempts = held.attempts, "casino top-up done");
                    crate::telemetry::topup_attempt("done");
                    Ok(TopUpResult::Settled)
                }
                // Someone else took over after our lease ran out. The
                // casino's word that this nonce was paid is kept.
                FinishOutcome::LeaseLost(found) => {
                    keep_transfer(books, &held, found, &transfer.transaction_id, now).await?;
                    Ok(TopUpResult::Settled)
                }
            }
        }
        Err(e) if e.outcome_unknown() && !resend_ok => {
            settle_unknown(books, &held, &e.to_string(), now).await
        }
        Err(e) => {
            let maybe_sent = e.outcome_unknown();
            release(books, &held, &e, maybe_sent, give_up, now).await
        }
    }
}

/// The transfer may have reached the casino and may not be sent again:
/// `unknown`, for a person to settle.
async fn settle_unknown(
    books: Books<'_>,
    held: &TopUp,
    error: &str,
    now: OffsetDateTime,
) -> Result<TopUpResult, StoreError> {
    tracing::error!(payment_id = %held.payment_id, attempts = held.attempts, error, "casino top-up outcome unknown; not resent (the bridge is not known to deduplicate nonces)");
    books
        .store
        .release_topup(held, error, Some(TopUpStatus::Unknown), true, now)
        .await?;
    crate::telemetry::topup_attempt("unknown");
    Ok(TopUpResult::Settled)
}

/// The casino accepted our transfer after another worker had taken the
/// top-up over. Its transaction id is proof the nonce was paid: a top-up
/// the other worker left `unknown`, `failed` or queued again is done with
/// it (a conditional write on the state found: never twice); one another
/// worker is sending now keeps the id for whoever settles it.
async fn keep_transfer(
    books: Books<'_>,
    held: &TopUp,
    found: Option<Box<TopUp>>,
    transaction_id: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let Some(found) = found else {
        return Ok(());
    };
    tracing::warn!(payment_id = %held.payment_id, status = found.status.as_str(), "casino accepted a transfer after the lease ran out; its transaction id is kept");
    match found.status {
        TopUpStatus::Unknown | TopUpStatus::Failed | TopUpStatus::Queued => {
            let by = "worker: the casino accepted the transfer after the lease ran out";
            books
                .store
                .mark_topup(&found, Some(transaction_id), by, None, now)
                .await?;
        }
        TopUpStatus::Done => {}
        TopUpStatus::Sending => {
            books
                .store
                .note_casino_transaction(held.payment_id, transaction_id)
                .await?;
        }
    }
    Ok(())
}

async fn release(
    books: Books<'_>,
    held: &TopUp,
    error: &crate::providers::ProviderError,
    maybe_sent: bool,
    give_up: bool,
    now: OffsetDateTime,
) -> Result<TopUpResult, StoreError> {
    let end = give_up.then_some(if held.maybe_sent || maybe_sent {
        TopUpStatus::Unknown
    } else {
        TopUpStatus::Failed
    });
    let text = error.to_string();
    tracing::warn!(payment_id = %held.payment_id, attempts = held.attempts, give_up, error = %text, "casino top-up failed");
    books
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
    books: Books<'_>,
    payment_id: crate::ids::PaymentId,
    sent: Option<&str>,
    by: (&str, &str),
    now: OffsetDateTime,
) -> Result<Result<TopUp, String>, StoreError> {
    let (Some(topup), Some(payment)) = (
        books.store.topup(payment_id).await?,
        books.store.payment(payment_id).await?,
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
    match books
        .store
        .mark_topup(&topup, sent, by, Some(&note), now)
        .await?
    {
        FinishOutcome::Finished => {
            tracing::warn!(payment_id = %payment_id, by, sent = sent.is_some(), "top-up settled by hand");
            let after = books.store.topup(payment_id).await?;
            if let Some(t) = &after {
                if t.status == TopUpStatus::Queued {
                    enqueue(books, t).await;
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
