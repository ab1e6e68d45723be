//! Shared plumbing of the merchant API: the JSON error shape of API.md,
//! request ids, the merchant from the authorizer, body limits.

use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use crate::ids::MerchantId;

/// The largest request body API.md accepts.
pub const MAX_BODY: usize = 256 * 1024;

/// An error answer: `{"error": {"code", "message", "request_id", "details"?}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required",
        )
    }

    /// A failure of ours: the message is generic, the cause is logged.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "something went wrong on our side; it is safe to retry with the same Idempotency-Key",
        )
    }

    pub fn into_response(self, request_id: &str) -> Response<Body> {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
            request_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            details: Option<&'a serde_json::Value>,
        }
        json(
            self.status,
            &Envelope {
                error: Inner {
                    code: self.code,
                    message: &self.message,
                    request_id,
                    details: self.details.as_ref(),
                },
            },
        )
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError::internal(&e)
    }
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    typed(status, Body::from(body), "application/json")
}

/// A JSON response whose body is fixed text (a provider's expected answer).
pub fn json_text(status: StatusCode, body: &'static str) -> Response<Body> {
    typed(status, Body::from(body), "application/json")
}

/// A plain-text response (some providers expect `SUCCESS` or `ok`).
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    typed(status, Body::from(body), "text/plain; charset=utf-8")
}

fn typed(status: StatusCode, body: Body, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        lambda_http::http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

/// API Gateway's request id, or a new one when there is none (tests, local).
pub fn request_id(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    }
    .filter(|id| !id.is_empty())
    .unwrap_or_else(|| ulid::Ulid::new().to_string())
}

/// The merchant the authorizer let in (its context's `merchant_id`).
pub fn merchant(req: &Request) -> Result<MerchantId, ApiError> {
    if authorizer_field(req, "role").as_deref() == Some("operator") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "merchant_key_required",
            "this route takes a merchant's API key, not an operator's",
        ));
    }
    authorizer_field(req, "merchant_id")
        .and_then(|m| m.parse().ok())
        .ok_or_else(ApiError::unauthorized)
}

/// The operator whose key the authorizer accepted; a merchant's key is 403.
pub fn operator(req: &Request) -> Result<String, ApiError> {
    match authorizer_field(req, "role").as_deref() {
        Some("operator") => authorizer_field(req, "operator")
            .filter(|n| !n.is_empty())
            .ok_or_else(ApiError::unauthorized),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "operator_key_required",
            "this route takes an operator's API key",
        )),
        None => Err(ApiError::unauthorized()),
    }
}

/// One field of the authorizer's context.
fn authorizer_field(req: &Request, name: &str) -> Option<String> {
    let Some(RequestContext::ApiGatewayV2(ctx)) = req.request_context_ref() else {
        return None;
    };
    ctx.authorizer
        .as_ref()
        .and_then(|a| a.fields.get(name))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// The body's bytes, refused above [`MAX_BODY`].
pub fn body_bytes(req: &Request) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is over 256 KiB",
        ));
    }
    Ok(bytes)
}

/// The body parsed as JSON into `T`: 413 when too large, 400 when it is not
/// JSON of the expected shape.
pub fn json_body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(req)?;
    serde_json::from_slice(bytes).map_err(|e| {
        let message: String = e.to_string().chars().take(300).collect();
        ApiError::bad_request("malformed_body", message)
    })
}

/// An error message with every quoted value taken out (`` `...` `` and
/// `"..."` become `` `…` `` and `"…"`). Parser messages quote what they
/// could not read; from outside input that can be a card number or a
/// token, which must reach neither a log nor an answer.
pub fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None if c == '`' || c == '"' => {
                out.push(c);
                open = Some(c);
            }
            None => out.push(c),
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}

/// A header's value as text, if present and visible ASCII.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_the_api_shape() {
        let r = ApiError::unprocessable("unsupported_currency", "EUR is not supported")
            .with_details(serde_json::json!({"field": "currency"}))
            .into_response("req-1");
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: serde_json::Value = serde_json::from_slice(r.body().as_ref()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "code": "unsupported_currency",
                "message": "EUR is not supported",
                "request_id": "req-1",
                "details": {"field": "currency"}
            }})
        );
    }

    #[test]
    fn oversized_bodies_are_413_and_bad_json_400() {
        let big = Request::new(Body::from(vec![b' '; MAX_BODY + 1]));
        let err = json_body::<serde_json::Value>(&big).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        let bad = Request::new(Body::from("{not json"));
        let err = json_body::<serde_json::Value>(&bad).unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::BAD_REQUEST, "malformed_body")
        );
    }

    #[test]
    fn no_authorizer_context_is_unauthorized() {
        let req = Request::new(Body::Empty);
        assert_eq!(merchant(&req).unwrap_err().status, StatusCode::UNAUTHORIZED);
    }
}

#[cfg(test)]
mod scrub_tests {
    use super::scrub;

    #[test]
    fn quoted_values_are_taken_out() {
        assert_eq!(
            scrub(
                "invalid type: integer `4400430212346531`, expected a string at line 1 column 71"
            ),
            "invalid type: integer `…`, expected a string at line 1 column 71"
        );
        assert_eq!(
            scrub(r#"invalid type: string "tok_secret", expected u64"#),
            r#"invalid type: string "…", expected u64"#
        );
        assert_eq!(
            scrub("EOF while parsing a value"),
            "EOF while parsing a value"
        );
        assert_eq!(scrub("cut off `4400"), "cut off `…");
    }
}
