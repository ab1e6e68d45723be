//! Paygram's outbound calls. The API token is a path segment, so URLs are
//! never logged (the HTTP layer drops them from errors).

use serde::{Deserialize, Serialize};

use super::wire::{InvoiceInfoRequest, InvoiceReply, IssueInvoice};
use super::{
    currency_code, currency_from_wire, status_code_from_wire, status_from_code, to_wire_amount,
    PROVIDER,
};
use crate::payment::{Checkout, Payment, Provider};
use crate::providers::transport::{HttpPolicy, ProviderHttp, Reply, Retry};
use crate::providers::{
    excerpt, reported_amount, Confirmation, CreateRequest, Created, Gateway, ProviderError,
};
use crate::secrets::SecretString;

/// Paygram's settings, as stored in Secrets Manager.
#[derive(Debug, Clone, Deserialize)]
pub struct PaygramConfig {
    pub base_url: String,
    pub api_token: SecretString,
    /// The secret path segment of our callback URL
    /// (`/webhooks/paygram/{secret}`), registered with Paygram.
    pub callback_secret: SecretString,
    #[serde(default)]
    pub merchant_type: Option<i64>,
}

#[derive(Debug)]
pub struct PaygramClient {
    http: ProviderHttp,
    config: PaygramConfig,
}

impl PaygramClient {
    pub fn new(config: PaygramConfig, policy: HttpPolicy) -> Result<PaygramClient, ProviderError> {
        Ok(PaygramClient {
            http: ProviderHttp::new(PROVIDER, policy)?,
            config,
        })
    }

    pub fn config(&self) -> &PaygramConfig {
        &self.config
    }

    fn url(&self, method: &str) -> String {
        format!(
            "{}/{}/{method}",
            self.config.base_url.trim_end_matches('/'),
            self.config.api_token.expose()
        )
    }

    async fn call<T: Serialize>(
        &self,
        retry: Retry,
        method: &str,
        body: &T,
    ) -> Result<InvoiceReply, ProviderError> {
        let url = self.url(method);
        let reply = self.http.send(retry, |c| c.post(&url).json(body)).await?;
        read(&reply)
    }
}

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
    let code = parsed
        .response_code
        .unwrap_or(if reply.status.is_success() { 200 } else { 0 });
    match code {
        200 if parsed.success != Some(false) => Ok(parsed),
        552 => Err(ProviderError::Auth {
            provider: PROVIDER,
            reason: parsed
                .message
                .unwrap_or_else(|| "token refused (552)".into()),
        }),
        553 => Err(ProviderError::NotFound {
            provider: PROVIDER,
            reference: parsed.invoice_code.unwrap_or_default(),
        }),
        other => Err(ProviderError::Rejected {
            provider: PROVIDER,
            status: reply.status.as_u16(),
            code: other.to_string(),
            message: parsed.message.unwrap_or_default(),
        }),
    }
}

#[async_trait::async_trait]
impl Gateway for PaygramClient {
    fn provider(&self) -> Provider {
        Provider::Paygram
    }

    /// `requestId` is a number derived from our payment id, `callbackData`
    /// the payment id itself. Paygram answers a repeated requestId with 551
    /// (duplicate) and no invoice, so a create that may have arrived is not
    /// sent again.
    async fn create(&self, request: &CreateRequest<'_>) -> Result<Created, ProviderError> {
        let amount = serde_json::value::RawValue::from_string(to_wire_amount(request.amount)?)
            .map_err(|e| ProviderError::Decode {
                provider: PROVIDER,
                reason: e.to_string(),
            })?;
        let id = request.payment_id.to_string();
        let reply = self
            .call(
                Retry::NotSent,
                "IssueInvoice",
                &IssueInvoice {
                    request_id: super::request_id(request.payment_id),
                    currency_code: currency_code(request.amount.currency())?,
                    amount: &amount,
                    callback_data: &id,
                    merchant_type: self.config.merchant_type,
                },
            )
            .await?;
        let code = reply.invoice_code.ok_or_else(|| ProviderError::Decode {
            provider: PROVIDER,
            reason: "IssueInvoice answered without invoiceCode".into(),
        })?;
        Ok(Created {
            provider_reference: code.parse().map_err(|_| ProviderError::Decode {
                provider: PROVIDER,
                reason: "invoiceCode is not a usable reference".into(),
            })?,
            checkout: Checkout {
                url: reply.pay_url,
                ..Checkout::default()
            },
            expires_at: None,
        })
    }

    async fn status(&self, payment: &Payment) -> Result<Confirmation, ProviderError> {
        let code = crate::providers::provider_ref(payment, PROVIDER)?;
        let reply = self
            .call(
                Retry::Safe,
                "InvoiceInfo",
                &InvoiceInfoRequest { invoice_code: code },
            )
            .await?;
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
        let amount = reported_amount(PROVIDER, "amount", reply.amount.as_ref(), currency)?;
        Ok(Confirmation {
            status: status_from_code(status),
            amount,
            provider_status: status.to_string(),
        })
    }
}
