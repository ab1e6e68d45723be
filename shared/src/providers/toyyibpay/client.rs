//! ToyyibPay's outbound calls: category get-or-create, createBill,
//! getBillTransactions, inactiveBill.

use serde::Deserialize;
use tokio::sync::OnceCell;

use super::wire::Row;
use super::{sanitize, status_from_code, to_sen, transaction_amount, PROVIDER};
use crate::payment::{Checkout, Payment, PaymentStatus, Provider};
use crate::providers::transport::{HttpPolicy, ProviderHttp, Retry};
use crate::providers::{excerpt, Confirmation, CreateRequest, Created, Gateway, ProviderError};
use crate::secrets::SecretString;

/// ToyyibPay's settings, as stored in Secrets Manager.
#[derive(Debug, Clone, Deserialize)]
pub struct ToyyibPayConfig {
    /// `https://dev.toyyibpay.com` or `https://toyyibpay.com`.
    pub base_url: String,
    pub secret_key: SecretString,
    /// The bill category; when absent it is got or created by name once
    /// per process (createCategory answers an existing name with its code).
    #[serde(default)]
    pub category_code: Option<String>,
    #[serde(default = "category_name")]
    pub category_name: String,
    /// The seed's optional `x-signature` HMAC key for callbacks.
    #[serde(default)]
    pub webhook_hmac_secret: Option<SecretString>,
}

fn category_name() -> String {
    "paygate".into()
}

#[derive(Debug)]
pub struct ToyyibPayClient {
    http: ProviderHttp,
    config: ToyyibPayConfig,
    category: OnceCell<String>,
}

impl ToyyibPayClient {
    pub fn new(
        config: ToyyibPayConfig,
        policy: HttpPolicy,
    ) -> Result<ToyyibPayClient, ProviderError> {
        Ok(ToyyibPayClient {
            http: ProviderHttp::new(PROVIDER, policy)?,
            config,
            category: OnceCell::new(),
        })
    }

    pub fn config(&self) -> &ToyyibPayConfig {
        &self.config
    }

    /// Calls `method` with form fields; returns the JSON array ToyyibPay
    /// answers with, or its error as [`ProviderError::Rejected`].
    async fn call(
        &self,
        retry: Retry,
        method: &str,
        form: &[(&str, String)],
    ) -> Result<Vec<serde_json::Value>, ProviderError> {
        match self.call_value(retry, method, form).await? {
            serde_json::Value::Array(rows) => Ok(rows),
            other => Err(ProviderError::Decode {
                provider: PROVIDER,
                reason: format!(
                    "expected an array, got {}",
                    excerpt(other.to_string().as_bytes())
                ),
            }),
        }
    }

    /// One API call; its JSON answer (an array for most methods, an object
    /// for some), or the error its text says.
    async fn call_value(
        &self,
        retry: Retry,
        method: &str,
        form: &[(&str, String)],
    ) -> Result<serde_json::Value, ProviderError> {
        let url = format!(
            "{}/index.php/api/{method}",
            self.config.base_url.trim_end_matches('/')
        );
        let reply = self.http.send(retry, |c| c.post(&url).form(form)).await?;
        answer(reply.status.as_u16(), &reply.body)
    }

    fn secret(&self) -> String {
        self.config.secret_key.expose().clone()
    }

    /// The bill category code.
    pub async fn category(&self) -> Result<String, ProviderError> {
        if let Some(code) = &self.config.category_code {
            return Ok(code.clone());
        }
        self.category
            .get_or_try_init(|| async {
                let answer = self
                    .call_value(
                        Retry::Safe,
                        "createCategory",
                        &[
                            ("catname", self.config.category_name.clone()),
                            ("catdescription", "paygate payments".into()),
                            ("userSecretKey", self.secret()),
                        ],
                    )
                    .await?;
                let rows = category_rows(answer);
                rows.iter()
                    .find_map(|r| {
                        r.get("CategoryCode")
                            .and_then(|c| c.as_str())
                            .map(str::to_string)
                    })
                    .ok_or_else(|| ProviderError::Rejected {
                        provider: PROVIDER,
                        status: 200,
                        code: "no_category".into(),
                        message: msg(&rows),
                    })
            })
            .await
            .cloned()
    }

    /// Deactivates an unpaid bill.
    pub async fn inactive_bill(&self, bill_code: &str) -> Result<(), ProviderError> {
        // The official sample names the field secretKey, other docs
        // userSecretKey: send both.
        let answer = self
            .call_value(
                Retry::Safe,
                "inactiveBill",
                &[
                    ("billCode", bill_code.to_string()),
                    ("secretKey", self.secret()),
                    ("userSecretKey", self.secret()),
                ],
            )
            .await?;
        let (ok, message) = inactive_bill_answer(&answer);
        if ok {
            Ok(())
        } else {
            Err(ProviderError::Rejected {
                provider: PROVIDER,
                status: 200,
                code: "inactive_bill".into(),
                message,
            })
        }
    }
}

/// ToyyibPay's answer to a call: its JSON (an array for most methods, an
/// object for some), or the error its text says. Errors come with HTTP
/// 200 as bracketed words (`[FALSE]`, `[KEY-DID-NOT-EXIST]`, …; fixtures
/// `error.*.txt`) or nothing at all.
fn answer(status: u16, body: &[u8]) -> Result<serde_json::Value, ProviderError> {
    let text = String::from_utf8_lossy(body).trim().to_string();
    let rejected = |code: String, message: String| ProviderError::Rejected {
        provider: PROVIDER,
        status,
        code,
        message,
    };
    if !(200..300).contains(&status) {
        return Err(rejected(format!("http_{status}"), excerpt(body)));
    }
    if text.is_empty() {
        return Err(rejected(
            "empty".into(),
            "ToyyibPay answered with nothing".into(),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) => Ok(value),
        // `[FALSE]`, `[KEY-DID-NOT-EXIST]`: not JSON, an error word.
        Err(_) => Err(rejected(
            text.trim_matches(['[', ']']).chars().take(60).collect(),
            "ToyyibPay refused the request".into(),
        )),
    }
}

/// createBill's answer: the bill's code from `[{"BillCode": ..}]`, or a
/// refusal carrying ToyyibPay's words, whether they come as an array of
/// `{"msg"}` (the official plugin reads them so) or as an object
/// `{"status", "msg"}` (as integrators have seen it; fixtures/toyyibpay).
fn bill_code(answer: serde_json::Value) -> Result<String, ProviderError> {
    let rows = match answer {
        serde_json::Value::Array(rows) => rows,
        object @ serde_json::Value::Object(_) => vec![object],
        other => {
            return Err(ProviderError::Decode {
                provider: PROVIDER,
                reason: format!(
                    "createBill answered {}",
                    excerpt(other.to_string().as_bytes())
                ),
            })
        }
    };
    if let Some(code) = rows
        .iter()
        .find_map(|r| r.get("BillCode").and_then(|c| c.as_str()))
    {
        return Ok(code.to_string());
    }
    let code = rows
        .iter()
        .find_map(|r| r.get("status").and_then(|c| c.as_str()))
        .unwrap_or("create_bill");
    Err(ProviderError::Rejected {
        provider: PROVIDER,
        status: 200,
        code: code.to_string(),
        message: msg(&rows),
    })
}

/// getBillTransactions' rows in our terms: a successful attempt is the
/// payment; otherwise the latest attempt's state (none yet: pending).
fn confirmation(rows: Vec<serde_json::Value>) -> Result<Confirmation, ProviderError> {
    let rows: Vec<Row> = rows
        .into_iter()
        .filter_map(|r| serde_json::from_value(r).ok())
        .collect();
    let paid = rows
        .iter()
        .find(|r| r.status.as_deref().map(str::trim) == Some("1"));
    let chosen = paid.or(rows.last());
    let Some(row) = chosen else {
        return Ok(Confirmation {
            status: PaymentStatus::Pending,
            amount: None,
            provider_status: "no_attempts".into(),
        });
    };
    let word = row.status.clone().unwrap_or_default();
    let amount = match &row.amount {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
    .map(|text| transaction_amount(&text))
    .transpose()
    .map_err(|e| ProviderError::Decode {
        provider: PROVIDER,
        reason: format!("billpaymentAmount: {e}"),
    })?;
    Ok(Confirmation {
        status: status_from_code(&word),
        amount,
        provider_status: word,
    })
}

/// inactiveBill's answer: the object `{"status": "success" | "failed",
/// "result": ".."}` (public reference notes, shared/tests/fixtures), or an
/// array of `{"msg": ..}` as other methods answer. Whether the bill is now
/// inactive, and the provider's words. "Bill is inactive" counts: it is
/// what a repeat gets after a first call whose answer was lost, and the
/// bill can no longer be paid either way.
fn inactive_bill_answer(answer: &serde_json::Value) -> (bool, String) {
    match answer {
        serde_json::Value::Object(o) => {
            let status = o.get("status").and_then(|v| v.as_str()).unwrap_or_default();
            let result = o.get("result").and_then(|v| v.as_str()).unwrap_or_default();
            let inactive = result.trim().eq_ignore_ascii_case("bill is inactive");
            (
                status.eq_ignore_ascii_case("success") || inactive,
                format!("{status}: {result}"),
            )
        }
        serde_json::Value::Array(rows) => {
            let text = msg(rows);
            (text.to_ascii_lowercase().contains("success"), text)
        }
        other => (false, excerpt(other.to_string().as_bytes())),
    }
}

/// createCategory's answer as rows: an array of `{"CategoryCode"}` for a
/// new category, an object `{"status", "CategoryCode"}` when the name
/// exists (fixtures/toyyibpay/create_category.reply.*.json).
fn category_rows(answer: serde_json::Value) -> Vec<serde_json::Value> {
    match answer {
        serde_json::Value::Array(rows) => rows,
        object @ serde_json::Value::Object(_) => vec![object],
        _ => Vec::new(),
    }
}

fn msg(rows: &[serde_json::Value]) -> String {
    rows.iter()
        .find_map(|r| r.get("msg").and_then(|m| m.as_str()))
        .unwrap_or_default()
        .to_string()
}

#[async_trait::async_trait]
impl Gateway for ToyyibPayClient {
    fn provider(&self) -> Provider {
        Provider::Toyyibpay
    }

    /// createBill with our payment id as `billExternalReferenceNo`. Not
    /// repeated after it may have arrived: ToyyibPay would make a second bill.
    async fn create(&self, request: &CreateRequest<'_>) -> Result<Created, ProviderError> {
        let sen = to_sen(request.amount)?;
        let category = self.category().await?;
        let id = request.payment_id.to_string();
        let name = sanitize(request.description.unwrap_or("paygate payment"), 30);
        let description = sanitize(request.description.unwrap_or(&id), 100);
        let channel = match request.method {
            Some("card") => "1",
            Some("both") => "2",
            _ => "0",
        };
        let customer = request.customer;
        let payor_info = customer.email.is_some() || customer.name.is_some();
        let form = [
            ("userSecretKey", self.secret()),
            ("categoryCode", category),
            (
                "billName",
                if name.is_empty() {
                    "paygate payment".into()
                } else {
                    name
                },
            ),
            (
                "billDescription",
                if description.is_empty() {
                    "paygate payment".into()
                } else {
                    description
                },
            ),
            ("billPriceSetting", "1".into()),
            ("billPayorInfo", if payor_info { "1" } else { "0" }.into()),
            ("billAmount", sen.to_string()),
            (
                "billReturnUrl",
                request.return_url.unwrap_or_default().to_string(),
            ),
            ("billCallbackUrl", request.webhook_url.to_string()),
            ("billExternalReferenceNo", id),
            ("billTo", customer.name.clone().unwrap_or_default()),
            ("billEmail", customer.email.clone().unwrap_or_default()),
            ("billPhone", customer.phone.clone().unwrap_or_default()),
            ("billPaymentChannel", channel.into()),
            // The bill stops taking money when the payment expires.
            ("billExpiryDate", super::expiry_date(request.expires_at)?),
        ];
        let answer = self.call_value(Retry::NotSent, "createBill", &form).await?;
        let code = bill_code(answer)?;
        Ok(Created {
            provider_reference: code.parse().map_err(|_| ProviderError::Decode {
                provider: PROVIDER,
                reason: "BillCode is not a usable reference".into(),
            })?,
            checkout: Checkout {
                url: Some(format!(
                    "{}/{code}",
                    self.config.base_url.trim_end_matches('/')
                )),
                ..Checkout::default()
            },
            expires_at: None,
        })
    }

    /// On expiry, the bill is made inactive (inactiveBill): it can no
    /// longer be paid.
    async fn close(&self, payment: &Payment) -> Result<bool, ProviderError> {
        self.cancel(payment).await.map(|()| true)
    }

    /// inactiveBill: the bill can no longer be paid.
    async fn cancel(&self, payment: &Payment) -> Result<(), ProviderError> {
        let code = crate::providers::provider_ref(payment, PROVIDER)?;
        self.inactive_bill(code).await
    }

    /// getBillTransactions: a successful attempt is the payment; otherwise
    /// the latest attempt's state (none yet: pending).
    async fn status(&self, payment: &Payment) -> Result<Confirmation, ProviderError> {
        let code = crate::providers::provider_ref(payment, PROVIDER)?;
        let rows = self
            .call(
                Retry::Safe,
                "getBillTransactions",
                &[
                    ("userSecretKey", self.secret()),
                    ("billCode", code.to_string()),
                ],
            )
            .await?;
        confirmation(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> serde_json::Value {
        crate::providers::fixture_json("toyyibpay", name)
    }

    #[test]
    fn a_category_code_is_read_from_a_new_or_an_existing_category() {
        for (name, code) in [
            ("create_category.reply.json", "j0tzqhka"),
            ("create_category.reply.exists.object.json", "noid5f4j"),
        ] {
            let rows = category_rows(fixture(name));
            let found = rows
                .iter()
                .find_map(|r| r.get("CategoryCode").and_then(|c| c.as_str()));
            assert_eq!(found, Some(code), "{name}");
        }
    }

    #[test]
    fn inactive_bill_answers_as_an_object_or_an_array() {
        assert!(inactive_bill_answer(&fixture("inactive_bill.reply.success.json")).0);
        // Already inactive (a repeat after a lost answer): done all the same.
        assert!(inactive_bill_answer(&fixture("inactive_bill.reply.inactive.json")).0);
        let (ok, message) = inactive_bill_answer(&fixture("inactive_bill.reply.pending.json"));
        assert!(!ok, "a bill with a payment in progress stays payable");
        assert!(message.starts_with("failed: "), "{message}");
        assert!(inactive_bill_answer(&serde_json::json!([{"msg": "Success"}])).0);
        assert!(!inactive_bill_answer(&serde_json::json!([{"msg": "nope"}])).0);
    }

    fn text(name: &str) -> Vec<u8> {
        crate::providers::fixture("toyyibpay", name)
    }

    /// Every error word integrators have seen (fixtures `error.*.txt`) is
    /// a refusal carrying the word, as is an empty answer; JSON is data.
    #[test]
    fn toyyibpays_error_words_are_refusals() {
        for (name, word) in [
            ("error.false.txt", "FALSE"),
            ("error.key_did_not_exist.txt", "KEY-DID-NOT-EXIST"),
            (
                "error.category_does_not_exist.txt",
                "CATEGORY-DOES-NOT-EXIST",
            ),
            ("error.user_is_not_active.txt", "USER-IS-NOT-ACTIVE"),
        ] {
            let err = answer(200, &text(name)).unwrap_err();
            assert!(
                matches!(&err, ProviderError::Rejected { code, .. } if code == word),
                "{name}: {err:?}"
            );
            assert!(
                !err.outcome_unknown(),
                "{name}: a refusal, nothing was made"
            );
        }
        assert!(answer(200, b"  ").is_err());
        assert!(answer(200, &text("create_bill.reply.json")).is_ok());
    }

    /// createBill's code from the documented reply; a refusal, as an array
    /// of `{"msg"}` or as an object `{"status", "msg"}`, is a rejection
    /// carrying its words, never an answer that could not be read (which
    /// would leave the create's outcome unknown).
    #[test]
    fn a_create_bill_refusal_carries_its_message_in_either_shape() {
        assert_eq!(
            bill_code(fixture("create_bill.reply.json")).unwrap(),
            "gcbhict9"
        );
        for refusal in [
            fixture("create_bill.reply.error_object.described.json"),
            serde_json::json!([{"msg": "Bill name or description contains characters that are not allowed"}]),
        ] {
            let err = bill_code(refusal.clone()).unwrap_err();
            assert!(
                matches!(&err, ProviderError::Rejected { message, .. } if message.starts_with("Bill name")),
                "{refusal}: {err:?}"
            );
            assert!(!err.outcome_unknown());
        }
    }

    /// The documented row and the two observed ones: a success is the
    /// payment, in ringgit; a failed attempt leaves the bill payable.
    #[test]
    fn bill_transactions_are_read_as_documented_and_observed() {
        let rows = |name: &str| match fixture(name) {
            serde_json::Value::Array(rows) => rows,
            other => panic!("{name}: {other}"),
        };
        let money = |sen| crate::money::Money::new(sen, crate::money::Currency::Myr).unwrap();
        for (name, status, amount) in [
            (
                "get_bill_transactions.reply.json",
                PaymentStatus::Completed,
                1_000,
            ),
            (
                "get_bill_transactions.reply.observed_2024.json",
                PaymentStatus::Completed,
                100,
            ),
            (
                "get_bill_transactions.reply.observed_2020.json",
                PaymentStatus::Pending,
                200,
            ),
        ] {
            let c = confirmation(rows(name)).unwrap();
            assert_eq!(
                (c.status, c.amount),
                (status, Some(money(amount))),
                "{name}"
            );
        }
        assert_eq!(
            confirmation(Vec::new()).unwrap().provider_status,
            "no_attempts"
        );
    }
}
