//! The payer's page against DynamoDB Local and the sandbox: one link per
//! payment that shows each provider's way to pay, follows the payment to
//! its end, guards itself with strict headers, and shows nothing once the
//! link is gone. (The whole journey in a browser is in make test's browser
//! run; here the routes' answers are checked exactly.)

mod common;

use common::cases::{cases, create, trigger};
use common::harness::Harness;
use serde_json::{json, Value};
use shared::ids::PageToken;
use shared::money::{Currency, Money};
use shared::payment::{PaymentStatus, PAGE_AFTER_EXPIRY};

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

/// GET with no API key, as a payer's browser.
async fn open(h: &Harness, url: &str) -> Page {
    let r = h.http.get(url).send().await.unwrap();
    Page {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        text: r.text().await.unwrap(),
    }
}

fn header<'a>(page: &'a Page, name: &str) -> &'a str {
    page.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The headers every answer of the page carries.
fn assert_guarded(page: &Page, what: &str) {
    assert_eq!(
        header(page, "cache-control"),
        "no-store, max-age=0",
        "{what}"
    );
    assert_eq!(header(page, "x-frame-options"), "DENY", "{what}");
    assert_eq!(header(page, "referrer-policy"), "no-referrer", "{what}");
    assert_eq!(header(page, "x-content-type-options"), "nosniff", "{what}");
    let csp = header(page, "content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-"), "{what}: {csp}");
}

/// Whether the page's section `id` is shown (not `hidden`).
fn shows(text: &str, id: &str) -> bool {
    let marker = format!("id=\"{id}\"");
    let Some(at) = text.find(&marker) else {
        return false;
    };
    let tag_end = text[at..].find('>').map_or(text.len(), |e| at + e);
    !text[at..tag_end].contains(" hidden")
}

async fn status_of(h: &Harness, page_url: &str) -> (u16, Value) {
    let r = h
        .http
        .get(format!("{page_url}/status"))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn page_url_of(h: &Harness, id: shared::ids::PaymentId) -> String {
    let r = h.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["checkout"]["page_url"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_has_a_page_that_follows_the_payment_to_the_end() {
    let h = Harness::start().await;
    for case in cases() {
        let id = create(&h, &case, "u_page").await;
        let page_url = page_url_of(&h, id).await;
        let token = page_url
            .strip_prefix(&format!("{}/pay/", h.api))
            .unwrap_or_else(|| panic!("{}: {page_url}", case.provider));
        assert!(token.parse::<PageToken>().is_ok(), "{token}");
        assert!(
            !page_url.contains(&id.to_string()),
            "the link is not the payment id"
        );

        let page = open(&h, &page_url).await;
        assert_eq!(page.status, 200, "{}: {}", case.provider, page.text);
        assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
        assert_guarded(&page, case.provider);
        let amount =
            shared::api::pay_page::display_amount(Money::new(case.amount, case.currency).unwrap());
        assert!(page.text.contains(&amount), "{}: {amount}", case.provider);
        assert!(shows(&page.text, "pay"), "{}", case.provider);
        assert!(!shows(&page.text, "paid"), "{}", case.provider);
        let payment = h.store().payment(id).await.unwrap().unwrap();
        assert!(page.text.contains(payment.reference.as_str()));
        // What each provider's payer needs.
        let checkout = &payment.checkout;
        match case.provider {
            "directpay" | "qpay" => {
                assert!(checkout.qr_text.is_some(), "{}", case.provider);
                assert!(page.text.contains("<svg"), "{}: the QR", case.provider);
            }
            "paygram" => {
                assert!(page.text.contains("<svg"), "paygram: the link's QR");
                let url = checkout.url.as_deref().unwrap();
                assert!(
                    page.text.contains(&format!("href=\"{url}\"")),
                    "paygram: {url}"
                );
            }
            "toyyibpay" => {
                let url = checkout.url.as_deref().unwrap();
                assert!(
                    page.text.contains(&format!("href=\"{url}\"")),
                    "toyyibpay: {url}"
                );
            }
            "epayment" => {
                assert!(page.text.contains("id=\"pay-card\""));
                // The widget's payment token, never a token that mints more.
                assert!(page.text.contains("access_token"));
                assert!(!page.text.contains("refresh_token"), "{}", page.text);
                let script = checkout.widget.as_ref().unwrap()["script"]
                    .as_str()
                    .unwrap();
                let csp = header(&page, "content-security-policy");
                let origin = url::Url::parse(script)
                    .unwrap()
                    .origin()
                    .ascii_serialization();
                let script_src = csp
                    .split(';')
                    .map(str::trim)
                    .find(|d| d.starts_with("script-src "))
                    .unwrap_or_default();
                assert!(
                    script_src.starts_with("script-src 'nonce-")
                        && script_src.ends_with(&format!(" {origin}")),
                    "{csp}"
                );
                // The bank's widget sends the payer back to this page.
                assert_eq!(
                    checkout.widget.as_ref().unwrap()["backLink"],
                    page_url.as_str()
                );
                assert!(!page.text.contains("auth_bearer"));
            }
            "payment_engine" => assert!(page.text.contains("real-time payment")),
            other => panic!("{other}"),
        }

        let (code, body) = status_of(&h, &page_url).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["state"], "pending", "{}", case.provider);
        assert!(body["seconds_left"].as_i64().unwrap() > 0);
        assert_eq!(body.as_object().unwrap().len(), 2, "nothing else: {body}");

        let (answer, report) = trigger(&h, case.provider, "paid", id).await;
        assert_eq!(answer, 200, "{report}");
        let (_, body) = status_of(&h, &page_url).await;
        assert_eq!(body["state"], "paid", "{}: {body}", case.provider);
        let page = open(&h, &page_url).await;
        assert!(shows(&page.text, "paid"), "{}", case.provider);
        assert!(!shows(&page.text, "pay"), "{}", case.provider);
        let p = h.store().payment(id).await.unwrap().unwrap();
        assert_eq!(p.status, PaymentStatus::Completed);
        let completions = p
            .history
            .iter()
            .filter(|e| e.status == PaymentStatus::Completed)
            .count();
        assert_eq!(completions, 1, "{}", case.provider);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_route_asks_the_provider_when_no_callback_came() {
    let h = Harness::start().await;
    let r = h
        .create(
            &format!("k-{}", ulid::Ulid::new()),
            &json!({"provider": "qpay", "amount": 150_000, "currency": "MNT",
                    "reference": format!("ORD-{}", ulid::Ulid::new()), "wallet_user_id": "u_poll"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let page_url = r.body["checkout"]["page_url"].as_str().unwrap().to_string();
    let invoice = r.body["provider_reference"].as_str().unwrap();
    // Paid at QPay, whose callback never arrives.
    h.sandbox(
        &format!("/_sandbox/qpay/invoices/{invoice}/pay"),
        json!({"type": "CARD", "callback": "none"}),
    )
    .await;
    let (_, body) = status_of(&h, &page_url).await;
    assert_eq!(body["state"], "paid", "{body}");
    let wallet = h.get("/v1/wallets/u_poll").await;
    assert_eq!(
        wallet.body["balances"],
        json!([{"currency": "MNT", "amount": 150_000}]),
        "{}",
        wallet.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_expired_payments_say_so_and_dead_links_show_nothing() {
    let h = Harness::start().await;
    let all = cases();
    let directpay = all.iter().find(|c| c.provider == "directpay").unwrap();
    let failed = create(&h, directpay, "u_fail").await;
    let url = page_url_of(&h, failed).await;
    let (answer, report) = trigger(&h, "directpay", "failed", failed).await;
    assert_eq!(answer, 200, "{report}");
    let (_, body) = status_of(&h, &url).await;
    assert_eq!(body["state"], "failed", "{body}");
    assert!(shows(&open(&h, &url).await.text, "failed"));

    // A payment past its expiry reads as expired before the sweep gets to it.
    let mut late = shared::payment::Payment::new(
        common::new_payment(
            shared::payment::Provider::Directpay,
            Money::new(20_000, Currency::Php).unwrap(),
            &format!("ORD-{}", ulid::Ulid::new()),
        ),
        shared::payment::ChangeSource::Api,
        time::OffsetDateTime::now_utc() - time::Duration::hours(2),
    );
    late.expires_at = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    late.provider_checked_at = Some(time::OffsetDateTime::now_utc());
    let token = PageToken::generate_for(late.id).unwrap();
    late.page_token = Some(token.clone());
    h.store().create_payment(&late).await.unwrap();
    let url = format!("{}/pay/{token}", h.api);
    let page = open(&h, &url).await;
    assert_eq!(page.status, 200);
    assert!(shows(&page.text, "expired"));
    assert!(!shows(&page.text, "pay"));

    // A day after expiry the link is gone.
    let mut old = shared::payment::Payment::new(
        common::new_payment(
            shared::payment::Provider::Directpay,
            Money::new(20_000, Currency::Php).unwrap(),
            &format!("ORD-{}", ulid::Ulid::new()),
        ),
        shared::payment::ChangeSource::Api,
        time::OffsetDateTime::now_utc() - PAGE_AFTER_EXPIRY - time::Duration::hours(2),
    );
    old.expires_at =
        time::OffsetDateTime::now_utc() - PAGE_AFTER_EXPIRY - time::Duration::minutes(1);
    let token = PageToken::generate_for(old.id).unwrap();
    old.page_token = Some(token.clone());
    h.store().create_payment(&old).await.unwrap();
    // A token naming a real payment with another random part, and one
    // naming no payment.
    let guessed = format!("{}{}", late.id.ulid(), "A".repeat(PageToken::RANDOM_LEN));
    for url in [
        format!("{}/pay/{token}", h.api),
        format!("{}/pay/{guessed}", h.api),
        format!(
            "{}/pay/{}",
            h.api,
            PageToken::generate_for(shared::ids::PaymentId::generate()).unwrap()
        ),
        format!("{}/pay/not-a-token", h.api),
    ] {
        let page = open(&h, &url).await;
        assert_eq!(page.status, 404, "{url}");
        assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
        assert_guarded(&page, &url);
        assert!(page.text.contains("not valid"));
        let (code, body) = status_of(&h, &url).await;
        assert_eq!(code, 404, "{url}");
        assert_eq!(body["error"]["code"], "payment_link_not_found", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_urls_must_be_https_and_providers_send_the_payer_to_the_page() {
    let h = Harness::start().await;
    let body = |return_url: &str| {
        json!({"provider": "toyyibpay", "amount": 1_000, "currency": "MYR",
               "reference": format!("ORD-{}", ulid::Ulid::new()), "return_url": return_url,
               "customer": {"email": "a@example.com", "phone": "+60123456789"}})
    };
    for bad in [
        "http://shop.example.com/done",
        "javascript:alert(1)",
        "ftp://shop.example.com/",
        "https://user:pw@shop.example.com/",
        "/relative/path",
    ] {
        let r = h
            .create(&format!("k-{}", ulid::Ulid::new()), &body(bad))
            .await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text);
        assert_eq!(r.body["error"]["code"], "invalid_return_url", "{bad}");
        assert_eq!(r.body["error"]["details"]["field"], "return_url");
    }
    // This API runs on loopback (as make dev does): loopback http is taken.
    for good in [
        "https://shop.example.com/thanks",
        "http://127.0.0.1:8080/thanks",
    ] {
        let r = h
            .create(&format!("k-{}", ulid::Ulid::new()), &body(good))
            .await;
        assert_eq!(r.status, 201, "{good}: {}", r.text);
        let page_url = r.body["checkout"]["page_url"].as_str().unwrap();
        // ToyyibPay's bill returns the payer to paygate's page, which
        // forwards to the merchant once the payment is final.
        let code = r.body["provider_reference"].as_str().unwrap();
        let bill = sandbox::toyyibpay::bill(&h.sandbox.state.toyyibpay, code).unwrap();
        assert_eq!(bill.return_url, page_url);
        let page = open(&h, page_url).await;
        assert!(
            page.text.contains(&format!("data-return-url=\"{good}\"")),
            "{good}"
        );
    }
}

/// The value of the hidden `back` field of the sandbox page's `event` form.
fn back_of(text: &str, event: &str) -> String {
    let form = text
        .split("<form")
        .find(|f| f.contains(&format!("value=\"{event}\"")))
        .unwrap_or_else(|| panic!("no {event} form in {text}"));
    let at = form.find("name=\"back\" value=\"").expect("a back field") + 19;
    form[at..].split('"').next().unwrap().replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandboxs_payer_pages_pay_and_send_the_payer_back_to_the_page() {
    let h = Harness::start().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for case in cases()
        .into_iter()
        .filter(|c| matches!(c.provider, "directpay" | "toyyibpay" | "qpay" | "paygram"))
    {
        let id = create(&h, &case, "u_sandbox_page").await;
        let payment = h.store().payment(id).await.unwrap().unwrap();
        let page_url = payment.checkout.page_url.clone().unwrap();
        let link = payment.checkout.url.clone().unwrap();
        assert!(
            link.starts_with(&h.sandbox.url()),
            "{}: {link}",
            case.provider
        );
        let page = open(&h, &link).await;
        assert_eq!(page.status, 200, "{}: {}", case.provider, page.text);
        let back = back_of(&page.text, "paid");
        match case.provider {
            // Back to paygate's page, as the provider returns its payer.
            "directpay" => assert_eq!(back, page_url),
            "toyyibpay" => {
                let code = payment.provider_reference.as_ref().unwrap().as_str();
                assert_eq!(
                    back,
                    format!("{page_url}?status_id=1&billcode={code}&order_id={id}")
                );
                assert!(back_of(&page.text, "failed").contains("status_id=3"));
                // The parameters ToyyibPay's return URL carries, as the
                // public example shows them (fixtures/toyyibpay SOURCES T4).
                let documented = std::fs::read_to_string(format!(
                    "{}/tests/fixtures/toyyibpay/return_url.unofficial_doc.form",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .unwrap();
                let keys = |pairs: Vec<&str>| {
                    let mut k: Vec<String> = pairs
                        .iter()
                        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
                        .collect();
                    k.sort();
                    k
                };
                let query = back.split_once('?').unwrap().1;
                assert_eq!(
                    keys(query.split('&').collect()),
                    keys(documented.lines().collect())
                );
            }
            // Paid in an app: nowhere to send the payer.
            _ => assert_eq!(back, ""),
        }
        let answer = no_redirects
            .post(format!(
                "{}/_sandbox/payer/{}/{id}",
                h.sandbox.url(),
                case.provider
            ))
            .form(&[("event", "paid"), ("back", back.as_str())])
            .send()
            .await
            .unwrap();
        if back.is_empty() {
            assert_eq!(answer.status(), 200, "{}", case.provider);
        } else {
            assert_eq!(answer.status(), 303, "{}", case.provider);
            assert_eq!(answer.headers()["location"].to_str().unwrap(), back);
        }
        let p = h.store().payment(id).await.unwrap().unwrap();
        assert_eq!(p.status, PaymentStatus::Completed, "{}", case.provider);
    }
    // Abandoning changes nothing at the provider.
    let all = cases();
    let directpay = all.iter().find(|c| c.provider == "directpay").unwrap();
    let id = create(&h, directpay, "u_sandbox_page").await;
    let answer = no_redirects
        .post(format!("{}/_sandbox/payer/directpay/{id}", h.sandbox.url()))
        .form(&[("event", "abandon"), ("back", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let p = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Pending);
}

/// A page link of the earlier form (32 random characters, found through
/// its `PAGE#` item) still opens its payment; a new one names its payment
/// and needs no link item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earlier_page_tokens_still_open_their_page_and_new_ones_need_no_link() {
    let h = Harness::start().await;
    let mut earlier = shared::payment::Payment::new(
        common::new_payment(
            shared::payment::Provider::Directpay,
            Money::new(20_000, Currency::Php).unwrap(),
            &format!("ORD-{}", ulid::Ulid::new()),
        ),
        shared::payment::ChangeSource::Api,
        time::OffsetDateTime::now_utc(),
    );
    let token: PageToken = shared::ids::random_base64url::<24>()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(token.payment_id(), None);
    earlier.page_token = Some(token.clone());
    h.store().create_payment(&earlier).await.unwrap();
    let found = h.store().payment_by_page(&token).await.unwrap();
    assert_eq!(found.map(|p| p.id), Some(earlier.id));
    let (code, body) = status_of(&h, &format!("{}/pay/{token}", h.api)).await;
    assert_eq!(code, 200, "{body}");

    // A payment created through the API: its page's token names it, and
    // the table holds no link item for it.
    let all = cases();
    let directpay = all.iter().find(|c| c.provider == "directpay").unwrap();
    let id = create(&h, directpay, "u_new_token").await;
    let url = page_url_of(&h, id).await;
    let token: PageToken = url.rsplit('/').next().unwrap().parse().unwrap();
    assert_eq!(token.payment_id(), Some(id));
    let items = h.items().await;
    // The token is kept once, at the end of the page's URL, and read back.
    let payment_item = |id: shared::ids::PaymentId| {
        items
            .iter()
            .find(|i| {
                i.get("pk").and_then(|v| v.as_s().ok()) == Some(&format!("PAY#{id}"))
                    && i.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("PAY")
            })
            .unwrap()
    };
    let stored = payment_item(id);
    assert!(!stored.contains_key("page_token"), "{stored:?}");
    let read = h.store().payment(id).await.unwrap().unwrap();
    assert_eq!(read.page_token.as_ref(), Some(&token));
    // The earlier payment (no page URL) keeps its token as it was.
    let earlier_item = items
        .iter()
        .find(|i| i.get("pk").and_then(|v| v.as_s().ok()) == Some(&format!("PAY#{}", earlier.id)))
        .unwrap();
    assert!(earlier_item.contains_key("page_token"));
    let links = items
        .into_iter()
        .filter(|i| {
            i.get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk.starts_with("PAGE#"))
        })
        .count();
    assert_eq!(links, 1, "only the earlier payment's link");
    let (code, body) = status_of(&h, &url).await;
    assert_eq!(code, 200, "{body}");
}
