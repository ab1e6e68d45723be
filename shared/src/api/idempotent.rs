//! `Idempotency-Key` for every POST, with API.md's answers: the first
//! response replayed (with `Idempotent-Replayed: true`) for a repeat, 422
//! `idempotency_key_reused` for another request under the same key, 409
//! `idempotency_in_progress` while the first still runs. Only successful
//! responses are kept; after an error the key is free again, and after a
//! 202 (work whose outcome is not known yet, a refund whose answer was
//! lost) too, so that a retry with the key resumes the same work.

use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use time::OffsetDateTime;

use crate::ids::{IdempotencyKey, MerchantId};
use crate::responses::ApiError;
use crate::services::Services;
use crate::store::{fingerprint, BeginOutcome, IdempotencyScope, StoredResponse};

/// How long a key is remembered.
const KEEP: time::Duration = time::Duration::hours(24);

/// A key this invocation owns.
pub(crate) struct Claim {
    scope: IdempotencyScope,
    key: IdempotencyKey,
    token: String,
}

impl Claim {
    /// The request's Idempotency-Key.
    pub(crate) fn key(&self) -> &IdempotencyKey {
        &self.key
    }
}

pub(crate) enum Begun {
    /// Do the work, then [`finish`].
    Run(Claim),
    /// Answer with this (a replay).
    Answer(Response<Body>),
}

/// The request's key, refused when missing or malformed: a malformed
/// header is 400 whatever the body says, so every POST checks it first.
pub(crate) fn key(req: &Request) -> Result<IdempotencyKey, ApiError> {
    let invalid = |why: String| ApiError::bad_request("idempotency_key_invalid", why);
    let value = req.headers().get("idempotency-key").ok_or_else(|| {
        ApiError::bad_request(
            "idempotency_key_missing",
            "POST needs an Idempotency-Key header",
        )
    })?;
    value
        .to_str()
        .map_err(|_| invalid("Idempotency-Key must be visible ASCII".into()))?
        .parse()
        .map_err(|e: crate::ids::IdError| invalid(e.to_string()))
}

/// Claims the request's key for `operation`; `request` is what identifies
/// the request (its body, and the path where it names a payment).
pub(crate) async fn begin(
    services: &Services,
    req: &Request,
    merchant: &MerchantId,
    operation: &'static str,
    request: &serde_json::Value,
) -> Result<Begun, ApiError> {
    let key = key(req)?;
    let scope = IdempotencyScope {
        merchant: merchant.clone(),
        operation,
    };
    let hash = fingerprint(operation, request);
    let now = OffsetDateTime::now_utc();
    let deadline = deadline(req, now);
    match services
        .store
        .begin_idempotent(&scope, &key, &hash, now, deadline, now + KEEP)
        .await?
    {
        BeginOutcome::New { token } => Ok(Begun::Run(Claim { scope, key, token })),
        BeginOutcome::Replay(stored) => Ok(Begun::Answer(replay(stored))),
        BeginOutcome::InProgress => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still running",
        )),
        BeginOutcome::Mismatch => Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        )),
    }
}

/// Until when this invocation may run: its Lambda deadline (30 s from
/// `now` where it has none). A claim it makes lapses then.
pub(crate) fn deadline(req: &Request, now: OffsetDateTime) -> OffsetDateTime {
    req.lambda_context_ref()
        .and_then(|ctx| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ctx.deadline) * 1_000_000).ok()
        })
        .unwrap_or(now + time::Duration::seconds(30))
}

/// Keeps a successful response for replay, or frees the key after an error.
pub(crate) async fn finish(
    services: &Services,
    claim: Claim,
    result: Result<Response<Body>, ApiError>,
) -> Result<Response<Body>, ApiError> {
    finish_keeping(services, claim, result, <[u8]>::to_vec).await
}

/// As [`finish`], keeping `kept(body)` for replay instead of the body
/// itself (an answer with a secret keeps what derives it again).
pub(crate) async fn finish_keeping(
    services: &Services,
    claim: Claim,
    result: Result<Response<Body>, ApiError>,
    kept: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<Response<Body>, ApiError> {
    match result {
        Ok(response) if response.status() == StatusCode::ACCEPTED => {
            services
                .store
                .release_idempotent(&claim.scope, &claim.key, &claim.token)
                .await?;
            Ok(response)
        }
        Ok(response) => {
            let stored = stored(&response, kept);
            if let Err(e) = services
                .store
                .complete_idempotent(&claim.scope, &claim.key, &claim.token, &stored)
                .await
            {
                tracing::error!(error = %e, "could not store the idempotent response");
            }
            Ok(response)
        }
        Err(e) => {
            services
                .store
                .release_idempotent(&claim.scope, &claim.key, &claim.token)
                .await?;
            Err(e)
        }
    }
}

/// What a replay of `response` sends: its status, its JSON content type
/// and `kept(body)`.
fn stored(response: &Response<Body>, kept: impl FnOnce(&[u8]) -> Vec<u8>) -> StoredResponse {
    StoredResponse {
        status: response.status().as_u16(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: kept(response.body().as_ref()),
    }
}

/// The write that keeps `response` for replay, for the work to commit in
/// its own transaction; once it has, the run is finished (no [`finish`]).
pub(crate) fn keep_write(
    services: &Services,
    claim: &Claim,
    response: &Response<Body>,
) -> Result<crate::store::Write, ApiError> {
    Ok(services.store.complete_idempotent_write(
        &claim.scope,
        &claim.key,
        &claim.token,
        &stored(response, <[u8]>::to_vec),
    )?)
}

fn replay(stored: StoredResponse) -> Response<Body> {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            lambda_http::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}
