//! `GET /console` (api-console): served without a key through template.yaml's
//! route, with a policy that runs only the answer's own nonce'd code; and
//! the payment's description, which the console shows, on a single
//! payment's answer.

mod common;

use common::harness::Harness;
use serde_json::json;

#[tokio::test]
async fn the_console_is_one_page_whose_policy_runs_only_its_own_code() {
    let h = Harness::start().await;
    let r = h
        .http
        .get(format!("{}/console", h.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    let page = r.text().await.unwrap();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store, max-age=0");
    let csp = headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let nonce = csp
        .split("script-src 'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap()
        .to_string();
    assert!(nonce.len() >= 20, "{csp}");
    assert!(page.contains(&format!("<script nonce=\"{nonce}\">")));
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("connect-src 'self'"));
    // A fresh nonce each time.
    let again = h
        .http
        .get(format!("{}/console", h.api))
        .send()
        .await
        .unwrap();
    let csp_again = again.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(csp, csp_again);

    // The function's sample event, handed to its handler.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/api-console.json");
    let sample = lambda_http::request::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let answer = shared::api::console::handle(sample).await;
    assert_eq!(answer.status(), 200);
    assert!(h.take_refusals().is_empty());
}

#[tokio::test]
async fn a_payments_description_is_on_its_own_answer_not_in_lists() {
    let h = Harness::start().await;
    let reference = format!("ORD-{}", ulid::Ulid::new());
    let created = h
        .create(
            &format!("k-{}", ulid::Ulid::new()),
            &json!({"provider": "qpay", "amount": 1000, "currency": "MNT",
                    "reference": reference, "description": "<img src=x onerror=alert(1)>"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap();
    let got = h.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(got.body["description"], "<img src=x onerror=alert(1)>");
    let listed = h.get("/v1/payments?limit=5").await;
    assert_eq!(listed.body["data"][0]["id"], id);
    assert!(listed.body["data"][0].get("description").is_none());
}
