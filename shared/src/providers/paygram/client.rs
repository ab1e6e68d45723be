//! Paygram's outbound calls, in the form of the account's API
//! ([`PaygramApi`]). The API token is a path segment, so URLs are never
//! logged (the HTTP layer drops them from errors).

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use super::wire::{InvoiceInfoRequest, InvoiceReply, IssueInvoice};
use super::{
    currency_code, currency_from_wire, currency_symbol, status_code_from_wire, status_from_code,
    to_wire_amount, PROVIDER,
};
use crate::payment::{Checkout, Payment, Provider};
use crate::providers::transport::{HttpPolicy, ProviderHttp, Reply, Retry};
use crate::providers::{
    excerpt, reported_amount, Confirmation, CreateRequest, Created, Gateway, ProviderError,
};
use crate::secrets::SecretString;

/// Which of Paygram's two public APIs an account speaks (the secret's
/// `api`; sources in shared/tests/fixtures/paygram/SOURCES.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaygramApi {
    /// The official SDK's (`PayGramBotClient`):
    /// `POST {base}{token}/{Method}/?{query}` with the body `{}` and
    /// PascalCase replies; `https://pubapi.paygr.am/PayGramUsers/`.
    #[default]
    Official,
    /// The older API, as a capture of its real requests shows:
    /// `POST {base}/{token}/{Method}` with a camelCase JSON body carrying
    /// `requestId` and `userCliId`; `https://api.pay-gram.org`.
    Legacy,
}

impl PaygramApi {
    /// The API's public base URL, used when the secret names none.
    pub fn default_base_url(self) -> &'static str {
        match self {
            PaygramApi::Official => "https://pubapi.paygr.am/PayGramUsers/",
            PaygramApi::Legacy => "https://api.pay-gram.org/",
        }
    }

    fn name(self) -> &'static str {
        match self {
            PaygramApi::Official => "official",
            PaygramApi::Legacy => "legacy",
        }
    }

    /// The API a public Paygram host serves, if `host` is one: each serves
    /// only its own form, so a secret pairing a host with the other API
    /// would send every request in a form the server refuses.
    fn served_by(host: &str) -> Option<PaygramApi> {
        if host == "api.pay-gram.org" {
            Some(PaygramApi::Legacy)
        } else if host == "paygr.am" || host.ends_with(".paygr.am") {
            Some(PaygramApi::Official)
        } else {
            None
        }
    }
}

/// Paygram's settings, as stored in Secrets Manager.
#[derive(Debug, Clone, Deserialize)]
pub struct PaygramConfig {
    /// `official` (the default) or `legacy`.
    #[serde(default)]
    pub api: PaygramApi,
    /// The API's base URL; by default its public host
    /// ([`PaygramApi::default_base_url`]).
    #[serde(default)]
    pub base_url: Option<String>,
    pub api_token: SecretString,
    /// The secret path segment of our callback URL
    /// (`/webhooks/paygram/{secret}`), registered with Paygram.
    pub callback_secret: SecretString,
    /// Legacy API only, and required there: the user, in the token's
    /// client, whom invoices are issued to (the capture's `userCliId`,
    /// which becomes the invoice's `toUser`); every call carries it.
    #[serde(default)]
    pub user_cli_id: Option<String>,
    /// Legacy API only: `merchantType`, 3 unless set (the capture's value).
    #[serde(default)]
    pub merchant_type: Option<i64>,
}

/// The legacy API's `merchantType` when the secret sets none: what the
/// capture's IssueInvoice sends.
const CAPTURED_MERCHANT_TYPE: i64 = 3;

#[derive(Debug)]
pub struct PaygramClient {
    http: ProviderHttp,
    config: PaygramConfig,
    /// The base URL without its trailing `/`.
    base: String,
}

impl PaygramClient {
    pub fn new(config: PaygramConfig, policy: HttpPolicy) -> Result<PaygramClient, ProviderError> {
        let unusable = |reason: String| ProviderError::Unreachable {
            provider: PROVIDER,
            reason,
        };
        let base = config
            .base_url
            .clone()
            .unwrap_or_else(|| config.api.default_base_url().to_string());
        let host = url::Url::parse(&base)
            .map_err(|e| unusable(format!("base_url: {e}")))?
            .host_str()
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        if let Some(served) = PaygramApi::served_by(&host) {
            if served != config.api {
                return Err(unusable(format!(
                    "base_url's host {host} serves Paygram's {} API, but the secret's api is {}: set \"api\": \"{}\"",
                    served.name(),
                    config.api.name(),
                    served.name()
                )));
            }
        }
        if config.api == PaygramApi::Legacy
            && config
                .user_cli_id
                .as_deref()
                .is_none_or(|u| u.trim().is_empty())
        {
            return Err(unusable(
                "the legacy API needs user_cli_id (the user invoices are issued to)".into(),
            ));
        }
        Ok(PaygramClient {
            http: ProviderHttp::new(PROVIDER, policy)?,
            base: base.trim_end_matches('/').to_string(),
            config,
        })
    }

    pub fn config(&self) -> &PaygramConfig {
        &self.config
    }

    fn user_cli_id(&self) -> &str {
        self.config.user_cli_id.as_deref().unwrap_or_default()
    }

    /// An official API call, as the SDK's `ExecuteMethodAsync` makes it:
    /// `POST {base}{token}/{method}/?{query}` (a `/` before the `?`; the
    /// SDK leaves the parameters unescaped, and ours need no escaping), the
    /// body the text `{}` as UTF-8 JSON.
    async fn official(
        &self,
        retry: Retry,
        method: &str,
        query: &[(&str, &str)],
    ) -> Result<InvoiceReply, ProviderError> {
        let url = format!("{}/{}/{method}/", self.base, self.config.api_token.expose());
        let reply = self
            .http
            .send(retry, |c| {
                c.post(&url)
                    .query(query)
                    .header(CONTENT_TYPE, "application/json; charset=utf-8")
                    .body("{}")
            })
            .await?;
        read(&reply)
    }

    /// A legacy API call, as the capture makes it: `POST {base}/{token}/{method}`
    /// with the capture's two headers and a JSON body, built afresh for
    /// each attempt.
    async fn legacy<T: Serialize>(
        &self,
        retry: Retry,
        method: &str,
        body: impl Fn() -> T,
    ) -> Result<InvoiceReply, ProviderError> {
        let url = format!("{}/{}/{method}", self.base, self.config.api_token.expose());
        let reply = self
            .http
            .send(retry, |c| {
                let request = c
                    .post(&url)
                    .header(ACCEPT, "text/plain")
                    .header(CONTENT_TYPE, "application/json-patch+json");
                match serde_json::to_vec(&body()) {
                    Ok(bytes) => request.body(bytes),
                    // Our own structs always serialize; were one not to,
                    // an empty body is refused by Paygram, never misread.
                    Err(_) => request,
                }
            })
            .await?;
        read(&reply)
    }
}

/// A reply in either API's form. The official API's `ResponseCode` decides
/// (the SDK's `Success` is `ResponseCode < 400`); the legacy API's replies
/// have none (the capture) and `success` decides, a refused token saying
/// "Invalid Token".
fn read(reply: &Reply) -> Result<InvoiceReply, ProviderError> {
    if reply.status == reqwest::StatusCode::UNAUTHORIZED
        || reply.status == reqwest::StatusCode::FORBIDDEN
    {
        return Err(ProviderError::Auth {
            provider: PROVIDER,
            reason: format!("HTTP {}", reply.status.as_u16()),
        });
    }
    let parsed: Option<InvoiceReply> = serde_json::from_slice(&reply.body).ok();
    let Some(parsed) = parsed else {
        return Err(if reply.status.is_success() {
            ProviderError::Decode {
                provider: PROVIDER,
                reason: excerpt(&reply.body),
            }
        } else {
            ProviderError::Rejected {
                provider: PROVIDER,
                status: reply.status.as_u16(),
                code: format!("http_{}", reply.status.as_u16()),
                message: excerpt(&reply.body),
            }
        });
    };
    let message = parsed.message.clone().unwrap_or_default();
    match (parsed.response_code, parsed.success) {
        (Some(200..=399), Some(true) | None) | (None, Some(true)) if reply.status.is_success() => {
            Ok(parsed)
        }
        (Some(552), _) => Err(ProviderError::Auth {
            provider: PROVIDER,
            reason: if message.is_empty() {
                "token refused (552)".into()
            } else {
                message
            },
        }),
        (Some(553), _) => Err(ProviderError::NotFound {
            provider: PROVIDER,
            reference: parsed.invoice_code.unwrap_or_default(),
        }),
        (None, Some(false)) if message.trim().eq_ignore_ascii_case("invalid token") => {
            Err(ProviderError::Auth {
                provider: PROVIDER,
                reason: message,
            })
        }
        (None, None) if reply.status.is_success() => Err(ProviderError::Decode {
            provider: PROVIDER,
            reason: "a reply with neither ResponseCode nor success".into(),
        }),
        (code, _) => Err(ProviderError::Rejected {
            provider: PROVIDER,
            status: reply.status.as_u16(),
            code: code.map_or_else(|| "failed".to_string(), |c| c.to_string()),
            message,
        }),
    }
}

#[async_trait::async_trait]
impl Gateway for PaygramClient {
    fn provider(&self) -> Provider {
        Provider::Paygram
    }

    /// The payment id is the invoice's callback data (`cd`,
    /// `callbackData`). In the legacy API `requestId` is a number derived
    /// from it; the official API takes no request id. Either way a create
    /// that may have arrived is not sent again.
    async fn create(&self, request: &CreateRequest<'_>) -> Result<Created, ProviderError> {
        let amount = to_wire_amount(request.amount)?;
        let currency = request.amount.currency();
        let id = request.payment_id.to_string();
        let reply = match self.config.api {
            PaygramApi::Official => {
                self.official(
                    Retry::NotSent,
                    "IssueInvoice",
                    &[
                        ("cursym", currency_symbol(currency)?),
                        ("amt", &amount),
                        ("cd", &id),
                    ],
                )
                .await?
            }
            PaygramApi::Legacy => {
                let code = currency_code(currency)?;
                let amount = serde_json::value::RawValue::from_string(amount).map_err(|e| {
                    ProviderError::Decode {
                        provider: PROVIDER,
                        reason: e.to_string(),
                    }
                })?;
                self.legacy(Retry::NotSent, "IssueInvoice", || IssueInvoice {
                    request_id: super::request_id(request.payment_id),
                    user_cli_id: self.user_cli_id(),
                    currency_code: code,
                    amount: &amount,
                    callback_data: &id,
                    merchant_type: self.config.merchant_type.unwrap_or(CAPTURED_MERCHANT_TYPE),
                })
                .await?
            }
        };
        let code = reply.invoice_code.ok_or_else(|| ProviderError::Decode {
            provider: PROVIDER,
            reason: "IssueInvoice answered without invoiceCode".into(),
        })?;
        Ok(Created {
            provider_reference: code.parse().map_err(|_| ProviderError::Decode {
                provider: PROVIDER,
                reason: "invoiceCode is not a usable reference".into(),
            })?,
            // The capture's legacy reply has `payUrl: null`: no link then.
            checkout: Checkout {
                url: reply.pay_url.filter(|u| !u.trim().is_empty()),
                ..Checkout::default()
            },
            expires_at: None,
        })
    }

    async fn status(&self, payment: &Payment) -> Result<Confirmation, ProviderError> {
        let code = crate::providers::provider_ref(payment, PROVIDER)?;
        let reply = match self.config.api {
            PaygramApi::Official => {
                self.official(Retry::Safe, "InvoiceInfo", &[("invguid", code)])
                    .await?
            }
            PaygramApi::Legacy => {
                self.legacy(Retry::Safe, "InvoiceInfo", || InvoiceInfoRequest {
                    request_id: super::fresh_request_id(),
                    user_cli_id: self.user_cli_id(),
                    invoice_code: code,
                })
                .await?
            }
        };
        let status = match &reply.status {
            None => 0,
            Some(v) => status_code_from_wire(v).ok_or_else(|| ProviderError::Decode {
                provider: PROVIDER,
                reason: "status is neither a number nor a known name".into(),
            })?,
        };
        // The amount is in the invoice's currency, which Paygram names by code.
        let currency = reply
            .currency_code
            .as_ref()
            .and_then(currency_from_wire)
            .unwrap_or(payment.amount.currency());
        // `Amount` is the invoice's total, fees included: what the payer
        // paid for it. A fee comes out of it on our side (decision 54).
        let amount = reported_amount(PROVIDER, "amount", reply.amount.as_ref(), currency)?;
        if let Some(fee) = reply
            .expected_fee
            .as_ref()
            .and_then(|f| f.to_money(currency).ok())
            .filter(|f| !f.is_zero())
        {
            tracing::info!(payment_id = %payment.id, fee = %fee, "Paygram keeps a fee out of this invoice's amount");
        }
        Ok(Confirmation {
            status: status_from_code(status),
            amount,
            provider_status: status.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    //! The client against the documented wire: what it sends is captured
    //! by a local server and compared with the request fixtures
    //! (shared/tests/fixtures/paygram, sources in SOURCES.md), and it reads
    //! the reply fixtures.

    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::ids::PaymentId;
    use crate::money::{Currency, Money};
    use crate::payment::{ChangeSource, Customer, NewPayment, PaymentStatus};
    use crate::providers::fixture;
    use serde_json::Value;

    /// The capture's invoice code, in every reply fixture.
    const CAPTURED_INVOICE: &str = "3ceb007d-4422-450b-8835-8ff135a6a854";
    const TOKEN: &str = "test-token";

    /// A request as it reached the server.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        /// The path and query, as sent.
        target: String,
        headers: axum::http::HeaderMap,
        body: Vec<u8>,
    }

    /// A server that records each request and answers it with `reply`.
    async fn server(reply: Vec<u8>) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let kept = seen.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let kept = kept.clone();
            let reply = reply.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                kept.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    target: parts.uri.to_string(),
                    headers: parts.headers,
                    body: body.to_vec(),
                });
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/json; charset=utf-8",
                    )],
                    reply,
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    /// A request fixture: a curl command as published (or assembled), its
    /// arguments single-quoted.
    struct Curl {
        method: String,
        /// The URL's path and query.
        target: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    fn curl(name: &str) -> Curl {
        let text = String::from_utf8(fixture("paygram", name)).unwrap();
        let mut args: Vec<(String, String)> = Vec::new();
        let mut flag = String::new();
        let mut rest = text.as_str();
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '\\');
            if rest.is_empty() {
                break;
            }
            if let Some(quoted) = rest.strip_prefix('\'') {
                let end = quoted.find('\'').expect("a closing quote");
                args.push((std::mem::take(&mut flag), quoted[..end].to_string()));
                rest = &quoted[end + 1..];
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                if rest.starts_with('-') {
                    flag = rest[..end].to_string();
                }
                rest = &rest[end..];
            }
        }
        let one = |f: &str| {
            args.iter()
                .find(|(flag, _)| flag == f)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{name}: no {f}"))
        };
        let url = one("");
        let after_scheme = &url[url.find("://").unwrap() + 3..];
        Curl {
            method: one("-X"),
            target: after_scheme[after_scheme.find('/').unwrap()..].to_string(),
            headers: args
                .iter()
                .filter(|(f, _)| f == "-H")
                .map(|(_, h)| {
                    let (name, value) = h.split_once(':').unwrap();
                    (name.trim().to_ascii_lowercase(), value.trim().to_string())
                })
                .collect(),
            body: one("-d"),
        }
    }

    /// What was sent has the documented method, target (placeholders put
    /// in: `{token}` and the fixture's own values), headers and, for a
    /// body that is not JSON, the same text.
    fn assert_sent_as(seen: &Seen, documented: &Curl, base_path: &str, values: &[(&str, &str)]) {
        assert_eq!(seen.method, documented.method);
        let mut target = documented.target.clone();
        for (placeholder, value) in values {
            target = target.replace(placeholder, value);
        }
        assert!(
            target.starts_with(base_path),
            "{target} is not under {base_path}"
        );
        assert_eq!(seen.target, target);
        for (name, value) in &documented.headers {
            let got: Vec<_> = seen.headers.get_all(name.as_str()).iter().collect();
            assert_eq!(got.len(), 1, "one {name} header: {:?}", seen.headers);
            assert_eq!(got[0].to_str().unwrap(), value, "{name}");
        }
    }

    fn config(api: PaygramApi, base_url: String) -> PaygramConfig {
        PaygramConfig {
            api,
            base_url: Some(base_url),
            api_token: TOKEN.to_string().into(),
            callback_secret: "cb".to_string().into(),
            // The capture's user: its requests can then be compared whole.
            user_cli_id: (api == PaygramApi::Legacy).then(|| "tmloader".to_string()),
            merchant_type: None,
        }
    }

    fn client(api: PaygramApi, base_url: String) -> PaygramClient {
        PaygramClient::new(config(api, base_url), HttpPolicy::default()).unwrap()
    }

    fn create_request(payment_id: PaymentId, amount: Money) -> CreateRequest<'static> {
        static CUSTOMER: std::sync::OnceLock<Customer> = std::sync::OnceLock::new();
        CreateRequest {
            payment_id,
            amount,
            description: None,
            customer: CUSTOMER.get_or_init(Customer::default),
            return_url: None,
            method: None,
            webhook_url: "unused",
            sequence: None,
            expires_at: time::OffsetDateTime::now_utc(),
        }
    }

    fn payment(amount: Money, reference: &str) -> Payment {
        let now = time::OffsetDateTime::now_utc();
        Payment::new(
            NewPayment {
                id: PaymentId::generate(),
                merchant_id: "m_test".parse().unwrap(),
                provider: Provider::Paygram,
                amount,
                reference: "ORD-1".parse().unwrap(),
                description: None,
                customer: Customer::default(),
                return_url: None,
                method: None,
                wallet_user_id: None,
                casino_username: None,
                provider_reference: Some(reference.parse().unwrap()),
                checkout: Default::default(),
                page_token: None,
                expires_at: now,
            },
            ChangeSource::Api,
            now,
        )
    }

    /// The capture's invoice: 100 PHPT.
    fn phpt_100() -> Money {
        Money::new(10_000, Currency::Phpt).unwrap()
    }

    #[tokio::test]
    async fn official_requests_are_sent_as_the_sdk_sends_them() {
        let (url, seen) = server(fixture(
            "paygram",
            "official.issue_invoice.reply.assembled.json",
        ))
        .await;
        let client = client(PaygramApi::Official, format!("{url}/PayGramUsers/"));
        let id = PaymentId::generate();
        client
            .create(&create_request(id, phpt_100()))
            .await
            .unwrap();
        let sent = seen.lock().unwrap()[0].clone();
        assert_sent_as(
            &sent,
            &curl("official.issue_invoice.request.assembled.curl"),
            "/PayGramUsers/",
            &[("{token}", TOKEN), ("{callback_data}", &id.to_string())],
        );
        assert_eq!(sent.body, b"{}");

        client
            .status(&payment(phpt_100(), CAPTURED_INVOICE))
            .await
            .unwrap();
        let sent = seen.lock().unwrap()[1].clone();
        assert_sent_as(
            &sent,
            &curl("official.invoice_info.request.assembled.curl"),
            "/PayGramUsers/",
            &[("{token}", TOKEN), ("{invoice_code}", CAPTURED_INVOICE)],
        );
        assert_eq!(sent.body, b"{}");

        // USDT keeps every decimal, as the SDK's invariant-culture decimal.
        client
            .create(&create_request(
                id,
                Money::new(12_500_000, Currency::Usdt).unwrap(),
            ))
            .await
            .unwrap();
        let sent = seen.lock().unwrap()[2].clone();
        assert!(
            sent.target
                .ends_with(&format!("?cursym=USDT&amt=12.5&cd={id}")),
            "{}",
            sent.target
        );
    }

    /// The legacy body has the captured keys, each of the captured type and,
    /// but for `requestId` and `callbackData` (ours), the captured value.
    fn assert_body_as(sent: &[u8], documented: &str, ours: &[&str]) -> Value {
        let sent: Value = serde_json::from_slice(sent).unwrap();
        let documented: Value = serde_json::from_str(documented).unwrap();
        let (s, d) = (sent.as_object().unwrap(), documented.as_object().unwrap());
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            d.keys().collect::<Vec<_>>(),
            "{sent}"
        );
        for (key, value) in d {
            if ours.contains(&key.as_str()) {
                assert_eq!(
                    std::mem::discriminant(&s[key]),
                    std::mem::discriminant(value),
                    "{key}"
                );
            } else {
                assert_eq!(&s[key], value, "{key}");
            }
        }
        sent
    }

    #[tokio::test]
    async fn legacy_requests_are_sent_as_the_capture_shows() {
        let (url, seen) = server(fixture("paygram", "legacy.issue_invoice.reply.json")).await;
        let client = client(PaygramApi::Legacy, url);
        let id = PaymentId::generate();
        client
            .create(&create_request(id, phpt_100()))
            .await
            .unwrap();
        let sent = seen.lock().unwrap()[0].clone();
        let documented = curl("legacy.issue_invoice.request.curl");
        assert_sent_as(&sent, &documented, "/", &[("{token}", TOKEN)]);
        let body = assert_body_as(&sent.body, &documented.body, &["requestId", "callbackData"]);
        assert_eq!(body["requestId"], super::super::request_id(id));
        assert_eq!(body["callbackData"], id.to_string());

        // InvoiceInfo carries requestId and userCliId too, as captured; a
        // fresh requestId each time.
        let documented = curl("legacy.invoice_info.request.curl");
        let mut ids = Vec::new();
        for n in 1..=2 {
            client
                .status(&payment(phpt_100(), CAPTURED_INVOICE))
                .await
                .unwrap();
            let sent = seen.lock().unwrap()[n].clone();
            assert_sent_as(&sent, &documented, "/", &[("{token}", TOKEN)]);
            let body = assert_body_as(&sent.body, &documented.body, &["requestId"]);
            ids.push(body["requestId"].as_i64().expect("a 64-bit integer"));
        }
        assert_ne!(ids[0], ids[1]);
    }

    /// Serves `reply` and asks the client of `api` about the capture's invoice.
    async fn status_from(api: PaygramApi, reply: &str) -> Result<Confirmation, ProviderError> {
        let (url, _) = server(fixture("paygram", reply)).await;
        let base = match api {
            PaygramApi::Official => format!("{url}/PayGramUsers/"),
            PaygramApi::Legacy => url,
        };
        client(api, base)
            .status(&payment(phpt_100(), CAPTURED_INVOICE))
            .await
    }

    #[tokio::test]
    async fn both_apis_replies_are_read() {
        for (api, pending, completed) in [
            (
                PaygramApi::Legacy,
                "legacy.invoice_info.reply.json",
                "legacy.pay_invoice.reply.json",
            ),
            (
                PaygramApi::Official,
                "official.invoice_info.reply.assembled.json",
                "official.invoice_info.reply.completed.assembled.json",
            ),
        ] {
            let c = status_from(api, pending).await.unwrap();
            assert_eq!(
                (c.status, c.amount),
                (PaymentStatus::Pending, Some(phpt_100()))
            );
            assert_eq!(c.provider_status, "4");
            let c = status_from(api, completed).await.unwrap();
            assert_eq!(
                (c.status, c.amount),
                (PaymentStatus::Completed, Some(phpt_100()))
            );
        }
        for (api, refusal) in [
            (PaygramApi::Legacy, "legacy.error.invalid_token.json"),
            (PaygramApi::Official, "official.error.auth.assembled.json"),
        ] {
            assert!(
                matches!(
                    status_from(api, refusal).await,
                    Err(ProviderError::Auth { .. })
                ),
                "{refusal}"
            );
        }
        assert!(matches!(
            status_from(
                PaygramApi::Official,
                "official.error.not_found.assembled.json"
            )
            .await,
            Err(ProviderError::NotFound { .. })
        ));

        // The captured legacy IssueInvoice reply has `payUrl: null`: an
        // invoice without a link; the official one has the bot's link.
        for (api, reply, link) in [
            (PaygramApi::Legacy, "legacy.issue_invoice.reply.json", None),
            (
                PaygramApi::Official,
                "official.issue_invoice.reply.assembled.json",
                Some("https://telegram.me/{bot}?start={command}"),
            ),
        ] {
            let (url, _) = server(fixture("paygram", reply)).await;
            let base = match api {
                PaygramApi::Official => format!("{url}/PayGramUsers/"),
                PaygramApi::Legacy => url,
            };
            let created = client(api, base)
                .create(&create_request(PaymentId::generate(), phpt_100()))
                .await
                .unwrap();
            assert_eq!(created.provider_reference.as_str(), CAPTURED_INVOICE);
            assert_eq!(created.checkout.url.as_deref(), link, "{reply}");
        }
    }

    /// A fee is part of `Amount`: the payer paid `Amount`, and that is the
    /// confirmed amount (decision 54).
    #[tokio::test]
    async fn the_paid_amount_is_the_invoices_amount_fees_included() {
        let mut reply: Value = serde_json::from_slice(&fixture(
            "paygram",
            "official.invoice_info.reply.completed.assembled.json",
        ))
        .unwrap();
        reply["ExpectedFee"] = serde_json::json!(1.5);
        let (url, _) = server(reply.to_string().into_bytes()).await;
        let c = client(PaygramApi::Official, format!("{url}/PayGramUsers/"))
            .status(&payment(phpt_100(), CAPTURED_INVOICE))
            .await
            .unwrap();
        assert_eq!(
            (c.status, c.amount),
            (PaymentStatus::Completed, Some(phpt_100()))
        );
    }

    #[test]
    fn the_secret_chooses_the_api_and_the_official_one_by_default() {
        let secret = serde_json::json!({"api_token": "t", "callback_secret": "s"});
        let c: PaygramConfig = serde_json::from_value(secret).unwrap();
        assert_eq!(c.api, PaygramApi::Official);
        let client = PaygramClient::new(c, HttpPolicy::default()).unwrap();
        assert_eq!(client.base, "https://pubapi.paygr.am/PayGramUsers");

        let legacy = serde_json::json!({"api": "legacy", "api_token": "t", "callback_secret": "s",
                                        "user_cli_id": "merchant"});
        let c: PaygramConfig = serde_json::from_value(legacy).unwrap();
        let client = PaygramClient::new(c, HttpPolicy::default()).unwrap();
        assert_eq!(client.base, "https://api.pay-gram.org");

        // A host that serves the other API, or a legacy account without
        // its user, is refused before anything is sent.
        for secret in [
            serde_json::json!({"base_url": "https://api.pay-gram.org", "api_token": "t", "callback_secret": "s"}),
            serde_json::json!({"api": "legacy", "base_url": "https://pubapi.paygr.am/PayGramUsers/",
                               "api_token": "t", "callback_secret": "s", "user_cli_id": "m"}),
            serde_json::json!({"api": "legacy", "api_token": "t", "callback_secret": "s"}),
            serde_json::json!({"api": "legacy", "api_token": "t", "callback_secret": "s", "user_cli_id": " "}),
        ] {
            let c: PaygramConfig = serde_json::from_value(secret.clone()).unwrap();
            let err = PaygramClient::new(c, HttpPolicy::default()).unwrap_err();
            assert!(matches!(err, ProviderError::Unreachable { .. }), "{secret}");
            assert!(!format!("{err}").contains("\"t\""));
        }
        assert!(serde_json::from_value::<PaygramConfig>(
            serde_json::json!({"api": "v2", "api_token": "t", "callback_secret": "s"})
        )
        .is_err());
    }
}
