//! The Payment Engine's outbound calls.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::wire::{BalanceReply, TokenReply, Transaction};
use super::{status_from_word, to_wire_amount, PROVIDER};
use crate::money::{Currency, Money};
use crate::payment::{Checkout, Payment, Provider};
use crate::providers::session::{Held, SharedLogin};
use crate::providers::transport::{HttpPolicy, ProviderHttp, Reply, Retry};
use crate::providers::{excerpt, Confirmation, CreateRequest, Created, Gateway, ProviderError};
use crate::secrets::SecretString;

/// How we authenticate: an API key, or a login with refresh.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PaymentEngineAuth {
    ApiKey {
        api_key: SecretString,
    },
    Login {
        username: String,
        password: SecretString,
    },
}

/// The Payment Engine's settings, as stored in Secrets Manager.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentEngineConfig {
    pub base_url: String,
    pub auth: PaymentEngineAuth,
    /// The merchant's receiving account.
    pub to_account_id: String,
    /// The seed's `X-Webhook-Signature` key.
    pub webhook_secret: SecretString,
    /// A `whsec_` key when Standard Webhooks are on.
    #[serde(default)]
    pub standard_webhooks_secret: Option<SecretString>,
}

const MARGIN: Duration = Duration::from_secs(60);

/// The login mode's tokens, shared by every instance (`SharedLogin`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tokens {
    #[serde(with = "crate::secrets::exposed")]
    access: SecretString,
    #[serde(with = "crate::secrets::exposed")]
    refresh: SecretString,
}

/// A balance reply as exact money in its currency.
fn read_balance(b: BalanceReply) -> Result<Money, ProviderError> {
    let decode = |e: crate::money::MoneyError| ProviderError::Decode {
        provider: PROVIDER,
        reason: e.to_string(),
    };
    let currency = Currency::from_code_ignore_case(&b.currency_code).map_err(decode)?;
    b.available_balance.to_money(currency).map_err(decode)
}

#[derive(Debug)]
pub struct PaymentEngineClient {
    http: ProviderHttp,
    config: PaymentEngineConfig,
    tokens: SharedLogin<Tokens>,
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The seed's error body: `{"error": {"code", "message", "details", ...}}`.
fn error(reply: &Reply) -> ProviderError {
    #[derive(Deserialize)]
    struct Outer {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    match serde_json::from_slice::<Outer>(&reply.body) {
        Ok(o) => ProviderError::Rejected {
            provider: PROVIDER,
            status: reply.status.as_u16(),
            code: o
                .error
                .code
                .unwrap_or_else(|| format!("http_{}", reply.status.as_u16())),
            message: o.error.message.unwrap_or_default(),
        },
        Err(_) => ProviderError::Rejected {
            provider: PROVIDER,
            status: reply.status.as_u16(),
            code: format!("http_{}", reply.status.as_u16()),
            message: excerpt(&reply.body),
        },
    }
}

impl PaymentEngineClient {
    pub fn new(
        config: PaymentEngineConfig,
        policy: HttpPolicy,
    ) -> Result<PaymentEngineClient, ProviderError> {
        let tokens = SharedLogin::new("payment_engine", PROVIDER, policy.sessions.clone());
        Ok(PaymentEngineClient {
            http: ProviderHttp::new(PROVIDER, policy)?,
            config,
            tokens,
        })
    }

    pub fn config(&self) -> &PaymentEngineConfig {
        &self.config
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/api/v1/{path}",
            self.config.base_url.trim_end_matches('/')
        )
    }

    /// The bearer token (login mode): cached, refreshed, or logged in anew.
    async fn bearer(
        &self,
        username: &str,
        password: &SecretString,
        refused: Option<&Held<Tokens>>,
    ) -> Result<Held<Tokens>, ProviderError> {
        self.tokens
            .get(refused, |previous| async move {
                let refreshed = match previous {
                    Some(t) => {
                        let url = self.url("auth/refresh");
                        let body = serde_json::json!({"refresh_token": t.refresh.expose()});
                        let r = self
                            .http
                            .send(Retry::Safe, |c| c.post(&url).json(&body))
                            .await?;
                        r.status.is_success().then_some(r)
                    }
                    None => None,
                };
                let reply = match refreshed {
                    Some(r) => r,
                    None => {
                        let url = self.url("auth/login");
                        let body = serde_json::json!({"username": username, "password": password.expose()});
                        let r = self
                            .http
                            .send(Retry::Safe, |c| c.post(&url).json(&body))
                            .await?;
                        if !r.status.is_success() {
                            return Err(ProviderError::Auth {
                                provider: PROVIDER,
                                reason: format!("login refused: HTTP {}", r.status.as_u16()),
                            });
                        }
                        r
                    }
                };
                let t: TokenReply = reply.json(PROVIDER)?;
                let lifetime = Duration::from_secs(t.expires_in).saturating_sub(MARGIN);
                let tokens = Tokens {
                    access: t.access_token.into(),
                    refresh: t.refresh_token.into(),
                };
                Ok((tokens, time::OffsetDateTime::now_utc() + lifetime))
            })
            .await
    }

    /// A call with our credentials; in login mode a 401 renews once.
    async fn authed(
        &self,
        retry: Retry,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        match &self.config.auth {
            PaymentEngineAuth::ApiKey { api_key } => {
                self.http
                    .send(retry, |c| build(c).header("X-API-Key", api_key.expose()))
                    .await
            }
            PaymentEngineAuth::Login { username, password } => {
                let held = self.bearer(username, password, None).await?;
                let token = held.value().access.clone();
                let reply = self
                    .http
                    .send(retry, |c| build(c).bearer_auth(token.expose()))
                    .await?;
                if reply.status != reqwest::StatusCode::UNAUTHORIZED {
                    return Ok(reply);
                }
                let fresh = self.bearer(username, password, Some(&held)).await?;
                let token = fresh.value().access.clone();
                self.http
                    .send(retry, |c| build(c).bearer_auth(token.expose()))
                    .await
            }
        }
    }

    /// An account's available balance.
    pub async fn balance(&self, account_id: &str) -> Result<Money, ProviderError> {
        let url = self.url(&format!("accounts/{account_id}/balance"));
        let reply = self.authed(Retry::Safe, |c| c.get(&url)).await?;
        if !reply.status.is_success() {
            return Err(error(&reply));
        }
        read_balance(reply.json(PROVIDER)?)
    }
}

#[async_trait::async_trait]
impl Gateway for PaymentEngineClient {
    fn provider(&self) -> Provider {
        Provider::PaymentEngine
    }

    /// The receiving account's available balance (seed 002's
    /// `GET /api/v1/accounts/{id}/balance`).
    async fn balance(&self) -> Result<Option<(String, Money)>, ProviderError> {
        let account = self.config.to_account_id.clone();
        let money = PaymentEngineClient::balance(self, &account).await?;
        Ok(Some((account, money)))
    }

    /// A transaction to the merchant's account with our payment id as
    /// `externalReference`.
    async fn create(&self, request: &CreateRequest<'_>) -> Result<Created, ProviderError> {
        let amount: serde_json::Value = serde_json::from_str(&to_wire_amount(request.amount))
            .map_err(|e| ProviderError::Decode {
                provider: PROVIDER,
                reason: e.to_string(),
            })?;
        let body = serde_json::json!({
            "toAccountId": self.config.to_account_id,
            "paymentTypeId": request.method.unwrap_or("RTP"),
            "amount": amount,
            "currencyCode": request.amount.currency().code(),
            "description": request.description.unwrap_or("paygate payment"),
            "externalReference": request.payment_id.to_string(),
        });
        let url = self.url("transactions");
        let reply = self
            .authed(Retry::NotSent, |c| c.post(&url).json(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(error(&reply));
        }
        let t: Transaction = reply.json(PROVIDER)?;
        Ok(Created {
            provider_reference: t
                .id
                .as_ref()
                .map(text)
                .unwrap_or_default()
                .parse()
                .map_err(|_| ProviderError::Decode {
                    provider: PROVIDER,
                    reason: "transaction id is not a usable reference".into(),
                })?,
            checkout: Checkout::default(),
            expires_at: None,
        })
    }

    async fn status(&self, payment: &Payment) -> Result<Confirmation, ProviderError> {
        let id = crate::providers::provider_ref(payment, PROVIDER)?;
        let url = self.url(&format!("transactions/{id}/status"));
        let reply = self.authed(Retry::Safe, |c| c.get(&url)).await?;
        if reply.status == reqwest::StatusCode::NOT_FOUND {
            // The engine has never seen this transaction.
            return Err(ProviderError::NotFound {
                provider: PROVIDER,
                reference: id.to_string(),
            });
        }
        if !reply.status.is_success() {
            return Err(error(&reply));
        }
        let t: Transaction = reply.json(PROVIDER)?;
        let amount = t.money().map_err(|reason| ProviderError::Decode {
            provider: PROVIDER,
            reason,
        })?;
        let word = t.status.unwrap_or_default();
        Ok(Confirmation {
            status: status_from_word(&word),
            amount,
            provider_status: word,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        crate::providers::fixture("payment_engine", name)
    }

    #[test]
    fn the_guides_login_reply_and_error_body_are_read() {
        let tokens: TokenReply = serde_json::from_slice(&fixture("login.reply.json")).unwrap();
        assert_eq!(tokens.refresh_token, "refresh_token_here");
        assert_eq!(tokens.expires_in, 3600);
        let reply = Reply {
            status: reqwest::StatusCode::UNPROCESSABLE_ENTITY,
            headers: Default::default(),
            body: fixture("error.reply.json").into(),
        };
        let err = error(&reply);
        assert!(
            matches!(&err, ProviderError::Rejected { status: 422, code, message, .. }
                if code == "INSUFFICIENT_FUNDS" && message.starts_with("Account does not have")),
            "{err:?}"
        );
    }

    #[test]
    fn a_balance_is_read_exactly_as_a_number_or_as_text() {
        let assembled: BalanceReply =
            serde_json::from_slice(&fixture("balance.reply.assembled.json")).unwrap();
        let m = read_balance(assembled).unwrap();
        assert_eq!((m.minor(), m.currency()), (50_000, Currency::Usd));
        let text: BalanceReply = serde_json::from_str(
            r#"{"accountId": "a", "availableBalance": "1250.75", "currencyCode": "usd"}"#,
        )
        .unwrap();
        assert_eq!(read_balance(text).unwrap().minor(), 125_075);
        let odd: BalanceReply =
            serde_json::from_str(r#"{"availableBalance": 1.005, "currencyCode": "USD"}"#).unwrap();
        assert!(read_balance(odd).is_err(), "a third decimal is not a cent");
    }
}
