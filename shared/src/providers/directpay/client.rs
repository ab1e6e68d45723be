//! DirectPay's outbound calls, with its session: a CSRF token (and the
//! session cookie, when DirectPay sets one), then a login for a bearer
//! token. The session is cached and renewed before DirectPay's ~30-minute
//! expiry, and once on a 401.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::wire::{self, CashInReply, CsrfReply, LoginReply, LoginRequest, StatusReply};
use super::{to_wire_amount, PROVIDER};
use crate::ids::PaymentId;
use crate::money::{Currency, Money};
use crate::payment::{Checkout, Payment, Provider};
use crate::providers::session::{self, Held, SharedLogin};
use crate::providers::transport::{HttpPolicy, ProviderHttp, Reply, Retry};
use crate::providers::{
    excerpt, reported_amount, Confirmation, CreateRequest, Created, Gateway, ProviderError,
};
use crate::secrets::SecretString;

/// DirectPay's credentials and base URL, as stored in Secrets Manager.
#[derive(Debug, Clone, Deserialize)]
pub struct DirectPayConfig {
    pub base_url: String,
    pub username: String,
    pub password: SecretString,
    /// Which generation of DirectPay's API the account speaks.
    #[serde(default)]
    pub api: DirectPayApi,
}

/// DirectPay's two known API generations (PROVIDERS.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectPayApi {
    /// `GET /csrf_token`, `POST /create/login`, `POST /pay_cashin`,
    /// `GET /cashin_transactions_status/{id}`.
    #[default]
    Current,
    /// The seed's older variant: the CSRF token in an HTML meta tag of
    /// `GET /login`, `POST /login`, `POST /generate-gcash-qr`,
    /// `GET /payment/{reference}/status`.
    Legacy,
}

/// A session is renewed after this long, well before DirectPay's expiry.
const SESSION_LIFETIME: Duration = Duration::from_secs(25 * 60);

/// DirectPay's session, shared by every instance (`SharedLogin`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Session {
    #[serde(with = "crate::secrets::exposed")]
    token: SecretString,
    #[serde(with = "crate::secrets::exposed")]
    csrf: SecretString,
    /// `PHPSESSID=<id>` when `/csrf_token` set one; empty when it set none
    /// (the public client shown working logs in without it).
    #[serde(with = "crate::secrets::exposed", default = "no_cookie")]
    cookie: SecretString,
}

fn no_cookie() -> SecretString {
    String::new().into()
}

/// A cash-in (GCash QR) to create.
#[derive(Debug, Clone)]
pub struct CashIn<'a> {
    pub payment_id: PaymentId,
    pub amount: Money,
    pub webhook_url: &'a str,
    pub redirect_url: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashInCreated {
    pub transaction_id: String,
    pub link: Option<String>,
    pub qr_text: Option<String>,
}

#[derive(Debug)]
pub struct DirectPayClient {
    http: ProviderHttp,
    config: DirectPayConfig,
    session: SharedLogin<Session>,
}

impl DirectPayClient {
    pub fn new(
        config: DirectPayConfig,
        policy: HttpPolicy,
    ) -> Result<DirectPayClient, ProviderError> {
        let session = SharedLogin::new("directpay", PROVIDER, policy.sessions.clone());
        Ok(DirectPayClient {
            http: ProviderHttp::new(PROVIDER, policy)?,
            config,
            session,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.config.base_url.trim_end_matches('/'), path)
    }

    /// Creates a cash-in for the payment; our payment id goes in
    /// `merchantpaymentreferences`. Not retried after it may have reached
    /// DirectPay (it does not deduplicate): a timeout is an error to resolve
    /// by status, not by sending again.
    pub async fn create_cash_in(
        &self,
        request: &CashIn<'_>,
    ) -> Result<CashInCreated, ProviderError> {
        let amount = to_wire_amount(request.amount)?;
        let amount = serde_json::value::RawValue::from_string(amount).map_err(|e| {
            ProviderError::Decode {
                provider: PROVIDER,
                reason: e.to_string(),
            }
        })?;
        let reference = request.payment_id.to_string();
        if self.config.api == DirectPayApi::Legacy {
            return self.legacy_create(&amount, request, &reference).await;
        }
        let body = wire::CashInRequest {
            amount: &amount,
            webhook: request.webhook_url,
            redirect_url: request.redirect_url,
            merchantpaymentreferences: &reference,
        };
        let url = self.url("pay_cashin");
        let reply = self
            .authed(Retry::NotSent, |client, session| {
                self.with_session(client.post(&url), session).json(&body)
            })
            .await?;
        let created = ok_json::<CashInReply>(&reply)?.fields();
        match (created.status.as_deref(), created.transaction_id) {
            (Some("success"), Some(transaction_id)) => Ok(CashInCreated {
                transaction_id,
                link: created.redirectionurl.or(created.link),
                qr_text: created.qrphraw,
            }),
            _ => Err(ProviderError::Rejected {
                provider: PROVIDER,
                status: reply.status.as_u16(),
                code: created.status.unwrap_or_else(|| "unknown".into()),
                message: created.message.unwrap_or_default(),
            }),
        }
    }

    async fn legacy_create(
        &self,
        amount: &serde_json::value::RawValue,
        request: &CashIn<'_>,
        reference: &str,
    ) -> Result<CashInCreated, ProviderError> {
        let body = wire::LegacyQrRequest {
            amount,
            webhook_url: request.webhook_url,
            redirect_url: request.redirect_url,
            merchantpaymentreferences: reference,
        };
        let url = self.url("generate-gcash-qr");
        let reply = self
            .authed(Retry::NotSent, |client, session| {
                self.with_session(client.post(&url), session).json(&body)
            })
            .await?;
        let created: wire::LegacyQrReply = ok_json(&reply)?;
        match (created.success, created.reference) {
            (true, Some(transaction_id)) => Ok(CashInCreated {
                transaction_id,
                link: created.qr_code_url.clone(),
                qr_text: None,
            }),
            _ => Err(ProviderError::Rejected {
                provider: PROVIDER,
                status: reply.status.as_u16(),
                code: "generate_qr".into(),
                message: created.message.unwrap_or_default(),
            }),
        }
    }

    /// DirectPay's word on a transaction.
    pub async fn status(&self, transaction_id: &str) -> Result<Confirmation, ProviderError> {
        if self.config.api == DirectPayApi::Legacy {
            let url = self.url(&format!("payment/{transaction_id}/status"));
            let reply = self
                .authed(Retry::Safe, |client, session| {
                    self.with_session(client.get(&url), session)
                })
                .await?;
            unknown_transaction(&reply, transaction_id)?;
            let status: wire::LegacyStatusReply = ok_json(&reply)?;
            let word = status.status.unwrap_or_default();
            let amount = status.amount.or(status.details.and_then(|d| d.amount));
            let amount = reported_amount(PROVIDER, "amount", amount.as_ref(), Currency::Php)?;
            return Ok(Confirmation {
                status: wire::TransactionStatus::parse(&word).into(),
                amount,
                provider_status: word,
            });
        }
        let url = self.url(&format!("cashin_transactions_status/{transaction_id}"));
        let reply = self
            .authed(Retry::Safe, |client, session| {
                self.with_session(client.get(&url), session)
            })
            .await?;
        unknown_transaction(&reply, transaction_id)?;
        let status: StatusReply = ok_json(&reply)?;
        let word = status.transaction_status.unwrap_or_default();
        let total = status.total_amount.as_ref();
        let amount = reported_amount(PROVIDER, "total_amount", total, Currency::Php)?;
        Ok(Confirmation {
            status: wire::TransactionStatus::parse(&word).into(),
            amount,
            provider_status: word,
        })
    }

    /// Sends a request with the session; on 401 logs in again once.
    async fn authed(
        &self,
        retry: Retry,
        build: impl Fn(&reqwest::Client, &Session) -> reqwest::RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        session::authed(self, retry, build).await
    }

    /// This instance's session, the one every instance shares, or a new
    /// one when it is old, missing or `refused`.
    async fn session(
        &self,
        refused: Option<&Held<Session>>,
    ) -> Result<Held<Session>, ProviderError> {
        self.session
            .get(refused, |_| async {
                let session = self.login().await?;
                Ok((session, time::OffsetDateTime::now_utc() + SESSION_LIFETIME))
            })
            .await
    }

    async fn login(&self) -> Result<Session, ProviderError> {
        let legacy = self.config.api == DirectPayApi::Legacy;
        let csrf_url = self.url(if legacy { "login" } else { "csrf_token" });
        let reply = self.http.send(Retry::Safe, |c| c.get(&csrf_url)).await?;
        // The session cookie, when DirectPay sets one: sent back with the
        // login and every call after it (the merchant instruction's cURL
        // sends it; the public client shown working against the sandbox
        // host sets none and logs in with the CSRF header alone).
        let cookie = reply
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|kv| kv.trim_start().starts_with("PHPSESSID="))
            .map(|kv| kv.trim().to_string())
            .unwrap_or_default();
        let csrf = if legacy {
            meta_csrf(&reply)?
        } else {
            ok_json::<CsrfReply>(&reply)?.csrf_token
        };

        let login_url = self.url(if legacy { "login" } else { "create/login" });
        let body = LoginRequest {
            username: &self.config.username,
            password: self.config.password.expose(),
            csrf: legacy.then_some(csrf.as_str()),
        };
        let reply = self
            .http
            .send(Retry::Safe, |c| {
                with_cookie(c.post(&login_url).header("X-CSRF-TOKEN", &csrf), &cookie).json(&body)
            })
            .await?;
        if reply.status == StatusCode::UNAUTHORIZED || reply.status == StatusCode::FORBIDDEN {
            return Err(ProviderError::Auth {
                provider: PROVIDER,
                reason: format!("login refused: HTTP {}", reply.status.as_u16()),
            });
        }
        let login: LoginReply = ok_json(&reply)?;
        let token =
            login
                .data
                .map(|d| d.token)
                .or(login.token)
                .ok_or_else(|| ProviderError::Auth {
                    provider: PROVIDER,
                    reason: "login answered without a token".into(),
                })?;
        Ok(Session {
            token: token.into(),
            csrf: csrf.into(),
            cookie: cookie.into(),
        })
    }

    /// A bearer call in the account's API generation: the current one
    /// sends the token (and the cookie, when there is one), as the merchant
    /// instruction and the public client do; the seed's older variant also
    /// repeats the CSRF token.
    fn with_session(
        &self,
        request: reqwest::RequestBuilder,
        session: &Session,
    ) -> reqwest::RequestBuilder {
        let request = request.header(AUTHORIZATION, format!("Bearer {}", session.token.expose()));
        let request = match self.config.api {
            DirectPayApi::Legacy => request.header("X-CSRF-TOKEN", session.csrf.expose()),
            DirectPayApi::Current => request,
        };
        with_cookie(request, session.cookie.expose())
    }
}

/// The CSRF token in `<meta name="csrf-token" content="...">` of the
/// legacy login page.
fn meta_csrf(reply: &Reply) -> Result<String, ProviderError> {
    let page = String::from_utf8_lossy(&reply.body);
    page.split("<meta")
        .filter(|tag| tag.contains("name=\"csrf-token\""))
        .find_map(|tag| {
            let start = tag.find("content=\"")? + "content=\"".len();
            let end = tag[start..].find('"')?;
            Some(tag[start..start + end].to_string())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ProviderError::Auth {
            provider: PROVIDER,
            reason: "no CSRF token on the login page".into(),
        })
}

/// The session cookie on a request, when DirectPay set one.
fn with_cookie(request: reqwest::RequestBuilder, cookie: &str) -> reqwest::RequestBuilder {
    if cookie.is_empty() {
        request
    } else {
        request.header(COOKIE, cookie)
    }
}

/// DirectPay's 404 to a status request: it has no such transaction
/// ([`ProviderError::NotFound`], pending until it knows one), when DirectPay
/// says so in JSON. A 404 page that is not JSON is the web server's answer
/// to a path it does not serve (the sandbox host's "Cannot POST …" page in
/// fixtures/directpay SOURCES.md, D6): a wrong URL, an error for a person,
/// never a payment to give up on.
fn unknown_transaction(reply: &Reply, transaction_id: &str) -> Result<(), ProviderError> {
    let json =
        serde_json::from_slice::<serde_json::Value>(&reply.body).is_ok_and(|v| v.is_object());
    if reply.status == StatusCode::NOT_FOUND && json {
        return Err(ProviderError::NotFound {
            provider: PROVIDER,
            reference: transaction_id.to_string(),
        });
    }
    Ok(())
}

/// A 2xx body as `T`; anything else as DirectPay's error.
fn ok_json<T: serde::de::DeserializeOwned>(reply: &Reply) -> Result<T, ProviderError> {
    if reply.status.is_success() {
        return reply.json(PROVIDER);
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        status: Option<String>,
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(&reply.body).ok();
    Err(ProviderError::Rejected {
        provider: PROVIDER,
        status: reply.status.as_u16(),
        code: parsed
            .as_ref()
            .and_then(|b| b.status.clone())
            .unwrap_or_else(|| format!("http_{}", reply.status.as_u16())),
        message: parsed
            .and_then(|b| b.message)
            .unwrap_or_else(|| excerpt(&reply.body)),
    })
}

#[async_trait::async_trait]
impl Gateway for DirectPayClient {
    fn provider(&self) -> Provider {
        Provider::Directpay
    }

    async fn create(&self, request: &CreateRequest<'_>) -> Result<Created, ProviderError> {
        // Our payment id rides in the webhook URL, so its callback is one
        // read away (the body names only DirectPay's ids).
        let webhook_url = format!("{}?payment_id={}", request.webhook_url, request.payment_id);
        let created = self
            .create_cash_in(&CashIn {
                payment_id: request.payment_id,
                amount: request.amount,
                webhook_url: &webhook_url,
                redirect_url: request.return_url.unwrap_or_default(),
            })
            .await?;
        Ok(Created {
            provider_reference: created.transaction_id.parse().map_err(|_| {
                ProviderError::Decode {
                    provider: PROVIDER,
                    reason: "transactionId is not a usable reference".into(),
                }
            })?,
            checkout: Checkout {
                url: created.link,
                qr_text: created.qr_text,
                ..Checkout::default()
            },
            expires_at: None,
        })
    }

    async fn status(&self, payment: &Payment) -> Result<Confirmation, ProviderError> {
        let reference = crate::providers::provider_ref(payment, PROVIDER)?;
        DirectPayClient::status(self, reference).await
    }
}

session::logged_in!(DirectPayClient, Session, session);
