//! `POST /v1/payments`, `GET /v1/payments/{id}`, `GET /v1/payments?reference=`
//! (and hands the listing without a reference to `listing`).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::idempotent::{self, Begun};
use super::{handled, note_payment, PaymentView};
use crate::ids::{CasinoUsername, MerchantReference, PageToken, PaymentId, WalletUserId};
use crate::money::{Currency, Money};
use crate::providers::registry::describe;
use crate::responses::{self, ApiError};

use crate::payment::{
    ChangeSource, Checkout, Customer, NewPayment, Payment, PaymentStatus, Provider,
};
use crate::providers::{CreateRequest, ProviderError};
use crate::services::Services;
use crate::store::{ReferenceHolder, REFERENCE_LAPSE};

/// How often a pending payment's reader may ask the provider.
const POLL_INTERVAL: time::Duration = time::Duration::seconds(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    provider: String,
    amount: i64,
    currency: String,
    reference: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    customer: Option<Customer>,
    #[serde(default)]
    return_url: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    wallet_user_id: Option<String>,
    #[serde(default)]
    casino: Option<CasinoTarget>,
    /// Seconds until the payment expires (the deployment's default when
    /// absent), within what its provider allows.
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasinoTarget {
    username: String,
}

/// A create request that passed validation.
struct Valid {
    provider: Provider,
    amount: Money,
    reference: MerchantReference,
    description: Option<String>,
    customer: Customer,
    return_url: Option<String>,
    method: Option<String>,
    wallet_user_id: Option<WalletUserId>,
    casino_username: Option<CasinoUsername>,
    expires_in: Option<time::Duration>,
}

/// The shortest `expires_in` a create takes: less would expire a payment
/// before its payer could open the page.
pub const SHORTEST_EXPIRY_SECONDS: i64 = 60;

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(code, message)
}

/// `loopback_http`: whether `http://` return URLs on this machine are taken
/// (only where paygate itself runs on loopback, as under `make dev`).
fn validate(body: CreateBody, loopback_http: bool) -> Result<Valid, ApiError> {
    let provider: Provider =
        body.provider
            .parse()
            .map_err(|e: crate::payment::UnknownProvider| {
                invalid("unsupported_provider", e.to_string())
            })?;
    let currency: Currency = body
        .currency
        .parse()
        .map_err(|e: crate::money::MoneyError| invalid("unsupported_currency", e.to_string()))?;
    if body.amount <= 0 {
        return Err(invalid(
            "invalid_amount",
            "amount must be a positive number of minor units",
        ));
    }
    let amount =
        Money::new(body.amount, currency).map_err(|e| invalid("invalid_amount", e.to_string()))?;
    if !describe(provider).currencies.contains(&currency) {
        return Err(invalid(
            "unsupported_currency",
            format!("{provider} does not take {currency}"),
        ));
    }
    let reference = body
        .reference
        .parse()
        .map_err(|e: crate::ids::IdError| invalid("invalid_reference", e.to_string()))?;
    let wallet_user_id = body
        .wallet_user_id
        .map(|w| w.parse())
        .transpose()
        .map_err(|e: crate::ids::IdError| invalid("invalid_wallet_user_id", e.to_string()))?;
    let casino_username = match body.casino {
        None => None,
        Some(c) => {
            if currency != Currency::Php {
                return Err(invalid(
                    "casino_requires_php",
                    "a casino top-up is for PHP payments only",
                ));
            }
            if wallet_user_id.is_none() {
                return Err(invalid(
                    "casino_requires_wallet",
                    "a casino top-up needs wallet_user_id",
                ));
            }
            Some(c.username.parse().map_err(|e: crate::ids::IdError| {
                invalid("invalid_casino_username", e.to_string())
            })?)
        }
    };
    let short = |field: &'static str, value: Option<String>, max: usize| match value {
        Some(v) if v.chars().count() > max => Err(invalid(
            "invalid_field",
            format!("{field} is longer than {max} characters"),
        )),
        other => Ok(other),
    };
    // A provider's smallest payment is refused here, before any call.
    let minimum = describe(provider).minimum_amount;
    if amount.minor() < minimum {
        let least = Money::new(minimum, currency)
            .map_or_else(|_| minimum.to_string(), |m| m.to_major_string());
        return Err(invalid(
            "amount_below_minimum",
            format!("{provider} takes at least {minimum} minor units ({currency} {least})"),
        ));
    }
    let return_url = short("return_url", body.return_url, 2048)?;
    if let Some(url) = &return_url {
        check_return_url(url, loopback_http)?;
    }
    let customer = body.customer.unwrap_or_default();
    check_customer(&customer, provider)?;
    let longest = describe(provider).longest_expiry.whole_seconds();
    let expires_in = match body.expires_in {
        Some(s) if !(SHORTEST_EXPIRY_SECONDS..=longest).contains(&s) => {
            return Err(invalid(
                "invalid_expires_in",
                format!(
                "expires_in must be {SHORTEST_EXPIRY_SECONDS} to {longest} seconds for {provider}"
            ),
            )
            .with_details(serde_json::json!({"field": "expires_in"})))
        }
        other => other.map(time::Duration::seconds),
    };
    Ok(Valid {
        provider,
        amount,
        reference,
        description: short("description", body.description, 255)?,
        customer,
        return_url,
        method: short("method", body.method, 32)?,
        wallet_user_id,
        casino_username,
        expires_in,
    })
}

/// Where the payer goes once the payment is final: an absolute `https` URL
/// with a host and no credentials; `http` only on loopback under `make dev`.
fn check_return_url(text: &str, loopback_http: bool) -> Result<(), ApiError> {
    let refused = |why: &str| {
        Err(invalid("invalid_return_url", format!("return_url {why}"))
            .with_details(serde_json::json!({"field": "return_url"})))
    };
    let Ok(url) = url::Url::parse(text) else {
        return refused("is not an absolute URL");
    };
    if url.host().is_none() {
        return refused("has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refused("must not carry credentials");
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback_http && crate::services::loopback(&url) => Ok(()),
        "http" if loopback_http => refused("must be https (http only on this machine)"),
        _ => refused("must be https"),
    }
}

/// A customer field refused, named in the message and in `details.field`.
fn bad_customer(field: &'static str, why: &str) -> ApiError {
    invalid("invalid_customer", format!("customer.{field} {why}"))
        .with_details(serde_json::json!({"field": format!("customer.{field}")}))
}

/// An e-mail address as providers take it: one `@`, a local part, a domain
/// of at least two dot-separated labels, no spaces.
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let labels: Vec<&str> = domain.split('.').collect();
    text.len() <= 200
        && !local.is_empty()
        && !domain.contains('@')
        && labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty())
        && text.chars().all(|c| c.is_ascii_graphic())
}

/// A phone number: an optional `+`, then 7 to 15 digits, with spaces,
/// dashes or brackets between them if the merchant likes.
fn is_phone(text: &str) -> bool {
    let rest = text.strip_prefix('+').unwrap_or(text);
    let digits = rest.chars().filter(char::is_ascii_digit).count();
    rest.chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')'))
        && (7..=15).contains(&digits)
}

/// The customer's fields, checked before any provider sees them.
/// Some providers need an e-mail and a phone (ToyyibPay's bill).
fn check_customer(customer: &Customer, provider: Provider) -> Result<(), ApiError> {
    if customer
        .name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 200)
    {
        return Err(bad_customer("name", "is longer than 200 characters"));
    }
    match &customer.email {
        Some(e) if !is_email(e) => return Err(bad_customer("email", "is not an e-mail address")),
        None if describe(provider).needs_contact => {
            return Err(bad_customer(
                "email",
                &format!("is required for {provider}"),
            ))
        }
        _ => {}
    }
    match &customer.phone {
        Some(p) if !is_phone(p) => {
            return Err(bad_customer(
                "phone",
                "is not a phone number (+ and 7 to 15 digits)",
            ))
        }
        None if describe(provider).needs_contact => {
            return Err(bad_customer(
                "phone",
                &format!("is required for {provider}"),
            ))
        }
        _ => {}
    }
    Ok(())
}

fn provider_error(e: &ProviderError) -> ApiError {
    crate::refunds::provider_error(e)
}

/// `POST /v1/payments`.
pub async fn create(services: &Services, req: Request) -> Response<Body> {
    let request_id = responses::request_id(&req);
    handled("create_payment", &request_id, create_inner(services, &req)).await
}

async fn create_inner(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    let key = idempotent::key(req)?;
    let raw: serde_json::Value = responses::json_body(req)?;
    let body: CreateBody = serde_json::from_value(raw.clone()).map_err(|e| {
        ApiError::bad_request(
            "malformed_body",
            e.to_string().chars().take(300).collect::<String>(),
        )
    })?;
    let valid = validate(body, services.settings.local_return_urls())?;
    let id = PaymentId::generate();
    let now = OffsetDateTime::now_utc();
    let until = idempotent::deadline(req, now);
    // The key's claim and the reference's claim side by side, both before
    // the provider is called (decision 59): a retried create never makes a
    // second invoice, and two creates racing for one reference make one.
    let (begun, held) = tokio::join!(
        idempotent::begin(services, req, &merchant, "create_payment", &raw),
        services
            .store
            .claim_reference(&merchant, &valid.reference, id, key.as_str(), until)
    );
    let claim = match begun {
        Ok(Begun::Run(claim)) => claim,
        answered => {
            // A replay, a key in use or refused: the reference claim, if
            // this run took it, goes back.
            if matches!(held, Ok(None)) {
                give_back(services, &merchant, &valid.reference, id).await;
            }
            return match answered? {
                Begun::Answer(response) => Ok(response),
                Begun::Run(_) => Err(ApiError::internal(&"a run answered twice")),
            };
        }
    };
    let reference = valid.reference.clone();
    let result = match held {
        Err(e) => Err(Failed::before(e.into())),
        Ok(None) => create_payment(services, &merchant, valid, id, now, &claim).await,
        Ok(Some(holder)) => {
            match retake(
                services,
                &merchant,
                &reference,
                &holder,
                id,
                key.as_str(),
                until,
            )
            .await
            {
                Ok(true) => create_payment(services, &merchant, valid, id, now, &claim).await,
                Ok(false) => Err(Failed::not_taken(duplicate_reference(holder.payment))),
                Err(e) => Err(Failed::not_taken(e)),
            }
        }
    };
    match result {
        // Kept for replay in the payment's own transaction.
        Ok(response) => Ok(response),
        Err(failed) => {
            if failed.release_reference {
                give_back(services, &merchant, &reference, id).await;
            }
            idempotent::finish(services, claim, Err(failed.error)).await
        }
    }
}

/// Gives back the reference claim payment `id`'s create took. One that
/// cannot be given back now stays held until a retry with the key takes
/// it over, or until it lapses ([`REFERENCE_LAPSE`]); the answer is the
/// create's own.
async fn give_back(
    services: &Services,
    merchant: &crate::ids::MerchantId,
    reference: &crate::ids::MerchantReference,
    id: PaymentId,
) {
    if let Err(e) = services
        .store
        .release_reference(merchant, reference, id)
        .await
    {
        tracing::warn!(payment_id = %id, error = %e, "the reference claim could not be given back; it lapses");
    }
}

fn duplicate_reference(existing: PaymentId) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "duplicate_reference",
        format!("payment {existing} already has this reference"),
    )
}

/// Whether a create that found `reference` held may take it: the holder
/// is an earlier run of the same request (this run owns its key now, so
/// that run can no longer store its payment), or a create that ended
/// [`REFERENCE_LAPSE`] ago without storing its payment. `true`: taken.
async fn retake(
    services: &Services,
    merchant: &crate::ids::MerchantId,
    reference: &crate::ids::MerchantReference,
    holder: &ReferenceHolder,
    id: PaymentId,
    key: &str,
    until: OffsetDateTime,
) -> Result<bool, ApiError> {
    let now = OffsetDateTime::now_utc();
    let same_request = holder.key.as_deref() == Some(key);
    let lapsed = holder.until.is_some_and(|u| u + REFERENCE_LAPSE < now);
    if !(same_request || lapsed) {
        return Ok(false);
    }
    if services.store.payment(holder.payment).await?.is_some() {
        return Ok(false);
    }
    Ok(services
        .store
        .retake_reference(merchant, reference, holder, id, key, until)
        .await?)
}

/// Why a create failed, and whether its reference claim goes back: not
/// once its payment may have been stored (a store error leaves that
/// unknown; a retry with the key finds the payment or retakes the claim),
/// nor when this run never held it.
struct Failed {
    error: ApiError,
    release_reference: bool,
}

impl Failed {
    /// Before the payment was written: the claim goes back.
    fn before(error: ApiError) -> Failed {
        Failed {
            error,
            release_reference: true,
        }
    }

    /// The claim stays (the payment may exist, or it is not this run's).
    fn not_taken(error: ApiError) -> Failed {
        Failed {
            error,
            release_reference: false,
        }
    }
}

impl<E: Into<ApiError>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed::before(e.into())
    }
}

/// Creates payment `id` at its provider and stores it, its reference
/// claimed and the idempotency record `claim` completed with the answer
/// in the payment's own transaction.
async fn create_payment(
    services: &Services,
    merchant: &crate::ids::MerchantId,
    valid: Valid,
    id: PaymentId,
    now: OffsetDateTime,
    claim: &idempotent::Claim,
) -> Result<Response<Body>, Failed> {
    let gateway = services
        .gateway(valid.provider)
        .await
        .map_err(|e| Failed::before(provider_error(&e)))?;
    let webhook_url = services.webhook_url(valid.provider);
    // The payer's page; providers that send the payer back send them there,
    // and the page forwards to the merchant's return_url once it is final.
    let page_token = PageToken::generate_for(id);
    let page_url = page_token.as_ref().map(|t| services.page_url(t));
    let sequence = if describe(valid.provider).needs_sequence {
        let counter = services
            .store
            .next_in_sequence(valid.provider.as_str())
            .await?;
        Some(
            crate::services::allocated(counter, services.settings.namespace).ok_or_else(|| {
                Failed::before(ApiError::internal(&"the provider's sequence ran out"))
            })?,
        )
    } else {
        None
    };
    let wanted_expiry = now + valid.expires_in.unwrap_or(services.settings.payment_ttl);
    let created = gateway
        .create(&CreateRequest {
            payment_id: id,
            amount: valid.amount,
            description: valid.description.as_deref(),
            customer: &valid.customer,
            return_url: page_url.as_deref().or(valid.return_url.as_deref()),
            method: valid.method.as_deref(),
            webhook_url: &webhook_url,
            sequence,
            expires_at: wanted_expiry,
        })
        .await
        .map_err(|e| Failed::before(provider_error(&e)))?;
    let payment = Payment::new(
        NewPayment {
            id,
            merchant_id: merchant.clone(),
            provider: valid.provider,
            amount: valid.amount,
            reference: valid.reference,
            description: valid.description,
            customer: valid.customer,
            return_url: valid.return_url,
            method: valid.method,
            wallet_user_id: valid.wallet_user_id,
            casino_username: valid.casino_username,
            provider_reference: Some(created.provider_reference),
            checkout: Checkout {
                page_url,
                ..created.checkout
            },
            page_token,
            // The merchant's expiry, or the deployment's; a provider's own
            // earlier one wins over the merchant's.
            expires_at: match (valid.expires_in, created.expires_at) {
                (Some(_), Some(theirs)) => theirs.min(wanted_expiry),
                (None, Some(theirs)) => theirs,
                (_, None) => wanted_expiry,
            },
        },
        ChangeSource::Api,
        now,
    );
    note_payment(&payment);
    let response = responses::json(StatusCode::CREATED, &PaymentView::of(&payment, None));
    let keep = idempotent::keep_write(services, claim, &response)?;
    match services.store.create_claimed_payment(&payment, keep).await {
        Ok(_) => {
            tracing::info!(amount = payment.amount.minor(), currency = %payment.amount.currency(), "payment created");
            crate::telemetry::payment_created(payment.provider.as_str());
            Ok(response)
        }
        Err(e) => {
            // Past its deadline a retry took the key (and the reference):
            // this run's invoice is left unpaid. Or the write's outcome is
            // unknown: the claim stays for the retry to settle.
            tracing::warn!(payment_id = %id, error = %e, "the payment was not stored; its invoice is left unpaid");
            Err(Failed::not_taken(e.into()))
        }
    }
}

/// `GET /v1/payments/{id}`: asks the provider first when the payment is
/// pending and was last checked more than 10 seconds ago.
/// `api-get-payment`'s two routes: one payment by id, or the list by
/// merchant reference.
pub async fn read(services: &Services, req: Request) -> Response<Body> {
    if req.path_parameters().first("id").is_some() {
        get(services, req).await
    } else {
        list(services, req).await
    }
}

pub async fn get(services: &Services, req: Request) -> Response<Body> {
    let request_id = responses::request_id(&req);
    handled("get_payment", &request_id, get_inner(services, &req)).await
}

async fn get_inner(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    let payment = merchant_payment(services, req, &merchant).await?;
    let payment = refresh(services, payment).await;
    let topup = match payment.casino_username {
        Some(_) => services.store.topup(payment.id).await?,
        None => None,
    };
    let view = PaymentView::of(&payment, topup.as_ref())
        .complete(services, &payment)
        .await?;
    Ok(responses::json(StatusCode::OK, &view))
}

/// Asks the provider about a pending payment (at most every 10 seconds) and
/// applies the answer. A provider that does not answer leaves the payment
/// as stored.
pub async fn refresh(services: &Services, payment: Payment) -> Payment {
    let now = OffsetDateTime::now_utc();
    let due = payment
        .provider_checked_at
        .is_none_or(|at| now - at > POLL_INTERVAL);
    if payment.status != PaymentStatus::Pending || !due {
        return payment;
    }
    // Many readers at once (or a reader racing a callback) ask once.
    // The claim records the time of the question too.
    match services
        .store
        .claim_poll(payment.id, now, POLL_INTERVAL)
        .await
    {
        Ok(true) => {}
        Ok(false) => return payment,
        Err(e) => {
            tracing::warn!(payment_id = %payment.id, error = %e, "could not claim the provider check");
            return payment;
        }
    }
    let confirmation = match super::ask(services, &payment)
        .await
        .map(crate::flow::Asked::or_pending)
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(payment_id = %payment.id, error = %e, "provider status check failed");
            return payment;
        }
    };
    let applied = crate::flow::apply_confirmation(
        crate::flow::Books::of(services),
        &payment,
        &confirmation,
        ChangeSource::Poll,
        vec![],
    )
    .await;
    // A move records the provider's word itself; otherwise it is written
    // only when it is new (a payer's page polling a pending payment writes
    // its claim and nothing else).
    let recorded = matches!(applied, Ok(crate::flow::Applied::Moved(_)))
        || payment.provider_status.as_deref() == Some(confirmation.provider_status.as_str());
    if !recorded {
        if let Err(e) = services
            .store
            .mark_provider_checked(payment.id, now, Some(&confirmation.provider_status))
            .await
        {
            tracing::warn!(payment_id = %payment.id, error = %e, "could not record the provider check");
        }
    }
    match applied {
        Ok(applied) => {
            let mut p = applied.payment().clone();
            p.provider_checked_at = Some(now);
            p.provider_status = Some(confirmation.provider_status);
            p
        }
        Err(e) => {
            tracing::error!(payment_id = %payment.id, error = %e, "could not apply the provider's answer");
            payment
        }
    }
}

#[derive(Serialize)]
struct List {
    data: Vec<PaymentView>,
}

/// `GET /v1/payments?reference=`, or the listing's page.
pub async fn list(services: &Services, req: Request) -> Response<Body> {
    let request_id = responses::request_id(&req);
    handled("list_payments", &request_id, list_inner(services, &req)).await
}

async fn list_inner(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let query = req.query_string_parameters();
    if query.first("reference").is_none() {
        return super::listing::page(services, req).await;
    }
    let merchant = responses::merchant(req)?;
    let reference: MerchantReference = query
        .first("reference")
        .ok_or_else(|| ApiError::bad_request("missing_reference", "give ?reference="))?
        .parse()
        .map_err(|e: crate::ids::IdError| {
            ApiError::bad_request("invalid_reference", e.to_string())
        })?;
    let data = match services
        .store
        .payment_by_reference(&merchant, &reference)
        .await?
    {
        Some(p) => vec![PaymentView::of(&p, None)],
        None => vec![],
    };
    Ok(responses::json(StatusCode::OK, &List { data }))
}

/// `POST /v1/payments/{id}/cancel`: only pending payments, at providers that
/// can cancel; the provider is told first, then the payment moves.
pub async fn cancel(services: &Services, req: Request) -> Response<Body> {
    let request_id = responses::request_id(&req);
    handled("cancel_payment", &request_id, cancel_inner(services, &req)).await
}

async fn cancel_inner(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    idempotent::key(req)?;
    let payment = merchant_payment(services, req, &merchant).await?;
    // The body is optional ({"reason": ...}); it is part of the request's identity.
    let body: serde_json::Value = if req.body().as_ref().is_empty() {
        serde_json::Value::Null
    } else {
        responses::json_body(req)?
    };
    let request = serde_json::json!({"payment": payment.id.to_string(), "body": body});
    let claim =
        match idempotent::begin(services, req, &merchant, "cancel_payment", &request).await? {
            Begun::Run(claim) => claim,
            Begun::Answer(response) => return Ok(response),
        };
    let result = cancel_payment(services, payment).await;
    idempotent::finish(services, claim, result).await
}

fn invalid_state(payment: &Payment, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "invalid_state",
        format!("a {} payment cannot be {what}", payment.status),
    )
}

async fn cancel_payment(services: &Services, payment: Payment) -> Result<Response<Body>, ApiError> {
    if !describe(payment.provider).operations.cancel {
        return Err(invalid(
            "unsupported_operation",
            format!("{} payments cannot be cancelled", payment.provider),
        ));
    }
    if payment.status != PaymentStatus::Pending {
        return Err(invalid_state(&payment, "cancelled"));
    }
    let gateway = services
        .gateway(payment.provider)
        .await
        .map_err(|e| provider_error(&e))?;
    gateway
        .cancel(&payment)
        .await
        .map_err(|e| provider_error(&e))?;
    let change = crate::store::StatusChange::new(
        PaymentStatus::Cancelled,
        ChangeSource::Api,
        OffsetDateTime::now_utc(),
    );
    match services.store.transition(&payment, change, vec![]).await? {
        crate::store::TransitionOutcome::Applied(p)
        | crate::store::TransitionOutcome::AlreadyInState(p) => {
            Ok(responses::json(StatusCode::OK, &PaymentView::of(&p, None)))
        }
        // It moved while we asked the provider (paid, say): say so.
        crate::store::TransitionOutcome::Rejected { current }
        | crate::store::TransitionOutcome::Stale { current } => {
            Err(invalid_state(&current, "cancelled"))
        }
    }
}

/// The payment named by the path, if it is this merchant's.
async fn merchant_payment(
    services: &Services,
    req: &Request,
    merchant: &crate::ids::MerchantId,
) -> Result<Payment, ApiError> {
    let id: PaymentId = req
        .path_parameters()
        .first("id")
        .ok_or_else(|| ApiError::bad_request("missing_id", "the payment id is missing"))?
        .parse()
        .map_err(|_| ApiError::not_found("payment_not_found", "no such payment"))?;
    let payment = services
        .store
        .payment(id)
        .await?
        .filter(|p| &p.merchant_id == merchant)
        .ok_or_else(|| ApiError::not_found("payment_not_found", "no such payment"))?;
    note_payment(&payment);
    Ok(payment)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/payments/{id}/refund`: all of what is left, or `amount` of it.
/// The refund is reserved on the payment (and held in the wallet) before
/// the provider is asked, so concurrent refunds can never add up to more
/// than was paid; the provider's refusal gives the reservation back.
pub async fn refund(services: &Services, req: Request) -> Response<Body> {
    let request_id = responses::request_id(&req);
    handled("refund_payment", &request_id, refund_inner(services, &req)).await
}

async fn refund_inner(services: &Services, req: &Request) -> Result<Response<Body>, ApiError> {
    let merchant = responses::merchant(req)?;
    idempotent::key(req)?;
    let payment = merchant_payment(services, req, &merchant).await?;
    let raw: serde_json::Value = if req.body().as_ref().is_empty() {
        serde_json::json!({})
    } else {
        responses::json_body(req)?
    };
    let body: RefundBody = serde_json::from_value(raw.clone()).map_err(|e| {
        ApiError::bad_request(
            "malformed_body",
            e.to_string().chars().take(300).collect::<String>(),
        )
    })?;
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 255)
    {
        return Err(invalid(
            "invalid_field",
            "reason is longer than 255 characters",
        ));
    }
    let request = serde_json::json!({"payment": payment.id.to_string(), "body": raw});
    let claim =
        match idempotent::begin(services, req, &merchant, "refund_payment", &request).await? {
            Begun::Run(claim) => claim,
            Begun::Answer(response) => return Ok(response),
        };
    let result = refund_payment(services, payment, body.amount, &merchant, claim.key()).await;
    idempotent::finish(services, claim, result).await
}

async fn refund_payment(
    services: &Services,
    payment: Payment,
    requested: Option<i64>,
    merchant: &crate::ids::MerchantId,
    key: &crate::ids::IdempotencyKey,
) -> Result<Response<Body>, ApiError> {
    use crate::refunds::RefundResult;
    let (status, p) =
        match crate::refunds::request(services, payment, requested, merchant, key).await? {
            RefundResult::Done(p) => (StatusCode::OK, p),
            // Sent, answer lost: neither done nor undone. The key stays free,
            // so a retry with it resumes this refund.
            RefundResult::Pending(p) => (StatusCode::ACCEPTED, p),
        };
    let view = PaymentView::of(&p, None).complete(services, &p).await?;
    Ok(responses::json(status, &view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_urls_are_https_and_loopback_http_only_on_a_local_paygate() {
        for ok in [
            "https://shop.example.com/thanks?o=1",
            "https://[2001:db8::1]/x",
        ] {
            assert!(check_return_url(ok, false).is_ok(), "{ok}");
        }
        for local in [
            "http://127.0.0.1:8080/t",
            "http://localhost/t",
            "http://[::1]/t",
        ] {
            // In production (paygate on https) even loopback http is refused.
            assert_eq!(
                check_return_url(local, false).unwrap_err().code,
                "invalid_return_url"
            );
            assert!(check_return_url(local, true).is_ok(), "{local}");
        }
        for bad in [
            "http://shop.example.com/",
            "http://10.0.0.1/",
            "javascript:alert(1)",
            "data:text/html,x",
            "https://u:p@shop.example.com/",
            "https://",
            "shop.example.com",
        ] {
            let e = check_return_url(bad, true).unwrap_err();
            assert_eq!(e.code, "invalid_return_url", "{bad}");
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        }
    }

    #[test]
    fn emails_and_phones_are_checked() {
        for ok in ["a@example.com", "first.last+tag@sub.example.co"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@example.com",
            "a@example",
            "a@@example.com",
            "a b@example.com",
            "a@example..com",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        for ok in ["+60123456789", "012-345 6789", "(02) 8123 4567"] {
            assert!(is_phone(ok), "{ok}");
        }
        for bad in [
            "",
            "12345",
            "+6012345678901234",
            "phone",
            "+60 12 abc",
            "++60123456789",
        ] {
            assert!(!is_phone(bad), "{bad}");
        }
    }

    #[test]
    fn toyyibpay_needs_both_and_names_the_field() {
        let full = Customer {
            name: Some("Aisyah".into()),
            email: Some("a@example.com".into()),
            phone: Some("+60123456789".into()),
        };
        assert!(check_customer(&full, Provider::Toyyibpay).is_ok());
        assert!(check_customer(&Customer::default(), Provider::Directpay).is_ok());
        let no_phone = Customer {
            phone: None,
            ..full.clone()
        };
        let e = check_customer(&no_phone, Provider::Toyyibpay).unwrap_err();
        assert_eq!(e.code, "invalid_customer");
        assert!(e.message.contains("customer.phone"), "{}", e.message);
        let bad_email = Customer {
            email: Some("nope".into()),
            ..full
        };
        let e = check_customer(&bad_email, Provider::Qpay).unwrap_err();
        assert!(e.message.contains("customer.email"), "{}", e.message);
    }
}
