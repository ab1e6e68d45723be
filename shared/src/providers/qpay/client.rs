//! QPay v2's outbound calls.

use serde::{Deserialize, Serialize};

use super::wire::{CheckReply, InvoiceReply, Row, TokenReply};
use super::PaymentState;
use super::{seconds_left, to_wire_amount, PROVIDER};
use crate::money::{Currency, Money};
use crate::payment::{Checkout, Payment, PaymentStatus, Provider};
use crate::providers::session::{self, Held, SharedLogin};
use crate::providers::transport::{HttpPolicy, ProviderHttp, Reply, Retry};
use crate::providers::{
    excerpt, reported_amount, Confirmation, CreateRequest, Created, Gateway, ProviderError,
};
use crate::secrets::SecretString;

/// QPay's settings, as stored in Secrets Manager.
#[derive(Debug, Clone, Deserialize)]
pub struct QpayConfig {
    /// `https://merchant-sandbox.qpay.mn` or `https://merchant.qpay.mn`.
    pub base_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The merchant's invoice template code.
    pub invoice_code: String,
}

/// Tokens are renewed this long before QPay's expiry.
const MARGIN: i64 = 60;

/// QPay's tokens, shared by every instance (`SharedLogin`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Tokens {
    #[serde(with = "crate::secrets::exposed")]
    access: SecretString,
    #[serde(with = "crate::secrets::exposed")]
    refresh: SecretString,
    /// Unix seconds, less the margin.
    refresh_until: i64,
}

#[derive(Debug)]
pub struct QpayClient {
    http: ProviderHttp,
    config: QpayConfig,
    tokens: SharedLogin<Tokens>,
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// When a token stops being used: QPay's expiry (an instant or a duration)
/// less the margin, in Unix seconds.
fn until(expires_in: i64) -> i64 {
    let now = now_unix();
    now + (seconds_left(expires_in, now) - MARGIN).max(0)
}

fn error(reply: &Reply) -> ProviderError {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    let body: Option<Body> = serde_json::from_slice(&reply.body).ok();
    ProviderError::Rejected {
        provider: PROVIDER,
        status: reply.status.as_u16(),
        code: body
            .as_ref()
            .and_then(|b| b.error.clone())
            .unwrap_or_else(|| format!("http_{}", reply.status.as_u16())),
        message: body
            .and_then(|b| b.message)
            .unwrap_or_else(|| excerpt(&reply.body)),
    }
}

impl QpayClient {
    pub fn new(config: QpayConfig, policy: HttpPolicy) -> Result<QpayClient, ProviderError> {
        let tokens = SharedLogin::new("qpay", PROVIDER, policy.sessions.clone());
        Ok(QpayClient {
            http: ProviderHttp::new(PROVIDER, policy)?,
            config,
            tokens,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// The access token: this instance's, or the one every instance shares;
    /// refreshed with the refresh token while it lives, else a new login
    /// (QPay asks not to request tokens needlessly). `refused`: the one QPay
    /// just refused.
    async fn access(&self, refused: Option<&Held<Tokens>>) -> Result<Held<Tokens>, ProviderError> {
        self.tokens
            .get(refused, |previous| async move {
                let refreshable = previous
                    .filter(|t| now_unix() < t.refresh_until)
                    .map(|t| t.refresh);
                // A refresh is used only when it answers a whole token
                // reply; anything else (a refusal, QPay's documented `{}`,
                // a reply without a refresh token) falls back to a login.
                let refreshed = match refreshable {
                    Some(refresh) => {
                        let url = self.url("auth/refresh");
                        let r = self
                            .http
                            .send(Retry::Safe, |c| c.post(&url).bearer_auth(refresh.expose()))
                            .await?;
                        r.status
                            .is_success()
                            .then(|| TokenReply::of_refresh(&r.body))
                            .flatten()
                    }
                    None => None,
                };
                let t = match refreshed {
                    Some(t) => t,
                    None => {
                        let url = self.url("auth/token");
                        let r = self
                            .http
                            .send(Retry::Safe, |c| {
                                c.post(&url).basic_auth(
                                    &self.config.client_id,
                                    Some(self.config.client_secret.expose()),
                                )
                            })
                            .await?;
                        if !r.status.is_success() {
                            return Err(ProviderError::Auth {
                                provider: PROVIDER,
                                reason: format!("token refused: HTTP {}", r.status.as_u16()),
                            });
                        }
                        r.json::<TokenReply>(PROVIDER)?
                    }
                };
                let access_until = time::OffsetDateTime::from_unix_timestamp(until(t.expires_in))
                    .map_err(|e| ProviderError::Decode {
                    provider: PROVIDER,
                    reason: format!("expires_in: {e}"),
                })?;
                let tokens = Tokens {
                    access: t.access_token.into(),
                    refresh: t.refresh_token.into(),
                    refresh_until: until(t.refresh_expires_in),
                };
                Ok((tokens, access_until))
            })
            .await
    }

    /// A bearer call; a 401 renews the token once.
    async fn authed(
        &self,
        retry: Retry,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        session::authed(self, retry, |c, t| build(c, t.access.expose())).await
    }

    async fn rows(&self, invoice: &str) -> Result<Vec<Row>, ProviderError> {
        let url = self.url("payment/check");
        let body = serde_json::json!({
            "object_type": "INVOICE",
            "object_id": invoice,
            "offset": {"page_number": 1, "page_limit": 100},
        });
        let reply = self
            .authed(Retry::Safe, |c, t| c.post(&url).bearer_auth(t).json(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(error(&reply));
        }
        Ok(reply.json::<CheckReply>(PROVIDER)?.rows)
    }
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl Gateway for QpayClient {
    fn provider(&self) -> Provider {
        Provider::Qpay
    }

    /// An invoice whose callback URL names our payment. `sender_invoice_no`
    /// is our payment's ULID (unique, within QPay's 45 characters).
    async fn create(&self, request: &CreateRequest<'_>) -> Result<Created, ProviderError> {
        let amount: serde_json::Value = serde_json::from_str(&to_wire_amount(request.amount)?)
            .map_err(|e| ProviderError::Decode {
                provider: PROVIDER,
                reason: e.to_string(),
            })?;
        let body = serde_json::json!({
            "invoice_code": self.config.invoice_code,
            "sender_invoice_no": request.payment_id.ulid().to_string(),
            "invoice_receiver_code": "terminal",
            "invoice_description": request.description.unwrap_or("paygate payment"),
            "amount": amount,
            "callback_url": format!("{}?payment_id={}", request.webhook_url, request.payment_id),
        });
        let url = self.url("invoice");
        let reply = self
            .authed(Retry::NotSent, |c, t| {
                c.post(&url).bearer_auth(t).json(&body)
            })
            .await?;
        if !reply.status.is_success() {
            return Err(error(&reply));
        }
        let invoice: InvoiceReply = reply.json(PROVIDER)?;
        Ok(Created {
            provider_reference: invoice
                .invoice_id
                .parse()
                .map_err(|_| ProviderError::Decode {
                    provider: PROVIDER,
                    reason: "invoice_id is not a usable reference".into(),
                })?,
            checkout: Checkout {
                url: invoice.short_url,
                qr_text: invoice.qr_text,
                qr_image: invoice.qr_image,
                links: invoice.urls,
                ..Checkout::default()
            },
            expires_at: None,
        })
    }

    /// payment/check: what was PAID is the payment; nothing yet is pending
    /// (a FAILED attempt does not close an invoice).
    async fn status(&self, payment: &Payment) -> Result<Confirmation, ProviderError> {
        let invoice = reference(payment)?;
        let rows = self.rows(invoice).await?;
        let paid: Vec<&Row> = rows
            .iter()
            .filter(|r| r.state() == PaymentState::Paid)
            .collect();
        let refunded: Vec<&Row> = rows.iter().filter(|r| is_refunded(r)).collect();
        if paid.is_empty() && !refunded.is_empty() {
            // Paid, then given back: a refund, never money to credit.
            return Ok(Confirmation {
                status: PaymentStatus::Refunded,
                amount: Some(total_of(&refunded)?),
                provider_status: "REFUNDED".into(),
            });
        }
        if paid.is_empty() {
            let word = rows
                .last()
                .map(|r| r.payment_status.clone())
                .unwrap_or_else(|| "NEW".into());
            return Ok(Confirmation {
                status: PaymentStatus::Pending,
                amount: None,
                provider_status: word,
            });
        }
        Ok(Confirmation {
            status: PaymentStatus::Completed,
            amount: Some(total_of(&paid)?),
            provider_status: "PAID".into(),
        })
    }

    /// payment/check's REFUNDED rows are refunds of whole payments.
    async fn refunds(
        &self,
        payment: &Payment,
    ) -> Result<crate::providers::ProviderRefunds, ProviderError> {
        let rows = self.rows(reference(payment)?).await?;
        let refunded: Vec<&Row> = rows.iter().filter(|r| is_refunded(r)).collect();
        Ok(crate::providers::ProviderRefunds::Total(
            if refunded.is_empty() {
                Money::zero(Currency::Mnt)
            } else {
                total_of(&refunded)?
            },
        ))
    }

    /// On expiry, the invoice is deleted as a cancel deletes it.
    async fn close(&self, payment: &Payment) -> Result<bool, ProviderError> {
        self.cancel(payment).await.map(|()| true)
    }

    /// An unpaid invoice is cancelled with `DELETE /v2/invoice/{id}`, which
    /// also stops a card payment still in progress on it; `payment/cancel`
    /// applies to paid card payments only (QPay answers PAYMENT_NOT_PAID
    /// otherwise). A paid invoice is not cancelled: it is refunded.
    async fn cancel(&self, payment: &Payment) -> Result<(), ProviderError> {
        let invoice = reference(payment)?;
        let rows = self.rows(invoice).await?;
        if rows.iter().any(|r| r.state() == PaymentState::Paid) {
            return Err(ProviderError::Rejected {
                provider: PROVIDER,
                status: 409,
                code: "INVOICE_PAID".into(),
                message: "the invoice is paid; refund it instead".into(),
            });
        }
        let url = self.url(&format!("invoice/{invoice}"));
        let reply = self
            .authed(Retry::Safe, |c, t| c.delete(&url).bearer_auth(t))
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(error(&reply))
        }
    }

    /// Whole card payments only: each PAID card payment is refunded.
    async fn refund(
        &self,
        payment: &Payment,
        _amount: Money,
        refund_id: &str,
    ) -> Result<(), ProviderError> {
        let rows = self.rows(reference(payment)?).await?;
        let paid: Vec<&Row> = rows
            .iter()
            .filter(|r| r.state() == PaymentState::Paid)
            .collect();
        if paid.is_empty()
            || paid
                .iter()
                .any(|r| r.payment_type.as_deref() != Some("CARD"))
        {
            return Err(ProviderError::Unsupported {
                provider: PROVIDER,
                operation: "refund a payment that was not made by card",
            });
        }
        let mut refunded = 0;
        for row in &paid {
            let url = self.url(&format!("payment/refund/{}", text(&row.payment_id)));
            let note = serde_json::json!({"note": format!("paygate refund {refund_id}")});
            // Not retried once it may have arrived (a 503 included): a
            // repeat would answer PAYMENT_NOT_REFUNDABLE for a refund that
            // was made, which must not read as a refusal. payment/check
            // settles a lost answer.
            let answer = self
                .authed(Retry::NotSent, |c, t| {
                    c.delete(&url).bearer_auth(t).json(&note)
                })
                .await
                .and_then(|reply| {
                    if reply.status.is_success() {
                        Ok(())
                    } else {
                        Err(error(&reply))
                    }
                });
            match answer {
                Ok(()) => refunded += 1,
                // Money already went back on an earlier row: whatever this
                // row's answer, the refund is neither done nor refused.
                Err(e) if refunded > 0 => {
                    return Err(ProviderError::Ambiguous {
                        provider: PROVIDER,
                        reason: format!(
                            "{refunded} of {} paid rows refunded, then: {e}",
                            paid.len()
                        ),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A row QPay reports as refunded (`REFUNDED`, also seen as `REFUND`).
fn is_refunded(row: &Row) -> bool {
    row.state() == PaymentState::Refunded
}

impl Row {
    fn state(&self) -> PaymentState {
        PaymentState::parse(&self.payment_status)
    }
}

/// The sum of the rows' amounts, in their currency (MNT when unsaid).
fn total_of(rows: &[&Row]) -> Result<Money, ProviderError> {
    let mut total = Money::zero(Currency::Mnt);
    for row in rows {
        let currency = match row.payment_currency.as_deref() {
            Some(c) => Currency::from_code_ignore_case(c).map_err(|e| ProviderError::Decode {
                provider: PROVIDER,
                reason: e.to_string(),
            })?,
            None => Currency::Mnt,
        };
        let amount = row.payment_amount.as_ref();
        let amount = reported_amount(PROVIDER, "payment_amount", amount, currency)?
            .unwrap_or(Money::zero(currency));
        total = total
            .checked_add(amount)
            .map_err(|e| ProviderError::Decode {
                provider: PROVIDER,
                reason: e.to_string(),
            })?;
    }
    Ok(total)
}

fn reference(payment: &Payment) -> Result<&str, ProviderError> {
    crate::providers::provider_ref(payment, PROVIDER)
}

session::logged_in!(QpayClient, Tokens, access);

#[cfg(test)]
mod wire_tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        crate::providers::fixture("qpay", name)
    }

    #[test]
    fn check_rows_name_the_type_either_way() {
        #[derive(Deserialize)]
        struct Check {
            rows: Vec<Row>,
        }
        for (file, kind) in [
            ("payment_check.reply.paid.p2p.json", "P2P"),
            ("payment_check.reply.paid.card.json", "CARD"),
            ("payment_check.reply.paid.transaction_type.json", "P2P"),
        ] {
            let check: Check = serde_json::from_slice(&fixture(file)).unwrap();
            assert_eq!(check.rows[0].payment_type.as_deref(), Some(kind), "{file}");
            assert_eq!(check.rows[0].payment_status, "PAID");
        }
        let unpaid: Check =
            serde_json::from_slice(&fixture("payment_check.reply.unpaid.json")).unwrap();
        assert!(unpaid.rows.is_empty());
    }

    /// The sheet's token reply and a production one are read, their
    /// expiries instants; a refresh answered as the developer page shows
    /// it (`{}`), or without a refresh token, is no token reply: the
    /// client logs in again.
    #[test]
    fn token_replies_are_read_and_an_empty_refresh_is_not_one() {
        for file in ["token.reply.json", "token.reply.live.json"] {
            let t: TokenReply = serde_json::from_slice(&fixture(file)).unwrap();
            assert!(t.expires_in > 1_000_000_000, "{file}");
            assert!(TokenReply::of_refresh(&fixture(file)).is_some(), "{file}");
        }
        assert!(TokenReply::of_refresh(&fixture("auth_refresh.reply.official.json")).is_none());
        assert!(TokenReply::of_refresh(
            br#"{"access_token": "a", "expires_in": 1, "refresh_expires_in": 1}"#
        )
        .is_none());
    }

    /// The documented invoice reply's bank apps reach the payer's page;
    /// a malformed one is left out without failing the invoice.
    #[test]
    fn the_invoice_replys_bank_apps_are_read() {
        let reply: InvoiceReply = serde_json::from_slice(&fixture("invoice.reply.json")).unwrap();
        assert_eq!(reply.urls.len(), 10);
        assert_eq!(reply.urls[0].name, "Khan bank");
        assert_eq!(
            reply.urls[0].logo.as_deref(),
            Some("https://qpay.mn/q/logo/khanbank.png")
        );
        assert!(reply.urls[0].link.starts_with("khanbank://q?qPay_QRcode="));
        let odd: InvoiceReply = serde_json::from_str(
            r#"{"invoice_id": "x", "urls": [{"name": "A", "link": "a://"}, {"description": "no name"}, 7]}"#,
        )
        .unwrap();
        assert_eq!(odd.urls.len(), 1);
        let none: InvoiceReply =
            serde_json::from_str(r#"{"invoice_id": "x", "urls": null}"#).unwrap();
        assert!(none.urls.is_empty());
    }
}
