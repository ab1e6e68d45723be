//! epayment.kz's outbound calls.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::wire::{ResultCode, StatusReply, TokenReply};
use super::{invoice_id, invoice_of, secret_hash, status_from_name, to_wire_amount, PROVIDER};
use crate::money::{Currency, Money};
use crate::payment::{Checkout, Payment, Provider};
use crate::providers::session::{self, Held, SharedLogin};
use crate::providers::transport::{HttpPolicy, ProviderHttp, Reply, Retry};
use crate::providers::{
    excerpt, reported_amount, Confirmation, CreateRequest, Created, Gateway, ProviderError,
};
use crate::secrets::SecretString;

/// epayment.kz's settings, as stored in Secrets Manager.
#[derive(Debug, Clone, Deserialize)]
pub struct EpaymentConfig {
    /// `https://test-epay-oauth.epayment.kz` or `https://epay-oauth.homebank.kz`.
    pub oauth_url: String,
    /// `https://test-epay-api.epayment.kz` or `https://epay-api.homebank.kz`.
    pub api_url: String,
    /// The payment widget's script.
    pub widget_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub terminal: String,
    /// Our key for each invoice's `secret_hash`.
    pub callback_key: SecretString,
    /// A two-stage terminal: payments end in AUTH and are captured with
    /// `POST /operation/{id}/charge` when confirmed (else they never
    /// complete). The terminal's mode is the bank's configuration.
    #[serde(default)]
    pub two_stage: bool,
}

const SCOPE: &str = "webapi usermanagement email_send verification statement statistics payment";

/// The payer's widget needs a payment token only: the official "Payment
/// page" (EN) asks for it with `scope=payment` and the invoice's fields
/// (fixtures/epayment/token.request.payment.form), the narrowest scope any
/// source shows; it is what a payer's browser holds.
const PAYMENT_SCOPE: &str = "payment";
/// The payment form's language: the seed's paymentObject and public
/// clients pass `"rus"` (fixtures/epayment/widget.payment_object.seed.json).
const WIDGET_LANGUAGE: &str = "rus";
/// Tokens are renewed this long before they expire.
const MARGIN: Duration = Duration::from_secs(300);
/// check-status's resultCode 107 ("try again later"): how often we do.
const BUSY_RETRIES: u32 = 3;

/// The `webapi` token (status, refund, cancel), shared by every instance
/// (`SharedLogin`). Payment tokens are bound to one invoice and never shared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Token {
    #[serde(with = "crate::secrets::exposed")]
    value: SecretString,
}

impl TokenReply {
    /// The token reply as the payment widget's `auth` takes it: the
    /// object (the bank's widget docs), without its `refresh_token`, which
    /// would let whoever holds it mint new tokens: the payer's page and the
    /// merchant's answers never carry one.
    fn widget_auth(&self) -> serde_json::Value {
        serde_json::json!({
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "scope": self.scope,
            "token_type": self.token_type.as_deref().unwrap_or("Bearer"),
        })
    }
}

/// What check-status says, with the bank's transaction id for operations.
#[derive(Debug, Clone)]
pub struct EpaymentStatus {
    pub confirmation: Confirmation,
    pub transaction_id: Option<String>,
}

#[derive(Debug)]
pub struct EpaymentClient {
    http: ProviderHttp,
    config: EpaymentConfig,
    token: SharedLogin<Token>,
}

fn seconds(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl EpaymentClient {
    pub fn new(
        config: EpaymentConfig,
        policy: HttpPolicy,
    ) -> Result<EpaymentClient, ProviderError> {
        let token = SharedLogin::new("epayment", PROVIDER, policy.sessions.clone());
        Ok(EpaymentClient {
            http: ProviderHttp::new(PROVIDER, policy)?,
            config,
            token,
        })
    }

    pub fn config(&self) -> &EpaymentConfig {
        &self.config
    }

    /// A token of `scope`: the API's ([`SCOPE`]) for our own calls, or
    /// [`PAYMENT_SCOPE`] with the invoice's fields for the payer's widget.
    async fn request_token(
        &self,
        scope: &str,
        extra: &[(&str, String)],
    ) -> Result<(SecretString, Duration, TokenReply), ProviderError> {
        let url = format!(
            "{}/oauth2/token",
            self.config.oauth_url.trim_end_matches('/')
        );
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("scope", scope.into()),
            ("client_id", self.config.client_id.clone()),
            ("client_secret", self.config.client_secret.expose().clone()),
            ("terminal", self.config.terminal.clone()),
        ];
        form.extend(extra.iter().cloned());
        let reply = self
            .http
            .send(Retry::Safe, |c| c.post(&url).form(&form))
            .await?;
        if !reply.status.is_success() {
            return Err(ProviderError::Auth {
                provider: PROVIDER,
                reason: format!("token refused: HTTP {}", reply.status.as_u16()),
            });
        }
        let token: TokenReply = reply.json(PROVIDER)?;
        let lifetime = token.expires_in.as_ref().and_then(seconds).unwrap_or(0);
        Ok((
            token.access_token.clone().into(),
            Duration::from_secs(lifetime),
            token,
        ))
    }

    /// The API token, shared until five minutes before it expires;
    /// `refused`: the one the bank just refused.
    async fn token(&self, refused: Option<&Held<Token>>) -> Result<Held<Token>, ProviderError> {
        self.token
            .get(refused, |_| async {
                let (value, lifetime, _) = self.request_token(SCOPE, &[]).await?;
                let until = time::OffsetDateTime::now_utc() + lifetime.saturating_sub(MARGIN);
                Ok((Token { value }, until))
            })
            .await
    }

    /// A bearer call; a 401 renews the token once.
    async fn authed(
        &self,
        retry: Retry,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        session::authed(self, retry, |c, t| build(c, t.value.expose())).await
    }

    /// check-status for an invoice; resultCode 107 is retried a few times.
    /// The result body is read whether it comes with HTTP 200 or 400 (a
    /// public Go client of the API decodes both; fixtures/epayment
    /// SOURCES.md): "102 invoice not found" is the bank not knowing the
    /// invoice, however it is sent.
    pub async fn check(&self, invoice: &str) -> Result<EpaymentStatus, ProviderError> {
        let url = format!(
            "{}/check-status/payment/transaction/{invoice}",
            self.config.api_url.trim_end_matches('/')
        );
        for attempt in 1..=BUSY_RETRIES {
            let reply = self
                .authed(Retry::Safe, |c, t| c.get(&url).bearer_auth(t))
                .await?;
            let status = match result_body(&reply) {
                Some(status) => status,
                None if reply.status.is_success() => reply.json::<StatusReply>(PROVIDER)?,
                None => return Err(operation_error(&reply)),
            };
            let code = text(&status.result_code).unwrap_or_default();
            let message = status.result_message.clone().unwrap_or_default();
            match ResultCode::parse(&code) {
                ResultCode::Success => return self.read_transaction(status),
                ResultCode::Rejected => return self.declined(status),
                ResultCode::InvoiceNotFound => {
                    return Err(ProviderError::NotFound {
                        provider: PROVIDER,
                        reference: invoice.to_string(),
                    })
                }
                ResultCode::TryAgainLater if attempt < BUSY_RETRIES => {
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                ResultCode::TryAgainLater => {
                    return Err(ProviderError::Unavailable {
                        provider: PROVIDER,
                        attempts: attempt,
                        reason: "resultCode 107: try again later".into(),
                    })
                }
                ResultCode::Other => {
                    return Err(ProviderError::Rejected {
                        provider: PROVIDER,
                        status: reply.status.as_u16(),
                        code,
                        message,
                    })
                }
            }
        }
        Err(ProviderError::Unavailable {
            provider: PROVIDER,
            attempts: BUSY_RETRIES,
            reason: "resultCode 107: try again later".into(),
        })
    }

    /// resultCode 101 (the seed's table: REJECT, payment rejected): the
    /// payment was declined, whatever the transaction, if any, says; its
    /// amount and id are kept when the bank gives them.
    fn declined(&self, status: StatusReply) -> Result<EpaymentStatus, ProviderError> {
        let declined = |amount, provider_status| Confirmation {
            status: crate::payment::PaymentStatus::Failed,
            amount,
            provider_status,
        };
        if status.transaction.is_none() {
            return Ok(EpaymentStatus {
                confirmation: declined(None, "REJECT".into()),
                transaction_id: None,
            });
        }
        let read = self.read_transaction(status)?;
        let word = match read.confirmation.provider_status.as_str() {
            "" => "REJECT".to_string(),
            word => word.to_string(),
        };
        Ok(EpaymentStatus {
            confirmation: declined(read.confirmation.amount, word),
            transaction_id: read.transaction_id,
        })
    }

    fn read_transaction(&self, status: StatusReply) -> Result<EpaymentStatus, ProviderError> {
        let t = status.transaction.ok_or_else(|| ProviderError::Decode {
            provider: PROVIDER,
            reason: "check-status without a transaction".into(),
        })?;
        let currency = match t.currency.as_deref() {
            Some(c) => Currency::from_code_ignore_case(c).map_err(|e| ProviderError::Decode {
                provider: PROVIDER,
                reason: e.to_string(),
            })?,
            None => Currency::Kzt,
        };
        let amount = reported_amount(PROVIDER, "amount", t.amount.as_ref(), currency)?;
        let word = t.status_name.unwrap_or_default();
        Ok(EpaymentStatus {
            confirmation: Confirmation {
                status: status_from_name(&word),
                amount,
                provider_status: word,
            },
            transaction_id: t.id.as_ref().and_then(text),
        })
    }

    /// Refunds `amount` (all of it when `None`) of a charged transaction.
    pub async fn refund(
        &self,
        transaction_id: &str,
        amount: Option<Money>,
        external_id: &str,
    ) -> Result<(), ProviderError> {
        let mut url = format!(
            "{}/operation/{transaction_id}/refund",
            self.config.api_url.trim_end_matches('/')
        );
        if let Some(a) = amount {
            url.push_str(&format!(
                "?amount={}&externalID={external_id}",
                to_wire_amount(a)?
            ));
        }
        // The externalID makes a repeat recognisable; without an amount there
        // is nothing to repeat twice (the second full refund is refused).
        let reply = self
            .authed(Retry::NotSent, |c, t| c.post(&url).bearer_auth(t))
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(operation_error(&reply))
        }
    }

    /// Captures an authorised transaction, whole. The bank charges only
    /// from AUTH, so a repeat cannot charge twice.
    pub async fn charge(&self, transaction_id: &str) -> Result<(), ProviderError> {
        self.operation(transaction_id, "charge", Retry::NotSent)
            .await
    }

    /// Releases an authorised (not charged) transaction.
    pub async fn cancel_transaction(&self, transaction_id: &str) -> Result<(), ProviderError> {
        self.operation(transaction_id, "cancel", Retry::Safe).await
    }

    /// `POST /operation/{id}/{name}`: success is HTTP 200, anything else
    /// the bank's refusal.
    async fn operation(
        &self,
        transaction_id: &str,
        name: &str,
        retry: Retry,
    ) -> Result<(), ProviderError> {
        let url = format!(
            "{}/operation/{transaction_id}/{name}",
            self.config.api_url.trim_end_matches('/')
        );
        let reply = self
            .authed(retry, |c, t| c.post(&url).bearer_auth(t))
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(operation_error(&reply))
        }
    }
}

/// A failure of a read made before the call that moves money: the refund
/// itself was never sent, so it is a clean "not done" (the reservation goes
/// back and the merchant may retry), whatever the read's own error was. A
/// refusal of the bank's own (no such invoice) stays what it is.
fn nothing_sent(e: ProviderError) -> ProviderError {
    if e.outcome_unknown() {
        ProviderError::Unreachable {
            provider: PROVIDER,
            reason: format!("check-status before the refund failed, so it was not sent: {e}"),
        }
    } else {
        e
    }
}

/// check-status's result body (`resultCode`, ...), on HTTP 200 or 400.
fn result_body(reply: &Reply) -> Option<StatusReply> {
    let readable = reply.status.is_success() || reply.status == reqwest::StatusCode::BAD_REQUEST;
    readable
        .then(|| serde_json::from_slice::<StatusReply>(&reply.body).ok())
        .flatten()
}

/// An operation's error body: `{"code": .., "message": ..}`.
fn operation_error(reply: &Reply) -> ProviderError {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        code: Option<serde_json::Value>,
        #[serde(default)]
        message: Option<String>,
    }
    let body: Option<Body> = serde_json::from_slice(&reply.body).ok();
    ProviderError::Rejected {
        provider: PROVIDER,
        status: reply.status.as_u16(),
        code: body
            .as_ref()
            .and_then(|b| b.code.as_ref())
            .and_then(text)
            .unwrap_or_else(|| format!("http_{}", reply.status.as_u16())),
        message: body
            .and_then(|b| b.message)
            .unwrap_or_else(|| excerpt(&reply.body)),
    }
}

#[async_trait::async_trait]
impl Gateway for EpaymentClient {
    fn provider(&self) -> Provider {
        Provider::Epayment
    }

    /// A payment token bound to the invoice, and what the widget needs.
    async fn create(&self, request: &CreateRequest<'_>) -> Result<Created, ProviderError> {
        let amount = to_wire_amount(request.amount)?;
        let invoice = invoice_id(request.sequence.unwrap_or(0))?;
        // Our payment id rides along in the postLink, as in QPay's
        // callback_url: the invoiceID alone no longer says which payment.
        let post_link = format!("{}?payment_id={}", request.webhook_url, request.payment_id);
        let hash = secret_hash(self.config.callback_key.expose(), &invoice);
        let (token, _, reply) = self
            .request_token(
                PAYMENT_SCOPE,
                &[
                    ("invoiceID", invoice.clone()),
                    ("amount", amount.clone()),
                    ("currency", "KZT".into()),
                    ("postLink", post_link.clone()),
                    ("failurePostLink", post_link.clone()),
                    ("secret_hash", hash),
                ],
            )
            .await?;
        let amount_number: serde_json::Value =
            serde_json::from_str(&amount).map_err(|e| ProviderError::Decode {
                provider: PROVIDER,
                reason: e.to_string(),
            })?;
        let mut widget = serde_json::Map::new();
        widget.insert("script".into(), self.config.widget_url.clone().into());
        widget.insert("invoiceId".into(), invoice.clone().into());
        widget.insert("terminal".into(), self.config.terminal.clone().into());
        widget.insert("amount".into(), amount_number);
        widget.insert("currency".into(), "KZT".into());
        // The bank's widget takes the whole token reply as `auth`; the
        // seed passed a "Bearer …" string, kept beside it as `auth_bearer`.
        widget.insert("auth".into(), reply.widget_auth());
        widget.insert(
            "auth_bearer".into(),
            format!("Bearer {}", token.expose()).into(),
        );
        widget.insert(
            "backLink".into(),
            request.return_url.unwrap_or_default().into(),
        );
        widget.insert(
            "failureBackLink".into(),
            request.return_url.unwrap_or_default().into(),
        );
        widget.insert("postLink".into(), post_link.clone().into());
        widget.insert("failurePostLink".into(), post_link.into());
        // As the seed's paymentObject and public clients give them.
        widget.insert("language".into(), WIDGET_LANGUAGE.into());
        widget.insert(
            "description".into(),
            request.description.unwrap_or("paygate payment").into(),
        );
        Ok(Created {
            provider_reference: invoice.parse().map_err(|_| ProviderError::Decode {
                provider: PROVIDER,
                reason: "invoiceID is not a usable reference".into(),
            })?,
            checkout: Checkout {
                widget: Some(widget),
                ..Checkout::default()
            },
            expires_at: None,
        })
    }

    /// On a two-stage terminal an authorised payment is captured first:
    /// the payer has paid, and only the capture makes it money.
    async fn status(&self, payment: &Payment) -> Result<Confirmation, ProviderError> {
        let invoice = invoice_of(payment)?;
        let status = self.check(invoice).await?;
        let authorised = status
            .confirmation
            .provider_status
            .eq_ignore_ascii_case("AUTH");
        if !(self.config.two_stage && authorised) {
            return Ok(status.confirmation);
        }
        let Some(txn) = status.transaction_id else {
            return Ok(status.confirmation);
        };
        if let Err(e) = self.charge(&txn).await {
            // A charge whose answer was lost, or one made meanwhile: the
            // bank's state says which.
            tracing::warn!(payment_id = %payment.id, error = %e, "capture of an authorised payment failed");
        }
        Ok(self.check(invoice).await?.confirmation)
    }

    /// By the bank's transaction id; the whole payment, refunded in one,
    /// goes without an amount (a full refund); anything else with its
    /// amount and our refund id as externalID: the rest of a payment after
    /// earlier refunds, or beside one still pending, is a part, never "the
    /// whole". The transaction id comes from check-status first; when that
    /// read fails, nothing was sent.
    async fn refund(
        &self,
        payment: &Payment,
        amount: Money,
        refund_id: &str,
    ) -> Result<(), ProviderError> {
        let status = self
            .check(invoice_of(payment)?)
            .await
            .map_err(nothing_sent)?;
        let id = status.transaction_id.ok_or_else(|| {
            nothing_sent(ProviderError::Decode {
                provider: PROVIDER,
                reason: "check-status without a transaction id".into(),
            })
        })?;
        let whole = payment.refunded_amount.is_zero() && amount == payment.paid();
        self.refund(&id, (!whole).then_some(amount), refund_id)
            .await
    }

    /// check-status has no refunded amount: REFUND is the whole payment
    /// given back, CHARGE says no whole refund was made (a partial one
    /// leaves CHARGE).
    async fn refunds(
        &self,
        payment: &Payment,
    ) -> Result<crate::providers::ProviderRefunds, ProviderError> {
        use crate::providers::ProviderRefunds;
        let status = self.check(invoice_of(payment)?).await?;
        match status.confirmation.status {
            crate::payment::PaymentStatus::Refunded => Ok(ProviderRefunds::Whole),
            crate::payment::PaymentStatus::Completed => Ok(ProviderRefunds::NotWhole),
            _ => Err(ProviderError::Rejected {
                provider: PROVIDER,
                status: 200,
                code: status.confirmation.provider_status,
                message: "the transaction is not a charged one".into(),
            }),
        }
    }

    /// A payment still only authorised is released; one never paid (the
    /// bank does not know the invoice: 102, with HTTP 200 or 400), declined
    /// or already released has nothing at the bank to cancel (its payment
    /// token just expires).
    async fn cancel(&self, payment: &Payment) -> Result<(), ProviderError> {
        match self.check(invoice_of(payment)?).await {
            Ok(s) if s.confirmation.provider_status.eq_ignore_ascii_case("AUTH") => {
                let id = s.transaction_id.ok_or_else(|| ProviderError::Decode {
                    provider: PROVIDER,
                    reason: "AUTH without a transaction id".into(),
                })?;
                self.cancel_transaction(&id).await
            }
            Ok(s)
                if matches!(
                    s.confirmation.status,
                    crate::payment::PaymentStatus::Pending | crate::payment::PaymentStatus::Failed
                ) =>
            {
                Ok(())
            }
            Ok(s) => Err(ProviderError::Rejected {
                provider: PROVIDER,
                status: 200,
                code: s.confirmation.provider_status,
                message: "the transaction cannot be cancelled".into(),
            }),
            Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

session::logged_in!(EpaymentClient, Token, token);

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        crate::providers::fixture("epayment", name)
    }

    #[test]
    fn every_documented_token_reply_is_read() {
        for name in [
            "token.reply.json",
            "token.reply.with_refresh.json",
            "token.reply.expires_string.json",
            "token.reply.password_grant.json",
        ] {
            let t: TokenReply = serde_json::from_slice(&fixture(name)).unwrap();
            assert!(!t.access_token.is_empty(), "{name}");
            assert!(t.expires_in.is_some(), "{name}");
            // The widget gets the object, whatever its variant, but never
            // a refresh token.
            let auth = t.widget_auth();
            assert_eq!(auth["access_token"], t.access_token.as_str());
            assert!(auth.get("refresh_token").is_none(), "{name}");
        }
    }

    #[test]
    fn the_documented_status_replies_are_read() {
        for name in [
            "check_status.reply.json",
            "check_status.reply.alt.json",
            "check_status.reply.seed.json",
        ] {
            let s: StatusReply = serde_json::from_slice(&fixture(name)).unwrap();
            assert_eq!(text(&s.result_code).as_deref(), Some("100"), "{name}");
            assert!(s.transaction.is_some(), "{name}");
        }
        // "Invoice not found", "try again later", "reject": a code, no
        // transaction.
        for (name, code) in [
            ("check_status.not_found.seed.json", "102"),
            ("check_status.busy.seed.json", "107"),
            ("check_status.reject.seed.json", "101"),
        ] {
            let s: StatusReply = serde_json::from_slice(&fixture(name)).unwrap();
            assert_eq!(text(&s.result_code).as_deref(), Some(code), "{name}");
            assert!(s.transaction.is_none(), "{name}");
        }
    }

    /// A result body is read with HTTP 200 or 400; an operation's error
    /// body with 400, or anything with another status, is not one.
    #[test]
    fn check_status_results_are_read_on_200_and_400() {
        let reply = |status: u16, name: &str| Reply {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: fixture(name).into(),
        };
        for status in [200, 400] {
            let read = result_body(&reply(status, "check_status.not_found.seed.json"));
            assert_eq!(
                read.map(|r| text(&r.result_code)),
                Some(Some("102".into())),
                "{status}"
            );
        }
        assert!(result_body(&reply(400, "refund.error.json")).is_none());
        assert!(result_body(&reply(500, "check_status.not_found.seed.json")).is_none());
        assert_eq!(ResultCode::parse("101"), ResultCode::Rejected);
        assert_eq!(ResultCode::parse("103"), ResultCode::Other);
    }

    #[test]
    fn an_operations_error_keeps_the_banks_code() {
        for (name, code) in [
            ("refund.error.json", "100"),
            ("cancel.error.json", "100"),
            ("charge.error.json", "100"),
            ("refund.error.seed.json", "400"),
            ("cancel.error.seed.json", "400"),
        ] {
            let reply = Reply {
                status: reqwest::StatusCode::BAD_REQUEST,
                headers: Default::default(),
                body: fixture(name).into(),
            };
            assert!(
                matches!(operation_error(&reply), ProviderError::Rejected { status: 400, code: c, .. } if c == code),
                "{name}"
            );
        }
    }
}
