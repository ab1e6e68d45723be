//! Refunds, exactly once at the provider.
//!
//! A refund is reserved before the provider is asked: its amount joins the
//! payment's `refund_pending`, the wallet holds it (a `refund:<id>` debit)
//! and a refund record is written, in one transaction conditional on the
//! payment's version, so refunds never add up to more than was paid. The
//! refund id is derived from the merchant, the payment and the request's
//! Idempotency-Key, so every retry of one request names the same refund:
//! it finds the record and resumes it instead of starting another.
//!
//! The provider's answer decides what happens next:
//! - yes: the reservation becomes `refunded_amount` (the payment moves to
//!   `partially_refunded` or `refunded`) and the record `succeeded`;
//! - a definite no (an answer of its own, or nothing sent): the reservation
//!   is given back (`refund_reversal:<id>` credit) and the record `failed`;
//! - no usable answer (a timeout, a broken connection, a 5xx): nothing is
//!   undone; the refund stays pending (202 to the merchant) until the
//!   provider's own account of its refunds settles it ([`judge`]): on the
//!   merchant's retry, or in job-reconcile, or by an operator.

use crate::events::Event;
use lambda_http::http::StatusCode;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::ids::{IdempotencyKey, MerchantId};
use crate::money::Money;
use crate::payment::{ChangeSource, Payment, PaymentStatus, RefundSupport};
use crate::providers::{ProviderError, ProviderRefunds};
use crate::responses::ApiError;
use crate::services::Services;
use crate::store::{
    ItemKind, LedgerEntry, LedgerPurpose, Refund, RefundStatus, ReserveOutcome, StatusChange,
    StoreError, TransitionOutcome,
};

/// A provider's "not refunded" is taken as proof only this long after our
/// latest attempt, so a request still in flight there can land first.
pub const SETTLE_AFTER: time::Duration = time::Duration::minutes(2);

/// How many times one Idempotency-Key may be refused by the provider and
/// tried again (API.md: after an error the key is free again).
pub const MAX_GENERATIONS: u32 = 10;

/// The refund id of one merchant request: the same for every retry with the
/// same Idempotency-Key, different for every other key, merchant or payment.
/// `generation` counts the attempts under the key the provider refused
/// outright; only those are tried again under a new id.
pub fn refund_id(
    merchant: &MerchantId,
    payment: crate::ids::PaymentId,
    key: &IdempotencyKey,
    generation: u32,
) -> ulid::Ulid {
    let digest = Sha256::digest(format!(
        "paygate refund\n{merchant}\n{payment}\n{key}\n{generation}"
    ));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    ulid::Ulid::from_bytes(bytes)
}

/// How a refund request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundResult {
    /// Refunded: the payment with it recorded.
    Done(Payment),
    /// Sent, but the provider's answer was lost: the payment with the
    /// amount still in `refund_pending`. A retry with the same key resumes.
    Pending(Payment),
}

/// What the provider's account of its refunds proves about one pending refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// The provider made it.
    Done,
    /// The provider did not make it.
    NotDone,
    /// The provider's answer cannot tell.
    Unknown,
}

/// What `theirs` proves about `refund` of `payment`, as stored: only when
/// this refund is the only one in flight can a total be read as it. A
/// status without amounts (epayment.kz's REFUND or CHARGE) proves only a
/// refund of the whole payment sent as one: no public source shows the
/// status after partial refunds, so a refund that completes the payment
/// after earlier parts proves nothing either way (decision 45).
pub fn judge(payment: &Payment, refund: &Refund, theirs: &ProviderRefunds) -> Judgement {
    let recorded = payment.refunded_amount.minor();
    let this = refund.amount.minor();
    let alone = payment.refund_pending().minor() == this;
    let whole = recorded == 0 && this == payment.paid().minor();
    if !alone {
        return Judgement::Unknown;
    }
    match theirs {
        ProviderRefunds::Total(total) if total.currency() != payment.amount.currency() => {
            Judgement::Unknown
        }
        ProviderRefunds::Total(total) if total.minor() == recorded + this => Judgement::Done,
        ProviderRefunds::Total(total) if total.minor() == recorded => Judgement::NotDone,
        ProviderRefunds::Total(_) => Judgement::Unknown,
        ProviderRefunds::Whole if whole => Judgement::Done,
        ProviderRefunds::NotWhole if whole => Judgement::NotDone,
        ProviderRefunds::Whole | ProviderRefunds::NotWhole => Judgement::Unknown,
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(code, message)
}

fn invalid_state(payment: &Payment) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "invalid_state",
        format!("a {} payment cannot be refunded", payment.status),
    )
}

/// The amount a request for `requested` (all that is left when `None`) may
/// take from `payment` as it stands, or why not.
pub fn allowed_amount(payment: &Payment, requested: Option<i64>) -> Result<Money, ApiError> {
    let support = crate::providers::registry::describe(payment.provider)
        .operations
        .refund;
    if support == RefundSupport::None {
        return Err(invalid(
            "unsupported_operation",
            format!("{} payments cannot be refunded", payment.provider),
        ));
    }
    if !matches!(
        payment.status,
        PaymentStatus::Completed | PaymentStatus::PartiallyRefunded
    ) {
        return Err(invalid_state(payment));
    }
    let rest = payment.refundable();
    let amount = match requested {
        Some(minor) if minor <= 0 => {
            return Err(invalid(
                "invalid_amount",
                "amount must be a positive number of minor units",
            ))
        }
        Some(minor) => Money::new(minor, payment.amount.currency())
            .map_err(|e| invalid("invalid_amount", e.to_string()))?,
        None => rest,
    };
    if amount.is_zero() || amount.minor() > rest.minor() {
        return Err(invalid(
            "refund_exceeds_remaining",
            format!("{} is left to refund", rest.minor()),
        ));
    }
    match support {
        RefundSupport::Full if amount != payment.paid() || !payment.refunded_amount.is_zero() => {
            Err(invalid(
                "unsupported_operation",
                format!("{} refunds whole payments only", payment.provider),
            ))
        }
        RefundSupport::Partial { minimum } if amount != rest && amount.minor() < minimum => {
            Err(invalid(
                "refund_below_minimum",
                format!(
                    "{} refunds at least {minimum} minor units",
                    payment.provider
                ),
            ))
        }
        _ => Ok(amount),
    }
}

/// The merchant's API error for a provider failure.
pub fn provider_error(e: &ProviderError) -> ApiError {
    tracing::warn!(error = %e, "provider call failed");
    match e {
        ProviderError::Rejected { code, message, .. } => rejected(code, message),
        ProviderError::Unsupported { operation, .. } => ApiError::unprocessable(
            "unsupported_operation",
            format!("the provider cannot {operation}"),
        ),
        e if e.is_unavailable() => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "provider_unavailable",
            "the provider did not answer; retry with the same Idempotency-Key",
        ),
        _ => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "provider_error",
            "the provider's answer could not be used",
        ),
    }
}

fn rejected(code: &str, message: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "provider_error",
        "the provider rejected the request",
    )
    .with_details(serde_json::json!({"provider_code": code, "provider_message": message}))
}

/// Refunds `requested` of `payment` (the rest when `None`) for the
/// merchant's request under `key`: resumes the request's refund where one
/// is pending or done, starts it otherwise. A refund of the request that
/// the provider refused, or proved it never made, frees the request: it
/// goes on under the next id (never the same id twice: no provider
/// documents that it deduplicates refunds by our id).
pub async fn request(
    services: &Services,
    payment: Payment,
    requested: Option<i64>,
    merchant: &MerchantId,
    key: &IdempotencyKey,
) -> Result<RefundResult, ApiError> {
    let mut payment = payment;
    for generation in 0..MAX_GENERATIONS {
        let id = refund_id(merchant, payment.id, key, generation);
        let existing = match services.store.refund(payment.id, id).await? {
            None => return start(services, payment, requested, id).await,
            // Refused outright: nothing happened, the key may try again.
            Some(r) if r.status == RefundStatus::Failed => continue,
            Some(r) => r,
        };
        same_amount(&existing, requested)?;
        match resume(
            services,
            payment.clone(),
            existing,
            OffsetDateTime::now_utc(),
        )
        .await?
        {
            Resumed::Done(p) => return Ok(RefundResult::Done(p)),
            Resumed::Pending(p) => return Ok(RefundResult::Pending(p)),
            // Proven never made, and released: the request goes on.
            Resumed::Refused(_) => payment = reread(services, &payment).await?,
        }
    }
    Err(invalid(
        "refund_refused",
        "the provider refused this refund too often; use a new Idempotency-Key",
    ))
}

/// A retry must ask for what the first request asked for.
fn same_amount(refund: &Refund, requested: Option<i64>) -> Result<(), ApiError> {
    if requested.is_some_and(|r| r != refund.amount.minor()) {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used for a refund of another amount",
        ));
    }
    Ok(())
}

/// Reserves and sends a new refund `refund_id`.
async fn start(
    services: &Services,
    payment: Payment,
    requested: Option<i64>,
    refund_id: ulid::Ulid,
) -> Result<RefundResult, ApiError> {
    let mut current = payment;
    let (reserved, refund) = loop {
        let amount = allowed_amount(&current, requested)?;
        let now = OffsetDateTime::now_utc();
        let rest = amount == current.refundable();
        let refund = Refund::new(current.id, refund_id, amount, rest, now);
        let mut writes = wallet_writes(
            services,
            &current,
            LedgerPurpose::Refund(refund_id),
            amount,
            now,
            format!("refund {refund_id}"),
        )?;
        writes.push(services.store.refund_write(&refund)?);
        // The merchant is told in the same transaction (decision 56).
        writes.extend(services.store.maybe_event_write(Some(Event::of_refund(
            &current,
            &refund,
            RefundStatus::Pending,
            now,
        )))?);
        let pending = current
            .refund_pending()
            .checked_add(amount)
            .map_err(|e| invalid("invalid_amount", e.to_string()))?;
        match services
            .store
            .set_refund_pending(&current, pending, writes, None)
            .await?
        {
            ReserveOutcome::Done(p) => break (p, refund),
            ReserveOutcome::Stale { current: p } => current = p,
            // The same request reserved it concurrently: resume that one.
            ReserveOutcome::Refused(ItemKind::Refund | ItemKind::LedgerEntry) => {
                let existing = services
                    .store
                    .refund(current.id, refund_id)
                    .await?
                    .ok_or_else(|| ApiError::internal(&"refund vanished"))?;
                let fresh = reread(services, &current).await?;
                return resume_request(services, fresh, existing, requested).await;
            }
            ReserveOutcome::Refused(_) => {
                return Err(invalid(
                    "insufficient_wallet_balance",
                    "the wallet no longer holds this money (it moved on, to the casino say)",
                ))
            }
        }
    };
    crate::telemetry::refund_outcome("requested");
    send(services, reserved, refund).await
}

async fn reread(services: &Services, payment: &Payment) -> Result<Payment, ApiError> {
    services
        .store
        .payment(payment.id)
        .await?
        .ok_or_else(|| ApiError::internal(&"payment vanished"))
}

/// The same request, reserved concurrently: resumes that one.
async fn resume_request(
    services: &Services,
    payment: Payment,
    refund: Refund,
    requested: Option<i64>,
) -> Result<RefundResult, ApiError> {
    same_amount(&refund, requested)?;
    match resume(services, payment, refund, OffsetDateTime::now_utc()).await? {
        Resumed::Done(p) => Ok(RefundResult::Done(p)),
        Resumed::Pending(p) => Ok(RefundResult::Pending(p)),
        Resumed::Refused(r) => Err(rejected(
            r.provider_code.as_deref().unwrap_or("refused"),
            r.provider_message.as_deref().unwrap_or_default(),
        )),
    }
}

/// Where a resumed refund stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumed {
    Done(Payment),
    Pending(Payment),
    /// The provider refused it; the reservation was given back.
    Refused(Box<Refund>),
}

/// Asks the provider about a refund still pending and settles it on the
/// provider's proof: made (recorded), or not made and our latest attempt
/// older than [`SETTLE_AFTER`] (its reservation given back). It is never
/// sent again: a refund whose outcome was unknown is settled only by the
/// provider's account of its refunds or by an operator.
pub async fn resume(
    services: &Services,
    payment: Payment,
    refund: Refund,
    now: OffsetDateTime,
) -> Result<Resumed, ApiError> {
    match refund.status {
        RefundStatus::Succeeded => return Ok(Resumed::Done(payment)),
        RefundStatus::Failed => return Ok(Resumed::Refused(Box::new(refund))),
        RefundStatus::Pending => {}
    }
    let theirs = match services.gateway(payment.provider).await {
        Ok(g) => g.refunds(&payment).await,
        Err(e) => Err(e),
    };
    let judgement = match &theirs {
        Ok(theirs) => judge(&payment, &refund, theirs),
        Err(e) => {
            tracing::warn!(payment_id = %payment.id, refund_id = %refund.refund_id, error = %e, "could not ask the provider about a pending refund");
            Judgement::Unknown
        }
    };
    let settled = refund
        .last_attempt_at
        .is_none_or(|at| now - at >= SETTLE_AFTER);
    tracing::info!(payment_id = %payment.id, refund_id = %refund.refund_id, ?judgement, settled, "pending refund checked with the provider");
    match judgement {
        Judgement::Done => Ok(Resumed::Done(finalize(services, payment, &refund).await?)),
        Judgement::NotDone if settled => {
            let error = ProviderError::Rejected {
                provider: payment.provider.as_str(),
                status: 200,
                code: "not_refunded".into(),
                message: "the provider reports no such refund".into(),
            };
            release(services, payment, &refund, &error).await?;
            Ok(Resumed::Refused(Box::new(stored(services, &refund).await?)))
        }
        _ => Ok(Resumed::Pending(payment)),
    }
}

/// The refund as stored now.
async fn stored(services: &Services, refund: &Refund) -> Result<Refund, ApiError> {
    Ok(services
        .store
        .refund(refund.payment_id, refund.refund_id)
        .await?
        .unwrap_or_else(|| refund.clone()))
}

/// Sends a reserved refund and records what the provider said.
async fn send(
    services: &Services,
    reserved: Payment,
    refund: Refund,
) -> Result<RefundResult, ApiError> {
    let answer = match services.gateway(reserved.provider).await {
        Ok(g) => {
            g.refund(&reserved, refund.amount, &refund.refund_id.to_string())
                .await
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok(()) => {
            let done = finalize(services, reserved, &refund).await?;
            tracing::info!(payment_id = %done.id, refund_id = %refund.refund_id, amount = refund.amount.minor(), "refund done");
            crate::telemetry::refund_outcome("done");
            Ok(RefundResult::Done(done))
        }
        Err(e) if e.outcome_unknown() => {
            tracing::warn!(payment_id = %reserved.id, refund_id = %refund.refund_id, error = %e, "refund sent but its outcome is unknown; it stays pending");
            crate::telemetry::refund_outcome("unknown");
            let now = OffsetDateTime::now_utc();
            services
                .store
                .note_refund_error(&refund, &e.to_string(), now)
                .await?;
            Ok(RefundResult::Pending(reserved))
        }
        Err(e) => {
            crate::telemetry::refund_outcome("refused");
            release(services, reserved, &refund, &e).await?;
            Err(provider_error(&e))
        }
    }
}

/// The provider made the refund: the reservation becomes a refund and the
/// record `succeeded`, in one transaction.
async fn finalize(
    services: &Services,
    reserved: Payment,
    refund: &Refund,
) -> Result<Payment, ApiError> {
    Ok(
        finalize_by(services, reserved, refund, ChangeSource::Api, None)
            .await?
            .0,
    )
}

/// Records the refund as made, as `source` (and `by`, an operator and
/// their reason). Also whether this call recorded it (`false`: someone
/// else settled it first).
async fn finalize_by(
    services: &Services,
    reserved: Payment,
    refund: &Refund,
    source: ChangeSource,
    by: Option<(String, String)>,
) -> Result<(Payment, bool), ApiError> {
    let amount = refund.amount;
    let mut current = reserved;
    for _ in 0..5 {
        let refunded = current
            .refunded_amount
            .checked_add(amount)
            .map_err(|e| invalid("invalid_amount", e.to_string()))?;
        let mut change = StatusChange::new(
            if refunded == current.paid() {
                PaymentStatus::Refunded
            } else {
                PaymentStatus::PartiallyRefunded
            },
            source,
            OffsetDateTime::now_utc(),
        );
        change.by = by.clone();
        change.action = by.is_some().then_some("mark_refunded");
        change.refunded_amount = Some(refunded);
        change.refund_pending = Some(
            current
                .refund_pending()
                .checked_sub(amount)
                .unwrap_or(Money::zero(current.amount.currency())),
        );
        let settle =
            services
                .store
                .refund_settle_write(refund, RefundStatus::Succeeded, change.at)?;
        let told = services.store.maybe_event_write(Some(Event::of_refund(
            &current,
            refund,
            RefundStatus::Succeeded,
            change.at,
        )))?;
        match services
            .store
            .transition(&current, change, [settle].into_iter().chain(told).collect())
            .await
        {
            Ok(TransitionOutcome::Applied(p)) => return Ok((p, true)),
            // Another refund finished in between: apply ours to what it left.
            Ok(TransitionOutcome::Stale { current: p }) => current = p,
            // Settled by someone else (a concurrent retry, reconcile).
            Err(StoreError::Refused(ItemKind::Refund)) => {
                return Ok((reread(services, &current).await?, false))
            }
            Ok(other) => {
                // Ids and states only: the payment carries the payer's
                // contact and the provider's tokens.
                let (outcome, found) = match &other {
                    TransitionOutcome::AlreadyInState(p) => ("already_in_state", p.status),
                    TransitionOutcome::Rejected { current } => ("rejected", current.status),
                    TransitionOutcome::Applied(p) | TransitionOutcome::Stale { current: p } => {
                        ("unexpected", p.status)
                    }
                };
                tracing::error!(payment_id = %current.id, refund_id = %refund.refund_id, outcome, status = %found, "refund done at the provider but not recorded");
                return Err(ApiError::internal(&"refund not recorded"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal(&"refund not recorded after retries"))
}

/// The wallet entry (hold or reversal) that goes with a refund's move, if
/// the payment credited a wallet.
fn wallet_writes(
    services: &Services,
    payment: &Payment,
    purpose: LedgerPurpose,
    amount: Money,
    at: OffsetDateTime,
    memo: String,
) -> Result<Vec<crate::store::Write>, StoreError> {
    let Some(user) = &payment.wallet_user_id else {
        return Ok(Vec::new());
    };
    Ok(services
        .store
        .ledger_writes(&LedgerEntry {
            merchant: payment.merchant_id.clone(),
            user: user.clone(),
            payment_id: payment.id,
            purpose,
            amount,
            at,
            memo,
        })?
        .to_vec())
}

/// The provider said no: the pending total goes down, the wallet hold is
/// credited back and the record is `failed`, in one transaction.
async fn release(
    services: &Services,
    reserved: Payment,
    refund: &Refund,
    error: &ProviderError,
) -> Result<(), ApiError> {
    let cause = if let ProviderError::Rejected { code, message, .. } = error {
        (code.clone(), message.clone())
    } else {
        ("not_sent".to_string(), error.to_string())
    };
    release_for(services, reserved, refund, cause, None).await?;
    Ok(())
}

/// Releases the reservation for `cause` (code, message), with `note` (an
/// operator's decision) in the payment's history; whether this call
/// released it (`false`: someone else settled it first).
async fn release_for(
    services: &Services,
    reserved: Payment,
    refund: &Refund,
    cause: (String, String),
    note: Option<crate::payment::HistoryEntry>,
) -> Result<bool, ApiError> {
    let mut failed = refund.clone();
    failed.provider_code = Some(cause.0);
    failed.provider_message = Some(cause.1);
    let mut current = reserved;
    for _ in 0..5 {
        let now = OffsetDateTime::now_utc();
        let mut writes = wallet_writes(
            services,
            &current,
            LedgerPurpose::RefundReversal(refund.refund_id),
            refund.amount,
            now,
            format!("refund {} refused by the provider", refund.refund_id),
        )?;
        writes.push(
            services
                .store
                .refund_settle_write(&failed, RefundStatus::Failed, now)?,
        );
        writes.extend(services.store.maybe_event_write(Some(Event::of_refund(
            &current,
            &failed,
            RefundStatus::Failed,
            now,
        )))?);
        let pending = current
            .refund_pending()
            .checked_sub(refund.amount)
            .unwrap_or(Money::zero(current.amount.currency()));
        match services
            .store
            .set_refund_pending(&current, pending, writes, note.as_ref())
            .await?
        {
            ReserveOutcome::Done(_) => return Ok(true),
            ReserveOutcome::Stale { current: p } => current = p,
            // Settled by someone else meanwhile.
            ReserveOutcome::Refused(ItemKind::Refund | ItemKind::LedgerEntry) => return Ok(false),
            ReserveOutcome::Refused(what) => return Err(ApiError::internal(&what)),
        }
    }
    Err(ApiError::internal(&"refund reservation not released"))
}

/// An operator's decision on a pending refund, after checking with the
/// provider: made (`refunded`: recorded, the hold becomes the refund) or
/// not (the hold goes back to the wallet). A conditional write on the
/// refund still being pending: of two operators at once, one decides and
/// the other gets 409 with the state it found.
pub async fn mark(
    services: &Services,
    payment: Payment,
    refund: Refund,
    refunded: bool,
    by: (String, String),
) -> Result<Payment, ApiError> {
    let settled = |r: &Refund| {
        ApiError::new(
            lambda_http::http::StatusCode::CONFLICT,
            "invalid_state",
            format!("the refund is {} already", r.status.as_str()),
        )
    };
    if refund.status != RefundStatus::Pending {
        return Err(settled(&refund));
    }
    let (payment, applied) = if refunded {
        finalize_by(services, payment, &refund, ChangeSource::Operator, Some(by)).await?
    } else {
        let (who, why) = by;
        let cause = ("operator".to_string(), format!("{who}: {why}"));
        let note = crate::payment::HistoryEntry {
            status: payment.status,
            at: OffsetDateTime::now_utc(),
            source: ChangeSource::Operator,
            by: Some(who),
            reason: Some(why),
            action: Some("mark_not_refunded".into()),
        };
        let applied = release_for(services, payment.clone(), &refund, cause, Some(note)).await?;
        (reread(services, &payment).await?, applied)
    };
    if !applied {
        return Err(settled(&stored(services, &refund).await?));
    }
    crate::telemetry::operator_action(if refunded {
        "mark_refunded"
    } else {
        "mark_not_refunded"
    });
    Ok(payment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PaymentId;
    use crate::money::Currency;
    use crate::payment::Provider;

    fn kzt(minor: i64) -> Money {
        Money::new(minor, Currency::Kzt).unwrap()
    }

    fn paid(amount: i64, refunded: i64, pending: i64) -> Payment {
        let mut p = Payment::sample(Provider::Epayment, kzt(amount));
        p.status = PaymentStatus::Completed;
        p.refunded_amount = kzt(refunded);
        p.refund_pending = Some(kzt(pending));
        p
    }

    fn refund_of(p: &Payment, amount: i64) -> Refund {
        Refund::new(
            p.id,
            ulid::Ulid::new(),
            kzt(amount),
            false,
            OffsetDateTime::now_utc(),
        )
    }

    #[test]
    fn one_request_names_one_refund() {
        let m: MerchantId = "m_one".parse().unwrap();
        let other: MerchantId = "m_two".parse().unwrap();
        let p = PaymentId::generate();
        let k: IdempotencyKey = "key-1".parse().unwrap();
        let k2: IdempotencyKey = "key-2".parse().unwrap();
        assert_eq!(refund_id(&m, p, &k, 0), refund_id(&m, p, &k, 0));
        assert_ne!(refund_id(&m, p, &k, 0), refund_id(&m, p, &k, 1));
        assert_ne!(refund_id(&m, p, &k, 0), refund_id(&m, p, &k2, 0));
        assert_ne!(refund_id(&m, p, &k, 0), refund_id(&other, p, &k, 0));
        assert_ne!(
            refund_id(&m, p, &k, 0),
            refund_id(&m, PaymentId::generate(), &k, 0)
        );
    }

    #[test]
    fn a_total_proves_a_lone_refund_either_way() {
        let p = paid(500_040, 0, 300_000);
        let r = refund_of(&p, 300_000);
        let total = |m| ProviderRefunds::Total(kzt(m));
        assert_eq!(judge(&p, &r, &total(300_000)), Judgement::Done);
        assert_eq!(judge(&p, &r, &total(0)), Judgement::NotDone);
        assert_eq!(judge(&p, &r, &total(100)), Judgement::Unknown);
        // After an earlier refund of 100,000 that we recorded.
        let p = paid(500_040, 100_000, 300_000);
        assert_eq!(judge(&p, &r, &total(400_000)), Judgement::Done);
        assert_eq!(judge(&p, &r, &total(100_000)), Judgement::NotDone);
    }

    #[test]
    fn two_refunds_in_flight_cannot_be_told_apart() {
        let p = paid(500_040, 0, 400_000);
        let r = refund_of(&p, 300_000);
        assert_eq!(
            judge(&p, &r, &ProviderRefunds::Total(kzt(300_000))),
            Judgement::Unknown
        );
    }

    #[test]
    fn a_status_without_amounts_proves_only_whole_refunds() {
        // The whole payment: REFUND proves it, CHARGE disproves it.
        let p = paid(500_040, 0, 500_040);
        let r = refund_of(&p, 500_040);
        assert_eq!(judge(&p, &r, &ProviderRefunds::Whole), Judgement::Done);
        assert_eq!(
            judge(&p, &r, &ProviderRefunds::NotWhole),
            Judgement::NotDone
        );
        // A part: a partial refund leaves CHARGE, so nothing is proven.
        let p = paid(500_040, 0, 300_000);
        let r = refund_of(&p, 300_000);
        assert_eq!(
            judge(&p, &r, &ProviderRefunds::NotWhole),
            Judgement::Unknown
        );
        assert_eq!(judge(&p, &r, &ProviderRefunds::Whole), Judgement::Unknown);
    }

    #[test]
    fn a_refund_completing_a_payment_after_parts_is_proven_by_no_status() {
        // 200,000 refunded before; this 300,040 takes the rest. The bank's
        // status after partial refunds is documented nowhere: CHARGE may
        // stay, REFUND may show after the first part.
        let p = paid(500_040, 200_000, 300_040);
        let r = refund_of(&p, 300_040);
        for theirs in [ProviderRefunds::NotWhole, ProviderRefunds::Whole] {
            assert_eq!(judge(&p, &r, &theirs), Judgement::Unknown, "{theirs:?}");
        }
    }
}
