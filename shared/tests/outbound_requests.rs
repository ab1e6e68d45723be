//! What each provider's client sends, held to the documented requests.
//!
//! A local server stands in for the provider: it answers each call with
//! the provider's documented reply (shared/tests/fixtures/<provider>, each
//! file's source in that folder's SOURCES.md) and records what arrived:
//! method, path, query, the headers that matter, the body. Each test then
//! compares that with the documented request: the same keys, values of the
//! same JSON types, the documented constants; where paygate sends a key the
//! documented request lacks, or leaves one out, the test names it and says
//! why. (The sandbox is held to the same fixtures by
//! `infra/sandbox/tests/wire.rs`.)

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use shared::ids::PaymentId;
use shared::money::{Currency, Money};
use shared::payment::{ChangeSource, Customer, NewPayment, Payment, Provider};
use shared::providers::transport::HttpPolicy;
use shared::providers::{CreateRequest, Gateway};
use time::OffsetDateTime;

/// One request as it arrived.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: not JSON ({e}): {:?}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_bytes(&self.body)
            .unwrap_or_else(|e| panic!("{} {}: not a form ({e})", self.method, self.path))
    }

    fn at(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The stand-in's answer to one request.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    /// A documented reply, as JSON with HTTP 200.
    fn fixture(provider: &str, name: &str) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type", "application/json".into())],
            body: fixture_text(provider, name).into_bytes(),
        }
    }

    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    fn status(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }
}

type Script = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// The stand-in provider: its base URL and what reached it.
struct Capture {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Capture {
    /// A server answering every request with what `script` says.
    async fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Capture {
        let script: Script = Arc::new(script);
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let kept = seen.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let script = script.clone();
            let kept = kept.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let seen = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts
                        .uri
                        .query()
                        .map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
                        .unwrap_or_default(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_ascii_lowercase(),
                                v.to_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect(),
                    body: body.to_vec(),
                };
                let reply = script(&seen);
                kept.lock().unwrap().push(seen);
                let mut response =
                    axum::response::Response::new(axum::body::Body::from(reply.body));
                *response.status_mut() = axum::http::StatusCode::from_u16(reply.status).unwrap();
                for (name, value) in reply.headers {
                    response.headers_mut().append(name, value.parse().unwrap());
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Capture { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The one request to `method path`.
    fn one(&self, method: &str, path: &str) -> Seen {
        let all: Vec<Seen> = self
            .seen()
            .into_iter()
            .filter(|s| s.method == method && s.path == path)
            .collect();
        assert_eq!(all.len(), 1, "{method} {path}: {:?}", self.routes());
        all.into_iter().next().unwrap()
    }

    fn routes(&self) -> Vec<String> {
        self.seen().iter().map(Seen::at).collect()
    }
}

fn fixture_text(provider: &str, name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/{provider}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture(provider: &str, name: &str) -> Value {
    serde_json::from_str(&fixture_text(provider, name))
        .unwrap_or_else(|e| panic!("{provider}/{name}: {e}"))
}

/// A `key=value`-per-line form fixture.
fn form_fixture(provider: &str, name: &str) -> Vec<(String, String)> {
    fixture_text(provider, name)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// `sent` has the documented request's keys, less `left_out` and plus
/// `added`, and every key both have holds a value of the documented JSON
/// type; objects are compared inside, where `a.b` names key `b` of `a`.
fn like_documented(sent: &Value, documented: &Value, added: &[&str], left_out: &[&str], at: &str) {
    let here = |list: &[&str]| -> Vec<String> {
        list.iter()
            .filter(|k| !k.contains('.'))
            .map(|k| k.to_string())
            .collect()
    };
    let inside = |list: &[&str], key: &str| -> Vec<String> {
        list.iter()
            .filter_map(|k| k.strip_prefix(&format!("{key}.")))
            .map(str::to_string)
            .collect()
    };
    let mut expected = keys(documented);
    for k in here(left_out) {
        assert!(expected.remove(&k), "{at}: {k} is not documented");
    }
    for k in here(added) {
        assert!(expected.insert(k.clone()), "{at}: {k} is documented");
    }
    assert_eq!(keys(sent), expected, "{at}: {sent}");
    for (k, d) in documented.as_object().unwrap() {
        let Some(s) = sent.get(k) else { continue };
        if d.is_object() {
            let added = inside(added, k);
            let left_out = inside(left_out, k);
            let added: Vec<&str> = added.iter().map(String::as_str).collect();
            let left_out: Vec<&str> = left_out.iter().map(String::as_str).collect();
            like_documented(s, d, &added, &left_out, &format!("{at}.{k}"));
        } else {
            assert_eq!(
                kind(s),
                kind(d),
                "{at}.{k}: {s} is not of the documented type ({d})"
            );
        }
    }
}

/// The same keys as documented, each of the documented type.
fn as_documented(sent: &Value, documented: &Value, at: &str) {
    like_documented(sent, documented, &[], &[], at);
}

/// A form's field names, in order.
fn names(form: &[(String, String)]) -> Vec<String> {
    form.iter().map(|(k, _)| k.clone()).collect()
}

/// A form's field names are the documented form's, less `left_out` and
/// plus `added`, each once.
fn form_like_documented(
    sent: &[(String, String)],
    documented: &[(String, String)],
    added: &[&str],
    left_out: &[&str],
    at: &str,
) {
    let mut expected: BTreeSet<String> = names(documented).into_iter().collect();
    for k in left_out {
        assert!(expected.remove(*k), "{at}: {k} is not documented");
    }
    for k in added {
        assert!(expected.insert(k.to_string()), "{at}: {k} is documented");
    }
    let got: BTreeSet<String> = names(sent).into_iter().collect();
    assert_eq!(got.len(), sent.len(), "{at}: a field twice in {sent:?}");
    assert_eq!(got, expected, "{at}");
}

fn value<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} is not in {form:?}"))
}

fn policy() -> HttpPolicy {
    HttpPolicy {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        max_attempts: 1,
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        health: None,
        sessions: None,
    }
}

fn create_request<'a>(
    payment_id: PaymentId,
    amount: Money,
    customer: &'a Customer,
    webhook_url: &'a str,
) -> CreateRequest<'a> {
    CreateRequest {
        payment_id,
        amount,
        description: Some("Order 1001"),
        customer,
        return_url: Some("https://shop.example.com/thanks"),
        method: None,
        webhook_url,
        sequence: Some(1),
        expires_at: OffsetDateTime::now_utc() + time::Duration::minutes(30),
    }
}

fn payment(provider: Provider, amount: Money, reference: &str) -> Payment {
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
            provider_reference: Some(reference.parse().unwrap()),
            checkout: Default::default(),
            page_token: None,
            expires_at: OffsetDateTime::now_utc(),
        },
        ChangeSource::Api,
        OffsetDateTime::now_utc(),
    )
}

fn money(minor: i64, currency: Currency) -> Money {
    Money::new(minor, currency).unwrap()
}

// ---------------------------------------------------------------- DirectPay

/// fixtures/directpay SOURCES.md, "What paygate sends": with the session
/// cookie when DirectPay sets one (D1), without when it sets none (D6).
#[tokio::test]
async fn directpay_sends_what_its_sources_send() {
    use shared::providers::directpay::{DirectPayApi, DirectPayClient, DirectPayConfig};
    let csrf = fixture("directpay", "csrf_token.reply.json")["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let token = fixture("directpay", "login.reply.json")["data"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    for cookie in [Some("PHPSESSID=9joh7sntppefje0plo27f3fhct"), None] {
        let stand_in =
            Capture::start(
                move |seen| match (seen.method.as_str(), seen.path.as_str()) {
                    ("GET", "/api/csrf_token") => {
                        let reply = Reply::fixture("directpay", "csrf_token.reply.json");
                        match cookie {
                            Some(c) => {
                                reply.header("set-cookie", &format!("{c}; path=/; HttpOnly"))
                            }
                            None => reply,
                        }
                    }
                    ("POST", "/api/create/login") => {
                        Reply::fixture("directpay", "login.reply.json")
                    }
                    ("POST", "/api/pay_cashin") => {
                        Reply::fixture("directpay", "gcash_cashin.reply.json")
                    }
                    ("GET", p) if p.starts_with("/api/cashin_transactions_status/") => {
                        Reply::fixture(
                            "directpay",
                            "cashin_transactions_status.reply.assembled.json",
                        )
                    }
                    _ => Reply::text(404, "unexpected"),
                },
            )
            .await;
        let client = DirectPayClient::new(
            DirectPayConfig {
                base_url: format!("{}/api", stand_in.url),
                username: "merchantuser".into(),
                password: "password".to_string().into(),
                api: DirectPayApi::Current,
            },
            policy(),
        )
        .unwrap();
        let id = PaymentId::generate();
        let customer = Customer::default();
        let created = client
            .create(&create_request(
                id,
                money(10_000, Currency::Php),
                &customer,
                "https://pay.example.com/webhooks/directpay",
            ))
            .await
            .unwrap();
        assert_eq!(created.provider_reference.as_str(), "ref_4e748771b7a37ca4");
        client.status("ref_4e748771b7a37ca4").await.unwrap();

        assert_eq!(
            stand_in.routes(),
            [
                "GET /api/csrf_token",
                "POST /api/create/login",
                "POST /api/pay_cashin",
                "GET /api/cashin_transactions_status/ref_4e748771b7a37ca4",
            ]
        );
        let get_csrf = stand_in.one("GET", "/api/csrf_token");
        assert_eq!(get_csrf.header("authorization"), None);
        assert_eq!(get_csrf.header("cookie"), None);

        let login = stand_in.one("POST", "/api/create/login");
        assert_eq!(login.header("x-csrf-token"), Some(csrf.as_str()));
        assert_eq!(
            login.header("cookie"),
            cookie,
            "the cookie only if one was set"
        );
        assert_eq!(login.header("content-type"), Some("application/json"));
        as_documented(
            &login.json(),
            &fixture("directpay", "login.request.json"),
            "login",
        );
        assert_eq!(login.json()["username"], "merchantuser");

        let bearer = format!("Bearer {token}");
        let cash_in = stand_in.one("POST", "/api/pay_cashin");
        assert_eq!(cash_in.header("authorization"), Some(bearer.as_str()));
        assert_eq!(cash_in.header("cookie"), cookie);
        assert_eq!(
            cash_in.header("x-csrf-token"),
            None,
            "neither D1 nor D6 sends it"
        );
        let body = cash_in.json();
        as_documented(
            &body,
            &fixture("directpay", "pay_cashin.request.json"),
            "pay_cashin",
        );
        // D1's older body: its keys, of its types, are all there.
        like_documented(
            &body,
            &fixture("directpay", "gcash_cashin.request.json"),
            &["merchantpaymentreferences"],
            &[],
            "pay_cashin (D1)",
        );
        assert_eq!(body["amount"], json!(100), "pesos, a JSON number");
        assert_eq!(body["merchantpaymentreferences"], id.to_string());
        assert_eq!(
            body["webhook"],
            format!("https://pay.example.com/webhooks/directpay?payment_id={id}")
        );

        let status = stand_in.one(
            "GET",
            "/api/cashin_transactions_status/ref_4e748771b7a37ca4",
        );
        assert_eq!(status.header("authorization"), Some(bearer.as_str()));
        assert_eq!(status.header("cookie"), cookie);
        assert!(status.body.is_empty());
    }
}

// --------------------------------------------------------------- epayment.kz

fn epayment_client(stand_in: &Capture) -> shared::providers::epayment::EpaymentClient {
    use shared::providers::epayment::{EpaymentClient, EpaymentConfig};
    EpaymentClient::new(
        EpaymentConfig {
            oauth_url: format!("{}/oauth", stand_in.url),
            api_url: format!("{}/api", stand_in.url),
            widget_url: "https://test-epay.epayment.kz/redesign-payform/payment-api.js".into(),
            client_id: "test".into(),
            client_secret: "FAKEsecretFAKEsecretFAKEsecretFAKE00".to_string().into(),
            terminal: "67e34d63-102f-4bd1-898e-370781d0074d".into(),
            callback_key: "callback-key".to_string().into(),
            two_stage: false,
        },
        policy(),
    )
    .unwrap()
}

/// fixtures/epayment SOURCES.md: the token forms (E2, E3), check-status
/// (E3), refund with `?amount=&externalID=` (E4), cancel (E5) and charge
/// (E6) by the transaction id; the widget's object as E8 and the seed
/// pass it to `halyk.pay`. The replies are the documented ones, check-status
/// results also with HTTP 400.
#[tokio::test]
async fn epayment_sends_what_its_sources_send() {
    let stand_in = Capture::start(|seen| match (seen.method.as_str(), seen.path.as_str()) {
        ("POST", "/oauth/oauth2/token") => {
            let payment = seen
                .form()
                .iter()
                .any(|(k, v)| k == "scope" && v == "payment");
            Reply::fixture(
                "epayment",
                if payment {
                    // E8's live payment-token reply (expires_in a string).
                    "token.reply.expires_string.json"
                } else {
                    "token.reply.json"
                },
            )
        }
        ("GET", "/api/check-status/payment/transaction/000001") => {
            Reply::fixture("epayment", "check_status.reply.seed.json")
        }
        ("GET", "/api/check-status/payment/transaction/000102") => {
            Reply::fixture("epayment", "check_status.not_found.seed.json").status(400)
        }
        ("GET", "/api/check-status/payment/transaction/000101") => {
            Reply::fixture("epayment", "check_status.reject.seed.json").status(400)
        }
        ("POST", p) if p.starts_with("/api/operation/") => Reply::text(200, ""),
        _ => Reply::text(404, "unexpected"),
    })
    .await;
    let client = epayment_client(&stand_in);
    let id = PaymentId::generate();
    let customer = Customer::default();
    let created = client
        .create(&create_request(
            id,
            money(100_000, Currency::Kzt),
            &customer,
            "https://pay.example.com/webhooks/epayment",
        ))
        .await
        .unwrap();

    // The payment token: E2's form fields, all of them, its constants.
    let token = stand_in.one("POST", "/oauth/oauth2/token");
    assert_eq!(
        token.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let sent = token.form();
    let documented = form_fixture("epayment", "token.request.payment.form");
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sorted(names(&sent)), sorted(names(&documented)));
    for constant in ["grant_type", "scope", "currency", "client_id", "terminal"] {
        assert_eq!(
            value(&sent, constant),
            value(&documented, constant),
            "{constant}"
        );
    }
    assert_eq!(value(&sent, "invoiceID"), "000001");
    assert_eq!(value(&sent, "amount"), "1000", "tenge, exactly");
    let post_link = format!("https://pay.example.com/webhooks/epayment?payment_id={id}");
    assert_eq!(value(&sent, "postLink"), post_link);
    assert_eq!(value(&sent, "failurePostLink"), post_link);
    assert_eq!(
        value(&sent, "secret_hash"),
        shared::providers::epayment::secret_hash("callback-key", "000001")
    );

    // The widget's object: E8's keys (the payer's own details left out,
    // the script and the seed's bearer string added), `auth` the token
    // reply without its refresh token; and the seed's, whose `auth` is
    // that bearer string.
    let widget = Value::Object(created.checkout.widget.clone().unwrap());
    like_documented(
        &widget,
        &fixture("epayment", "widget.payment_object.json"),
        &["script", "auth_bearer"],
        &[
            "accountId",
            "phone",
            "email",
            "cardSave",
            "auth.refresh_token",
        ],
        "widget (E8)",
    );
    let mut as_seed = widget.clone();
    let bearer = as_seed["auth_bearer"].take();
    as_seed["auth"] = bearer;
    as_seed.as_object_mut().unwrap().remove("auth_bearer");
    like_documented(
        &as_seed,
        &fixture("epayment", "widget.payment_object.seed.json"),
        &["script", "description"],
        &[],
        "widget (seed)",
    );
    assert_eq!(widget["language"], "rus", "the seed's language");
    assert_eq!(widget["description"], "Order 1001");

    // check-status, with the API token (E3's form: the scope string and
    // the terminal).
    let asked = client.check("000001").await.unwrap();
    assert_eq!(asked.transaction_id.as_deref(), Some("12345"));
    let tokens: Vec<Seen> = stand_in
        .seen()
        .into_iter()
        .filter(|s| s.path == "/oauth/oauth2/token")
        .collect();
    assert_eq!(tokens.len(), 2);
    let api_token = tokens[1].form();
    let documented = form_fixture("epayment", "token.request.status.form");
    assert_eq!(names(&api_token), names(&documented));
    for constant in ["grant_type", "scope", "client_id", "terminal"] {
        assert_eq!(
            value(&api_token, constant),
            value(&documented, constant),
            "{constant}"
        );
    }
    let check = stand_in.one("GET", "/api/check-status/payment/transaction/000001");
    let access = fixture("epayment", "token.reply.json")["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        check.header("authorization"),
        Some(format!("Bearer {access}").as_str())
    );
    assert!(check.body.is_empty() && check.query.is_empty());

    // Results read on HTTP 400: 102 is no such invoice, 101 a decline.
    assert!(matches!(
        client.check("000102").await,
        Err(shared::providers::ProviderError::NotFound { .. })
    ));
    let declined = client.check("000101").await.unwrap().confirmation;
    assert_eq!(
        (declined.status, declined.provider_status.as_str()),
        (shared::payment::PaymentStatus::Failed, "REJECT")
    );

    // Operations by the transaction id, as E4, E5 and E6 show them.
    client
        .refund("12345", Some(money(30_000, Currency::Kzt)), "rf_1")
        .await
        .unwrap();
    client.refund("12345", None, "rf_2").await.unwrap();
    client.cancel_transaction("12345").await.unwrap();
    client.charge("12345").await.unwrap();
    let operations: Vec<Seen> = stand_in
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/api/operation/"))
        .collect();
    let shown: Vec<(String, Vec<(String, String)>)> = operations
        .iter()
        .map(|s| (s.at(), s.query.clone()))
        .collect();
    let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        shown,
        [
            (
                "POST /api/operation/12345/refund".to_string(),
                q(&[("amount", "300"), ("externalID", "rf_1")])
            ),
            ("POST /api/operation/12345/refund".to_string(), q(&[])),
            ("POST /api/operation/12345/cancel".to_string(), q(&[])),
            ("POST /api/operation/12345/charge".to_string(), q(&[])),
        ]
    );
    for op in &operations {
        assert_eq!(
            op.header("authorization"),
            Some(format!("Bearer {access}").as_str())
        );
        assert!(op.body.is_empty(), "{}: the whole amount, no body", op.at());
    }
}

// ---------------------------------------------------------------------- QPay

/// A documented token reply whose instants are moved to `access_for` and
/// a day from now (the sheet's are in 2022).
fn qpay_token(access_for: i64) -> Reply {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut token = fixture("qpay", "token.reply.json");
    token["expires_in"] = json!(now + access_for);
    token["refresh_expires_in"] = json!(now + 86_400);
    Reply {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        body: token.to_string().into_bytes(),
    }
}

/// fixtures/qpay SOURCES.md: the token with Basic auth and an empty body,
/// the refresh with the refresh token (its documented `{}` answer falls
/// back to a login), the simple invoice, payment/check, DELETE of the
/// invoice, the card refund with its note (Q1).
#[tokio::test]
async fn qpay_sends_what_its_sources_send() {
    use base64::Engine as _;
    use shared::providers::qpay::{QpayClient, QpayConfig};
    let logins = Arc::new(Mutex::new(0));
    let counted = logins.clone();
    let stand_in = Capture::start(move |seen| {
        let object = || {
            seen.json()["object_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        match (seen.method.as_str(), seen.path.as_str()) {
            ("POST", "/v2/auth/token") => {
                let mut n = counted.lock().unwrap();
                *n += 1;
                // The first access token has run out by the next call.
                qpay_token(if *n == 1 { 0 } else { 86_400 })
            }
            ("POST", "/v2/auth/refresh") => {
                Reply::fixture("qpay", "auth_refresh.reply.official.json")
            }
            ("POST", "/v2/invoice") => Reply::fixture("qpay", "invoice.reply.json"),
            ("POST", "/v2/payment/check") if object() == "inv-card" => {
                Reply::fixture("qpay", "payment_check.reply.paid.card.json")
            }
            ("POST", "/v2/payment/check") => {
                Reply::fixture("qpay", "payment_check.reply.unpaid.json")
            }
            ("DELETE", p) if p.starts_with("/v2/invoice/") => {
                Reply::fixture("qpay", "invoice_cancel.reply.json")
            }
            ("DELETE", p) if p.starts_with("/v2/payment/refund/") => Reply::text(200, ""),
            _ => Reply::text(404, "unexpected"),
        }
    })
    .await;
    let client = QpayClient::new(
        QpayConfig {
            base_url: stand_in.url.clone(),
            client_id: "TEST_MERCHANT".into(),
            client_secret: "123456".to_string().into(),
            invoice_code: "TEST_INVOICE".into(),
        },
        policy(),
    )
    .unwrap();
    let id = PaymentId::generate();
    let customer = Customer::default();
    let created = client
        .create(&create_request(
            id,
            money(10_000, Currency::Mnt),
            &customer,
            "https://pay.example.com/webhooks/qpay",
        ))
        .await
        .unwrap();
    assert_eq!(
        created.provider_reference.as_str(),
        "d50f49f2-9032-4a74-8929-530531f28f63"
    );
    let unpaid = payment(Provider::Qpay, money(10_000, Currency::Mnt), "inv-unpaid");
    client.status(&unpaid).await.unwrap();
    client.cancel(&unpaid).await.unwrap();
    let card = payment(Provider::Qpay, money(10_000, Currency::Mnt), "inv-card");
    client
        .refund(&card, money(10_000, Currency::Mnt), "rf_1")
        .await
        .unwrap();

    assert_eq!(
        stand_in.routes(),
        [
            "POST /v2/auth/token",
            "POST /v2/invoice",
            "POST /v2/auth/refresh",
            "POST /v2/auth/token",
            "POST /v2/payment/check",
            "POST /v2/payment/check",
            "DELETE /v2/invoice/inv-unpaid",
            "POST /v2/payment/check",
            "DELETE /v2/payment/refund/8e25b4d5-fe5a-4d0f-b050-def68a82aaad",
        ]
    );
    let seen = stand_in.seen();
    // The token: Basic client_id:client_secret, nothing in the body.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("TEST_MERCHANT:123456")
    );
    assert_eq!(seen[0].header("authorization"), Some(basic.as_str()));
    assert!(seen[0].body.is_empty());
    assert_eq!(
        seen[3].header("authorization"),
        Some(basic.as_str()),
        "the fallback login"
    );
    // The refresh: the refresh token as the bearer, nothing in the body.
    let refresh = fixture("qpay", "token.reply.json")["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        seen[2].header("authorization"),
        Some(format!("Bearer {refresh}").as_str())
    );
    assert!(seen[2].body.is_empty());
    let bearer = format!(
        "Bearer {}",
        fixture("qpay", "token.reply.json")["access_token"]
            .as_str()
            .unwrap()
    );
    for call in &seen[4..] {
        assert_eq!(
            call.header("authorization"),
            Some(bearer.as_str()),
            "{}",
            call.at()
        );
    }
    // The simple invoice: the sheet's keys but the branch code, which a
    // merchant without branches leaves out; the amount a number.
    let invoice = seen[1].json();
    like_documented(
        &invoice,
        &fixture("qpay", "invoice.request.simple.json"),
        &[],
        &["sender_branch_code"],
        "invoice",
    );
    assert_eq!(invoice["invoice_code"], "TEST_INVOICE");
    assert_eq!(invoice["invoice_receiver_code"], "terminal");
    assert_eq!(invoice["amount"], json!(100), "tugrik, a number");
    assert_eq!(invoice["sender_invoice_no"], id.ulid().to_string());
    assert_eq!(
        invoice["callback_url"],
        format!("https://pay.example.com/webhooks/qpay?payment_id={id}")
    );
    // payment/check: the sheet's request, its constants.
    let documented = fixture("qpay", "payment_check.request.json");
    let check = seen[4].json();
    as_documented(&check, &documented, "payment/check");
    assert_eq!(check["object_type"], documented["object_type"]);
    assert_eq!(check["offset"], documented["offset"]);
    assert_eq!(check["object_id"], "inv-unpaid");
    // DELETE of the invoice: no body; the refund: the sheet's note.
    assert!(seen[6].body.is_empty());
    as_documented(
        &seen[8].json(),
        &fixture("qpay", "payment_refund.request.json"),
        "refund",
    );
}

// ----------------------------------------------------------------- ToyyibPay

/// fixtures/toyyibpay SOURCES.md: every call `POST {base}/index.php/api/<method>`
/// with form fields (T1); each form held to T1's sample, what paygate adds
/// or leaves out named with its reason.
#[tokio::test]
async fn toyyibpay_sends_what_its_sources_send() {
    use shared::providers::toyyibpay::{ToyyibPayClient, ToyyibPayConfig};
    let stand_in = Capture::start(|seen| match seen.path.as_str() {
        "/index.php/api/createCategory" => {
            Reply::fixture("toyyibpay", "create_category.reply.json")
        }
        "/index.php/api/createBill" => Reply::fixture("toyyibpay", "create_bill.reply.json"),
        "/index.php/api/getBillTransactions" => {
            Reply::fixture("toyyibpay", "get_bill_transactions.reply.json")
        }
        "/index.php/api/inactiveBill" => {
            Reply::fixture("toyyibpay", "inactive_bill.reply.success.json")
        }
        _ => Reply::text(404, "unexpected"),
    })
    .await;
    let key = "w5x7srq7-rx5r-3t89-2ou2-k7361x2jewhn";
    let client = ToyyibPayClient::new(
        ToyyibPayConfig {
            base_url: stand_in.url.clone(),
            secret_key: key.to_string().into(),
            category_code: None,
            category_name: "paygate".into(),
            webhook_hmac_secret: None,
        },
        policy(),
    )
    .unwrap();
    let id = PaymentId::generate();
    let customer = Customer {
        name: Some("John Doe".into()),
        email: Some("jd@example.com".into()),
        phone: Some("0194342411".into()),
    };
    let created = client
        .create(&create_request(
            id,
            money(100, Currency::Myr),
            &customer,
            "https://pay.example.com/webhooks/toyyibpay",
        ))
        .await
        .unwrap();
    assert_eq!(created.provider_reference.as_str(), "gcbhict9");
    let bill = payment(Provider::Toyyibpay, money(1_000, Currency::Myr), "gcbhict9");
    let confirmed = client.status(&bill).await.unwrap();
    assert_eq!(confirmed.amount, Some(money(1_000, Currency::Myr)));
    client.cancel(&bill).await.unwrap();

    assert_eq!(
        stand_in.routes(),
        [
            "POST /index.php/api/createCategory",
            "POST /index.php/api/createBill",
            "POST /index.php/api/getBillTransactions",
            "POST /index.php/api/inactiveBill",
        ]
    );
    let seen = stand_in.seen();
    for call in &seen {
        assert_eq!(
            call.header("content-type"),
            Some("application/x-www-form-urlencoded"),
            "{}",
            call.at()
        );
    }
    let category = seen[0].form();
    form_like_documented(
        &category,
        &form_fixture("toyyibpay", "create_category.request.form"),
        &[],
        &[],
        "createCategory",
    );
    assert_eq!(value(&category, "userSecretKey"), key);

    let bill_form = seen[1].form();
    form_like_documented(
        &bill_form,
        &form_fixture("toyyibpay", "create_bill.request.form"),
        &[],
        &[
            // No split payments.
            "billSplitPayment",
            "billSplitPaymentArgs",
            // ToyyibPay's own receipt e-mail.
            "billContentEmail",
            // Blank in T1's table: the bill owner pays the charge.
            "billChargeToCustomer",
            // The payment's expiry is given as billExpiryDate instead.
            "billExpiryDays",
        ],
        "createBill",
    );
    assert_eq!(value(&bill_form, "categoryCode"), "j0tzqhka");
    assert_eq!(value(&bill_form, "billAmount"), "100", "sen, an integer");
    assert_eq!(value(&bill_form, "billPriceSetting"), "1", "a fixed amount");
    assert_eq!(value(&bill_form, "billExternalReferenceNo"), id.to_string());
    assert_eq!(value(&bill_form, "billName"), "Order 1001");
    assert_eq!(value(&bill_form, "billTo"), "John Doe");

    let transactions = seen[2].form();
    form_like_documented(
        &transactions,
        &form_fixture("toyyibpay", "get_bill_transactions.request.form"),
        // T4's curl sends the key too.
        &["userSecretKey"],
        // T1's sample asks for successful attempts only; paygate reads
        // every attempt.
        &["billpaymentStatus"],
        "getBillTransactions",
    );
    assert_eq!(value(&transactions, "billCode"), "gcbhict9");

    let inactive = seen[3].form();
    form_like_documented(
        &inactive,
        &form_fixture("toyyibpay", "inactive_bill.request.form"),
        // Named userSecretKey elsewhere (T5 sends both).
        &["userSecretKey"],
        &[],
        "inactiveBill",
    );
    assert_eq!(value(&inactive, "secretKey"), key);
}

// ---------------------------------------------------------------- 747 Casino

/// fixtures/casino SOURCES.md: the lookup by URL template (C5), the
/// transfer as C3 and the bridge's `DepositChips` show it, get-balances
/// with exactly `GetClientBalancesRequest`'s properties (C2, C1).
#[tokio::test]
async fn casino_sends_what_its_sources_send() {
    use shared::providers::casino::{CasinoClient, CasinoConfig};
    let stand_in = Capture::start(|seen| match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", p) if p.starts_with("/api/Bridge/get-user/") => {
            Reply::fixture("casino", "lookup.reply.json")
        }
        ("POST", "/Default/Transfer") => Reply::fixture("casino", "transfer.reply.json"),
        ("POST", "/account/get-balances") => {
            // The documented reply, its row in pesos.
            let mut reply = fixture("casino", "get_balances.reply.json");
            reply["balances"][0]["currencyId"] = json!("PHP");
            reply["balances"][0]["balance"] = json!(1200.5);
            Reply {
                status: 200,
                headers: vec![("content-type", "application/json".into())],
                body: reply.to_string().into_bytes(),
            }
        }
        _ => Reply::text(404, "unexpected"),
    })
    .await;
    let token = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    let client = CasinoClient::new(
        CasinoConfig {
            lookup_url: format!("{}/api/Bridge/get-user/{{username}}", stand_in.url),
            base_url: stand_in.url.clone(),
            tokens: shared::secrets::Secret::new(
                [("TopManagerA".to_string(), token.to_string())].into(),
            ),
            platform: 1,
            nonce_dedup: false,
        },
        policy(),
    )
    .unwrap();
    let player = client
        .player(&"Player01".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(player.top_manager, "TopManagerA");
    client
        .transfer(
            &player,
            money(10_000, Currency::Php),
            "pay_nonce_1",
            "paygate top-up",
        )
        .await
        .unwrap();
    let balances = client.agent_balances().await;
    assert_eq!(balances.len(), 1);
    assert_eq!(
        balances[0].1.as_ref().unwrap(),
        &money(120_050, Currency::Php)
    );

    let seen = stand_in.seen();
    assert_eq!(seen[0].at(), "GET /api/Bridge/get-user/Player01");
    let transfer = stand_in.one("POST", "/Default/Transfer");
    let body = transfer.json();
    as_documented(
        &body,
        &fixture("casino", "transfer.request.json"),
        "transfer",
    );
    assert_eq!(body["authToken"], token);
    assert_eq!(body["platform"], 1);
    assert_eq!(body["amount"], json!(100.0), "pesos, a number");
    assert_eq!(body["toAgent"], false);
    assert_eq!(body["currency"], "php");
    assert_eq!(body["nonce"], "pay_nonce_1");
    assert_eq!(body["clientId"], json!(100_000_001), "a number");
    assert_eq!(body["username"], "Player01");
    let balances = stand_in.one("POST", "/account/get-balances");
    let body = balances.json();
    as_documented(
        &body,
        &fixture("casino", "get_balances.request.json"),
        "get-balances",
    );
    assert!(body.get("currency").is_none());
    assert_eq!(body["authToken"], token);
}

// ------------------------------------------------------------ Payment Engine

/// fixtures/payment_engine SOURCES.md (the guide, S2): login and refresh
/// with their JSON bodies, the transaction's create, its status and the
/// balance with the bearer token, or `X-API-Key` instead of a login.
#[tokio::test]
async fn payment_engine_sends_what_its_guide_shows() {
    use shared::providers::payment_engine::{
        PaymentEngineAuth, PaymentEngineClient, PaymentEngineConfig,
    };
    let refused_once = Arc::new(Mutex::new(false));
    let stand_in = Capture::start(
        move |seen| match (seen.method.as_str(), seen.path.as_str()) {
            ("POST", "/api/v1/auth/login" | "/api/v1/auth/refresh") => {
                Reply::fixture("payment_engine", "login.reply.json")
            }
            // The guide shows a create's `id` and `status` only.
            ("POST", "/api/v1/transactions") => {
                Reply::json(201, &json!({"id": "txn_1", "status": "PENDING"}))
            }
            ("GET", "/api/v1/transactions/txn_1/status") => {
                let mut refused = refused_once.lock().unwrap();
                if !*refused && seen.header("authorization").is_some() {
                    // The token lapsed: the guide says refresh on 401.
                    *refused = true;
                    return Reply::fixture("payment_engine", "error.reply.json").status(401);
                }
                Reply::json(200, &json!({"id": "txn_1", "status": "PENDING"}))
            }
            ("GET", p) if p.starts_with("/api/v1/accounts/") => {
                Reply::fixture("payment_engine", "balance.reply.assembled.json")
            }
            _ => Reply::text(404, "unexpected"),
        },
    )
    .await;
    let config = |auth| PaymentEngineConfig {
        base_url: stand_in.url.clone(),
        auth,
        to_account_id: "acc_456".into(),
        webhook_secret: "whsec".to_string().into(),
        standard_webhooks_secret: None,
    };
    let client = PaymentEngineClient::new(
        config(PaymentEngineAuth::Login {
            username: "your-username".into(),
            password: "your-password".to_string().into(),
        }),
        policy(),
    )
    .unwrap();
    let id = PaymentId::generate();
    let customer = Customer::default();
    let created = client
        .create(&create_request(
            id,
            money(100_000, Currency::Usd),
            &customer,
            "https://pay.example.com/webhooks/payment-engine",
        ))
        .await
        .unwrap();
    assert_eq!(created.provider_reference.as_str(), "txn_1");
    let txn = payment(
        Provider::PaymentEngine,
        money(100_000, Currency::Usd),
        "txn_1",
    );
    client.status(&txn).await.unwrap();
    Gateway::balance(&client).await.unwrap();
    assert_eq!(
        stand_in.routes(),
        [
            "POST /api/v1/auth/login",
            "POST /api/v1/transactions",
            "GET /api/v1/transactions/txn_1/status",
            "POST /api/v1/auth/refresh",
            "GET /api/v1/transactions/txn_1/status",
            "GET /api/v1/accounts/acc_456/balance",
        ]
    );
    let seen = stand_in.seen();
    as_documented(
        &seen[0].json(),
        &fixture("payment_engine", "login.request.json"),
        "login",
    );
    assert_eq!(seen[0].json()["username"], "your-username");
    let documented = fixture("payment_engine", "login.reply.json");
    let bearer = format!("Bearer {}", documented["access_token"].as_str().unwrap());
    let create = seen[1].json();
    like_documented(
        &create,
        &fixture("payment_engine", "create_transaction.request.json"),
        // Our payment id, which the guide's webhook handlers read back as
        // `data.externalReference`.
        &["externalReference"],
        // The payer's account, which a merchant's create does not know,
        // and the optional metadata.
        &["fromAccountId", "metadata"],
        "create",
    );
    assert_eq!(create["amount"], json!(1000), "major units, a number");
    assert_eq!(create["currencyCode"], "USD");
    assert_eq!(create["toAccountId"], "acc_456");
    assert_eq!(create["externalReference"], id.to_string());
    for call in [&seen[1], &seen[2], &seen[4], &seen[5]] {
        assert_eq!(
            call.header("authorization"),
            Some(bearer.as_str()),
            "{}",
            call.at()
        );
    }
    as_documented(
        &seen[3].json(),
        &fixture("payment_engine", "refresh.request.json"),
        "refresh",
    );
    assert_eq!(seen[3].json()["refresh_token"], documented["refresh_token"]);

    // The API-key alternative: the header on every call, no login.
    let keyed = PaymentEngineClient::new(
        config(PaymentEngineAuth::ApiKey {
            api_key: "your-api-key".to_string().into(),
        }),
        policy(),
    )
    .unwrap();
    keyed.status(&txn).await.unwrap();
    let last = stand_in.seen().pop().unwrap();
    assert_eq!(last.at(), "GET /api/v1/transactions/txn_1/status");
    assert_eq!(last.header("x-api-key"), Some("your-api-key"));
    assert_eq!(last.header("authorization"), None);
}
