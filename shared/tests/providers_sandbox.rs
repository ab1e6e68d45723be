//! Provider clients over real HTTP against the sandbox: the happy path,
//! token expiry, retries on 5xx, no retry on 4xx, hangs cut by timeouts.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use shared::ids::PaymentId;
use shared::money::{Currency, Money};
use shared::payment::{ChangeSource, Customer, NewPayment, Payment, PaymentStatus, Provider};
use shared::providers::casino::{CasinoClient, CasinoConfig};
use shared::providers::directpay::{CashIn, DirectPayApi, DirectPayClient, DirectPayConfig};
use shared::providers::paygram::{PaygramApi, PaygramClient, PaygramConfig};
use shared::providers::transport::HttpPolicy;
use shared::providers::{CreateRequest, Gateway, ProviderError};
use shared::secrets::Secret;
use time::OffsetDateTime;

fn policy() -> HttpPolicy {
    HttpPolicy {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(500),
        max_attempts: 3,
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        health: None,
        sessions: None,
    }
}

struct Sandbox {
    running: sandbox::Running,
    http: reqwest::Client,
}

impl Sandbox {
    async fn start() -> Sandbox {
        Sandbox {
            running: sandbox::start("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap(),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }

    async fn control(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "control {path}: {}", r.status());
        r.json().await.unwrap_or(serde_json::Value::Null)
    }

    async fn fault(&self, path: &str, mode: &str, count: u32, status: u16) {
        self.control(
            "/_sandbox/faults",
            json!({"path": path, "mode": mode, "count": count, "status": status}),
        )
        .await;
    }

    fn calls(&self, prefix: &str) -> u32 {
        self.running.state.calls(prefix)
    }

    fn directpay(&self) -> DirectPayClient {
        self.directpay_api(DirectPayApi::Current)
    }

    fn directpay_api(&self, api: DirectPayApi) -> DirectPayClient {
        self.directpay_on(api, policy())
    }

    fn directpay_with(&self, policy: HttpPolicy) -> DirectPayClient {
        self.directpay_on(DirectPayApi::Current, policy)
    }

    fn directpay_on(&self, api: DirectPayApi, policy: HttpPolicy) -> DirectPayClient {
        DirectPayClient::new(
            DirectPayConfig {
                base_url: self.url("/directpay/api"),
                username: sandbox::directpay::USERNAME.into(),
                password: sandbox::directpay::PASSWORD.to_string().into(),
                api,
            },
            policy,
        )
        .unwrap()
    }

    /// A Paygram client of `api`, at the sandbox's base for that API.
    fn paygram(&self, api: PaygramApi, token: &str) -> PaygramClient {
        PaygramClient::new(
            PaygramConfig {
                api,
                base_url: Some(match api {
                    PaygramApi::Official => self.url("/paygram/PayGramUsers/"),
                    PaygramApi::Legacy => self.url("/paygram"),
                }),
                api_token: token.to_string().into(),
                callback_secret: "cb-secret".to_string().into(),
                user_cli_id: Some("merchant-user".into()),
                merchant_type: None,
            },
            policy(),
        )
        .unwrap()
    }

    fn casino(&self, tokens: &[(&str, &str)]) -> CasinoClient {
        // The sandbox's bridge deduplicates by nonce.
        self.casino_with(tokens, true, policy())
    }

    fn casino_with(
        &self,
        tokens: &[(&str, &str)],
        nonce_dedup: bool,
        policy: HttpPolicy,
    ) -> CasinoClient {
        CasinoClient::new(
            CasinoConfig {
                lookup_url: self.url("/casino/lookup"),
                base_url: self.url("/casino"),
                tokens: Secret::new(
                    tokens
                        .iter()
                        .map(|(m, t)| (m.to_string(), t.to_string()))
                        .collect::<HashMap<_, _>>(),
                ),
                platform: 1,
                nonce_dedup,
            },
            policy,
        )
        .unwrap()
    }
}

fn php(minor: i64) -> Money {
    Money::new(minor, Currency::Php).unwrap()
}

fn payment_for(provider: Provider, amount: Money, provider_ref: &str) -> Payment {
    Payment::new(
        NewPayment {
            id: PaymentId::generate(),
            merchant_id: "m_test".parse().unwrap(),
            provider,
            amount,
            reference: "ORD-1".parse().unwrap(),
            description: None,
            customer: Customer::default(),
            return_url: None,
            method: None,
            wallet_user_id: None,
            casino_username: None,
            provider_reference: Some(provider_ref.parse().unwrap()),
            checkout: Default::default(),
            page_token: None,
            expires_at: OffsetDateTime::now_utc(),
        },
        ChangeSource::Api,
        OffsetDateTime::now_utc(),
    )
}

async fn cash_in(client: &DirectPayClient, amount: Money) -> String {
    client
        .create_cash_in(&CashIn {
            payment_id: PaymentId::generate(),
            amount,
            webhook_url: "http://127.0.0.1:9/webhooks/directpay",
            redirect_url: "https://shop.example.com/thanks",
        })
        .await
        .unwrap()
        .transaction_id
}

#[tokio::test]
async fn directpay_creates_and_reports_status() {
    let sb = Sandbox::start().await;
    let client = sb.directpay();
    let id = cash_in(&client, php(10_050)).await;
    let pending = client.status(&id).await.unwrap();
    assert_eq!(pending.status, PaymentStatus::Pending);
    assert_eq!(pending.amount, Some(php(10_050)));
    // The amount went out as pesos, from the exact decimal.
    assert_eq!(
        sb.running.state.directpay.transactions.lock().unwrap()[&id].amount,
        "100.5"
    );
    sb.control(
        &format!("/_sandbox/directpay/transactions/{id}/status"),
        json!({"status": "SUCCESS", "callback": "none"}),
    )
    .await;
    let paid = client.status(&id).await.unwrap();
    assert_eq!(paid.status, PaymentStatus::Completed);
    assert_eq!(paid.provider_status, "SUCCESS");
    // One login served every call.
    assert_eq!(*sb.running.state.directpay.logins.lock().unwrap(), 1);
}

#[tokio::test]
async fn directpay_logs_in_again_when_its_token_expires() {
    let sb = Sandbox::start().await;
    let client = sb.directpay();
    let id = cash_in(&client, php(500)).await;
    sb.control("/_sandbox/directpay/expire-tokens", json!({}))
        .await;
    let status = client.status(&id).await.unwrap();
    assert_eq!(status.status, PaymentStatus::Pending);
    assert_eq!(*sb.running.state.directpay.logins.lock().unwrap(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let sb = Sandbox::start().await;
    let client = sb.directpay();
    let id = cash_in(&client, php(500)).await;
    let path = "/directpay/api/cashin_transactions_status/";
    sb.fault(path, "fail", 2, 503).await;
    let status = client.status(&id).await.unwrap();
    assert_eq!(status.status, PaymentStatus::Pending);
    assert_eq!(sb.calls(path), 3, "two failures and the success");
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let sb = Sandbox::start().await;
    let client = sb.directpay();
    let id = cash_in(&client, php(500)).await;
    let path = "/directpay/api/cashin_transactions_status/";
    sb.fault(path, "fail", 1, 400).await;
    let err = client.status(&id).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Rejected { status: 400, .. }),
        "{err:?}"
    );
    assert_eq!(sb.calls(path), 1);
    // An unknown transaction is DirectPay's 404 in JSON: no such
    // transaction (pending until it knows one), not a refusal; not retried.
    let err = client.status("DP-NOPE").await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err:?}");
    assert_eq!(sb.calls(path), 2);
}

#[tokio::test]
async fn directpay_logs_in_with_or_without_a_session_cookie() {
    let sb = Sandbox::start().await;
    for session_cookie in [true, false] {
        sb.control(
            "/_sandbox/directpay/settings",
            json!({"session_cookie": session_cookie}),
        )
        .await;
        let client = sb.directpay();
        let id = cash_in(&client, php(10_000)).await;
        let status = client.status(&id).await.unwrap();
        assert_eq!(status.status, PaymentStatus::Pending, "{session_cookie}");
    }
    assert_eq!(*sb.running.state.directpay.logins.lock().unwrap(), 2);
}

#[tokio::test]
async fn directpay_reads_a_cash_in_under_data_too() {
    let sb = Sandbox::start().await;
    sb.control(
        "/_sandbox/directpay/settings",
        json!({"cash_in_under_data": true}),
    )
    .await;
    let client = sb.directpay();
    let created = client
        .create_cash_in(&CashIn {
            payment_id: PaymentId::generate(),
            amount: php(10_000),
            webhook_url: "http://127.0.0.1:9/webhooks/directpay",
            redirect_url: "https://shop.example.com/thanks",
        })
        .await
        .unwrap();
    assert!(created.transaction_id.starts_with("DP"));
    assert!(created.link.is_some() && created.qr_text.is_some());
}

#[tokio::test]
async fn a_directpay_path_it_does_not_serve_is_an_error_not_a_missing_payment() {
    let sb = Sandbox::start().await;
    // A base URL one segment off: every path is DirectPay's HTML 404 page.
    let client = DirectPayClient::new(
        DirectPayConfig {
            base_url: sb.url("/directpay/api/v9"),
            username: sandbox::directpay::USERNAME.into(),
            password: sandbox::directpay::PASSWORD.to_string().into(),
            api: DirectPayApi::Current,
        },
        policy(),
    )
    .unwrap();
    let err = client.status("DP-1").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Rejected { status: 404, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_hang_is_cut_by_the_timeout_and_retried_a_bounded_number_of_times() {
    let sb = Sandbox::start().await;
    let client = sb.directpay();
    let id = cash_in(&client, php(500)).await;
    let path = "/directpay/api/cashin_transactions_status/";
    sb.fault(path, "hang", 3, 0).await;
    let err = client.status(&id).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Timeout { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(err.is_unavailable());
    assert_eq!(sb.calls(path), 3);
}

#[tokio::test]
async fn provider_calls_end_within_the_invocations_deadline() {
    use shared::deadline::within_duration;
    let sb = Sandbox::start().await;
    let client = sb.directpay();
    let id = cash_in(&client, php(500)).await;
    let path = "/directpay/api/cashin_transactions_status/";
    // No time left: nothing is sent, and the error says nothing happened.
    let err = within_duration(Duration::from_millis(100), client.status(&id))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable { .. }), "{err:?}");
    assert!(!err.outcome_unknown());
    assert_eq!(sb.calls(path), 0);
    // A hang with less time left than the client's own timeout and its
    // retries: one attempt, cut by the deadline, not three.
    sb.fault(path, "hang", 3, 0).await;
    let mut slow = policy();
    slow.request_timeout = Duration::from_secs(30);
    let client = sb.directpay_with(slow);
    let err = within_duration(Duration::from_millis(900), client.status(&id))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Timeout { attempts: 1, .. }),
        "{err:?}"
    );
    assert_eq!(sb.calls(path), 1);
}

#[tokio::test]
async fn a_create_that_may_have_arrived_is_not_sent_twice() {
    let sb = Sandbox::start().await;
    let client = sb.directpay();
    client.status("warm-up").await.ok();
    let path = "/directpay/api/pay_cashin";
    let create = || async {
        client
            .create_cash_in(&CashIn {
                payment_id: PaymentId::generate(),
                amount: php(100),
                webhook_url: "http://127.0.0.1:9/w",
                redirect_url: "https://shop.example.com",
            })
            .await
            .unwrap_err()
    };
    // A 500 may mean DirectPay created the cash-in: do not repeat it.
    sb.fault(path, "fail", 1, 500).await;
    let err = create().await;
    assert!(
        matches!(err, ProviderError::Rejected { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(sb.calls(path), 1);
    // Nor a 503: a bank or a load balancer may have created it before
    // answering, and a second cash-in could be paid beside the first.
    sb.fault(path, "fail", 1, 503).await;
    let err = create().await;
    assert!(err.outcome_unknown(), "{err:?}");
    assert_eq!(sb.calls(path), 2);
    // A 429 is a rate limiter's refusal before anything was done: resent.
    sb.fault(path, "fail", 1, 429).await;
    cash_in(&client, php(100)).await;
    assert_eq!(sb.calls(path), 4);
}

fn paygram_create(payment_id: PaymentId, amount: Money) -> CreateRequest<'static> {
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
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::minutes(30),
    }
}

#[tokio::test]
async fn paygram_issues_and_confirms_phpt_and_usdt_invoices_in_both_apis() {
    let sb = Sandbox::start().await;
    for api in [PaygramApi::Official, PaygramApi::Legacy] {
        let client = sb.paygram(api, sandbox::paygram::TOKEN);
        for amount in [
            Money::new(25_000, Currency::Phpt).unwrap(),
            Money::new(12_345_678, Currency::Usdt).unwrap(),
        ] {
            let id = PaymentId::generate();
            let created = client.create(&paygram_create(id, amount)).await.unwrap();
            assert!(created.checkout.url.is_some(), "{api:?}");
            let code = created.provider_reference.to_string();
            let invoice = sb.running.state.paygram.invoices.lock().unwrap()[&code].clone();
            assert_eq!(invoice.callback_data, id.to_string());
            // The legacy API's userCliId is the secret's user; the
            // official API's invoices are the token's own.
            assert_eq!(
                invoice.to_user == "merchant-user",
                api == PaygramApi::Legacy,
                "{api:?}"
            );
            let payment = payment_for(Provider::Paygram, amount, &code);
            let pending = client.status(&payment).await.unwrap();
            assert_eq!(pending.status, PaymentStatus::Pending);
            assert_eq!(pending.amount, Some(amount));
            sb.control(
                &format!("/_sandbox/paygram/invoices/{code}/status"),
                json!({"status": 2, "callback": "none"}),
            )
            .await;
            let paid = client.status(&payment).await.unwrap();
            assert_eq!(
                (paid.status, paid.amount),
                (PaymentStatus::Completed, Some(amount)),
                "{api:?}"
            );
        }
    }
}

/// A client whose secret names one API but whose base is the other's is
/// refused by the sandbox, as the real server refuses the wrong form.
#[tokio::test]
async fn paygram_requests_in_the_other_apis_form_are_refused() {
    let sb = Sandbox::start().await;
    for (api, base) in [
        (PaygramApi::Official, "/paygram"),
        (PaygramApi::Legacy, "/paygram/PayGramUsers/"),
    ] {
        let client = PaygramClient::new(
            PaygramConfig {
                api,
                base_url: Some(sb.url(base)),
                api_token: sandbox::paygram::TOKEN.to_string().into(),
                callback_secret: "cb-secret".to_string().into(),
                user_cli_id: Some("merchant-user".into()),
                merchant_type: None,
            },
            policy(),
        )
        .unwrap();
        let err = client
            .create(&paygram_create(
                PaymentId::generate(),
                Money::new(100, Currency::Phpt).unwrap(),
            ))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::Rejected { .. }),
            "{api:?}: {err:?}"
        );
    }
    assert!(sb.running.state.paygram.invoices.lock().unwrap().is_empty());
}

#[tokio::test]
async fn paygram_errors_are_typed() {
    let sb = Sandbox::start().await;
    let payment = payment_for(
        Provider::Paygram,
        Money::new(100, Currency::Phpt).unwrap(),
        "00000000-0000-0000-0000-000000000000",
    );
    for api in [PaygramApi::Official, PaygramApi::Legacy] {
        let wrong = sb.paygram(api, "not-the-token");
        assert!(
            matches!(
                wrong.status(&payment).await,
                Err(ProviderError::Auth { .. })
            ),
            "{api:?}"
        );
        // An unknown invoice: the official API says NotFound (553); the
        // legacy API's only known refusal form says no more than "no".
        let client = sb.paygram(api, sandbox::paygram::TOKEN);
        let unknown = client.status(&payment).await;
        match api {
            PaygramApi::Official => {
                assert!(matches!(unknown, Err(ProviderError::NotFound { .. })))
            }
            PaygramApi::Legacy => assert!(
                matches!(&unknown, Err(e @ ProviderError::Rejected { .. }) if !e.outcome_unknown()),
                "{unknown:?}"
            ),
        }
        // A token in the URL never shows in an error.
        sb.fault("/paygram/", "hang", 3, 0).await;
        let err = wrong.status(&payment).await.unwrap_err();
        assert!(!format!("{err} {err:?}").contains("not-the-token"));
        // PHP is not a Paygram currency.
        let err = client
            .create(&paygram_create(PaymentId::generate(), php(100)))
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Amount { .. }));
    }
}

#[tokio::test]
async fn casino_looks_up_players_and_transfers_once_per_nonce() {
    let sb = Sandbox::start().await;
    let casino = sb.casino(&sandbox::casino::TOKENS);
    let username = "player1".parse().unwrap();
    let player = casino.player(&username).await.unwrap().unwrap();
    assert_eq!(player.top_manager, "TM_ALPHA");
    assert_eq!(player.balance, php(0));
    assert!(casino
        .player(&"nobody".parse().unwrap())
        .await
        .unwrap()
        .is_none());

    let first = casino
        .transfer(&player, php(12_345), "nonce-1", "test")
        .await
        .unwrap();
    let again = casino
        .transfer(&player, php(12_345), "nonce-1", "test")
        .await
        .unwrap();
    assert_eq!(first, again);
    let transfers = sb.running.state.casino.transfers.lock().unwrap().clone();
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].amount, "123.45");

    // A transfer through a 5xx is retried with the same nonce: still one.
    sb.fault("/casino/Default/Transfer", "fail", 2, 502).await;
    casino
        .transfer(&player, php(100), "nonce-2", "test")
        .await
        .unwrap();
    assert_eq!(sb.running.state.casino.transfers.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_transfer_that_must_not_be_repeated_is_not_started_without_time_to_finish() {
    let sb = Sandbox::start().await;
    let mut casino = sb.casino(&sandbox::casino::TOKENS);
    let player = casino
        .player(&"player1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    // A bridge that does not deduplicate nonces: a transfer is never
    // repeated, so it must not be cut short by our own deadline either.
    let mut policy = policy();
    policy.request_timeout = Duration::from_secs(10);
    casino = sb.casino_with(&sandbox::casino::TOKENS, false, policy);
    let err = shared::deadline::within_duration(
        Duration::from_secs(3),
        casino.transfer(&player, php(500), "nonce-late", "test"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable { .. }), "{err:?}");
    assert!(
        !err.outcome_unknown(),
        "nothing was sent: a clean retry later"
    );
    assert_eq!(sb.calls("/casino/Default/Transfer"), 0);
    // With time enough it goes.
    shared::deadline::within_duration(
        Duration::from_secs(20),
        casino.transfer(&player, php(500), "nonce-late", "test"),
    )
    .await
    .unwrap();
    assert_eq!(sb.calls("/casino/Default/Transfer"), 1);
}

/// Each agent's balance, asked with the bridge's GetClientBalancesRequest
/// as it is (the sandbox refuses a property it does not have).
#[tokio::test]
async fn casino_agent_balances_are_asked_with_the_bridges_request() {
    let sb = Sandbox::start().await;
    let casino = sb.casino(&sandbox::casino::TOKENS);
    let balances = casino.agent_balances().await;
    let got: Vec<(String, Money)> = balances.into_iter().map(|(m, b)| (m, b.unwrap())).collect();
    assert_eq!(
        got,
        [
            ("TM_ALPHA".to_string(), php(5_000_000)),
            ("TM_BETA".to_string(), php(120_050)),
        ]
    );
}

#[tokio::test]
async fn casino_tokens_are_chosen_by_top_manager() {
    let sb = Sandbox::start().await;
    // Only TM_ALPHA's token is configured.
    let casino = sb.casino(&sandbox::casino::TOKENS[..1]);
    let alpha = casino
        .player(&"player1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let beta = casino
        .player(&"player2".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    casino.transfer(&alpha, php(100), "n-a", "t").await.unwrap();
    let err = casino
        .transfer(&beta, php(100), "n-b", "t")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    // A wrong token for a known manager is the casino's refusal.
    let wrong = sb.casino(&[("TM_ALPHA", "tok-wrong")]);
    let err = wrong
        .transfer(&alpha, php(100), "n-c", "t")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    let printed = format!("{err} {err:?} {wrong:?}");
    assert!(!printed.contains("tok-wrong") && !printed.contains("tok-alpha"));
}

#[tokio::test]
async fn directpay_speaks_the_seeds_older_api_too() {
    let sb = Sandbox::start().await;
    let client = sb.directpay_api(DirectPayApi::Legacy);
    let id = cash_in(&client, php(2_500)).await;
    assert!(id.starts_with("DPL"), "created through /generate-gcash-qr");
    assert_eq!(
        client.status(&id).await.unwrap().status,
        PaymentStatus::Pending
    );
    sb.control(
        &format!("/_sandbox/directpay/transactions/{id}/status"),
        json!({"status": "SUCCESS", "callback": "none"}),
    )
    .await;
    let paid = client.status(&id).await.unwrap();
    assert_eq!(
        (paid.status, paid.provider_status.as_str()),
        (PaymentStatus::Completed, "completed")
    );
    // The session from the HTML login page is renewed the same way.
    sb.control("/_sandbox/directpay/expire-tokens", json!({}))
        .await;
    client.status(&id).await.unwrap();
    assert_eq!(*sb.running.state.directpay.logins.lock().unwrap(), 2);
    assert_eq!(
        sb.calls("/directpay/api/login"),
        4,
        "two page loads, two logins"
    );
}

#[tokio::test]
async fn paygram_retries_server_errors_but_not_client_errors() {
    let sb = Sandbox::start().await;
    for api in [PaygramApi::Official, PaygramApi::Legacy] {
        let client = sb.paygram(api, sandbox::paygram::TOKEN);
        let amount = Money::new(100, Currency::Phpt).unwrap();
        let created = client
            .create(&paygram_create(PaymentId::generate(), amount))
            .await
            .unwrap();
        let payment = payment_for(
            Provider::Paygram,
            amount,
            created.provider_reference.as_str(),
        );
        let path = "/paygram/";
        let before = sb.calls(path);
        sb.fault(path, "fail", 2, 500).await;
        assert_eq!(
            client.status(&payment).await.unwrap().status,
            PaymentStatus::Pending
        );
        assert_eq!(sb.calls(path) - before, 3, "{api:?}");
        sb.fault(path, "fail", 1, 404).await;
        assert!(matches!(
            client.status(&payment).await,
            Err(ProviderError::Rejected { status: 404, .. })
        ));
        assert_eq!(sb.calls(path) - before, 4, "{api:?}");
    }
}

#[tokio::test]
async fn casino_client_errors_are_not_retried_and_hangs_are_cut() {
    let sb = Sandbox::start().await;
    let casino = sb.casino(&sandbox::casino::TOKENS);
    let player = casino
        .player(&"player2".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let path = "/casino/Default/Transfer";
    sb.fault(path, "fail", 1, 400).await;
    let err = casino
        .transfer(&player, php(100), "n-4xx", "t")
        .await
        .unwrap_err();
    // Not resent, and no proof the chips did not move: unknown.
    assert!(
        matches!(err, ProviderError::Ambiguous { .. }) && err.outcome_unknown(),
        "{err:?}"
    );
    assert_eq!(sb.calls(path), 1);
    sb.fault(path, "hang", 3, 0).await;
    let err = casino
        .transfer(&player, php(100), "n-hang", "t")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Timeout { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(sb.calls(path), 4);
    assert!(sb.running.state.casino.transfers.lock().unwrap().is_empty());
}
