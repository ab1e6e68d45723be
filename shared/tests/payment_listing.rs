//! `GET /v1/payments` without a reference (API.md, "Listing payments"),
//! against the local stack: two merchants' payments over three days, read
//! page by page through api-get-payment (held to its policy), newest first,
//! filtered, bounded by dates, and never another merchant's; cursors bound
//! to their merchant and query.

mod common;

use base64::Engine;
use common::cases::create_for;
use common::harness::{Harness, OTHER_API_KEY};
use serde_json::Value;
use shared::ids::PaymentId;
use shared::money::{Currency, Money};
use shared::payment::{
    ChangeSource, Checkout, Customer, NewPayment, Payment, PaymentStatus, Provider,
};
use shared::store::CreateOutcome;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// A stored payment of `merchant` created at `at`, in `status`.
fn payment(
    merchant: &str,
    provider: Provider,
    status: PaymentStatus,
    at: OffsetDateTime,
) -> Payment {
    let mut p = Payment::new(
        NewPayment {
            id: PaymentId::generate(),
            merchant_id: merchant.parse().unwrap(),
            provider,
            amount: Money::new(1_000, Currency::Php).unwrap(),
            reference: format!("ORD-{}", ulid::Ulid::new()).parse().unwrap(),
            description: None,
            customer: Customer::default(),
            return_url: None,
            method: None,
            wallet_user_id: None,
            casino_username: None,
            provider_reference: None,
            checkout: Checkout::default(),
            page_token: None,
            expires_at: at + Duration::hours(1),
        },
        ChangeSource::Api,
        at,
    );
    p.status = status;
    p
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn query_time(t: OffsetDateTime) -> String {
    rfc3339(t).replace('+', "%2B")
}

/// Every page of `query` (ending `&` or `?`) read with `key`: the ids in
/// order, and how many pages it took.
async fn all_pages(h: &Harness, key: &str, query: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("{query}cursor={c}"),
            None => query.to_string(),
        };
        let r = h.get_as(&path, key).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        pages += 1;
        for p in r.body["data"].as_array().unwrap() {
            ids.push(p["id"].as_str().unwrap().to_string());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (ids, pages),
        }
        assert!(pages < 50, "{query} does not end");
    }
}

const PROVIDERS: [Provider; 2] = [Provider::Directpay, Provider::Qpay];
const STATUSES: [PaymentStatus; 3] = [
    PaymentStatus::Pending,
    PaymentStatus::Completed,
    PaymentStatus::Failed,
];

/// 27 payments of ours and 9 of the other merchant's, one every three hours
/// from `start`, interleaved; ours newest first.
async fn seed(h: &Harness, start: OffsetDateTime) -> (Vec<Payment>, Vec<Payment>) {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..36i64 {
        let at = start + Duration::hours(3 * i) + Duration::microseconds(250);
        let provider = PROVIDERS[(i % 2) as usize];
        let status = STATUSES[(i % 3) as usize];
        let (merchant, list) = if i % 4 == 3 && theirs.len() < 9 {
            (common::harness::OTHER_MERCHANT, &mut theirs)
        } else {
            (common::harness::MERCHANT, &mut ours)
        };
        let p = payment(merchant, provider, status, at);
        assert_eq!(
            h.store().create_payment(&p).await.unwrap(),
            CreateOutcome::Created
        );
        list.push(p);
    }
    ours.reverse();
    theirs.reverse();
    (ours, theirs)
}

fn ids(payments: &[&Payment]) -> Vec<String> {
    payments.iter().map(|p| p.id.to_string()).collect()
}

#[tokio::test]
async fn pages_are_newest_first_filtered_and_only_the_merchants_own() {
    let h = Harness::start().await;
    let start = OffsetDateTime::now_utc() - Duration::days(5);
    let (ours, theirs) = seed(&h, start).await;
    assert_eq!((ours.len(), theirs.len()), (27, 9));
    // One more through the API: the create writes what the listing reads.
    let created = create_for(&h, "qpay", "u_listing").await;

    // Everything, seven at a time: ours, newest first, never theirs.
    let (got, pages) = all_pages(&h, common::harness::API_KEY, "/v1/payments?limit=7&").await;
    let mut expected = vec![created.to_string()];
    expected.extend(ids(&ours.iter().collect::<Vec<_>>()));
    assert_eq!(got, expected);
    assert_eq!(pages, 4, "28 payments in pages of 7, none empty");
    let (got, _) = all_pages(&h, OTHER_API_KEY, "/v1/payments?limit=4&").await;
    assert_eq!(got, ids(&theirs.iter().collect::<Vec<_>>()));

    // The default page is 20, and says more follow.
    let r = h.get("/v1/payments").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 20);
    assert!(r.body["next_cursor"].is_string());

    // Filters, alone and together, across pages.
    for query in [
        "status=completed",
        "provider=qpay",
        "status=failed&provider=directpay",
    ] {
        let keep = |p: &&Payment| {
            (!query.contains("status=")
                || query.contains(&format!(
                    "status={}",
                    serde_json::to_value(p.status).unwrap().as_str().unwrap()
                )))
                && (!query.contains("provider=")
                    || query.contains(&format!("provider={}", p.provider)))
        };
        let want: Vec<&Payment> = ours.iter().filter(keep).collect();
        let (got, _) = all_pages(
            &h,
            common::harness::API_KEY,
            &format!("/v1/payments?{query}&limit=3&"),
        )
        .await;
        let mut want = ids(&want);
        if query == "provider=qpay" {
            // The payment made through the API is pending at QPay.
            want.insert(0, created.to_string());
        }
        assert_eq!(got, want, "{query}");
        assert!(!want.is_empty(), "{query} keeps something");
    }

    // Dates: from is inclusive, to exclusive, to the microsecond.
    let from = ours[15].created_at;
    let to = ours[4].created_at;
    let (got, _) = all_pages(
        &h,
        common::harness::API_KEY,
        &format!(
            "/v1/payments?created_from={}&created_to={}&limit=5&",
            query_time(from),
            query_time(to)
        ),
    )
    .await;
    assert_eq!(got, ids(&ours[5..=15].iter().collect::<Vec<_>>()));
    // A microsecond either side moves each bound past its payment.
    let (got, _) = all_pages(
        &h,
        common::harness::API_KEY,
        &format!(
            "/v1/payments?created_from={}&created_to={}&",
            query_time(from + Duration::microseconds(1)),
            query_time(to + Duration::microseconds(1))
        ),
    )
    .await;
    assert_eq!(got, ids(&ours[4..15].iter().collect::<Vec<_>>()));
    // Only a lower bound, with a status.
    let (got, _) = all_pages(
        &h,
        common::harness::API_KEY,
        &format!(
            "/v1/payments?created_from={}&status=pending&limit=2&",
            query_time(ours[6].created_at)
        ),
    )
    .await;
    let want: Vec<&Payment> = ours[..=6]
        .iter()
        .filter(|p| p.status == PaymentStatus::Pending)
        .collect();
    let mut want = ids(&want);
    want.insert(0, created.to_string());
    assert_eq!(got, want);

    // The reference lookup answers as before.
    let r = h
        .get(&format!("/v1/payments?reference={}", ours[3].reference))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"][0]["id"], ours[3].id.to_string());
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    let r = h
        .get(&format!("/v1/payments?reference={}", theirs[0].reference))
        .await;
    assert_eq!(r.body["data"], serde_json::json!([]), "another's reference");
    assert!(h.take_refusals().is_empty());
}

#[tokio::test]
async fn cursors_belong_to_their_merchant_and_query_and_filters_are_checked() {
    let h = Harness::start().await;
    let start = OffsetDateTime::now_utc() - Duration::days(5);
    let (ours, _) = seed(&h, start).await;

    let first = h.get("/v1/payments?limit=2&status=pending").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    // Its own query takes it.
    let r = h
        .get(&format!(
            "/v1/payments?limit=2&status=pending&cursor={cursor}"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.body["data"][0]["id"], first.body["data"][0]["id"]);
    // The page size may change; nothing else.
    let r = h
        .get(&format!(
            "/v1/payments?limit=9&status=pending&cursor={cursor}"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let refused = |r: &common::harness::Reply| {
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.body["error"]["code"], "invalid_cursor");
    };
    // Another merchant's key with our cursor, the same query.
    refused(
        &h.get_as(
            &format!("/v1/payments?limit=2&status=pending&cursor={cursor}"),
            OTHER_API_KEY,
        )
        .await,
    );
    // Another query.
    refused(
        &h.get(&format!(
            "/v1/payments?limit=2&status=failed&cursor={cursor}"
        ))
        .await,
    );
    refused(
        &h.get(&format!("/v1/payments?limit=2&cursor={cursor}"))
            .await,
    );
    // A cursor whose position was changed (to skip ahead), its digest kept.
    let text = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&cursor)
            .unwrap(),
    )
    .unwrap();
    let (position, digest) = text.rsplit_once('|').unwrap();
    let (_, id) = position.split_once('#').unwrap();
    let moved = format!("{:015}#{id}|{digest}", 1u64);
    refused(
        &h.get(&format!(
            "/v1/payments?limit=2&status=pending&cursor={}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(moved)
        ))
        .await,
    );
    refused(&h.get("/v1/payments?cursor=bm90IGEgY3Vyc29y").await);

    let unprocessable = |r: &common::harness::Reply, code: &str| {
        assert_eq!(r.status, 422, "{}", r.text);
        assert_eq!(r.body["error"]["code"], code);
    };
    unprocessable(&h.get("/v1/payments?status=paid").await, "unknown_status");
    unprocessable(
        &h.get("/v1/payments?provider=stripe").await,
        "unknown_provider",
    );
    unprocessable(&h.get("/v1/payments?limit=0").await, "invalid_limit");
    unprocessable(&h.get("/v1/payments?limit=101").await, "invalid_limit");
    let t = query_time(ours[0].created_at);
    unprocessable(
        &h.get(&format!("/v1/payments?created_from={t}&created_to={t}"))
            .await,
        "invalid_time_range",
    );
    // Payments of the same millisecond page without loss or repeat.
    let same = start - Duration::days(1);
    let mut twins = Vec::new();
    for _ in 0..5 {
        let p = payment(
            common::harness::MERCHANT,
            Provider::Qpay,
            PaymentStatus::Completed,
            same,
        );
        h.store().create_payment(&p).await.unwrap();
        twins.push(p.id.to_string());
    }
    let (mut got, pages) = all_pages(
        &h,
        common::harness::API_KEY,
        &format!("/v1/payments?created_to={}&limit=2&", query_time(start)),
    )
    .await;
    got.sort();
    twins.sort();
    assert_eq!((got, pages), (twins, 3));

    let r = h.get("/v1/payments?created_from=yesterday").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "invalid_created_from");
    let body: &Value = &r.body["error"];
    assert!(body["request_id"].is_string());
    assert!(h.take_refusals().is_empty());
}
