//! Every function's AWS calls are held to its policy in template.yaml, as
//! IAM holds them in AWS: each function signs as itself through the local
//! IAM check (devstack::iam), which refuses a call outside the policy
//! with AWS's AccessDeniedException. The flows of every function run
//! without a refusal; a template with a grant taken away fails the way
//! AWS would fail it.

mod common;

use common::cases::{cases, create, trigger};
use common::harness::{Harness, OPERATOR_KEY};
use serde_json::json;
use shared::payment::PaymentStatus;
use time::{Duration, OffsetDateTime};

fn template() -> String {
    std::fs::read_to_string(devstack::template::default_path()).unwrap()
}

/// template.yaml with `action` taken out of the first statement of
/// `function` (a logical id) that lists it.
fn without(function: &str, action: &str) -> String {
    let text = template();
    let start = text
        .find(&format!("\n  {function}:\n"))
        .unwrap_or_else(|| panic!("{function} not in template.yaml"));
    let line = format!("                - {action}\n");
    let at = start
        + text[start..]
            .find(&line)
            .unwrap_or_else(|| panic!("{function} lists no {action}"));
    format!("{}{}", &text[..at], &text[at + line.len()..])
}

fn path_of(h: &Harness, url: &str) -> String {
    url.strip_prefix(&h.api).unwrap_or(url).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_function_works_within_its_policy() {
    let h = Harness::start().await;
    let now = OffsetDateTime::now_utc();

    // Every provider: created (api-create-payment), read while pending
    // (api-get-payment asks the provider), its payer page and status
    // (api-pay-page), paid through its webhook, read again.
    for case in cases() {
        let id = create(&h, &case, "u_iam").await;
        let pending = h.get(&format!("/v1/payments/{id}")).await;
        assert_eq!(pending.status, 200, "{}: {}", case.provider, pending.text);
        let page = path_of(&h, pending.body["checkout"]["page_url"].as_str().unwrap());
        let shown = h.http.get(format!("{}{page}", h.api)).send().await.unwrap();
        assert_eq!(shown.status(), 200, "{}: the payer's page", case.provider);
        let status = h
            .http
            .get(format!("{}{page}/status", h.api))
            .send()
            .await
            .unwrap();
        assert_eq!(status.status(), 200, "{}: the page's status", case.provider);
        let (code, answer) = trigger(&h, case.provider, "paid", id).await;
        assert_eq!(code, 200, "{}: {answer}", case.provider);
        let paid = h.store().payment(id).await.unwrap().unwrap();
        assert_eq!(paid.status, PaymentStatus::Completed, "{}", case.provider);
        let read = h.get(&format!("/v1/payments/{id}")).await;
        assert_eq!(read.status, 200, "{}: {}", case.provider, read.text);
    }

    // A casino deposit: the webhook queues the top-up, the worker sends it.
    let casino = h
        .create(
            &format!("k-{}", ulid::Ulid::new()),
            &json!({"provider": "directpay", "amount": 15_000, "currency": "PHP",
                    "reference": format!("ORD-{}", ulid::Ulid::new()),
                    "wallet_user_id": "u_iam_casino", "casino": {"username": "player1"}}),
        )
        .await;
    assert_eq!(casino.status, 201, "{}", casino.text);
    let casino_id = casino.body["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(trigger(&h, "directpay", "paid", casino_id).await.0, 200);
    let event = h.drain_queue().await;
    assert_eq!(event.records.len(), 1);
    let batch = shared::api::worker::handle(
        h.function("worker-casino-topup"),
        event,
        OffsetDateTime::now_utc(),
    )
    .await;
    assert!(batch.batch_item_failures.is_empty(), "{batch:?}");
    assert_eq!(h.casino_transfers().len(), 1);

    // A refund (api-refund-payment), then the refunded payment read
    // (api-get-payment lists its refunds).
    let epayment = cases()
        .into_iter()
        .find(|c| c.provider == "epayment")
        .unwrap();
    let refunded = create(&h, &epayment, "u_iam_refund").await;
    assert_eq!(trigger(&h, "epayment", "paid", refunded).await.0, 200);
    let refund = h
        .post(
            &format!("/v1/payments/{refunded}/refund"),
            "refund-iam",
            &json!({"amount": 200_000}),
        )
        .await;
    assert_eq!(refund.status, 200, "{}", refund.text);
    let read = h.get(&format!("/v1/payments/{refunded}")).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["refunds"].as_array().map(Vec::len), Some(1));

    // A cancel (api-cancel-payment).
    let toyyibpay = cases()
        .into_iter()
        .find(|c| c.provider == "toyyibpay")
        .unwrap();
    let cancelled = create(&h, &toyyibpay, "u_iam_cancel").await;
    let cancel = h
        .post(
            &format!("/v1/payments/{cancelled}/cancel"),
            "cancel-iam",
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.text);

    // The wallet, the casino player, health, the operators' routes.
    for (path, key) in [
        ("/v1/wallets/u_iam", common::harness::API_KEY),
        ("/v1/casino/users/player1", common::harness::API_KEY),
        ("/v1/health", common::harness::API_KEY),
        ("/v1/ops/queue", OPERATOR_KEY),
        ("/v1/ops/balances", OPERATOR_KEY),
    ] {
        let r = h.get_as(path, key).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
    }

    // The jobs: a sweep past an unpaid payment's expiry, a reconcile.
    let directpay = cases()
        .into_iter()
        .find(|c| c.provider == "directpay")
        .unwrap();
    let unpaid = create(&h, &directpay, "u_iam_unpaid").await;
    let swept = shared::api::jobs::sweep(h.function("job-sweep"), now + Duration::minutes(31))
        .await
        .expect("the sweep runs");
    assert!(swept.expired >= 1, "{swept:?}");
    assert_eq!(
        h.store().payment(unpaid).await.unwrap().unwrap().status,
        PaymentStatus::Expired
    );
    let report = shared::api::reconcile::reconcile(
        h.function("job-reconcile"),
        // Once the hour of the sweep's change has closed.
        shared::api::reconcile::checked_from(now + Duration::minutes(31)),
    )
    .await
    .expect("the reconcile runs");
    assert!(report.checked >= 7, "{report:?}");

    assert_eq!(
        h.take_refusals(),
        Vec::<String>::new(),
        "calls outside a policy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_grant_is_refused_and_the_function_fails_as_in_aws() {
    let h = Harness::start_under(&without("ApiGetPaymentFunction", "dynamodb:GetItem")).await;
    let case = cases()
        .into_iter()
        .find(|c| c.provider == "directpay")
        .unwrap();
    // api-create-payment keeps its grants.
    let id = create(&h, &case, "u_denied").await;
    let read = h.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(read.status, 500, "{}", read.text);
    let table = format!(
        "arn:aws:dynamodb:us-east-1:123456789012:table/{}",
        h.store().table()
    );
    assert_eq!(
        h.take_refusals(),
        [format!(
            "api-get-payment may not dynamodb:GetItem on {table}"
        )]
    );
    // The payment is there: the tests' own reads pass unchecked.
    assert!(h.store().payment(id).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_aws_shapes_and_are_not_forwarded() {
    let h = Harness::start().await;
    // api-wallet may only query the table and LSI1.
    let wallet = devstack::LocalStack::as_function("api-wallet", &h.iam.url).await;
    let put = wallet
        .dynamodb
        .put_item()
        .table_name(h.store().table())
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("X#1".into()),
        )
        .item("sk", aws_sdk_dynamodb::types::AttributeValue::S("X".into()))
        .send()
        .await
        .unwrap_err();
    let raw = put.raw_response().expect("an HTTP answer");
    assert_eq!(raw.status().as_u16(), 400);
    assert_eq!(
        put.as_service_error().and_then(|e| {
            use aws_sdk_dynamodb::error::ProvideErrorMetadata;
            e.code().map(str::to_string)
        }),
        Some("AccessDeniedException".to_string())
    );
    assert_eq!(
        common::item_count(h.store()).await,
        0,
        "nothing was written"
    );

    let send = wallet
        .sqs
        .send_message()
        .queue_url(&h.queue_url)
        .message_body("{}")
        .send()
        .await
        .unwrap_err();
    assert_eq!(send.raw_response().map(|r| r.status().as_u16()), Some(400));
    assert!(
        format!("{}", aws_sdk_sqs::error::DisplayErrorContext(&send)).contains("AccessDenied"),
        "{send:?}"
    );
    assert!(h.drain_queue().await.records.is_empty(), "nothing was sent");

    let prefix = &h.services.settings.secret_prefix;
    let secret = wallet
        .secrets
        .get_secret_value()
        .secret_id(format!("{prefix}casino"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        secret.as_service_error().and_then(|e| {
            use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
            e.code().map(str::to_string)
        }),
        Some("AccessDeniedException".to_string())
    );
    let refused = h.take_refusals();
    assert_eq!(refused.len(), 3, "{refused:?}");

    // The casino user route may read the casino's secret, not the API keys.
    let casino = devstack::LocalStack::as_function("api-casino-user", &h.iam.url).await;
    assert!(casino
        .secrets
        .get_secret_value()
        .secret_id(format!("{prefix}casino"))
        .send()
        .await
        .is_ok());
    assert!(casino
        .secrets
        .get_secret_value()
        .secret_id(format!("{prefix}api-keys"))
        .send()
        .await
        .is_err());
    let refused = h.take_refusals();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].starts_with(&format!(
            "api-casino-user may not secretsmanager:GetSecretValue on arn:aws:secretsmanager:us-east-1:123456789012:secret:{prefix}api-keys-"
        )),
        "{refused:?}"
    );
}
