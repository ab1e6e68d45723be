//! The sandbox against the providers' documented wire: each documented
//! request (shared/tests/fixtures/<provider>, every file with its source in
//! that folder's SOURCES.md) is sent to the sandbox as published, with only
//! the sandbox's own credentials and ids put in, and each answer must have
//! the documented shape: the same keys, and values of the same JSON types.
//! A sandbox that drifts from the documented wire fails here.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

fn fixture_text(provider: &str, name: &str) -> String {
    let path = format!(
        "{}/../../shared/tests/fixtures/{provider}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture(provider: &str, name: &str) -> Value {
    serde_json::from_str(&fixture_text(provider, name)).unwrap()
}

/// A `key=value`-per-line form fixture.
fn form(provider: &str, name: &str) -> Vec<(String, String)> {
    fixture_text(provider, name)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The form with some values replaced (the sandbox's credentials and ids).
fn with(form: Vec<(String, String)>, values: &[(&str, &str)]) -> Vec<(String, String)> {
    form.into_iter()
        .map(|(k, v)| match values.iter().find(|(name, _)| *name == k) {
            Some((_, new)) => (k, new.to_string()),
            None => (k, v),
        })
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
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

/// `got` has every key of `documented`, each a value of the same JSON type
/// (null in the documentation stands for any type), objects compared
/// inside and arrays by their first element.
fn has_shape(got: &Value, documented: &Value, at: &str) {
    match (got, documented) {
        (_, Value::Null) => {}
        (Value::Object(g), Value::Object(d)) => {
            for (k, dv) in d {
                let gv = g
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}.{k} is missing from {got}"));
                has_shape(gv, dv, &format!("{at}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(d)) => {
            if let (Some(gv), Some(dv)) = (g.first(), d.first()) {
                has_shape(gv, dv, &format!("{at}[0]"));
            }
        }
        _ => assert_eq!(
            kind(got),
            kind(documented),
            "{at}: {got} is not of the documented type ({documented})"
        ),
    }
}

/// The same keys as documented, each of the documented type.
fn same_shape(got: &Value, documented: &Value, at: &str) {
    assert_eq!(keys(got), keys(documented), "{at}: {got}");
    has_shape(got, documented, at);
}

async fn sandbox() -> (sandbox::Running, reqwest::Client) {
    let s = sandbox::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (s, reqwest::Client::new())
}

/// A receiver for the callbacks the sandbox sends: every JSON body posted to
/// it, in order.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// Whether `text` is a UUID in its usual 8-4-4-4-12 hex form.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Points an invoice's postLink and failurePostLink at `url`.
fn lock_post_links(s: &sandbox::Running, invoice: &str, url: &str) {
    let mut invoices = s.state.epayment.invoices.lock().unwrap();
    let i = invoices.get_mut(invoice).expect("the invoice");
    i.post_link = url.to_string();
    i.failure_post_link = url.to_string();
}

/// Sends the request; the answer's status and JSON body.
async fn json(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, body)
}

/// DirectPay's CSRF token: the body's token, and the session cookie the
/// answer set (if any).
async fn directpay_csrf(http: &reqwest::Client, api: &str) -> (String, Option<String>) {
    let session = http.get(format!("{api}/csrf_token")).send().await.unwrap();
    assert_eq!(session.status(), 200);
    let cookie = session
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    let csrf: Value = session.json().await.unwrap();
    same_shape(
        &csrf,
        &fixture("directpay", "csrf_token.reply.json"),
        "csrf",
    );
    (csrf["csrf_token"].as_str().unwrap().to_string(), cookie)
}

async fn directpay_login(
    http: &reqwest::Client,
    api: &str,
    csrf: &str,
    cookie: Option<&str>,
) -> (u16, Value) {
    let mut login = fixture("directpay", "login.request.json");
    login["username"] = json!(sandbox::directpay::USERNAME);
    login["password"] = json!(sandbox::directpay::PASSWORD);
    let mut request = http
        .post(format!("{api}/create/login"))
        .header("X-CSRF-TOKEN", csrf)
        .json(&login);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    json(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directpay_login_cash_in_status_and_callback_are_as_documented() {
    let (s, http) = sandbox().await;
    let api = format!("{}/directpay/api", s.url());
    // The merchant instruction's login sends the cookie back (D1); the
    // public client shown working sends the CSRF header alone (D6). Both
    // log in; a cookie of another session does not.
    let (csrf, cookie) = directpay_csrf(&http, &api).await;
    let cookie = cookie.expect("a session cookie by default");
    let (status, reply) = directpay_login(&http, &api, &csrf, Some(&cookie)).await;
    assert_eq!(status, 200, "{reply}");
    same_shape(&reply, &fixture("directpay", "login.reply.json"), "login");
    let (csrf, _) = directpay_csrf(&http, &api).await;
    let (status, reply) = directpay_login(&http, &api, &csrf, None).await;
    assert_eq!(status, 200, "without the cookie: {reply}");
    let (other, _) = directpay_csrf(&http, &api).await;
    let (status, _) = directpay_login(&http, &api, &other, Some(&cookie)).await;
    assert_eq!(status, 403, "a cookie of another session");
    let (status, _) = directpay_login(&http, &api, "not-issued", None).await;
    assert_eq!(status, 403, "a CSRF token it never issued");
    // A DirectPay that sets no cookie at all.
    let settings = format!("{}/_sandbox/directpay/settings", s.url());
    let r = http
        .post(&settings)
        .json(&json!({"session_cookie": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (csrf, cookie) = directpay_csrf(&http, &api).await;
    assert_eq!(cookie, None);
    let (status, reply) = directpay_login(&http, &api, &csrf, None).await;
    assert_eq!(status, 200, "{reply}");
    let token = reply["data"]["token"].as_str().unwrap().to_string();

    let (hook, seen) = receiver().await;
    let mut cash_in = fixture("directpay", "pay_cashin.request.json");
    cash_in["webhook"] = json!(hook);
    // D1's older body (no merchant reference) is taken too.
    let mut older = fixture("directpay", "gcash_cashin.request.json");
    older["webhook"] = json!(hook);
    for body in [&older, &cash_in] {
        let (status, created) = json(
            http.post(format!("{api}/pay_cashin"))
                .bearer_auth(&token)
                .json(body),
        )
        .await;
        assert_eq!(status, 200, "{created}");
        same_shape(
            &created,
            &fixture("directpay", "pay_cashin.reply.assembled.json"),
            "pay_cashin",
        );
    }
    // The other shape public clients read: the cash-in under `data`.
    http.post(&settings)
        .json(&json!({"cash_in_under_data": true}))
        .send()
        .await
        .unwrap();
    let (status, nested) = json(
        http.post(format!("{api}/pay_cashin"))
            .bearer_auth(&token)
            .json(&cash_in),
    )
    .await;
    assert_eq!(status, 200, "{nested}");
    same_shape(
        &nested,
        &fixture("directpay", "pay_cashin.reply.under_data.assembled.json"),
        "pay_cashin under data",
    );
    let id = nested["data"]["transactionId"].as_str().unwrap();

    let (status, answer) = json(
        http.get(format!("{api}/cashin_transactions_status/{id}"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200);
    has_shape(
        &answer,
        &fixture(
            "directpay",
            "cashin_transactions_status.reply.assembled.json",
        ),
        "status",
    );
    // A transaction it does not have: 404 in JSON; a path it does not
    // serve: its web server's HTML page.
    let (status, answer) = json(
        http.get(format!("{api}/cashin_transactions_status/DP-NOPE"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 404);
    same_shape(
        &answer,
        &fixture(
            "directpay",
            "cashin_transactions_status.reply.not_found.ours.json",
        ),
        "status of an unknown transaction",
    );
    let page = http
        .post(format!("{api}/checkout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    assert_eq!(
        page.text().await.unwrap(),
        fixture_text("directpay", "unknown_route.reply.html")
    );

    // The callback has the captured callback's keys and types, and names
    // the cash-in by its transaction id in refId.
    for (word, documented) in [
        ("SUCCESS", "callback.edited.success.json"),
        ("FAILED", "callback.real.failed.json"),
    ] {
        let r = http
            .post(format!(
                "{}/_sandbox/directpay/transactions/{id}/status",
                s.url()
            ))
            .json(&json!({"status": word}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = seen.lock().unwrap().last().cloned().expect("a callback");
        same_shape(&body, &fixture("directpay", documented), documented);
        assert_eq!(body["refId"], json!(id));
        assert!(body["txnId"]
            .as_str()
            .is_some_and(|t| t.bytes().all(|b| b.is_ascii_digit())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epayment_tokens_status_and_operation_errors_are_as_documented() {
    let (s, http) = sandbox().await;
    let token_url = format!("{}/epayment/oauth/oauth2/token", s.url());
    let ours = [
        ("client_id", sandbox::epayment::CLIENT_ID),
        ("client_secret", sandbox::epayment::CLIENT_SECRET),
        ("terminal", sandbox::epayment::TERMINAL),
    ];
    let with_refresh = fixture("epayment", "token.reply.with_refresh.json");
    let mut webapi = String::new();
    for name in [
        "token.request.webapi.form",
        "token.request.status.form",
        "token.request.payment.form",
        "token.request.payment.scope_full.form",
    ] {
        let invoice = format!("{}", 100_000_000 + (ulid::Ulid::new().0 % 800_000_000));
        let f = with(
            form("epayment", name),
            &[ours[0], ours[1], ours[2], ("invoiceID", invoice.as_str())],
        );
        let (status, reply) = json(http.post(&token_url).form(&f)).await;
        assert_eq!(status, 200, "{name}: {reply}");
        // The documented reply's keys; expires_in as a number or, as the
        // bank's own SDK reads it, a string.
        assert_eq!(keys(&reply), keys(&with_refresh), "{name}: {reply}");
        assert!(reply["access_token"].is_string() && reply["token_type"] == "Bearer");
        assert!(reply["expires_in"].is_number() || reply["expires_in"].is_string());
        if name == "token.request.webapi.form" {
            webapi = reply["access_token"].as_str().unwrap().to_string();
        }
    }

    // An invoice the bank has no transaction for, and a bank asking to be
    // called again: the documented codes, in the documented reply's shape.
    let api = format!("{}/epayment/api", s.url());
    let unknown = format!("{api}/check-status/payment/transaction/200000999");
    let (status, checked) = json(http.get(&unknown).bearer_auth(&webapi)).await;
    assert_eq!(status, 200);
    same_shape(
        &checked,
        &fixture("epayment", "check_status.not_found.seed.json"),
        "check-status of an unknown invoice",
    );
    assert_eq!(checked["resultCode"], "102");
    let busy = http
        .post(format!("{}/_sandbox/epayment/busy", s.url()))
        .json(&json!({"count": 1}))
        .send()
        .await
        .unwrap();
    assert!(busy.status().is_success());
    let (status, checked) = json(http.get(&unknown).bearer_auth(&webapi)).await;
    assert_eq!(status, 200);
    same_shape(
        &checked,
        &fixture("epayment", "check_status.busy.seed.json"),
        "check-status when busy",
    );
    assert_eq!(checked["resultCode"], "107");
    // The same result bodies with HTTP 400, as the bank also sends them.
    let settings = format!("{}/_sandbox/epayment/settings", s.url());
    http.post(&settings)
        .json(&json!({"result_http": 400}))
        .send()
        .await
        .unwrap();
    let (status, checked) = json(http.get(&unknown).bearer_auth(&webapi)).await;
    assert_eq!(status, 400);
    same_shape(
        &checked,
        &fixture("epayment", "check_status.not_found.seed.json"),
        "check-status of an unknown invoice, HTTP 400",
    );
    assert_eq!(checked["resultCode"], "102");
    http.post(&settings).json(&json!({})).send().await.unwrap();

    // A paid invoice's status has every documented key of the reply.
    let invoice = "200000101";
    let f = with(
        form("epayment", "token.request.payment.form"),
        &[ours[0], ours[1], ours[2], ("invoiceID", invoice)],
    );
    assert_eq!(
        http.post(&token_url)
            .form(&f)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let paid = http
        .post(format!(
            "{}/_sandbox/epayment/invoices/{invoice}/pay",
            s.url()
        ))
        .json(&json!({"status": "CHARGE", "callback": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    let (status, checked) = json(
        http.get(format!("{api}/check-status/payment/transaction/{invoice}"))
            .bearer_auth(&webapi),
    )
    .await;
    assert_eq!(status, 200);
    has_shape(
        &checked,
        &fixture("epayment", "check_status.reply.json"),
        "check-status",
    );
    // Ids in the bank's form: the transaction a UUID, the terminal's too.
    assert!(
        is_uuid(checked["transaction"]["id"].as_str().unwrap()),
        "{checked}"
    );
    assert!(is_uuid(
        checked["transaction"]["terminalID"].as_str().unwrap()
    ));

    // A declined payment: resultCode 101 (the seed's REJECT), with HTTP 200
    // or 400.
    let declined = "200000102";
    let f = with(
        form("epayment", "token.request.payment.form"),
        &[ours[0], ours[1], ours[2], ("invoiceID", declined)],
    );
    assert_eq!(
        http.post(&token_url)
            .form(&f)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (hook, seen) = receiver().await;
    lock_post_links(&s, declined, &hook);
    http.post(format!(
        "{}/_sandbox/epayment/invoices/{declined}/pay",
        s.url()
    ))
    .json(&json!({"status": "REJECT"}))
    .send()
    .await
    .unwrap();
    for code in [200, 400] {
        http.post(&settings)
            .json(&json!({"result_http": code}))
            .send()
            .await
            .unwrap();
        let (status, checked) = json(
            http.get(format!("{api}/check-status/payment/transaction/{declined}"))
                .bearer_auth(&webapi),
        )
        .await;
        assert_eq!(status, code);
        same_shape(
            &checked,
            &fixture("epayment", "check_status.reject.seed.json"),
            "check-status of a declined payment",
        );
    }
    // The decline's postLink: every key of the captured one (and our
    // secret_hash), reasonCode a number, ids in the bank's form.
    let posted = seen.lock().unwrap().last().cloned().expect("a postLink");
    let captured = fixture("epayment", "callback.real.json");
    let mut expected = keys(&captured);
    expected.insert("secret_hash".into());
    assert_eq!(keys(&posted), expected, "{posted}");
    has_shape(&posted, &captured, "postLink");
    assert_eq!(posted["code"], "error");
    assert!(posted["reasonCode"].is_number());
    assert!(is_uuid(posted["id"].as_str().unwrap()));
    assert!(is_uuid(posted["terminal"].as_str().unwrap()));
    assert!(posted["reference"]
        .as_str()
        .is_some_and(|r| r.len() == 12 && r.bytes().all(|b| b.is_ascii_digit())));

    // Refusals of refund, cancel and charge: HTTP 400 and the bank's body,
    // its code a number of the bank's own.
    for (op, documented) in [
        ("refund", "refund.error.json"),
        ("cancel", "cancel.error.json"),
        ("charge", "charge.error.json"),
    ] {
        let (status, body) = json(
            http.post(format!("{api}/operation/no-such-operation/{op}"))
                .bearer_auth(&webapi)
                .json(&fixture("epayment", "charge.request.json")),
        )
        .await;
        assert_eq!(status, 400, "{op}");
        same_shape(&body, &fixture("epayment", documented), op);
        assert_ne!(
            body["code"],
            json!(400),
            "{op}: the bank's code, not HTTP's"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qpay_check_errors_and_repeated_sender_numbers_are_as_documented() {
    let (s, http) = sandbox().await;
    let q = format!("{}/qpay/v2", s.url());
    let (_, token) = json(
        http.post(format!("{q}/auth/token"))
            .basic_auth(sandbox::qpay::CLIENT_ID, Some(sandbox::qpay::CLIENT_SECRET)),
    )
    .await;
    let bearer = token["access_token"].as_str().unwrap().to_string();
    // The same sender_invoice_no twice: QPay makes two invoices.
    let mut ids = BTreeSet::new();
    for _ in 0..2 {
        let mut request = fixture("qpay", "invoice.request.simple.json");
        request["invoice_code"] = json!(sandbox::qpay::INVOICE_CODE);
        let (status, reply) = json(
            http.post(format!("{q}/invoice"))
                .bearer_auth(&bearer)
                .json(&request),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        ids.insert(reply["invoice_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 2, "two invoices, not a conflict");

    let mut check = fixture("qpay", "payment_check.request.json");
    check["object_id"] = json!(ids.first().unwrap());
    // Unpaid: `{"count": 0, "rows": []}`, no paid_amount.
    let (status, reply) = json(
        http.post(format!("{q}/payment/check"))
            .bearer_auth(&bearer)
            .json(&check),
    )
    .await;
    assert_eq!(status, 200);
    same_shape(
        &reply,
        &fixture("qpay", "payment_check.reply.unpaid.json"),
        "payment/check",
    );

    // Paid rows in the full shape of QPay's sheet, a P2P and a card one:
    // every key in every row, as the published Python client requires.
    for (kind, documented) in [
        ("P2P", "payment_check.reply.paid.p2p.json"),
        ("CARD", "payment_check.reply.paid.card.json"),
    ] {
        let paid = ids.iter().nth(usize::from(kind == "CARD")).unwrap();
        let r = http
            .post(format!("{}/_sandbox/qpay/invoices/{paid}/pay", s.url()))
            .json(&json!({"type": kind, "callback": "none"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        check["object_id"] = json!(paid);
        let (status, reply) = json(
            http.post(format!("{q}/payment/check"))
                .bearer_auth(&bearer)
                .json(&check),
        )
        .await;
        assert_eq!(status, 200);
        let documented = fixture("qpay", documented);
        same_shape(&reply, &documented, kind);
        same_shape(&reply["rows"][0], &documented["rows"][0], kind);
        let list = if kind == "CARD" {
            "card_transactions"
        } else {
            "p2p_transactions"
        };
        same_shape(
            &reply["rows"][0][list][0],
            &documented["rows"][0][list][0],
            list,
        );
        assert_eq!(reply["paid_amount"], json!(100), "{reply}");
        assert_eq!(reply["rows"][0]["payment_amount"], "100.00");
    }

    // DELETE of an unpaid invoice: HTTP 200 and `{}`.
    let mut request = fixture("qpay", "invoice.request.simple.json");
    request["invoice_code"] = json!(sandbox::qpay::INVOICE_CODE);
    let (_, open) = json(
        http.post(format!("{q}/invoice"))
            .bearer_auth(&bearer)
            .json(&request),
    )
    .await;
    let (status, deleted) = json(
        http.delete(format!(
            "{q}/invoice/{}",
            open["invoice_id"].as_str().unwrap()
        ))
        .bearer_auth(&bearer),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(deleted, fixture("qpay", "invoice_cancel.reply.json"));

    // A refresh answered as QPay's developer page shows it: `{}`.
    http.post(format!("{}/_sandbox/qpay/settings", s.url()))
        .json(&json!({"refresh_answers_empty": true}))
        .send()
        .await
        .unwrap();
    let (status, refreshed) = json(
        http.post(format!("{q}/auth/refresh"))
            .bearer_auth(token["refresh_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        refreshed,
        fixture("qpay", "auth_refresh.reply.official.json")
    );

    // An unknown object: 422 (NOT_FOUND_ERROR in QPay's table), QPay's body.
    let documented = fixture("qpay", "error.payment_settled.json");
    let unknown = fixture("qpay", "payment_check.request.json");
    for r in [
        http.post(format!("{q}/payment/check"))
            .bearer_auth(&bearer)
            .json(&unknown),
        http.delete(format!("{q}/invoice/no-such-invoice"))
            .bearer_auth(&bearer),
        http.delete(format!("{q}/payment/refund/no-such-payment"))
            .bearer_auth(&bearer),
    ] {
        let (status, body) = json(r).await;
        assert_eq!(status, 422, "{body}");
        same_shape(&body, &documented, "error");
        assert_eq!(body["error"], body["message"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toyyibpay_category_bill_and_transactions_are_as_documented() {
    let (s, http) = sandbox().await;
    let api = format!("{}/toyyibpay/index.php/api", s.url());
    let key = [("userSecretKey", sandbox::toyyibpay::SECRET_KEY)];
    let category = with(form("toyyibpay", "create_category.request.form"), &key);
    let (_, first) = json(http.post(format!("{api}/createCategory")).form(&category)).await;
    same_shape(
        &first[0],
        &fixture("toyyibpay", "create_category.reply.json")[0],
        "createCategory",
    );
    let (_, again) = json(http.post(format!("{api}/createCategory")).form(&category)).await;
    same_shape(
        &again,
        &fixture("toyyibpay", "create_category.reply.exists.object.json"),
        "createCategory (exists)",
    );
    assert_eq!(again["CategoryCode"], first[0]["CategoryCode"]);
    let code = first[0]["CategoryCode"].as_str().unwrap().to_string();

    let bill = with(
        form("toyyibpay", "create_bill.request.form"),
        &[key[0], ("categoryCode", code.as_str())],
    );
    let (_, created) = json(http.post(format!("{api}/createBill")).form(&bill)).await;
    same_shape(
        &created[0],
        &fixture("toyyibpay", "create_bill.reply.json")[0],
        "createBill",
    );
    let bill_code = created[0]["BillCode"].as_str().unwrap().to_string();
    // A bill name ToyyibPay does not take: its refusal as an object
    // carrying `msg`, as integrators have seen it.
    let refused = with(bill.clone(), &[("billName", "Car Rental #WXX123!")]);
    let (_, refusal) = json(http.post(format!("{api}/createBill")).form(&refused)).await;
    same_shape(
        &refusal,
        &fixture("toyyibpay", "create_bill.reply.error_object.described.json"),
        "createBill refusal",
    );
    let paid = http
        .post(format!(
            "{}/_sandbox/toyyibpay/bills/{bill_code}/attempt",
            s.url()
        ))
        .json(&json!({"status": 1, "callback": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    // The documented request carries no secret key.
    let transactions = with(
        form("toyyibpay", "get_bill_transactions.request.form"),
        &[("billCode", bill_code.as_str())],
    );
    let (_, rows) = json(
        http.post(format!("{api}/getBillTransactions"))
            .form(&transactions),
    )
    .await;
    same_shape(
        &rows[0],
        &fixture("toyyibpay", "get_bill_transactions.reply.json")[0],
        "getBillTransactions",
    );
    assert_eq!(rows[0]["billpaymentAmount"], "1.00", "100 sen is RM1.00");

    // A wrong key: ToyyibPay's bracketed word, as text.
    let wrong = with(category, &[("userSecretKey", "not-a-key")]);
    let text = http
        .post(format!("{api}/createCategory"))
        .form(&wrong)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        text,
        fixture_text("toyyibpay", "error.key_did_not_exist.txt").trim()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_casino_bridge_takes_documented_transfers_and_answers_as_documented() {
    let (s, http) = sandbox().await;
    let bridge = format!("{}/casino", s.url());
    let player = s.state.casino.players.lock().unwrap()["player1"].clone();
    let token = sandbox::casino::TOKENS
        .iter()
        .find(|(m, _)| *m == player.top_manager)
        .unwrap()
        .1;
    let ours = |mut v: Value| {
        v["authToken"] = json!(token);
        v["clientId"] = json!(player.client_id);
        v["username"] = json!(player.username);
        v
    };
    for name in ["transfer.request.json", "transfer.request.no_nonce.json"] {
        let mut request = ours(fixture("casino", name));
        if request.get("currency").is_some() {
            request["currency"] = json!("php");
        }
        let (status, reply) = json(
            http.post(format!("{bridge}/Default/Transfer"))
                .json(&request),
        )
        .await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(reply, fixture("casino", "transfer.reply.json"), "{name}");
    }
    assert_eq!(
        s.state.casino.players.lock().unwrap()["player1"].balance_centavos,
        20_000,
        "both transfers of 100 arrived"
    );

    let (status, balances) = json(
        http.post(format!("{bridge}/account/get-balances"))
            .json(&ours(fixture("casino", "get_balances.request.json"))),
    )
    .await;
    assert_eq!(status, 200);
    same_shape(
        &balances,
        &fixture("casino", "get_balances.reply.json"),
        "get-balances",
    );
    // A property GetClientBalancesRequest does not have (C6's `currency`)
    // is refused: the schema allows no others.
    let mut with_currency = ours(fixture("casino", "get_balances.request.json"));
    with_currency["currency"] = json!("PHP");
    let (status, _) = json(
        http.post(format!("{bridge}/account/get-balances"))
            .json(&with_currency),
    )
    .await;
    assert_eq!(status, 400);

    let (status, found) =
        json(http.get(format!("{bridge}/api/Bridge/get-user/{}", player.username))).await;
    assert_eq!(status, 200);
    same_shape(&found, &fixture("casino", "lookup.reply.json"), "get-user");

    // A refusal stays inside the bridge's status enum (0..=4).
    let mut unknown = ours(fixture("casino", "transfer.request.json"));
    unknown["username"] = json!("nobody-here");
    let (_, refused) = json(
        http.post(format!("{bridge}/Default/Transfer"))
            .json(&unknown),
    )
    .await;
    assert!(
        refused["status"]
            .as_u64()
            .is_some_and(|v| (1..=4).contains(&v)),
        "{refused}"
    );
    assert!(refused["message"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_engine_login_create_and_errors_are_as_the_guide_shows() {
    let (s, http) = sandbox().await;
    let v1 = format!("{}/payment-engine/api/v1", s.url());
    let mut login = fixture("payment_engine", "login.request.json");
    login["username"] = json!(sandbox::payment_engine::USERNAME);
    login["password"] = json!(sandbox::payment_engine::PASSWORD);
    let (status, tokens) = json(http.post(format!("{v1}/auth/login")).json(&login)).await;
    assert_eq!(status, 200);
    same_shape(
        &tokens,
        &fixture("payment_engine", "login.reply.json"),
        "login",
    );

    let mut refresh = fixture("payment_engine", "refresh.request.json");
    refresh["refresh_token"] = tokens["refresh_token"].clone();
    let (status, refreshed) = json(http.post(format!("{v1}/auth/refresh")).json(&refresh)).await;
    assert_eq!(status, 200);
    assert!(refreshed["access_token"].is_string());
    let bearer = refreshed["access_token"].as_str().unwrap().to_string();

    for name in [
        "create_transaction.request.json",
        "create_transaction.request.test.json",
    ] {
        let mut request = fixture("payment_engine", name);
        request["toAccountId"] = json!(sandbox::payment_engine::ACCOUNT);
        let (status, created) = json(
            http.post(format!("{v1}/transactions"))
                .bearer_auth(&bearer)
                .json(&request),
        )
        .await;
        // The guide's load test expects 201 with an id; its flow test
        // expects PENDING on create.
        assert_eq!(status, 201, "{name}: {created}");
        assert!(created["id"].is_string());
        assert_eq!(created["status"], "PENDING");
    }

    // The balance, in the assembled shape the client reads.
    let (status, balance) = json(
        http.get(format!(
            "{v1}/accounts/{}/balance",
            sandbox::payment_engine::ACCOUNT
        ))
        .bearer_auth(&bearer),
    )
    .await;
    assert_eq!(status, 200);
    same_shape(
        &balance,
        &fixture("payment_engine", "balance.reply.assembled.json"),
        "balance",
    );

    // Errors in the guide's format, with a code from its table.
    let documented = fixture("payment_engine", "error.reply.json");
    let (status, body) = json(
        http.post(format!("{v1}/transactions"))
            .bearer_auth(&bearer)
            .json(&fixture(
                "payment_engine",
                "create_transaction.request.json",
            )),
    )
    .await;
    assert_eq!(status, 404, "an unknown account");
    // The same keys; `details` is an object whose keys depend on the error.
    assert_eq!(keys(&body), keys(&documented));
    assert_eq!(keys(&body["error"]), keys(&documented["error"]), "{body}");
    for key in ["code", "message", "timestamp", "requestId"] {
        assert!(body["error"][key].is_string(), "{key} in {body}");
    }
    assert!(body["error"]["details"].is_object());
    let table = [
        "INVALID_REQUEST",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "NOT_FOUND",
        "INSUFFICIENT_FUNDS",
        "INVALID_ACCOUNT_STATUS",
        "RATE_LIMIT_EXCEEDED",
        "INTERNAL_ERROR",
        "SERVICE_UNAVAILABLE",
    ];
    let (_, refused) = json(
        http.post(format!("{v1}/auth/login"))
            .json(&fixture("payment_engine", "login.request.json")),
    )
    .await;
    for b in [&body, &refused] {
        let code = b["error"]["code"].as_str().unwrap();
        assert!(table.contains(&code), "{code} is not in the guide's table");
    }
}

/// A Paygram request fixture: a curl command (method, the URL's path and
/// query, headers, body), its arguments single-quoted.
struct Curl {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

fn curl(provider: &str, name: &str) -> Curl {
    let text = fixture_text(provider, name);
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
                (name.trim().to_string(), value.trim().to_string())
            })
            .collect(),
        body: one("-d"),
    }
}

/// Sends a curl fixture to the sandbox under `base` with its placeholders
/// (and the capture's token) replaced, `body` instead of its own if given.
async fn send_curl(
    http: &reqwest::Client,
    base: &str,
    documented: &Curl,
    values: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Value) {
    assert_eq!(documented.method, "POST");
    let mut target = documented.target.clone();
    for (placeholder, value) in values {
        target = target.replace(placeholder, value);
    }
    let mut request = http.post(format!("{base}{target}"));
    for (name, value) in &documented.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let body = body.map_or_else(|| documented.body.clone(), Value::to_string);
    json(request.body(body)).await
}

/// Every value of `v` at the keys naming one of `enums`' enums is a member.
fn enum_members(enums: &Value, v: &Value, keys: &[(&str, &str)]) {
    for (key, name) in keys {
        let Some(n) = v.get(*key) else { continue };
        let n = n
            .as_i64()
            .unwrap_or_else(|| panic!("{key}: {n} is not a number"));
        assert!(
            enums[*name]
                .as_object()
                .unwrap()
                .values()
                .any(|m| m.as_i64() == Some(n)),
            "{key}: {n} is not a value of {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paygram_legacy_api_answers_as_the_capture_shows() {
    let (s, http) = sandbox().await;
    let enums = fixture("paygram", "enums.json");
    let base = format!("{}/paygram", s.url());
    let token = [("{token}", sandbox::paygram::TOKEN)];
    let member = |v: &Value| {
        enum_members(
            &enums,
            v,
            &[
                ("status", "InvoiceStatuses"),
                ("currencyCode", "Currencies"),
            ],
        )
    };

    // The captured IssueInvoice, as sent, with only the token put in.
    let issue = curl("paygram", "legacy.issue_invoice.request.curl");
    let (status, issued) = send_curl(&http, &base, &issue, &token, None).await;
    assert_eq!(status, 200, "{issued}");
    same_shape(
        &issued,
        &fixture("paygram", "legacy.issue_invoice.reply.json"),
        "IssueInvoice",
    );
    member(&issued);
    assert_eq!(issued["toUser"], "tmloader");
    let code = issued["invoiceCode"].as_str().unwrap().to_string();

    // The captured InvoiceInfo, for this invoice.
    let info = curl("paygram", "legacy.invoice_info.request.curl");
    let mut body: Value = serde_json::from_str(&info.body).unwrap();
    body["invoiceCode"] = json!(code);
    let (_, pending) = send_curl(&http, &base, &info, &token, Some(&body)).await;
    same_shape(
        &pending,
        &fixture("paygram", "legacy.invoice_info.reply.json"),
        "InvoiceInfo",
    );
    assert_eq!(
        (&pending["status"], &pending["isPaid"]),
        (&json!(4), &json!(false))
    );
    http.post(format!(
        "{}/_sandbox/paygram/invoices/{code}/status",
        s.url()
    ))
    .json(&json!({"status": 2, "callback": "none"}))
    .send()
    .await
    .unwrap();
    let (_, paid) = send_curl(&http, &base, &info, &token, Some(&body)).await;
    same_shape(
        &paid,
        &fixture("paygram", "legacy.pay_invoice.reply.json"),
        "InvoiceInfo, paid",
    );
    member(&paid);
    assert_eq!(
        (&paid["status"], &paid["isPaid"]),
        (&json!(2), &json!(true))
    );

    // A wrong token: the captured refusal.
    let (_, refused) = send_curl(
        &http,
        &base,
        &info,
        &[("{token}", "not-the-token")],
        Some(&body),
    )
    .await;
    same_shape(
        &refused,
        &fixture("paygram", "legacy.error.invalid_token.json"),
        "wrong token",
    );
    assert_eq!(refused["message"], "Invalid Token");

    // Every call carries requestId and userCliId; a request without them
    // (the official form: parameters in the query, body {}) is refused in
    // the captured refusal's form and issues nothing.
    let before = s.state.paygram.invoices.lock().unwrap().len();
    for missing in ["requestId", "userCliId"] {
        let mut body: Value = serde_json::from_str(&issue.body).unwrap();
        body.as_object_mut().unwrap().remove(missing);
        let (_, refused) = send_curl(&http, &base, &issue, &token, Some(&body)).await;
        assert_eq!(refused["success"], false, "without {missing}: {refused}");
    }
    let official = curl("paygram", "official.issue_invoice.request.assembled.curl");
    let official_target = official
        .target
        .replacen("/PayGramUsers", "", 1)
        .replace("{token}", sandbox::paygram::TOKEN)
        .replace("{callback_data}", "pay_1");
    let mut request = http.post(format!("{base}{official_target}"));
    for (name, value) in &official.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let (_, refused) = json(request.body(official.body.clone())).await;
    same_shape(
        &refused,
        &fixture("paygram", "legacy.error.invalid_token.json"),
        "official form",
    );
    assert_eq!(refused["success"], false);
    // A media type the page does not list.
    let r = http
        .post(format!("{base}/{}/IssueInvoice", sandbox::paygram::TOKEN))
        .header("content-type", "text/plain")
        .body(issue.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert_eq!(s.state.paygram.invoices.lock().unwrap().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paygram_official_api_answers_as_the_sdk_reads() {
    let (s, http) = sandbox().await;
    let enums = fixture("paygram", "enums.json");
    let base = format!("{}/paygram", s.url());
    let member = |v: &Value| {
        enum_members(
            &enums,
            v,
            &[
                ("Status", "InvoiceStatuses"),
                ("CurrencyCode", "Currencies"),
                ("ResponseCode", "ResponseCodes"),
                ("InvoiceType", "InvoiceTypes"),
            ],
        )
    };
    let issue = curl("paygram", "official.issue_invoice.request.assembled.curl");
    let values = [
        ("{token}", sandbox::paygram::TOKEN),
        ("{callback_data}", "pay_01JG0000000000000000000002"),
    ];
    let (status, issued) = send_curl(&http, &base, &issue, &values, None).await;
    assert_eq!(status, 200, "{issued}");
    same_shape(
        &issued,
        &fixture("paygram", "official.issue_invoice.reply.assembled.json"),
        "IssueInvoice",
    );
    member(&issued);
    assert_eq!(issued["CallbackData"], "pay_01JG0000000000000000000002");
    assert_eq!(issued["Amount"].to_string(), "100.0", "a C# decimal");
    let code = issued["InvoiceCode"].as_str().unwrap().to_string();

    let info = curl("paygram", "official.invoice_info.request.assembled.curl");
    let values = [
        ("{token}", sandbox::paygram::TOKEN),
        ("{invoice_code}", code.as_str()),
    ];
    let (_, pending) = send_curl(&http, &base, &info, &values, None).await;
    same_shape(
        &pending,
        &fixture("paygram", "official.invoice_info.reply.assembled.json"),
        "InvoiceInfo",
    );
    member(&pending);
    http.post(format!(
        "{}/_sandbox/paygram/invoices/{code}/status",
        s.url()
    ))
    .json(&json!({"status": 2, "callback": "none"}))
    .send()
    .await
    .unwrap();
    let (_, paid) = send_curl(&http, &base, &info, &values, None).await;
    same_shape(
        &paid,
        &fixture(
            "paygram",
            "official.invoice_info.reply.completed.assembled.json",
        ),
        "InvoiceInfo, paid",
    );
    member(&paid);

    // A wrong token, an unknown invoice: the SDK's ResponseCodes.
    let (_, refused) = send_curl(
        &http,
        &base,
        &info,
        &[
            ("{token}", "not-the-token"),
            ("{invoice_code}", code.as_str()),
        ],
        None,
    )
    .await;
    same_shape(
        &refused,
        &fixture("paygram", "official.error.auth.assembled.json"),
        "token",
    );
    let unknown = [
        ("{token}", sandbox::paygram::TOKEN),
        ("{invoice_code}", "00000000-0000-0000-0000-000000000000"),
    ];
    let (_, refused) = send_curl(&http, &base, &info, &unknown, None).await;
    same_shape(
        &refused,
        &fixture("paygram", "official.error.not_found.assembled.json"),
        "unknown invoice",
    );
    member(&refused);

    // The legacy form (a JSON body, no query) is refused and issues nothing.
    let before = s.state.paygram.invoices.lock().unwrap().len();
    let legacy = curl("paygram", "legacy.issue_invoice.request.curl");
    let target = format!(
        "{base}/PayGramUsers{}",
        legacy.target.replace("{token}", sandbox::paygram::TOKEN)
    );
    let mut request = http.post(target);
    for (name, value) in &legacy.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let (_, refused) = json(request.body(legacy.body.clone())).await;
    assert_eq!(refused["ResponseCode"], 500, "{refused}");
    assert!(refused.get("InvoiceCode").is_none());
    member(&refused);
    assert_eq!(s.state.paygram.invoices.lock().unwrap().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paygram_callbacks_have_the_sdks_shapes() {
    let (s, http) = sandbox().await;
    let (hook, seen) = receiver().await;
    http.post(format!("{}/_sandbox/paygram/callback-url", s.url()))
        .json(&json!({"url": hook}))
        .send()
        .await
        .unwrap();
    let base = format!("{}/paygram", s.url());
    let issue = curl("paygram", "official.issue_invoice.request.assembled.curl");
    let (_, issued) = send_curl(
        &http,
        &base,
        &issue,
        &[
            ("{token}", sandbox::paygram::TOKEN),
            ("{callback_data}", "pay_1"),
        ],
        None,
    )
    .await;
    let code = issued["InvoiceCode"].as_str().unwrap();
    let (_, delivered) = json(
        http.post(format!(
            "{}/_sandbox/paygram/invoices/{code}/status",
            s.url()
        ))
        .json(&json!({"status": 2})),
    )
    .await;
    assert_eq!(delivered["delivered"], 200);
    for kind in ["balance", "withdraw", "money_sent"] {
        let (_, delivered) = json(
            http.post(format!("{}/_sandbox/paygram/callbacks", s.url()))
                .json(&json!({"type": kind})),
        )
        .await;
        assert_eq!(delivered["delivered"], 200, "{kind}");
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    for (got, name) in seen.iter().zip([
        "callback.invoice.assembled.json",
        "callback.balance.assembled.json",
        "callback.withdraw.assembled.json",
        "callback.money_sent.assembled.json",
    ]) {
        same_shape(got, &fixture("paygram", name), name);
    }
    assert_eq!(seen[0]["InvoiceInfo"]["InvoiceCode"], code);
    assert_eq!(seen[0]["CallbackData"], "pay_1");
}
